"""Where a trained model loses its masks: SAM2 with the ground-truth box, teacher forcing, object scores.

Six measurements on a model and the data of its recipe, each isolating one part of the path:

1. **box oracle** -- for every single-referent expression, SAM2 is prompted with the referent's
   ground-truth box (no ``[SEG]``) on its first visible frames: mask IoU there, ungated, with the
   fraction of positive object scores and the predicted / true mask areas. Measures SAM2 alone.
2. **teacher forcing** -- the training forward on held-out items (the recipe's validation data): mask
   IoU of the supervised frames after SAM2's gate, the mean object score per SAM frame position
   (position 0 is the prompted key frame), and the filtration head: box IoU of the selected proposal
   with the referent's key-frame box, how often it reaches 0.5, and how often any of the top-k does.
3. **key frames** -- how often the prompted frame of a training sample shows a referent, and SAM2's
   object score on held-out key frames with box + ``[SEG]``, ``[SEG]`` only, box only and no prompt,
   with the norms of the sparse prompt tokens (box corners, padding, ``[SEG]``).
4. **expression sensitivity** -- the IoU between the masks predicted for two different expressions
   of the same video, next to the IoU between their true referents: a model that reads the
   expression predicts masks that differ as much as the referents do.
5. **box query spread** -- the projected ``[BOX]`` state (the filtration head's query) over held-out
   items: the norm of its mean, the RMS deviation from it, and the share of that variance found
   between expressions of one video (the rest is between videos). A query that barely moves cannot
   tell the filtration head which object to pick.
6. **tracking oracle** -- SAM2 prompted with each object's ground-truth box on its first visible frame
   and tracked through its memory over the next ``sam2.frames - 1`` frames (the training path,
   eval mode): mask IoU on the prompted and on the tracked frames, and, for two objects of one video
   prompted on the same frame, the IoU between their tracked masks (their true masks: ~0). A memory
   that carries the object gives each prompt its own masklet; one that is ignored gives every prompt
   the same one.

    python experiments/diagnose_model.py --model default --split data/synref/test --videos 10 --items 32
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path

import numpy as np
import torch

from sparrow.data.registry import get_format
from sparrow.inference.model_path import resolve_model_path
from sparrow.models import SparrowModel, collate
from sparrow.models.llm import decoder_hidden
from sparrow.models.sam2 import Sam2Adapter
from sparrow.structures import box_convert, box_iou, mask_iou, masks_to_boxes, normalize_boxes
from sparrow.training.recipe import DatasetSpec, load_recipe
from sparrow.training.samples import ConversationSource
from sparrow.training.sparrow_task import read_conversations


@torch.no_grad()
def box_oracle(model: SparrowModel, split: Path, videos: int, frames_per_target: int = 3) -> dict:
    """SAM2 prompted with ground-truth boxes (cxcywh normalised) on the referent's first visible frames."""
    data = get_format("mevis").open(split, split.name)
    rows = []
    for video_id in sorted(data.videos)[:videos]:
        clip = data.videos[video_id].load_frames()
        features = model.sam2.image_features(model.sam2.preprocess(clip.frames))
        for exp in data.expressions_of(video_id):
            if len(exp.obj_ids) != 1 or exp.masks is None:
                continue
            truth = exp.masks.load()
            visible = np.flatnonzero(truth.reshape(len(truth), -1).any(axis=1))[:frames_per_target]
            boxes = normalize_boxes(masks_to_boxes(truth[visible]), clip.size)
            for t, box in zip(visible, box_convert(boxes, "xyxy", "cxcywh"), strict=True):
                out = model.sam2.decode(features.select(slice(t, t + 1)), boxes=torch.as_tensor(box)[None])
                mask = model.sam2.upsample_logits(out.mask_logits, clip.size)[0, 0].numpy() > 0
                score = float(out.object_score_logits.reshape(()))
                rows.append((mask_iou(mask, truth[t]), score > 0, mask.mean(), truth[t].mean()))
    r = np.array(rows, dtype=np.float64)
    return {
        "prompted_frames": len(r),
        "iou_ungated": r[:, 0].mean(),
        "score_positive": r[:, 1].mean(),
        "predicted_area": r[:, 2].mean(),
        "true_area": r[:, 3].mean(),
    }


