"""VideoGCG per-sample folders (VideoGLaMM ``eval_gcg_infer.py`` layout, METRICS 4.2).

::

    <root>/<idx:06d>/res.json                 {"gt_text", "gt_text_cleaned", "gt_phrases",
                                               "pred_text", "pred_text_cleaned", "pred_phrases"}
    <root>/<idx:06d>/img_frames/frame_<t>.jpg
    <root>/<idx:06d>/gt_masks_<k>/mask_<t>.png     uint8 0/255, phrase k, frame t
    <root>/<idx:06d>/pred_masks_<k>/mask_<t>.png

The ground truth half (``gt_*`` keys and folders) is what the reader returns; ``pred_*`` keys stay in
``extra``. The frames of a sample are, in this order:

- ``img_frames/frame_<t>.jpg`` when that folder exists (T = its number of images, as VideoGLaMM counts);
- else, when ``res.json`` has ``"video"`` (a string) and ``"frames"`` (a list of frame names), the frame
  folder ``<root>/../JPEGImages/<video>/<frame>.jpg`` (SynRef: ``<split>/gcg/<idx>/`` beside
  ``<split>/JPEGImages/``), T = ``len(frames)``;
- else T = the number of ``gt_masks_0`` files (frames ``img_frames/frame_<t>.jpg``, absent).

``root`` may also be the folder that holds ``video_gcg/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.io.frame_folder import natural_key
from sparrow.io.mask_files import write_binary_png

from ..issues import Issues, strict_issues
from ..markup import clean_gcg_caption
from ..mask_sources import BinaryPngMasks
from ..records import CaptionRecord, DatasetSplit, VideoRecord, frame_numbers_from_names
from .common import TreeWriter, json_object, place_jpeg, read_json

_SAMPLE = re.compile(r"^\d+$")
_GT_KEYS = {"gt_text", "gt_text_cleaned", "gt_phrases"}


def _samples_root(root: Path) -> Path:
    if (
        root.is_dir()
        and not any(_SAMPLE.match(p.name) for p in root.iterdir() if p.is_dir())
        and (root / "video_gcg").is_dir()
    ):
        return root / "video_gcg"
    return root


def _count(folder: Path, pattern: re.Pattern[str]) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted((p.stem for p in folder.iterdir() if pattern.match(p.name)), key=natural_key)


_FRAME = re.compile(r"^frame_\d+\.jpg$")
_MASK = re.compile(r"^mask_\d+\.png$")


def _sample_video(folder: Path, res: dict[str, Any], frames_root: Path) -> VideoRecord:
    """The frames of one sample folder (rules in the module docstring); lists one folder at most."""
    frames = _count(folder / "img_frames", _FRAME)
    video, names = res.get("video"), res.get("frames")
    if (
        not frames
        and isinstance(video, str)
        and isinstance(names, list)
        and all(isinstance(n, str) for n in names)
    ):
        return VideoRecord(
            folder.name, tuple(names), frame_numbers_from_names(names), frames_root / video, ".jpg"
        )
    num = len(frames) if frames else len(_count(folder / "gt_masks_0", _MASK))
    names = tuple(f"frame_{t}" for t in range(num))
    return VideoRecord(folder.name, names, tuple(range(num)), folder / "img_frames", ".jpg")


def read_videogcg(root: str | Path, split: str = "val", *, issues: Issues | None = None) -> DatasetSplit:
    """Index VideoGCG sample folders (ground-truth side); one :class:`CaptionRecord` per folder.

    Frames come from ``img_frames/``, else from SynRef's ``"video"``/``"frames"`` keys (a folder of
    ``<root>/../JPEGImages``), else are counted from ``gt_masks_0`` (module docstring).
    """
    sink = strict_issues(issues)
    root = _samples_root(Path(root))
    if not root.is_dir():
        sink.report("missing-file", root, "VideoGCG sample folder not found")
        return DatasetSplit("videogcg", split, root, {})
    videos: dict[str, VideoRecord] = {}
    captions: list[CaptionRecord] = []
    files: list[Path] = []
    for folder in sorted(
        (p for p in root.iterdir() if p.is_dir() and _SAMPLE.match(p.name)), key=lambda p: int(p.name)
    ):
        res_path = folder / "res.json"
        files.append(res_path)
        data = read_json(res_path, sink)
        res = json_object(data, None, res_path, sink, "the sample's texts") if data is not None else None
        if res is None:
            continue
        text = res.get("gt_text")
        if not isinstance(text, str):
            sink.report("bad-entry", res_path, "needs a 'gt_text' string")
            continue
        cleaned, parsed = clean_gcg_caption(text)
        phrases = res.get("gt_phrases", parsed)
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            sink.report("bad-entry", res_path, "'gt_phrases' must be a list of strings")
            continue
        video = _sample_video(folder, res, root.parent / "JPEGImages")
        num = video.num_frames
        masks = []
        for k in range(len(phrases)):
            mask_dir = folder / f"gt_masks_{k}"
            masks.append(
                BinaryPngMasks([[mask_dir / f"mask_{t}.png"] for t in range(num)])
                if mask_dir.is_dir()
                else None
            )
        videos[folder.name] = video
        captions.append(
            CaptionRecord(
                sample_id=folder.name,
                video=video,
                caption=text,
                caption_cleaned=str(res.get("gt_text_cleaned", cleaned)),
                phrases=tuple(phrases),
                masks=tuple(masks),
                extra={k: v for k, v in res.items() if k not in _GT_KEYS},
            )
        )
    return DatasetSplit("videogcg", split, root, videos, captions=tuple(captions), files=tuple(files))


class GcgWriter(TreeWriter):
    """Writes VideoGCG prediction folders ``<out>/<idx:06d>/`` (``res.json`` + ``pred_masks_<k>/``).

    With ``gt`` given, the folder is completed with the ground-truth half (``gt_*`` keys,
    ``gt_masks_<k>/`` and ``img_frames/``), so VideoGLaMM-style evaluators can read it alone.
    """

    def __init__(self, out: str | Path, *, overwrite: bool = False) -> None:
        super().__init__(out, overwrite=overwrite)

    def add(
        self, idx: int, pred_text: str, pred_masks: Sequence[np.ndarray], *, gt: CaptionRecord | None = None
    ) -> None:
        """Write one sample.

        Args:
            idx: the sample's index (folder ``{idx:06d}``).
            pred_text: the model's answer with ``<p> phrase </p> [SEG]`` markup.
            pred_masks: one bool ``(T, H, W)`` per ``[SEG]``, in order.
            gt: the sample's ground truth, to copy beside the prediction.
        """
        folder = self.dir / f"{int(idx):06d}"
        folder.mkdir(parents=True, exist_ok=True)
        cleaned, phrases = clean_gcg_caption(pred_text)
        res: dict[str, object] = {}
        if gt is not None:
            res.update(gt_text=gt.caption, gt_text_cleaned=gt.caption_cleaned, gt_phrases=list(gt.phrases))
            self._write_masks(folder, "gt_masks", gt.load_masks())
            frames_dir = folder / "img_frames"
            for t in range(gt.video.num_frames):
                src = gt.video.frame_path(t)
                if src.is_file():
                    place_jpeg(src, frames_dir / f"frame_{t}.jpg", "copy")
        res.update(pred_text=pred_text, pred_text_cleaned=cleaned, pred_phrases=phrases)
        self._write_masks(folder, "pred_masks", pred_masks)
        with open(folder / "res.json", "w", encoding="utf-8") as f:
            json.dump(res, f)

    @staticmethod
    def _write_masks(folder: Path, prefix: str, masks: Sequence[np.ndarray]) -> None:
        for k, stack in enumerate(masks):
            stack = np.asarray(stack, dtype=bool)
            if stack.ndim != 3:
                raise ValueError(f"{prefix} {k}: masks must be (T, H, W), got {stack.shape}")
            for t, mask in enumerate(stack):
                write_binary_png(folder / f"{prefix}_{k}" / f"mask_{t}.png", mask, value=255)
