"""Tokenizer of the SPARROW LLM: special tokens, chat template, training and storage.

The tokenizer is a ``tokenizers.Tokenizer`` (``tokenizer.json``) plus the grounding tokens
``[SEG] [BOX] <p> </p> <tsf> <video>`` and the Phi-3 style chat tokens named by
:class:`~sparrow.models.config.TemplateConfig`. Pretrained LMs bring their own ``tokenizer.json``
(the grounding tokens are added to it); the ``tiny`` preset trains a byte-level BPE on SynRef text
with :func:`train_tokenizer`.

Chat template (one turn; ``<video>`` stands for ``n_video`` placeholder ids, ``<tsf>`` for K)::

    [bos]<|user|>\\n<video>...<video>\\n{question}<tsf>...<tsf><|end|>\\n<|assistant|>\\n{answer}<|end|>\\n
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from sparrow.errors import CheckpointError
from sparrow.models.config import LLMConfig, TemplateConfig

SEG = "[SEG]"
BOX = "[BOX]"
P_OPEN = "<p>"
P_CLOSE = "</p>"
TSF = "<tsf>"
VIDEO = "<video>"
GROUNDING_TOKENS = (SEG, BOX, P_OPEN, P_CLOSE, TSF, VIDEO)
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the grounding and template tokens."""

    seg: int
    box: int
    p_open: int
    p_close: int
    tsf: int
    video: int
    user: int
    assistant: int
    end: int
    pad: int
    bos: int | None


@dataclass(frozen=True)
class EncodedExample:
    """A tokenised training example: ``input_ids`` and ``labels`` ``(L,)`` int lists.

    ``labels`` equal ``input_ids`` on the answer (and its closing ``<|end|>``) and
    :data:`IGNORE_INDEX` elsewhere.
    """

    input_ids: list[int]
    labels: list[int]


class SparrowTokenizer:
    """``tokenizers.Tokenizer`` with the grounding tokens and the chat template.

    Args:
        tokenizer: a tokenizer that already contains every special token.
        template: the chat template tokens.
    """

    def __init__(self, tokenizer: Tokenizer, template: TemplateConfig) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.ids = SpecialIds(
            seg=self._id(SEG),
            box=self._id(BOX),
            p_open=self._id(P_OPEN),
            p_close=self._id(P_CLOSE),
            tsf=self._id(TSF),
            video=self._id(VIDEO),
            user=self._id(template.user),
            assistant=self._id(template.assistant),
            end=self._id(template.end),
            pad=self._id(template.pad),
            bos=self._id(template.bos) if template.bos else None,
        )

    def _id(self, token: str) -> int:
        idx = self.tokenizer.token_to_id(token)
        if idx is None:
            raise KeyError(f"token {token!r} is not in the tokenizer")
        return idx

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (special token strings in it map to their ids; no BOS)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; grounding tokens are kept (the parser reads them), padding is dropped."""
        return self.tokenizer.decode([i for i in ids if i != self.ids.pad], skip_special_tokens=False)

    def prompt_ids(self, question: str, *, n_video: int, n_tsf: int = 0) -> list[int]:
        """The user turn and the assistant header, ready for generation."""
        ids = [self.ids.bos] if self.ids.bos is not None else []
        ids += [self.ids.user, *self.encode("\n"), *[self.ids.video] * n_video, *self.encode("\n")]
        ids += self.encode(question) + [self.ids.tsf] * n_tsf
        ids += [self.ids.end, *self.encode("\n"), self.ids.assistant, *self.encode("\n")]
        return ids

    def example(self, question: str, answer: str, *, n_video: int, n_tsf: int = 0) -> EncodedExample:
        """Prompt + answer + :meth:`tail_ids` for teacher forcing; only the answer and its ``<|end|>``
        are labelled."""
        prompt = self.prompt_ids(question, n_video=n_video, n_tsf=n_tsf)
        target = [*self.encode(answer), self.ids.end]
        tail = self.tail_ids()
        ids = prompt + target + tail
        labels = [IGNORE_INDEX] * len(prompt) + target + [IGNORE_INDEX] * len(tail)
        return EncodedExample(input_ids=ids, labels=labels)

    def tail_ids(self) -> list[int]:
        """The unlabelled ids that follow the answer's ``<|end|>`` in a training example."""
        return self.encode("\n")

    def save(self, folder: str | Path) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` (loadable by ``AutoTokenizer``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / TOKENIZER_FILE, self.tokenizer.to_str())
        t = self.template
        meta = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "pad_token": t.pad,
            "eos_token": t.end,
            "bos_token": t.bos,
            "additional_special_tokens": list(GROUNDING_TOKENS),
            "model_max_length": 1_000_000,
        }
        _atomic_write(folder / TOKENIZER_CONFIG_FILE, json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: str | Path, template: TemplateConfig) -> SparrowTokenizer:
        """Read ``tokenizer.json`` from ``folder``; the grounding/template tokens must be present.

        Raises:
            CheckpointError: the file is missing or unreadable, or lacks a special token.
        """
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(
                "tokenizer.json is missing", path=folder, fix="copy the tokenizer files into it"
            )
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
            raise CheckpointError(
                f"cannot read the tokenizer: {exc}", path=path, fix="restore the file"
            ) from exc
        try:
            return cls(tokenizer, template)
        except KeyError as exc:
            raise CheckpointError(
                f"the tokenizer lacks a special token: {exc}",
                path=path,
                fix="save it with SparrowTokenizer.save",
            ) from exc

    @classmethod
    def from_pretrained_lm(cls, folder: str | Path, template: TemplateConfig) -> SparrowTokenizer:
        """The tokenizer of a pretrained LM folder with the grounding tokens added."""
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(
                "the LM folder has no tokenizer.json", path=folder, fix="point llm.tokenizer to it"
            )
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t in GROUNDING_TOKENS]
        )
        return cls(tokenizer, template)


def special_tokens(template: TemplateConfig) -> list[str]:
    """Every special token string, pad first (id 0 in a trained tokenizer)."""
    tokens = [template.pad, template.user, template.assistant, template.end]
    if template.bos:
        tokens.append(template.bos)
    return tokens + list(GROUNDING_TOKENS)


def train_tokenizer(
    texts: Iterable[str], template: TemplateConfig, vocab_size: int = 1024
) -> SparrowTokenizer:
    """Train a byte-level BPE tokenizer on ``texts`` with every special token reserved.

    Args:
        texts: training corpus (questions, answers, captions); iterated once.
        template: the chat template whose tokens become special tokens.
        vocab_size: total vocabulary size, special tokens and the 256 byte symbols included.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens(template),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return SparrowTokenizer(tokenizer, template)


def build_tokenizer(config: LLMConfig, texts: Iterable[str] | None = None) -> SparrowTokenizer:
    """The tokenizer of a fresh model: the pretrained LM's (``llm.tokenizer``, else ``llm.path``)
    with the grounding tokens added, or one trained on ``texts`` (``llm.tokenizer_vocab_size``).

    Raises:
        ValueError: no pretrained tokenizer folder is configured and no ``texts`` were given.
    """
    folder = config.tokenizer or config.path
    if folder is not None:
        return SparrowTokenizer.from_pretrained_lm(folder, config.template)
    if texts is None:
        raise ValueError("this preset trains its tokenizer: pass the training texts (e.g. SynRef's)")
    return train_tokenizer(texts, config.template, config.tokenizer_vocab_size)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