@torch.no_grad()
def tracking_oracle(sam: Sam2Adapter, split: Path, videos: int, length: int) -> dict:
    """SAM2 tracking from a ground-truth box (measurement 6) over ``length``-frame clips: IoU with the
    truth on the prompted and the tracked frames, and the IoU between the tracked masks of two objects
    prompted on the same frame."""
    data = get_format("mevis").open(split, split.name)
    prompted, tracked, between, true_between = [], [], [], []
    for video_id in sorted(data.videos)[:videos]:
        clip = data.videos[video_id].load_frames()
        pixels = sam.preprocess(clip.frames)
        referents = {}
        for exp in data.expressions_of(video_id):
            if len(exp.obj_ids) == 1 and exp.masks is not None and exp.obj_ids not in referents:
                truth = exp.masks.load()
                if truth[0].any():  # prompted on frame 0, so that two objects share their clip
                    referents[exp.obj_ids] = truth[:length]
        masks = []
        for truth in referents.values():
            box = box_convert(normalize_boxes(masks_to_boxes(truth[:1]), clip.size), "xyxy", "cxcywh")
            out = sam.track(pixels[:length], boxes=torch.as_tensor(box, dtype=torch.float32))
            gated = torch.where(
                out.object_score_logits[0, :, :, None, None] > 0, out.mask_logits[0, :, :1], -1.0
            )
            pred = sam.upsample_logits(gated, clip.size)[:, 0].numpy() > 0
            prompted.append(mask_iou(pred[0], truth[0]))
            tracked.extend(mask_iou(pred[t], truth[t]) for t in range(1, len(truth)))
            masks.append((pred, truth))
        for (a, ta), (b, tb) in itertools.pairwise(masks):
            between.extend(mask_iou(a[t], b[t]) for t in range(1, len(ta)))
            true_between.extend(mask_iou(ta[t], tb[t]) for t in range(1, len(ta)))
    return {
        "objects": len(prompted),
        "iou_prompted_frame": float(np.mean(prompted)),
        "iou_tracked_frames": float(np.mean(tracked)),
        "iou_between_two_objects_tracked": float(np.mean(between)),
        "iou_between_their_truths": float(np.mean(true_between)),
    }


@torch.no_grad()
def teacher_forced(model: SparrowModel, source: ConversationSource, items: int) -> dict:
    """Training forward on the first validation items: gated mask IoU, object score per SAM frame
    position, and how much the expression matters: the IoU between the masks predicted for two
    different expressions of the same video, against the IoU between their true referents."""
    pad = model.processor.tokenizer.ids.pad
    ious, scores, selected_iou, best_iou = [], [], [], []
    by_video: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for i in range(min(items, len(source))):
        batch = collate([source.build(i, 0)], pad)
        out = model(batch)
        logits = model.sam2.upsample_logits(out.mask_logits, tuple(batch.seg_masks.shape[-2:]))[:, 0]
        target = batch.seg_masks[out.mask_pairs[:, 0], out.mask_pairs[:, 1]].bool().numpy()
        score = out.object_score_logits.reshape(-1)
        predicted = ((logits > 0) & (score[:, None, None] > 0)).numpy()
        ious += [mask_iou(p, t) for p, t in zip(predicted, target, strict=True)]
        scores.append(score[out.mask_pairs[:, 1].argsort()].numpy())
        if out.filtration is not None and bool(batch.box_valid.any()):
            truth = box_convert(batch.boxes[batch.box_valid], "cxcywh", "xyxy")
            chosen = box_convert(out.filtration.selected_boxes[batch.box_valid], "cxcywh", "xyxy")
            offered = box_convert(out.filtration.refined_boxes[batch.box_valid], "cxcywh", "xyxy")
            selected_iou += box_iou(chosen, truth).diagonal().tolist()
            best_iou += [float(box_iou(o, g[None]).max()) for o, g in zip(offered, truth, strict=True)]
        if out.mask_pairs[:, 0].max() == 0:  # one [SEG]: comparable across expressions
            by_video.setdefault(source.conversations[i].video.video_id, []).append((predicted, target))
    pairs = [
        (mask_iou(a[0], b[0]), mask_iou(a[1], b[1]))
        for group in by_video.values()
        for k, a in enumerate(group)
        for b in group[k + 1 :]
    ]
    by_position = np.stack([s for s in scores if len(s) == len(scores[0])]).mean(axis=0)
    return {
        "pairs": len(ious),
        "iou_gated": float(np.mean(ious)),
        "object_score_by_position": by_position.round(2).tolist(),
        "same_video_expression_pairs": len(pairs),
        "same_video_predicted_iou": float(np.mean([p[0] for p in pairs])) if pairs else None,
        "same_video_referent_iou": float(np.mean([p[1] for p in pairs])) if pairs else None,
        "selected_box_iou": float(np.mean(selected_iou)) if selected_iou else None,
        "selected_box_hit@0.5": float(np.mean(np.array(selected_iou) >= 0.5)) if selected_iou else None,
        "best_proposal_hit@0.5": float(np.mean(np.array(best_iou) >= 0.5)) if best_iou else None,
    }


def recipe_source(model: SparrowModel, spec: DatasetSpec) -> ConversationSource:
    """The training samples of one dataset of a recipe, built for ``model``."""
    conversations, objects = read_conversations(spec)
    return ConversationSource(spec.name, conversations, model.processor, objects)


def key_frame_visibility(model: SparrowModel, specs: list[DatasetSpec], samples: int) -> dict:
    """Fraction of training samples (``samples`` drawn per training dataset ``specs``, seed 0) whose
    prompted SAM frame shows a referent: the object-score target of the key frame."""
    out = {}
    for spec in specs:
        source = recipe_source(model, spec)
        rng = np.random.default_rng(0)
        picks = rng.choice(len(source), min(samples, len(source)), replace=False)
        shown = [bool(source.build(int(i), seed=1).seg_masks[:, 0].any()) for i in picks]
        out[spec.name] = float(np.mean(shown))
    return out


