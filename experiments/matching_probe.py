"""Can a trained model's proposals be matched to the expression at all? A probe of the filtration step.

The model is frozen. For every single-referent expression of the recipe's training splits and of the
SynRef test splits, the proposer's top-k proposals on the sample's key frame are labelled with the
proposal of highest IoU with the referent's key-frame box (kept when it reaches 0.5). Then:

1. **the model's own pick** -- its filtration head, queried with its projected ``[BOX]`` state, on
   the held-out items where a proposal holds the referent;
2. **a bag-of-words matcher** -- the filtration head's architecture, queried with a learned
   embedding of the expression's words instead of the LLM, trained on the training items' proposals
   (cross-entropy over the proposals) and scored on the same held-out items. With the proposals'
   own descriptors (decoder features, box, objectness) it measures how much of the referent the
   proposals carry; with an appearance descriptor added (an 8x8 RGB crop of the box on the key frame
   and 4x4 crops of the same box on two later SAM frames minus the key frame's, through a learned
   MLP) it measures what pixels add; with the crops of SAM2's fine feature maps that the head takes
   with ``filtration.fine_features``, what those add. With pixels trained on a quarter, half and
   all of the training items, it shows whether more data would help; ``--train`` swaps the recipe's
   training splits for others (for instance more generated videos);
3. **the model's query with a retrained head** -- the same matcher with fine maps, queried with the
   frozen model's ``[BOX]`` hidden state (through a fresh linear projection) instead of the words:
   whether the LLM's state carries the referent once a head has had the probe's epochs to read it.

Held-out items are the SynRef test splits (standard seed 0 and hard seed 7), which neither the
model nor the matcher trained on. Picks are reported per expression kind.

    python experiments/matching_probe.py --model default
    python experiments/matching_probe.py --model default --train data/synref/train data/synref/train_hard \
        data/synref/train_big data/synref/train_big_hard
    python experiments/matching_probe.py --model runs/question_bag/0-filter/final --pick-only  # 1. alone
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparrow.inference.model_path import resolve_model_path
from sparrow.models import SparrowModel, collate
from sparrow.models.filtration import FiltrationHead, fine_crops, roi_crops
from sparrow.models.llm import decoder_hidden
from sparrow.models.proposer import MLP, ProposerOutput
from sparrow.structures import box_convert, box_iou
from sparrow.training.recipe import DatasetSpec, load_recipe
from sparrow.training.samples import ConversationSource
from sparrow.training.sparrow_task import read_conversations

HELD_OUT = (
    DatasetSpec(name="synref_test", root="data/synref/test", split="test"),
    DatasetSpec(name="synref_test_hard", root="data/synref/test_hard", split="test"),
)

# (name, query, crop descriptor, fraction of the training items): the matchers the probe trains
VARIANTS = (
    ("words_x_proposal_features", "words", None, 1.0),
    ("words_x_features_and_fine_maps", "words", "fine", 1.0),
    ("words_x_features_and_pixels@0.25", "words", "pixels", 0.25),
    ("words_x_features_and_pixels@0.5", "words", "pixels", 0.5),
    ("words_x_features_and_pixels", "words", "pixels", 1.0),
    ("llm_query_x_features_and_fine_maps", "llm", "fine", 1.0),
    ("llm_question_x_features_and_fine_maps", "llm_question", "fine", 1.0),
)


@dataclass
class Item:
    """One single-referent expression with the frozen model's key-frame proposals.

    ``features`` ``(K, D)``, ``boxes`` ``(K, 4)`` normalised cxcywh, ``logits`` ``(K,)``,
    ``pixels`` ``(K, 8*8*3 + 2*4*4*3)`` RoI crops of ImageNet-normalised pixels (key frame, then two
    later SAM frames minus the key frame), ``fine`` ``(K, F)`` the crops the filtration head takes of
    SAM2's fine feature maps with ``filtration.fine_features``; ``box_hidden`` ``(1, D)`` the ``[BOX]``
    state (``SparrowModel.box_states``); ``question_hidden`` ``(L, D)`` its hidden states at the
    question's words (``SparrowModel.question_tokens``); ``label`` the proposal holding the referent
    (IoU >= 0.5) or -1; ``model_pick`` the model's filtration choice.
    """

    words: list[str]
    kind: str
    video: str
    features: Tensor
    boxes: Tensor
    logits: Tensor
    pixels: Tensor
    fine: Tensor
    box_hidden: Tensor
    question_hidden: Tensor
    label: int
    model_pick: int


@torch.no_grad()
def collect(model: SparrowModel, spec: DatasetSpec, limit: int | None) -> list[Item]:
    """The single-referent items of one dataset (at most ``limit``, a seeded random subset)."""
    ids = model.processor.tokenizer.ids
    conversations, objects = read_conversations(spec)
    meta = json.loads((Path(spec.root) / "meta_expressions.json").read_text())["videos"]
    source = ConversationSource(spec.name, conversations, model.processor, objects)
    order = np.random.default_rng(0).permutation(len(source))[:limit]
    items = []
    for i in order:
        conv = source.conversations[int(i)]
        video, key = conv.sample_id.split("/")
        expression = meta[video]["expressions"][key]
        batch = collate([source.build(int(i), 0)], ids.pad)
        if batch.boxes.shape[0] != 1 or not bool(batch.box_valid[0]):
            continue
        frames = batch.sam_frames[0]
        key_frame = frames[int(batch.key_frames[0])][None]
        sam_features = model.sam2.image_features(key_frame)
        proposals = model.propose(sam_features)
        boxes = proposals.boxes[0]
        ious = box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(batch.boxes[:1], "cxcywh", "xyxy"))
        label = int(ious[:, 0].argmax()) if float(ious.max()) >= 0.5 else -1
        embeds = model.embed_inputs(
            batch.input_ids, model.encode_video(batch.spatial_frames, batch.temporal_frames)
        )
        hidden, _ = decoder_hidden(model.llm, embeds, batch.attention_mask)
        box_hidden = model.box_states(batch, hidden)[:1].float()
        question = model.question_tokens(batch)[0]
        filtration, _ = model.select_boxes(box_hidden, sam_features)
        pick = int(filtration.selected[0])
        key_crop = roi_crops(key_frame, boxes[None], 4)[0]
        later = [
            roi_crops(frames[j][None], boxes[None], 4)[0] - key_crop
            for j in (len(frames) // 2, len(frames) - 1)
        ]
        items.append(
            Item(
                words=expression["exp"].lower().split(),
                kind=expression["kind"],
                video=video,
                features=proposals.features[0].clone(),
                boxes=boxes.clone(),
                logits=proposals.logits[0].clone(),
                pixels=torch.cat([roi_crops(key_frame, boxes[None], 8)[0], *later], dim=1),
                fine=fine_crops(sam_features.high_res_features, boxes[None].float())[0],
                box_hidden=box_hidden.clone(),
                question_hidden=hidden[0, question].float().clone(),
                label=label,
                model_pick=pick,
            )
        )
    return items


class ProbeMatcher(nn.Module):
    """The filtration head queried with the mean of learned word embeddings (``query="words"``), a
    linear projection of the frozen ``[BOX]`` state (``query="llm"``), or that plus an
    attention-pooled projection of the frozen states at the question's words
    (``query="llm_question"``); optionally the proposals' features get an MLP of one of their crop
    descriptors (``pixels`` or ``fine``) added."""

    def __init__(
        self,
        vocab: dict[str, int],
        query: str,
        hidden_dim: int,
        feature_dim: int,
        crops: str | None,
        crop_dim: int,
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.query = query
        self.crops = crops
        self.words = nn.EmbeddingBag(len(vocab) + 1, 64, mode="mean")  # last row: unknown word
        self.projection = nn.Linear(hidden_dim, 64)
        self.token_projection = nn.Linear(hidden_dim, 64)
        self.token_attention = nn.Linear(hidden_dim, 1)
        self.appearance = None if crops is None else MLP(crop_dim, 128, feature_dim, 2)
        self.head = FiltrationHead(64, feature_dim, 64, refine=False)

    def forward(self, item: Item) -> Tensor:
        """``(K,)`` scores of the item's proposals."""
        if self.query == "llm":
            query = self.projection(item.box_hidden)
        elif self.query == "llm_question":  # [BOX] state + attention-pooled question-word states
            weights = self.token_attention(item.question_hidden).softmax(dim=0)
            pooled = (weights * self.token_projection(item.question_hidden)).sum(dim=0, keepdim=True)
            query = self.projection(item.box_hidden) + pooled
        else:
            query = self.words(torch.tensor([[self.vocab.get(w, len(self.vocab)) for w in item.words]]))
        features = item.features
        if self.appearance is not None:
            features = features + self.appearance(getattr(item, self.crops))
        proposals = ProposerOutput(boxes=item.boxes[None], logits=item.logits[None], features=features[None])
        return self.head(query, proposals).scores[0]


