"""Ref-DAVIS17: four annotation files (latin-1 annot2), name fixes, exp-id convention, ReferFormer
submission rule, and round trips through both protocols."""

from __future__ import annotations

import numpy as np
import pytest
from formats_builders import FRAMES, H, W, build_refdavis, object_masks
from PIL import Image

from sparrow.data.convert import convert
from sparrow.data.formats import RefDavisWriter, read_mevis, read_ref_davis, refdavis_labels
from sparrow.data.formats.refdavis import VIDEOGLAMM_FOLDERS, parse_annotation_lines


def test_parse_lines_fixes_names_and_quotes():
    rows = parse_annotation_lines(
        'clasic-car 1 "a  red car"\n\ndog-scale 2 "a dog"\nmotor-bike 1 no quotes here\nx\n'
    )
    assert rows == [
        ("classic-car", "1", "a red car"),
        ("dogs-scale", "2", "a dog"),
        ("motorbike", "1", "no quotes here"),
    ]


def test_reader_exp_ids_order_and_encodings(tmp_path):
    build_refdavis(tmp_path)
    split = read_ref_davis(tmp_path, "val")
    assert list(split.videos) == ["bike-packing", "classic-car"]
    car = {e.exp_id: e for e in split.expressions_of("classic-car")}
    assert [car[str(i)].text for i in range(8)] == [
        "a car", "a car parked", "an old café car", "the car",
        "a man", "a man walking", "a person", "the person",
    ]  # fmt: skip
    assert [car[str(i)].obj_ids for i in (0, 3, 4, 7)] == [("1",), ("1",), ("2",), ("2",)]
    bike = {e.exp_id: e for e in split.expressions_of("bike-packing")}
    assert bike["3"].text == "the cyclist" and bike["7"].text == "the bag"  # sorted by obj id, not file order
    assert bike["6"].extra == {"anno_set": 2, "annotator": 2, "full_video": False}
    objs = object_masks(shift=1)
    np.testing.assert_array_equal(car["5"].load_masks(), objs[2])
    assert (
        car["0"].masks.paths[0]
        == tmp_path / "DAVIS" / "Annotations_unsupervised" / "480p" / "classic-car" / "00000.png"
    )


def test_referformer_rule():
    probs = np.zeros((2, 1, 2, 3), np.float32)
    probs[0, 0] = [[0.49, 0.5, 0.9], [0.7, 0.0, 0.6]]
    probs[1, 0] = [[0.3, 0.8, 0.9], [0.2, 0.4, 0.61]]
    assert refdavis_labels(probs)[0].tolist() == [[0, 2, 1], [1, 0, 2]]
    assert refdavis_labels(np.ones((1, 2, 4, 4), bool)).max() == 1
    with pytest.raises(ValueError):
        refdavis_labels(np.zeros((2, 4, 4)))


def _write_submission(out, split, **kw):
    with RefDavisWriter(out, **kw) as writer:
        for vid, video in split.videos.items():
            exps = split.expressions_of(vid)
            for a in range(4):
                probs = np.stack(
                    [e.load_masks().astype(np.float32) for e in exps if e.extra["anno_set"] == a]
                )
                writer.add_probabilities(vid, a, video.frame_names, probs)


def test_submission_layout(tmp_path):
    build_refdavis(tmp_path / "ref-davis")
    split = read_ref_davis(tmp_path / "ref-davis", "val")
    _write_submission(tmp_path / "sub", split)
    for a in range(4):
        with Image.open(tmp_path / "sub" / f"anno_{a}" / "bike-packing" / "00002.png") as im:
            assert im.mode == "P" and im.size == (W, H)
    _write_submission(tmp_path / "vg", split, folders=VIDEOGLAMM_FOLDERS)
    assert (tmp_path / "vg" / "Davis17_annot2_full_video" / "classic-car" / f"{FRAMES[0]}.png").is_file()


def test_round_trip_referformer_protocol_is_perfect(tmp_path):
    from sparrow.evaluation.refdavis import evaluate_refdavis_referformer

    build_refdavis(tmp_path / "ref-davis")
    split = read_ref_davis(tmp_path / "ref-davis", "val")
    _write_submission(tmp_path / "sub", split)
    result = evaluate_refdavis_referformer(
        tmp_path / "ref-davis" / "DAVIS", tmp_path / "sub", workers=1, strict=True
    )
    assert (pytest.approx(1.0),) * 3 == (result.J, result.F, result.JF) and len(result.sets) == 4


def test_round_trip_per_expression_protocol_is_perfect(tmp_path):
    """Ref-DAVIS -> MeViS-layout GT (convert), predictions in the MeViS tree, ``evaluate_mevis``."""
    from sparrow.data.formats import mevis_results_writer
    from sparrow.evaluation.mevis import evaluate_mevis
    from sparrow.evaluation.refdavis import evaluate_refdavis_per_expression

    build_refdavis(tmp_path / "ref-davis")
    report = convert("ref-davis17", "mevis", tmp_path / "ref-davis", tmp_path / "gt", split="val")
    assert (report.videos, report.expressions, report.objects) == (2, 16, 4)
    gt = read_mevis(tmp_path / "gt", "valid_u")
    assert gt.expressions[6].extra == {"anno_set": 2, "annotator": 2, "full_video": False}
    split = read_ref_davis(tmp_path / "ref-davis", "val")
    with mevis_results_writer(tmp_path / "pred") as writer:
        for e in split.expressions:
            writer.add(e.video_id, e.exp_id, split.videos[e.video_id].frame_names, e.load_masks())
    assert pytest.approx(1.0) == evaluate_mevis(tmp_path / "gt", tmp_path / "pred", strict=True).JF
    davis = tmp_path / "ref-davis" / "DAVIS"
    per_exp = evaluate_refdavis_per_expression(
        davis, tmp_path / "gt" / "meta_expressions.json", tmp_path / "pred", strict=True
    )
    assert pytest.approx(1.0) == per_exp.JF and len(per_exp.expressions) == 16
