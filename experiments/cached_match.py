"""Stage 3 on a cache: train the pick (filtration head, ``[BOX]`` MLP, question bag) for many epochs
on the frozen model's key-frame inputs, taken once.

Stage 3 (``sparrow train``, docs/training.md) runs the frozen encoders, LLM, SAM2 and proposer on
every step; at 256 px it manages about 1.5 passes over the recipe's expressions in half an hour,
while ``experiments/matching_probe.py`` needs some 25 passes for its words-to-proposals matcher to
reach its held-out pick. Everything the pick reads is frozen in stage 3, so this script computes it
once per training sample (``--draws`` samples per expression, each with its own random clip and
key frame): the top-k proposals with their fine-map crops, the LLM's ``[BOX]`` states, the
question's tokens and the target boxes. It then trains the model's own pick modules with the
model's own box terms (proposal BCE + rank, box L1 + GIoU at the config's weights; AdamW) and
reports, after every epoch, the held-out pick on the SynRef test splits (the proposal of highest
IoU with the referent, among the rows where it reaches 0.5) and the training loss. The model with
the trained pick is saved as a model folder, the history beside it (``OUT.json``).

    python experiments/fresh_head.py --out runs/fresh_bag --set filtration.question_bag=true \\
        --set filtration.fine_features=true --set filtration.box_state=false
    python experiments/cached_match.py --model runs/fresh_bag --out runs/cached_bag --epochs 25
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from sparrow.inference.model_path import resolve_model_path
from sparrow.models import SparrowModel, collate
from sparrow.models.llm import decoder_hidden
from sparrow.models.losses import box_l1_giou_loss, proposal_ranking_loss, proposal_selection_loss
from sparrow.models.proposer import ProposerOutput
from sparrow.structures import box_convert, box_iou
from sparrow.training.recipe import DatasetSpec, load_recipe
from sparrow.training.samples import ConversationSource
from sparrow.training.sparrow_task import read_conversations

HELD_OUT = (
    DatasetSpec(name="synref_test", root="data/synref/test", split="test"),
    DatasetSpec(name="synref_test_hard", root="data/synref/test_hard", split="test"),
)
PICK_PARTS = ("filtration", "box_projection", "question_bag")


@dataclass
class Cache:
    """The frozen inputs of the pick for ``R`` ``[BOX]`` rows.

    ``features`` ``(R, K, D)``, ``boxes`` ``(R, K, 4)`` normalised cxcywh, ``logits`` ``(R, K)``,
    ``fine`` ``(R, K, F)`` or None, ``states`` ``(R, W)`` the LLM's ``[BOX]`` states, ``words``
    ``R`` int64 tensors of the question's token ids, ``targets`` ``(R, 4)`` normalised cxcywh and
    ``label`` ``(R,)`` the proposal of highest IoU with the target when it reaches 0.5, else -1.
    """

    features: Tensor
    boxes: Tensor
    logits: Tensor
    fine: Tensor | None
    states: Tensor
    words: list[Tensor]
    targets: Tensor
    label: Tensor

    def __len__(self) -> int:
        return self.states.shape[0]


@torch.no_grad()
def collect(model: SparrowModel, specs: list[DatasetSpec], draws: int, batch: int, cap: int | None) -> Cache:
    """Every ``[BOX]`` row with a target on its key frame, ``draws`` samples per conversation (the
    first ``cap`` conversations of each dataset with a cap)."""
    ids = model.processor.tokenizer.ids
    parts: dict[str, list] = {k: [] for k in Cache.__dataclass_fields__}
    for spec in specs:
        conversations, objects = read_conversations(spec)
        source = ConversationSource(spec.name, conversations, model.processor, objects)
        jobs = [(i, d) for d in range(draws) for i in range(min(len(source), cap or len(source)))]
        for start in tqdm(range(0, len(jobs), batch), desc=f"cache {spec.name}", unit="batch"):
            b = collate([source.build(i, d) for i, d in jobs[start : start + batch]], ids.pad)
            sam = model.sam2.image_features(b.sam_frames[torch.arange(len(b.key_frames)), b.key_frames])
            proposals = model.propose(sam)
            embeds = model.embed_inputs(b.input_ids, model.encode_video(b.spatial_frames, b.temporal_frames))
            hidden, _ = decoder_hidden(model.llm, embeds, b.attention_mask)
            rows = b.box_sample[b.box_valid]
            per_row = ProposerOutput(
                boxes=proposals.boxes[rows], logits=proposals.logits[rows], features=proposals.features[rows]
            )
            targets = b.boxes[b.box_valid]
            iou = box_iou(
                box_convert(per_row.boxes.flatten(0, 1), "cxcywh", "xyxy"),
                box_convert(targets, "cxcywh", "xyxy"),
            ).reshape(len(rows), -1, len(rows))[torch.arange(len(rows)), :, torch.arange(len(rows))]
            best = iou.max(dim=1)
            question = model.question_tokens(b)
            parts["features"].append(per_row.features)
            parts["boxes"].append(per_row.boxes)
            parts["logits"].append(per_row.logits)
            parts["fine"].append(model.fine_crops_of(sam, rows, per_row))
            parts["states"].append(hidden[b.input_ids == ids.box][b.box_valid])
            parts["words"].extend(b.input_ids[int(r)][question[int(r)]] for r in rows)
            parts["targets"].append(targets)
            parts["label"].append(torch.where(best.values >= 0.5, best.indices, -1))
    fine = None if parts["fine"][0] is None else torch.cat(parts["fine"])
    tensors = {k: torch.cat(v) for k, v in parts.items() if k not in ("fine", "words")}
    return Cache(**tensors, fine=fine, words=parts["words"])


def pick(model: SparrowModel, cache: Cache, rows: Tensor):
    """The filtration output for ``rows`` of ``cache`` through the model's (trainable) pick modules."""
    states = cache.states[rows]
    if model.question_bag is not None:
        words = pad_sequence([cache.words[int(r)] for r in rows], batch_first=True, padding_value=-1)
        bags = model.question_bag(words.clamp(min=0), words >= 0)
        states = model.with_question_bag(states, bags)
    proposals = ProposerOutput(
        boxes=cache.boxes[rows], logits=cache.logits[rows], features=cache.features[rows]
    )
    fine = None if cache.fine is None else cache.fine[rows]
    return model.filtration(model.box_projection(states), proposals, fine)


