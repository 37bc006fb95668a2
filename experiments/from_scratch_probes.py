"""Short probes behind the tiny preset's from-scratch settings (docs/model.md).

``sam-box``: a fresh tiny SAM2 learns box -> mask on single SynRef frames (decoder path only, AdamW,
batches of 16 frames of the training split), with SAM2's own box prompt (corner tokens) or with the
box also as a dense mask prompt (``sam2.box_mask_prompt``); prints mask IoU on training and test
frames, the IoU of the filled box itself, and how far the predicted masks lie from the objects.
``--image-size 256`` trains the dense-prompt setting at SAM2 input sizes 128 and 256 instead.

``mask-grid``: the ceiling that SAM2's low-resolution masks (``S/4`` per side at input size ``S``)
put on J and F: each true referent mask of the test split is averaged onto an ``n x n`` grid,
resized back bilinearly and thresholded at 0.5, as the model's logits are (no model involved).

``proposer``: a fresh SAM2 image encoder and proposer learn class-agnostic detection on SynRef key
frames (DETR losses, batches of 4 training samples), with learned anchors or with query selection
(``proposer.query_selection``); prints the recall at IoU 0.5 of the top-16 proposals over every
object of the first 32 validation key frames.

``sam-track``: a trained model's SAM2 (``--model``, the bundled one by default) goes on learning
box -> masklet tracking alone (8-frame clips of single-object referents of the training split, the
box on the first frame, batches of 4 clips, AdamW), with and without ``sam2.pointer_dropout``;
prints ``diagnose_model.py``'s tracking oracle on the test split before and after: mask IoU on the
tracked frames, and the IoU between the tracked masks of two objects (1.0: the memory is ignored).

    python experiments/from_scratch_probes.py sam-box --steps 600 [--image-size 256]
    python experiments/from_scratch_probes.py mask-grid
    python experiments/from_scratch_probes.py proposer --steps 500
    python experiments/from_scratch_probes.py sam-track --steps 400

Each compares two settings in one run (same seed, same data). The data are the recipe's
(``data/synref/train``, ``data/synref/val``, ``data/synref/test``; see ``synref_tiny.yaml``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from diagnose_model import tracking_oracle
from sparrow.data.registry import get_format
from sparrow.evaluation.jf import jf_series
from sparrow.inference.model_path import resolve_model_path
from sparrow.models import SparrowBatch, SparrowModel, load_config
from sparrow.models.losses import DETR_LOSS_WEIGHTS, detr_losses, dice_loss, mask_bce_loss
from sparrow.models.proposer import ProposerOutput
from sparrow.models.sam2 import Sam2Adapter, tiny_sam2_config
from sparrow.structures import box_convert, box_iou, mask_iou, masks_to_boxes, normalize_boxes
from sparrow.training.recipe import load_recipe
from sparrow.training.sparrow_task import SparrowTask


def referent_frames(root: Path, videos: int, every: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(N, H, W, 3)`` uint8 and masks ``(N, H, W)`` bool of single-object referents (every
    ``every``-th frame where the referent is visible) of the first ``videos`` videos of a split."""
    data = get_format("mevis").open(root, root.name)
    frames, masks = [], []
    for video_id in sorted(data.videos)[:videos]:
        clip = data.videos[video_id].load_frames()
        for exp in data.expressions_of(video_id):
            if len(exp.obj_ids) != 1 or exp.masks is None:
                continue
            truth = exp.masks.load()
            for t in np.flatnonzero(truth.reshape(len(truth), -1).any(axis=1))[::every]:
                frames.append(clip.frames[t])
                masks.append(truth[t])
    return np.stack(frames), np.stack(masks)


def _cxcywh(masks: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(
        box_convert(normalize_boxes(masks_to_boxes(masks), masks.shape[1:]), "xyxy", "cxcywh")
    )


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()]) if len(xs) else np.array([np.nan, np.nan])


