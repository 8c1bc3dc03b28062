"""helpers.core.isolate: a real child process that returns, raises, aborts or hangs."""
from __future__ import annotations

import pickle

import pytest

from helpers.core.errors import RknnError, ToolkitCrash, WorkbookError
from helpers.core.isolate import likely_cause, run_isolated


def test_result_comes_back_from_the_child(tmp_path):
    assert run_isolated("json:loads", {"s": "[1, 2.5, \"x\"]"}, tmp_path / "child.log") == [1, 2.5, "x"]


def test_aborting_child_becomes_one_line_with_signal_and_cause(tmp_path):
    log = tmp_path / "child.log"
    with pytest.raises(ToolkitCrash) as info:
        run_isolated("os:abort", {}, log, what="abort test")
    first = str(info.value).splitlines()[0]
    assert first.startswith("abort test crashed (killed by SIGABRT); likely cause: native code aborted")
    assert "try another quantized_dtype" in first
    assert "Fatal Python error: Aborted" in info.value.log_tail  # the child's faulthandler output, from the log
    assert pickle.loads(pickle.dumps(info.value)).how == "killed by SIGABRT"


def test_workbook_error_in_child_keeps_its_type_and_sentence(tmp_path):
    with pytest.raises(WorkbookError, match=r"func='nocolon' must be 'package.module:function'") as info:
        run_isolated("helpers.core.isolate:run_isolated",
                     {"func": "nocolon", "kwargs": {}, "log_path": str(tmp_path / "inner.log")}, tmp_path / "child.log")
    assert not isinstance(info.value, ToolkitCrash)


def test_other_exception_in_child_names_type_and_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"ZeroDivisionError.*traceback in") as info:
        run_isolated("fractions:Fraction", {"numerator": 1, "denominator": 0}, tmp_path / "child.log")
    assert not isinstance(info.value, RknnError)
    assert "ZeroDivisionError" in (tmp_path / "child.log").read_text()


def test_hanging_child_is_stopped_at_the_timeout(tmp_path):
    with pytest.raises(ToolkitCrash, match=r"crashed \(no result within 1 s, stopped\); likely cause: the call hung"):
        run_isolated("subprocess:call", {"args": ["sleep", "30"]}, tmp_path / "child.log", timeout=1)


def test_rknn_error_survives_pickling_for_process_pools():
    err = pickle.loads(pickle.dumps(RknnError("build", "returned -1", None, "E tail")))
    assert (err.call, err.reason, err.log_tail) == ("build", "returned -1", "E tail")


def test_likely_cause_reads_native_abort_lines():
    how, cause = likely_cause(-6, "I rknn building ...\nmunmap_chunk(): invalid pointer\n")
    assert how == "killed by SIGABRT"
    assert "munmap_chunk(): invalid pointer" in cause and "corrupted its memory" in cause
    assert likely_cause(-9, "")[1].startswith("killed from outside, most often by the out-of-memory killer")
    assert likely_cause(3, "")[0] == "exit code 3"
