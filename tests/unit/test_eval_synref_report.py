"""SynRef diagnostic report: first-frame J, identity switches, J&F per tag, parity with MeViS, CLI."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from eval_vos_builders import frame_names, square, write_mevis, write_predictions
from typer.testing import CliRunner

from sparrow.cli.app import app, main
from sparrow.data.synref.checker import TAG_ORDER
from sparrow.errors import DataFormatError, EvaluationError
from sparrow.evaluation import evaluate_synref
from sparrow.evaluation.expressions import ExpressionSpec, load_ground_truth
from sparrow.evaluation.mevis import evaluate_mevis
from sparrow.evaluation.synref_report import (
    SYNREF_TAGS,
    UNTAGGED,
    _first_frame,
    _FirstFrameJob,
    first_visible_frame,
)

EMPTY = np.zeros((20, 20), bool)
A = square(2, 6, 2, 6)  # 25 px each; A, B, C, D pairwise apart by more than F's 1 px radius at 20x20
B = square(12, 16, 12, 16)
C = square(2, 6, 12, 16)
D = square(8, 12, 8, 12)
N0, N1 = 5, 4  # frames of v0, v1

# anno_id -> per-frame masks (None = not visible). C appears at frame 2; E (anno 5) is never visible.
OBJECTS = {
    1: [A] * N0,
    2: [B] * N0,
    3: [None, None, C, C, C],
    4: [D] * N1,
    5: [None] * N1,
}
# (video, exp_id) -> (anno_ids, tags)
EXPRESSIONS = {
    ("v0", "0"): ([1], ["crosses_lookalike"]),
    ("v0", "1"): ([2], []),
    ("v0", "2"): ([3], ["late_appearance", "occluded"]),
    ("v0", "3"): ([1, 2], ["multi_object"]),
    ("v1", "0"): ([4], ["motion_only"]),
    ("v1", "1"): ([5], ["occluded"]),
}
FIRST_VISIBLE = {("v0", "0"): 0, ("v0", "1"): 0, ("v0", "2"): 2, ("v0", "3"): 0, ("v1", "0"): 0}


def _gt_masks(key: tuple[str, str]) -> list[np.ndarray]:
    anno_ids, _ = EXPRESSIONS[key]
    n = N0 if key[0] == "v0" else N1
    out = []
    for t in range(n):
        m = EMPTY.copy()
        for a in anno_ids:
            if OBJECTS[a][t] is not None:
                m |= OBJECTS[a][t]
        out.append(m)
    return out


def _write_gt(root: Path, *, tags: dict[tuple[str, str], object] | None = None) -> Path:
    gt = root / "synref"
    videos: dict[str, dict[str, object]] = {
        "v0": {"expressions": {}, "frames": frame_names(N0), "objects": {"0": 1, "1": 2, "2": 3}},
        "v1": {"expressions": {}, "frames": frame_names(N1), "objects": {"0": 4, "1": 5}},
    }
    for (video, exp_id), (anno_ids, exp_tags) in EXPRESSIONS.items():
        videos[video]["expressions"][exp_id] = {  # type: ignore[index]
            "exp": f"expression {exp_id}",
            "obj_id": [a - 1 for a in anno_ids],
            "anno_id": anno_ids,
            "tags": (tags or {}).get((video, exp_id), exp_tags),
        }
    write_mevis(gt, videos, OBJECTS)
    return gt


Edit = Callable[[tuple[str, str], list[np.ndarray]], list[np.ndarray]]


def _write_preds(root: Path, edit: Edit | None = None) -> Path:
    """Perfect predictions, each passed through ``edit(key, masks)`` first."""
    results = root / "results"
    for key in EXPRESSIONS:
        masks = _gt_masks(key)
        write_predictions(results, key[0], key[1], edit(key, masks) if edit else masks)
    return results


def test_tags_match_the_synref_generator() -> None:
    assert SYNREF_TAGS == TAG_ORDER


def test_first_visible_frame(tmp_path: Path) -> None:
    gt = load_ground_truth(_write_gt(tmp_path))
    for (video, exp_id), _ in EXPRESSIONS.items():
        n = len(gt.frames(video))
        assert first_visible_frame(gt.targets(video, exp_id), n) == FIRST_VISIBLE.get((video, exp_id))


def test_perfect_predictions(tmp_path: Path) -> None:
    report = evaluate_synref(_write_gt(tmp_path), _write_preds(tmp_path))
    assert (report.JF, report.J, report.F) == (1.0, 1.0, 1.0)
    assert report.first_frame_J == 1.0 and report.n_first_frame == 5  # v1/1 is never visible
    assert report.id_switch_rate == 0.0
    assert report.identity.n_evaluated == 5 + 5 + 3 + 5 + 4  # non-empty prediction frames
    assert report.IDF1 == 1.0 and abs(report.HOTA - 1.0) < 1e-12
    assert report.n_expressions == 6
    assert [t.tag for t in report.per_tag] == [*TAG_ORDER, UNTAGGED]
    counts = {t.tag: t.n_expressions for t in report.per_tag}
    assert counts == {
        "occluded": 2,
        "reappears": 0,
        "crosses_lookalike": 1,
        "late_appearance": 1,
        "motion_only": 1,
        "multi_object": 1,
        "untagged": 1,
    }
    assert math.isnan(report.tag("reappears").JF)
    assert all(t.JF == 1.0 for t in report.per_tag if t.n_expressions)


def _blank_first_visible(key: tuple[str, str], masks: list[np.ndarray]) -> list[np.ndarray]:
    if key in FIRST_VISIBLE:
        masks[FIRST_VISIBLE[key]] = EMPTY
    return masks


def test_wrong_only_on_first_visible_frame(tmp_path: Path) -> None:
    report = evaluate_synref(_write_gt(tmp_path), _write_preds(tmp_path, _blank_first_visible))
    assert report.first_frame_J == 0.0 and report.n_first_frame == 5
    # Per expression J = F: v0 (5 frames, one wrong) 4/5 each of four; v1/0 (4 frames, one wrong) 3/4;
    # v1/1 (never visible, empty prediction) 1.  Mean = (16/5 + 3/4 + 1) / 6 = 33/40.
    headline = [report.JF, report.J, report.F]
    assert headline == pytest.approx([33 / 40] * 3, abs=1e-12)
    assert report.id_switch_rate == 0.0  # empty frames are not evaluated
    frames = {(s.video, s.exp_id): s.frame for s in report.first_frames}
    assert frames == {("v0", "0"): "00000", ("v0", "1"): "00000", ("v0", "2"): "00002",
                      ("v0", "3"): "00000", ("v1", "0"): "00000", ("v1", "1"): None}  # fmt: skip


def _follow_lookalike(key: tuple[str, str], masks: list[np.ndarray]) -> list[np.ndarray]:
    if key == ("v0", "0"):  # on A for frames 0-1, then follows its look-alike B
        return [A, A, B, B, B]
    return masks


def test_following_a_lookalike_counts_switches(tmp_path: Path) -> None:
    report = evaluate_synref(_write_gt(tmp_path), _write_preds(tmp_path, _follow_lookalike))
    # Evaluated (non-empty) frames: v0/0 5, v0/1 5, v0/2 3, v0/3 5, v1/0 4, v1/1 0 = 22; switches: 3.
    assert report.id_switch_rate == 3 / 22
    assert (report.identity.n_evaluated, report.identity.n_switch) == (22, 3)
    assert report.first_frame_J == 1.0  # it starts on the right object
    # A and B are far apart: J = F = 0 on the three switched frames.
    crossing = report.tag("crosses_lookalike")
    j_and_f = [crossing.J, crossing.F]
    assert j_and_f == pytest.approx([2 / 5, 2 / 5], abs=1e-12)
    assert report.IDF1 < 1.0 and report.HOTA < 1.0


def _mixed(key: tuple[str, str], masks: list[np.ndarray]) -> list[np.ndarray]:
    if key == ("v0", "0"):
        return [EMPTY] * N0  # J = F = 0
    if key == ("v0", "2"):
        return [*masks[:4], EMPTY]  # frames 0-3 right (0-1 both empty), frame 4 missed: 4/5
    if key == ("v0", "3"):
        return [A] * N0  # half of A∪B: J = 1/2, F: precision 1, recall 1/2 -> 2/3
    if key == ("v1", "1"):
        return [A] * N1  # false positive on a never-visible target: J = F = 0
    return masks  # v0/1, v1/0: 1


def test_per_tag_means(tmp_path: Path) -> None:
    gt, results = _write_gt(tmp_path), _write_preds(tmp_path, _mixed)
    report = evaluate_synref(gt, results)
    expected = {  # tag: (J&F, n)
        "occluded": ((4 / 5 + 0) / 2, 2),  # v0/2, v1/1
        "crosses_lookalike": (0.0, 1),  # v0/0
        "late_appearance": (4 / 5, 1),  # v0/2
        "motion_only": (1.0, 1),  # v1/0
        "multi_object": ((1 / 2 + 2 / 3) / 2, 1),  # v0/3
        "untagged": (1.0, 1),  # v0/1
    }
    for tag, (jf, n) in expected.items():
        score = report.tag(tag)
        assert [score.JF, score.n_expressions] == pytest.approx([jf, n], abs=1e-12), tag
    assert report.tag("reappears").n_expressions == 0 and math.isnan(report.tag("reappears").JF)
    # first visible frames: v0/0 0, v0/1 1, v0/2 1 (frame 2), v0/3 1/2, v1/0 1; v1/1 left out.
    assert report.first_frame_J == pytest.approx(3.5 / 5, abs=1e-12)

    # (e) the headline numbers are evaluate_mevis's, to the last bit
    mevis = evaluate_mevis(gt, results)
    assert (report.JF, report.J, report.F) == (mevis.JF, mevis.J, mevis.F)
    assert abs(report.J - (0 + 1 + 4 / 5 + 1 / 2 + 1 + 0) / 6) < 1e-12


def test_missing_video_and_dropped_expression(tmp_path: Path) -> None:
    gt, results = _write_gt(tmp_path), _write_preds(tmp_path)
    (results / "v0" / "1" / "00003.png").unlink()  # v0/1 unreadable: MeViS drops it
    for p in sorted((results / "v1").rglob("*.png")):
        p.unlink()
    for d in sorted((results / "v1").glob("*")):
        d.rmdir()
    (results / "v1").rmdir()  # v1 missing: MeViS scores its expressions 0
    report = evaluate_synref(gt, results)
    mevis = evaluate_mevis(gt, results)
    assert (report.JF, report.J, report.F) == (mevis.JF, mevis.J, mevis.F)
    assert report.dropped == ["v0/1"] and report.missing_videos == ["v1"]
    assert report.n_expressions == 5
    # first-frame J: v0/0, v0/2, v0/3 -> 1; v1/0 missing -> 0; v0/1 dropped and v1/1 never visible: left out
    assert report.first_frame_J == 3 / 4 and report.n_first_frame == 4
    assert report.tag(UNTAGGED).n_expressions == 0  # v0/1 was its only expression
    assert report.tag("occluded").JF == 1 / 2  # v0/2 (1) and v1/1 (missing video: 0)
    data = report.to_json_dict()
    assert set(data["identity_failed"]) == {"v0/1", "v1/0", "v1/1"}
    with pytest.raises(EvaluationError, match=r"00003\.png"):
        evaluate_synref(gt, results, strict=True)


def test_bad_ground_truth(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    bad = _write_gt(tmp_path / "a", tags={("v0", "1"): ["blurry"]})
    with pytest.raises(DataFormatError, match="unknown tags") as err:
        evaluate_synref(bad, results)
    assert "meta_expressions.json" in str(err.value)
    bad = _write_gt(tmp_path / "b", tags={("v0", "1"): "occluded"})
    with pytest.raises(DataFormatError, match="list of strings"):
        evaluate_synref(bad, results)
    no_masks = _write_gt(tmp_path / "c")
    (no_masks / "mask_dict.json").unlink()
    (no_masks / "Annotations").mkdir()
    with pytest.raises(DataFormatError, match=r"needs mask_dict\.json"):
        evaluate_synref(no_masks, results)
    with pytest.raises(EvaluationError, match="results folder not found"):
        evaluate_synref(_write_gt(tmp_path / "d"), tmp_path / "nowhere")


def test_prediction_changing_during_evaluation_is_an_error(tmp_path: Path) -> None:
    gt = load_ground_truth(_write_gt(tmp_path))
    results = tmp_path / "empty_results"
    (results / "v0").mkdir(parents=True)
    spec = ExpressionSpec("v0", "0", gt.frames("v0"), gt.targets("v0", "0"), results, "00000")
    with pytest.raises(EvaluationError, match="changed during the evaluation"):
        _first_frame(_FirstFrameJob(spec, "ok"))


def test_cli_writes_json_and_prints_tables(tmp_path: Path) -> None:
    gt, results = _write_gt(tmp_path), _write_preds(tmp_path, _follow_lookalike)
    out = tmp_path / "out" / "synref.json"
    res = CliRunner().invoke(
        app,
        ["eval", "synref", "--gt", str(gt), "--results", str(results), "--json", str(out), "--workers", "1"],
    )
    assert res.exit_code == 0, res.output
    for text in ("first-frame J", "id-switch rate", "J&F per tag", "crosses_lookalike", "untagged"):
        assert text in res.output
    data = json.loads(out.read_text())
    assert data["id_switch_rate"] == 3 / 22 and data["first_frame_J"] == 1.0
    assert list(data["per_tag"]) == [*TAG_ORDER, UNTAGGED]
    assert data["per_tag"]["reappears"] == {"J&F": None, "J": None, "F": None, "n_expressions": 0}
    entry = data["per_expression"]["v0/2"]
    assert entry["tags"] == ["late_appearance", "occluded"] and entry["first_visible_frame"] == "00002"
    assert data["per_expression"]["v0/0"]["id_switch_rate"] == 3 / 5
    assert data["per_expression"]["v1/1"]["first_frame_J"] is None
    help_text = CliRunner().invoke(app, ["eval", "synref", "--help"]).output
    for option in ("--gt", "--results", "--workers", "--strict", "--json"):
        assert option in help_text


def test_cli_missing_gt_exits_2_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    missing = tmp_path / "no_split"
    argv = ["sparrow", "eval", "synref", "--gt", str(missing), "--results", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = "".join(capsys.readouterr().err.split())  # rich may fold a long path
    assert "error:" in err and "Traceback" not in err
    assert str(missing / "meta_expressions.json").replace(" ", "") in err
