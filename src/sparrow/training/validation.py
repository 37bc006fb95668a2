"""Held-out grounding metrics during training: J&F (MeViS protocol) and the identity-switch rate.

The model being trained answers the first ``max_items`` referring expressions of a MeViS-layout
split through :class:`~sparrow.inference.GroundingPipeline` (greedy answer as in the paper, the
template answer when it grounds nothing, SAM2 propagation over every frame); the masks go to a
scratch MeViS results folder and are scored by :func:`sparrow.evaluation.mevis.evaluate_mevis` and
:func:`sparrow.evaluation.identity.evaluate_identity` against the same expressions.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparrow.data.formats.mevis import mevis_results_writer
from sparrow.data.records import DatasetSplit, ExpressionRecord, VideoRecord
from sparrow.structures import GroundingResult


def result_masks(result: GroundingResult, video: VideoRecord, size: tuple[int, int]) -> np.ndarray:
    """Bool ``(T, H, W)`` foreground of a grounding result on every frame of ``video`` (the union of
    its phrases' masklets; frames the result does not cover are empty)."""
    out = np.zeros((video.num_frames, *size), dtype=bool)
    where = {int(n): i for i, n in enumerate(video.frame_numbers)}
    for phrase in result.phrases:
        masks = phrase.masklet.masks()
        for k, number in enumerate(result.frame_indices):
            i = where.get(int(number))
            if i is not None:
                out[i] |= masks[k]
    return out


def _subset_meta(meta_path: Path, expressions: list[ExpressionRecord]) -> dict[str, Any]:
    """``meta_expressions.json`` restricted to ``expressions`` (their videos keep every other key)."""
    data = json.loads(meta_path.read_text(encoding="utf-8"))
    keep: dict[str, set[str]] = {}
    for e in expressions:
        keep.setdefault(e.video_id, set()).add(str(e.exp_id))
    videos = {}
    for video_id, exp_ids in keep.items():
        entry = dict(data["videos"][video_id])
        entry["expressions"] = {k: v for k, v in entry["expressions"].items() if k in exp_ids}
        videos[video_id] = entry
    return {"videos": videos}


def grounding_metrics(model: nn.Module, split: DatasetSplit, max_items: int | None) -> dict[str, float]:
    """J, F, J&F and the identity-switch rate of ``model`` on the first ``max_items`` expressions
    (with masks) of a MeViS-layout ``split``; ``{}`` when the split has none."""
    from sparrow.evaluation.identity import evaluate_identity
    from sparrow.evaluation.mevis import evaluate_mevis
    from sparrow.inference import GroundingOptions, GroundingPipeline

    expressions = [e for e in split.expressions if e.masks is not None][:max_items]
    mask_dict = split.root / "mask_dict.json"
    meta_path = split.root / "meta_expressions.json"
    if not expressions or not mask_dict.is_file() or not meta_path.is_file():
        return {}
    device = next(model.parameters()).device
    pipe = GroundingPipeline(
        model, GroundingOptions(fallback_template=True), device=device, dtype=torch.float32
    )
    with tempfile.TemporaryDirectory(prefix="sparrow-val-") as tmp:
        results = Path(tmp) / "results"
        with mevis_results_writer(results) as writer:
            for e in expressions:
                video = split.videos[e.video_id]
                source = video.frame_dir if video.frame_dir is not None else video.video_file
                result = pipe(source, e.text)
                writer.add(
                    e.video_id,
                    e.exp_id,
                    list(video.frame_names) or list(video.frame_numbers),
                    result_masks(result, video, result.size),
                )
        meta = Path(tmp) / "meta_expressions.json"
        meta.write_text(json.dumps(_subset_meta(meta_path, expressions)), encoding="utf-8")
        jf = evaluate_mevis(None, results, meta=meta, mask_dict=mask_dict)
        identity = evaluate_identity(None, results, meta=meta, mask_dict=mask_dict)
    return {"J": jf.J, "F": jf.F, "J&F": jf.JF, "id_switch_rate": identity.id_switch_rate}
