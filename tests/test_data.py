"""The bundled sample, labelled folders and calibration lists."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from helpers.core.errors import WorkbookError
from helpers.tasks.data import BACKGROUND_RGB, load_folder, load_split, read_labels, write_calibration_list, write_sample
from helpers.tasks.preprocess import read_rgb, resize_crop, to_float_nchw


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("data") / "digits", size=32)


def test_sample_has_all_real_digits_in_ultralytics_layout(sample):
    train, val = load_split(sample, "train"), load_split(sample, "val")
    assert len(train) + len(val) == 1797
    assert train.classes == val.classes == [str(i) for i in range(10)]
    assert 0.19 < len(val) / 1797 < 0.21
    assert set(np.unique(val.labels)) == set(range(10)), "stratified split keeps every class in val"
    img = cv2.imread(str(val.paths[0]))
    assert img.shape == (32, 32, 3)
    assert read_labels(sample, val.classes) == [str(i) for i in range(10)]
    meta = json.loads((sample / "sample.json").read_text())
    assert meta["counts"] == {"train": len(train), "val": len(val)}


def test_sample_split_is_deterministic(sample, tmp_path):
    again = write_sample(tmp_path / "digits", size=32)
    def names(root, split):
        return sorted(p.relative_to(root / split).as_posix() for p in load_split(root, split).paths)

    assert names(sample, "val") == names(again, "val")
    a, b = load_split(sample, "val").paths[5], load_split(again, "val").paths[5]
    assert np.array_equal(cv2.imread(str(a)), cv2.imread(str(b)))


def test_sample_is_reused_when_spec_matches(sample):
    marker = sample / "sample.json"
    before = marker.stat().st_mtime_ns
    write_sample(sample, size=32)
    assert marker.stat().st_mtime_ns == before


def test_digits_are_coloured_so_channel_order_matters(sample):
    rgb = read_rgb(load_split(sample, "val").paths[0], 32)
    corner = rgb[0, 0].astype(float)
    assert np.allclose(corner, BACKGROUND_RGB, atol=2), "background is navy in RGB order"
    assert not np.array_equal(rgb, rgb[..., ::-1]), "swapping R and B changes the input"


def test_read_rgb_resizes_and_crops_non_square(tmp_path):
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.zeros((40, 80, 3), np.uint8))
    assert read_rgb(path, 32).shape == (32, 32, 3)
    assert resize_crop(np.zeros((32, 32, 3), np.uint8), 32).shape == (32, 32, 3)


def test_to_float_nchw_applies_mean_std_per_channel():
    batch = np.full((2, 4, 4, 3), 255, np.uint8)
    x = to_float_nchw(batch, [0, 0, 0], [255, 255, 255])
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32 and np.allclose(x, 1.0)


def test_missing_folder_error_names_path_and_fix(tmp_path):
    with pytest.raises(WorkbookError, match=r"nowhere does not exist; pass a folder laid out as <folder>/<class>/<image>"):
        load_folder(tmp_path / "nowhere")


def test_folder_without_class_subfolders(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(WorkbookError, match="has images but no class sub-folders; move each image into"):
        load_folder(tmp_path)


def test_empty_folder(tmp_path):
    with pytest.raises(WorkbookError, match="is empty; put images in one sub-folder per class"):
        load_folder(tmp_path)


def test_class_folders_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    with pytest.raises(WorkbookError, match="class sub-folders but no images"):
        load_folder(tmp_path)


def test_split_missing(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(WorkbookError, match="has no val/ sub-folder"):
        load_split(tmp_path, "val")


def test_calibration_list_is_absolute_and_validated(sample, tmp_path, monkeypatch):
    monkeypatch.chdir(sample)
    val = load_split(sample, "val").subset(5)
    out = write_calibration_list(val, tmp_path / "lists" / "calib.txt")
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and all(line.startswith("/") for line in lines)
    missing = sample / "val" / "0" / "gone.png"
    with pytest.raises(WorkbookError, match="gone.png does not exist"):
        write_calibration_list([*val.paths, missing], tmp_path / "bad.txt")
    assert not (tmp_path / "bad.txt").exists(), "nothing half-written"


def test_grayscale_image_reads_as_one_channel_with_its_own_values(tmp_path):
    import cv2

    from helpers.tasks.preprocess import match_channels, read_image

    gray = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)  # a single-channel PNG
    one = read_image(tmp_path / "g.png", 32, channels=1)
    three = read_image(tmp_path / "g.png", 32, channels=3)
    assert one.shape == (32, 32, 1) and three.shape == (32, 32, 3)
    # a gray image read as colour has three equal channels; bringing it to 1 channel gives the same pixels back
    assert (three[..., 0] == three[..., 2]).all()
    np.testing.assert_array_equal(one[..., 0], three[..., 0])
    np.testing.assert_array_equal(match_channels(three[None], 1)[0], one)
    np.testing.assert_array_equal(match_channels(one[None], 3)[0], three)


def test_rgb_to_grayscale_uses_luma_weights_and_bad_counts_are_refused():
    from helpers.tasks.preprocess import match_channels

    red = np.zeros((1, 2, 2, 3), np.uint8)
    red[..., 0] = 200
    assert match_channels(red, 1)[0, 0, 0, 0] == round(0.299 * 200)
    with pytest.raises(ValueError, match="4 input channel"):
        match_channels(red, 4)


def test_float_conversion_follows_the_number_of_mean_values():
    batch = np.full((2, 4, 4, 3), 100, np.uint8)
    x = to_float_nchw(batch, [50.0], [2.0])
    assert x.shape == (2, 1, 4, 4)
    np.testing.assert_allclose(x, 25.0)


def test_gray_shapes_folder_is_single_channel_and_balanced(tmp_path):
    import cv2

    from helpers.tasks.data import GRAY_SHAPES, load_split, write_gray_shapes

    root = write_gray_shapes(tmp_path / "shapes", size=24, train_per_class=3, val_per_class=2)
    val = load_split(root, "val")
    assert val.classes == sorted(GRAY_SHAPES) and len(val) == 2 * len(GRAY_SHAPES)
    assert cv2.imread(str(val.paths[0]), cv2.IMREAD_UNCHANGED).ndim == 2  # stored as grayscale PNG
    assert val.load(24, channels=1).shape == (len(val), 24, 24, 1)
    assert write_gray_shapes(tmp_path / "shapes", size=24, train_per_class=3, val_per_class=2) == root  # reused
