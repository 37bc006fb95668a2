"""``sparrow chat VIDEO``: a multi-turn conversation about one video, read from standard input.

Each line is one turn (a question, or a referring expression). The answer is printed with every
grounded phrase in its own colour -- the colour of its mask in the turn's overlay video
(``DIR/turn_NN.mp4``, with ``DIR/turn_NN.json`` beside it). ``/reset`` forgets the history (the
video features stay cached), ``/quit`` or end of input stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.text import Text

from .pipeline_options import (
    ANSWER,
    DEVICE,
    DTYPE,
    KEY_FRAME,
    KEY_FRAME_CANDIDATES,
    MAX_NEW_TOKENS,
    MODEL,
    PROPAGATION,
    AnswerMode,
    Device,
    DType,
    KeyFrame,
    Propagation,
    build_pipeline,
    check_model,
    tracked,
)


def coloured_answer(text: str, spans: list[tuple[int, int] | None]) -> Text:
    """The answer with phrase ``k`` (character span ``spans[k]``) in overlay colour ``k``."""
    from sparrow.viz import color_for

    rich_text = Text(text)
    for k, span in enumerate(spans):
        if span is not None:
            r, g, b = color_for(k)
            rich_text.stylize(f"bold rgb({r},{g},{b})", span[0], span[1])
    return rich_text


def chat(
    video: Path = typer.Argument(..., help="A video file or a folder of jpg/png frames."),
    out: Path | None = typer.Option(
        Path("outputs/chat"), "--out", help="Folder for each turn's overlay and JSON ('' to write nothing)."
    ),
    model: str = MODEL,
    device: Device = DEVICE,
    dtype: DType = DTYPE,
    answer: AnswerMode = ANSWER,
    max_new_tokens: int = MAX_NEW_TOKENS,
    propagation: Propagation = PROPAGATION,
    key_frame: KeyFrame = KEY_FRAME,
    key_frame_candidates: int = KEY_FRAME_CANDIDATES,
    source_fps: float | None = typer.Option(
        None, "--source-fps", help="Frame rate of a frame folder (default 30)."
    ),
) -> None:
    """Talk about VIDEO: one question per line on stdin; grounded answers, one colour per phrase."""
    from sparrow.inference.outputs import write_overlay, write_result_json
    from sparrow.viz import color_for

    check_model(model)
    err = Console(stderr=True)
    console = Console()
    pipe = build_pipeline(
        model,
        device,
        dtype,
        answer=answer,
        max_new_tokens=max_new_tokens,
        propagation=propagation,
        key_frame=key_frame,
        key_frame_candidates=key_frame_candidates,
    )
    write = out is not None and str(out) not in ("", ".")
    with pipe.session(video, fps=source_fps) as session:
        err.print(
            f"{session.num_frames} frames of {session.size[1]}x{session.size[0]}. "
            "One question per line; /reset forgets the history, /quit ends.",
            highlight=False,
        )
        turn = 0
        for line in sys.stdin:
            message = line.strip()
            if not message:
                continue
            if message in ("/quit", "/exit"):
                break
            if message == "/reset":
                session.reset_chat()
                err.print("history cleared")
                continue
            stream = session.stream(message, history=session.history)
            for _ in tracked(stream, session.num_frames, err):
                pass
            result = stream.result()
            session.remember(result)
            console.print(Text("> ") + coloured_answer(result.text, [p.char_span for p in result.phrases]))
            for k, p in enumerate(result.phrases):
                r, g, b = color_for(k)
                line_text = Text(f"  [{k}] ") + Text(p.text, style=f"bold rgb({r},{g},{b})")
                console.print(line_text + Text(f"  frames {p.masklet.spans()}"))
            if write:
                stem = out / f"turn_{turn:02d}"  # type: ignore[operator]
                write_result_json(stem.with_suffix(".json"), result)
                write_overlay(stem.with_suffix(".mp4"), video, result, fps=source_fps)
                err.print(f"  wrote {stem}.mp4 and {stem}.json", highlight=False)
            turn += 1
