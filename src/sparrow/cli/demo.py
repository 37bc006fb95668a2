"""``sparrow demo`` (what ``make demo`` runs): the whole product on one SynRef clip, end to end.

1. Generate a SynRef clip with its proved expressions and exact masks (``OUT/synref``, MeViS layout)
   and write the clip as H.264 (``OUT/clip.mp4``).
2. Read the clip back through the streaming reader and draw the ground truth on it
   (``OUT/ground_truth.mp4``, ``OUT/ground_truth.json``, ``OUT/masks/ground_truth``); score the
   ground truth with the MeViS evaluator -- J&F = 1.0 by construction (a check of the I/O and the
   evaluator, not of a model).
3. With a trained model (``--model``, default: the bundled one): ground every chosen expression in
   the mp4 (``OUT/prediction.mp4``, ``OUT/prediction/<exp_id>.json``, ``OUT/masks/prediction``) and
   score it against the ground truth. Without one, say so and how to train it -- random weights are
   never presented as a result.

``--video V --prompt TEXT`` grounds prompts in your own video instead (no ground truth, no score).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel

from .pipeline_options import DEVICE, DTYPE, MODEL, Device, DType, build_pipeline

TRAIN_COMMAND = "sparrow train src/sparrow/configs/recipes/synref_tiny.yaml"


def _model_folder(model: str) -> Path | None:
    """The model folder, ``None`` when the bundled default is not installed (any other problem raises)."""
    from sparrow.errors import CheckpointError
    from sparrow.inference.model_path import resolve_model_path

    try:
        return resolve_model_path(model)
    except CheckpointError:
        if model == "default":
            return None
        raise


def _no_model(console: Console, model: str) -> None:
    from sparrow.paths import bundled_model_dir

    console.print(
        Panel(
            "No trained bundled model is installed yet, so nothing was predicted (random weights are "
            "never shown as a result).\n"
            f"Train it: [bold]{TRAIN_COMMAND}[/] (data commands in that file's header), then copy the "
            f"last stage's final/ folder to {bundled_model_dir()} or pass --model FOLDER.",
            title="model",
            border_style="yellow",
        )
    )


def _score(console: Console, title: str, gt: Path, meta: Path, results: Path) -> dict[str, Any]:
    from sparrow.evaluation.mevis import evaluate_mevis

    scores = dataclasses.replace(evaluate_mevis(gt, results, meta=meta, workers=1, strict=True), title=title)
    scores.print_table(console)
    return scores.to_json_dict()


def demo(
    video: Path | None = typer.Option(None, "--video", help="Your own video instead of a SynRef clip."),
    prompt: list[str] | None = typer.Option(
        None, "--prompt", help="With --video: a text to ground (repeatable)."
    ),
    out: Path = typer.Option(Path("outputs/demo"), "--out", help="Output folder."),
    model: str = MODEL,
    device: Device = DEVICE,
    dtype: DType = DTYPE,
    frames: int = typer.Option(24, "--frames", min=2, help="SynRef clip length."),
    size: str = typer.Option("128x128", "--size", help="SynRef frame size HxW."),
    seed: int = typer.Option(0, "--seed", help="SynRef seed."),
    expressions: int = typer.Option(3, "--expressions", min=1, help="Expressions of the clip to ground."),
) -> None:
    """Generate a SynRef clip, ground a few of its expressions, write overlays, masks and JSON, print J&F."""
    console = Console()
    folder = _model_folder(model)
    out.mkdir(parents=True, exist_ok=True)
    if video is not None:
        _own_video(console, video, prompt or [], out, folder, model, device, dtype)
        return
    summary = _synref_demo(console, out, folder, model, device, dtype, frames, size, seed, expressions)
    from sparrow.io.atomic import write_text_atomic

    write_text_atomic(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    console.print(f"summary: {out / 'demo.json'}", highlight=False)


def _synref_demo(
    console: Console,
    out: Path,
    folder: Path | None,
    model: str,
    device: Device,
    dtype: DType,
    n_frames: int,
    size: str,
    seed: int,
    n_expressions: int,
) -> dict[str, Any]:
    from sparrow.data.formats import mevis_results_writer, read_mevis
    from sparrow.data.synref import STANDARD, GenerationRequest, generate_video, parse_size, write_split
    from sparrow.inference.outputs import add_expression_masks, write_overlay, write_result_json
    from sparrow.io import probe_video, write_video
    from sparrow.io.atomic import write_text_atomic
    from sparrow.structures import GroundedPhrase, GroundingResult, Masklet

    request = GenerationRequest(
        split="demo",
        videos=1,
        frames=n_frames,
        size=parse_size(size),
        seed=seed,
        difficulty="standard",
        knobs=STANDARD,
    )
    write_split(out / "synref", request, overwrite=True)
    sample = generate_video(request, 0)
    clip = out / "clip.mp4"
    write_video(clip, sample.rendering.frames, fps=request.knobs.fps)
    info = probe_video(clip)
    console.print(
        f"SynRef clip {sample.video_id}: {info.num_frames} frames of {info.width}x{info.height} -> {clip}",
        highlight=False,
    )

    split = read_mevis(out / "synref", "demo")
    record = split.videos[sample.video_id]
    chosen = split.expressions_of(sample.video_id)[:n_expressions]
    meta_all = json.loads((out / "synref" / "meta_expressions.json").read_text())
    entry = meta_all["videos"][sample.video_id]
    entry["expressions"] = {e.exp_id: entry["expressions"][e.exp_id] for e in chosen}
    meta = out / "meta_expressions.json"  # the ground truth restricted to the grounded expressions
    write_text_atomic(meta, json.dumps(meta_all) + "\n")
    for e in chosen:
        console.print(f"  [{e.exp_id}] {e.text}", highlight=False, markup=False)

    def as_result(text: str, masklet: Masklet) -> GroundingResult:
        return GroundingResult(
            text=text, phrases=(GroundedPhrase(text, masklet),), size=masklet.size,
            frame_indices=masklet.frame_indices, fps=info.fps,
        )  # fmt: skip

    truth = [Masklet.from_masks(e.load_masks(), object_id=int(e.exp_id), label=e.text) for e in chosen]
    write_overlay(out / "ground_truth.mp4", clip, truth)
    payload = {
        "video": sample.video_id,
        "expressions": [{"exp_id": e.exp_id, **m.to_dict()} for e, m in zip(chosen, truth, strict=True)],
    }
    write_text_atomic(out / "ground_truth.json", json.dumps(payload) + "\n")
    with mevis_results_writer(out / "masks" / "ground_truth", overwrite=True) as writer:
        for e, m in zip(chosen, truth, strict=True):
            add_expression_masks(writer, sample.video_id, e.exp_id, as_result(e.text, m), record.frame_names)
    console.print(
        "ground truth scored against itself (J&F = 1.0 by construction: checks the I/O, not a model):"
    )
    gt_scores = _score(
        console, "ground truth vs itself", out / "synref", meta, out / "masks" / "ground_truth"
    )
    summary: dict[str, Any] = {
        "clip": str(clip),
        "video_id": sample.video_id,
        "expressions": {e.exp_id: e.text for e in chosen},
        "ground_truth_overlay": str(out / "ground_truth.mp4"),
        "ground_truth_self_check": {"J&F": gt_scores["J&F"], "note": "1.0 by construction"},
        "model": None,
        "prediction": None,
    }
    if folder is None:
        _no_model(console, model)
        return summary

    pipe = build_pipeline(str(folder), device, dtype)
    predicted = []
    with (
        pipe.session(clip) as session,
        mevis_results_writer(out / "masks" / "prediction", overwrite=True) as writer,
    ):
        for e in chosen:
            result = session.ground(e.text)
            write_result_json(out / "prediction" / f"{e.exp_id}.json", result)
            add_expression_masks(writer, sample.video_id, e.exp_id, result, record.frame_names)
            console.print(f"  [{e.exp_id}] answer: {result.raw_text}", highlight=False, markup=False)
            predicted.extend(
                Masklet.from_rles(
                    p.masklet.rles,
                    p.masklet.frame_indices,
                    p.masklet.size,
                    object_id=int(e.exp_id),
                    label=e.text,
                )
                for p in result.phrases
            )
    write_overlay(out / "prediction.mp4", clip, predicted)
    scores = _score(
        console, f"model {folder.name} vs ground truth", out / "synref", meta, out / "masks" / "prediction"
    )
    summary["model"] = str(folder)
    summary["prediction"] = {
        "overlay": str(out / "prediction.mp4"),
        "J&F": scores["J&F"],
        "J": scores["J"],
        "F": scores["F"],
    }
    return summary


def _own_video(
    console: Console,
    video: Path,
    prompts: list[str],
    out: Path,
    folder: Path | None,
    model: str,
    device: Device,
    dtype: DType,
) -> None:
    from sparrow.errors import ConfigError
    from sparrow.inference.outputs import write_overlay, write_result_json
    from sparrow.io import open_video, sample_frame_indices, write_image
    from sparrow.viz import contact_sheet

    with open_video(video) as reader:
        info = reader.info
        sheet = contact_sheet(
            reader.iter_frames(sample_frame_indices(info.num_frames, num=min(8, info.num_frames)))
        )
    write_image(out / "frames.png", sheet)
    console.print(
        f"{video}: {info.num_frames} frames of {info.width}x{info.height}; sheet {out / 'frames.png'}"
    )
    if folder is None:
        _no_model(console, model)
        return
    if not prompts:
        raise ConfigError("--video needs at least one --prompt", fix='add --prompt "the red car"')
    pipe = build_pipeline(str(folder), device, dtype)
    with pipe.session(video) as session:
        for k, text in enumerate(prompts):
            result = session.ground(text)
            write_result_json(out / f"prompt_{k}.json", result)
            write_overlay(out / f"prompt_{k}.mp4", video, result)
            console.print(
                f"[{k}] {text!r} -> {result.raw_text}  ({out / f'prompt_{k}.mp4'})",
                highlight=False,
                markup=False,
            )
