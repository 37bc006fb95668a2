"""Stage 3 on a cache, as an experiment: train the pick (filtration head, ``[BOX]`` MLP, question
bag) for many epochs on the frozen model's key-frame inputs, taken once, with a choice of loss terms
and the held-out pick after every epoch.

``sparrow train`` does the same with a stage ``{stage: 3, cache: true}`` (the bundled recipe's last
stage; src/sparrow/training/pick_cache.py). This script is where its variants were measured: it
caches :meth:`SparrowModel.pick_inputs` of the recipe's training expressions (``--draws`` samples
per expression, each with its own clip and key frame) and of the SynRef test splits, trains the
model's own pick modules with the model's box terms (``--terms`` adds or drops terms, among them
the probe's cross-entropy against the labelled proposal; AdamW, constant LR) and reports, after
every epoch, the held-out pick (the proposal of highest IoU with the referent, among the rows where
it reaches 0.5) and the training loss. The model with the trained pick is saved as a model folder,
the history beside it (``OUT.json``).

    python experiments/fresh_head.py --out runs/fresh_bag --set filtration.question_bag=true \\
        --set filtration.fine_features=true --set filtration.box_state=false
    python experiments/cached_match.py --model runs/fresh_bag --out runs/cached_bag --epochs 25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from sparrow.inference.model_path import resolve_model_path
from sparrow.models import PickBatch, SparrowModel, collate
from sparrow.structures import box_convert, box_iou
from sparrow.training.recipe import DatasetSpec, load_recipe
from sparrow.training.samples import ConversationSource
from sparrow.training.sparrow_task import read_conversations

HELD_OUT = (
    DatasetSpec(name="synref_test", root="data/synref/test", split="test"),
    DatasetSpec(name="synref_test_hard", root="data/synref/test_hard", split="test"),
)


@torch.no_grad()
def collect(
    model: SparrowModel, specs: list[DatasetSpec], draws: int, batch: int, cap: int | None
) -> PickBatch:
    """The pick inputs (:meth:`SparrowModel.pick_inputs`) of every ``[BOX]`` row with a target on
    its key frame, ``draws`` samples per conversation (the first ``cap`` conversations of each
    dataset with a cap)."""
    parts = []
    for spec in specs:
        conversations, objects = read_conversations(spec)
        source = ConversationSource(spec.name, conversations, model.processor, objects)
        jobs = [(i, d) for d in range(draws) for i in range(min(len(source), cap or len(source)))]
        for start in tqdm(range(0, len(jobs), batch), desc=f"cache {spec.name}", unit="batch"):
            built = [source.build(i, d) for i, d in jobs[start : start + batch]]
            parts.append(model.pick_inputs(collate(built, model.processor.tokenizer.ids.pad)))
    return PickBatch.cat(parts)


def labels(rows: PickBatch) -> Tensor:
    """``(R,)`` the proposal of highest IoU with each row's target when it reaches 0.5, else -1."""
    n, k = rows.boxes.shape[:2]
    iou = box_iou(
        box_convert(rows.boxes.flatten(0, 1), "cxcywh", "xyxy"), box_convert(rows.targets, "cxcywh", "xyxy")
    ).reshape(n, k, n)[torch.arange(n), :, torch.arange(n)]
    best = iou.max(dim=1)
    return torch.where(best.values >= 0.5, best.indices, -1)


TERMS = ("proposal_bce", "proposal_rank", "box_l1", "box_giou", "label_ce")


def losses(model: SparrowModel, rows: PickBatch, label: Tensor, terms: tuple[str, ...]) -> Tensor:
    """The sum of ``terms`` on ``rows``: the model's box terms at the config's weights (its forward
    of a :class:`PickBatch`), and ``label_ce`` (weight 1), the probe's cross-entropy of the scores
    against the labelled proposal."""
    out = model(rows)
    total = sum((v for k, v in out.losses.items() if k in terms), out.loss * 0.0)
    labelled = label >= 0
    if "label_ce" in terms and bool(labelled.any()):
        total = total + F.cross_entropy(out.filtration.scores[labelled], label[labelled])
    return total


