"""SPARROW sequence folders: both mask layouts, groundtruth.txt, nlp.txt markup, conversions."""

from __future__ import annotations

import numpy as np
import pytest
from formats_builders import build_sequences

from sparrow.data.conversations import GCG_PROMPT, conversations
from sparrow.data.convert import convert
from sparrow.data.formats import parse_groundtruth, read_mevis, read_sparrow_sequences
from sparrow.errors import DataFormatError


@pytest.mark.parametrize(
    ("text", "boxes"),
    [
        ("1,2,3,4\n", [(1.0, 2.0, 3.0, 4.0)]),
        ("1\t2\t3\t4\n5 6 7 8\n\n", [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]),
        ("1.5, 2.5, 3, 4\n", [(1.5, 2.5, 3.0, 4.0)]),
        ("nan,nan,nan,nan\n0,0,0,0\n3,3,-1,4\n", [None, None, None]),
    ],
)
def test_parse_groundtruth(text, boxes):
    assert parse_groundtruth(text) == boxes


@pytest.mark.parametrize(("text", "message"), [("1,2,3\n", "has 3 numbers"), ("1,2,a,4", "not 4 numbers")])
def test_parse_groundtruth_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_groundtruth(text)


def test_reader(tmp_path):
    expected = build_sequences(tmp_path)
    split = read_sparrow_sequences(tmp_path)
    assert list(split.videos) == ["seq1", "seq2"]
    s1, s2 = split.videos["seq1"], split.videos["seq2"]
    assert s1.frame_names == ("img_0001", "img_0002", "img_0003") and s1.frame_numbers == (1, 2, 3)
    assert s1.object_ids == ("1", "2") and s2.object_ids == ("1",) and s2.frame_ext == ".png"
    texts = [(e.video_id, e.exp_id, e.text, e.obj_ids) for e in split.expressions]
    assert texts == [
        ("seq1", "0", "A red box", ("1",)),
        ("seq1", "1", "the blue box", ("2",)),
        ("seq1", "2", "both", ("1", "2")),
        ("seq2", "0", "a box moving to the right", ("1",)),
    ]
    for e in split.expressions:
        np.testing.assert_array_equal(e.load_masks(), expected[(e.video_id, e.exp_id)])
    (cap,) = split.captions
    assert (
        cap.caption
        == "<p> A red box </p> [SEG] slides past <p> the blue box </p> [SEG] and <p> both </p> [SEG] stop."
    )
    assert cap.caption_cleaned == "A red box slides past the blue box and both stop."
    (tube,) = split.tubes
    assert tube.span == (1, 3) and list(tube.boxes) == [1, 2]
    np.testing.assert_array_equal(tube.boxes[2], [4.0, 2.0, 12.0, 9.0])
    # a single sequence folder is a root too
    assert list(read_sparrow_sequences(tmp_path / "seq2").videos) == ["seq2"]


def test_reader_errors(tmp_path):
    build_sequences(tmp_path)
    (tmp_path / "seq1" / "nlp.txt").write_text("a [car](1, 9) here")
    with pytest.raises(DataFormatError, match=r"object\(s\) \['9'\]"):
        read_sparrow_sequences(tmp_path)
    (tmp_path / "seq1" / "nlp.txt").write_text("a [car](x) here")
    with pytest.raises(DataFormatError, match="must be integers"):
        read_sparrow_sequences(tmp_path)
    with pytest.raises(DataFormatError, match="no sequence folder"):
        read_sparrow_sequences(tmp_path / "nothing")


def test_conversations(tmp_path):
    build_sequences(tmp_path)
    convs = list(conversations(read_sparrow_sequences(tmp_path)))
    assert [c.turns[0].text for c in convs[:2]] == [
        "Can you segment A red box in this video?",
        "Can you segment the blue box in this video?",
    ]
    assert convs[0].turns[1].text == "Sure, [SEG]." and len(convs[0].targets) == 1
    tube = convs[4]
    assert tube.targets[0].span == (1, 3) and tube.targets[0].boxes is not None
    gcg = convs[5]
    assert gcg.turns[0].text == GCG_PROMPT and [t.phrase for t in gcg.targets] == [
        "A red box",
        "the blue box",
        "both",
    ]


def test_convert_to_mevis_round_trips_the_masks(tmp_path):
    expected = build_sequences(tmp_path / "seqs")
    report = convert("sparrow-seq", "mevis", tmp_path / "seqs", tmp_path / "mevis", frames="copy")
    assert (report.videos, report.expressions, report.objects) == (2, 4, 3)
    split = read_mevis(tmp_path / "mevis", "train")
    assert split.videos["seq1"].frame_names == ("img_0001", "img_0002", "img_0003")
    assert split.videos["seq1"].extra["objects"] == {"1": 0, "2": 1}
    assert (tmp_path / "mevis" / "JPEGImages" / "seq2" / "00001.jpg").is_file()  # png frames re-encoded
    for e in split.expressions:
        np.testing.assert_array_equal(e.load_masks(), expected[(e.video_id, e.exp_id)])
    with pytest.raises(Exception, match="already exists"):
        convert("sparrow-seq", "mevis", tmp_path / "seqs", tmp_path / "mevis")
