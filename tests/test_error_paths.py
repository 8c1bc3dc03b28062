"""Error paths a user can reach that no other test triggered (issue 11, item 5): each bad input is
given the way a notebook or the CLI gives it (real files in tmp_path, the real toolkit where the
path needs it), and the message must name the input and say how to fix it."""
from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import cv2
import nbformat
import numpy as np
import pytest
import yaml

from helpers.core.errors import WorkbookError
from helpers.core.paths import Run
from helpers.runner import cli, execute
from helpers.steps import analysis, convert, hybrid, quantize_demo
from helpers.steps.export import exporter
from helpers.tasks import identify
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.record import read_record

# ----------------------------------------------------------------------------- helpers of the tests

@pytest.fixture
def run_cli(capsys, monkeypatch):
    """`python -m helpers ...` in-process: (exit code, stderr). The CLI's SIGTERM handler and a
    --notebooks folder are undone afterwards."""
    monkeypatch.setattr(execute, "NOTEBOOKS", execute.NOTEBOOKS)
    before = signal.getsignal(signal.SIGTERM)

    def call(*argv: str) -> tuple[int, str]:
        try:
            code = cli.main([str(a) for a in argv])
        finally:
            signal.signal(signal.SIGTERM, before)
        return code, capsys.readouterr().err

    return call


def write_notebook(path, params_source: str, code: str = "x = 1") -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params_source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells += [cell, nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, str(path))


def write_yaml(path, content) -> str:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


# ----------------------------------------------------------------------------- the CLI

def test_cli_params_and_variants_together(tmp_path, run_cli):
    params = write_yaml(tmp_path / "p.yaml", {"common": {"imgsz": 32}})
    variants_file = write_yaml(tmp_path / "s.yaml", {"variants": {"a": {"20_convert": {"calib_images": 2}}}})
    code, err = run_cli("run", "--params", params, "--variants", variants_file, "--run-dir", tmp_path / "run")
    assert code == 2
    assert "--params and --variants do not combine; put `base: FILE.yaml` in the variants file instead." in err
    assert not (tmp_path / "run").exists()


def test_cli_scheduler_without_variants(tmp_path, run_cli):
    code, err = run_cli("run", "--scheduler", "tcp://127.0.0.1:1", "--run-dir", tmp_path / "run")
    assert code == 2
    assert "--scheduler applies to --variants only; add --variants FILE.yaml" in err
    assert not (tmp_path / "run").exists()


def test_cli_notebook_folder_without_notebooks(tmp_path, run_cli):
    empty = tmp_path / "books"
    empty.mkdir()
    (empty / "notes.ipynb").write_text("{}")  # not NN_name.ipynb
    code, err = run_cli("run", "--notebooks", empty, "--run-dir", tmp_path / "run", "--no-report")
    assert code == 2
    assert f"{empty} holds no NN_name.ipynb notebook" in err and "e.g. 20_convert.ipynb" in err
    assert not (tmp_path / "run").exists()


def test_cli_parameters_cell_that_is_not_python(tmp_path, run_cli):
    books = tmp_path / "books"
    books.mkdir()
    write_notebook(books / "01_broken.ipynb", 'run_dir = "outputs/sample"\nimgsz = (32')
    code, err = run_cli("run", "--notebooks", books, "--run-dir", tmp_path / "run", "--no-report")
    assert code == 2
    assert "The parameters cell of 01_broken.ipynb is not valid Python (line 2); fix it." in err


@pytest.mark.parametrize("content, message", [
    ("common:\n  imgsz: [32\n", r"Parameters file \S+p.yaml is not valid YAML \(while parsing .*\); fix the line it names"),
    (None, r"Parameters file \S+p.yaml does not exist; pass --params an existing YAML file \(see params/\)"),
], ids=["yaml", "missing"])
def test_cli_bad_parameters_file(tmp_path, run_cli, content, message):
    params = write_yaml(tmp_path / "p.yaml", content) if content else tmp_path / "p.yaml"
    code, err = run_cli("run", "--params", params, "--run-dir", tmp_path / "run")
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_executing_a_notebook_that_does_not_exist(tmp_path):
    with pytest.raises(WorkbookError, match=r"Notebook \S+/99_typo.ipynb does not exist; choose one of \[.*'20_convert.ipynb'"):
        execute.execute(tmp_path / "99_typo.ipynb", tmp_path / "run")


# ----------------------------------------------------------------------------- variants files

