"""Records and lazy mask sources: frame numbering, lazy boxes, conversations, load-time errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from formats_builders import H, W, write_frames

from sparrow.data.mask_sources import AnnoMaskDict, BinaryPngMasks, IndexPngMasks, RleMasks
from sparrow.data.records import (
    Conversation,
    GroundingTarget,
    TubeBoxes,
    Turn,
    VideoRecord,
    frame_numbers_from_names,
)
from sparrow.errors import DataFormatError
from sparrow.io.mask_files import write_binary_png
from sparrow.structures.masks import rle_encode


@pytest.mark.parametrize(
    ("names", "numbers"),
    [
        (("00000", "00005", "00010"), (0, 5, 10)),
        (("frame_12", "frame_13"), (12, 13)),
        (("img_0001", "img_0002"), (1, 2)),
        (("a", "b", "c"), (0, 1, 2)),  # no digits: positions
        (("x1", "y1"), (0, 1)),  # repeated numbers: positions
        ((), ()),
    ],
)
def test_frame_numbers_from_names(names, numbers):
    assert frame_numbers_from_names(names) == numbers


def test_video_record_frames(tmp_path):
    write_frames(tmp_path / "v", ("00000", "00005"))
    video = VideoRecord("v", ("00000", "00005"), (0, 5), tmp_path / "v")
    clip = video.load_frames()
    assert clip.frames.shape == (2, H, W, 3) and clip.frame_indices.tolist() == [0, 5]
    with pytest.raises(DataFormatError, match="no frame folder"):
        VideoRecord("f", frame_numbers=range(3), video_file=tmp_path / "x.mp4").frame_path(0)


def test_tube_boxes_mapping_and_list():
    mapped = TubeBoxes(
        {"3": {"bbox": [1, 2, 3, 4]}, "4": {"bbox": [2, 2, 3, 4]}, "9": {"bbox": [0, 0, 1, 1]}}, (3, 5)
    )
    assert list(mapped) == [3, 4] and len(mapped) == 2 and 9 not in mapped
    np.testing.assert_array_equal(mapped[3], [1, 2, 4, 6])
    listed = TubeBoxes([[0, 0, 2, 2], [1, 1, 2, 2]], (10, 12), first_frame=10)
    assert dict((k, v.tolist()) for k, v in listed.items()) == {10: [0, 0, 2, 2], 11: [1, 1, 3, 3]}
    with pytest.raises(KeyError):
        listed[12]


def test_conversation_needs_one_target_per_seg(tmp_path):
    video = VideoRecord("v")
    Conversation(
        "s",
        video,
        (Turn("user", "q"), Turn("assistant", "[SEG] and [SEG]")),
        (GroundingTarget("a"), GroundingTarget("b")),
    )
    with pytest.raises(ValueError, match="2 \\[SEG\\] tokens but 1 targets"):
        Conversation("s", video, (Turn("assistant", "[SEG] and [SEG]"),), (GroundingTarget("a"),))


def test_rle_masks_nulls_sizes_and_errors(tmp_path):
    m = np.zeros((H, W), bool)
    m[2:5, 3:9] = True
    path = tmp_path / "mask_dict.json"
    path.write_text(
        json.dumps(
            {"0": [rle_encode(m), None], "1": [None, None], "2": [rle_encode(np.zeros((5, 5), bool)), None]}
        )
    )
    store = AnnoMaskDict(path)
    out = RleMasks(store, ["0"], 2).load()
    assert out.shape == (2, H, W) and out[0].sum() == 18 and not out[1].any()
    with pytest.raises(DataFormatError, match="frame size is unknown"):
        RleMasks(store, ["1"], 2).load()
    assert RleMasks(store, ["1"], 2, size=(4, 4)).load().shape == (2, 4, 4)
    with pytest.raises(DataFormatError, match="differ in size"):
        RleMasks(store, ["0", "2"], 2).load()
    with pytest.raises(DataFormatError, match="anno_id 7 is not in the mask dict"):
        RleMasks(store, ["7"], 2).load()
    with pytest.raises(DataFormatError, match="has 2 frames, the video 3"):
        RleMasks(store, ["0"], 3).load()
    with pytest.raises(IndexError):
        RleMasks(store, ["0"], 2).load([2])


def test_png_sources(tmp_path):
    m = np.zeros((H, W), bool)
    m[1:4, 1:4] = True
    write_binary_png(tmp_path / "a.png", m)
    write_binary_png(tmp_path / "b.png", np.roll(m, 5, axis=1))
    out = BinaryPngMasks([[tmp_path / "a.png", tmp_path / "b.png"], []]).load()
    assert out.shape == (2, H, W) and out[0].sum() == 18 and not out[1].any()
    with pytest.raises(DataFormatError, match="mask file not found"):
        IndexPngMasks([tmp_path / "missing.png"], [1]).load()
    assert IndexPngMasks([None], [1], size=(3, 3)).load().shape == (1, 3, 3)


def test_video_file_record_decodes_the_wanted_frames(tmp_path):
    from sparrow.io.writer import write_video

    frames = [np.full((H, W, 3), 20 * i, np.uint8) for i in range(6)]
    write_video(tmp_path / "v.mp4", frames, fps=10.0)
    video = VideoRecord("v", frame_numbers=range(2, 6), video_file=tmp_path / "v.mp4", fps=10.0)
    clip = video.load_frames([0, 3])  # positions 0 and 3 -> frame numbers 2 and 5
    assert clip.frame_indices.tolist() == [2, 5] and clip.fps == 10.0
    assert abs(int(clip.frames[0].mean()) - 40) <= 3 and abs(int(clip.frames[1].mean()) - 100) <= 3
