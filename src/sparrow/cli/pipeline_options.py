"""Options shared by the inference commands (``ground``, ``chat``, ``predict``, ``demo``) and the
pipeline they build. Heavy imports (torch, the model) happen inside the functions."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from sparrow.inference import FrameResult, GroundingPipeline, GroundingStream


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DType(StrEnum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class AnswerMode(StrEnum):
    generate = "generate"
    template = "template"


class Propagation(StrEnum):
    model = "model"
    video = "video"
    framewise = "framewise"
    chain = "chain"


class KeyFrame(StrEnum):
    model = "model"
    first = "first"
    best = "best"


MODEL = typer.Option(
    "default",
    "--model",
    help="Model folder (save_pretrained / `sparrow train` output), or 'default' for the bundled model.",
)
DEVICE = typer.Option(Device.auto, "--device", help="auto (CUDA when present, else CPU), cpu or cuda.")
DTYPE = typer.Option(DType.auto, "--dtype", help="auto: float32 on CPU, bfloat16 (or float16) on CUDA.")
ANSWER = typer.Option(
    AnswerMode.generate,
    "--answer",
    help="generate the answer (the paper), or read the template answer 'Sure, [BOX] [SEG].' (no decoding).",
)
FALLBACK = typer.Option(
    False, "--fallback-template", help="If the generated answer grounds nothing, read the template answer."
)
MAX_NEW_TOKENS = typer.Option(64, "--max-new-tokens", min=1, help="Decoding budget per answer.")
PROPAGATION = typer.Option(
    Propagation.model,
    "--propagation",
    help="video (SAM2 memory), framewise (no memory), chain (each frame prompted with the box of the "
    "previous frame's mask), or the model's setting.",
)
KEY_FRAME = typer.Option(
    KeyFrame.model,
    "--key-frame",
    help="first (frame 0, the paper), best (most confident sampled frame), or the model's setting.",
)
KEY_FRAME_CANDIDATES = typer.Option(
    5, "--key-frame-candidates", min=1, help="With key frame 'best': frames sampled uniformly to choose from."
)
REPROMPT = typer.Option(False, "--reprompt", help="Re-prompt a target lost to occlusion when it reappears.")
SELF_TSF = typer.Option(False, "--self-tsf", help="Two passes: the first masklet gives the TSF crops.")


def build_pipeline(
    model: str,
    device: Device | str,
    dtype: DType,
    *,
    answer: AnswerMode = AnswerMode.generate,
    fallback_template: bool = False,
    max_new_tokens: int = 64,
    propagation: Propagation = Propagation.model,
    key_frame: KeyFrame = KeyFrame.model,
    key_frame_candidates: int = 5,
    reprompt: bool = False,
    self_tsf: bool = False,
) -> GroundingPipeline:
    """Load the model into a pipeline with the command's options."""
    from sparrow.inference import GroundingOptions, GroundingPipeline

    options = GroundingOptions(
        answer=answer.value,  # type: ignore[arg-type]
        fallback_template=fallback_template,
        max_new_tokens=max_new_tokens,
        propagation=None if propagation is Propagation.model else propagation.value,  # type: ignore[arg-type]
        key_frame=None if key_frame is KeyFrame.model else key_frame.value,  # type: ignore[arg-type]
        key_frame_candidates=key_frame_candidates,
        reprompt=reprompt,
        self_tsf=self_tsf,
    )
    target = device.value if isinstance(device, Device) else device
    return GroundingPipeline.from_pretrained(model, options=options, device=target, dtype=dtype.value)


def check_model(model: str) -> None:
    """Fail fast (before any video is read or torch imported) when the model folder is missing."""
    from sparrow.inference.model_path import resolve_model_path

    resolve_model_path(model)


def progress_bar(console: Console) -> Progress:
    """A frame-count progress bar (quiet when ``console`` is not a terminal)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )


def tracked(
    stream: GroundingStream, total: int, console: Console, what: str = "tracking"
) -> Iterator[FrameResult]:
    """Iterate ``stream`` with a progress bar over ``total`` frames."""
    with progress_bar(console) as bars:
        task = bars.add_task(what, total=total if stream.answer.targets else 0)
        for frame in stream:
            yield frame
            bars.advance(task)
