"""``sparrow data convert``: DAVIS -> MeViS layout, the CLI, unsupported pairs, atomicity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from formats_builders import build_davis, build_sequences, object_masks
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.data.convert import convert
from sparrow.data.formats import read_mevis
from sparrow.errors import ConfigError

runner = CliRunner()


def test_davis_to_mevis_one_expression_per_object(tmp_path):
    build_davis(tmp_path / "davis")
    report = convert("davis17-unsupervised", "mevis", tmp_path / "davis", tmp_path / "out", frames="symlink")
    assert (report.videos, report.expressions, report.objects) == (2, 4, 4)
    split = read_mevis(tmp_path / "out", "valid_u")
    exps = split.expressions_of("classic-car")
    assert [(e.exp_id, e.text, e.obj_ids) for e in exps] == [("0", "", ("1",)), ("1", "", ("2",))]
    np.testing.assert_array_equal(exps[1].load_masks(), object_masks(shift=1)[2])
    assert (tmp_path / "out" / "JPEGImages" / "classic-car" / "00000.jpg").is_symlink()


def test_unsupported_and_failed_conversions_leave_nothing(tmp_path):
    with pytest.raises(ConfigError, match="no conversion from 'mevis' to 'davis17'"):
        convert("mevis", "davis17", tmp_path, tmp_path / "out")
    build_sequences(tmp_path / "seqs")
    (tmp_path / "seqs" / "seq2" / "nlp.txt").write_text("[a thing](5)")
    with pytest.raises(Exception, match="names object"):
        convert("sparrow-seq", "mevis", tmp_path / "seqs", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_cli_convert(tmp_path):
    build_sequences(tmp_path / "seqs")
    args = [
        "data",
        "convert",
        "sparrow-seq",
        "mevis",
        "--root",
        str(tmp_path / "seqs"),
        "--out",
        str(tmp_path / "m"),
    ]
    ok = runner.invoke(app, [*args, "--json", str(tmp_path / "r.json")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "r.json").read_text())["expressions"] == 4
    assert len(read_mevis(tmp_path / "m", "train").expressions) == 4
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "already exists" in str(again.exception)
    assert runner.invoke(app, [*args, "--overwrite", "--frames", "copy"]).exit_code == 0
