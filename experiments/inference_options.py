"""The inference options (a)-(d) of ``sparrow.inference`` on the SynRef ``hard`` test split.

Rows: the paper's inference (key frame 0, SAM2 memory propagation, no re-prompting, no TSF), (a)
``--key-frame best``, (b) ``--reprompt``, (c) ``--self-tsf``, all three together (each on SAM2
memory propagation), (d) ``--propagation chain`` and (a) + (d), each through ``sparrow predict`` and
``sparrow eval synref``; the table goes to ``OUT/options.md`` and ``OUT/options.json``.

    python experiments/inference_options.py --out runs/options             # bundled model
    python experiments/inference_options.py --out runs/options_x --model runs/x/2-filter/final

Finished rows are reused on a re-run (their report JSON is kept).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from runner import ensure_split, markdown_table, predict_and_score

# Every row names both switches, so that it does not depend on the model's saved settings.
VIDEO = ["--propagation", "video"]
FIRST = ["--key-frame", "first"]
BEST = ["--key-frame", "best"]
ROWS = (
    ("paper", "paper (key frame 0, SAM2 memory)", [*VIDEO, *FIRST]),
    ("key_frame_best", "(a) key frame: most confident", [*VIDEO, *BEST]),
    ("reprompt", "(b) re-prompting", [*VIDEO, *FIRST, "--reprompt"]),
    ("self_tsf", "(c) self-TSF", [*VIDEO, *FIRST, "--self-tsf"]),
    ("all", "(a) + (b) + (c)", [*VIDEO, *BEST, "--reprompt", "--self-tsf"]),
    ("chain", "(d) chain propagation", ["--propagation", "chain", *FIRST]),
    ("chain_best", "(a) + (d) (the settings the bundled model saves)", ["--propagation", "chain", *BEST]),
)
TAGS = ("late_appearance", "reappears", "occluded", "crosses_lookalike")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/options"), help="Output folder.")
    parser.add_argument("--model", default="default", help="Model folder, or 'default' (the bundled one).")
    parser.add_argument("--test", type=Path, default=Path("data/synref/test_hard"), help="Hard test split.")
    parser.add_argument("--test-seed", type=int, default=7, help="Seed of the hard test split.")
    parser.add_argument("--rows", nargs="+", default=[r[0] for r in ROWS], choices=[r[0] for r in ROWS])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "options.log"
    split = ["--split", "test", "--videos", "200", "--seed", str(args.test_seed), "--difficulty", "hard"]
    ensure_split(args.test, split, log)
    rows = []
    for name, label, options in (r for r in ROWS if r[0] in args.rows):
        rows.append((name, label, predict_and_score(name, args.model, args.test, args.out, log, options)))
        print(f"{name}: J&F {rows[-1][2]['J&F']:.3f}", flush=True)
    text = markdown_table([(label, r) for _, label, r in rows], TAGS)
    n = rows[0][2]["n_expressions"]
    text += f"\nModel `{args.model}`; SynRef hard test split `{args.test}` (seed {args.test_seed}, {n} expressions).\n"
    (args.out / "options.md").write_text(text)
    (args.out / "options.json").write_text(json.dumps({n: r for n, _, r in rows}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
