"""``sparrow ground VIDEO "text" --out DIR``: ground one sentence in a video of any length.

Writes into DIR: ``result.json`` (answer, and per grounded phrase RLE masks, ``xyxy`` boxes, scores
and spans at the original resolution), the masks (``--format png``: ``masks/<phrase>/<frame>.png``;
``mevis``: ``mevis/<video>/0/<frame>.png``, the union of the phrases as the MeViS evaluator reads it),
and an overlay video (``overlay.mp4`` unless ``--overlay`` names another file or ``--no-overlay``).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .pipeline_options import (
    ANSWER,
    DEVICE,
    DTYPE,
    FALLBACK,
    KEY_FRAME,
    KEY_FRAME_CANDIDATES,
    MAX_NEW_TOKENS,
    MODEL,
    PROPAGATION,
    REPROMPT,
    SELF_TSF,
    AnswerMode,
    Device,
    DType,
    KeyFrame,
    Propagation,
    build_pipeline,
    check_model,
    tracked,
)


class MaskFormat(StrEnum):
    json = "json"
    png = "png"
    mevis = "mevis"


def ground(
    video: Path = typer.Argument(
        ..., help="A video file (.mp4 .mkv .webm .avi .mov) or a folder of jpg/png frames."
    ),
    text: str = typer.Argument(
        ..., help='A referring expression ("the red circle") or a question ending with "?".'
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    model: str = MODEL,
    overlay: Path | None = typer.Option(
        None, "--overlay", help="Overlay video to write (default: DIR/overlay.mp4)."
    ),
    no_overlay: bool = typer.Option(False, "--no-overlay", help="Do not write an overlay video."),
    mask_format: MaskFormat = typer.Option(
        MaskFormat.png, "--format", help="Masks besides result.json: json (none), png (per phrase) or mevis."
    ),
    device: Device = DEVICE,
    dtype: DType = DTYPE,
    answer: AnswerMode = ANSWER,
    fallback_template: bool = FALLBACK,
    max_new_tokens: int = MAX_NEW_TOKENS,
    propagation: Propagation = PROPAGATION,
    key_frame: KeyFrame = KEY_FRAME,
    key_frame_candidates: int = KEY_FRAME_CANDIDATES,
    reprompt: bool = REPROMPT,
    self_tsf: bool = SELF_TSF,
    source_fps: float | None = typer.Option(
        None, "--source-fps", help="Frame rate of a frame folder (default 30)."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Also write a summary (paths, spans, timings) as JSON."
    ),
) -> None:
    """Ground TEXT in VIDEO: masks, boxes and spans at the original resolution, plus an overlay."""
    from sparrow.inference.frames import open_frames
    from sparrow.inference.outputs import (
        add_expression_masks,
        write_overlay,
        write_phrase_pngs,
        write_result_json,
    )
    from sparrow.io.atomic import write_text_atomic

    check_model(model)
    console = Console(stderr=True)
    source = open_frames(video, fps=source_fps)  # a clear error for a bad video before the model loads
    source.close()
    pipe = build_pipeline(
        model,
        device,
        dtype,
        answer=answer,
        fallback_template=fallback_template,
        max_new_tokens=max_new_tokens,
        propagation=propagation,
        key_frame=key_frame,
        key_frame_candidates=key_frame_candidates,
        reprompt=reprompt,
        self_tsf=self_tsf,
    )
    stream = pipe.stream(video, text, fps=source_fps)
    console.print(f"[bold]answer:[/] {escape(stream.answer.raw_text)}", highlight=False)
    for _ in tracked(stream, source.num_frames, console):
        pass
    result = stream.result()

    out.mkdir(parents=True, exist_ok=True)
    paths = {"result": str(write_result_json(out / "result.json", result))}
    if mask_format is MaskFormat.png:
        write_phrase_pngs(out / "masks", result)
        paths["masks"] = str(out / "masks")
    elif mask_format is MaskFormat.mevis:
        from sparrow.data.formats import mevis_results_writer
        from sparrow.data.formats.common import frame_key

        video_id = Path(video).stem
        with mevis_results_writer(out / "mevis", overwrite=True) as writer:
            names = [frame_key(int(f)) for f in result.frame_indices]
            add_expression_masks(writer, video_id, "0", result, names)
        paths["masks"] = str(out / "mevis")
    if not no_overlay:
        target = overlay or out / "overlay.mp4"
        write_overlay(target, video, result, fps=source_fps)
        paths["overlay"] = str(target)

    table = Table(title=escape(result.text or "(no text)"), show_lines=False)
    for column in ("phrase", "frames present", "spans", "mean score"):
        table.add_column(column)
    for p in result.phrases:
        m = p.masklet
        table.add_row(
            p.text, f"{int(m.presence.sum())}/{len(m)}", str(m.spans()), f"{float(m.scores.mean()):.3f}"
        )
    Console().print(table)
    for warning in result.meta.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    Console().print("\n".join(f"{k}: {v}" for k, v in paths.items()), highlight=False)
    if json_out is not None:
        summary = {
            "video": str(video),
            "text": text,
            "answer": result.text,
            "raw_answer": result.raw_text,
            "size": list(result.size),
            "num_frames": len(result.frame_indices),
            "phrases": [
                {"text": p.text, "spans": [list(s) for s in p.masklet.spans()]} for p in result.phrases
            ],
            "timings": result.meta.get("timings", {}),
            "paths": paths,
        }
        write_text_atomic(json_out, json.dumps(summary, indent=2) + "\n")