def sam_box(dense: bool, steps: int, train: tuple, test: tuple, image_size: int = 128) -> dict:
    """Train a fresh tiny SAM2 (input ``image_size`` px) on box -> mask; IoU and geometry of its
    test predictions."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sam = Sam2Adapter.from_config(tiny_sam2_config(image_size))
    sam.box_mask_prompt = dense
    optimizer = torch.optim.AdamW(sam.parameters(), lr=1e-3)
    (frames, masks), boxes = train, _cxcywh(train[1])
    test_boxes = _cxcywh(test[1][:100])

    def predict(f: np.ndarray, b: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        sam.eval()
        with torch.no_grad():
            out = sam.decode(sam.image_features(sam.preprocess(f)), boxes=b)
            pred = sam.upsample_logits(out.mask_logits, size)[:, 0].numpy() > 0
        sam.train()
        return pred

    start = time.time()
    for step in range(1, steps + 1):
        index = rng.integers(0, len(frames), 16)
        out = sam.decode(sam.image_features(sam.preprocess(frames[index])), boxes=boxes[index])
        logits = sam.upsample_logits(out.mask_logits, masks.shape[1:])[:, 0]
        target = torch.as_tensor(masks[index]).float()
        loss = 2 * mask_bce_loss(logits, target) + 0.5 * dice_loss(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"  step {step}: loss {float(loss.detach()):.3f} ({time.time() - start:.0f} s)", flush=True)
    size = masks.shape[1:]
    train_pred = predict(frames[:100], boxes[:100], size)
    test_frames, test_masks = test[0][:100], test[1][:100]
    pred = predict(test_frames, test_boxes, size)
    filled = np.zeros_like(test_masks)
    for i, (x1, y1, x2, y2) in enumerate(masks_to_boxes(test_masks).astype(int)):
        filled[i, y1:y2, x1:x2] = True
    return {
        "train_iou": float(np.mean([mask_iou(p, m) for p, m in zip(train_pred, masks[:100], strict=True)])),
        "test_iou": float(np.mean([mask_iou(p, m) for p, m in zip(pred, test_masks, strict=True)])),
        "filled_box_iou": float(np.mean([mask_iou(f, m) for f, m in zip(filled, test_masks, strict=True)])),
        "centroid_error_px": float(
            np.nanmean(
                [np.linalg.norm(_centroid(p) - _centroid(m)) for p, m in zip(pred, test_masks, strict=True)]
            )
        ),
    }


def mask_grid(masks: np.ndarray, grids: tuple[int, ...] = (32, 64)) -> dict:
    """Mean and 10th percentile of J (IoU) and F (DAVIS boundary measure) of ``masks`` ``(N, H, W)``
    bool after an area-average onto each ``n x n`` grid of ``grids`` and a bilinear resize back to
    ``(H, W)``, thresholded at 0.5."""
    truth = torch.as_tensor(masks)[:, None].float()
    out: dict = {"object_area_fraction_median": float(truth.mean(dim=(1, 2, 3)).median())}
    for n in grids:
        low = F.interpolate(truth, size=(n, n), mode="area")
        back = F.interpolate(low, size=masks.shape[1:], mode="bilinear", align_corners=False)[:, 0] > 0.5
        j, f = jf_series(masks, back.numpy())
        out[f"grid_{n}"] = {
            "J": float(j.mean()),
            "J_p10": float(np.percentile(j, 10)),
            "F": float(f.mean()),
            "F_p10": float(np.percentile(f, 10)),
        }
    return out


def tracking_clips(root: Path, videos: int, length: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(frames (T, H, W, 3) uint8, masks (T, H, W) bool)`` of every single-object referent of the first
    ``videos`` videos that is visible on frame 0 (a video's frames are shared between its referents)."""
    data = get_format("mevis").open(root, root.name)
    clips = []
    for video_id in sorted(data.videos)[:videos]:
        frames = data.videos[video_id].load_frames().frames
        seen = set()
        for exp in data.expressions_of(video_id):
            if len(exp.obj_ids) == 1 and exp.masks is not None and exp.obj_ids not in seen:
                seen.add(exp.obj_ids)
                truth = exp.masks.load()
                if truth[0].any() and len(truth) >= length:
                    clips.append((frames, truth))
    return clips


