"""Representative images (helpers.tasks.sampling): calibration and scored/analysed subsets spread over the classes,
ordered so the first k images hold k different classes, deterministic, and the old draw when stratified is off."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from helpers.tasks import sampling
from helpers.tasks.data import LabelledImages, load_detect_split, load_split, write_calibration_list, write_sample
from helpers.tasks.detect.labels import read_split
from helpers.tasks.detect.sample import write_detect_sample
from helpers.text import convert as convert_text


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_sample(tmp_path_factory.mktemp("data") / "digits", size=32)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_detect_sample(tmp_path_factory.mktemp("shapes") / "shapes", images=40, imgsz=64, seed=3)


def unbalanced(n_per_class: list[int]) -> LabelledImages:
    """A labelled set with the given number of images per class (paths are names only: subset never reads them)."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)]).astype(np.int64)
    return LabelledImages([Path(f"{c}/{i:04d}.png") for i, c in enumerate(labels)], labels,
                          [str(c) for c in range(len(n_per_class))])


def test_calibration_draw_holds_every_class_equally(digits):
    train = load_split(digits, "train")
    calib = train.subset(50)
    assert set(calib.class_counts().values()) == {5}, "50 images of 10 digits: 5 of each"
    assert calib.subset(50).paths == calib.paths and train.subset(50).paths == calib.paths, "deterministic, whatever the listing"
    assert train.subset(None).subset(7).paths == train.subset(7).paths
    assert len(set(calib.paths)) == 50


def test_unbalanced_classes_get_their_share_until_they_run_out():
    images = unbalanced([40, 3, 20, 2])
    counts = Counter(int(x) for x in images.subset(12).labels)
    assert counts == {0: 4, 1: 3, 2: 3, 3: 2}, "round-robin: the small classes are all in, the others share the rest"
    whole = images.subset(None)
    assert sorted(whole.paths) == sorted(images.paths), "all images, each once"


def test_first_images_are_different_classes_and_smaller_subsets_are_prefixes(digits):
    val = load_split(digits, "val")
    ten = val.subset(10)
    assert sorted(int(x) for x in ten.labels) == list(range(10)), "the first 10 images are the 10 digits"
    assert val.subset(2).paths == ten.paths[:2] == val.subset(None).paths[:2], \
        "50 (analysis_images=n) and 60 (the first n of all images) analyse the same images"
    assert ten.labels[0] != ten.labels[1], "60's two analysis images are no longer both the digit 0"


def test_turning_it_off_restores_the_old_draw(digits):
    train = load_split(digits, "train")
    old = np.sort(np.random.default_rng(0).permutation(len(train))[:50])
    assert train.subset(50, stratified=False).paths == [train.paths[i] for i in old]
    assert train.subset(None, stratified=False) is train


def test_a_detectors_draw_has_every_class_present_early(shapes):
    split = read_split(shapes, "train")
    present = {int(c) for t in split.truth for c in t.classes}
    first = split.subset(len(present))
    assert {int(c) for t in first.truth for c in t.classes} == present, "every class present is in the first pass"
    assert split.subset(None, stratified=False).paths == split.paths
    assert split.subset(5, stratified=False).paths == split.paths[:5], "off: the first n in file order, as before"
    calib = load_detect_split(shapes, "train").subset(len(present))
    assert calib.paths == first.paths, "calibration (LabelledImages) and scoring (DetectionSplit) draw alike"
    assert all(v >= 1 for v in calib.class_counts().values())


def test_background_images_come_last_in_each_pass():
    order = sampling.round_robin([[0], [], [1], [0], [1], []], seed=0)
    held = [[0], [], [1], [0], [1], []]
    assert sorted(order.tolist()) == list(range(6))
    assert [bool(held[i]) for i in order[:3]] == [True, True, False]


def test_notebook_20_shows_the_file_its_rule_and_its_class_counts(digits, tmp_path):
    calib = load_split(digits, "train").subset(20)
    listed = write_calibration_list(calib, tmp_path / "calibration.txt")
    shown = convert_text.calibration_markdown(listed, first=3)
    assert str(calib.paths[0].resolve()) in shown and "(17 more)" in shown and "holds 20 line(s)" in shown
    assert "one image per line" in shown and "absolute" in shown and "separated by spaces" in shown
    text, table = convert_text.calibration_counts(calib.class_counts(), len(calib), True, detector=False)
    assert text.startswith("20 calibration images, drawn stratified") and ": 2 images per class." in text
    assert table.loc["images"].tolist() == [2] * 10
    off, _ = convert_text.calibration_counts(load_split(digits, "train").subset(20, stratified=False).class_counts(), 20,
                                             False, detector=False)
    assert "calib_stratified=False" in off
