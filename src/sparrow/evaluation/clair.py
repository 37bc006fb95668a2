"""CLAIR (LLM-judged caption similarity) behind a pluggable :class:`Judge` (``specs/METRICS.md`` 4.4).

The prompt text and the reply parsing are those of the official CLAIR (DavidMChan/clair), which
VideoGLaMM's ``utils/clair.py`` reuses unchanged:

- the prompt lists the candidate captions as ``"- c"`` lines, then the reference captions as
  ``"- t"`` lines, and asks for a 0-100 likelihood as JSON with keys ``"score"`` and ``"reason"``;
- parsing: the text from the first ``{`` to the next ``}`` is read as JSON and ``score`` (and
  ``reason``, default ``"Unknown"``) taken from it; if that fails, the first number in the reply
  (regex ``\\d*\\.?\\d+``, so a minus sign is ignored) is the score, times 100 when below 1, and the
  reason is the rest of the line after the word "reason" (case-insensitive), else ``"Unknown"``;
  if there is no number either, the judge is asked again, up to 3 attempts in all, and then the
  score is 0 and the reason ``None``;
- the returned score is ``score / 100`` (not clipped).

One difference: when the JSON parses but ``score`` is not a number (``"score": "high"``,
``"score": null``) the official code raises (``float()`` fails outside its ``except``); here that
reply falls through to the first-number rule like any other unparseable JSON.

VideoGLaMM calls the judge once per sample with one candidate (the cleaned prediction) and one
reference (the cleaned ground truth), both truncated to 2,000 characters, and averages the scores.
Its judge is OpenAI ``gpt-3.5-turbo`` with the system message "You are a helpful assistant.",
temperature 0.5 and ``max_tokens`` 100, so published CLAIR numbers are not reproducible.

A :class:`Judge` is anything with a ``name`` and a ``__call__(prompt) -> reply``. This module ships:

- :class:`LexicalJudge`, a deterministic local stand-in for tests and offline runs. It is **not an
  LLM**: its scores are a word-overlap F1 and are not comparable to published CLAIR numbers; its name
  says so and is reported next to every score;
- :class:`CommandJudge`, which pipes the prompt into an external command and reads the reply from
  its standard output -- the way to plug in a real model (a script calling an API or a local LLM).
  Its name is the command line, so reports say exactly what judged.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sparrow.errors import EvaluationError

__all__ = [
    "CLAIR_ATTEMPTS",
    "CLAIR_PROMPT",
    "ClairScore",
    "CommandJudge",
    "Judge",
    "LexicalJudge",
    "clair_prompt",
    "clair_score",
    "parse_clair_reply",
]

CLAIR_PROMPT = (
    "You are trying to tell if a candidate set of captions is describing the same image as a reference set "
    "of captions.\n"
    "Candidate set:\n"
    "{candidate_statements}\n"
    "Reference set:\n"
    "{target_statements}\n"
    "On a precise scale from 0 to 100, how likely is it that the candidate set is describing the same image "
    'as the reference set? (JSON format, with a key "score", value between 0 and 100, and a key "reason" '
    "with a string value.)\n"
)
"""The official CLAIR prompt template (placeholders filled by :func:`clair_prompt`)."""

CLAIR_ATTEMPTS = 3
"""Judge calls per sample before giving up with score 0 (official)."""

_NUMBER = re.compile(r"\d*\.?\d+")
_REASON = re.compile(r"(?i)reason.*")


@runtime_checkable
class Judge(Protocol):
    """A caption judge: takes the CLAIR prompt, returns the model's reply text.

    ``name`` identifies the judge (model and settings) in every report.
    """

    name: str

    def __call__(self, prompt: str) -> str: ...


def clair_prompt(candidates: Sequence[str], targets: Sequence[str]) -> str:
    """The official CLAIR prompt for candidate and reference captions."""
    return CLAIR_PROMPT.format(
        candidate_statements="".join(f"- {c}\n" for c in candidates),
        target_statements="".join(f"- {t}\n" for t in targets),
    )


def parse_clair_reply(reply: str) -> tuple[float, str] | None:
    """Score (0-100 scale, as the judge gave it) and reason from a reply; ``None`` if unparseable.

    ``None`` means the official code would ask the judge again.
    """
    try:
        parsed = "{" + reply.split("{")[1].split("}")[0] + "}"
        data = json.loads(parsed)
        score = float(data["score"])
        reason = data.get("reason", "Unknown")
        return score, reason
    except (ValueError, TypeError, KeyError, IndexError):  # JSONDecodeError is a ValueError
        numbers = _NUMBER.findall(reply)
        if not numbers:
            return None
        score = float(numbers[0])
        if score < 1:
            score *= 100
        found = _REASON.findall(reply)
        reason = found[0].strip()[len("reason") :].replace(":", "").strip() if found else "Unknown"
        return score, reason


@dataclass(frozen=True)
class ClairScore:
    """One CLAIR result: ``score`` in [0, 1] for a sane judge (``judge score / 100``), the judge's
    ``reason`` (``None`` after all attempts failed) and the number of judge calls made."""

    score: float
    reason: str | None
    attempts: int


def clair_score(
    candidates: Sequence[str], targets: Sequence[str], judge: Judge, *, attempts: int = CLAIR_ATTEMPTS
) -> ClairScore:
    """CLAIR of candidate captions against reference captions with ``judge`` (official retry rule)."""
    prompt = clair_prompt(candidates, targets)
    for attempt in range(1, attempts + 1):
        parsed = parse_clair_reply(judge(prompt))
        if parsed is not None:
            score, reason = parsed
            return ClairScore(score=score / 100, reason=reason, attempts=attempt)
    return ClairScore(score=0.0, reason=None, attempts=attempts)


_WORD = re.compile(r"\w+")


def _statements(prompt: str, start: str, end: str) -> list[str]:
    _, sep, rest = prompt.partition(start)
    if not sep:
        return []
    body = rest.split(end, 1)[0]
    return [line[2:] for line in body.split("\n") if line.startswith("- ")]


class LexicalJudge:
    """Deterministic local stand-in for the CLAIR LLM judge (tests, offline runs). NOT an LLM.

    It reads the candidate and reference statements back out of the CLAIR prompt and replies with
    JSON whose ``score`` is 100 x the F1 of the lower-cased word multisets (``\\w+`` tokens) of all
    candidates against all references (0 when either side has no words). Deterministic and cheap;
    not comparable to published (GPT-judged) CLAIR numbers.
    """

    name = "lexical-f1 (deterministic local stand-in for the CLAIR LLM judge; not an LLM, not comparable to published CLAIR)"

    def __call__(self, prompt: str) -> str:
        cands = _statements(prompt, "Candidate set:\n", "\nReference set:\n")
        refs = _statements(prompt, "Reference set:\n", "\nOn a precise scale")
        c = Counter(w for s in cands for w in _WORD.findall(s.lower()))
        r = Counter(w for s in refs for w in _WORD.findall(s.lower()))
        overlap = sum((c & r).values())
        n_c, n_r = sum(c.values()), sum(r.values())
        f1 = 0.0 if overlap == 0 else 2 * overlap / (n_c + n_r)
        return json.dumps({"score": round(100 * f1, 4), "reason": f"word-overlap F1 {f1:.4f}"})


class CommandJudge:
    """A judge that runs ``command`` once per prompt: prompt on stdin, reply read from stdout.

    Args:
        command: a shell-style command line (split with :func:`shlex.split`, run without a shell),
            e.g. ``"python ask_llm.py --model gpt-3.5-turbo --temperature 0.5"``.
        timeout: seconds allowed per call.

    Raises (on call):
        EvaluationError: the command cannot be started, fails, or times out.
    """

    def __init__(self, command: str, *, timeout: float = 300.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise EvaluationError(
                "the judge command is empty", fix="pass a command that reads a prompt on stdin"
            )
        self.timeout = timeout
        self.name = f"command: {command}"

    def __call__(self, prompt: str) -> str:
        fix = "check that the command reads the prompt on stdin and prints the reply on stdout"
        try:
            proc = subprocess.run(
                self.argv, input=prompt, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise EvaluationError(f"judge command {self.argv[0]!r} could not run: {err}", fix=fix) from err
        if proc.returncode != 0:
            raise EvaluationError(
                f"judge command {self.argv[0]!r} exited with {proc.returncode}: {proc.stderr.strip()[-300:]}",
                fix=fix,
            )
        return proc.stdout
