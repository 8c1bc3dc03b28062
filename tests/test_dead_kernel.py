"""A notebook whose kernel dies inside the toolkit: the runner's failure report names the cell, shows the
step log's last lines and the likely cause, not only papermill's "Kernel died"."""
from __future__ import annotations

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers.core.paths import KERNEL_NAME
from helpers.runner import execute
from helpers.tasks.data import write_calibration_list

pytestmark = pytest.mark.slow


def test_dead_kernel_is_described_with_cell_log_and_cause(tiny_onnx, tiny_images, tmp_path):
    run = tmp_path / "run"
    calib = write_calibration_list(tiny_images[:2], tmp_path / "calibration.txt")
    crash = (  # rknn-toolkit2 2.5.0 aborts the process building w8a16 for rk3562 (measured)
        "from helpers.steps import convert\n"
        "from helpers.toolkit.options import ConvertConfig\n"
        "cfg = ConvertConfig([0, 0, 0], [255, 255, 255], target_platform='rk3562', quantized_dtype='w8a16')\n"
        f"convert.convert(r'{tiny_onnx}', cfg, r'{calib}', r'{run}/rknn/model.rknn', r'{run}/rknn/build.log', 16)"
    )
    nb = new_notebook(cells=[new_code_cell("run_dir = ''", metadata={"tags": ["parameters"]}), new_code_cell(crash)])
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": KERNEL_NAME, "language": "python"}
    path = tmp_path / "25_crash.ipynb"
    nbformat.write(nb, str(path))
    with pytest.raises(Exception) as info:
        execute.execute(path, run)
    assert type(info.value).__name__ == "DeadKernelError"
    text = execute.describe_failure("25_crash", info.value, run / "executed" / path.name)
    assert 'the notebook\'s kernel (its Python process) died: papermill says only "Kernel died"' in text
    assert "    | convert.convert(" in text, "the cell that was running"
    assert f"last lines of the step log {run / 'rknn' / 'build.log'}:" in text
    # the abort message varies between runs (native memory corruption): 'buffer overflow!!!', 'munmap_chunk(): ...'
    assert re.search(r"likely cause: (the toolkit's native code (overflowed a buffer|corrupted its memory) and aborted "
                     r"\('.+'\)|native code)", text)
    assert "try another quantized_dtype, target_platform or optimization_level" in text
    assert not (run / "rknn" / "model.rknn").exists()
