"""Inference options of :class:`~sparrow.inference.GroundingPipeline` (one frozen dataclass).

Every option has the paper's behaviour as its default (PAPER 1.1): generate the answer, prompt the
FIRST frame with the filtered ``[BOX]`` and the ``[SEG]`` embedding, let SAM2's memory propagate
(the model's ``propagation`` switch), no re-prompting, TSF only as the model's ``tsf.mode`` says.
``propagation`` and ``key_frame`` left at ``None`` take the model's saved setting
(:meth:`GroundingOptions.for_model`). Three additions, each off by default:

- ``key_frame="best"``: prompt the frame (of ``key_frame_candidates`` sampled uniformly) on which the
  targets are found with the most confidence -- for targets that appear late;
- ``reprompt=True``: when a target's object score stays at or below 0 for ``reprompt_patience``
  frames, look for it again on the following frames (every ``reprompt_every``-th) and restart the
  memory from a frame where a candidate both matches the query and looks like the target did on the
  key frame -- re-entry after occlusion;
- ``self_tsf=True``: a first pass's masklet gives the crops of the TSF tokens of a second pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sparrow.data.conversations import SEGMENT_ANSWER, SEGMENT_TEMPLATE
from sparrow.errors import ConfigError
from sparrow.models.config import KeyFrame as KeyFrameMode
from sparrow.models.config import Propagation as PropagationMode
from sparrow.models.config import SparrowConfig

AnswerMode = Literal["generate", "template"]

TEMPLATE_ANSWER = SEGMENT_ANSWER
"""The training answer of a referring question (the processor adds ``[BOX]`` when the box prompt is on)."""


@dataclass(frozen=True)
class GroundingOptions:
    """How a :class:`~sparrow.inference.GroundingPipeline` answers and tracks.

    Attributes:
        answer: ``generate`` (greedy decoding; the paper) or ``template`` (no decoding: the training
            answer ``"Sure, [BOX] [SEG]."`` is read by the LLM and its hidden states are used).
        fallback_template: with ``answer="generate"``, read the template answer when the generated
            one grounds nothing (no ``[SEG]``), so that a referring query always gets a masklet.
        max_new_tokens: decoding budget per answer.
        question_template: how a bare referring expression (a prompt that does not end with ``?``)
            is asked; ``{phrase}`` is replaced by the expression. Prompts ending with ``?`` are sent
            as they are.
        propagation: ``video`` (SAM2 memory), ``framewise`` (same prompts on every frame, no
            memory) or ``chain`` (every frame prompted with the box of the previous frame's mask, no
            memory; :meth:`SparrowModel.propagate`); ``None`` keeps the model's ``propagation`` switch.
        key_frame: ``first`` (frame 0, the paper) or ``best``; ``None`` keeps the model's ``key_frame``
            setting.
        key_frame_candidates: frames sampled uniformly (first and last included) for ``best``.
        reprompt: re-prompt a lost target (see the module docstring).
        reprompt_patience: frames with object score ``<= 0`` before a target counts as lost.
        reprompt_every: check every k-th frame while the target is lost.
        reprompt_min_score: minimum probability (sigmoid of the filtration score, or of the object
            score without the box prompt) of a re-entry candidate.
        reprompt_min_similarity: minimum cosine similarity between the candidate's SAM2 embedding
            (pooled inside its mask) and the target's on the key frame.
        self_tsf: two passes; the first pass's first masklet gives the TSF crops of the second.
            Turns TSF on for a model saved with ``tsf.mode="off"`` (the paper's stage 2): the TSF
            tokens come from its spatial encoder, trained with TSF in stage 1.
        mask_threshold: threshold on the upsampled mask logits (0: SAM2's).
        encoder_chunk: frames per batch through the SAM2 image encoder when choosing key frames.
    """

    answer: AnswerMode = "generate"
    fallback_template: bool = False
    max_new_tokens: int = 64
    question_template: str = SEGMENT_TEMPLATE
    propagation: PropagationMode | None = None
    key_frame: KeyFrameMode | None = None
    key_frame_candidates: int = 5
    reprompt: bool = False
    reprompt_patience: int = 3
    reprompt_every: int = 2
    reprompt_min_score: float = 0.5
    reprompt_min_similarity: float = 0.7
    self_tsf: bool = False
    mask_threshold: float = 0.0
    encoder_chunk: int = 8

    def __post_init__(self) -> None:
        def bad(message: str, fix: str) -> None:
            raise ConfigError(message, fix=fix)

        if self.answer not in ("generate", "template"):
            bad(f"answer={self.answer!r} is not generate or template", "use answer='generate' or 'template'")
        if self.propagation is not None and self.propagation not in get_args(PropagationMode):
            bad(
                f"propagation={self.propagation!r} is not video, framewise or chain",
                "use video, framewise or chain",
            )
        if self.key_frame is not None and self.key_frame not in get_args(KeyFrameMode):
            bad(f"key_frame={self.key_frame!r} is not first or best", "use first or best")
        for name in (
            "max_new_tokens",
            "key_frame_candidates",
            "reprompt_patience",
            "reprompt_every",
            "encoder_chunk",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(f"{name}={value!r} must be an integer >= 1", f"give {name} a positive integer")
        for name in ("reprompt_min_score", "reprompt_min_similarity"):
            value = getattr(self, name)
            if not -1.0 <= float(value) <= 1.0:
                bad(f"{name}={value!r} outside [-1, 1]", "use a value in [0, 1]")
        if "{phrase}" not in self.question_template:
            bad("question_template lacks {phrase}", "e.g. 'Can you segment {phrase} in this video?'")

    def replace(self, **changes: Any) -> GroundingOptions:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def for_model(self, config: SparrowConfig) -> GroundingOptions:
        """A copy whose ``propagation`` and ``key_frame`` are the model's settings where they are ``None``."""
        return dataclasses.replace(
            self,
            propagation=self.propagation or config.propagation,
            key_frame=self.key_frame or config.key_frame,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)
