"""``sparrow eval stvg | vg | gcg``: grounding and grounded-caption benchmarks (METRICS.md 3-4).

The evaluation code is imported inside the commands, so ``sparrow --help`` stays fast; torch and
transformers are imported only for ``--text-similarity bert``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from . import app
from .options import JSON_OUT, STRICT, WORKERS, write_results


@app.command("stvg")
def stvg(
    gt: Path = typer.Option(
        ..., "--gt", help="Processed annotations: VidSTG {split}.json or HC-STVG *_proc.json."
    ),
    pred: Path = typer.Option(
        ...,
        "--pred",
        help='Predictions JSON: {"<video_id>": {"sted": [start, end_excl], "boxes": {"<frame>": [x1, y1, x2, y2]}}}.',
    ),
    fps: float = typer.Option(5.0, "--fps", help="TubeDETR sampling rate (official 5)."),
    video_max_len: int = typer.Option(
        200, "--video-max-len", min=1, help="At most this many sampled frames (official 200)."
    ),
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """Spatio-temporal grounding (VidSTG / HC-STVG): m_tIoU, m_vIoU, vIoU@0.3/0.5, gt_vIoU, per qtype."""
    from sparrow.evaluation.stvg import evaluate_stvg

    result = evaluate_stvg(gt, pred, fps=fps, video_max_len=video_max_len, strict=strict, workers=workers)
    result.print_table()
    write_results(result, json_out)


@app.command("vg")
def vg(
    gt: Path = typer.Option(
        ..., "--gt", help="Processed annotations: VidSTG test.json or HC-STVG v2 *_proc.json."
    ),
    pred: Path = typer.Option(
        ...,
        "--pred",
        help='Predicted masks JSON: {"<video_id>": {"<frame>": {"size": [h, w], "counts": "..."}}}.',
    ),
    fps: float = typer.Option(1.0, "--fps", help="Tube sampling rate (official 1)."),
    max_frames: int = typer.Option(
        40, "--max-frames", min=1, help="At most this many frames per tube (official 40)."
    ),
    resolution: int = typer.Option(
        224,
        "--resolution",
        help="Test-transform shorter side (official 224); 0 evaluates at the original size.",
    ),
    min_blob: int = typer.Option(
        20, "--min-blob", min=0, help="Remove 4-connected blobs under this many pixels (official 20)."
    ),
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """VideoGLaMM/SPARROW grounding mIoU: box IoU of mask boxes in the GT tube, per qtype."""
    from sparrow.errors import ConfigError
    from sparrow.evaluation.vg import evaluate_vg, transform_frame_size

    res = resolution or None
    try:
        transform_frame_size(1, 1, res)
    except ValueError as err:
        raise ConfigError(
            f"--resolution: {err}", fix="use 224 (official) or 0 for the original size"
        ) from err
    result = evaluate_vg(
        gt,
        pred,
        fps=fps,
        max_frames=max_frames,
        resolution=res,
        min_blob=min_blob,
        strict=strict,
        workers=workers,
    )
    result.print_table()
    write_results(result, json_out)


class TextSimilarityChoice(StrEnum):
    token_cosine = "token-cosine"
    iou_only = "iou-only"
    bert = "bert"


class JudgeChoice(StrEnum):
    none = "none"
    lexical = "lexical"
    command = "command"


@app.command("gcg")
def gcg(
    gt: Path = typer.Option(
        ..., "--gt", help="Folder of <idx:06d>/ samples with res.json (gt_*) and gt_masks_<k>/."
    ),
    results: Path | None = typer.Option(
        None,
        "--results",
        help="Folder of <idx:06d>/ samples with res.json (pred_*) and pred_masks_<k>/ (default: --gt).",
    ),
    text_similarity: TextSimilarityChoice = typer.Option(
        TextSimilarityChoice.token_cosine,
        "--text-similarity",
        help="Recall text gate: token-cosine (offline, not parity), iou-only (gate off), bert (parity; needs --bert).",
    ),
    bert: Path | None = typer.Option(
        None, "--bert", help="Local bert-base-uncased folder for --text-similarity bert."
    ),
    judge: JudgeChoice = typer.Option(
        JudgeChoice.none,
        "--judge",
        help="CLAIR judge: none (skip CLAIR), lexical (deterministic stand-in, not an LLM) or command.",
    ),
    judge_command: str | None = typer.Option(
        None,
        "--judge-command",
        help="For --judge command: a command reading the CLAIR prompt on stdin and printing the reply.",
    ),
    no_captions: bool = typer.Option(
        False, "--no-captions", help="Skip BLEU/METEOR/ROUGE-L/CIDEr (they need Java)."
    ),
    compat: bool = typer.Option(
        False, "--compat", help="Official control flow, incl. the recall double count."
    ),
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """Video GCG: mIoU, recall, AP50, METEOR, CIDEr, BLEU-1..4, ROUGE-L and CLAIR."""
    from sparrow.errors import ConfigError
    from sparrow.evaluation.gcg import evaluate_gcg
    from sparrow.evaluation.text_similarity import ConstantSimilarity, TokenCosineSimilarity

    if text_similarity is TextSimilarityChoice.bert:
        if bert is None:
            raise ConfigError(
                "--text-similarity bert needs --bert PATH", fix="pass a local bert-base-uncased folder"
            )
        from sparrow.evaluation.text_similarity import BertMeanPoolSimilarity

        sim = BertMeanPoolSimilarity(bert)
    elif text_similarity is TextSimilarityChoice.iou_only:
        sim = ConstantSimilarity()
    else:
        sim = TokenCosineSimilarity()
    chosen_judge = None
    if judge is JudgeChoice.lexical:
        from sparrow.evaluation.clair import LexicalJudge

        chosen_judge = LexicalJudge()
    elif judge is JudgeChoice.command:
        if not judge_command:
            raise ConfigError(
                "--judge command needs --judge-command CMD", fix="pass the command to run per prompt"
            )
        from sparrow.evaluation.clair import CommandJudge

        chosen_judge = CommandJudge(judge_command)
    result = evaluate_gcg(
        gt,
        results,
        text_similarity=sim,
        judge=chosen_judge,
        captions=not no_captions,
        compat=compat,
        strict=strict,
        workers=workers,
    )
    result.print_table()
    write_results(result, json_out)
