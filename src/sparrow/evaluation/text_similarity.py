"""Phrase similarity for the GCG recall text gate (``specs/METRICS.md`` 4.1 / 4.2).

The official recall accepts a (GT phrase, predicted phrase) pair only if the cosine of their
``bert-base-uncased`` embeddings is at least 0.5. An embedding is the mean of the last hidden states
over **all** tokens, ``[CLS]`` and ``[SEP]`` included, of the phrase tokenised alone (truncation at
512 tokens); the cosine is sklearn's (float32 rows L2-normalised, then a dot product).

Three implementations of the :class:`TextSimilarity` protocol:

- :class:`BertMeanPoolSimilarity` -- exact parity; needs a local ``bert-base-uncased`` folder
  (Hugging Face layout). Imports torch and transformers only when constructed.
- :class:`TokenCosineSimilarity` -- the offline default, **not parity**: cosine of lower-cased
  word-count vectors. Much stricter than BERT (whose cosines between short English phrases are
  usually high), so recall computed with it is lower than the official number.
- :class:`ConstantSimilarity` -- always 1.0, i.e. the text gate is off and only IoU counts (what
  SPARROW's script does when no text model is given); an upper bound of the official recall.

Every implementation has a ``name`` that the reports print next to the recall.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sparrow.errors import CheckpointError

__all__ = [
    "BertMeanPoolSimilarity",
    "ConstantSimilarity",
    "TextSimilarity",
    "TokenCosineSimilarity",
    "cosine_float32",
]


@runtime_checkable
class TextSimilarity(Protocol):
    """``sim(a, b) -> float`` between two phrases; ``name`` says which one (and whether it is parity)."""

    name: str

    def __call__(self, a: str, b: str) -> float: ...


def cosine_float32(u: np.ndarray, v: np.ndarray) -> float:
    """Cosine of two 1-D vectors computed as sklearn's ``cosine_similarity`` does on float32 rows.

    Each row is divided by its L2 norm (a zero row stays zero, giving 0), then the dot product is taken,
    all in float32.
    """
    a = np.asarray(u, dtype=np.float32)
    b = np.asarray(v, dtype=np.float32)
    na = np.float32(np.sqrt(np.dot(a, a)))
    nb = np.float32(np.sqrt(np.dot(b, b)))
    if na != 0:
        a = a / na
    if nb != 0:
        b = b / nb
    return float(np.dot(a, b))


_WORD = re.compile(r"\w+")


class TokenCosineSimilarity:
    """Cosine of lower-cased ``\\w+`` word-count vectors; 0.0 when either phrase has no word.

    Deterministic and offline. NOT parity with the official BERT similarity.
    """

    name = "token-cosine (word-count cosine; offline default, NOT parity with the official bert-base-uncased)"

    def __call__(self, a: str, b: str) -> float:
        ca = Counter(_WORD.findall(a.lower()))
        cb = Counter(_WORD.findall(b.lower()))
        if not ca or not cb:
            return 0.0
        dot = sum(n * cb[w] for w, n in ca.items())
        return dot / math.sqrt(sum(n * n for n in ca.values()) * sum(n * n for n in cb.values()))


class ConstantSimilarity:
    """Always 1.0: the recall's text gate is off and only the mask IoU decides (NOT parity)."""

    name = "iou-only (text gate off, similarity 1.0; upper bound of the official recall, NOT parity)"

    def __call__(self, a: str, b: str) -> float:
        return 1.0


class BertMeanPoolSimilarity:
    """The official GCG text similarity: mean-pooled ``bert-base-uncased`` last hidden states, cosine.

    Args:
        model_dir: a local folder with the model and tokenizer files (``config.json``, weights,
            ``vocab.txt`` / ``tokenizer.json``). Nothing is downloaded.
        device: torch device for the forward passes.
        max_length: tokenizer truncation length (official: 512).

    Embeddings are cached per phrase, so each distinct phrase is encoded once.

    Raises:
        CheckpointError: the folder is missing or cannot be loaded.
    """

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", max_length: int = 512) -> None:
        path = Path(model_dir)
        if not path.is_dir():
            raise CheckpointError(
                "BERT folder not found",
                path=path,
                fix="pass a local copy of bert-base-uncased (config.json, model weights, vocab.txt)",
            )
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self._model: Any = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"cannot load a BERT model and tokenizer ({err})",
                path=path,
                fix="pass a complete bert-base-uncased folder in Hugging Face layout",
            ) from err
        self._torch = torch
        self._device = device
        self._max_length = max_length
        self._cache: dict[str, np.ndarray] = {}
        self.name = f"bert-mean-pool ({path.name}; official parity when this is bert-base-uncased)"

    def embed(self, text: str) -> np.ndarray:
        """Mean of the last hidden states over all tokens (``[CLS]``/``[SEP]`` included): ``(hidden,)`` float32."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        inputs = self._tokenizer(text, return_tensors="pt", max_length=self._max_length, truncation=True)
        inputs = {k: v.to(self._device) for k, v in inputs.items()}
        with self._torch.no_grad():
            hidden = self._model(**inputs).last_hidden_state[0]
        emb = hidden.mean(dim=0).float().cpu().numpy()
        self._cache[text] = emb
        return emb

    def __call__(self, a: str, b: str) -> float:
        return cosine_float32(self.embed(a), self.embed(b))
