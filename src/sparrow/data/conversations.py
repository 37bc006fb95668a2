"""Training conversations built from records (PAPER 1.4: templated QA).

- An expression becomes "Can you segment {phrase} in this video?" -> "Sure, [SEG]."
- A tube (STVG) becomes the same question with the sentence, or, for an interrogative sentence,
  "{question} Please respond with segmentation masks." -- the VideoGLaMM prompts.
- A grounded caption becomes the GCG request -> the caption with ``<p> phrase </p> [SEG]`` markup.
- (ours) Several expressions of one video become one question, "Can you segment {a}, {b} and {c}
  in this video?" -> "Sure, <p> a </p> [SEG], <p> b </p> [SEG] and <p> c </p> [SEG].": the
  grounding tokens of one sample then share the video and its proposals but not the referent, so
  the filtration head can only pick right by reading its query.

``Conversation.targets[k]`` grounds the k-th ``[SEG]`` of the answers; the model's chat template
puts the ``[BOX]`` token before each ``[SEG]`` and both refer to the same target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .markup import gcg_slot
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


def english_list(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def multi_expression_conversation(
    expressions: Sequence[ExpressionRecord], video: VideoRecord
) -> Conversation:
    """One conversation asking to segment several expressions of ``video`` at once; target ``k``
    is expression ``k``'s referents, named by ``<p> phrase </p>`` before its ``[SEG]``."""
    if not expressions:
        raise ValueError("a multi-expression conversation needs at least one expression")
    phrases = [phrase_of(e.text) for e in expressions]
    answer = "Sure, " + english_list([gcg_slot(p) for p in phrases]) + "."
    return Conversation(
        sample_id=f"{video.video_id}/" + "+".join(e.exp_id for e in expressions),
        video=video,
        turns=(
            Turn("user", SEGMENT_TEMPLATE.format(phrase=english_list(phrases))),
            Turn("assistant", answer),
        ),
        targets=tuple(GroundingTarget(e.text, e.masks, span=e.span) for e in expressions),
    )


def multi_expression_conversations(split: DatasetSplit, group: int = 3) -> Iterator[Conversation]:
    """The expressions (with masks) of each video of ``split``, in conversations of ``2..group``.

    A video's expressions are dealt round-robin over its distinct referent sets (``obj_ids``) before
    they are cut into groups, so the expressions of one conversation name different objects where
    the video has them; a last group of one expression is dropped (its single-expression
    conversation teaches it).
    """
    if group < 2:
        raise ValueError(f"a multi-expression conversation groups at least 2 expressions, got {group}")
    by_video: dict[str, dict[tuple[str, ...], list[ExpressionRecord]]] = {}
    for exp in split.expressions:
        if exp.masks is not None:
            by_video.setdefault(exp.video_id, {}).setdefault(tuple(sorted(exp.obj_ids)), []).append(exp)
    for video_id, referents in by_video.items():
        queues = list(referents.values())
        dealt = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
        for start in range(0, len(dealt), group):
            chunk = dealt[start : start + group]
            if len(chunk) >= 2:
                yield multi_expression_conversation(chunk, split.videos[video_id])


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
