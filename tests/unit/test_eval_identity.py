"""Identity consistency: tracking metrics (METRICS.md §5.1, cross-checked with trackeval) and the
identity-switch rate on referring predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trackeval
from eval_vos_builders import frame_names, square, write_mevis, write_predictions
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation.identity import evaluate_identity, is_identity_switch
from sparrow.evaluation.tracking import TrackingSequence, combine, evaluate_sequence, tracking_metrics


def _metrics(seq: TrackingSequence) -> dict[str, float]:
    return tracking_metrics(evaluate_sequence(seq))


def test_verified_id_switch_case() -> None:
    one = [np.array([0])] * 4
    seq = TrackingSequence(
        one, [np.array([0]), np.array([0]), np.array([1]), np.array([1])], [np.ones((1, 1))] * 4, 1, 2
    )
    m = _metrics(seq)
    assert m["HOTA"] == pytest.approx(0.707107, abs=5e-7)
    assert (m["DetA"], m["AssA"]) == pytest.approx((1.0, 0.5), abs=1e-12)
    assert (m["MOTA"], m["IDSW"], m["MOTP"]) == (0.75, 1, 1.0)
    assert (m["IDF1"], m["IDTP"], m["IDFN"], m["IDFP"]) == (0.5, 2, 2, 2)


def test_verified_iou_06_case() -> None:
    seq = TrackingSequence([np.array([0])] * 4, [np.array([0])] * 4, [np.full((1, 1), 0.6)] * 4, 1, 1)
    assert _metrics(seq)["HOTA"] == pytest.approx(12 / 19, abs=1e-12)


def _trackeval(seqs: list[TrackingSequence]) -> dict[str, float]:
    metrics = [
        trackeval.metrics.HOTA(),
        trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
        trackeval.metrics.Identity({"PRINT_CONFIG": False}),
    ]
    out: dict[str, float] = {}
    for metric in metrics:
        per_seq = {}
        for i, s in enumerate(seqs):
            data = {
                "num_timesteps": len(s.gt_ids),
                "num_gt_ids": s.n_gt_ids,
                "num_tracker_ids": s.n_tracker_ids,
                "gt_ids": s.gt_ids,
                "tracker_ids": s.tracker_ids,
                "similarity_scores": s.similarity,
                "num_gt_dets": s.n_gt_dets,
                "num_tracker_dets": s.n_tracker_dets,
            }
            per_seq[i] = metric.eval_sequence(data)
        out.update(metric.combine_sequences(per_seq))
    return out


def _random_sequence(rng: np.random.Generator) -> TrackingSequence:
    n_gt, n_tr, n_t = int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 12))
    gt_ids, tr_ids, sims = [], [], []
    for _ in range(n_t):
        g = np.flatnonzero(rng.random(n_gt) < 0.7)
        p = np.flatnonzero(rng.random(n_tr) < 0.7)
        s = rng.random((len(g), len(p))) * (rng.random((len(g), len(p))) < 0.6)
        gt_ids.append(g)
        tr_ids.append(p)
        sims.append(np.round(s, 1) if rng.random() < 0.5 else s)  # ties included
    return TrackingSequence(gt_ids, tr_ids, sims, n_gt, n_tr)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_cross_check_with_trackeval() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        seqs = [_random_sequence(rng) for _ in range(int(rng.integers(1, 4)))]
        ours = tracking_metrics(combine([evaluate_sequence(s) for s in seqs]))
        ref = _trackeval(seqs)
        for k in ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA"):
            assert ours[k] == pytest.approx(float(np.mean(ref[k])), abs=1e-12), k
        for k in (
            "MOTA",
            "MOTP",
            "IDSW",
            "Frag",
            "MT",
            "PT",
            "ML",
            "IDF1",
            "IDR",
            "IDP",
            "IDTP",
            "IDFN",
            "IDFP",
        ):
            assert ours[k] == pytest.approx(float(ref[k]), abs=1e-12), k


def test_is_identity_switch() -> None:
    a, b = square(0, 3, 0, 3), square(0, 3, 4, 9)
    pred = square(0, 3, 2, 9)  # 8 px on a, 24 px on b
    assert is_identity_switch(pred, a, [b])
    assert not is_identity_switch(pred, b, [a])
    assert not is_identity_switch(square(10, 12, 10, 12), a, [b])  # background only
    assert not is_identity_switch(square(0, 3, 2, 5), a, [b])  # tie (8 vs 8) is not a switch
    assert is_identity_switch(pred, None, [b])  # target absent in this frame


def _crossing(tmp_path: Path, with_objects_key: bool = True) -> tuple[Path, Path]:
    """Two objects A (anno 1) and B (anno 2) side by side, and a distractor C (anno 3) without expression.
    Expression 0 -> A, 1 -> B: their predictions swap at frame 3 (a classic identity switch)."""
    a, b, c = square(2, 7, 2, 7), square(2, 7, 10, 15), square(12, 17, 2, 7)
    frames = frame_names(6)
    video: dict = {
        "expressions": {
            "0": {"exp": "left", "anno_id": [1]},
            "1": {"exp": "right", "anno_id": [2]},
            "2": {"exp": "left again", "anno_id": [1]},
            "3": {"exp": "both", "anno_id": [1, 2]},
        },
        "frames": frames,
    }
    if with_objects_key:
        video["objects"] = {"1": 1, "2": 2, "3": 3}
    gt = tmp_path / "synref"
    write_mevis(gt, {"v": video}, {1: [a] * 6, 2: [b] * 6, 3: [c] * 6})
    results = tmp_path / "pred"
    write_predictions(results, "v", "0", [a, a, a, b, b, b])
    write_predictions(results, "v", "1", [b, b, b, a, a, a])
    write_predictions(results, "v", "2", [c, a, np.zeros_like(a), a, a, a])  # frame 0 on the distractor
    write_predictions(results, "v", "3", [a | b] * 6)
    return gt, results


def test_identity_protocol_through_cli(tmp_path: Path) -> None:
    gt, results = _crossing(tmp_path)
    out = tmp_path / "id.json"
    res = CliRunner().invoke(
        app, ["eval", "identity", "--gt", str(gt), "--results", str(results), "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    per = data["per_expression"]
    assert per["v/0"]["n_switch_frames"] == 3 and per["v/0"]["n_evaluated_frames"] == 6
    assert per["v/1"]["id_switch_rate"] == 0.5
    assert (per["v/2"]["n_switch_frames"], per["v/2"]["n_evaluated_frames"]) == (
        1,
        5,
    )  # empty frame not evaluated
    assert per["v/3"]["n_switch_frames"] == 0
    assert data["id_switch_rate"] == (3 + 3 + 1 + 0) / (6 + 6 + 5 + 6)
    # tracks: expression 0 for A, 1 for B (the first single-object expressions); C is not tracked
    assert data["n_tracks"] == 2
    assert data["IDSW"] == 2  # A and B each change track once
    assert data["IDF1"] == 0.5 and data["MOTA"] == (12 - 0 - 2) / 12
    # each (object, track) pair holds 3 of 6 + 6 frames: AssA = 3 / (12 - 3), DetA = 1
    assert (data["DetA"], data["AssA"]) == pytest.approx((1.0, 1 / 3), abs=1e-12)
    assert data["HOTA"] == pytest.approx(np.sqrt(1 / 3), abs=1e-12)


def test_objects_key_optional_and_checked(tmp_path: Path) -> None:
    gt, results = _crossing(tmp_path, with_objects_key=False)
    r = evaluate_identity(gt, results)
    # without "objects", C (anno 3) is unknown: the frame on C is no longer a switch for expression 2
    assert r.expressions[2].n_switch == 0
    meta = json.loads((gt / "meta_expressions.json").read_text())
    meta["videos"]["v"]["objects"] = {"1": 1}
    (gt / "meta_expressions.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="missing from 'objects'"):
        evaluate_identity(gt, results)


def test_missing_predictions(tmp_path: Path) -> None:
    gt, results = _crossing(tmp_path)
    (results / "v" / "1" / "00004.png").unlink()
    r = evaluate_identity(gt, results, workers=2)
    assert r.expressions[1].status == "failed"
    assert r.n_evaluated == 6 + 5 + 6
    assert r.n_tracks == 1  # B has no readable single-object expression left
    with pytest.raises(EvaluationError, match=r"00004\.png"):
        evaluate_identity(gt, results, strict=True)
