"""DAVIS 2017: semi-supervised / unsupervised layouts, ImageSets, palette results, round trip."""

from __future__ import annotations

import numpy as np
import pytest
from formats_builders import DAVIS_SEQS, FRAMES, build_davis
from PIL import Image

from sparrow.data.formats import davis_results_writer, read_davis
from sparrow.errors import DataFormatError
from sparrow.io.mask_files import davis_palette


def test_reader_semi_and_unsupervised(tmp_path):
    labels = build_davis(tmp_path)
    for task in ("semi-supervised", "unsupervised"):
        split = read_davis(tmp_path, "val", task=task)
        assert list(split.videos) == list(DAVIS_SEQS)
        video = split.videos["bike-packing"]
        assert video.frame_names == FRAMES and video.frame_ext == ".jpg"
        folder = "Annotations" if task == "semi-supervised" else "Annotations_unsupervised"
        assert (
            split.label_maps["bike-packing"].paths[0]
            == tmp_path / folder / "480p" / "bike-packing" / "00000.png"
        )
        np.testing.assert_array_equal(split.label_maps["classic-car"].load_labels(), labels["classic-car"])
    assert read_davis(tmp_path, "train").videos == {}


def test_reader_finds_davis_under_refdavis_root_and_reports_missing_list(tmp_path):
    build_davis(tmp_path / "DAVIS")
    assert list(read_davis(tmp_path, "val").videos) == list(DAVIS_SEQS)
    with pytest.raises(DataFormatError, match="sequence list not found"):
        read_davis(tmp_path, "test-dev")


def test_first_frame_only_annotations_are_none_elsewhere(tmp_path):
    build_davis(tmp_path)
    for name in FRAMES[1:]:
        (tmp_path / "Annotations" / "480p" / "bike-packing" / f"{name}.png").unlink()
    paths = read_davis(tmp_path, "val").label_maps["bike-packing"].paths
    assert paths[0] is not None and paths[1:] == (None, None)


def _write(out, split):
    with davis_results_writer(out) as writer:
        for vid, video in split.videos.items():
            writer.add(vid, video.frame_names, split.label_maps[vid].load_labels())


def test_results_are_palette_pngs(tmp_path):
    build_davis(tmp_path / "DAVIS")
    split = read_davis(tmp_path / "DAVIS", "val")
    _write(tmp_path / "res", split)
    with Image.open(tmp_path / "res" / "classic-car" / "00001.png") as im:
        assert im.mode == "P"
        assert np.array_equal(np.asarray(im.getpalette()[:12]).reshape(4, 3), davis_palette()[:4])
        assert set(np.unique(np.asarray(im)).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("task", ["semi-supervised", "unsupervised"])
def test_round_trip_through_eval_is_perfect(tmp_path, task):
    from sparrow.evaluation.davis import evaluate_davis

    build_davis(tmp_path / "DAVIS")
    split = read_davis(tmp_path / "DAVIS", "val", task=task)
    _write(tmp_path / "res", split)
    result = evaluate_davis(tmp_path / "DAVIS", tmp_path / "res", task=task, image_set="val", workers=1)
    assert result.jf_mean == pytest.approx(1.0)
