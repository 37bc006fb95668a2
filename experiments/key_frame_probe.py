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

    python experiments/key_frame_probe.py --model default --split data/synref/test_hard --videos 80
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from sparrow.inference import GroundingPipeline
from sparrow.inference.tracking import key_frame_candidates, pooled_embedding, sam_features
from sparrow.structures import box_convert, box_iou
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


@torch.inference_mode()
def probe(pipe: GroundingPipeline, split: Path, videos: int) -> list[dict]:
    """Per single-referent expression (its referent and kind): per frame, the pick's confidence and
    score margin, the annotated object it covers at IoU >= 0.5 (or ``None``) and its pooled SAM2
    embedding."""
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
            boxes = {a: true_boxes(mask_dict, a) for a in annos}
            features = [sam_features(pipe.model, frames[t][None]).select(0) for t in range(len(frames))]
            for expression in expressions.values():
                answer = session.answer(expression["exp"])
                if not answer.targets:
                    continue
                target = answer.targets[0]
                rows = []
                for t, feats in enumerate(features):
                    prompt = pipe.model.prompts_from_hidden(
                        target.seg_hidden[None], target.box_hidden[None], feats
                    )
                    top = prompt.filtration.scores[0].float().topk(2).values
                    picked = box_convert(prompt.boxes.float(), "cxcywh", "xyxy")[0] * torch.tensor(
                        [w, h, w, h]
                    )
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
                items.append({"referent": expression["anno_id"][0], "kind": expression["kind"], "rows": rows})
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


def summarise(items: list[dict], cosine: float) -> dict[str, float]:
    """The shares of expressions whose pick is right, per rule (module docstring)."""
    hits: Counter = Counter()
    for item in items:
        rows, referent = item["rows"], item["referent"]
        right = [r["object"] == referent for r in rows]
        for k in (5, 16):
            frames = key_frame_candidates(len(rows), k)
            chosen = max(frames, key=lambda t: (rows[t]["confidence"], -t))
            hits[f"chosen of {k}"] += right[chosen]
            hits[f"margin of {k}"] += right[max(frames, key=lambda t: (rows[t]["margin"], -t))]
            hits[f"any of {k}"] += any(right[t] for t in frames)
            hits[f"vote of {k}, true identities"] += (
                vote([(rows[t]["confidence"], rows[t]["object"]) for t in frames]) == referent
            )
            hits[f"vote of {k}, SAM2 appearance"] += right[appearance_vote(rows, frames, cosine)]
        hits["frame 0"] += right[0]
    return {"expressions": len(items)} | {
        k: round(v / max(len(items), 1), 3) for k, v in sorted(hits.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--split", type=Path, default=Path("data/synref/test_hard"))
    parser.add_argument("--videos", type=int, default=80)
    parser.add_argument("--link-cosine", type=float, default=0.9)
    parser.add_argument("--json", type=Path, default=None, help="Write the summary here too.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = probe(GroundingPipeline.from_pretrained(args.model), args.split, args.videos)
    summary = {"all": summarise(items, args.link_cosine)}
    for kind in sorted({i["kind"] for i in items}):
        summary[kind] = summarise([i for i in items if i["kind"] == kind], args.link_cosine)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