TERMS = ("proposal_bce", "proposal_rank", "box_l1", "box_giou", "label_ce")


def losses(model: SparrowModel, cache: Cache, rows: Tensor, terms: tuple[str, ...]) -> Tensor:
    """The weighted sum of ``terms`` on ``rows``: the model's box terms at the config's weights, and
    ``label_ce`` (weight 1), the probe's cross-entropy of the scores against the labelled proposal."""
    out = pick(model, cache, rows)
    scored = (out.scores, cache.boxes[rows], cache.targets[rows])
    values = {
        "proposal_bce": proposal_selection_loss(*scored),
        "proposal_rank": proposal_ranking_loss(*scored),
        **box_l1_giou_loss(out.selected_boxes, cache.targets[rows]),
    }
    labelled = cache.label[rows] >= 0
    if bool(labelled.any()):
        values["label_ce"] = F.cross_entropy(out.scores[labelled], cache.label[rows][labelled])
    weights = {k: 1.0 if k == "label_ce" else getattr(model.config.losses, k) for k in values}
    return sum((weights[k] * v for k, v in values.items() if k in terms), out.scores.sum() * 0.0)


@torch.no_grad()
def held_out_pick(model: SparrowModel, cache: Cache, batch: int = 256) -> float:
    """The share of labelled rows whose pick is the labelled proposal."""
    labelled = (cache.label >= 0).nonzero()[:, 0]
    hits = 0
    for start in range(0, len(labelled), batch):
        rows = labelled[start : start + batch]
        hits += int((pick(model, cache, rows).selected == cache.label[rows]).sum())
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
        train, test = (Cache(**c) for c in torch.load(args.cache, weights_only=True))
    else:
        specs = [d for d in recipe.data.train if d.task == "referring_segmentation"]
        train = collect(model, specs, args.draws, 8, args.cap)
        test = collect(model, list(HELD_OUT), 1, 8, args.cap)
        if args.cache:
            torch.save([vars(train), vars(test)], args.cache)
    print(
        f"cached {len(train)} training rows, {len(test)} held-out rows in {time.perf_counter() - started:.0f} s"
    )
    labelled = float((test.label >= 0).float().mean())
    history = [{"epoch": 0, "held_out_pick": round(held_out_pick(model, test), 4)}]
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
            loss = losses(model, train, order[start : start + args.batch_size], terms)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            total += loss.item() * len(order[start : start + args.batch_size])
        model.eval()
        record = {
            "epoch": epoch,
            "train_loss": round(total / limit, 4),
            "train_pick": round(held_out_pick(model, train), 4),
            "held_out_pick": round(held_out_pick(model, test), 4),
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
