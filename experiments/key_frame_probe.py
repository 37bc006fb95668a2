"""How often is the pick right on SOME frame? The model's key-frame pick on every frame of a clip.

For each single-referent expression of a SynRef split (MeViS layout), the model answers once; then
on every frame the filtration head picks a box (``prompts_on``: what ``key_frame: best`` computes on
its candidate frames), scored right when its IoU with the referent's true box reaches 0.5. It
reports the share of expressions whose pick is right:

- ``frame 0``: on the first frame (``key_frame: first``);
- ``chosen of 5`` / ``chosen of 16``: on the most confident of the 5 uniformly spread candidates
  (``key_frame: best``: the sigmoid of the picked proposal's score) / of every frame;
- ``margin of 5`` / ``margin of 16``: on the candidate whose pick leads the runner-up proposal by
  the widest score margin;
- ``any of 5`` / ``any of 16``: on at least one of them (a perfect choice of key frame);
- ``vote, true identities``: the referent is the object picked with the largest summed confidence
  over the candidates, each pick attributed to the true object it covers (IoU >= 0.5): what a vote
  over frames could give with perfect linking of the picks;
- ``vote, SAM2 appearance``: the same vote, picks linked greedily (most confident first) when the
  cosine of their SAM2 embeddings pooled in the decoded masks reaches ``--link-cosine``: linking
  without tracking.

With ``--track`` each of the 5 candidates' picks is also tracked through the clip by the model's
own propagation (``SparrowModel.propagate``, a candidate's box as the prompt), and:

- ``vote of 5, linked by tracking``: the candidate whose track covers (IoU >= 0.5) the picks of
  the most confident candidates (summed confidence, its own included) -- linking by tracking;
- ``box IoU, ...`` (the tracker's share): the mean, over the frames where the referent is present,
  of the IoU of a box with the referent's true box (0 where the track has lost it): the track
  from the ``chosen of 5`` pick, from the candidates whose pick was right, the frame-wise most
  confident proposal, the most confident path through the frames' proposals (Viterbi: summed
  filtration logits plus the IoU of consecutive boxes, ``--path-weight`` times), and the best
  proposal on every frame (what a perfect pick per frame could give).

    python experiments/key_frame_probe.py --model default --split data/synref/test_hard --videos 80
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from sparrow.inference import GroundingPipeline
from sparrow.inference.tracking import SharedFeatures, key_frame_candidates, pooled_embedding
from sparrow.structures import box_convert, box_iou, masks_to_boxes
from sparrow.structures.boxes import normalize_boxes
from sparrow.structures.masks import rle_to_box


def true_boxes(mask_dict: dict, anno: int) -> list[torch.Tensor | None]:
    """Per frame, the ``(4,)`` pixel ``xyxy`` box of an annotated object, ``None`` where it is absent."""
    out = []
    for rle in mask_dict[str(anno)]:
        box = None if not rle else torch.from_numpy(rle_to_box(rle))
        out.append(None if box is None or not bool((box[2:] > box[:2]).all()) else box)
    return out


def vote(picks: list[tuple[float, object]]) -> object:
    """The key of largest summed confidence among ``(confidence, key)`` picks (``None`` keys skipped)."""
    total: Counter = Counter()
    for confidence, key in picks:
        if key is not None:
            total[key] += confidence
    return total.most_common(1)[0][0] if total else None


def track_boxes(pipe: GroundingPipeline, frames, features: SharedFeatures, t: int, prompt, scale) -> list:
    """Per frame, the ``(4,)`` pixel ``xyxy`` box of the mask tracked from the prompts on frame ``t``
    (``None`` where the object score is <= 0 or the mask is empty)."""
    out: list = [None] * len(frames)
    shared = None if pipe.model.config.propagation == "video" else features
    runs = pipe.model.propagate(
        frames, t, box=prompt.boxes, seg_embedding=prompt.seg_embeddings, features=shared
    )
    for u, logits, score in runs:
        region = logits[:, 0] > 0
        if float(score.reshape(())) > 0 and bool(region.any()):
            out[u] = normalize_boxes(masks_to_boxes(region), tuple(region.shape[-2:]))[0] * scale
    return out


@torch.inference_mode()
def probe(pipe: GroundingPipeline, split: Path, videos: int, track: bool = False) -> list[dict]:
    """Per single-referent expression (its referent, kind and true boxes): per frame, the pick's
    confidence and score margin, the annotated object it covers at IoU >= 0.5 (or ``None``) and its
    pooled SAM2 embedding; with ``track`` also its pixel box, every proposal's filtration logit and
    box, and on the 5 candidates the track of the pick (:func:`track_boxes`)."""
    meta = json.loads((split / "meta_expressions.json").read_text())["videos"]
    mask_dict = json.loads((split / "mask_dict.json").read_text())
    items = []
    for video, entry in tqdm(list(meta.items())[:videos], desc="videos", unit="video"):
        expressions = {k: e for k, e in entry["expressions"].items() if len(e["anno_id"]) == 1}
        if not expressions:
            continue
        annos = sorted({a for e in entry["expressions"].values() for a in e["anno_id"]})
        with pipe.session(split / "JPEGImages" / video) as session:
            frames, (h, w) = session._frames(), session.size
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            boxes = {a: true_boxes(mask_dict, a) for a in annos}
            shared = SharedFeatures(pipe.model, frames)  # every frame, kept for the tracks
            candidates = key_frame_candidates(len(frames), 5)
            for expression in expressions.values():
                answer = session.answer(expression["exp"])
                if not answer.targets:
                    continue
                target = answer.targets[0]
                rows = []
                for t in range(len(frames)):
                    feats = shared(t)
                    prompt = pipe.model.prompts_from_hidden(
                        target.seg_hidden[None], target.box_hidden[None], feats
                    )
                    top = prompt.filtration.scores[0].float().topk(2).values
                    picked = box_convert(prompt.boxes.float(), "cxcywh", "xyxy")[0] * scale
                    covers = [
                        (float(box_iou(picked[None], b[None])[0, 0]), a)
                        for a in annos
                        if (b := boxes[a][t]) is not None
                    ]
                    best = max(covers, default=(0.0, None))
                    decoded = pipe.model.sam2.decode(
                        feats, boxes=prompt.boxes, seg_embeddings=prompt.seg_embeddings
                    )
                    pooled = pooled_embedding(feats.image_embeddings[0], decoded.mask_logits[0, 0])
                    rows.append(
                        {
                            "confidence": float(torch.sigmoid(top[0])),
                            "margin": float(top[0] - top[1]),
                            "object": best[1] if best[0] >= 0.5 else None,
                            "embedding": None
                            if pooled is None
                            else torch.nn.functional.normalize(pooled, dim=0),
                        }
                    )
                    if track:
                        rows[-1] |= {
                            "pick": picked,
                            "logits": prompt.filtration.scores[0].float(),
                            "proposals": box_convert(
                                prompt.filtration.refined_boxes[0].float(), "cxcywh", "xyxy"
                            )
                            * scale,
                            "track": track_boxes(pipe, frames, shared, t, prompt, scale)
                            if t in candidates
                            else None,
                        }
                referent = expression["anno_id"][0]
                items.append(
                    {"referent": referent, "kind": expression["kind"], "rows": rows, "truth": boxes[referent]}
                )
    return items


def appearance_vote(rows: list[dict], frames: list[int], cosine: float) -> int:
    """The frame of the most confident pick of the heaviest group of picks linked by appearance."""
    groups: list[list[int]] = []
    for t in sorted(frames, key=lambda t: -rows[t]["confidence"]):
        e = rows[t]["embedding"]
        for group in groups:
            lead = rows[group[0]]["embedding"]
            if e is not None and lead is not None and float(e @ lead) >= cosine:
                group.append(t)
                break
        else:
            groups.append([t])
    return max(groups, key=lambda g: sum(rows[t]["confidence"] for t in g))[0]


def iou(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    """IoU of two ``(4,)`` boxes; 0 when either is ``None``."""
    return 0.0 if a is None or b is None else float(box_iou(a[None], b[None])[0, 0])


def chosen(rows: list[dict], frames: list[int]) -> int:
    """The most confident of ``frames`` (ties: the earliest), as ``key_frame: best`` chooses."""
    return max(frames, key=lambda t: (rows[t]["confidence"], -t))


def tracked_vote(rows: list[dict], frames: list[int]) -> int:
    """The candidate whose track covers the picks of the most confidence (module docstring)."""
    support = {
        t: sum(rows[j]["confidence"] for j in frames if iou(rows[t]["track"][j], rows[j]["pick"]) >= 0.5)
        for t in frames
    }
    return max(frames, key=lambda t: (support[t], rows[t]["confidence"], -t))


def best_path(rows: list[dict], weight: float) -> list[int]:
    """Viterbi: the proposal per frame maximising summed filtration logits plus ``weight`` x the IoU
    of consecutive frames' boxes."""
    score, back = rows[0]["logits"].clone(), []
    for before, after in itertools.pairwise(rows):
        total = score[:, None] + weight * box_iou(before["proposals"], after["proposals"])
        best, arg = total.max(dim=0)
        score = best + after["logits"]
        back.append(arg)
    path = [int(score.argmax())]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1]