@pytest.mark.parametrize("content, message", [
    ({"grid": ["20_convert.calib_images", 10]},
     r"Variants file \S+s.yaml: 'grid:' must map NOTEBOOK.PARAMETER to a list of values, e.g. "
     r"20_convert.calib_images: \[10, 50\]"),
    ({"grid": {"20_convert.calib_images": []}},
     r"Grid key '20_convert.calib_images' in variants file \S+s.yaml has an empty list; give it at least one value"),
    ({"grid": {"20_convert.calib_images": [2, 4]}, "variants": {"calib_images-2": {"20_convert": {"calib_images": 3}}}},
     r"Variant 'calib_images-2' has the name of a grid combination; rename it"),
    ({"variants": {"small": {"20_convert": 8}}},
     r"Variant 'small' section '20_convert' must be a mapping of parameter: value"),
    ({"variants": {"my variant": {"20_convert": {"calib_images": 8}}}},
     r"Variant 'my variant' must be a simple name mapped to parameter sections \(e\.g\. rk3566: \{20_convert: "
     r"\{target_platform: rk3566\}\}\)"),
], ids=["grid-not-mapping", "grid-empty-list", "name-collision", "section-not-mapping", "name-not-simple"])
def test_cli_bad_variants_file(tmp_path, run_cli, content, message):
    variants_file = write_yaml(tmp_path / "s.yaml", content)
    code, err = run_cli("run", "--variants", variants_file, "--run-dir", tmp_path / "sw")
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "sw").exists()


def test_cli_variants_file_that_does_not_exist(tmp_path, run_cli):
    code, err = run_cli("run", "--variants", tmp_path / "s.yaml", "--run-dir", tmp_path / "sw")
    message = (r"Variants file \S+/s.yaml does not exist; pass --variants an existing YAML file "
               r"\(see params/variants_platforms.yaml\)")
    assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "sw").exists()


def test_cli_old_sweep_option_still_runs_the_variants_file(tmp_path, run_cli):
    """Users' scripts still pass --sweep: one line says it is now --variants, then the file is read as with --variants."""
    code, err = run_cli("run", "--sweep", tmp_path / "s.yaml", "--run-dir", tmp_path / "sw")
    lines = err.splitlines()
    assert code == 2 and lines[0] == "note: --sweep is now --variants (same file, same behaviour); please use --variants."
    assert re.search(r"Variants file \S+/s.yaml does not exist; pass --variants an existing YAML file", lines[1]), err
    assert len(lines) == 2 and not (tmp_path / "sw").exists()


# ----------------------------------------------------------------------------- notebook 20: options and model files

NB20 = {"mean_values": [0, 0, 0], "std_values": [255, 255, 255], "target_platform": "rk3588"}


@pytest.mark.parametrize("changes, message", [
    ({"dynamic_input": [1, 3, 16, 16]}, r"dynamic_input=\[1, 3, 16, 16\] must be None or a list of input-shape sets, "
                                        r"e\.g\. \[\[\[1, 3, 224, 224\]\]"),
    ({"op_target": {"Conv_0": "dsp"}}, r"op_target=\{'Conv_0': 'dsp'\} must be None or a dict \{op name: 'cpu' \| "
                                       r"'npu' \| 'gpu' \| 'auto'\}"),
    ({"custom_string": 7}, r"custom_string=7 must be None or a string \(at most 1024 characters\)"),
    ({"custom_string": "x" * 1025}, r"custom_string is 1025 characters long; shorten it to at most 1024"),
], ids=["dynamic_input", "op_target", "custom_string-type", "custom_string-length"])
def test_notebook20_options_are_checked(changes, message):
    """Notebook 20: ConvertConfig.from_dict(params).validate(channels), before the toolkit is started."""
    with pytest.raises(WorkbookError, match=message):
        ConvertConfig.from_dict({**NB20, **changes}).validate(3)


def test_source_for_pytorch_when_notebook10_got_an_onnx(tmp_path):
    run = Run.at(tmp_path / "run")
    (run.model / "model.onnx").write_bytes(b"onnx")  # notebook 10 given an .onnx writes no TorchScript
    with pytest.raises(WorkbookError, match=r"\S+/model/model.torchscript does not exist because notebook 10 was given "
                                            r"an ONNX model; "
                                            r"use load_path='onnx' \(or give notebook 10 a \.pt\)"):
        convert.source_for(run, "pytorch")
    with pytest.raises(WorkbookError, match=r"load_path='tflite' is unknown; use 'onnx' \(load_onnx\) or 'pytorch'"):
        convert.source_for(run, "tflite")