def hits_by_kind(correct: list[tuple[str, bool]]) -> dict[str, float]:
    """Fraction correct per expression kind and in all (``all`` first)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for kind, ok in correct:
        groups[kind].append(ok)
        groups["all"].append(ok)
    return {k: round(float(np.mean(groups[k])), 3) for k in ["all", *sorted(set(groups) - {"all"})]}


def train_matcher(train: list[Item], test: list[Item], query: str, crops: str | None, epochs: int) -> dict:
    """Train a :class:`ProbeMatcher` (AdamW 1e-3, one item per step) -> held-out picks per kind."""
    torch.manual_seed(0)
    vocab = {w: j for j, w in enumerate(sorted({w for item in train for w in item.words}))}
    crop_dim = getattr(train[0], crops).shape[1] if crops else 0
    dims = train[0].box_hidden.shape[1], train[0].features.shape[1]
    matcher = ProbeMatcher(vocab, query, *dims, crops, crop_dim)
    optimiser = torch.optim.AdamW(matcher.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for j in np.random.default_rng(epoch).permutation(len(train)):
            loss = F.cross_entropy(matcher(train[j])[None], torch.tensor([train[j].label]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        fit = np.mean([int(matcher(item).argmax()) == item.label for item in train])
        held_out = hits_by_kind([(item.kind, int(matcher(item).argmax()) == item.label) for item in test])
    return {"train_items": len(train), "train_pick": round(float(fit), 3), "held_out_pick": held_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="Model folder, or 'default' (the bundled one).")
    parser.add_argument("--recipe", default="synref_tiny", help="Recipe whose training data is used.")
    parser.add_argument(
        "--train", type=Path, nargs="+", default=None,
        help="MeViS-layout SynRef splits to train the matcher on instead of the recipe's training data.",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="At most this many items per dataset.")
    parser.add_argument("--epochs", type=int, default=25, help="Matcher training epochs.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures as JSON.")
    parser.add_argument(
        "--only", nargs="+", default=None, choices=[v[0] for v in VARIANTS], help="Train only these matchers."
    )
    parser.add_argument(
        "--pick-only", action="store_true",
        help="Only score the model's own pick on the held-out items (no training items, no matchers).",
    )  # fmt: skip
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SparrowModel.from_pretrained(resolve_model_path(args.model), {"tsf": {"mode": "off"}}).eval()
    start = time.time()
    specs = (
        load_recipe(args.recipe).data.train
        if args.train is None
        else [DatasetSpec(name=root.name, root=str(root), split="train") for root in args.train]
    )
    train = [] if args.pick_only else [item for spec in specs for item in collect(model, spec, args.limit)]
    test = [item for spec in HELD_OUT for item in collect(model, spec, args.limit)]
    print(
        f"collected {len(train)} training and {len(test)} held-out items in {time.time() - start:.0f} s",
        flush=True,
    )
    figures: dict = {
        "top_k_holds_referent": {"held_out": round(float(np.mean([i.label >= 0 for i in test])), 3)}
    }
    if train:
        figures["top_k_holds_referent"]["train"] = round(float(np.mean([i.label >= 0 for i in train])), 3)
    train = [i for i in train if i.label >= 0]
    test = [i for i in test if i.label >= 0]
    figures["model_pick"] = hits_by_kind([(i.kind, i.model_pick == i.label) for i in test])
    figures["chance"] = round(float(np.mean([1 / len(i.boxes) for i in test])), 3)
    print(json.dumps(figures), flush=True)
    for name, query, crops, fraction in VARIANTS:
        if args.pick_only or (args.only is not None and name not in args.only):
            continue
        keep = np.random.default_rng(0).permutation(len(train))[: int(fraction * len(train))]  # nested
        subset = [train[j] for j in keep]
        figures[name] = train_matcher(subset, test, query, crops, args.epochs)
        print(name, json.dumps(figures[name]), flush=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
