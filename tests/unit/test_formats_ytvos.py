"""Ref-YouTube-VOS: train with palette masks, valid minus test, the submission zip, local round trip."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from formats_builders import YT_FRAMES, build_ytvos
from PIL import Image

from sparrow.data.convert import convert
from sparrow.data.formats import read_ref_youtube_vos, ref_youtube_vos_writer
from sparrow.errors import DataFormatError


def test_train_split_reads_objects_and_palette_masks(tmp_path):
    expected = build_ytvos(tmp_path)
    split = read_ref_youtube_vos(tmp_path, "train")
    assert list(split.videos) == ["a1b2c3", "d4e5f6"]
    video = split.videos["a1b2c3"]
    assert video.frame_names == YT_FRAMES and video.frame_numbers == (0, 5, 10)
    assert video.object_ids == ("1", "2")
    for exp in split.expressions:
        assert exp.obj_ids in (("1",), ("2",))
        np.testing.assert_array_equal(exp.load_masks(), expected[(exp.video_id, exp.exp_id)])


def test_valid_is_valid_minus_test(tmp_path):
    build_ytvos(tmp_path)
    valid = read_ref_youtube_vos(tmp_path, "valid")
    assert list(valid.videos) == ["v_valid1", "v_valid2"]
    assert all(e.masks is None for e in valid.expressions) and len(valid.expressions) == 4
    assert valid.videos["v_valid1"].frame_dir == tmp_path / "valid" / "JPEGImages" / "v_valid1"
    test = read_ref_youtube_vos(tmp_path, "test")
    assert list(test.videos) == ["v_test1"]


def test_valid_needs_the_test_meta(tmp_path):
    build_ytvos(tmp_path)
    (tmp_path / "meta_expressions" / "test" / "meta_expressions.json").unlink()
    with pytest.raises(DataFormatError, match="file not found"):
        read_ref_youtube_vos(tmp_path, "valid")


def test_submission_zip_holds_the_annotations_folder(tmp_path):
    build_ytvos(tmp_path)
    valid = read_ref_youtube_vos(tmp_path, "valid")
    with ref_youtube_vos_writer(tmp_path / "submission.zip") as writer:
        for exp in valid.expressions:
            video = valid.videos[exp.video_id]
            masks = np.zeros((video.num_frames, 24, 32), bool)
            masks[:, 5:9, 5:9] = True
            writer.add(exp.video_id, exp.exp_id, video.frame_names, masks)
    with zipfile.ZipFile(tmp_path / "submission.zip") as zf:
        names = zf.namelist()
        assert {n.split("/")[0] for n in names} == {"Annotations"}
        assert "Annotations/v_valid1/1/00010.png" in names
        assert not any(n.startswith("Annotations/v_test1") for n in names)
        zf.extract("Annotations/v_valid2/0/00005.png", tmp_path / "x")
    with Image.open(tmp_path / "x" / "Annotations" / "v_valid2" / "0" / "00005.png") as im:
        assert im.mode == "L" and np.asarray(im)[6, 6] == 255 and np.asarray(im)[0, 0] == 0
    assert sum(1 for n in names if n.endswith(".png")) == 4 * 3


def test_round_trip_on_train_through_eval_is_perfect(tmp_path):
    """The server metric is not public: score the train split locally, against its palette PNGs
    directly and against the MeViS-layout GT that ``convert`` writes."""
    from sparrow.evaluation.mevis import evaluate_mevis

    root = tmp_path / "ytvos"
    build_ytvos(root)
    convert("ref-youtube-vos", "mevis", root, tmp_path / "gt", split="train")
    train = read_ref_youtube_vos(root, "train")
    with ref_youtube_vos_writer(tmp_path / "submission.zip") as writer:
        for exp in train.expressions:
            writer.add(exp.video_id, exp.exp_id, train.videos[exp.video_id].frame_names, exp.load_masks())
    with zipfile.ZipFile(tmp_path / "submission.zip") as zf:
        zf.extractall(tmp_path / "unzipped")
    pred = tmp_path / "unzipped" / "Annotations"
    direct = evaluate_mevis(
        None,
        pred,
        meta=root / "meta_expressions" / "train" / "meta_expressions.json",
        annotations_dir=root / "train" / "Annotations",
    )
    assert pytest.approx(1.0) == direct.JF and len(direct.expressions) == 4
    assert pytest.approx(1.0) == evaluate_mevis(tmp_path / "gt", pred).JF