def test_load_arguments_for_a_missing_or_unknown_model_file(tmp_path):
    with pytest.raises(WorkbookError, match=r"Model file \S+/gone.onnx does not exist; run notebooks/10_export.ipynb "
                                            r"or pass an existing"):
        convert.load_arguments(tmp_path / "gone.onnx", 16)
    odd = tmp_path / "model.tflite"
    odd.write_bytes(b"TFL3")
    with pytest.raises(WorkbookError, match=r"Model file \S+/model.tflite has unknown type .tflite; pass a .onnx or a "
                                            r"TorchScript"):
        convert.load_arguments(odd, 16)
    with pytest.raises(WorkbookError, match=r"load_path='tflite' is unknown; use 'onnx' \(load_onnx\) or 'pytorch' "
                                            r"\(load_pytorch with TorchScript\)"):
        convert.load_arguments(odd, 16, "tflite")


def test_build_on_a_missing_model_and_without_a_calibration_list(tmp_path, tiny_onnx):
    """Notebook 50 rebuilds with convert.build_on; the checks come before any toolkit call (rk=None)."""
    cfg = ConvertConfig.from_dict(NB20)
    with pytest.raises(WorkbookError, match=r"Model file \S+/model.onnx does not exist; run notebooks/10_export.ipynb"):
        convert.build_on(None, tmp_path / "model.onnx", cfg, None, 16)
    with pytest.raises(WorkbookError, match=r"do_quantization=True needs a calibration list; pass dataset= a text file "
                                            r"with one image path per line"):
        convert.build_on(None, tiny_onnx, cfg, None, 16)


def test_quantization_demo_on_a_model_without_conv_weights(tmp_path):
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)).eval()
    path = tmp_path / "mlp.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 4, 4), str(path), opset_version=12, input_names=["images"])
    with pytest.raises(WorkbookError, match=r"ONNX file \S+/mlp.onnx has no 4-D conv weight with >= 8 output channels "
                                            r"to demonstrate "
                                            r"quantization on; skip this demo cell"):
        quantize_demo.pick_weight(path)


# ----------------------------------------------------------------------------- notebook 60: the hybrid cfg

CFG_BODY = ("quantize_parameters:\n    images:\n        qtype: asymmetric_quantized\n        dtype: int8\n"
            "    relu_out:\n        qtype: asymmetric_quantized\n        dtype: int8\n")


def step1_folder(tmp_path, cfg_text: str):
    """A step 1 folder as hybrid_quantization_step1 leaves it (the .model is not read on these paths)."""
    folder = tmp_path / "step1"
    folder.mkdir()
    (folder / "m.model").write_bytes(b"not a graph")
    (folder / "m.data").write_bytes(b"\0")
    (folder / "m.quantization.cfg").write_text(cfg_text)
    return hybrid.find_step1(folder)


def test_hybrid_cfg_that_is_missing(tmp_path):
    with pytest.raises(WorkbookError, match=r"Quantization cfg \S+/gone.quantization.cfg does not exist; run hybrid "
                                            r"step 1 to create it"):
        hybrid.read_cfg(tmp_path / "gone.quantization.cfg")


def test_hybrid_cfg_without_quantize_parameters(tmp_path):
    files = step1_folder(tmp_path, "custom_quantize_layers: {}\n")
    with pytest.raises(WorkbookError, match=r"Quantization cfg \S+/m.quantization.cfg has no quantize_parameters "
                                            r"section; use the "
                                            r"\.quantization\.cfg written by hybrid step 1"):
        hybrid.write_cfg(files, ["relu_out"])
    assert not files.edited_cfg.exists()


def test_hybrid_cfg_with_custom_layers_as_a_list(tmp_path):
    """Notebook 60 reads the cfg as the user left it (hybrid.read_cfg(files.cfg))."""
    files = step1_folder(tmp_path, "custom_quantize_layers:\n    - relu_out\n" + CFG_BODY)
    with pytest.raises(WorkbookError, match=r"custom_quantize_layers in \S+/m.quantization.cfg is not a mapping; write "
                                            r"it as a block "
                                            r"mapping, one '    <tensor>: float16' line each"):
        hybrid.read_cfg(files.cfg)


