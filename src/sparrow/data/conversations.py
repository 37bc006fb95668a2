"""Training conversations built from records (PAPER 1.4: templated QA).

- An expression becomes "Can you segment {phrase} in this video?" -> "Sure, [SEG]."
- A tube (STVG) becomes the same question with the sentence, or, for an interrogative sentence,
  "{question} Please respond with segmentation masks." -- the VideoGLaMM prompts.
- A grounded caption becomes the GCG request -> the caption with ``<p> phrase </p> [SEG]`` markup.

``Conversation.targets[k]`` grounds the k-th ``[SEG]`` of the answers; the model's chat template
puts the ``[BOX]`` token before each ``[SEG]`` and both refer to the same target.
"""

from __future__ import annotations

from collections.abc import Iterator

from .records import (
    CaptionRecord,
    Conversation,
    DatasetSplit,
    ExpressionRecord,
    GroundingTarget,
    TubeRecord,
    Turn,
    VideoRecord,
)

SEGMENT_TEMPLATE = "Can you segment {phrase} in this video?"
QUESTION_TEMPLATE = "{question} Please respond with segmentation masks."
SEGMENT_ANSWER = "Sure, [SEG]."
GCG_PROMPT = (
    "Could you please give me a detailed description of the video? Please respond with interleaved "
    "segmentation masks for the corresponding parts of the answer."
)


def phrase_of(text: str) -> str:
    """A referring text as questions and answers name it: stripped, without a final full stop."""
    return text.strip().rstrip(".").strip()


def expression_conversation(
    expression: ExpressionRecord, video: VideoRecord, template: str = SEGMENT_TEMPLATE
) -> Conversation:
    """One-target conversation asking to segment the expression's referents."""
    return Conversation(
        sample_id=f"{expression.video_id}/{expression.exp_id}",
        video=video,
        turns=(
            Turn("user", template.format(phrase=phrase_of(expression.text))),
            Turn("assistant", SEGMENT_ANSWER),
        ),
        targets=(GroundingTarget(expression.text, expression.masks, span=expression.span),),
    )


def tube_conversation(tube: TubeRecord) -> Conversation:
    """One-target conversation over a tube: boxes and span as the target (no masks)."""
    if tube.qtype == "interrogative":
        question = QUESTION_TEMPLATE.format(question=tube.sentence.strip())
    else:
        question = SEGMENT_TEMPLATE.format(phrase=phrase_of(tube.sentence))
    return Conversation(
        sample_id=tube.query_id,
        video=tube.video,
        turns=(Turn("user", question), Turn("assistant", SEGMENT_ANSWER)),
        targets=(GroundingTarget(tube.sentence, None, tube.boxes, tube.span),),
    )


def caption_conversation(caption: CaptionRecord) -> Conversation:
    """GCG conversation: the answer is the caption; one target per phrase."""
    return Conversation(
        sample_id=caption.sample_id,
        video=caption.video,
        turns=(Turn("user", GCG_PROMPT), Turn("assistant", caption.caption)),
        targets=tuple(GroundingTarget(p, m) for p, m in zip(caption.phrases, caption.masks, strict=True)),
    )


def conversations(split: DatasetSplit) -> Iterator[Conversation]:
    """Every conversation of a split: expressions, then tubes, then captions."""
    for exp in split.expressions:
        yield expression_conversation(exp, split.videos[exp.video_id])
    for tube in split.tubes:
        yield tube_conversation(tube)
    for cap in split.captions:
        yield caption_conversation(cap)
