"""CLAIR: the official prompt, the reply parsing and retry rule, and the local stand-in judge."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparrow.errors import EvaluationError
from sparrow.evaluation.clair import (
    CLAIR_ATTEMPTS,
    ClairScore,
    CommandJudge,
    Judge,
    LexicalJudge,
    clair_prompt,
    clair_score,
    parse_clair_reply,
)

OFFICIAL_PROMPT = (
    "You are trying to tell if a candidate set of captions is describing the same image as a reference "
    "set of captions.\nCandidate set:\n- a dog runs\n\nReference set:\n- a dog is running\n- the dog\n\n"
    "On a precise scale from 0 to 100, how likely is it that the candidate set is describing the same "
    'image as the reference set? (JSON format, with a key "score", value between 0 and 100, and a key '
    '"reason" with a string value.)\n'
)


def test_prompt_is_the_official_text() -> None:
    assert clair_prompt(["a dog runs"], ["a dog is running", "the dog"]) == OFFICIAL_PROMPT


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"score": 85, "reason": "same scene"}', (85.0, "same scene")),
        ('Sure! {"score": 40} and more {"score": 90}', (40.0, "Unknown")),  # first object, default reason
        ('{"score": "72"}', (72.0, "Unknown")),
        ('{"score": 150, "reason": "x"}', (150.0, "x")),  # not clipped
        ("Score: 0.85", (85.0, "Unknown")),  # below 1 -> x100
        ("I give it 72. Reason: both show a dog", (72.0, "both show a dog")),
        ("score -5", (5.0, "Unknown")),  # the number regex ignores the sign
        ('{"reason": "no score"} 55', (55.0, '" "no score"} 55')),  # KeyError -> first number, rest of line
        (
            '{"score": 80, "nested": {"a": 1}}',
            (80.0, "Unknown"),
        ),  # cut at the first "}" -> invalid JSON -> 80
        ('{"score": "high"} but 40', (40.0, "Unknown")),  # official would crash here; we fall back
        ('{"score": null} 12 reason: weak', (12.0, "weak")),
        ("0", (0.0, "Unknown")),
        ("no number at all", None),
        ("", None),
        ('{"score": "high"}', None),
    ],
)
def test_parse_reply(reply: str, expected: tuple[float, str] | None) -> None:
    assert parse_clair_reply(reply) == expected


@given(st.text())
def test_parse_never_raises(reply: str) -> None:
    parsed = parse_clair_reply(reply)
    assert parsed is None or isinstance(parsed[0], float)


class ScriptedJudge:
    name = "scripted test judge"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.replies.pop(0)


def test_retries_then_succeeds() -> None:
    judge = ScriptedJudge(["???", "no idea", '{"score": 80, "reason": "ok"}'])
    result = clair_score(["a"], ["b"], judge)
    assert (result.score, result.reason, result.attempts) == (0.8, "ok", 3)
    assert judge.prompts == [clair_prompt(["a"], ["b"])] * 3


def test_gives_up_after_three_attempts() -> None:
    judge = ScriptedJudge(["nothing"] * 5)
    result = clair_score(["a"], ["b"], judge)
    assert (result.score, result.reason, result.attempts) == (0.0, None, CLAIR_ATTEMPTS)
    assert len(judge.prompts) == CLAIR_ATTEMPTS


def test_lexical_judge_is_deterministic_and_honest() -> None:
    judge = LexicalJudge()
    assert isinstance(judge, Judge)
    assert "not an LLM" in judge.name
    assert clair_score(["A dog runs."], ["a dog runs"], judge).score == pytest.approx(1.0)
    assert clair_score(["a cat"], ["two birds"], judge).score == 0.0
    assert clair_score([""], ["two birds"], judge).score == 0.0
    # F1 of {a, dog, runs} vs {a, dog, sleeps}: 2 * 2 / (3 + 3)
    assert clair_score(["a dog runs"], ["a dog sleeps"], judge).score == pytest.approx(2 / 3, abs=1e-6)
    assert judge(clair_prompt(["x y"], ["y z"])) == judge(clair_prompt(["x y"], ["y z"]))


def test_command_judge(tmp_path: Path) -> None:
    script = tmp_path / "judge.py"
    script.write_text(
        "import sys\nprompt = sys.stdin.read()\n"
        "if 'Candidate set:' not in prompt: sys.exit(3)\n"
        'print(\'{"score": 70, "reason": "plugged in"}\')\n'
    )
    judge = CommandJudge(f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}")
    assert judge.name.startswith("command: ") and str(script) in judge.name
    assert clair_score(["a"], ["b"], judge) == ClairScore(score=0.7, reason="plugged in", attempts=1)
    failing = CommandJudge(f"{shlex.quote(sys.executable)} -c 'import sys; sys.exit(4)'")
    with pytest.raises(EvaluationError, match="exited with 4"):
        failing("prompt")
    with pytest.raises(EvaluationError, match="could not run"):
        CommandJudge(str(tmp_path / "no-such-program"))("prompt")
    with pytest.raises(EvaluationError, match="empty"):
        CommandJudge("   ")