@torch.no_grad()
def key_frame_prompts(model: SparrowModel, source: ConversationSource, items: int) -> dict:
    """SAM2's object score on the key frame of held-out items under each prompt combination (the
    training forward's own box and ``[SEG]`` prompts), and the norms of the sparse prompt tokens."""
    pad = model.processor.tokenizer.ids.pad
    calls: list[tuple] = []
    decode = model.sam2.decode

    def recording(features, *, boxes=None, seg_embeddings=None, **other):  # other: chain's mask prompts
        calls.append((features, boxes, seg_embeddings))
        return decode(features, boxes=boxes, seg_embeddings=seg_embeddings, **other)

    model.sam2.decode = recording
    scores: dict[str, list[float]] = {"box+seg": [], "seg": [], "box": [], "none": []}
    norms = []
    try:
        for i in range(min(items, len(source))):
            calls.clear()
            model(collate([source.build(i, 0)], pad))
            prompted = [c for c in calls if c[2] is not None]
            if not prompted:
                continue
            features, box, seg = prompted[0]
            for name, (b, e) in {
                "box+seg": (box, seg),
                "seg": (None, seg),
                "box": (box, None),
                "none": (None, None),
            }.items():
                if name.startswith("box") and box is None:
                    continue
                out = decode(features, boxes=b, seg_embeddings=e)
                scores[name].append(float(out.object_score_logits.reshape(-1)[0]))
            sparse, _ = model.sam2._prompt_embeddings(features.image_embeddings, box, seg)
            norms.append(sparse[0, 0].norm(dim=-1).tolist())
    finally:
        model.sam2.decode = decode
    return {
        "object_score_mean": {k: float(np.mean(v)) for k, v in scores.items() if v},
        "object_score_range": {k: [float(np.min(v)), float(np.max(v))] for k, v in scores.items() if v},
        "sparse_token_norms": np.mean(norms, axis=0).round(2).tolist() if norms else None,
    }


@torch.no_grad()
def box_query_spread(model: SparrowModel, source: ConversationSource, items: int) -> dict | None:
    """Spread of ``box_projection([BOX] state)`` over the first held-out items (no TSF)."""
    ids = model.processor.tokenizer.ids
    queries, videos = [], []
    for i in range(min(items, len(source))):
        batch = collate([source.build(i, 0)], ids.pad)
        if not bool((batch.input_ids == ids.box).any()):
            continue
        embeds = model.embed_inputs(
            batch.input_ids, model.encode_video(batch.spatial_frames, batch.temporal_frames)
        )
        hidden, _ = decoder_hidden(model.llm, embeds, batch.attention_mask)
        queries.append(model.box_projection(model.box_states(batch, hidden)[:1])[0])
        videos.append(source.conversations[i].video.video_id)
    if len(queries) < 2:
        return None
    x = torch.stack(queries).double()
    deviation = x - x.mean(dim=0)
    within = sum(
        (x[idx] - x[idx].mean(dim=0)).pow(2).sum()
        for idx in (torch.tensor([j for j, v in enumerate(videos) if v == u]) for u in set(videos))
    )
    return {
        "items": len(queries),
        "mean_norm": float(x.mean(dim=0).norm()),
        "rms_deviation": float(deviation.pow(2).sum(dim=1).mean().sqrt()),
        "variance_share_within_video": float(within / deviation.pow(2).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Model folder, or 'default' (the bundled one).")
    parser.add_argument(
        "--split", type=Path, default=Path("data/synref/test"), help="MeViS-layout SynRef split."
    )
    parser.add_argument(
        "--videos", type=int, default=10, help="Videos of the split for the box and tracking oracles."
    )
    parser.add_argument(
        "--recipe", default="synref_tiny", help="Recipe whose validation data is teacher-forced."
    )
    parser.add_argument("--items", type=int, default=16, help="Validation items for teacher forcing.")
    parser.add_argument("--samples", type=int, default=300, help="Training samples per dataset (key frames).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures as JSON.")
    parser.add_argument("--only-tracking", action="store_true", help="Measure the tracking oracle only.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SparrowModel.from_pretrained(resolve_model_path(args.model), {"tsf": {"mode": "off"}}).eval()
    tracking = tracking_oracle(model.sam2, args.split, args.videos, model.config.sam2.frames)
    if args.only_tracking:
        print(json.dumps(tracking, indent=2))
        return
    recipe = load_recipe(args.recipe)
    held_out = recipe_source(model, recipe.data.val[0])
    figures = {
        "box_oracle": box_oracle(model, args.split, args.videos),
        "teacher_forced": teacher_forced(model, held_out, args.items),
        "key_frame_shows_referent": key_frame_visibility(model, recipe.data.train, args.samples),
        "key_frame_prompts": key_frame_prompts(model, held_out, args.items),
        "box_query_spread": box_query_spread(model, held_out, args.items),
        "tracking_oracle": tracking,
    }
    text = json.dumps(figures, indent=2, default=float)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
