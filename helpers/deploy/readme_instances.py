"""The bundle README's parts for instance segmentation and pose models: how to run them, what the runner prints, what the
model's outputs are and how postprocess_segment.py / postprocess_pose.py decode them (readme.py puts them in place)."""
from __future__ import annotations

from typing import Any

RUN_SEGMENT = """```
cd /userdata/deploy
python3 run_rknn.py images/    # every sample image: instances printed, masks and boxes drawn into detections/
python3 run_rknn.py {sample} --conf 0.5 --iou 0.5 --draw out/    # fewer, surer instances; drawn into out/
python3 run_rknn.py {sample} --benchmark 200 --core-mask {mask}    # latency and FPS (section 5)
```

Expected output (numbers depend on the image):
```
{first_line}
{sample}: 2 instance(s)
  <label>      0.912  box x1=31 y1=18 x2=77 y2=64  mask 1432 px
  <label>      0.874  box x1=102 y1=40 x2=150 y2=95  mask 1810 px
  drawn: detections/{name}
```

What it means: one line per object found, best first: the class name (from `labels.txt`), its score (only scores above
`--conf`, default 0.25, are kept), the box corners in **the original image's pixels** and the area of its mask (pixels
of the original image). Of two boxes of one class that overlap by IoU above `--iou` (default 0.7) only the better one
stays (non-maximum suppression). `--draw DIR` (default `detections/`, `''` for none) writes each image with its masks
blended in and its boxes. The decode is `postprocess_segment.py`, byte for byte the module the workbook measured mask
mAP with.
"""
RUN_POSE = """```
cd /userdata/deploy
python3 run_rknn.py images/    # every sample image: poses printed, keypoints and skeletons drawn into detections/
python3 run_rknn.py {sample} --conf 0.5 --iou 0.5 --draw out/    # fewer, surer poses; drawn into out/
python3 run_rknn.py {sample} --benchmark 200 --core-mask {mask}    # latency and FPS (section 5)
```

Expected output (numbers depend on the image):
```
{first_line}
{sample}: 1 pose(s)
  <label>      0.912  box x1=31 y1=18 x2=77 y2=124
    keypoints x,y,v: 54,22,0.97 54,40,0.95 ...
  drawn: detections/{name}
```

What it means: one line per object found, best first: the class name (from `labels.txt`), its score (only scores above
`--conf`, default 0.25, are kept) and the box corners in **the original image's pixels**; under it, its {k} keypoints in
the model's order as `x,y,v`: the position in the original image's pixels (clipped to the image) and {visibility}. Of
two boxes of one class that overlap by IoU above `--iou` (default 0.7) only the better one stays. `--draw DIR` (default
`detections/`, `''` for none) writes each image with its boxes and the keypoints whose visibility is above 0.5,
{skeleton} The decode is `postprocess_pose.py`, byte for byte the module the workbook measured pose mAP with.
"""
OUTPUTS_SEGMENT = """
## Outputs and decode (split segmentation head)

The model gives four outputs per stride (8, 16, 32 pixels), then one more: `box` (4 sides as DFL logits over reg_max
bins, or plain distances), `cls` (class scores, 0 to 1), `sum` (the class scores summed, clamped to 1: the decode skips
cells where it is below `--conf`), `coef` (the instance's {nm} mask coefficients), and finally the prototypes
`[1, {nm}, {proto}, {proto}]`, {nm} mask planes at a quarter of the input size. Boxes, scores and NMS are the detector's
(`postprocess.py`). Each kept instance's mask is its coefficients times the prototypes (a weighted sum of the {nm}
planes, one logit per pixel), upsampled to the letterboxed {size}x{size} input, the grey padding cut off, resized to the
original image, sigmoid > 0.5, and zeroed outside its box. Ultralytics' stock head concatenates box pixels
(0 to {size}), class scores (0 to 1) and the coefficients into one tensor, which INT8 gives one scale, so the scores round
to 0 on the NPU; split, each output keeps its own scale. The runner and the C++ demo refuse a stock-head model in one
sentence.
"""
OUTPUTS_POSE = """
## Outputs and decode (split pose head)

The model gives four outputs per stride (8, 16, 32 pixels): `box` (4 sides as DFL logits over reg_max bins, or plain
distances), `cls` (class scores, 0 to 1), `sum` (the class scores summed, clamped to 1: the decode skips cells where it
is below `--conf`) and `kpt` ({k} x {ndim} channels: per keypoint dx, dy, {vis_channel}). Boxes, scores and NMS are the
detector's (`postprocess.py`). A kept box's keypoints are read at its own cell: `x = (dx + column) x stride`,
`y = (dy + row) x stride` in input pixels, then mapped out of the letterbox into the original image (`model.json`'s `kpt_shape` is
[{k}, {ndim}]). The offsets are small numbers in stride units rather than pixels, so INT8 keeps a fine step;
ultralytics' stock head concatenates box and keypoint pixels (0 to {size}) with class scores (0 to 1) into one tensor
whose one INT8 scale rounds the scores to 0. The runner and the C++ demo refuse a stock-head model in one sentence.
"""
FILES = {
    "segment": ("| postprocess_segment.py | the workbook's mask decode (coefficients x prototypes, crop, upsample), byte for "
                "byte the module the workbook measured mask mAP with; it imports the letterbox, box decode and NMS from "
                "postprocess.py |\n"),
    "pose": ("| postprocess_pose.py | the workbook's keypoint decode, byte for byte the module the workbook measured pose mAP "
             "with; it imports the letterbox, box decode and NMS from postprocess.py |\n"),
}
CPP_WHAT = {"detect": "decodes the boxes (DFL, or plain distances)",
            "segment": "decodes the boxes (DFL, or plain distances) and each mask (`src/yolo_segment.h`: coefficients x "
                       "prototypes, upsampled like cv2.resize, cut, sigmoid > 0.5, inside the box; `--masks DIR` writes them "
                       "as PGM images)",
            "pose": "decodes the boxes (DFL, or plain distances) and the keypoints (`src/yolo_pose.h`; `--kpt-shape K,ndim` "
                    "from `model.json`)"}


