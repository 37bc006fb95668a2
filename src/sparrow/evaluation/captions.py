"""Caption cleaning (VideoGLaMM GCG) and COCO caption metrics exactly as pycocoevalcap 1.2 computes them.

Cleaning (``specs/METRICS.md`` section 4.2), applied to the ground truth and to the prediction (one
implementation, :func:`sparrow.data.markup.clean_gcg_caption`, shared with the GCG format reader):

1. every ``"\\n"`` is deleted, then one left-to-right pass replaces each ``"  "`` (two spaces) by one;
2. only the text after the last ``"ASSISTANT: "`` is kept;
3. the phrases are the texts between ``<p>`` and ``</p>`` (non-greedy), stripped;
4. the cleaned caption is the text with every ``<...>`` tag (non-greedy) and every ``[SEG]`` removed,
   whitespace runs collapsed to one space, ``'`` stripped from both ends, then stripped.

Caption metrics (section 4.3): the references and the predictions are truncated to
:data:`MAX_CAPTION_CHARS` characters and tokenised by Stanford's PTBTokenizer (Java, the jar shipped
in pycocoevalcap; ``-preserveLines -lowerCase``, PTB punctuation tokens dropped), the references in
one Java run and the predictions in another, as ``COCOEvalCap.evaluate()`` does. Then pycocoevalcap's
own ``Bleu(4)``, ``Meteor``, ``Rouge`` and ``Cider`` scorers run on the tokens, one reference per
sample, samples keyed ``"0"``, ``"1"``, ... in input order. SPICE is never built (its constructor
downloads CoreNLP), so ``COCOEvalCap.evaluate()`` is never called.

Two deliberate differences from pycocoevalcap's Python wrapper of the tokenizer, neither of which
changes a token: the temporary input file goes to the system temporary folder instead of the
package folder (read-only installs work), and Java's ``stderr`` chatter is captured instead of
printed. If the tokenizer returns a different number of lines than it was given (which would
silently misalign captions in pycocoevalcap), :class:`~sparrow.errors.EvaluationError` is raised.

The METEOR jar takes several seconds to start (it loads a paraphrase table), so one METEOR process
is started per Python process, on first use, and reused by later calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparrow.data.markup import clean_gcg_caption
from sparrow.errors import EvaluationError

__all__ = [
    "MAX_CAPTION_CHARS",
    "CaptionScores",
    "CleanedCaption",
    "caption_metrics",
    "clean_caption",
    "java_available",
    "ptb_tokenize",
]

MAX_CAPTION_CHARS = 2000
"""VideoGLaMM truncates every reference and prediction to this many characters before scoring."""

# Tokens pycocoevalcap's PTBTokenizer wrapper drops after tokenisation.
_PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
_PTB_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
_PTB_JAR = "stanford-corenlp-3.4.1.jar"


@dataclass(frozen=True)
class CleanedCaption:
    """A caption after VideoGLaMM's cleaning: plain ``text`` and the grounded ``phrases`` in order."""

    text: str
    phrases: list[str]


def clean_caption(text: str) -> CleanedCaption:
    """Clean a raw (ground-truth or generated) GCG caption as VideoGLaMM's ``clean_caption`` does."""
    cleaned, phrases = clean_gcg_caption(text)
    return CleanedCaption(text=cleaned, phrases=phrases)


@dataclass(frozen=True)
class CaptionScores:
    """Corpus caption metrics (fractions, as pycocoevalcap returns them) and the per-sample values.

    ``bleu`` holds BLEU-1..4 (corpus level, ``closest`` reference length); ``meteor`` is the jar's
    corpus ``EVAL`` over the accumulated statistics (not the mean of ``per_sample_meteor``);
    ``rouge_l`` and ``cider`` are means of the per-sample scores. CIDEr is really CIDEr-D and depends
    on the whole corpus (document frequencies); a one-sample corpus scores 0.
    """

    bleu: tuple[float, float, float, float]
    meteor: float
    rouge_l: float
    cider: float
    per_sample_meteor: list[float]
    per_sample_rouge_l: list[float]
    per_sample_cider: list[float]

    def as_dict(self) -> dict[str, float]:
        """``{"BLEU-1": ..., "BLEU-2": ..., "BLEU-3": ..., "BLEU-4": ..., "METEOR", "ROUGE-L", "CIDEr"}``."""
        out = {f"BLEU-{i + 1}": float(v) for i, v in enumerate(self.bleu)}
        out.update({"METEOR": float(self.meteor), "ROUGE-L": float(self.rouge_l), "CIDEr": float(self.cider)})
        return out


