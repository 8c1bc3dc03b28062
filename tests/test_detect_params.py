"""params/detect.yaml as the runner reads it: the detector's input size reaches notebook 10 (training, export) and
notebook 20 (conversion, letterboxed calibration) from `common:` alone, also when a user changes it there, and the
sections of 50 and 60 name parameters those notebooks declare."""
from __future__ import annotations

import copy

import pytest

from helpers.core.errors import WorkbookError
from helpers.core.paths import REPO
from helpers.runner import execute, series

ALL = "00,10,20,30,40,50,60"


@pytest.fixture
def config() -> dict:
    return execute.load_params_file(REPO / "params" / "detect.yaml")


def planned(config: dict) -> dict[str, dict]:
    return {nb.stem: params for nb, params in series.plan(config, ALL)}


def test_imgsz_is_set_once_in_common_for_export_and_conversion(config):
    """Notebook 20's input-size parameter is `imgsz`, like notebook 10's; the file sets it only in common, so the
    detector is converted at the size it was trained and exported at."""
    assert "imgsz" in execute.declared_parameters(REPO / "notebooks" / "20_convert.ipynb")
    assert [name for name, section in config.items() if isinstance(section, dict) and "imgsz" in section] == ["common"]
    plans = planned(config)
    assert plans["10_export"]["imgsz"] == plans["20_convert"]["imgsz"] == config["common"]["imgsz"] == 160
    # the later notebooks read the size notebook 20 recorded in rknn/convert.json, not a parameter of their own
    assert [name for name, params in plans.items() if "imgsz" in params] == ["10_export", "20_convert"]


def test_changing_imgsz_in_common_moves_export_and_conversion_together(config):
    changed = copy.deepcopy(config)
    changed["common"]["imgsz"] = 192
    plans = planned(changed)
    assert plans["10_export"]["imgsz"] == plans["20_convert"]["imgsz"] == 192


def test_sections_of_50_and_60_are_valid_and_small(config):
    """The 50/60 sections name parameters the notebooks declare (a misspelt key would stop the run) and keep the
    full detection series small: 3 sweep builds, a float16 search of at most 8 layers."""
    plans = planned(config)
    assert len(plans["50_accuracy_analysis"]["sweep_grid"]) == 3
    assert plans["60_hybrid_quantization"]["search_budget"] == 8
    assert plans["50_accuracy_analysis"]["analysis_images"] == plans["60_hybrid_quantization"]["analysis_images"] == 2
    broken = copy.deepcopy(config)
    broken["60_hybrid_quantization"]["search_budjet"] = 8
    with pytest.raises(WorkbookError, match=r"Unknown parameter\(s\) \['search_budjet'\] for 60_hybrid_quantization"):
        planned(broken)