def test_hybrid_cfg_with_two_custom_sections(tmp_path):
    files = step1_folder(tmp_path, "custom_quantize_layers: {}\n" + CFG_BODY + "custom_quantize_layers: {}\n")
    with pytest.raises(WorkbookError, match=r"\S+/m.quantization.cfg has more than one custom_quantize_layers section, "
                                            r"so the edit reads "
                                            r"back as \{\}; keep one section \(or re-run hybrid step 1\)"):
        hybrid.write_cfg(files, ["relu_out"])
    assert not files.edited_cfg.exists()


# ----------------------------------------------------------------------------- notebook 10: the user's model file

def test_task_check(tmp_path, tiny_onnx):
    with pytest.raises(WorkbookError, match=r"task='obb' is not a task of this workbook; use one of classify, detect, segment, "
                                            r"pose"):
        identify.check_task(tiny_onnx, "obb")
    garbage = tmp_path / "best.pt"
    garbage.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.raises(WorkbookError, match=r"Model file \S+/best.pt cannot be loaded as a PyTorch checkpoint \(\w+\); "
                                            r"pass an ultralytics .pt or an .onnx"):
        identify.check_task(garbage, "classify")


def test_export_of_a_torchscript_torch_cannot_load(tmp_path):
    import zipfile

    fake = tmp_path / "model.torchscript"
    with zipfile.ZipFile(fake, "w") as zf:  # looks like a torch.jit.save archive (code/ inside), but is not one
        zf.writestr("model/code/__torch__.py", "class Broken(")
        zf.writestr("model/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(WorkbookError, match=r"TorchScript \S+/model.torchscript cannot be loaded by torch 2\.\d+\.\d+\S* \(.+\); "
                                            r"re-export it with this torch version"):
        exporter.export_model(fake, tmp_path / "model", 16)
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_export_of_a_torchscript_at_the_wrong_size(tmp_path):
    import torch

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)).eval()  # only 8x8 inputs fit
    ts = tmp_path / "fixed8.torchscript"
    torch.jit.trace(net, torch.zeros(1, 3, 8, 8)).save(str(ts))
    with pytest.raises(WorkbookError, match=r"TorchScript \S+/fixed8.torchscript accepts neither a 1x3x16x16 nor a "
                                            r"1x1x16x16 input \(.+\); "
                                            r"set imgsz to the size it was traced at"):
        exporter.export_model(ts, tmp_path / "model", 16)
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_onnx_file_missing(tmp_path):
    with pytest.raises(WorkbookError, match=r"ONNX file \S+/model.onnx does not exist; run notebooks/10_export.ipynb "
                                            r"or pass an existing .onnx path"):
        exporter.check_onnx(tmp_path / "model.onnx")



# ----------------------------------------------------------------------------- detection: data, sample, export

def detect_data(tmp_path, labels: dict[str, str] | None = None, images: int = 1, names=("cat",)) -> Path:
    """A YOLO data.yaml with `images` val images; labels: {image stem: label file text}."""
    root = tmp_path / "shapes"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for i in range(images):
        cv2.imwrite(str(root / "images" / "val" / f"{i}.png"), np.full((16, 16, 3), 80, np.uint8))
    for stem, text in (labels or {}).items():
        (root / "labels" / "val" / f"{stem}.txt").write_text(text)
    return Path(write_yaml(root / "data.yaml",
                           {"path": str(root), "train": "images/val", "val": "images/val", "names": dict(enumerate(names))}))


def test_detection_data_file_missing(tmp_path):
    from helpers.tasks.detect import labels

    with pytest.raises(WorkbookError, match=r"Detection data file \S+/data.yaml does not exist; pass a data.yaml with "
                                            r"train:, val: and names:"):
        labels.read_split(tmp_path / "data.yaml")


def test_detection_split_folder_missing(tmp_path):
    from helpers.tasks.detect import labels

    data_yaml = detect_data(tmp_path)
    cfg = yaml.safe_load(data_yaml.read_text())
    write_yaml(data_yaml, {**cfg, "val": "images/valid"})
    with pytest.raises(WorkbookError, match=r"The val images folder \S+/images/valid of \S+/data.yaml does not exist; "
                                            r"fix 'val:' in the data.yaml"):
        labels.read_split(data_yaml)


