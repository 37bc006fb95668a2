"""Write a SynRef split on disk in the public layouts our readers use (see ``docs/synref.md``)::

    <out>/synref.json                     manifest: generator version, request, knobs, counts
    <out>/JPEGImages/<video>/<frame>.jpg  frames "00000", "00001", ...
    <out>/meta_expressions.json           MeViS layout (+ per video "objects", "height", "width";
                                          per expression "tags", "span" [start, end) or null, "kind")
    <out>/mask_dict.json                  {str(anno_id): [per-frame COCO RLE or null]} for EVERY object
    <out>/objects.json                    per object and frame: visibility, pixel counts, amodal box, centre
    <out>/qa.json                         templated question-answer pairs per video
    <out>/vidstg/<split>.json             VidSTG processed-JSON layout (one-referent expressions)
    <out>/gcg/<index:06d>/res.json        VideoGCG per-sample layout, gt_masks_<k>/mask_<t>.png (0/255)

Workers render videos in parallel and write their frames, GCG files and one small part file each;
the parent then streams the split-wide JSON files in sorted video order, one part in memory at a
time (memory does not grow with the number of videos). Anno ids are given in that order, so the
output does not depend on the number of workers. Nothing appears half-written: each JSON file and
mask PNG is written under a temporary name and renamed, each video's frame folder and GCG sample
folder is built under a temporary name and renamed whole, and so is the split folder at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sparrow.errors import ConfigError
from sparrow.io.atomic import atomic_dir, atomic_file, write_text_atomic
from sparrow.structures.boxes import box_convert
from sparrow.structures.masks import rle_encode_stack

from .language import CAPTION_QUESTION, interrogative
from .sample import GenerationRequest, VideoSample, generate_video

PARTS = ".parts"


def frame_name(t: int) -> str:
    """File stem of frame ``t``: ``00000``, ``00001``, ..."""
    return f"{t:05d}"


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _round(a: np.ndarray, digits: int = 2) -> list[Any]:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _video_part(sample: VideoSample, request: GenerationRequest) -> dict[str, Any]:
    """Everything the split-wide files need from one video (anno ids are added by the parent)."""
    scene, ck = sample.scene, sample.checker
    T, H, W = scene.frames, scene.height, scene.width
    vid = sample.video_id
    rles = [
        [r if area else None for r, area in zip(rle_encode_stack(m), ck.obs.visible_px[k], strict=True)]
        for k, m in enumerate(sample.masks)
    ]
    expressions = {
        str(i): {
            "exp": e.text,
            "obj_id": list(e.referents),
            "tags": list(e.tags),
            "span": list(e.span) if e.span is not None else None,
            "kind": e.kind,
        }
        for i, e in enumerate(sample.expressions)
    }
    meta = {"expressions": expressions, "frames": [frame_name(t) for t in range(T)], "height": H, "width": W}
    boxes = sample.track_boxes()
    objects = {}
    for obj in scene.objects:
        k = obj.obj_id
        prof = ck.profiles[k]
        objects[str(k)] = {
            **obj.attributes,
            "radius": round(obj.radius, 3),
            "depth": obj.depth,
            "motion": prof.label,  # as seen by the checker (null: not clearly one motion)
            "direction": prof.direction,
            "program": obj.motion,  # what the sampler intended
            "role": obj.role,
            "visibility": _round(ck.vis_frac[k], 3),
            "pixels": {
                "visible": ck.obs.visible_px[k].tolist(),
                "full": ck.obs.full_px[k].tolist(),
                "in_view": ck.obs.amodal_px[k].tolist(),
                "wall": ck.obs.wall_px[k].tolist(),
            },
            "amodal_box": _round(ck.obs.amodal_box[k]),
            "box": _round(boxes[k]),
            "center": _round(obj.centers, 5),  # exact: centres are multiples of 1/32
        }
    video_info = {
        "objects": objects,
        "walls": [[w.x0, w.y0, w.x1, w.y1] for w in scene.walls],
        "camera": scene.camera.tolist(),
        "caption": sample.caption.text,
    }
    xywh = box_convert(boxes, "xyxy", "xywh")
    trajectories = {
        str(k): {str(t): {"bbox": _round(xywh[k, t])} for t in range(T) if not ck.outside[k, t]}
        for k in range(len(scene.objects))
    }
    vidstg, qa = [], []
    for i, (e, tube, pairs) in enumerate(zip(sample.expressions, sample.tubes, sample.qa, strict=True)):
        qa += [dict(p, exp_id=str(i), obj_id=list(e.referents)) for p in pairs]
        if tube is None:
            continue
        entry = {
            "original_video_id": vid,
            "target_id": e.referents[0],
            "fps": request.knobs.fps,
            "width": W,
            "height": H,
            "start_frame": 0,
            "end_frame": T,
            "tube_start_frame": tube[0],
            "tube_end_frame": tube[1],
            "video_path": f"JPEGImages/{vid}",  # relative to the split folder
            "frames": meta["frames"],
            "exp_id": str(i),
        }
        vidstg.append(dict(entry, caption=e.text, qtype="declarative"))
        question = interrogative(e.query, len(scene.walls))
        if question is not None:
            vidstg.append(dict(entry, caption=question, qtype="interrogative"))
    qa.append(
        {
            "task": "caption",
            "question": CAPTION_QUESTION,
            "answer": sample.caption.text,
            "exp_id": None,
            "obj_id": [],
        }
    )
    return {
        "video_id": vid,
        "index": sample.index,
        "meta": meta,
        "rles": rles,
        "objects": video_info,
        "qa": qa,
        "vidstg": vidstg,
        "trajectories": trajectories,
        "categories": {str(o.obj_id): o.shape for o in scene.objects},
    }


def _write_gcg(sample: VideoSample, folder: Path) -> None:
    """VideoGCG per-sample layout in a fresh (staged) ``folder``: ``res.json`` and one grey 0/255 PNG
    per phrase and frame -- the same images :func:`sparrow.io.write_binary_png` writes, encoded by
    OpenCV and without a rename per file (the folder appears whole): at ~45 masks per video this is
    the largest part of the writing cost."""
    cap = sample.caption
    for k, group in enumerate(cap.groups):
        union = sample.masks[list(group)].any(axis=0).astype(np.uint8) * np.uint8(255)
        (folder / f"gt_masks_{k}").mkdir()
        for t in range(sample.scene.frames):
            if not cv2.imwrite(str(folder / f"gt_masks_{k}" / f"mask_{t}.png"), union[t]):
                raise OSError(f"cannot write {folder / f'gt_masks_{k}' / f'mask_{t}.png'}")
    res = {
        "video": sample.video_id,
        "frames": [frame_name(t) for t in range(sample.scene.frames)],
        "gt_text": cap.text,
        "gt_text_cleaned": cap.cleaned,
        "gt_phrases": list(cap.phrases),
        "gt_obj_ids": [list(g) for g in cap.groups],
    }
    (folder / "res.json").write_text(_dump(res), encoding="utf-8")


def _produce(job: tuple[GenerationRequest, int, str]) -> dict[str, Any]:
    """Worker: generate video ``index``, write its frames, GCG sample and part file."""
    request, index, root_name = job
    root = Path(root_name)
    sample = generate_video(request, index)
    # a video's frame folder appears whole (built under a temporary name, then renamed)
    with atomic_dir(root / "JPEGImages" / sample.video_id) as frames_dir:
        for t, frame in enumerate(sample.rendering.frames):
            Image.fromarray(frame).save(
                frames_dir / f"{frame_name(t)}.jpg", format="JPEG", quality=request.knobs.jpeg_quality
            )
    with atomic_dir(root / "gcg" / f"{index:06d}") as gcg_dir:
        _write_gcg(sample, gcg_dir)
    part = _video_part(sample, request)
    write_text_atomic(root / PARTS / f"{index:06d}.json", _dump(part))
    return {"index": index, "objects": len(sample.scene.objects), "expressions": len(sample.expressions)}


def _init_worker() -> None:
    cv2.setNumThreads(1)


@contextmanager
def _json_object(path: Path, prefix: str = "{", suffix: str = "}") -> Iterator[Any]:
    """Stream a JSON object (or, with ``[``/``]``, an array): ``add(key, value)`` appends
    ``"key": value`` (``value`` alone when ``key`` is None), values dumped with sorted keys."""
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        fh.write(prefix)
        first = [True]

        def add(key: str | None, value: Any) -> None:
            fh.write(
                ("" if first[0] else ", ") + ("" if key is None else json.dumps(key) + ": ") + _dump(value)
            )
            first[0] = False

        yield add
        fh.write(suffix)


def _assemble(root: Path, request: GenerationRequest, progress: Progress | None) -> dict[str, int]:
    """Stream the split-wide JSON files from the part files, in sorted video-id order."""
    order = sorted(range(request.videos), key=request.video_id)
    task = progress.add_task("writing annotations", total=len(order)) if progress else None
    anno = 0
    counts = {"videos": 0, "objects": 0, "expressions": 0, "vidstg_entries": 0}
    vidstg_dir = root / "vidstg"
    with ExitStack() as stack:
        meta = stack.enter_context(_json_object(root / "meta_expressions.json", '{"videos": {', "}}"))
        masks = stack.enter_context(_json_object(root / "mask_dict.json"))
        objects = stack.enter_context(_json_object(root / "objects.json", '{"videos": {', "}}"))
        qa = stack.enter_context(_json_object(root / "qa.json", '{"videos": {', "}}"))
        categories = stack.enter_context(_json_object(root / PARTS / "categories"))
        trajectories = stack.enter_context(_json_object(root / PARTS / "trajectories"))
        videos = stack.enter_context(_json_object(root / PARTS / "videos", "[", "]"))
        for index in order:
            part_path = root / PARTS / f"{index:06d}.json"
            part = json.loads(part_path.read_text(encoding="utf-8"))
            vid = part["video_id"]
            n_obj = len(part["rles"])
            anno_of = {str(k): anno + k for k in range(n_obj)}
            for k, rles in enumerate(part["rles"]):
                masks(str(anno + k), rles)
            entry = part["meta"]
            entry["objects"] = anno_of
            for exp in entry["expressions"].values():
                exp["anno_id"] = [anno_of[str(k)] for k in exp["obj_id"]]
            meta(vid, entry)
            for k, obj in part["objects"]["objects"].items():
                obj["anno_id"] = anno_of[k]
            objects(vid, part["objects"])
            qa(vid, part["qa"])
            categories(vid, part["categories"])
            trajectories(vid, part["trajectories"])
            for e in part["vidstg"]:
                e["video_id"] = counts["vidstg_entries"]
                counts["vidstg_entries"] += 1
                videos(None, e)
            anno += n_obj
            counts["videos"] += 1
            counts["objects"] += n_obj
            counts["expressions"] += len(entry["expressions"])
            part_path.unlink()
            if progress is not None and task is not None:
                progress.advance(task)
    # the VidSTG file: {"obj_categories": ..., "trajectories": ..., "videos": [...]} (sorted keys)
    with atomic_file(vidstg_dir / f"{request.split}.json") as tmp, tmp.open("w", encoding="utf-8") as out:
        for key, piece in (
            ("obj_categories", "categories"),
            ("trajectories", "trajectories"),
            ("videos", "videos"),
        ):
            out.write(("{" if key == "obj_categories" else ", ") + json.dumps(key) + ": ")
            with (root / PARTS / piece).open(encoding="utf-8") as src:
                shutil.copyfileobj(src, out)
        out.write("}")
    return counts


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def write_split(
    out: str | Path,
    request: GenerationRequest,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, int]:
    """Generate and write a SynRef split at ``out`` (see the module docstring for the layout).

    Args:
        out: the split folder to create.
        request: what to generate.
        workers: processes rendering videos in parallel (the files are identical for any count).
        overwrite: replace ``out`` if it exists.
        progress: show progress bars.

    Returns:
        Counts: ``videos``, ``objects``, ``expressions``, ``vidstg_entries``.

    Raises:
        ConfigError: ``out`` exists and ``overwrite`` is False, or ``workers < 1``.
    """
    out = Path(out)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if out.exists() and not overwrite:
        raise ConfigError(
            "output folder already exists", path=out, fix="pass --overwrite or choose another --out"
        )
    # spawn, not fork: a forked child inherits the parent's thread locks (OpenCV's pool, pytest-xdist,
    # the progress bar) in whatever state they are, and can hang on the first cv2 call.
    context = multiprocessing.get_context("spawn")
    with atomic_dir(out, overwrite=overwrite) as root, ExitStack() as stack:
        jobs = [(request, i, str(root)) for i in range(request.videos)]
        (root / PARTS).mkdir()
        pool = (
            stack.enter_context(context.Pool(min(workers, len(jobs)), initializer=_init_worker))
            if workers > 1
            else None
        )
        bars = stack.enter_context(_progress(progress))
        task = bars.add_task(f"rendering {request.split}", total=len(jobs))
        results = map(_produce, jobs) if pool is None else pool.imap_unordered(_produce, jobs, chunksize=1)
        for _ in results:
            bars.advance(task)
        counts = _assemble(root, request, bars)
        shutil.rmtree(root / PARTS)
        manifest = dict(request.to_dict(), counts=counts, layout=_LAYOUT)
        write_text_atomic(root / "synref.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return counts


_LAYOUT = {
    "frames": "JPEGImages/<video>/<frame>.jpg",
    "mevis": ["meta_expressions.json", "mask_dict.json"],
    "objects": "objects.json",
    "qa": "qa.json",
    "vidstg": "vidstg/<split>.json",
    "gcg": "gcg/<index:06d>/res.json, gcg/<index:06d>/gt_masks_<k>/mask_<t>.png",
}