def java_available() -> bool:
    """Whether a ``java`` executable is on ``PATH`` (the tokenizer and METEOR need it)."""
    return shutil.which("java") is not None


def _package_dir() -> Path:
    try:
        import pycocoevalcap
    except ImportError as err:
        raise EvaluationError(
            "caption metrics need pycocoevalcap, which is not installed",
            fix="install the eval extra: pip install 'sparrow-grounding[eval]' (pycocoevalcap==1.2)",
        ) from err
    return Path(pycocoevalcap.__path__[0])


def _require_java() -> None:
    if not java_available():
        raise EvaluationError(
            "caption metrics (PTB tokenizer, METEOR) need Java, and no `java` is on PATH",
            fix="install a JRE (OpenJDK 11+), or skip caption metrics (--no-captions)",
        )


def ptb_tokenize(captions: Sequence[str]) -> list[str]:
    """Tokenise captions with Stanford PTBTokenizer as pycocoevalcap 1.2 does; one Java run.

    Newlines inside a caption become spaces; the output is lower-cased, space-separated tokens with the
    PTB punctuation tokens removed (``"A man is riding a horse on the beach."`` ->
    ``"a man is riding a horse on the beach"``).
    """
    if not captions:
        return []
    _require_java()
    jar = _package_dir() / "tokenizer" / _PTB_JAR
    text = "\n".join(c.replace("\n", " ") for c in captions)
    fd, tmp_name = tempfile.mkstemp(prefix="sparrow-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode())
        proc = subprocess.run(
            ["java", "-cp", str(jar), _PTB_CLASS, "-preserveLines", "-lowerCase", tmp_name],
            capture_output=True,
            check=False,
        )
    finally:
        os.unlink(tmp_name)
    if proc.returncode != 0:
        raise EvaluationError(
            f"the PTB tokenizer (Java) failed with exit code {proc.returncode}: "
            f"{proc.stderr.decode(errors='replace').strip()[-500:]}",
            path=jar,
            fix="check the Java installation (java -version) and the pycocoevalcap install",
        )
    lines = proc.stdout.decode().split("\n")  # one line per caption, no trailing newline
    if len(lines) != len(captions):
        raise EvaluationError(
            f"the PTB tokenizer returned {len(lines)} lines for {len(captions)} captions",
            path=jar,
            fix="remove carriage returns or other line separators from the captions",
        )
    return [" ".join(w for w in line.rstrip().split(" ") if w not in _PTB_PUNCTUATION) for line in lines]


class _MeteorProcess:
    """One METEOR 1.5 jar process per Python process, started on first use (a few seconds)."""

    _lock = threading.Lock()
    _scorer: Any = None

    @classmethod
    def get(cls) -> Any:
        with cls._lock:
            if cls._scorer is None or cls._scorer.meteor_p.poll() is not None:
                _require_java()
                _package_dir()
                from pycocoevalcap.meteor.meteor import Meteor

                cls._scorer = Meteor()
            return cls._scorer


def caption_metrics(references: Sequence[str], predictions: Sequence[str]) -> CaptionScores:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr of ``predictions`` against one reference each.

    Args:
        references: one cleaned reference caption per sample.
        predictions: one cleaned predicted caption per sample, same order and length.

    Returns:
        The corpus scores and the per-sample METEOR / ROUGE-L / CIDEr values, in input order.

    Raises:
        ValueError: the two lists differ in length or are empty.
        EvaluationError: Java or pycocoevalcap is missing, or the tokenizer fails.
    """
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("caption metrics need at least one sample")
    _package_dir()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    refs = ptb_tokenize([r[:MAX_CAPTION_CHARS] for r in references])
    hyps = ptb_tokenize([p[:MAX_CAPTION_CHARS] for p in predictions])
    gts = {str(i): [r] for i, r in enumerate(refs)}
    res = {str(i): [h] for i, h in enumerate(hyps)}

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor_scorer = _MeteorProcess.get()
    meteor, meteor_each = meteor_scorer.compute_score(gts, res)
    rouge, rouge_each = Rouge().compute_score(gts, res)
    cider, cider_each = Cider().compute_score(gts, res)
    return CaptionScores(
        bleu=tuple(float(b) for b in bleu),  # type: ignore[arg-type]
        meteor=float(meteor),
        rouge_l=float(rouge),
        cider=float(cider),
        per_sample_meteor=[float(v) for v in meteor_each],
        per_sample_rouge_l=[float(v) for v in rouge_each],
        per_sample_cider=[float(v) for v in cider_each],
    )