def box_recall(truth: list, boxes: list) -> float:
    """Mean IoU of ``boxes`` with the true boxes over the frames where the referent is present."""
    present = [t for t, b in enumerate(truth) if b is not None]
    return sum(iou(boxes[t], truth[t]) for t in present) / max(len(present), 1)


def tracker_share(items: list[dict], weight: float) -> dict[str, float]:
    """The ``box IoU`` rows of the module docstring, averaged over expressions."""
    sums: Counter = Counter()
    right_tracks = 0
    for item in items:
        rows, truth = item["rows"], item["truth"]
        frames = key_frame_candidates(len(rows), 5)
        sums["box IoU, track from the chosen of 5"] += box_recall(truth, rows[chosen(rows, frames)]["track"])
        for t in frames:
            if rows[t]["object"] == item["referent"]:
                sums["box IoU, track from a right pick"] += box_recall(truth, rows[t]["track"])
                right_tracks += 1
        top = [r["proposals"][int(r["logits"].argmax())] for r in rows]
        sums["box IoU, most confident proposal per frame"] += box_recall(truth, top)
        path = best_path(rows, weight)
        sums["box IoU, best path through the proposals"] += box_recall(
            truth, [r["proposals"][q] for r, q in zip(rows, path, strict=True)]
        )
        oracle = [
            None if b is None else r["proposals"][int(box_iou(r["proposals"], b[None])[:, 0].argmax())]
            for r, b in zip(rows, truth, strict=True)
        ]
        sums["box IoU, best proposal per frame (perfect pick)"] += box_recall(truth, oracle)
    n = max(len(items), 1)
    out = {k: round(v / (max(right_tracks, 1) if "right pick" in k else n), 3) for k, v in sums.items()}
    return out | {"tracks from a right pick": right_tracks}


