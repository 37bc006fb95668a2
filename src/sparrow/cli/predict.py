"""``sparrow predict --dataset NAME --root DIR --out DIR``: a benchmark's official prediction layout.

Every expression of the split is grounded (its text through the question template) and written as
the benchmark's evaluator / server expects it:

- ``mevis``, ``revos``: ``OUT/<video>/<exp_id>/<frame>.png`` (L 0/255) -- what ``sparrow eval mevis``
  / ``sparrow eval revos`` read;
- ``ref-youtube-vos``: ``OUT/Annotations/<video>/<exp_id>/<frame>.png`` (zip ``Annotations/`` for the
  server).

Each video's folder is written atomically, so a restarted run skips the videos already finished.
Under ``torchrun --nproc_per_node N -m sparrow predict ...`` process ``RANK`` of ``WORLD_SIZE`` takes
every ``WORLD_SIZE``-th video (sorted by id); on CUDA it uses GPU ``LOCAL_RANK``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer
from rich.console import Console

from .pipeline_options import (
    ANSWER,
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
    progress_bar,
)

# dataset -> folder the video trees go under (the writers in sparrow.data.formats use the same layouts)
LAYOUTS = {"mevis": "", "revos": "", "ref-youtube-vos": "Annotations"}


def shard() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment (``0, 1, 0`` without it)."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        from sparrow.errors import ConfigError

        raise ConfigError(f"bad RANK / WORLD_SIZE / LOCAL_RANK: {err}", fix="launch with torchrun") from err
    if world < 1 or not 0 <= rank < world:
        from sparrow.errors import ConfigError

        raise ConfigError(f"RANK={rank} is outside WORLD_SIZE={world}", fix="launch with torchrun")
    return rank, world, local


def predict(
    dataset: str = typer.Option(..., "--dataset", help=f"Benchmark format: {', '.join(LAYOUTS)}."),
    root: Path = typer.Option(..., "--root", help="The dataset folder (see `sparrow data formats`)."),
    out: Path = typer.Option(..., "--out", help="Prediction folder (created; finished videos are kept)."),
    split: str | None = typer.Option(None, "--split", help="Split to predict (default: the format's first)."),
    model: str = MODEL,
    device: Device = typer.Option(
        Device.auto, "--device", help="auto, cpu or cuda (under torchrun each process takes cuda:LOCAL_RANK)."
    ),
    dtype: DType = DTYPE,
    answer: AnswerMode = ANSWER,
    fallback_template: bool = FALLBACK,
    max_new_tokens: int = MAX_NEW_TOKENS,
    propagation: Propagation = PROPAGATION,
    key_frame: KeyFrame = KEY_FRAME,
    key_frame_candidates: int = KEY_FRAME_CANDIDATES,
    reprompt: bool = REPROMPT,
    self_tsf: bool = SELF_TSF,
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Predict only the first N videos (sorted)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write this process's summary as JSON."),
) -> None:
    """Ground every expression of a benchmark split and write its official prediction layout."""
    from sparrow.data.formats.common import BinaryMaskTreeWriter, frame_key
    from sparrow.data.registry import get_format
    from sparrow.errors import ConfigError
    from sparrow.inference.frames import ImageFileFrames, open_frames
    from sparrow.inference.outputs import add_expression_masks
    from sparrow.io.atomic import write_text_atomic

    if dataset not in LAYOUTS:
        raise ConfigError(
            f"`sparrow predict` does not write {dataset!r} predictions",
            fix=f"use one of {', '.join(LAYOUTS)}",
        )
    check_model(model)
    rank, world, local = shard()
    data = get_format(dataset).open(root, split)
    videos = sorted(v for v in data.videos if data.expressions_of(v))
    if limit is not None:
        videos = videos[:limit]
    mine = videos[rank::world]
    tree = out / LAYOUTS[dataset] if LAYOUTS[dataset] else out
    todo = [v for v in mine if not (tree / v).is_dir()]
    console = Console(stderr=True)
    console.print(
        f"rank {rank}/{world}: {len(mine)} of {len(videos)} videos, {len(mine) - len(todo)} already done",
        highlight=False,
    )
    if device.value != "cpu" and world > 1:  # one GPU per process when CUDA is used
        from sparrow.inference import resolve_device

        resolved = resolve_device(device.value)
        target = f"cuda:{local}" if resolved.type == "cuda" else "cpu"
    else:
        target = device.value
    pipe = build_pipeline(
        model,
        target,
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
    started = time.perf_counter()
    count = 0
    with progress_bar(console) as bars:
        task = bars.add_task("expressions", total=sum(len(data.expressions_of(v)) for v in todo))
        for video_id in todo:
            record = data.videos[video_id]
            expressions = data.expressions_of(video_id)
            if record.video_file is not None:
                source = open_frames(record.video_file, fps=record.fps)
                names = [frame_key(int(n)) for n in record.frame_numbers]
            else:
                source = ImageFileFrames(record.frame_paths(), fps=record.fps)
                names = list(record.frame_names)
            session = pipe.session(source)
            with session, BinaryMaskTreeWriter(tree / video_id) as writer:
                for exp in expressions:
                    result = session.ground(exp.text)
                    # the writer's folder is this video's own: expression folders go right under it
                    add_expression_masks(writer, "", exp.exp_id, result, names)
                    bars.advance(task)
                    count += 1
    elapsed = time.perf_counter() - started
    Console().print(
        f"rank {rank}: {count} expressions in {len(todo)} videos ({elapsed:.1f} s); predictions in {tree}",
        highlight=False,
    )
    if json_out is not None:
        summary = {
            "dataset": dataset,
            "split": data.split,
            "rank": rank,
            "world_size": world,
            "videos": mine,
            "predicted": todo,
            "expressions": count,
            "seconds": round(elapsed, 3),
            "out": str(tree),
        }
        write_text_atomic(json_out, json.dumps(summary, indent=2) + "\n")
