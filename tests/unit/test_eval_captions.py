"""Caption cleaning and the pycocoevalcap caption metrics (golden values of METRICS.md 4.3)."""

from __future__ import annotations

import pytest

from sparrow.evaluation import captions as captions_module
from sparrow.evaluation.captions import (
    MAX_CAPTION_CHARS,
    caption_metrics,
    clean_caption,
    java_available,
    ptb_tokenize,
)

needs_java = pytest.mark.skipif(not java_available(), reason="caption metrics need Java")

REFS = ["A man is riding a horse on the beach.", "Two dogs play with a red ball in the park."]
HYPS = ["A man rides a horse on a beach.", "Two dogs are playing with a ball."]
LONG = "a long caption about a dog " * 100  # 2,700 characters


@needs_java
def test_tokenizer_example() -> None:
    assert ptb_tokenize(["A man is riding a horse on the beach."]) == ["a man is riding a horse on the beach"]
    # Empty captions keep their line; newlines inside a caption become spaces; quotes are dropped.
    assert ptb_tokenize(["", 'He said "Hi!"\nthere', ""]) == ["", "he said hi there", ""]


@needs_java
def test_golden_caption_metrics() -> None:
    # One test function for every METEOR-backed check: the jar starts once per process (seconds),
    # and pytest-xdist may send separate tests to separate workers.
    s = caption_metrics(REFS, HYPS)
    assert s.meteor == pytest.approx(0.360562, abs=5e-7)  # corpus EVAL ...
    assert sum(s.per_sample_meteor) / 2 == pytest.approx(0.36429, abs=5e-6)  # ... not the mean
    assert s.per_sample_meteor == pytest.approx([0.427167, 0.301413], abs=5e-7)
    assert s.cider == pytest.approx(2.521820, abs=5e-7)
    assert s.per_sample_cider == pytest.approx([3.169403, 1.874238], abs=5e-7)
    assert s.rouge_l == pytest.approx(0.634283, abs=5e-7)
    assert s.bleu[:3] == pytest.approx((0.561681, 0.406773, 0.225857), abs=5e-7)
    assert s.bleu[3] == pytest.approx(3.1467e-05, rel=1e-4)
    assert s.as_dict() == {
        "BLEU-1": s.bleu[0],
        "BLEU-2": s.bleu[1],
        "BLEU-3": s.bleu[2],
        "BLEU-4": s.bleu[3],
        "METEOR": s.meteor,
        "ROUGE-L": s.rouge_l,
        "CIDEr": s.cider,
    }
    # CIDEr-D depends on the corpus: two identical pairs score 10 each, a one-sample corpus 0.
    pairs = ["a cat sits on a mat", "a dog runs in the park"]
    assert caption_metrics(pairs, pairs).per_sample_cider == pytest.approx([10.0, 10.0])
    single = caption_metrics(pairs[:1], pairs[:1])
    assert single.cider == 0.0
    assert single.meteor == pytest.approx(1.0)


def test_captions_truncated_to_2000_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_tokenize(captions: list[str]) -> list[str]:
        seen.append(list(captions))
        raise RuntimeError("stop before the scorers")

    monkeypatch.setattr(captions_module, "ptb_tokenize", fake_tokenize)
    with pytest.raises(RuntimeError, match="stop"):
        caption_metrics([LONG, "short"], ["x", LONG + "tail"])
    assert seen == [[LONG[:MAX_CAPTION_CHARS], "short"]]
    assert len(LONG) > MAX_CAPTION_CHARS == 2000


def test_length_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="references"):
        caption_metrics(["a"], ["a", "b"])


@pytest.mark.parametrize(
    ("raw", "text", "phrases"),
    [
        ("USER: hi ASSISTANT: A <p>red car</p> [SEG] drives.", "A red car drives.", ["red car"]),
        (
            "x ASSISTANT: y ASSISTANT: <p> a dog </p>[SEG] and <p>a cat</p> [SEG]",
            "a dog and a cat",
            ["a dog", "a cat"],
        ),
        ("'The man\nwalks.'", "The manwalks.", []),  # newlines deleted, then quotes stripped
        ("<p>a   b</p>", "a b", ["a  b"]),  # one pass of "  " -> " " inside phrases
        ("<s>text</s> <unk>", "text", []),
        ("", "", []),
    ],
)
def test_clean_caption(raw: str, text: str, phrases: list[str]) -> None:
    cleaned = clean_caption(raw)
    assert cleaned.text == text
    assert cleaned.phrases == phrases
