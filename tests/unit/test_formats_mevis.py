"""MeViS layout: reader (lazy, SynRef extras), results writers (folder + zip), round trip through eval."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from formats_builders import FRAMES, H, W, build_mevis
from PIL import Image

from sparrow.data.formats import mevis_results_writer, read_mevis
from sparrow.data.mask_sources import RleMasks
from sparrow.errors import DataFormatError, VideoWriteError


def test_reader_records_and_masks(tmp_path):
    folder, expected = build_mevis(tmp_path)
    split = read_mevis(tmp_path, "valid_u")
    assert list(split.videos) == ["vid_a", "vid_b"]
    video = split.videos["vid_a"]
    assert video.frame_names == FRAMES and video.frame_numbers == (0, 1, 2)
    assert video.frame_paths()[1] == folder / "JPEGImages" / "vid_a" / "00001.jpg"
    assert video.size is None and video.object_ids is None
    assert [(e.video_id, e.exp_id) for e in split.expressions][:3] == [
        ("vid_a", "0"),
        ("vid_a", "1"),
        ("vid_a", "2"),
    ]
    both = split.expressions[2]
    assert both.obj_ids == ("1", "2") and both.anno_ids == ("0", "1")
    for exp in split.expressions:
        np.testing.assert_array_equal(exp.load_masks(), expected[(exp.video_id, exp.exp_id)])
    np.testing.assert_array_equal(both.load_masks([2]), expected[("vid_a", "2")][2:])
    clip = video.load_frames([0, 2])
    assert clip.frames.shape == (2, H, W, 3) and clip.frame_indices.tolist() == [0, 2]


def test_reader_accepts_split_folder_and_valid_without_masks(tmp_path):
    folder, _ = build_mevis(tmp_path, "valid", with_masks=False)
    split = read_mevis(folder, "valid")
    assert len(split.expressions) == 6 and all(e.masks is None for e in split.expressions)
    with pytest.raises(DataFormatError, match="no ground-truth masks"):
        split.expressions[0].load_masks()


def test_reader_exposes_synref_extras(tmp_path):
    build_mevis(tmp_path, synref=True)
    split = read_mevis(tmp_path, "valid_u")
    video = split.videos["vid_b"]
    assert video.object_ids == ("1", "2") and video.extra["objects"] == {"1": 2, "2": 3}
    first, second = split.expressions[0], split.expressions[1]
    assert first.tags == ("motion",) and first.span == (0, 2)
    assert second.tags == ("static", "size") and second.extra == {"difficulty": "hard"}
    third = split.expressions[2]
    assert third.tags == ("multi",) and third.span is None and third.extra == {"span": "second half"}


def test_mask_dict_is_parsed_lazily_and_shared(tmp_path):
    build_mevis(tmp_path)
    split = read_mevis(tmp_path, "valid_u")
    stores = {id(e.masks.store) for e in split.expressions if isinstance(e.masks, RleMasks)}
    assert len(stores) == 1
    store = split.expressions[0].masks.store
    assert not store.file._loaded
    split.expressions[0].load_masks()
    assert store.file._loaded


def test_broken_and_missing_json_raise_with_path(tmp_path):
    folder, _ = build_mevis(tmp_path)
    (folder / "meta_expressions.json").write_text('{"videos": {"a": ')
    with pytest.raises(DataFormatError, match="not valid JSON") as err:
        read_mevis(tmp_path, "valid_u")
    assert err.value.path == folder / "meta_expressions.json"
    with pytest.raises(DataFormatError, match="file not found"):
        read_mevis(tmp_path, "train")


def test_bad_entries_raise_in_strict_mode(tmp_path):
    folder, _ = build_mevis(tmp_path)
    (folder / "meta_expressions.json").write_text(
        '{"videos": {"a": {"frames": ["00000"], "expressions": {"0": {"obj_id": [1]}}}}}'
    )
    with pytest.raises(DataFormatError, match="needs an 'exp' string"):
        read_mevis(tmp_path, "valid_u")


def _write_results(out, split, **kw):
    with mevis_results_writer(out, **kw) as writer:
        for exp in split.expressions:
            writer.add(exp.video_id, exp.exp_id, split.videos[exp.video_id].frame_names, exp.load_masks())


def test_results_folder_and_zip_layouts(tmp_path):
    build_mevis(tmp_path)
    split = read_mevis(tmp_path, "valid_u")
    _write_results(tmp_path / "results", split)
    png = tmp_path / "results" / "vid_a" / "2" / "00001.png"
    with Image.open(png) as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im)).tolist()) == {0, 255}
    _write_results(tmp_path / "sub.zip", split, as_zip=True)
    with zipfile.ZipFile(tmp_path / "sub.zip") as zf:
        names = zf.namelist()
    assert "vid_a/0/00000.png" in names and "vid_b/2/00002.png" in names
    assert {n.split("/")[0] for n in names} == {"vid_a", "vid_b"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_writer_is_atomic_on_error(tmp_path):
    build_mevis(tmp_path)
    out = tmp_path / "results"
    with pytest.raises(RuntimeError), mevis_results_writer(out) as writer:
        writer.add("vid_a", "0", FRAMES, np.zeros((3, H, W), bool))
        raise RuntimeError("crash in the middle")
    assert not out.exists() and not list(tmp_path.glob(".results*"))
    with pytest.raises(ValueError, match="do not match"), mevis_results_writer(out) as writer:
        writer.add("vid_a", "0", FRAMES, np.zeros((2, H, W), bool))
    assert not out.exists()
    out.mkdir()
    with pytest.raises(VideoWriteError, match="already exists"), mevis_results_writer(out):
        pass


def test_round_trip_through_eval_is_perfect(tmp_path):
    from sparrow.evaluation.mevis import evaluate_mevis

    folder, _ = build_mevis(tmp_path)
    split = read_mevis(tmp_path, "valid_u")
    _write_results(tmp_path / "results", split)
    result = evaluate_mevis(folder, tmp_path / "results", workers=1)
    assert (pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0)) == (result.J, result.F, result.JF)
    assert len(result.expressions) == 6 and not result.dropped


def test_round_trip_through_the_cli(tmp_path):
    import json

    from typer.testing import CliRunner

    from sparrow.cli.app import app

    folder, _ = build_mevis(tmp_path)
    split = read_mevis(tmp_path, "valid_u")
    _write_results(tmp_path / "results", split)
    args = ["eval", "mevis", "--gt", str(folder), "--results", str(tmp_path / "results"), "--workers", "1"]
    out = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "r.json")])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "r.json").read_text())["J&F"] == pytest.approx(1.0)
    # a wrong prediction scores below 1: the round trip can fail
    with mevis_results_writer(tmp_path / "shifted") as writer:
        for exp in split.expressions:
            writer.add(exp.video_id, exp.exp_id, FRAMES, np.roll(exp.load_masks(), 3, axis=2))
    from sparrow.evaluation.mevis import evaluate_mevis

    assert evaluate_mevis(folder, tmp_path / "shifted").JF < 0.9
