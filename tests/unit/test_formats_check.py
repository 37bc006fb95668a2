"""``sparrow data check``: every problem reported with its path, exit codes, ``--json``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from formats_builders import (
    build_davis,
    build_hcstvg,
    build_mevis,
    build_refdavis,
    build_revos,
    build_sequences,
    build_videogcg,
    build_vidstg,
    build_ytvos,
    write_json,
)
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.data.check import check_dataset
from sparrow.io.mask_files import write_binary_png, write_index_png

BUILDERS = {
    "mevis": (build_mevis, None),
    "ref-youtube-vos": (build_ytvos, "train"),
    "revos": (build_revos, None),
    "ref-davis17": (build_refdavis, None),
    "davis17": (build_davis, None),
    "davis17-unsupervised": (build_davis, None),
    "vidstg": (build_vidstg, None),
    "hcstvg": (build_hcstvg, None),
    "videogcg": (build_videogcg, None),
    "sparrow-seq": (build_sequences, None),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_clean_copies_have_no_problems(tmp_path, name):
    build, split = BUILDERS[name]
    build(tmp_path)
    problems = check_dataset(name, tmp_path, split)
    if name in ("vidstg", "hcstvg"):  # the tiny STVG sets ship no video files
        assert {p.kind for p in problems} == {"missing-file"}
    else:
        assert problems == []


def _kinds(problems):
    return [(p.kind, p.path) for p in problems]


def test_missing_frame(tmp_path):
    folder, _ = build_mevis(tmp_path)
    frame = folder / "JPEGImages" / "vid_b" / "00001.jpg"
    frame.unlink()
    assert _kinds(check_dataset("mevis", tmp_path)) == [("missing-frame", frame)]


def test_mask_of_the_wrong_size_png_and_rle(tmp_path):
    build_davis(tmp_path / "davis")
    bad = tmp_path / "davis" / "Annotations" / "480p" / "classic-car" / "00002.png"
    write_index_png(bad, np.zeros((10, 10), np.uint8))
    problems = check_dataset("davis17", tmp_path / "davis")
    assert _kinds(problems) == [("mask-size", bad)] and "10x10" in problems[0].message

    folder, _ = build_mevis(tmp_path / "mevis")
    table = json.loads((folder / "mask_dict.json").read_text())
    table["1"][2]["size"] = [12, 16]
    write_json(folder / "mask_dict.json", table)
    problems = check_dataset("mevis", tmp_path / "mevis")
    assert _kinds(problems) == [("mask-size", folder / "mask_dict.json")]
    assert "anno_id 1" in problems[0].message and "frame 2" in problems[0].message


def test_expression_naming_a_missing_object(tmp_path):
    build_sequences(tmp_path / "seq")
    (tmp_path / "seq" / "seq1" / "nlp.txt").write_text("[a box](3) and [another](1)")
    assert _kinds(check_dataset("sparrow-seq", tmp_path / "seq")) == [
        ("unknown-object", tmp_path / "seq" / "seq1" / "nlp.txt")
    ]

    folder, _ = build_mevis(tmp_path / "mevis", synref=True)
    meta = json.loads((folder / "meta_expressions.json").read_text())
    meta["videos"]["vid_a"]["expressions"]["1"]["obj_id"] = [7]
    meta["videos"]["vid_b"]["expressions"]["0"]["anno_id"] = [42]
    write_json(folder / "meta_expressions.json", meta)
    problems = check_dataset("mevis", tmp_path / "mevis")
    assert [(p.kind, p.path.name) for p in problems] == [
        ("unknown-object", "meta_expressions.json"),
        ("unknown-anno-id", "mask_dict.json"),
    ]
    assert "vid_a/1" in problems[0].message and "42" in problems[1].message

    build_refdavis(tmp_path / "rd")
    text = tmp_path / "rd" / "davis_text_annotations" / "Davis17_annot1.txt"
    text.write_text(text.read_text() + 'bike-packing 5 "a ghost"\n')
    problems = check_dataset("ref-davis17", tmp_path / "rd")
    assert {p.kind for p in problems} == {
        "bad-entry",
        "unknown-object",
    }  # also: no expression in 3 other files
    assert any(p.kind == "unknown-object" and "['5']" in p.message for p in problems)


def test_malformed_json_is_reported_and_the_rest_still_checked(tmp_path):
    folder, _ = build_mevis(tmp_path)
    (folder / "mask_dict.json").write_text("{not json")
    (folder / "JPEGImages" / "vid_a" / "00000.jpg").unlink()
    problems = check_dataset("mevis", tmp_path)
    assert _kinds(problems) == [
        ("missing-frame", folder / "JPEGImages" / "vid_a" / "00000.jpg"),
        ("bad-json", folder / "mask_dict.json"),
    ]
    (folder / "meta_expressions.json").write_text('{"videos": [1, 2]}')
    assert _kinds(check_dataset("mevis", tmp_path)) == [("bad-json", folder / "meta_expressions.json")]


def test_every_problem_is_listed_not_just_the_first(tmp_path):
    build_videogcg(tmp_path)
    write_binary_png(tmp_path / "000000" / "gt_masks_0" / "mask_1.png", np.zeros((5, 5), bool))
    (
        tmp_path / "000001" / "gt_masks_1" / "mask_2.png"
    ).unlink()  # binary masks: a missing file is an empty mask
    (tmp_path / "000001" / "res.json").write_text('{"gt_text": 3}')
    problems = check_dataset("videogcg", tmp_path)
    assert _kinds(problems) == [
        ("bad-entry", tmp_path / "000001" / "res.json"),
        ("mask-size", tmp_path / "000000" / "gt_masks_0" / "mask_1.png"),
    ]


def test_stvg_tube_without_boxes(tmp_path):
    path = build_vidstg(tmp_path)
    data = json.loads(path.read_text())
    del data["trajectories"]["1025/2345"]["3"]["5"]
    write_json(path, data)
    problems = [p for p in check_dataset("vidstg", tmp_path) if p.kind != "missing-file"]
    assert [p.kind for p in problems] == ["missing-box", "missing-box"] and "first 5" in problems[0].message


runner = CliRunner()


def test_cli_exit_codes_table_and_json(tmp_path):
    folder, _ = build_mevis(tmp_path / "ds")
    ok = runner.invoke(
        app, ["data", "check", "mevis", "--root", str(tmp_path / "ds"), "--json", str(tmp_path / "ok.json")]
    )
    assert ok.exit_code == 0 and "no problems" in ok.output
    assert json.loads((tmp_path / "ok.json").read_text())["problems"] == []
    (folder / "JPEGImages" / "vid_a" / "00002.jpg").unlink()
    (folder / "mask_dict.json").write_text("[")
    bad = runner.invoke(
        app, ["data", "check", "mevis", "--root", str(tmp_path / "ds"), "--json", str(tmp_path / "bad.json")]
    )
    assert bad.exit_code == 1
    assert "missing-frame" in bad.output and "bad-json" in bad.output
    report = json.loads((tmp_path / "bad.json").read_text())
    assert [p["kind"] for p in report["problems"]] == ["missing-frame", "bad-json"]
    assert report["problems"][0]["path"] == str(folder / "JPEGImages" / "vid_a" / "00002.jpg")


def test_cli_list_and_unknown_format(tmp_path):
    out = runner.invoke(app, ["data", "list", "--json", str(tmp_path / "f.json")])
    assert out.exit_code == 0
    names = [f["name"] for f in json.loads((tmp_path / "f.json").read_text())["formats"]]
    assert names[:3] == ["mevis", "ref-youtube-vos", "revos"] and "sparrow-seq" in names
    bad = runner.invoke(app, ["data", "check", "nope", "--root", str(tmp_path)])
    assert bad.exit_code != 0 and "unknown dataset format" in str(bad.exception)


def test_malformed_mask_dict_entries_are_each_reported(tmp_path):
    folder, _ = build_mevis(tmp_path)
    table = json.loads((folder / "mask_dict.json").read_text())
    table["0"] = "not a list"
    table["3"][1] = {"counts": "x"}
    table["2"] = table["2"][:2]
    write_json(folder / "mask_dict.json", table)
    problems = check_dataset("mevis", tmp_path)
    assert [(p.kind, p.path.name) for p in problems] == [
        ("bad-entry", "mask_dict.json"),
        ("frame-count", "mask_dict.json"),
        ("bad-entry", "mask_dict.json"),
    ]
    assert "entry 0" in problems[0].message and "anno_id 3, frame 1" in problems[2].message
