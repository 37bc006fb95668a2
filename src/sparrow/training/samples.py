"""Training samples of the SPARROW task: dataset records -> conversations -> model inputs.

One item of a dataset is one :class:`~sparrow.data.records.Conversation` (a referring expression,
an STVG tube or a grounded caption, templated by :mod:`sparrow.data.conversations`:
"Can you segment {exp} in this video?" -> "Sure, [SEG]."; the model's processor inserts ``[BOX]``
before every ``[SEG]`` when the box prompt is on). Building item ``i`` with seed ``s``:

1. the clip: ``n`` frames of the video, one drawn at random from each of ``n`` equal segments
   (``n`` = the largest frame budget of the preset: spatial / temporal encoder frames, SAM2 frames,
   TSF crops; all frames when the video is shorter), drawn with seed ``s``;
2. the targets' masks on those frames (tube targets without masks use their boxes, filled);
3. the key frame, where proposals come from: SAM2 frame 0 (the paper), or with the model's
   ``key_frame: best`` (ours; inference then prompts its most confident frame) a SAM2 frame drawn
   with the same seed among those where every target is visible (else where any is; else frame 0)
   -- the seed drives all of a sample's randomness;
4. :meth:`~sparrow.models.processor.SparrowProcessor.training_sample` does the rest: encoder frames
   (uniform over the clip), SAM2 frames (uniform; all supervised), ``[BOX]`` targets, proposer
   targets (every annotated object of the video on the key frame), and the TSF crops along the first
   target's ground-truth track (an empty mask reuses the previous box, else the full frame; at most
   ``tsf.max_crops`` crops), PAPER.md 1.2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sparrow.data.mask_sources import MaskSource, RleMasks
from sparrow.data.records import Conversation, DatasetSplit, GroundingTarget
from sparrow.errors import DataFormatError
from sparrow.models.batch import TrainingSample
from sparrow.models.processor import SparrowProcessor, uniform_indices


def clip_positions(num_frames: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n, num_frames)`` strictly increasing frame positions, one drawn from each of that many
    equal segments of ``[0, num_frames)`` (int64)."""
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    k = min(n, num_frames)
    edges = np.linspace(0, num_frames, k + 1)
    lows = np.ceil(edges[:-1]).astype(np.int64)
    highs = np.maximum(np.ceil(edges[1:]).astype(np.int64), lows + 1)
    return np.minimum(lows + (rng.random(k) * (highs - lows)).astype(np.int64), num_frames - 1)


def key_frame_with_targets(masks: np.ndarray, rng: np.random.Generator) -> int:
    """A frame drawn uniformly among those where every target is visible (else any target; else 0).

    Args:
        masks: bool ``(n_targets, T, H, W)`` masks of the targets on the SAM2 frames.
    """
    if masks.shape[0] == 0:
        return 0
    visible = masks.reshape(*masks.shape[:2], -1).any(axis=2)  # (n_targets, T)
    for frames in (np.flatnonzero(visible.all(axis=0)), np.flatnonzero(visible.any(axis=0))):
        if frames.size:
            return int(rng.choice(frames))
    return 0


def object_mask_sources(split: DatasetSplit) -> dict[str, list[MaskSource]]:
    """One mask source per annotated object of each video: ``{video_id: [MaskSource, ...]}``.

    For MeViS-layout mask dicts: every object of the video's ``objects`` map (``{obj_id: anno_id}``,
    SynRef lists all of them), else the distinct anno ids its expressions refer to. Layouts without
    per-object ids give no entry (the proposer is then supervised by the targets only).
    """
    out: dict[str, dict[str, MaskSource]] = {}
    for exp in split.expressions:
        if not isinstance(exp.masks, RleMasks):
            continue
        per_video = out.setdefault(exp.video_id, {})
        listed = split.videos[exp.video_id].extra.get("objects")
        keys = [str(a) for a in listed.values()] if isinstance(listed, Mapping) else exp.masks.keys
        for key in keys:
            if key not in per_video:
                per_video[key] = RleMasks(exp.masks.store, [key], exp.masks.num_frames, exp.masks.size)
    return {video: list(objects.values()) for video, objects in out.items()}


