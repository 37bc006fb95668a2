"""``GroundingSession``: one video, several prompts, cached features (DESIGN 3, PAPER 1.1).

A session owns the frame source of one video and caches what does not depend on the prompt: the
visual tokens of the ``T_enc`` uniformly sampled encoder frames (only those frames are decoded for
the encoder) and the SAM2 features of the key-frame candidates. Each query then

1. asks the question (a referring expression goes through the question template) and generates the
   answer -- or reads the template answer -- keeping the ``[BOX]`` / ``[SEG]`` hidden states;
2. parses the answer (:func:`~sparrow.inference.parsing.parse_grounded_text`): one target per ``[SEG]``;
3. picks the key frame (frame 0, or the most confident candidate) and makes each target's prompts
   there: proposals, filtration with the ``[BOX]`` query, the projected ``[SEG]``;
4. tracks every target with SAM2 over every frame, streaming the video, and emits one
   :class:`~.tracking.FrameResult` per frame (masks RLE-encoded at the original resolution).

:meth:`GroundingSession.stream` exposes step 4 as it happens; :meth:`GroundingSession.ground`
collects it into a :class:`~sparrow.structures.GroundingResult`; :meth:`GroundingSession.chat` keeps
a multi-turn history.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sparrow.errors import ConfigError
from sparrow.models import SparrowModel
from sparrow.models.processor import uniform_indices
from sparrow.models.sam2 import Sam2Features
from sparrow.models.tsf import crop_indices, fill_track
from sparrow.structures import GroundedPhrase, GroundingResult, Masklet
from sparrow.structures.masks import RLE

from .answer import Answer, Turn, generate_answer, question_for, read_answer
from .frames import FrameSource, SamFrames, SparseFrames, read_frames
from .options import TEMPLATE_ANSWER, GroundingOptions
from .tracking import FrameResult, TargetFrame, choose_key_frame, propagate


class GroundingStream:
    """The frames of one query as they are tracked; the answer is known before the first frame.

    Iterate it once for :class:`~.tracking.FrameResult` objects (key frame first, then forward, then
    backward from the key frame); :meth:`result` collects every frame (finishing the iteration if
    needed) into a :class:`~sparrow.structures.GroundingResult`.

    Attributes:
        answer: the parsed answer and its targets.
        key_frame: the prompted frame (a video frame number).
        prompt: the user's prompt.
    """

    def __init__(
        self,
        session: GroundingSession,
        prompt: str,
        answer: Answer,
        key_frame: int,
        frames: Iterator[FrameResult],
        meta: dict[str, Any],
    ) -> None:
        self.session = session
        self.prompt = prompt
        self.answer = answer
        self.key_frame = key_frame
        self.meta = meta
        self._frames = frames
        self._collected: dict[int, tuple[TargetFrame, ...]] = {}
        self._started = time.perf_counter()
        self._done = False
        self._result: GroundingResult | None = None
        self.close_session = False  # close the session (and its video) when the iteration ends

    @property
    def text(self) -> str:
        """The answer without markup."""
        return self.answer.text

    @property
    def phrases(self) -> list[str]:
        """The grounded phrases, one per target."""
        return [t.phrase for t in self.answer.targets]

    def __iter__(self) -> Iterator[FrameResult]:
        for frame in self._frames:
            self._collected[frame.frame_index] = frame.targets
            yield frame
        if not self._done:
            self._done = True
            self.meta["timings"]["track_s"] = round(time.perf_counter() - self._started, 4)
            if self.close_session:
                self.session.close()
            else:
                self.session._release_frames()

    def result(self) -> GroundingResult:
        """Every frame of the query as a :class:`GroundingResult` (masks, boxes, scores, spans)."""
        if self._result is not None:
            return self._result
        for _ in self:
            pass
        source = self.session.source
        n = source.num_frames
        size = source.size
        order = sorted(self._collected)
        if self.answer.targets and order != list(range(n)):
            raise RuntimeError(f"tracking covered {len(order)} of {n} frames")
        phrases = []
        for i, target in enumerate(self.answer.targets):
            per_frame = [self._collected[t][i] for t in order]
            rles: list[RLE] = [f.rle for f in per_frame]
            masklet = Masklet.from_rles(
                rles,
                np.asarray(order, dtype=np.int64),
                size,
                scores=np.asarray([f.score for f in per_frame], dtype=np.float32),
                boxes=np.stack([f.box for f in per_frame]) if per_frame else np.zeros((0, 4), np.float32),
                object_id=i,
                label=target.phrase,
            )
            phrases.append(GroundedPhrase(target.phrase, masklet, target.char_span))
            self.meta["reprompted_frames"].append(
                [t for t, f in zip(order, per_frame, strict=True) if f.reprompted]
            )
        self._result = GroundingResult(
            text=self.answer.text,
            raw_text=self.answer.raw_text,
            phrases=tuple(phrases),
            size=size,
            frame_indices=np.arange(n, dtype=np.int64),
            fps=source.fps,
            meta=self.meta,
        )
        return self._result


class GroundingSession:
    """The state of one video for any number of prompts (see the module docstring).

    Create it with :meth:`GroundingPipeline.session <sparrow.inference.GroundingPipeline.session>`;
    use it as a context manager (it closes the video).

    Args:
        model: the model (eval mode, on its device).
        source: the video's frames.
        options: how to answer and track (``None`` fields: the model's settings).
    """

    def __init__(self, model: SparrowModel, source: FrameSource, options: GroundingOptions) -> None:
        self.model = model
        self.source = source
        self.options = options.for_model(model.config)
        self.history: list[Turn] = []
        self._video_tokens: Tensor | None = None
        self._sam_frames: SamFrames | None = None
        self._features: dict[int, Sam2Features] = {}  # SAM2 features of key-frame candidates

    # -- context -------------------------------------------------------------------------------

    def __enter__(self) -> GroundingSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the video and the caches."""
        self._release_frames()
        self._video_tokens = None
        self._features.clear()
        self.source.close()

    @property
    def num_frames(self) -> int:
        return self.source.num_frames

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the original frames."""
        return self.source.size

    @property
    def device(self) -> torch.device:
        return self.model.sam2.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.sam2.pixel_mean.dtype

    # -- cached features -----------------------------------------------------------------------

    @torch.inference_mode()
    def video_tokens(self) -> Tensor:
        """Visual tokens ``(1, n_video, D)`` of the encoder frames (computed once per session)."""
        if self._video_tokens is None:
            config = self.model.config
            n = self.num_frames
            wanted = np.concatenate(
                [uniform_indices(n, config.spatial.frames), uniform_indices(n, config.temporal.frames)]
            )
            spatial, temporal = self.model.processor.encoder_inputs(SparseFrames(self.source, wanted))
            self._video_tokens = self.model.encode_video(
                spatial[None].to(self.device, self.dtype), temporal[None].to(self.device, self.dtype)
            )
        return self._video_tokens

    def _frames(self) -> SamFrames:
        if self._sam_frames is None:
            self._sam_frames = SamFrames(self.source, self.model.processor.sam_inputs)
        return self._sam_frames

    def _release_frames(self) -> None:
        if self._sam_frames is not None:
            self._sam_frames.close()
            self._sam_frames = None

    @torch.inference_mode()
    def tsf_tokens(self, boxes: np.ndarray) -> Tensor:
        """TSF tokens ``(1, K, D)`` from a track: ``boxes`` ``(T, 4)`` ``xyxy`` pixels, one per frame
        (NaN or empty where unknown: the previous box is reused, else the whole frame -- the training
        rule). Up to ``tsf.max_crops`` frames spread uniformly are decoded and cropped (PAPER 1.2).

        Raises:
            ConfigError: ``boxes`` is not ``(T, 4)``.
        """
        boxes = np.asarray(boxes, dtype=np.float32)
        if boxes.shape != (self.num_frames, 4):
            raise ConfigError(
                f"a TSF track needs one xyxy box per frame, ({self.num_frames}, 4), got {boxes.shape}",
                fix="give a (T, 4) array of boxes (NaN where the target is not known)",
            )
        idx = crop_indices(self.num_frames, self.model.config.tsf.max_crops)
        track = fill_track(boxes, self.size)
        crops = self.model.processor.tsf_crops(read_frames(self.source, idx), track[idx])
        return self.model.tsf_tokens(crops[None].to(self.device, self.dtype))

    # -- queries -------------------------------------------------------------------------------

    @torch.inference_mode()
    def answer(
        self, prompt: str, *, history: Sequence[Turn] = (), tsf_tokens: Tensor | None = None
    ) -> Answer:
        """The model's answer to ``prompt`` (steps 1-2 of the module docstring)."""
        opts = self.options
        question, phrase = question_for(prompt, opts.question_template)
        video = self.video_tokens()
        if opts.answer == "template":
            return read_answer(
                self.model, question, phrase, TEMPLATE_ANSWER, video, history=history, tsf_tokens=tsf_tokens
            )
        answer = generate_answer(
            self.model,
            question,
            phrase,
            video,
            history=history,
            tsf_tokens=tsf_tokens,
            max_new_tokens=opts.max_new_tokens,
        )
        if not answer.targets and opts.fallback_template:
            forced = read_answer(
                self.model, question, phrase, TEMPLATE_ANSWER, video, history=history, tsf_tokens=tsf_tokens
            )
            note = f"the generated answer {answer.raw_text!r} grounds nothing: the template answer was read"
            return Answer(
                question, forced.raw_text, forced.parsed, forced.targets, True, (*answer.warnings, note)
            )
        return answer

    def stream(
        self, prompt: str, *, tsf_track: np.ndarray | None = None, history: Sequence[Turn] = ()
    ) -> GroundingStream:
        """Answer ``prompt`` and track its targets lazily (iterate the returned stream).

        Args:
            prompt: a referring expression or a question.
            tsf_track: ``(T, 4)`` ``xyxy`` pixel boxes of the target on every frame, for TSF tokens at
                inference (PAPER 1.2, "externally supplied boxes"); needs ``tsf.mode != "off"``.
            history: earlier turns of a chat.

        With ``self_tsf`` (or a ``train+infer`` model and no track) a first pass is run in full and
        its first masklet gives the track of the second pass, which is the one streamed.
        """
        started = time.perf_counter()
        meta: dict[str, Any] = {"prompt": prompt, "warnings": [], "timings": {}}
        tsf = None
        mode = self.model.config.tsf.mode
        if tsf_track is not None:
            if mode == "off":
                meta["warnings"].append("the model has tsf.mode 'off': the TSF track was not used")
            else:
                tsf = self.tsf_tokens(tsf_track)
        elif mode != "off" and (self.options.self_tsf or mode == "train+infer"):
            first = self._query(
                prompt, None, history, {"prompt": prompt, "warnings": [], "timings": {}}
            ).result()
            meta["self_tsf_first_pass"] = {"text": first.text, "raw_text": first.raw_text}
            if first.phrases and first.phrases[0].masklet.presence.any():
                tsf = self.tsf_tokens(first.phrases[0].masklet.boxes)  # zeros where absent
            else:
                meta["warnings"].append("self-TSF: the first pass found no target; no TSF tokens")
        meta["timings"]["prepare_s"] = round(time.perf_counter() - started, 4)
        return self._query(prompt, tsf, history, meta)

    def ground(
        self, prompt: str, *, tsf_track: np.ndarray | None = None, history: Sequence[Turn] = ()
    ) -> GroundingResult:
        """Answer ``prompt`` and track every target over every frame (see :meth:`stream`)."""
        return self.stream(prompt, tsf_track=tsf_track, history=history).result()

    def chat(self, message: str) -> GroundingResult:
        """One turn of a multi-turn chat: earlier questions and answers are part of the prompt."""
        result = self.ground(message, history=self.history)
        self.remember(result)
        return result

    def remember(self, result: GroundingResult) -> None:
        """Append a finished query (its question and raw answer) to the chat history."""
        self.history.append(Turn(result.meta["question"], result.raw_text))

    def reset_chat(self) -> None:
        """Forget the chat history (the cached video features stay)."""
        self.history.clear()

    # -- internals -----------------------------------------------------------------------------

    @torch.inference_mode()
    def _query(
        self, prompt: str, tsf: Tensor | None, history: Sequence[Turn], meta: dict[str, Any]
    ) -> GroundingStream:
        started = time.perf_counter()
        answer = self.answer(prompt, history=history, tsf_tokens=tsf)
        meta["timings"]["answer_s"] = round(time.perf_counter() - started, 4)
        meta.update(
            question=answer.question,
            template_answer=answer.template,
            tsf_tokens=tsf is not None,
            options=self.options.to_dict(),
            reprompted_frames=[],
        )
        meta["warnings"].extend(answer.warnings)
        frames = self._frames()
        key_frame = 0
        iterator: Iterator[FrameResult] = iter(())
        if answer.targets:
            started = time.perf_counter()
            key_frame, prompts, features = choose_key_frame(
                self.model, frames, answer.targets, self.options, self._features
            )
            meta["timings"]["key_frame_s"] = round(time.perf_counter() - started, 4)
            meta["key_frame"] = key_frame
            meta["key_confidence"] = [round(p.confidence, 6) for p in prompts]
            iterator = propagate(
                self.model,
                frames,
                key_frame,
                prompts,
                answer.targets,
                features,
                self.size,
                self.options,
            )
        else:
            meta["key_frame"] = None
            meta["warnings"].append("the answer has no [SEG]: nothing was tracked")
        return GroundingStream(self, prompt, answer, key_frame, iterator, meta)
