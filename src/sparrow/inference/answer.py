"""From a prompt to grounded targets: the question, the chat prompt, the answer and its hidden states.

The answer is generated greedily (:meth:`SparrowModel.generate`) or, with ``answer="template"``,
read by the LLM as the training answer (``"Sure, [BOX] [SEG]."``) so no decoding is needed. It is
parsed with :func:`~sparrow.inference.parsing.parse_grounded_text`; the ``k``-th ``[SEG]`` of the
text maps to the ``k``-th ``[SEG]`` hidden state (``seg_ordinal``), likewise for ``[BOX]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sparrow.data.conversations import phrase_of
from sparrow.errors import ConfigError
from sparrow.models import SparrowModel
from sparrow.models.llm import decoder_hidden

from .parsing import ParsedAnswer, parse_grounded_text


@dataclass(frozen=True)
class Turn:
    """One finished exchange of a chat: the user's question and the model's raw answer."""

    question: str
    answer: str


@dataclass(frozen=True)
class Target:
    """One ``[SEG]`` of an answer with its LLM hidden states.

    Attributes:
        phrase: the grounded phrase (the referring expression for a bare ``[SEG]``).
        char_span: ``(start, end)`` of the phrase in the clean answer text, if it is in it.
        seg_hidden: ``(D,)`` hidden state of the ``[SEG]`` token.
        box_hidden: ``(D,)`` hidden state of its ``[BOX]`` token, or ``None``.
    """

    phrase: str
    char_span: tuple[int, int] | None
    seg_hidden: Tensor
    box_hidden: Tensor | None


@dataclass(frozen=True)
class Answer:
    """The model's answer to one question.

    Attributes:
        question: what was asked (after the question template).
        raw_text: the answer with its markup (``"Sure, [BOX] [SEG]."``).
        parsed: the parse of ``raw_text``.
        targets: one per usable ``[SEG]``, in order.
        template: True if the answer was read from the template instead of generated.
        warnings: parser repairs and dropped groundings.
    """

    question: str
    raw_text: str
    parsed: ParsedAnswer
    targets: tuple[Target, ...]
    template: bool
    warnings: tuple[str, ...]

    @property
    def text(self) -> str:
        """The answer without markup."""
        return self.parsed.text


def question_for(prompt: str, template: str) -> tuple[str, str]:
    """The question sent to the model and the phrase a bare ``[SEG]`` stands for.

    A prompt ending with ``?`` is a question and is sent as it is; anything else is a referring
    expression asked through ``template`` (``"Can you segment {phrase} in this video?"``).

    Raises:
        ConfigError: the prompt is empty.
    """
    text = " ".join(str(prompt).split())
    if not text:
        raise ConfigError(
            "the prompt is empty", fix='give a referring expression ("the red circle") or a question'
        )
    if text.endswith("?"):
        return text, text
    phrase = phrase_of(text)
    return template.format(phrase=phrase), phrase


def chat_prompt_ids(
    model: SparrowModel, question: str, history: Sequence[Turn] = (), *, with_tsf: bool = False
) -> list[int]:
    """Prompt ids of a (multi-turn) chat: the video and the first question in the first user turn,
    then every earlier answer and question in the model's template, ending with the assistant header.

    The oldest turns are dropped when the prompt would not leave room for an answer in the LLM's
    context.
    """
    tok = model.tokenizer
    processor = model.processor
    if tok is None:
        raise ConfigError("the model has no tokenizer", fix="load a checkpoint saved with save_pretrained")
    limit = int(getattr(model.llm.config, "max_position_embeddings", 1 << 30))
    turns = list(history)
    while True:
        first = turns[0].question if turns else question
        ids = processor.prompt_ids(first, with_tsf=with_tsf and not turns)
        for k, turn in enumerate(turns):
            nxt = turns[k + 1].question if k + 1 < len(turns) else question
            last = k + 1 == len(turns)
            ids += [*tok.encode(turn.answer), tok.ids.end, *tok.encode("\n")]
            ids += [tok.ids.user, *tok.encode("\n"), *tok.encode(nxt)]
            ids += [tok.ids.tsf] * (model.config.tsf.k if with_tsf and last else 0)
            ids += [tok.ids.end, *tok.encode("\n"), tok.ids.assistant, *tok.encode("\n")]
        if len(ids) + 8 <= limit or not turns:
            break
        turns = turns[1:]
    if len(ids) + 8 > limit:
        raise ConfigError(
            f"the prompt takes {len(ids)} tokens, the LLM's context is {limit}",
            fix="ask a shorter question",
        )
    return ids


def generate_answer(
    model: SparrowModel,
    question: str,
    phrase: str,
    video_tokens: Tensor,
    *,
    history: Sequence[Turn] = (),
    tsf_tokens: Tensor | None = None,
    max_new_tokens: int = 64,
) -> Answer:
    """Greedy answer to ``question`` over ``video_tokens`` ``(1, n_video, D)``."""
    ids = chat_prompt_ids(model, question, history, with_tsf=tsf_tokens is not None)
    limit = int(getattr(model.llm.config, "max_position_embeddings", 1 << 30))
    budget = max(1, min(max_new_tokens, limit - len(ids)))
    out = model.generate(ids, video_tokens, tsf_tokens, max_new_tokens=budget)
    return _answer(question, phrase, out.text, out.seg_hidden, out.box_hidden, template=False)


@torch.no_grad()
def read_answer(
    model: SparrowModel,
    question: str,
    phrase: str,
    answer: str,
    video_tokens: Tensor,
    *,
    history: Sequence[Turn] = (),
    tsf_tokens: Tensor | None = None,
) -> Answer:
    """The LLM reads ``answer`` (adapted to the box and phrase switches, ``phrase`` naming its
    grounding slot) after the prompt; its hidden states at the grounding tokens are taken as if it had
    generated it (one forward pass, no decoding)."""
    tok = model.tokenizer
    answer = model.processor.format_answer(answer, (phrase,))
    prompt = chat_prompt_ids(model, question, history, with_tsf=tsf_tokens is not None)
    answer_ids = tok.encode(answer)
    ids = torch.tensor([prompt + answer_ids], dtype=torch.long, device=video_tokens.device)
    embeds = model.embed_inputs(ids, video_tokens, tsf_tokens)
    hidden, _ = decoder_hidden(model.llm, embeds)
    tail = ids[0, len(prompt) :]
    states = hidden[0, len(prompt) :]
    return _answer(
        question,
        phrase,
        tok.decode(answer_ids),
        states[tail == tok.ids.seg],
        states[tail == tok.ids.box],
        template=True,
    )


def _answer(
    question: str, phrase: str, raw: str, seg_hidden: Tensor, box_hidden: Tensor, *, template: bool
) -> Answer:
    parsed = parse_grounded_text(raw)
    warnings = list(parsed.warnings)
    targets = []
    for g in parsed.groundings:
        if g.seg_ordinal >= len(seg_hidden):
            warnings.append(f"[SEG] #{g.seg_ordinal} is plain text, not the grounding token: skipped")
            continue
        box = None
        if g.box_ordinal is not None and g.box_ordinal < len(box_hidden):
            box = box_hidden[g.box_ordinal]
        targets.append(
            Target(
                phrase=g.phrase or phrase,
                char_span=g.char_span,
                seg_hidden=seg_hidden[g.seg_ordinal],
                box_hidden=box,
            )
        )
    return Answer(
        question=question,
        raw_text=raw,
        parsed=parsed,
        targets=tuple(targets),
        template=template,
        warnings=tuple(warnings),
    )
