"""The toolkit wrapper against the real rknn-toolkit2 on a tiny model built in the test."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from helpers.core.errors import RknnError, WorkbookError
from helpers.tasks.data import write_calibration_list
from helpers.toolkit.session import RKNN, hinted_rules


def _configure(rk, platform="rk3588"):
    rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform=platform)


def test_success_path_converts_runs_and_logs(tiny_onnx, tiny_images, tmp_path, capfd, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    dataset = write_calibration_list(tiny_images, tmp_path / "calib.txt")
    log = tmp_path / "logs" / "build.log"
    with RKNN(log) as rk:
        _configure(rk)
        rk.load_onnx(str(tiny_onnx))
        rk.build(do_quantization=True, dataset=str(dataset))
        rk.export_rknn(str(tmp_path / "tiny.rknn"))
        rk.init_runtime(target=None)
        out = rk.inference(inputs=[np.full((16, 16, 3), 128, np.uint8)], data_format="nhwc")
    assert (tmp_path / "tiny.rknn").stat().st_size > 0
    assert out[0].shape == (1, 3) and np.isfinite(out[0]).all()
    text = log.read_text()
    assert "rknn-toolkit2 version: 2.5.0" in text and "build" in text.lower()
    assert list(elsewhere.iterdir()) == [], "the toolkit's scratch files stay out of the caller's directory"
    assert list((tmp_path / "logs").glob("check*.onnx")), "they land in the step's work folder instead"
    captured = capfd.readouterr()
    assert "D RKNN" not in captured.out + captured.err, "toolkit chatter must go to the log, not the notebook"
    # the toolkit's console handlers are gone, its file handler stays
    handlers = logging.getLogger("rknnLogger").handlers
    assert not any(type(h) is logging.StreamHandler for h in handlers)


def test_missing_model_file_raises_with_log_tail(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(RknnError) as info:
        with RKNN(tmp_path / "load.log") as rk:
            _configure(rk)
            rk.load_onnx(str(missing))
    err = info.value
    assert err.call == "load_onnx"
    assert "nope.onnx" in err.reason and "not exists" in err.reason
    assert "nope.onnx" in err.log_tail and err.log_path == (tmp_path / "load.log").resolve()
    assert "last lines of the toolkit log" in str(err)


def test_invalid_target_platform_raises(tmp_path):
    with pytest.raises(RknnError) as info:
        with RKNN(tmp_path / "cfg.log") as rk:
            _configure(rk, platform="rk9999")
    assert info.value.call == "config"
    assert "Invalid target_platform 'rk9999'" in info.value.reason


def test_empty_calibration_list_raises(tiny_onnx, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(RknnError) as info:
        with RKNN(tmp_path / "build.log") as rk:
            _configure(rk)
            rk.load_onnx(str(tiny_onnx))
            rk.build(do_quantization=True, dataset=str(empty))
    assert info.value.call == "build"
    assert "input num: 0" in info.value.reason
    # and the workbook's own list writer refuses to write such a list in the first place
    with pytest.raises(WorkbookError, match="would be empty"):
        write_calibration_list([], tmp_path / "calib.txt")


def test_minus_one_return_becomes_error(tmp_path):
    """export_rknn before build returns -1 (no exception): the wrapper raises all the same."""
    with pytest.raises(RknnError) as info:
        with RKNN(tmp_path / "export.log") as rk:
            rk.export_rknn(str(tmp_path / "x.rknn"))
    assert info.value.call == "export_rknn" and info.value.reason == "returned -1"
    assert not (tmp_path / "x.rknn").exists()


def test_inference_without_runtime_is_an_error(tmp_path):
    """inference() returns None when there is no runtime; the wrapper treats that as failure."""
    with pytest.raises(RknnError, match="inference failed: returned None"):
        with RKNN(tmp_path / "inf.log") as rk:
            rk.inference(inputs=[np.zeros((16, 16, 3), np.uint8)])


def test_release_happens_even_when_the_body_fails(tmp_path):
    released = []
    with pytest.raises(ZeroDivisionError):
        with RKNN(tmp_path / "x.log") as rk:
            real_release = rk._rknn.release
            rk._rknn.release = lambda: (released.append(True), real_release())  # observe the real call
            1 / 0
    assert released == [True]


def test_each_step_log_holds_only_its_own_step(tmp_path):
    """The toolkit's logger is global: a finished step's log must not collect the next step's lines."""
    with RKNN(tmp_path / "first.log") as rk:
        rk.config(target_platform="rk3588")
    first = (tmp_path / "first.log").read_text()
    with RKNN(tmp_path / "second.log") as rk:
        rk.config(target_platform="rk3566")
    assert (tmp_path / "first.log").read_text() == first
    assert "second.log" in (tmp_path / "second.log").read_text()


def test_hinted_rules_reads_the_toolkits_suggestion():
    log = ("\x1b[1;33mW\x1b[0m \x1b[1;33mYou can add "
           "disable_rules=['fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa'] in rknn.config() "
           "to temporarily disable the error rule!\nW You can add disable_rules=[\"seperate_conv_rs_split\", "
           "'fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa']")
    assert hinted_rules(log) == ["fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa", "seperate_conv_rs_split"]
    assert hinted_rules("E build: IndexError: list index out of range") == []


def test_checked_rknn_mirrors_the_five_calls_and_releases_once(tiny_onnx, tiny_images, tmp_path):
    """helpers.toolkit.session.RKNN: config/load_onnx/build/export_rknn/release as in the tutorial, on the real toolkit."""
    dataset = tmp_path / "calib.txt"
    dataset.write_text("\n".join(str(p) for p in tiny_images[:2]) + "\n")
    rk = RKNN(verbose_file=tmp_path / "build.log")
    rk.config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]], target_platform="rk3588")
    rk.load_onnx(model=str(tiny_onnx))
    rk.build(do_quantization=True, dataset=str(dataset))
    rk.export_rknn(str(tmp_path / "m.rknn"))
    rk.release()
    rk.release()
    assert (tmp_path / "m.rknn").read_bytes()[:4] == b"RKNN" and rk.auto_disabled == [] and rk.disable_rules == []
    assert "rknn building done" in (tmp_path / "build.log").read_text()
    with pytest.raises(RknnError, match=r"rknn-toolkit2 load_onnx failed"):
        with RKNN(verbose_file=tmp_path / "bad.log") as bad:
            bad.config(target_platform="rk3588")
            bad.load_onnx(model=str(tmp_path / "missing.onnx"))
