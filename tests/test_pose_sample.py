"""helpers/tasks/pose/sample.py and labels.py: the generated stick figures in YOLO pose format, read back exactly, accepted
by ultralytics' own label check, cached and deterministic; bad pose data stops in one sentence."""
from __future__ import annotations

import numpy as np
import pytest

from helpers.core.errors import WorkbookError
from helpers.tasks.pose import sample as ps
from helpers.tasks.pose.labels import check_keypoints, parse_label, read_pose_split, read_pose_yaml


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return ps.write_pose_sample(tmp_path_factory.mktemp("pose") / "pose_sample", images=8, seed=3)


def test_labels_round_trip():
    """Every figure written as a label line reads back with its box, keypoints and visibility flags."""
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(10):
        img, labels = ps.make_image(rng, 160, 120, 3)
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8 and labels
        text = "".join(ps.pose_line(c, b, k, 160, 120) + "\n" for c, b, k in labels)
        classes, boxes, kpts = parse_label(text, 160, 120, (len(ps.KEYPOINTS), 3))
        assert classes.tolist() == [c for c, _, _ in labels]
        assert np.allclose(boxes, np.stack([b for _, b, _ in labels]), atol=1e-3)
        assert np.allclose(kpts, np.stack([k for _, _, k in labels]), atol=1e-3)
        seen |= set(kpts[..., 2].ravel().tolist())
        for _, _, k in labels:
            assert (k[:, 2] > 0).sum() >= ps.MIN_LABELLED  # pycocotools ignores a figure without labelled keypoints
            assert np.all(k[k[:, 2] == 0, :2] == 0)  # out of the frame: 0 0 0, ultralytics' convention
    assert seen == {0.0, 1.0, 2.0}  # visible, occluded by a crate and outside the frame all occur


def test_sample_is_what_ultralytics_reads(small):
    from ultralytics.data.utils import verify_image_label

    data = read_pose_yaml(small)
    assert data["kpt_shape"] == (7, 3) and data["names"] == ["figure"]
    assert data["sigmas"] == list(ps.OKS_SIGMAS)
    names = data["kpt_names"][0]
    mirror = {n: n.replace("left", "right") if "left" in n else n.replace("right", "left") for n in names}
    assert [names[j] for j in data["flip_idx"]] == [mirror[n] for n in names]  # flip_idx swaps left and right
    for split in ("train", "val"):
        ps_split = read_pose_split(small, split)
        assert len(ps_split) and not ps_split.notes
        for path in ps_split.paths:
            lbl = path.parents[2] / "labels" / split / (path.stem + ".txt")
            out = verify_image_label((str(path), str(lbl), "", True, 1, 7, 3, False))
            assert out[0] is not None and out[-1] == "", out[-1]  # not corrupt, no warning
            assert out[4].shape == (len(out[1]), 7, 3)


def test_sample_is_cached_and_deterministic(small, tmp_path):
    stamp = (small.parent / "sample.json").stat().st_mtime_ns
    assert ps.write_pose_sample(small.parent, images=8, seed=3) == small
    assert (small.parent / "sample.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    again = ps.write_pose_sample(tmp_path / "again", images=8, seed=3)
    for f in sorted(small.parent.rglob("*.*")):
        assert (again.parent / f.relative_to(small.parent)).read_bytes() == f.read_bytes(), f
    assert not list(tmp_path.glob("*.tmp"))


def test_pose_yaml_without_kpt_shape_is_one_sentence(small, tmp_path):
    bare = tmp_path / "data.yaml"
    bare.write_text("\n".join(ln for ln in small.read_text().splitlines() if not ln.startswith("kpt_shape")) + "\n")
    with pytest.raises(WorkbookError, match=rf"^Pose data file {bare} has no kpt_shape entry; add 'kpt_shape: \[K, 3\]'"):
        read_pose_yaml(bare)


def test_detection_labels_in_pose_data_are_one_sentence(small, tmp_path):
    (tmp_path / "labels").mkdir()
    lbl = tmp_path / "labels" / "0.txt"
    with pytest.raises(WorkbookError, match=r"has detection labels \(class cx cy w h\) where kpt_shape \[7, 3\] needs 26 "):
        parse_label("0 0.5 0.5 0.2 0.3\n", 160, 120, (7, 3), lbl)


def test_model_with_other_keypoints_is_one_sentence(small):
    check_keypoints(small, 4 + 1 + 7 * 3)  # YOLO11n-pose trained on the sample: [1, 26, anchors]
    with pytest.raises(WorkbookError, match=r"^The model gives 56 output channels, i\.e\. 17 keypoints besides 4 box and 1 "
                                            r"class channels, but .* has kpt_shape \[7, 3\] \(26 channels\); use the data\.yaml"):
        check_keypoints(small, 4 + 1 + 17 * 3)  # a COCO person model


def test_bad_sigmas_and_flip_idx_are_refused(small, tmp_path):
    for old, new, says in (("kpt_oks_sigmas: [0.026, ", "kpt_oks_sigmas: [", "must be 7 positive numbers"),
                           ("flip_idx: [0, 1, 3, 2,", "flip_idx: [0, 1, 3, 3,", "is not a reordering of the 7 keypoints")):
        bad = tmp_path / "data.yaml"
        bad.write_text(small.read_text().replace(old, new))
        with pytest.raises(WorkbookError, match=says):
            read_pose_yaml(bad)


def test_skeleton_is_read_and_checked(small, tmp_path):
    """The sample's data.yaml names its skeleton (what the picture grid draws); one out of range is one sentence."""
    assert read_pose_yaml(small)["skeleton"] == list(ps.SKELETON)
    bad = tmp_path / "data.yaml"
    bad.write_text(small.read_text().replace("skeleton: [[0, 1]", "skeleton: [[0, 9]"))
    with pytest.raises(WorkbookError, match=r"^skeleton .* is not a list of keypoint index pairs within 0\.\.6; write "):
        read_pose_yaml(bad)
    none = tmp_path / "none.yaml"
    none.write_text("\n".join(ln for ln in small.read_text().splitlines() if not ln.startswith("skeleton")) + "\n")
    assert read_pose_yaml(none)["skeleton"] is None