def _target_masks(
    target: GroundingTarget,
    positions: np.ndarray,
    frame_numbers: Sequence[int],
    size: tuple[int, int],
    what: str,
) -> np.ndarray:
    """Bool ``(T, H, W)`` masks of one target on the clip's frames."""
    if target.masks is not None:
        return target.masks.load(positions)
    if target.boxes is not None:
        masks = np.zeros((len(positions), *size), dtype=bool)
        h, w = size
        for i, p in enumerate(positions):
            box = target.boxes.get(int(frame_numbers[p])) if isinstance(target.boxes, Mapping) else None
            if box is None:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            c0, r0 = int(np.clip(np.floor(x1), 0, w)), int(np.clip(np.floor(y1), 0, h))
            c1, r1 = int(np.clip(np.ceil(x2), 0, w)), int(np.clip(np.ceil(y2), 0, h))
            masks[i, r0:r1, c0:c1] = True
        return masks
    raise DataFormatError(
        f"{what}: target {target.phrase!r} has neither masks nor boxes", fix="use a split with ground truth"
    )


class ConversationSource:
    """A dataset of conversations as a :class:`~sparrow.training.task.SampleSource`.

    Args:
        name: the dataset's label.
        conversations: the items.
        processor: the model's processor (sizes, tokenizer, box-prompt and TSF switches).
        objects: ``{video_id: per-object mask sources}`` for the proposer targets (see
            :func:`object_mask_sources`).
    """

    def __init__(
        self,
        name: str,
        conversations: Sequence[Conversation],
        processor: SparrowProcessor,
        objects: Mapping[str, Sequence[MaskSource]] | None = None,
    ) -> None:
        if not conversations:
            raise DataFormatError(
                f"dataset {name!r} has no item for this task", fix="check its split, format and task"
            )
        self.name = name
        self.conversations = list(conversations)
        self.processor = processor
        self.objects = dict(objects or {})
        cfg = processor.config
        self.clip_frames = max(cfg.spatial.frames, cfg.temporal.frames, cfg.sam2.frames, cfg.tsf.max_crops)

    def __len__(self) -> int:
        return len(self.conversations)

    def sample_id(self, index: int) -> str:
        return f"{self.name}/{self.conversations[index].sample_id}"

    def build(self, index: int, seed: int) -> TrainingSample:
        """The training sample of conversation ``index`` (see the module docstring)."""
        conv = self.conversations[index]
        what = f"{self.name}/{conv.sample_id}"
        users = [t.text for t in conv.turns if t.role == "user"]
        answers = [t.text for t in conv.turns if t.role == "assistant"]
        if len(users) != 1 or len(answers) != 1:
            raise DataFormatError(
                f"{what}: training needs one question and one answer, got {len(conv.turns)} turns"
            )
        video = conv.video
        rng = np.random.default_rng(seed)
        positions = clip_positions(video.num_frames, self.clip_frames, rng)
        clip = video.load_frames(positions)
        size = clip.size
        seg_masks = (
            np.stack([_target_masks(t, positions, video.frame_numbers, size, what) for t in conv.targets])
            if conv.targets
            else np.zeros((0, len(positions), *size), dtype=bool)
        )
        sam_frames = uniform_indices(len(positions), self.processor.config.sam2.frames)
        key = 0
        if self.processor.config.key_frame == "best":
            key = key_frame_with_targets(seg_masks[:, sam_frames], rng)
        object_masks = None
        sources = self.objects.get(video.video_id)
        if sources:
            at = int(positions[sam_frames[key]])
            object_masks = np.stack([s.load([at])[0] for s in sources])
        return self.processor.training_sample(
            clip.frames,
            users[0],
            self.processor.format_answer(answers[0], [t.phrase for t in conv.targets]),
            seg_masks,
            sam_indices=sam_frames,
            key_frame=key,
            object_masks=object_masks,
        )