def sam_track(model: str, pointer_dropout: float, steps: int, clips: list, length: int) -> dict:
    """Continue training ``model``'s SAM2 on box -> masklet tracking; the tracking oracle after."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sam = SparrowModel.from_pretrained(resolve_model_path(model)).sam2
    sam.pointer_dropout = pointer_dropout
    optimizer = torch.optim.AdamW(sam.parameters(), lr=3e-4)
    start = time.time()
    sam.train()
    for step in range(1, steps + 1):
        chosen = [clips[i] for i in rng.integers(0, len(clips), 4)]
        offsets = [int(rng.integers(0, len(f) - length + 1)) for f, _ in chosen]
        chosen = [(f[o : o + length], m[o : o + length]) for (f, m), o in zip(chosen, offsets, strict=True)]
        chosen = [(f, m) for f, m in chosen if m[0].any()]  # prompted where the object is visible
        if not chosen:
            continue
        pixels = torch.cat([sam.preprocess(f) for f, _ in chosen])
        out = sam.track(pixels, boxes=torch.cat([_cxcywh(m[:1]) for _, m in chosen]).float())
        target = torch.as_tensor(np.stack([m for _, m in chosen])).float()  # (N, T, H, W)
        logits = sam.upsample_logits(out.mask_logits[:, :, 0].flatten(0, 1)[:, None], target.shape[-2:])[:, 0]
        target = target.flatten(0, 1)
        present = target.flatten(1).any(dim=1).float()
        loss = (
            2 * mask_bce_loss(logits, target)
            + 0.5 * dice_loss(logits, target)
            + 0.5 * F.binary_cross_entropy_with_logits(out.object_score_logits.flatten(), present)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"  step {step}: loss {float(loss.detach()):.3f} ({time.time() - start:.0f} s)", flush=True)
    sam.eval()
    return tracking_oracle(sam, Path("data/synref/test"), 20, length)


def proposer(query_selection: bool, steps: int) -> dict:
    """Train a fresh SAM2 image encoder + proposer on key frames; recall@0.5 of the top-16."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    task = SparrowTask(load_recipe("synref_tiny"))
    tokenizer = task.build_model().tokenizer
    config = load_config("tiny", [f"proposer.query_selection={str(query_selection).lower()}"])
    model = SparrowModel(config, tokenizer)
    source = task.train_sources(model)[0]
    held_out = task._sources(task.recipe.data.val, model)[0]
    params = [*model.sam2.parameters(), *model.proposer.parameters()]
    optimizer = torch.optim.AdamW(params, lr=2e-4)

    def proposals(batch: SparrowBatch) -> ProposerOutput:
        keys = batch.sam_frames[torch.arange(batch.sam_frames.shape[0]), batch.key_frames]
        return model.proposer(model.sam2.image_features(keys).image_embeddings)

    start = time.time()
    for step in range(1, steps + 1):
        batch = task.collate([source.build(int(i), step) for i in rng.integers(0, len(source), 4)])
        losses = detr_losses(proposals(batch), batch.det_boxes)
        total = sum(DETR_LOSS_WEIGHTS[k] * v for k, v in losses.items())
        optimizer.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0:
            print(
                f"  step {step}: loss {float(total.detach()):.3f} ({time.time() - start:.0f} s)", flush=True
            )
    model.eval()
    hits: list[bool] = []
    with torch.no_grad():
        for i in range(min(32, len(held_out))):
            batch = task.collate([held_out.build(i, 0)])
            truth = box_convert(batch.det_boxes[0], "cxcywh", "xyxy")
            if len(truth):
                top = proposals(batch).top_k(16)
                iou = box_iou(box_convert(top.boxes[0], "cxcywh", "xyxy"), truth)
                hits += (iou.max(dim=0).values >= 0.5).tolist()
    return {"objects": len(hits), "recall@0.5_top16": float(np.mean(hits))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("probe", choices=["sam-box", "mask-grid", "proposer", "sam-track"])
    parser.add_argument("--steps", type=int, default=None, help="Training steps (600 / 500 / 400).")
    parser.add_argument("--model", default="default", help="sam-track: the model whose SAM2 trains on.")
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="sam-box: compare input 128 with this size (dense prompt).",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    if args.probe == "sam-box":
        train = referent_frames(Path("data/synref/train"), 60)
        test = referent_frames(Path("data/synref/test"), 10)
        if args.image_size:
            for size in (128, args.image_size):
                print(f"image_size={size} (box_mask_prompt=True):", flush=True)
                print(" ", sam_box(True, args.steps or 600, train, test, size), flush=True)
        else:
            for dense in (False, True):
                print(f"box_mask_prompt={dense}:", flush=True)
                print(" ", sam_box(dense, args.steps or 600, train, test), flush=True)
    elif args.probe == "mask-grid":
        print(mask_grid(referent_frames(Path("data/synref/test"), 200, every=1)[1]), flush=True)
    elif args.probe == "sam-track":
        length = 8
        clips = tracking_clips(Path("data/synref/train"), 100, length)
        sam = SparrowModel.from_pretrained(resolve_model_path(args.model)).sam2.eval()
        print("before:", tracking_oracle(sam, Path("data/synref/test"), 20, length), flush=True)
        for dropout in (0.0, 0.5):
            print(f"pointer_dropout={dropout}:", flush=True)
            print(" ", sam_track(args.model, dropout, args.steps or 400, clips, length), flush=True)
    else:
        for selection in (False, True):
            print(f"query_selection={selection}:", flush=True)
            print(" ", proposer(selection, args.steps or 500), flush=True)


if __name__ == "__main__":
    main()
