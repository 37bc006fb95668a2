"""Where does SynRef J&F go? The model's predictions with ground-truth key-frame prompts.

Each mode predicts a SynRef split in the MeViS layout and scores it with ``sparrow eval synref``;
only the key-frame prompts change, everything else is the model's own inference path (its answer,
its projected ``[SEG]``, SAM2 and its memory propagation in both directions):

- ``own``: the model's prompts on its own key frame (what ``sparrow predict`` does; ``--key-frame``
  overrides the model's choice of frame);
- ``proposal``: a perfect filtration head. The key frame is the first frame where the referent is
  visible; the box prompt is the proposer's top-k proposal of highest IoU with the referent's
  ground-truth box (the union box of a multi-object referent);
- ``box``: a perfect proposer and filtration head. The same frame, prompted with the ground-truth
  box itself: what SAM2 and its memory make of a correct box.

The gaps between the modes split the model's shortfall between the filtration head, the proposer
and SAM2's segmentation and tracking (docs/training.md, "What limits the bundled model").

    python experiments/oracle_prompts.py --model default --out runs/oracle
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import sparrow.inference.session as session_module
from runner import SPARROW, run
from sparrow.data.formats.common import BinaryMaskTreeWriter
from sparrow.data.registry import get_format
from sparrow.inference import GroundingOptions, GroundingPipeline
from sparrow.inference.answer import Target
from sparrow.inference.frames import ImageFileFrames, SamFrames
from sparrow.inference.outputs import add_expression_masks
from sparrow.inference.tracking import TargetPrompt, choose_key_frame, sam_features
from sparrow.models import SparrowModel
from sparrow.models.sam2 import Sam2Features
from sparrow.structures.boxes import box_convert, box_iou, masks_to_boxes

MODES = ("own", "proposal", "box")


class OracleKeyFrame:
    """Stands in for :func:`sparrow.inference.tracking.choose_key_frame` (:func:`predict` installs it
    in ``sparrow.inference.session``): prompts every target of the current expression on the first
    frame where its referent is visible, with the ground-truth box or its best proposal (``own``: the
    model's own choice, unchanged)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.frame = 0
        self.box: torch.Tensor | None = None  # (1, 4) normalised cxcywh
        self.proposal_iou: list[float] = []

    def set_referent(self, masks: np.ndarray) -> None:
        """``masks``: ``(T, H, W)`` bool union mask of the referent over the video's frames."""
        visible = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
        self.frame = int(visible[0]) if visible.size else 0
        h, w = masks.shape[1:]
        xyxy = torch.as_tensor(masks_to_boxes(masks[self.frame][None]), dtype=torch.float32)
        xyxy = xyxy / torch.tensor([w, h, w, h], dtype=torch.float32)
        self.box = box_convert(xyxy, "xyxy", "cxcywh")

    def __call__(
        self,
        model: SparrowModel,
        frames: SamFrames,
        targets: Sequence[Target],
        options: GroundingOptions,
        cache: dict[int, Sam2Features] | None = None,
    ) -> tuple[int, list[TargetPrompt], Sam2Features]:
        if self.mode == "own":
            return choose_key_frame(model, frames, targets, options, cache)
        features = sam_features(model, frames[self.frame][None])
        box = self.box.to(features.image_embeddings.device)
        if self.mode == "proposal":
            proposals = model.propose(features)
            ious = box_iou(
                box_convert(proposals.boxes[0], "cxcywh", "xyxy"), box_convert(box, "cxcywh", "xyxy")
            )
            best = int(ious[:, 0].argmax())
            self.proposal_iou.append(float(ious[best, 0]))
            box = proposals.boxes[0, best : best + 1]
        seg = model.prompts_from_hidden(torch.stack([t.seg_hidden for t in targets]), None, None)
        prompts = [TargetPrompt(seg.seg_embeddings[i : i + 1], box.to(seg.seg_embeddings.dtype), 1.0)
                   for i in range(len(targets))]  # fmt: skip
        return self.frame, prompts, features


def predict(
    model: str, root: Path, out: Path, oracle: OracleKeyFrame, limit: int | None, options: GroundingOptions
) -> int:
    """Predict every expression of ``root`` into ``out`` (MeViS layout); the number of expressions."""
    session_module.choose_key_frame = oracle
    pipe = GroundingPipeline.from_pretrained(model, options=options, device="cpu")
    data = get_format("mevis").open(root, None)
    videos = sorted(v for v in data.videos if data.expressions_of(v))[:limit]
    count = 0
    for n, video_id in enumerate(videos):
        record = data.videos[video_id]
        session = pipe.session(ImageFileFrames(record.frame_paths(), fps=record.fps))
        with session, BinaryMaskTreeWriter(out / video_id) as writer:
            for exp in data.expressions_of(video_id):
                oracle.set_referent(exp.masks.load())
                result = session.ground(exp.text)
                add_expression_masks(writer, "", exp.exp_id, result, list(record.frame_names))
                count += 1
        print(f"{oracle.mode}: {n + 1}/{len(videos)} videos, {count} expressions", flush=True)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Model folder, or 'default' (the bundled one).")
    parser.add_argument(
        "--split", type=Path, default=Path("data/synref/test_hard"), help="SynRef split (MeViS layout)."
    )
    parser.add_argument("--out", type=Path, required=True, help="Output folder (predictions, reports).")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--limit", type=int, default=None, help="At most this many videos.")
    parser.add_argument(
        "--propagation", choices=["video", "framewise", "chain"], default=None, help="Override the model's."
    )
    parser.add_argument(
        "--key-frame", choices=["first", "best"], default=None, help="Override the model's (own mode)."
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "log.txt"
    summary = {}
    for mode in args.modes:
        report = args.out / f"{mode}.json"
        if not report.is_file():
            started = time.time()
            oracle = OracleKeyFrame(mode)
            options = GroundingOptions(propagation=args.propagation, key_frame=args.key_frame)
            predict(args.model, args.split, args.out / "predictions" / mode, oracle, args.limit, options)
            if oracle.proposal_iou:
                iou = np.array(oracle.proposal_iou)
                print(
                    f"best proposal IoU: mean {iou.mean():.3f}, >= 0.5 on {(iou >= 0.5).mean():.3f}",
                    flush=True,
                )
            cmd = [
                *SPARROW,
                "eval",
                "synref",
                "--gt",
                str(args.split),
                "--results",
                str(args.out / "predictions" / mode),
            ]
            run([*cmd, "--json", str(report)], log)
            print(f"{mode}: {time.time() - started:.0f} s", flush=True)
        figures = json.loads(report.read_text())
        summary[mode] = {
            k: round(figures[k], 4) for k in ("J&F", "J", "F", "first_frame_J", "id_switch_rate", "IDF1")
        }
        print(mode, json.dumps(summary[mode]), flush=True)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
