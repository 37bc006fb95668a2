"""``sparrow eval davis|mevis|refdavis|revos|identity|synref``: video object segmentation benchmarks.

Each command prints the benchmark's table with its own rounding and writes full-precision results with
``--json``. The evaluation code is imported inside the commands so that ``sparrow --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import app
from .options import JSON_OUT, MASK_DICT, META, STRICT, WORKERS, write_results

_DECAY = typer.Option(
    "official", "--decay-mode", help="official (uint8 bin wrap at >= 257 frames, as davis2017) or corrected."
)


@app.command("davis")
def davis(
    davis_root: Path = typer.Option(
        ..., "--davis-root", help="DAVIS-2017 root (ImageSets/, Annotations[_unsupervised]/)."
    ),
    results: Path = typer.Option(
        ..., "--results", help="Results folder: <sequence>/<frame>.png palette PNGs of ids."
    ),
    task: str = typer.Option("semi-supervised", "--task", help="semi-supervised or unsupervised."),
    image_set: str = typer.Option(
        "val", "--set", help="Sequence list in ImageSets/2017 (train, val, test-dev ...)."
    ),
    resolution: str = typer.Option(
        "480p", "--resolution", help="Annotation resolution folder (480p, Full-Resolution)."
    ),
    decay_mode: str = _DECAY,
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """DAVIS-2017 J&F (davis2017-evaluation): J/F Mean, Recall, Decay over all objects."""
    from sparrow.evaluation.davis import evaluate_davis

    result = evaluate_davis(
        davis_root,
        results,
        task=task,  # type: ignore[arg-type]
        image_set=image_set,
        resolution=resolution,
        workers=workers,
        strict=strict,
        decay_mode=decay_mode,  # type: ignore[arg-type]
    )
    result.print_table()
    write_results(result, json_out)


@app.command("mevis")
def mevis(
    gt: Path | None = typer.Option(
        None,
        "--gt",
        help="Split folder: meta_expressions.json + mask_dict.json (MeViS) or Annotations/ (Ref-YouTube-VOS).",
    ),
    results: Path = typer.Option(
        ..., "--results", help="Predictions: <video>/<exp_id>/<frame>.png (non-zero = object)."
    ),
    meta: Path | None = META,
    mask_dict: Path | None = MASK_DICT,
    annotations: Path | None = typer.Option(
        None, "--annotations", help="Palette-PNG folder (default: --gt/Annotations)."
    ),
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """MeViS J&F (tools/eval_mevis.py): per-expression means over all frames, then mean over expressions."""
    from sparrow.evaluation.mevis import evaluate_mevis

    result = evaluate_mevis(
        gt,
        results,
        meta=meta,
        mask_dict=mask_dict,
        annotations_dir=annotations,
        workers=workers,
        strict=strict,
    )
    result.print_table()
    write_results(result, json_out)


@app.command("refdavis")
def refdavis(
    davis_root: Path = typer.Option(
        ..., "--davis-root", help="DAVIS-2017 root with Annotations_unsupervised/480p."
    ),
    results: Path = typer.Option(
        ...,
        "--results",
        help="referformer: folder holding anno_0..anno_3 (or Davis17_annot*); per-expression: <video>/<exp_id>/<frame>.png.",
    ),
    protocol: str = typer.Option(
        "referformer",
        "--protocol",
        help="referformer (mean of 4 DAVIS-unsupervised sets) or per-expression (VISA).",
    ),
    meta: Path | None = typer.Option(
        None, "--meta", help="ReferFormer meta_expressions.json (needed by --protocol per-expression)."
    ),
    image_set: str = typer.Option("val", "--set", help="DAVIS sequence list (referformer protocol)."),
    decay_mode: str = _DECAY,
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """Ref-DAVIS17 J&F under one of its two (not comparable) protocols."""
    from sparrow.errors import ConfigError

    if protocol == "referformer":
        from sparrow.evaluation.refdavis import evaluate_refdavis_referformer

        result: Any = evaluate_refdavis_referformer(
            davis_root,
            results,
            image_set=image_set,
            workers=workers,
            strict=strict,
            decay_mode=decay_mode,  # type: ignore[arg-type]
        )
        result.print_table()
    elif protocol == "per-expression":
        from sparrow.evaluation.refdavis import evaluate_refdavis_per_expression

        if meta is None:
            raise ConfigError(
                "--protocol per-expression needs --meta", fix="pass ReferFormer's meta_expressions.json"
            )
        result = evaluate_refdavis_per_expression(davis_root, meta, results, workers=workers, strict=strict)
        result.print_table(decimals=2, scale=100.0)  # VISA prints round(100 * x, 2)
    else:
        raise ConfigError(f"unknown protocol {protocol!r}", fix="use referformer or per-expression")
    write_results(result, json_out)


@app.command("revos")
def revos(
    gt: Path | None = typer.Option(
        None,
        "--gt",
        help="ReVOS folder: meta_expressions_valid_.json, mask_dict.json [, mask_dict_foreground.json].",
    ),
    results: Path = typer.Option(
        ..., "--results", help="Predictions: <video>/<exp_id>/<frame>.png grey PNGs."
    ),
    meta: Path | None = typer.Option(
        None, "--meta", help="Meta expressions file (default: --gt/meta_expressions_valid_.json)."
    ),
    mask_dict: Path | None = MASK_DICT,
    foreground: Path | None = typer.Option(
        None,
        "--foreground",
        help="mask_dict_foreground.json (default: in --gt, else computed from mask_dict).",
    ),
    r_weight: str = typer.Option(
        "png_gray",
        "--r-weight",
        help="png_gray (official: FP pixels weigh their grey value) or binary (0/1).",
    ),
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """ReVOS (VISA): J, F, A, R per subset (referring, reason) and overall, in percent."""
    from sparrow.evaluation.revos import evaluate_revos

    result = evaluate_revos(
        gt,
        results,
        meta=meta,
        mask_dict=mask_dict,
        foreground=foreground,
        r_weight=r_weight,  # type: ignore[arg-type]
        workers=workers,
        strict=strict,
    )
    result.print_table()
    write_results(result, json_out)


@app.command("identity")
def identity(
    gt: Path | None = typer.Option(
        None, "--gt", help="MeViS-layout split: meta_expressions.json + mask_dict.json."
    ),
    results: Path = typer.Option(..., "--results", help="Predictions: <video>/<exp_id>/<frame>.png."),
    meta: Path | None = META,
    mask_dict: Path | None = MASK_DICT,
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """Identity-switch rate of referring predictions, plus IDF1 / IDSW / HOTA on the masklets."""
    from sparrow.evaluation.identity import evaluate_identity

    result = evaluate_identity(gt, results, meta=meta, mask_dict=mask_dict, workers=workers, strict=strict)
    result.print_table()
    write_results(result, json_out)


@app.command("synref")
def synref(
    gt: Path = typer.Option(
        ..., "--gt", help="SynRef split folder: meta_expressions.json (with tags) + mask_dict.json."
    ),
    results: Path = typer.Option(..., "--results", help="Predictions: <video>/<exp_id>/<frame>.png."),
    workers: int | None = WORKERS,
    strict: bool = STRICT,
    json_out: Path | None = JSON_OUT,
) -> None:
    """SynRef diagnostic report: MeViS J&F, first-frame J, id-switch rate, IDF1/HOTA and J&F per tag."""
    from sparrow.evaluation.synref_report import evaluate_synref

    result = evaluate_synref(gt, results, workers=workers, strict=strict)
    result.print_table()
    write_results(result, json_out)
