"""A trained model with its pick re-initialised: the filtration head, the ``[BOX]`` MLP and the
question bag start as new modules do (``reset_parts``, seeded: what a recipe stage's ``reinit``
does), everything else is the trained model's (``--keep-trained``: only the modules the
overrides add start fresh). A head trained to ignore its query passes almost no gradient into it,
so a new query source (``filtration.question_bag``, ``filtration.box_state: false``) is best tried on a
fresh head (docs/training.md, "What limits the bundled model", item 2).

    python experiments/fresh_head.py --model default --out runs/fresh_head \\
        --set filtration.question_bag=true --set filtration.fine_features=true --set filtration.box_state=false
    sparrow train experiments/recipes/match_question_only.yaml --out runs/match_fresh \\
        --set model.init=runs/fresh_head
"""

from __future__ import annotations

import argparse

import torch

from sparrow.inference.model_path import resolve_model_path
from sparrow.models import SparrowModel
from sparrow.training.stages import reset_parts

FRESH_PARTS = ("filtration", "box_projection", "question_bag")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="default", help="A model folder, or 'default' (the bundled model)."
    )
    parser.add_argument("--out", required=True, help="The model folder to write.")
    parser.add_argument("--set", action="append", default=[], help="Config override key=value (repeatable).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fresh parts.")
    parser.add_argument(
        "--keep-trained",
        action="store_true",
        help="Keep the trained modules: only those the overrides add (a question bag, a crop MLP) start fresh.",
    )
    args = parser.parse_args()

    torch.manual_seed(args.seed)  # the modules the overrides add
    model = SparrowModel.from_pretrained(resolve_model_path(args.model), args.set, fresh=FRESH_PARTS)
    parts = [p for p in FRESH_PARTS if getattr(model, p, None) is not None]
    if not args.keep_trained:
        reset_parts(model, parts, args.seed)
    model.save_pretrained(args.out)
    kept = "the trained modules kept" if args.keep_trained else "fresh"
    print(f"{args.out}: {', '.join(parts)} {kept}")


if __name__ == "__main__":
    main()
