"""Paths with spaces or non-ASCII characters: the toolkit splits a list's lines on whitespace, so the lists
the workbook writes name every image by a plain path (helpers.core.lists); the real toolkit builds from a data
folder named `my imgs ü` into a run folder whose own path has a space and a non-ASCII character."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers.core import lists, step_cache
from helpers.core.errors import RknnError, WorkbookError
from helpers.steps import analysis, convert, hybrid
from helpers.tasks.data import write_calibration_list
from helpers.toolkit.options import ConvertConfig
from helpers.toolkit.session import RKNN

ULTRA = dict(mean_values=[0, 0, 0], std_values=[255, 255, 255])


@pytest.fixture
def spaced(tmp_path, tiny_images) -> tuple[list[Path], Path]:
    """The tiny images in a data folder named `my imgs ü`, and a run folder `run dir ü` (not yet made)."""
    data = tmp_path / "data ü" / "my imgs ü"
    data.mkdir(parents=True)
    images = [Path(shutil.copy(p, data / f"img {p.stem}ü.png")) for p in tiny_images[:4]]
    return images, tmp_path / "run dir ü"


def test_every_line_is_one_plain_path_naming_the_same_image(spaced):
    images, run = spaced
    out = write_calibration_list(images, run / "rknn" / "calibration.txt")
    lines = out.read_text(encoding="utf-8").splitlines()
    assert all(lists.plain(ln) for ln in lines), lines
    assert [p.read_bytes() for p in lists.read_image_list(out)] == [p.read_bytes() for p in images]
    listed = [p.read_bytes() for p in step_cache.listed_images(out)]
    assert listed == [p.read_bytes() for p in images], "the step key reads it too"
    assert convert.check_dataset(out, ConvertConfig(**ULTRA)) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["calibration.txt", "calibration_links"], "no temporary left"

    plain_dir = run.parent / "plain"  # plain paths are written as before (absolute) and the links go
    plain_dir.mkdir()
    plain_images = [Path(shutil.copy(p, plain_dir / f"{i}.png")) for i, p in enumerate(images)]
    write_calibration_list(plain_images, out)
    assert out.read_text().splitlines() == [str(p.resolve()) for p in plain_images]
    assert not (out.parent / "calibration_links").exists()


def test_demo_list_taken_from_a_linked_list_stays_plain(spaced):
    images, run = spaced
    full = write_calibration_list(images, run / "rknn" / "calibration.txt")
    demo = analysis.small_calibration(full, 2, run / "hybrid" / "demo calibration.txt")
    assert all(lists.plain(ln) for ln in demo.read_text().splitlines())
    assert [p.read_bytes() for p in lists.read_image_list(demo)] == [p.read_bytes() for p in images[:2]]


def test_an_image_without_a_plain_extension_is_named(tmp_path, tiny_images):
    odd = tmp_path / "a b"
    odd.mkdir()
    image = Path(shutil.copy(tiny_images[0], odd / "x.pngü"))
    with pytest.raises(WorkbookError, match=r"Image .*x\.pngü has no plain file extension"):
        lists.write_image_list([image], tmp_path / "list.txt")


@pytest.mark.slow
def test_the_toolkit_builds_analyses_and_runs_hybrid_step1_from_spaced_folders(spaced, tiny_onnx, tmp_path):
    images, run = spaced
    onnx = run / "model" / "model ü.onnx"
    onnx.parent.mkdir(parents=True)
    shutil.copy(tiny_onnx, onnx)
    cfg = ConvertConfig(**ULTRA, target_platform="rk3566")

    raw = run / "rknn" / "raw.txt"  # the lesson: the toolkit itself cannot read such a line
    raw.parent.mkdir(parents=True)
    raw.write_text("".join(f"{p}\n" for p in images), encoding="utf-8")
    with RKNN(run / "logs" / "raw.log") as rk:
        rk.config(**cfg.config_kwargs())
        rk.load_onnx(model=str(onnx))
        with pytest.raises(RknnError, match="Unsupport file .*/data!"):
            rk.build(**cfg.build_kwargs(raw))
    with pytest.raises(WorkbookError, match=r"names .*img 0ü\.png, whose path has a space the toolkit splits on; write the"):
        convert.convert(onnx, cfg, raw, run / "rknn" / "raw.rknn", run / "logs" / "raw.log", 16)

    dataset = write_calibration_list(images, run / "rknn" / "calibration.txt")
    res = convert.convert(onnx, cfg, dataset, run / "rknn" / "model.rknn", run / "logs" / "build.log", 16)
    assert res.rknn_path.read_bytes()[:4] == b"RKNN"

    with RKNN(run / "logs" / "analysis.log", workdir=run / "hybrid") as rk:
        convert.build_on(rk, onnx, cfg, dataset, 16, "onnx")
        found = analysis.run_accuracy_analysis(rk, images[:1], run / "analysis" / "snap shot", progress=False)
        assert found[0].is_file(), "accuracy_analysis reads an image and writes into folders with spaces"
    with RKNN(run / "logs" / "step1.log", workdir=run / "hybrid") as rk:
        rk.config(**cfg.config_kwargs())
        rk.load_onnx(model=str(onnx))
        files = hybrid.step1(rk, dataset)
    assert files.cfg.is_file() and files.model.is_file()


def test_images_below_a_spaced_run_folder_are_listed_relative_without_links(spaced):
    """Letterboxed copies live in <run>/rknn/calibration_images/: a run folder with a space needs no link."""
    images, run = spaced
    inside = run / "rknn" / "calibration_images"
    inside.mkdir(parents=True)
    copies = [Path(shutil.copy(p, inside / f"{i:04d}.png")) for i, p in enumerate(images)]
    out = write_calibration_list(copies, run / "rknn" / "calibration.txt")
    assert out.read_text().splitlines() == [f"calibration_images/{i:04d}.png" for i in range(len(copies))]
    assert not (run / "rknn" / "calibration_links").exists()