def test_detection_image_that_cannot_be_read(tmp_path):
    from helpers.tasks.detect import labels

    data_yaml = detect_data(tmp_path)
    (data_yaml.parent / "images" / "val" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(WorkbookError, match=r"Image \S+/images/val/broken.jpg cannot be read; replace or remove it"):
        labels.read_split(data_yaml)


def test_detection_label_that_is_a_segment(tmp_path):
    from helpers.tasks.detect import labels

    data_yaml = detect_data(tmp_path, {"0": "0 0.1 0.1 0.5 0.1 0.5 0.5\n"})
    with pytest.raises(WorkbookError, match=r"Label file \S+/labels/val/0.txt has a line that is not 'class cx cy w h' "
                                            r"\(5 numbers\); "
                                            r"detection labels only \(no segments\)"):
        labels.read_split(data_yaml)


def test_detection_labels_with_class_ids_outside_the_data_names(tmp_path):
    from helpers.tasks.detect import labels

    data_yaml = detect_data(tmp_path, {"0": "0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n", "1": "3 0.4 0.4 0.1 0.1\n"}, images=2)
    with pytest.raises(WorkbookError, match=r"^2 labels in 2 files \(e\.g\. \S+/labels/val/\d.txt\) use class ids "
                                            r"\[3\], outside \S+/data.yaml's "
                                            r"1 classes \(0\.\.0\); fix the labels or use a model trained on these classes\.$"):
        labels.read_split(data_yaml)


def test_detection_sample_too_small_and_data_file_missing(tmp_path):
    from helpers.steps.export import detect_sample
    from helpers.tasks.detect import sample

    with pytest.raises(WorkbookError, match=r"images=1 is too few for a train and a val split; use images >= 2"):
        sample.write_detect_sample(tmp_path / "shapes", images=1)
    assert not (tmp_path / "shapes").exists()
    with pytest.raises(WorkbookError, match=r"Detection data file \S+/mine.yaml does not exist; pass a data.yaml "
                                            r"\(train:, val:, names:\) "
                                            r"or leave it empty for the generated sample"):
        detect_sample.prepare_detect_model(Run.at(tmp_path / "run"), model="", data=tmp_path / "mine.yaml")


@pytest.fixture(scope="module")
def untrained_detector(tmp_path_factory):
    """YOLO11n detect built from its YAML (untrained: the export checks do not need weights)."""
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("det") / "yolo11n.pt"
    YOLO("yolo11n.yaml").save(str(path))
    return path


def test_detector_export_opset_and_image_size(tmp_path, untrained_detector):
    from helpers.steps.export.detect_head import export_detector

    with pytest.raises(WorkbookError, match=r"opset=20 is above what rknn-toolkit2 accepts; use opset <= 19"):
        export_detector(untrained_detector, tmp_path / "d.onnx", 128, opset=20)
    with pytest.raises(WorkbookError, match=r"imgsz=100 is not a multiple of the detector's largest stride 32; use e\.g\. 96"):
        export_detector(untrained_detector, tmp_path / "d.onnx", 100)
    assert not (tmp_path / "d.onnx").exists()


def test_classification_export_of_a_detector(tmp_path, untrained_detector):
    """exporter.export_model is the classification export: an ultralytics detector is refused by name."""
    with pytest.raises(WorkbookError, match=r"Model \S+/yolo11n.pt is an ultralytics detect model, not a classifier; leave task "
                                            r"empty \(it is read from the model\) or set task: detect\.$"):
        exporter.export_model(untrained_detector, tmp_path / "model", 64)
    assert not (tmp_path / "model" / "model.onnx").exists()


def test_detector_without_a_yolo_detect_head(tmp_path):
    """RT-DETR is an ultralytics detector (task detect) whose last layer is a transformer decoder (a tiny
    one here: a few strided convs feeding a one-layer RTDETRDecoder)."""
    from ultralytics import RTDETR

    from helpers.steps.export.detect_head import export_detector

    cfg = tmp_path / "rtdetr-tiny.yaml"
    cfg.write_text("nc: 2\nbackbone:\n" + "".join(f"  - [-1, 1, Conv, [{c}, 3, 2]]\n" for c in (8, 16, 16, 16, 16))
                   # hidden 32, 10 queries, 1 point, 2 heads, 1 layer
                   + "head:\n  - [[2, 3, 4], 1, RTDETRDecoder, [nc, 32, 10, 1, 2, 1]]\n")
    pt = tmp_path / "rtdetr-tiny.pt"
    RTDETR(str(cfg)).save(str(pt))
    with pytest.raises(WorkbookError, match=r"The last layer of this model is RTDETRDecoder, not a YOLO Detect head "
                                            r"with box and class "
                                            r"branches; .*pass such a detect \.pt\.$"):
        export_detector(pt, tmp_path / "d.onnx", 128)
    assert not (tmp_path / "d.onnx").exists()


# ----------------------------------------------------------------------------- evaluation, analysis, detection outputs

def _result(name: str, n: int):
    from helpers.tasks.classify.metric import EvalResult

    return EvalResult(name, np.eye(3, dtype=np.float32)[np.arange(n) % 3], np.arange(n) % 3, 1.0, 1.0, 0.1, 10.0)


def test_metrics_roles_must_match_the_results(tmp_path):
    from helpers.steps import evaluate

    with pytest.raises(ValueError, match=r"roles=\['fp32', 'npu'\] must give one of \('fp32', 'int8', .*\) for each of "
                                         r"the 2 results"):
        evaluate.write_metrics(tmp_path / "metrics.json", [_result("FP32", 3), _result("INT8", 3)], None, roles=["fp32", "npu"])
    assert not (tmp_path / "metrics.json").exists()



TABLE = """layer_name                       simulator_error
                                 entire          single
                                 cos      euc    cos      euc
-----------------------------------------------------------------
[Input] images                   1.00000 | 0.0   1.00000 | 0.0
[Relu] {name}                    0.99900 | 0.1   0.99900 | 0.1
"""


def test_error_analysis_header_in_another_form(tmp_path):
    path = tmp_path / "error_analysis.txt"
    path.write_text(TABLE.format(name="relu").replace("cos      euc    cos      euc", "cosine   euclidean"))
    with pytest.raises(WorkbookError, match=r"The header of the error analysis table is not in the expected form "
                                            r"\(line 1: 'layer_name\s+simulator_error'\); "
                                            r"pass an error_analysis.txt written by rknn-toolkit2 accuracy_analysis"):
        analysis.parse_error_analysis(path)


def test_combining_error_analysis_tables(tmp_path):
    tables = []
    for name in ("relu_a", "relu_b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "error_analysis.txt").write_text(TABLE.format(name=name))
        tables.append(analysis.parse_error_analysis(tmp_path / name))
    assert len(analysis.combine(tables[:1])) == 2
    with pytest.raises(WorkbookError, match=r"The error analysis tables list different layers; combine only tables of "
                                            r"the same model"):
        analysis.combine(tables)
    with pytest.raises(WorkbookError, match=r"No error analysis tables to combine; run accuracy_analysis on at least one image"):
        analysis.combine([])


def test_accuracy_analysis_without_images_and_a_bad_sweep_cell(tmp_path):
    """Notebook 50 with analysis_images: 0, and a sweep grid cell that is not an [algorithm, method] pair
    (both are refused before the toolkit object is touched, so rk is not needed)."""
    with pytest.raises(WorkbookError, match=r"accuracy_analysis needs at least one image; set analysis_images >= 1"):
        analysis.run_accuracy_analysis(None, [], tmp_path / "snapshot")
    with pytest.raises(WorkbookError, match=r"Sweep cell \['mmse'\] must be an \[algorithm, method\] pair, e\.g\. "
                                            r"\['mmse', 'channel'\]"):
        analysis.parse_grid([["mmse"]])


def test_detector_outputs_of_an_unknown_layout():
    from helpers.tasks.detect import postprocess

    outs = [np.zeros((1, 64, 16, 16), np.float32), np.zeros((1, 3, 16, 16), np.float32)]
    with pytest.raises(ValueError, match=r"Detector gave 2 outputs; expected 1 \(stock head\) or 3 per stride \(split "
                                         r"head: box, class, sum\)"):
        postprocess.layout(outs)


def test_detection_image_that_is_gone(tmp_path):
    from helpers.tasks.detect import images as simulate

    with pytest.raises(ValueError, match=r"Cannot read image \S+/gone.jpg; check the file exists and is a valid image"):
        simulate.load_letterboxed([tmp_path / "gone.jpg"], 128)


# ------------------------------------------------------------------- errors raised in a child process (helpers.core.isolate)

def test_toolkit_failure_in_the_child_comes_back_as_rknn_error(tmp_path):
    """The sweep converts in a child process: the toolkit's refusal reaches the parent as RknnError with its log."""
    import onnx
    from onnx import TensorProto, helper

    from helpers.core.errors import RknnError
    from helpers.core.isolate import run_isolated

    graph = helper.make_graph([helper.make_node("FooBar", ["images"], ["out"], domain="com.example")], "g",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 16, 16])])
    model = tmp_path / "custom_op.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12), helper.make_opsetid("com.example", 1)]),
              str(model))
    config = {"mean_values": [0, 0, 0], "std_values": [255, 255, 255], "target_platform": "rk3588", "do_quantization": False}
    message = r"rknn-toolkit2 (load_onnx|build) failed: .*FooBar.* \(full log: \S+/convert.log\)"
    with pytest.raises(RknnError, match=message) as info:
        run_isolated("helpers.steps.convert:convert_isolated", {"source": str(model), "config": config, "dataset": None,
                     "out_rknn": str(tmp_path / "m.rknn"), "log_path": str(tmp_path / "convert.log"), "input_size": 16},
                         tmp_path / "child.log")
    assert info.value.log_path == tmp_path / "convert.log" and info.value.log_tail
    assert not list(tmp_path.glob("*.rknn"))


