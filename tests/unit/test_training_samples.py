"""Training samples of the sparrow task: clip sampling, targets, proposer objects, TSF crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparrow.data.conversations import (
    expression_conversation,
    multi_expression_conversations,
    phrase_of,
    tube_conversation,
)
from sparrow.data.records import DatasetSplit, ExpressionRecord, TubeRecord, VideoRecord
from sparrow.data.registry import get_format
from sparrow.data.synref import GenerationRequest, preset, write_split
from sparrow.errors import ConfigError, DataFormatError
from sparrow.models import SparrowProcessor, load_config, train_tokenizer
from sparrow.training.recipe import DatasetSpec
from sparrow.training.samples import (
    ConversationSource,
    clip_positions,
    key_frame_with_targets,
    object_mask_sources,
)
from sparrow.training.sparrow_task import corpus, read_conversations


@given(st.integers(1, 60), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_clip_positions_one_per_segment(num_frames: int, n: int, seed: int) -> None:
    pos = clip_positions(num_frames, n, np.random.default_rng(seed))
    k = min(n, num_frames)
    assert len(pos) == k
    assert np.all(np.diff(pos) > 0) and pos[0] >= 0 and pos[-1] < num_frames
    edges = np.linspace(0, num_frames, k + 1)
    assert np.all(pos >= np.floor(edges[:-1])) and np.all(pos < np.ceil(edges[1:]) + 1)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synref") / "train"
    request = GenerationRequest(
        split="train",
        videos=3,
        frames=12,
        size=(64, 64),
        seed=3,
        difficulty="standard",
        knobs=preset("standard"),
    )
    write_split(out, request)
    return out


@pytest.fixture(scope="module")
def processor() -> SparrowProcessor:
    config = load_config(
        "tiny",
        ["spatial.frames=2", "temporal.frames=2", "sam2.frames=4", "sam2.image_size=64", "tsf.max_crops=6"],
    )
    texts = ["Can you segment the red star in this video?", "Sure, [BOX] [SEG]."] * 4
    return SparrowProcessor(config, train_tokenizer(texts, config.llm.template, 300))


def test_source_builds_model_inputs(split_dir: Path, processor: SparrowProcessor) -> None:
    spec = DatasetSpec(name="syn", format="mevis", root=str(split_dir), split="train")
    conversations, objects = read_conversations(spec)
    split = get_format("mevis").open(split_dir, "train")
    assert len(conversations) == sum(e.masks is not None for e in split.expressions)
    source = ConversationSource("syn", conversations, processor, objects)
    assert source.clip_frames == 6  # max(2, 2, 4, 6)
    assert source.sample_id(0) == f"syn/{conversations[0].sample_id}"
    sample = source.build(0, seed=5)
    assert sample.sam_frames.shape == (4, 3, 64, 64)
    assert sample.seg_masks.shape == (1, 4, 64, 64) and sample.seg_masks.any()
    assert sample.tsf_crops is not None and sample.tsf_crops.shape[0] == 6
    video = split.videos[conversations[0].video.video_id]
    assert len(sample.det_boxes) <= len(video.extra["objects"])
    again = source.build(0, seed=5)
    other = source.build(0, seed=6)
    assert np.array_equal(sample.sam_frames, again.sam_frames)
    assert not np.array_equal(sample.sam_frames, other.sam_frames)  # 6 of 12 frames: the seed moves the clip
    # the answer carries [BOX] [SEG] (box prompt on in the tiny preset)
    text = processor.tokenizer.decode(sample.input_ids[sample.labels != -100].tolist())
    assert "[BOX]" in text and "[SEG]" in text


def test_key_frame_with_targets_prefers_frames_showing_every_target() -> None:
    masks = np.zeros((2, 5, 4, 4), dtype=bool)
    rng = np.random.default_rng(0)
    assert key_frame_with_targets(masks, rng) == 0  # nobody visible: frame 0
    assert key_frame_with_targets(masks[:0], rng) == 0  # no target
    masks[0, 1, 0, 0] = masks[1, 3, 0, 0] = True
    assert {key_frame_with_targets(masks, rng) for _ in range(40)} == {1, 3}  # any target
    masks[0, 3, 1, 1] = masks[0, 4, 1, 1] = masks[1, 4, 2, 2] = True
    assert {key_frame_with_targets(masks, rng) for _ in range(40)} == {3, 4}  # every target


def test_best_key_frame_models_train_from_frames_showing_the_target(
    split_dir: Path, processor: SparrowProcessor
) -> None:
    """``key_frame: best``: the sample's key frame is drawn (with its seed) among the SAM2 frames
    where the referent is visible, and the ``[BOX]`` target is taken there."""
    spec = DatasetSpec(name="syn", format="mevis", root=str(split_dir), split="train")
    conversations, objects = read_conversations(spec)
    first = ConversationSource("syn", conversations, processor, objects)
    best = SparrowProcessor(processor.config.replace({"key_frame": "best"}), processor.tokenizer)
    source = ConversationSource("syn", conversations, best, objects)
    keys = set()
    for index in range(len(conversations)):
        for seed in range(3):
            assert first.build(index, seed).key_frame == 0
            sample = source.build(index, seed)
            assert sample.key_frame == source.build(index, seed).key_frame  # the seed decides
            visible = sample.seg_masks.reshape(*sample.seg_masks.shape[:2], -1).any(axis=2).all(axis=0)
            assert visible[sample.key_frame] or not visible.any()
            assert sample.box_valid.all() == bool(visible[sample.key_frame])
            keys.add(sample.key_frame)
    assert len(keys) > 1


def test_every_object_of_the_video_is_a_proposer_target(split_dir: Path) -> None:
    split = get_format("mevis").open(split_dir, "train")
    objects = object_mask_sources(split)
    for video_id, sources in objects.items():
        assert len(sources) == len(split.videos[video_id].extra["objects"])
        masks = np.stack([s.load([0])[0] for s in sources])
        assert masks.shape[1:] == (64, 64)


def test_tube_targets_use_filled_boxes(split_dir: Path, processor: SparrowProcessor) -> None:
    split = get_format("mevis").open(split_dir, "train")
    video = next(iter(split.videos.values()))
    boxes = {n: [10.0, 12.0, 30.5, 40.0] for n in video.frame_numbers}
    tube = TubeRecord(
        "q1",
        video,
        "the red star",
        "declarative",
        (0, video.num_frames),
        {n: np.asarray(b) for n, b in boxes.items()},
    )
    source = ConversationSource("stvg", [tube_conversation(tube)], processor)
    sample = source.build(0, seed=0)
    mask = sample.seg_masks[0, 0]  # at SAM resolution (64 = the frame size here)
    assert mask[12:40, 10:31].all() and mask.sum() == 28 * 21


def test_errors(split_dir: Path, processor: SparrowProcessor) -> None:
    with pytest.raises(ConfigError, match="no root"):
        read_conversations(DatasetSpec(name="x"))
    with pytest.raises(DataFormatError, match="no item"):
        ConversationSource("empty", [], processor)
    split = get_format("mevis").open(split_dir, "train")
    exp = split.expressions[0]
    conv = expression_conversation(exp, split.videos[exp.video_id])
    texts = corpus([conv], processor.format_answer)
    assert texts == [conv.turns[0].text, "Sure, [BOX] [SEG]."]


def test_phrase_answer_models_train_on_answers_that_name_the_referent(
    split_dir: Path, processor: SparrowProcessor
) -> None:
    spec = DatasetSpec(name="syn", format="mevis", root=str(split_dir), split="train")
    conversations, objects = read_conversations(spec)
    named = SparrowProcessor(processor.config.replace({"phrase_answer": True}), processor.tokenizer)
    conv = conversations[0]
    phrase = phrase_of(conv.targets[0].phrase)
    answer = f"Sure, <p> {phrase} </p> [BOX] [SEG]."
    assert corpus([conv], named.format_answer) == [conv.turns[0].text, answer]
    sample = ConversationSource("syn", conversations, named, objects).build(0, seed=5)
    assert named.tokenizer.decode(sample.input_ids[sample.labels != -100].tolist()).startswith(answer)
    plain = ConversationSource("syn", conversations, processor, objects).build(0, seed=5)
    assert np.array_equal(sample.seg_masks, plain.seg_masks)  # same targets, longer answer
    assert len(sample.input_ids) > len(plain.input_ids)


class _Blank:
    """A mask source that is never read (grouping only looks at whether there is one)."""

    def load(self, positions: object = None) -> np.ndarray:
        raise AssertionError("grouping expressions must not read masks")


def test_multi_expression_questions_deal_distinct_referents_before_repeating_one() -> None:
    video = VideoRecord("v", frame_names=("0",), frame_numbers=(0,))
    exps = [
        ExpressionRecord("v", "0", "the red star.", obj_ids=("1",), masks=_Blank()),
        ExpressionRecord("v", "1", "the star on the left", obj_ids=("1",), masks=_Blank()),
        ExpressionRecord("v", "2", "the blue disc", obj_ids=("2",), masks=_Blank()),
        ExpressionRecord("v", "3", "both shapes", obj_ids=("2", "1"), masks=_Blank()),
        ExpressionRecord("v", "4", "unlabelled", obj_ids=("3",)),  # no masks: not a target
    ]
    split = DatasetSplit("mevis", "train", Path("."), {"v": video}, expressions=tuple(exps))
    (conv,) = multi_expression_conversations(split, group=3)  # the 4th expression alone is dropped
    assert conv.sample_id == "v/0+2+3"
    assert conv.turns[0].text == "Can you segment the red star, the blue disc and both shapes in this video?"
    assert conv.turns[1].text == (
        "Sure, <p> the red star </p> [SEG], <p> the blue disc </p> [SEG] and <p> both shapes </p> [SEG]."
    )
    assert [t.phrase for t in conv.targets] == ["the red star.", "the blue disc", "both shapes"]
    pairs = list(multi_expression_conversations(split, group=2))
    assert [c.sample_id for c in pairs] == ["v/0+2", "v/3+1"]
    assert pairs[1].turns[0].text == "Can you segment both shapes and the star on the left in this video?"
    with pytest.raises(ValueError, match="at least 2"):
        next(multi_expression_conversations(split, group=1))


def test_multi_expression_samples_ground_every_named_referent(
    split_dir: Path, processor: SparrowProcessor
) -> None:
    spec = DatasetSpec(name="syn", root=str(split_dir), task="multi_referring_segmentation")
    conversations, objects = read_conversations(spec)
    split = get_format("mevis").open(split_dir, "train")
    assert conversations and all(2 <= len(c.targets) <= 3 for c in conversations)
    for conv in conversations:
        same_video = {e.exp_id: e for e in split.expressions if e.video_id == conv.video.video_id}
        ids = conv.sample_id.split("/")[1].split("+")
        assert [t.phrase for t in conv.targets] == [same_video[i].text for i in ids]
    sample = ConversationSource("syn", conversations, processor, objects).build(0, seed=5)
    assert sample.seg_masks.shape == (len(conversations[0].targets), 4, 64, 64)
    answer = processor.tokenizer.decode(sample.input_ids[sample.labels != -100].tolist())
    assert answer.count("[BOX] [SEG]") == len(conversations[0].targets)  # a [BOX] before every [SEG]
    assert answer.count("<p>") == len(conversations[0].targets)
    with pytest.raises(ConfigError, match=r"options\.group"):
        read_conversations(
            DatasetSpec(
                name="syn", root=str(split_dir), task="multi_referring_segmentation", options={"group": 1}
            )
        )