def run_text(config: dict[str, Any]) -> str:
    """The run section's template for a segmentation or pose bundle (format keys: sample, mask, first_line, name)."""
    if config.get("task") == "segment":
        return RUN_SEGMENT
    k, ndim = config["kpt_shape"]
    skeleton = ("with lines between consecutive keypoints of each chain of `model.json`'s `skeleton`." if config.get("skeleton")
                else "as points (`model.json` has no `skeleton` to draw lines along).")
    return RUN_POSE.replace("{k}", str(k)).replace("{skeleton}", skeleton).replace(
        "{visibility}", "its visibility score (0 to 1)" if ndim == 3 else "1.00 (the model has no visibility channel)")


def outputs_section(config: dict[str, Any], nm: int = 32) -> str:
    """The README section on the split head's outputs and their decode, for a segmentation or pose bundle ('' otherwise)."""
    size = config["input_size"]
    if config.get("task") == "segment":
        return OUTPUTS_SEGMENT.format(nm=config.get("mask_channels") or nm, proto=size // 4, size=size)
    if config.get("task") == "pose":
        k, ndim = config["kpt_shape"]
        return OUTPUTS_POSE.format(k=k, ndim=ndim, size=size, vis_channel="then the visibility score (after a sigmoid)"
                                   if ndim == 3 else "no visibility channel")
    return ""


def snippet_lines(config: dict[str, Any], size: int) -> list[str]:
    """The README's RKNNLite snippet for a segmentation or pose bundle: letterbox, inference, the task's decode."""
    task, e2e = config["task"], bool(config.get("end2end"))
    select = "end2end=True" if e2e else "iou=0.7"
    lines = [f"canvas, lb = postprocess.letterbox(img, {size})   # aspect kept, grey padding: what the workbook measured",
             f"outputs = lite.inference(inputs=[canvas[None]], data_format=['nhwc'])   # uint8, 1 x {size} x {size} x 3"]
    if task == "segment":
        return lines + [f"found = postprocess_segment.postprocess(outputs, lb, conf=0.25, {select})   # boxes, scores, "
                        "classes, masks",
                        "print([(int(c), round(float(s), 3), int(m.sum())) for c, s, m in zip(found.classes, found.scores, "
                        "found.masks)])"]
    return lines + [f"found = postprocess_pose.postprocess(outputs, lb, {list(config['kpt_shape'])}, conf=0.25, {select})   "
                    "# keypoints [N, K, 3]",
                    "print(found.keypoints.round(1))"]