def test_crash_inside_a_nested_child_keeps_its_type_and_cause(tmp_path):
    from helpers.core.errors import ToolkitCrash
    from helpers.core.isolate import run_isolated

    with pytest.raises(ToolkitCrash, match=r"^abort inside crashed \(killed by SIGABRT\); likely cause: ") as info:
        run_isolated("helpers.core.isolate:run_isolated",
                     {"func": "os:abort", "kwargs": {}, "log_path": str(tmp_path / "inner.log"),
                                                      "what": "abort inside"}, tmp_path / "outer.log")
    assert info.value.how == "killed by SIGABRT" and "Fatal Python error: Aborted" in info.value.log_tail


# ----------------------------------------------------------------------------- notebook 40: the deployment bundle

def test_bundle_of_a_model_replaced_after_conversion(tmp_path, tiny_onnx, tiny_images):
    """rknn/model.rknn built for rk3566 while convert.json says rk3588 (a file copied in afterwards)."""
    from board_support import converted_run

    from helpers.deploy import bundle as deploy

    run = converted_run(tmp_path / "run", tiny_onnx, tiny_images, "rk3566")
    rec = json.loads((run.rknn / "convert.json").read_text())
    rec["config"]["target_platform"] = "rk3588"
    (run.rknn / "convert.json").write_text(json.dumps(rec))
    with pytest.raises(WorkbookError, match=r"rknn/model.rknn was built for rk3566 but rknn/convert.json records "
                                            r"rk3588; re-run notebooks/20_convert.ipynb"):
        deploy.build_bundle(run, read_record(run), ["a", "b", "c"])
    assert not (run.board / "deploy").exists() and not (run.board / "deploy.tar.gz").exists()


