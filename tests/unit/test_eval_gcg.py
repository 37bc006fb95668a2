"""GCG mask metrics (greedy mIoU, recall early stop, volume IoU, AP50), text similarity, and
``evaluate_gcg`` on small official-layout folders (METRICS.md 4.1-4.2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparrow.errors import CheckpointError, DataFormatError
from sparrow.evaluation.gcg import evaluate_gcg, read_gcg_side
from sparrow.evaluation.gcg_metrics import (
    greedy_miou,
    mask_ap50,
    match_phrases,
    pack_volume,
    volume_iou_matrix,
)
from sparrow.evaluation.text_similarity import (
    BertMeanPoolSimilarity,
    ConstantSimilarity,
    TextSimilarity,
    TokenCosineSimilarity,
    cosine_float32,
)
from sparrow.io.mask_files import write_binary_png
from sparrow.structures.masks import rle_encode

H = W = 20


def box_mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def write_gcg_sample(
    root: Path,
    idx: int,
    prefix: str,
    text: str | None,
    objects: list[list[np.ndarray]],
    *,
    extra: dict | None = None,
) -> Path:
    """One VideoGLaMM sample folder: ``res.json`` with ``<prefix>_text`` and ``<prefix>_masks_<k>/mask_<t>.png``."""
    folder = root / f"{idx:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    res_path = folder / "res.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    if text is not None:
        res[f"{prefix}_text"] = text
    res.update(extra or {})
    res_path.write_text(json.dumps(res))
    for k, frames in enumerate(objects):
        for t, mask in enumerate(frames):
            write_binary_png(folder / f"{prefix}_masks_{k}" / f"mask_{t}.png", mask)
    return folder


# --------------------------------------------------------------------------------------------------
# Pure metric functions


def test_greedy_miou_is_greedy_and_does_not_penalise_unmatched() -> None:
    assert greedy_miou(np.array([[0.8, 0.0], [0.0, 0.3]])) == pytest.approx(0.55)
    # Greedy takes 0.9 first, which leaves only a 0 pair: 0.9, not the optimal (0.8 + 0.85) / 2.
    assert greedy_miou(np.array([[0.9, 0.8], [0.85, 0.0]])) == pytest.approx(0.9)
    # Two extra predictions and one extra GT are ignored.
    assert greedy_miou(np.array([[0.6, 0.0], [0.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.6)
    assert greedy_miou(np.zeros((0, 3))) == 0.0
    assert greedy_miou(np.zeros((2, 2))) == 0.0


def test_recall_stops_at_the_first_inadmissible_pair() -> None:
    ious = np.array([[0.9, 0.0], [0.0, 0.7]])  # (gt, pred)
    text = {(0, 0): 0.1, (1, 1): 1.0}
    calls: list[tuple[int, int]] = []

    def sim(i: int, j: int) -> float:
        calls.append((i, j))
        return text.get((i, j), 0.0)

    # The best pair has dissimilar text: the loop stops and the good (1, 1) pair is never matched.
    assert match_phrases(ious, sim) == []
    assert calls == [(0, 0)]
    text[(0, 0)] = 0.9
    assert match_phrases(ious, sim) == [(0, 0), (1, 1)]
    assert match_phrases(ious, sim, eager=True) == [(0, 0), (1, 1)]
    # IoU below 0.5 stops too, and so does an IoU of exactly 0.4999.
    assert match_phrases(np.array([[0.4999]]), lambda i, j: 1.0) == []
    assert match_phrases(np.array([[0.5]]), lambda i, j: 0.5) == [(0, 0)]
    with pytest.raises(ValueError):
        match_phrases(ious, sim, iou_threshold=0.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 4), st.integers(0, 4), st.randoms(use_true_random=False))
def test_lazy_and_eager_matching_agree(n_gt: int, n_pred: int, rnd) -> None:
    ious = np.array(
        [[rnd.choice([0.0, 0.3, 0.5, 0.6, 0.9]) for _ in range(n_pred)] for _ in range(n_gt)]
    ).reshape(n_gt, n_pred)
    sims = {(i, j): rnd.choice([0.2, 0.5, 0.8]) for i in range(n_gt) for j in range(n_pred)}
    lazy = match_phrases(ious, lambda i, j: sims[i, j])
    assert lazy == match_phrases(ious, lambda i, j: sims[i, j], eager=True)
    assert len({i for i, _ in lazy}) == len(lazy) == len({j for _, j in lazy})


def test_volume_iou_is_pooled_over_frames() -> None:
    a = np.zeros((2, 4, 4), dtype=bool)
    b = np.zeros((2, 4, 4), dtype=bool)
    a[0, :2, :2] = True  # 4 px in frame 0
    b[0, :1, :2] = True  # 2 px inside a
    b[1, 3, :2] = True  # 2 px in frame 1, a is empty there
    # Volume IoU 2/6, while the mean of per-frame IoUs would be (0.5 + 0) / 2.
    assert volume_iou_matrix([pack_volume(a)], [pack_volume(b)])[0, 0] == pytest.approx(2 / 6)
    empty = pack_volume(np.zeros((2, 4, 4), dtype=bool))
    assert volume_iou_matrix([empty], [empty])[0, 0] == 1.0  # SPARROW's empty-union rule
    assert volume_iou_matrix([empty], [pack_volume(a)])[0, 0] == 0.0
    with pytest.raises(ValueError, match="shapes"):
        volume_iou_matrix([pack_volume(np.zeros((1, 4, 4), bool))], [empty])


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.randoms(use_true_random=False))
def test_volume_iou_matches_dense_formula(t: int, h: int, w: int, rnd) -> None:
    a = np.array([rnd.random() < 0.4 for _ in range(t * h * w)]).reshape(t, h, w)
    b = np.array([rnd.random() < 0.4 for _ in range(t * h * w)]).reshape(t, h, w)
    union = np.logical_or(a, b).sum()
    expected = 1.0 if union == 0 else np.logical_and(a, b).sum() / union
    assert volume_iou_matrix([pack_volume(a)], [pack_volume(b)])[0, 0] == expected


def test_ap50_depends_on_prediction_order() -> None:
    gts = [rle_encode(box_mask(0, 10, 0, 10)), rle_encode(box_mask(10, 20, 10, 20))]
    tp = rle_encode(box_mask(0, 10, 0, 8))  # IoU 0.8 with gt 0
    fp = rle_encode(box_mask(10, 20, 10, 13))  # IoU 0.3 with gt 1
    assert mask_ap50([(gts, [tp, fp])]) == pytest.approx(0.504950, abs=5e-7)  # 51/101
    assert mask_ap50([(gts, [fp, tp])]) == pytest.approx(0.252475, abs=5e-7)
    assert mask_ap50([(gts, [])]) == 0.0
    assert mask_ap50([([], [tp])]) == -1.0


# --------------------------------------------------------------------------------------------------
# Text similarity


def test_token_cosine_and_constant() -> None:
    sim = TokenCosineSimilarity()
    assert isinstance(sim, TextSimilarity)
    assert sim("A red car", "a RED car!") == pytest.approx(1.0)
    assert sim("red car", "blue bike") == 0.0
    assert sim("a car", "a red car") == pytest.approx(2 / np.sqrt(2 * 3))
    assert sim("", "car") == 0.0
    assert "NOT parity" in sim.name
    assert ConstantSimilarity()("x", "y") == 1.0


def test_cosine_float32_matches_float64() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=32), rng.normal(size=32)
    assert cosine_float32(u, v) == pytest.approx(u @ v / np.linalg.norm(u) / np.linalg.norm(v), abs=1e-6)
    assert cosine_float32(np.zeros(3), v[:3]) == 0.0


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT with a 30-word vocabulary, saved in Hugging Face layout."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "a",
        "red",
        "car",
        "blue",
        "bike",
        "the",
        "dog",
        "man",
    ]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def test_bert_mean_pool_includes_cls_and_sep(tiny_bert: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertModel

    sim = BertMeanPoolSimilarity(tiny_bert)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = BertModel.from_pretrained(str(tiny_bert)).eval()
    ids = tok("a red car", return_tensors="pt")
    assert ids["input_ids"][0, 0] == tok.cls_token_id and ids["input_ids"][0, -1] == tok.sep_token_id
    with torch.no_grad():
        hidden = model(**ids).last_hidden_state[0]
    np.testing.assert_allclose(sim.embed("a red car"), hidden.mean(0).numpy(), rtol=1e-6, atol=1e-6)
    inner = hidden[1:-1].mean(0).numpy()
    assert not np.allclose(sim.embed("a red car"), inner, atol=1e-4)  # [CLS]/[SEP] are pooled too
    expected = cosine_float32(hidden.mean(0).numpy(), sim.embed("blue bike"))
    assert sim("a red car", "blue bike") == pytest.approx(expected, abs=1e-6)
    assert sim("the dog", "the dog") == pytest.approx(1.0, abs=1e-6)


def test_bert_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        BertMeanPoolSimilarity(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="cannot load"):
        BertMeanPoolSimilarity(tmp_path)


# --------------------------------------------------------------------------------------------------
# res.json parsing


def test_res_json_sides(tmp_path: Path) -> None:
    p = tmp_path / "res.json"
    side = read_gcg_side({"gt_text": "ASSISTANT: The <p>dog</p> [SEG] runs."}, "gt", p)
    assert side is not None and (side.text_cleaned, side.phrases) == ("The dog runs.", ["dog"])
    stored = read_gcg_side({"gt_text": "x", "gt_text_cleaned": "kept", "gt_phrases": ["p"]}, "gt", p)
    assert stored is not None and (stored.text_cleaned, stored.phrases) == ("kept", ["p"])
    assert read_gcg_side({"gt_text": "x"}, "pred", p) is None
    with pytest.raises(DataFormatError, match="pred_phrases"):
        read_gcg_side({"pred_text": "x", "pred_phrases": "dog"}, "pred", p)
    with pytest.raises(DataFormatError, match="gt_text is missing"):
        read_gcg_side({"gt_phrases": ["a"]}, "gt", p)


# --------------------------------------------------------------------------------------------------
# evaluate_gcg on folders


A0 = box_mask(0, 10, 0, 10)
B0 = box_mask(10, 20, 10, 20)


def build_two_samples(root: Path) -> None:
    """Sample 0: 2 GT objects, 2 predictions (IoUs 0.8 and 0.3). Sample 1: perfect single object."""
    write_gcg_sample(
        root, 0, "gt", "ASSISTANT: A <p>dog</p> [SEG] near a <p>red car</p> [SEG].", [[A0, A0], [B0, B0]]
    )
    write_gcg_sample(
        root,
        0,
        "pred",
        "A <p>dog</p> [SEG] and a <p>car</p> [SEG].",
        [
            [box_mask(0, 10, 0, 8), box_mask(0, 10, 0, 8)],
            [box_mask(10, 20, 10, 13), box_mask(10, 20, 10, 13)],
        ],
    )
    write_gcg_sample(root, 1, "gt", "The <p>man</p> [SEG] waves.", [[A0, B0]])
    write_gcg_sample(root, 1, "pred", "The <p>man</p> [SEG] waves.", [[A0, B0]])


def test_evaluate_gcg_single_folder(tmp_path: Path) -> None:
    build_two_samples(tmp_path / "video_gcg")
    result = evaluate_gcg(tmp_path, captions=False, workers=1)  # VideoGLaMM's --vis_save_path
    assert result.miou == pytest.approx(((0.8 + 0.3) / 2 + 1.0) / 2)
    # Recall: sample 0 matches (dog, dog) at IoU 0.8; the next pair has IoU 0.3 -> stop. Sample 1: 1/1.
    assert result.recall == pytest.approx(2 / 3)
    assert [s.tp for s in result.samples] == [1, 1]
    assert result.captions is None and result.clair is None and result.judge is None
    assert "token-cosine" in result.text_similarity
    data = result.to_json_dict()
    assert data["mIoU"] == result.miou and data["recall"] == result.recall and data["CLAIR"] is None


def test_ap50_uses_volumes_in_sample_order(tmp_path: Path) -> None:
    build_two_samples(tmp_path)
    result = evaluate_gcg(tmp_path, captions=False, workers=1)
    # GT: 3 objects; predictions in order: TP (0.8), FP (0.3), TP (1.0) -> precision 1, 1/2, 2/3.
    stack = lambda m: np.vstack([m, m])  # noqa: E731
    gts = [rle_encode(stack(A0)), rle_encode(stack(B0))]
    preds = [rle_encode(stack(box_mask(0, 10, 0, 8))), rle_encode(stack(box_mask(10, 20, 10, 13)))]
    expected = mask_ap50(
        [(gts, preds), ([rle_encode(np.vstack([A0, B0]))], [rle_encode(np.vstack([A0, B0]))])]
    )
    assert result.ap50 == pytest.approx(expected)
    assert 0.0 < result.ap50 < 1.0


def test_missing_prediction_and_failed_sample(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    build_two_samples(gt)
    write_gcg_sample(pred, 0, "pred", "A <p>dog</p> [SEG].", [[box_mask(0, 10, 0, 8)]])  # frame 1 missing
    # sample 1 has no prediction at all
    result = evaluate_gcg(gt, pred, captions=False, workers=1)
    assert result.missing_predictions == ["000001"]
    assert result.samples[0].failure is not None and "mask_1.png" in result.samples[0].failure
    assert result.miou == 0.0 and result.recall == 0.0
    with pytest.raises(DataFormatError, match=r"000001.*no prediction"):
        evaluate_gcg(gt, pred, captions=False, strict=True, workers=1)
    write_gcg_sample(pred, 1, "pred", "The <p>man</p> [SEG] waves.", [[A0, B0]])
    with pytest.raises(DataFormatError, match=r"000000.*mask_1\.png"):
        evaluate_gcg(gt, pred, captions=False, strict=True, workers=1)


def test_compat_double_count(tmp_path: Path) -> None:
    build_two_samples(tmp_path)

    class Failing:
        name = "failing"

        def __call__(self, a: str, b: str) -> float:
            if a == "man":
                raise RuntimeError("encoder down")
            return 1.0

    compat = evaluate_gcg(tmp_path, text_similarity=Failing(), captions=False, compat=True, workers=1)
    # Sample 1 fails inside the recall step: mIoU list [0.55, 1.0, 0.0], positives 2 + 1 + 1.
    assert compat.miou == pytest.approx((0.55 + 1.0 + 0.0) / 3)
    assert compat.recall == pytest.approx(1 / 4)
    assert "recall step failed" in (compat.samples[1].failure or "")
    with pytest.raises(RuntimeError, match="encoder down"):
        evaluate_gcg(tmp_path, text_similarity=Failing(), captions=False, workers=1)


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="not found"):
        evaluate_gcg(tmp_path / "missing", captions=False, workers=1)
    with pytest.raises(DataFormatError, match="no sample folders"):
        evaluate_gcg(tmp_path, captions=False, workers=1)
    (tmp_path / "000000").mkdir()
    (tmp_path / "000000" / "res.json").write_text("{not json")
    with pytest.raises(DataFormatError, match=r"cannot read res\.json"):
        evaluate_gcg(tmp_path, captions=False, workers=1)
    (tmp_path / "000000" / "res.json").unlink()
    with pytest.raises(DataFormatError, match=r"without res\.json"):
        evaluate_gcg(tmp_path, captions=False, strict=True, workers=1)
    assert evaluate_gcg(tmp_path, captions=False, workers=1).skipped == ["000000"]
