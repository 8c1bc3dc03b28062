"""The runners (helpers.backends: ONNX Runtime, real toolkit simulator) and the classifier's evaluation loop
(helpers.tasks.classify.metric; the simulator is built by helpers.steps.evaluate)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from helpers.backends.base import Runner
from helpers.core.errors import WorkbookError
from helpers.steps import evaluate
from helpers.tasks.classify import metric
from helpers.tasks.classify.metric import scores_of
from helpers.tasks.data import LabelledImages, write_calibration_list
from helpers.tasks.feeds import fp32_runner
from helpers.tasks.preprocess import read_rgb, to_float_nchw
from helpers.toolkit.options import ConvertConfig


@pytest.fixture(scope="module")
def setup(tiny_onnx, tiny_images, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    calib = write_calibration_list(tiny_images, tmp / "calibration.txt")
    pixels = np.stack([read_rgb(p, 16) for p in tiny_images])
    cfg = ConvertConfig(mean_values=[0, 0, 0], std_values=[255, 255, 255])
    return tmp, calib, pixels, cfg


def test_onnx_backend_is_onnxruntime_with_the_models_normalisation(tiny_onnx, setup):
    _, _, pixels, _ = setup
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    feeds = [{"images": to_float_nchw(pixels[i : i + 1], [0, 0, 0], [255, 255, 255])} for i in range(len(pixels))]
    expected = np.concatenate([sess.run(None, feed)[0] for feed in feeds])
    backend = fp32_runner(tiny_onnx, [0, 0, 0], [255, 255, 255])
    assert isinstance(backend, Runner)
    got = scores_of(backend.outputs(pixels))
    backend.close()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_simulator_batched_equals_one_at_a_time(tiny_onnx, setup):
    """rknn_batch_size=3 on 8 images (last batch padded) gives the same scores as batch 1."""
    tmp, calib, pixels, cfg = setup
    with evaluate.simulator(tiny_onnx, cfg, calib, 16, tmp / "sim1.log", batch=1) as one:
        single = scores_of(one.outputs(pixels))
    with evaluate.simulator(tiny_onnx, cfg, calib, 16, tmp / "sim3.log", batch=3) as three:
        assert isinstance(three, Runner)
        batched = scores_of(three.outputs(pixels))
    assert single.shape == batched.shape == (8, 3)
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_simulator_follows_fp32(tiny_onnx, tiny_images, setup):
    tmp, calib, pixels, cfg = setup
    fp32 = fp32_runner(tiny_onnx, [0, 0, 0], [255, 255, 255])
    labels = scores_of(fp32.outputs(pixels)).argmax(1)  # label every image with the FP32 prediction
    images = LabelledImages(list(tiny_images), labels, ["a", "b", "c"])
    ref = metric.evaluate(fp32, images, 16, batch=4, progress=False)
    with evaluate.simulator(tiny_onnx, cfg, calib, 16, tmp / "sim.log", batch=4) as sim:
        q = metric.evaluate(sim, images, 16, batch=4, progress=False)
    assert ref.top1 == 1.0 and ref.top5 == 1.0 and ref.images_per_s > 0
    cmp = metric.compare(ref, q)
    assert cmp.mean_cosine > 0.98 and len(cmp.cosine) == 8
    assert cmp.top1_agreement == q.top1  # the labels are the FP32 predictions
    assert "vs FP32 ONNX Runtime 100.00%: " in metric.verdict(cmp) and cmp.paired.text in metric.verdict(cmp)


def _result(name, scores, labels):
    scores, labels = np.asarray(scores, np.float32), np.asarray(labels)
    return metric.EvalResult(name, scores, labels, metric.topk_accuracy(scores, labels, 1), metric.topk_accuracy(scores, labels,
                                                                                                                 5), 1.0,
                             len(labels))


def test_metrics_on_known_scores():
    labels = [0, 1, 2, 2]
    a = _result("fp32", [[.9, .1, 0], [.2, .7, .1], [.1, .2, .7], [.5, .3, .2]], labels)
    b = _result("int8", [[.8, .2, 0], [.6, .3, .1], [.1, .2, .7], [.5, .3, .2]], labels)
    assert a.top1 == 0.75 and b.top1 == 0.5
    assert metric.topk_accuracy(a.scores, a.labels, 2) == 0.75
    cmp = metric.compare(a, b)
    assert cmp.top1_agreement == 0.75 and cmp.top1_delta_pt == -25.0
    assert cmp.cosine[2] == pytest.approx(1.0) and cmp.cosine[1] < 0.8
    # one image of four only FP32 gets right: -25 pt, but one discordant image cannot prove a loss (the one noise rule)
    assert cmp.paired.discordant == (1, 0) and cmp.paired.verdict == "within noise" and cmp.paired.difference_pt == -25.0
    assert metric.verdict(cmp).startswith(f"int8: top-1 50.00% vs fp32 75.00%: {cmp.paired.text}; the two agree on 75.0%")
    assert cmp.summary()["paired"] == cmp.paired.to_dict()
    assert metric.confusion_matrix(b.labels, b.predictions, 3).tolist() == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    with pytest.raises(ValueError, match="same images"):
        metric.compare(a, _result("x", [[1, 0, 0]], [0]))


def test_saved_predictions_reload(tmp_path, tiny_images):
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    rng = np.random.default_rng(0)
    a, b = _result("fp32", rng.random((8, 3)), labels), _result("int8", rng.random((8, 3)), labels)
    images = LabelledImages(list(tiny_images), labels, ["a", "b", "c"])
    evaluate.save_predictions(tmp_path / "p.npz", images, a, b)
    evaluate.write_metrics(tmp_path / "m.json", [a, b], metric.compare(a, b), {"batch": 4})
    results, cmp, extra = evaluate.load_run(tmp_path / "m.json", tmp_path / "p.npz")
    assert [r.name for r in results] == ["fp32", "int8"] and extra == {"batch": 4}
    np.testing.assert_array_equal(results[1].scores, b.scores)
    assert cmp.top1_agreement == metric.compare(a, b).top1_agreement
    assert not list(tmp_path.glob("*partial*")) and not list(tmp_path.glob("*.tmp"))


@pytest.fixture(scope="module")
def gray(tmp_path_factory):
    """A 1-channel 4-class conv net (ONNX) and a grayscale image folder, both built here."""
    import torch

    from helpers.steps.export.models import gray_cnn
    from helpers.tasks.data import load_split, write_gray_shapes

    tmp = tmp_path_factory.mktemp("gray")
    torch.manual_seed(0)
    onnx_path = tmp / "gray.onnx"
    torch.onnx.export(gray_cnn(4).eval(), torch.zeros(1, 1, 24, 24), str(onnx_path), opset_version=12, input_names=["images"])
    root = write_gray_shapes(tmp / "shapes", size=24, train_per_class=4, val_per_class=3)
    return onnx_path, load_split(root, "val"), load_split(root, "train")


def test_onnx_backend_feeds_a_grayscale_model_from_rgb_or_gray_batches(gray):
    onnx_path, val, _ = gray
    backend = fp32_runner(onnx_path, [0.0], [255.0])
    from_rgb = scores_of(backend.outputs(val.load(24)))
    from_gray = scores_of(backend.outputs(val.load(24, channels=1)))
    assert from_rgb.shape == (len(val), 4)
    np.testing.assert_array_equal(from_rgb, from_gray)


def test_mean_std_with_the_wrong_channel_count_is_one_sentence(gray, tiny_onnx):
    onnx_path, _, _ = gray
    with pytest.raises(WorkbookError, match=r"mean_values=\[0.0, 0.0, 0.0\] has 3 value\(s\) but model .*gray.onnx has 1 input "
                       r"channel") as err:
        fp32_runner(onnx_path, [0.0, 0.0, 0.0], [255.0, 255.0, 255.0])
    assert "\n" not in str(err.value)
    with pytest.raises(WorkbookError, match=r"std_values=\[255.0\] has 1 value\(s\) but model .* has 3 input channel"):
        fp32_runner(tiny_onnx, [0, 0, 0], [255.0])


def test_simulator_runs_a_grayscale_model_fed_rgb_batches(gray, tmp_path):
    onnx_path, val, train = gray
    calib = write_calibration_list(train.paths[:4], tmp_path / "calib.txt")
    cfg = ConvertConfig(mean_values=[0.0], std_values=[255.0])
    fp32 = metric.evaluate(fp32_runner(onnx_path, [0.0], [255.0]), val, 24, progress=False)
    with evaluate.simulator(onnx_path, cfg, calib, 24, tmp_path / "sim.log", batch=4) as sim:
        assert sim.channels == 1
        int8 = metric.evaluate(sim, val, 24, progress=False)  # evaluate reads RGB; the backend converts
    assert int8.scores.shape == fp32.scores.shape == (len(val), 4)
    assert metric.compare(fp32, int8).mean_cosine > 0.98


def test_outputs_that_do_not_match_the_class_folders_stop_before_scoring(tiny_onnx, gray):
    _, val, _ = gray  # 4 classes; tiny_onnx has 3 outputs
    with pytest.raises(WorkbookError, match=r"has 3 outputs but .* has 4 class folders") as err:
        metric.evaluate(fp32_runner(tiny_onnx, [0, 0, 0], [255, 255, 255]), val, 16, progress=False)
    assert "\n" not in str(err.value)
