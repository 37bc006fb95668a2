"""What the experiment scripts share: running ``sparrow`` commands, predicting and scoring a SynRef
split, and the Markdown table of :class:`sparrow.evaluation.SynrefReport` numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SPARROW = [sys.executable, "-m", "sparrow"]
TAGS = ("occluded", "reappears", "crosses_lookalike", "late_appearance", "motion_only")


def run(cmd: list[str], log: Path) -> None:
    """Run a command, appending its output to ``log``; stop with its exit code on failure."""
    print("$", " ".join(cmd[2:] if cmd[:2] == SPARROW[:2] else cmd), flush=True)
    with open(log, "a", encoding="utf-8") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if code != 0:
        sys.exit(f"failed (exit {code}): {' '.join(cmd)}; see {log}")


def ensure_split(folder: Path, args: list[str], log: Path) -> None:
    """Generate a 16-frame SynRef split with ``sparrow data synref ARGS`` unless it exists."""
    if not (folder / "meta_expressions.json").is_file():
        run([*SPARROW, "data", "synref", "--out", str(folder), "--frames", "16", *args], log)


def predict_and_score(
    name: str, model: Path | str, test: Path, out: Path, log: Path, options: list[str]
) -> dict:
    """``sparrow predict`` (MeViS layout, CPU) with extra ``options``, then ``sparrow eval synref``; the
    report's JSON (``OUT/eval/NAME.json``, reused when present)."""
    report = out / "eval" / f"{name}.json"
    if not report.is_file():
        preds = out / "predictions" / name
        cmd = [*SPARROW, "predict", "--dataset", "mevis", "--root", str(test), "--out", str(preds)]
        run([*cmd, "--model", str(model), "--device", "cpu", *options], log)
        run(
            [*SPARROW, "eval", "synref", "--gt", str(test), "--results", str(preds), "--json", str(report)],
            log,
        )
    return json.loads(report.read_text())


def markdown_table(rows: list[tuple[str, dict]], tags: tuple[str, ...] = TAGS) -> str:
    """One row per ``(label, report JSON)``: J&F, J, F, first-frame J, identity-switch rate, J&F per tag."""
    head = ["", "J&F", "J", "F", "first-frame J", "id-switch rate", *(f"J&F {t}" for t in tags)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, r in rows:
        values = [r["J&F"], r["J"], r["F"], r["first_frame_J"], r["id_switch_rate"]]
        values += [r["per_tag"][t]["J&F"] for t in tags]
        lines.append("| " + " | ".join([label, *(f"{v:.3f}" for v in values)]) + " |")
    return "\n".join(lines) + "\n"
