"""Does the filtration head's pick depend on the expression? Four readings per video of a split.

For every video, the model answers each of its expressions (greedy, as ``sparrow predict`` does),
then, on frame 0, the filtration head scores the key-frame proposals for all of them at once:

- **box-state cosine**: the smallest cosine similarity between two expressions' ``[BOX]`` states
  (1.0: the LLM gives every expression the same state);
- **head-query cosine**: the same for the head's projected, normalised query ``q``;
- **score spread ratio**: the standard deviation of a proposal's score across the expressions,
  over the standard deviation of the scores across the proposals (0: the head scores by an
  object prior whatever the query);
- **distinct picks**: distinct top-scoring proposals over expressions, next to distinct referents
  (the expressions' true object sets).

    python experiments/query_probe.py --model default --split data/synref/test_hard --videos 20
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sparrow.data.registry import get_format
from sparrow.inference import GroundingOptions, GroundingPipeline
from sparrow.inference.model_path import resolve_model_path
from sparrow.inference.tracking import sam_features
from sparrow.models import SparrowModel


def min_cosine(rows: torch.Tensor) -> float:
    """The smallest cosine similarity between two rows of ``(E, D)``."""
    x = rows.float()
    return float(F.cosine_similarity(x[:, None], x[None], dim=-1).min())


@torch.inference_mode()
def probe(model: SparrowModel, split: Path, videos: int) -> dict:
    """The four readings of the module docstring, averaged over the videos with two expressions."""
    data = get_format("mevis").open(split, "valid_u")
    by_video: dict[str, list] = {}
    for expression in data.expressions:
        by_video.setdefault(expression.video_id, []).append(expression)
    pipeline = GroundingPipeline(model, GroundingOptions())
    cosines: list[list[float]] = []
    ratios, picks, referents = [], [], []
    for video_id in list(by_video)[:videos]:
        video = data.videos[video_id]
        frames = video.load_frames(np.arange(video.num_frames)).frames
        with pipeline.session(frames) as session:
            answered = [(e, session.answer(e.text).targets) for e in by_video[video_id]]
            targets = [(e, t[0]) for e, t in answered if t and t[0].box_hidden is not None]
        if len(targets) < 2:
            continue
        features = sam_features(model, model.processor.sam_inputs(frames[:1]))
        seg = torch.stack([t.seg_hidden for _, t in targets])
        box = torch.stack([t.box_hidden for _, t in targets])
        filtration = model.prompts_from_hidden(seg, box, features).filtration
        scores = filtration.scores.float()  # (E, Q)
        cosines.append([min_cosine(box), min_cosine(filtration.query)])
        ratios.append(float(scores.std(dim=0).mean() / scores.std(dim=1).mean()))
        picks.append(len(set(scores.argmax(dim=1).tolist())))
        referents.append(len({tuple(sorted(e.obj_ids)) for e, _ in targets}))
    return {
        "videos": len(cosines),
        "box_state_min_cosine": float(np.mean([c[0] for c in cosines])),
        "head_query_min_cosine": float(np.mean([c[1] for c in cosines])),
        "score_spread_ratio": float(np.mean(ratios)),
        "distinct_picks_per_video": float(np.mean(picks)),
        "distinct_referents_per_video": float(np.mean(referents)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Model folder, or 'default' (the bundled one).")
    parser.add_argument(
        "--split", type=Path, default=Path("data/synref/test_hard"), help="MeViS-layout split."
    )
    parser.add_argument("--videos", type=int, default=20, help="Videos of the split.")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SparrowModel.from_pretrained(resolve_model_path(args.model)).eval()
    print(json.dumps(probe(model, args.split, args.videos), indent=2))


if __name__ == "__main__":
    main()