def test_detector_demo_into_a_folder_that_is_not_a_codegen_project(tmp_path):
    from helpers.deploy import codegen

    with pytest.raises(WorkbookError, match=r"\S+/cpp has no CMakeLists.txt, so it is not the toolkit's codegen "
                                            r"project; generate it with "
                                            r"generate_cpp_demo \(codegen=True in notebook 40\)"):
        codegen.add_detect_demo(tmp_path / "cpp")
    assert not (tmp_path / "cpp").exists()


def test_build_with_a_negative_retry_count(tmp_path, tiny_onnx):
    """helpers.toolkit.session.RKNN(max_retries=-1) would never call the toolkit's build: it says so instead."""
    from helpers.toolkit.session import RKNN

    with RKNN(tmp_path / "build.log", max_retries=-1) as rk:
        rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform="rk3588")
        rk.load_onnx(model=str(tiny_onnx))
        with pytest.raises(ValueError, match=r"max_retries=-1 leaves no build attempt; pass max_retries >= 0 \(0 = "
                                             r"build once, no retry\)"):
            rk.build(do_quantization=False)


def test_detection_split_folder_without_images(tmp_path):
    from helpers.tasks.detect import labels

    data_yaml = detect_data(tmp_path, images=0)
    (data_yaml.parent / "images" / "val" / "notes.txt").write_text("no pictures here")
    with pytest.raises(WorkbookError, match=r"The val images folder \S+/images/val of \S+/data.yaml has no images "
                                            r"\(\.\w+(, \.\w+)*\); "
                                            r"add images or fix 'val:'"):
        labels.read_split(data_yaml)