def summarise(items: list[dict], cosine: float, weight: float = 1.0) -> dict[str, float]:
    """The shares of expressions whose pick is right, per rule (module docstring)."""
    hits: Counter = Counter()
    for item in items:
        rows, referent = item["rows"], item["referent"]
        right = [r["object"] == referent for r in rows]
        for k in (5, 16):
            frames = key_frame_candidates(len(rows), k)
            hits[f"chosen of {k}"] += right[chosen(rows, frames)]
            hits[f"margin of {k}"] += right[max(frames, key=lambda t: (rows[t]["margin"], -t))]
            hits[f"any of {k}"] += any(right[t] for t in frames)
            hits[f"vote of {k}, true identities"] += (
                vote([(rows[t]["confidence"], rows[t]["object"]) for t in frames]) == referent
            )
            hits[f"vote of {k}, SAM2 appearance"] += right[appearance_vote(rows, frames, cosine)]
        hits["frame 0"] += right[0]
        if "track" in rows[0]:
            hits["vote of 5, linked by tracking"] += right[
                tracked_vote(rows, key_frame_candidates(len(rows), 5))
            ]
    shares = {k: round(v / max(len(items), 1), 3) for k, v in sorted(hits.items())}
    tracked = tracker_share(items, weight) if items and "track" in items[0]["rows"][0] else {}
    return {"expressions": len(items)} | shares | tracked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--split", type=Path, default=Path("data/synref/test_hard"))
    parser.add_argument("--videos", type=int, default=80)
    parser.add_argument("--link-cosine", type=float, default=0.9)
    parser.add_argument("--track", action="store_true", help="Track the candidates' picks too.")
    parser.add_argument("--path-weight", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=None, help="Write the summary here too.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = probe(GroundingPipeline.from_pretrained(args.model), args.split, args.videos, args.track)
    summary = {"all": summarise(items, args.link_cosine, args.path_weight)}
    for kind in sorted({i["kind"] for i in items}):
        summary[kind] = summarise([i for i in items if i["kind"] == kind], args.link_cosine, args.path_weight)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
