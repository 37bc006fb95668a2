"""``GroundingPipeline``: the public inference API -- a video of any length and a sentence in, masks,
boxes and spans at the original resolution out.

::

    from sparrow.inference import GroundingPipeline

    pipe = GroundingPipeline.from_pretrained("default")         # or a folder from save_pretrained
    result = pipe("clip.mp4", "the red circle that moves left")  # GroundingResult
    for frame in pipe.stream("clip.mp4", "the red circle"):      # per-frame results as they come
        ...
    with pipe.session("clip.mp4") as s:                          # several prompts, cached features
        a = s.ground("the red circle")
        b = s.ground("the blue square")

Devices: CPU unless CUDA is present (or as ``device`` says); float32 on CPU, bfloat16 (float16 where
bf16 is not supported) on CUDA unless ``dtype`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sparrow.errors import ConfigError
from sparrow.models import SparrowModel
from sparrow.structures import GroundingResult

from .frames import VideoInput, open_frames
from .model_path import resolve_model_path
from .options import GroundingOptions
from .session import GroundingSession, GroundingStream

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"``: CUDA when present, else CPU; otherwise the named device, if usable.

    Raises:
        ConfigError: CUDA asked for but not available, or an unknown device string.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"unknown device {device!r}", fix="use cpu, cuda or cuda:N") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "CUDA was asked for but torch sees no CUDA device",
            fix="use --device cpu, or install a CUDA build of torch",
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None`` / ``"auto"``: float32 on CPU, bfloat16 on CUDA (float16 without bf16 support)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return _DTYPES[str(dtype)]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}", fix="use auto, float32, bfloat16 or float16") from None


class GroundingPipeline:
    """A loaded model and the options it answers and tracks with.

    Args:
        model: a :class:`~sparrow.models.SparrowModel` (moved to ``device`` / ``dtype``, eval mode).
        options: inference options (the paper's behaviour by default).
        device: see :func:`resolve_device`.
        dtype: see :func:`resolve_dtype`.
        name: where the model came from (recorded in results).
    """

    def __init__(
        self,
        model: SparrowModel,
        options: GroundingOptions | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        name: str = "<model>",
    ) -> None:
        self.options = (options or GroundingOptions()).for_model(model.config)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if self.options.propagation != model.config.propagation:
            model.config = model.config.replace({"propagation": self.options.propagation})
        if self.options.self_tsf and model.config.tsf.mode == "off":
            # TSF tokens come from the spatial encoder and its adapter, which every model has: a model
            # whose last stage trained with TSF off (stage 2 of the paper) can still take them.
            model.config = model.config.replace({"tsf": {"mode": "train"}})
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.name = name

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path = "default",
        *,
        options: GroundingOptions | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> GroundingPipeline:
        """Load a model folder (``"default"``: the bundled model, ``sparrow.paths.bundled_model_dir()``).

        Raises:
            CheckpointError: missing folder (with how to train one), missing / corrupt files.
            ConfigError: bad device or dtype.
        """
        folder = resolve_model_path(path)
        device_ = resolve_device(device)  # fail on a bad device before loading weights
        model = SparrowModel.from_pretrained(folder)
        return cls(model, options, device=device_, dtype=dtype, name=str(folder))

    def _provenance(self) -> dict[str, str]:
        return {
            "model": self.name,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def session(self, video: VideoInput, *, fps: float | None = None) -> GroundingSession:
        """A :class:`GroundingSession` on ``video`` (any :data:`~sparrow.inference.frames.VideoInput`)."""
        return GroundingSession(self.model, open_frames(video, fps=fps), self.options)

    def __call__(
        self,
        video: VideoInput,
        prompt: str,
        *,
        fps: float | None = None,
        tsf_track: np.ndarray | None = None,
    ) -> GroundingResult:
        """Ground ``prompt`` in ``video``: answer text, and per grounded phrase a masklet over every
        frame at the original resolution (RLE masks, ``xyxy`` boxes, scores, spans)."""
        with self.session(video, fps=fps) as session:
            result = session.ground(prompt, tsf_track=tsf_track)
        result.meta.update(self._provenance())
        return result

    def stream(self, video: VideoInput, prompt: str, *, fps: float | None = None) -> GroundingStream:
        """Like :meth:`__call__`, but per frame as the video is read: iterate the returned
        :class:`~sparrow.inference.session.GroundingStream` (its ``answer`` is known at once); the
        video is closed when the iteration ends."""
        session = self.session(video, fps=fps)
        try:
            stream = session.stream(prompt)
        except BaseException:
            session.close()
            raise
        stream.meta.update(self._provenance())
        stream.close_session = True
        return stream