@torch.no_grad()
def held_out_pick(model: SparrowModel, rows: PickBatch, label: Tensor, batch: int = 256) -> float:
    """The share of labelled rows whose pick is the labelled proposal."""
    labelled = (label >= 0).nonzero()[:, 0]
    hits = 0
    for start in range(0, len(labelled), batch):
        chunk = labelled[start : start + batch]
        hits += int((model.score_pick(rows.select(chunk)).selected == label[chunk]).sum())
    return hits / max(len(labelled), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="default", help="The model whose pick trains ('default': bundled)."
    )
    parser.add_argument("--out", required=True, help="Model folder to write.")
    parser.add_argument("--recipe", default="synref_tiny", help="The recipe whose training data to cache.")
    parser.add_argument("--draws", type=int, default=1, help="Samples (clip, key frame) per expression.")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--terms",
        default="proposal_bce,proposal_rank,box_l1,box_giou",
        help=f"Comma-separated loss terms among {', '.join(TERMS)} (default: stage 3's).",
    )
    parser.add_argument("--limit", type=int, default=None, help="Train on at most this many cached rows.")
    parser.add_argument(
        "--cap", type=int, default=None, help="Cache at most this many conversations per split."
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="Keep the cache in this file: read it when it exists (it must come from a model with the "
        "same frozen parts, e.g. another fresh_head.py folder of the same model), else write it.",
    )
    args = parser.parse_args()

    model = SparrowModel.from_pretrained(resolve_model_path(args.model)).eval()
    recipe = load_recipe(args.recipe)
    started = time.perf_counter()
    if args.cache and Path(args.cache).is_file():
        train, test = (PickBatch(**c) for c in torch.load(args.cache, weights_only=True))
    else:
        specs = [d for d in recipe.data.train if d.task == "referring_segmentation"]
        train = collect(model, specs, args.draws, 8, args.cap)
        test = collect(model, list(HELD_OUT), 1, 8, args.cap)
        if args.cache:
            torch.save([vars(train), vars(test)], args.cache)
    train_label, test_label = labels(train), labels(test)
    print(
        f"cached {len(train)} training rows, {len(test)} held-out rows in {time.perf_counter() - started:.0f} s"
    )
    labelled = float((test_label >= 0).float().mean())
    history = [{"epoch": 0, "held_out_pick": round(held_out_pick(model, test, test_label), 4)}]
    print(
        f"held-out rows with a labelled proposal: {labelled:.3f}; epoch 0 pick {history[0]['held_out_pick']}"
    )

    torch.manual_seed(args.seed)
    model.set_stage(3)  # trains exactly the pick modules of stage 3
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    terms = tuple(args.terms.split(","))
    if not terms or set(terms) - set(TERMS):
        parser.error(f"--terms takes names among {', '.join(TERMS)}")
    limit = len(train) if args.limit is None else min(args.limit, len(train))
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.from_numpy(np.random.default_rng([args.seed, epoch]).permutation(limit))
        total = 0.0
        for start in range(0, limit, args.batch_size):
            rows = order[start : start + args.batch_size]
            loss = losses(model, train.select(rows), train_label[rows], terms)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            total += loss.item() * len(rows)
        model.eval()
        record = {
            "epoch": epoch,
            "train_loss": round(total / limit, 4),
            "train_pick": round(held_out_pick(model, train, train_label), 4),
            "held_out_pick": round(held_out_pick(model, test, test_label), 4),
        }
        history.append(record)
        print(json.dumps(record), flush=True)
    model.save_pretrained(args.out)
    summary = {
        "model": str(args.model),
        "terms": terms,
        "train_rows": limit,
        "held_out_rows": len(test),
        "history": history,
    }
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.out}: saved")


if __name__ == "__main__":
    main()
