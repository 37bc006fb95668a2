"""SynRef on disk: determinism, the MeViS / VidSTG / VideoGCG layouts parsed back, atomicity, the
CLI, and -- the central guarantee -- every emitted expression re-proved from the files alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sparrow.cli.app import app
from sparrow.data.synref import GenerationRequest, Knobs, preset, write_split
from sparrow.data.synref import writer as writer_module
from sparrow.data.synref.checker import Checker
from sparrow.data.synref.language import TAGS, clean_caption, parse
from sparrow.data.synref.reader import decode_masks, observation
from sparrow.data.synref.stats import split_stats
from sparrow.errors import ConfigError
from sparrow.structures import masks_to_boxes

H, W, T, N = 96, 128, 12, 8
SPLIT_KEYS = {"video_id", "original_video_id", "target_id", "caption", "qtype", "fps", "width", "height"}
SPLIT_KEYS |= {"start_frame", "end_frame", "tube_start_frame", "tube_end_frame", "video_path"}


def _request(seed: int = 5, split: str = "val", videos: int = N) -> GenerationRequest:
    return GenerationRequest(split, videos, T, (H, W), seed, "hard", preset("hard"))


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synref") / "val"
    write_split(out, _request(), workers=1)
    return out


def _load(path: Path):
    return json.loads(path.read_text())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_same_bytes_whatever_the_workers(split: Path, tmp_path: Path) -> None:
    write_split(tmp_path / "two", _request(), workers=2)
    a, b = _tree(split), _tree(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) > N * T
    assert all(a[k] == b[k] for k in a)
    assert not any(".tmp" in k or ".parts" in k for k in a)


def test_splits_never_share_a_video(split: Path, tmp_path: Path) -> None:
    ids = set(_load(split / "meta_expressions.json")["videos"])
    write_split(tmp_path / "seed6", _request(seed=6, videos=3))
    write_split(tmp_path / "test", _request(split="test", videos=3))
    for other in ("seed6", "test"):
        assert not ids & set(_load(tmp_path / other / "meta_expressions.json")["videos"])
    req = _request(videos=1)
    assert len({req.video_id(i) for i in range(2000)}) == 2000
    assert {req.video_id(i) for i in range(N)} == ids  # a video's id does not depend on the split length


def test_mevis_layout(split: Path) -> None:
    meta = _load(split / "meta_expressions.json")["videos"]
    masks = _load(split / "mask_dict.json")
    assert len(meta) == N
    seen_annos: set[int] = set()
    for vid, video in meta.items():
        assert video["frames"] == [f"{t:05d}" for t in range(T)] and (video["height"], video["width"]) == (
            H,
            W,
        )
        for name in video["frames"]:
            with Image.open(split / "JPEGImages" / vid / f"{name}.jpg") as im:
                assert im.format == "JPEG" and im.size == (W, H) and im.mode == "RGB"
        annos = {int(k): v for k, v in video["objects"].items()}
        assert not seen_annos & set(annos.values())
        seen_annos |= set(annos.values())
        stack = np.stack(
            [decode_masks(masks, a, (H, W)) for a in annos.values()]
        )  # every object, referred or not
        assert stack.shape == (len(annos), T, H, W)
        assert (stack.sum(axis=0) <= 1).all()  # visible masks never overlap
        for a in annos.values():
            assert len(masks[str(a)]) == T
            assert all(
                (r is None) == (not m.any())
                for r, m in zip(masks[str(a)], decode_masks(masks, a, (H, W)), strict=True)
            )
        for exp in video["expressions"].values():
            assert set(exp) == {"exp", "obj_id", "anno_id", "tags", "span", "kind"}
            assert exp["anno_id"] == [annos[k] for k in exp["obj_id"]]
            assert set(exp["tags"]) <= set(TAGS)
            assert exp["span"] is None or 0 <= exp["span"][0] < exp["span"][1] <= T
    assert sorted(int(k) for k in masks) == sorted(seen_annos)


def test_vidstg_layout(split: Path) -> None:
    data = _load(split / "vidstg" / "val.json")
    assert list(data) == ["obj_categories", "trajectories", "videos"]
    masks = _load(split / "mask_dict.json")
    meta = _load(split / "meta_expressions.json")["videos"]
    assert [v["video_id"] for v in data["videos"]] == list(range(len(data["videos"])))
    assert {v["qtype"] for v in data["videos"]} == {"declarative", "interrogative"}
    for v in data["videos"]:
        assert set(v) >= SPLIT_KEYS
        assert (v["start_frame"], v["end_frame"], v["height"], v["width"]) == (0, T, H, W)
        assert 0 <= v["tube_start_frame"] < v["tube_end_frame"] <= T
        track = data["trajectories"][v["original_video_id"]][str(v["target_id"])]
        anno = meta[v["original_video_id"]]["objects"][str(v["target_id"])]
        visible = decode_masks(masks, anno, (H, W))
        tight = masks_to_boxes(visible)
        for f in range(v["tube_start_frame"], v["tube_end_frame"]):
            x, y, w, h = track[str(f)]["bbox"]
            assert w >= 0 and h >= 0
            if visible[f].any():
                assert [x, y, x + w, y + h] == tight[f].tolist()
        assert visible[v["tube_start_frame"]].any() and visible[v["tube_end_frame"] - 1].any()


def test_gcg_layout(split: Path) -> None:
    masks = _load(split / "mask_dict.json")
    meta = _load(split / "meta_expressions.json")["videos"]
    samples = sorted((split / "gcg").iterdir())
    assert [p.name for p in samples] == [f"{i:06d}" for i in range(N)]
    for sample in samples:
        res = _load(sample / "res.json")
        assert {"gt_text", "gt_text_cleaned", "gt_phrases", "video", "frames"} <= set(res)
        assert res["gt_text_cleaned"] == clean_caption(res["gt_text"])
        assert res["gt_text"].count("[SEG]") == len(res["gt_phrases"])
        assert sorted(p.name for p in sample.glob("gt_masks_*")) == [
            f"gt_masks_{k}" for k in range(len(res["gt_phrases"]))
        ]
        video = meta[res["video"]]
        for k, group in enumerate(res["gt_obj_ids"]):
            union = np.stack([decode_masks(masks, video["objects"][str(o)], (H, W)) for o in group]).any(
                axis=0
            )
            for t in range(T):
                with Image.open(sample / f"gt_masks_{k}" / f"mask_{t}.png") as im:
                    assert im.mode == "L"  # as sparrow.io.write_binary_png writes them
                    png = np.asarray(im)
                assert png.dtype == np.uint8 and png.shape == (H, W) and set(np.unique(png)) <= {0, 255}
                assert np.array_equal(png == 255, union[t])


def test_manifest_qa_and_objects(split: Path) -> None:
    manifest = _load(split / "synref.json")
    assert manifest["generator"].startswith("synref-") and manifest["knobs"] == preset("hard").to_dict()
    assert (manifest["split"], manifest["videos"], manifest["frames"], manifest["size"]) == (
        "val",
        N,
        T,
        [H, W],
    )
    stats = split_stats(split)
    assert (
        manifest["counts"]["expressions"] == stats.expressions
        and manifest["counts"]["objects"] == stats.objects
    )
    qa = _load(split / "qa.json")["videos"]
    meta = _load(split / "meta_expressions.json")["videos"]
    assert qa.keys() == meta.keys()
    for vid, pairs in qa.items():
        assert sum(p["task"] == "segment" for p in pairs) == len(meta[vid]["expressions"])
        assert [p["task"] for p in pairs].count("caption") == 1
    objects = _load(split / "objects.json")["videos"]
    for vid, entry in objects.items():
        assert len(entry["camera"]) == T and set(entry["objects"]) == set(meta[vid]["objects"])
        for o in entry["objects"].values():
            assert len(o["amodal_box"]) == len(o["visibility"]) == len(o["center"]) == T


def test_every_expression_reproves_from_the_files(split: Path) -> None:
    """Re-check each expression against the masks decoded from mask_dict.json: its text parses to a
    query that exactly its obj_ids satisfy, with nothing unclear, and the same span and tags."""
    meta = _load(split / "meta_expressions.json")["videos"]
    masks = _load(split / "mask_dict.json")
    objects = _load(split / "objects.json")["videos"]
    checked = 0
    for vid, video in meta.items():
        annos = [video["objects"][str(k)] for k in range(len(video["objects"]))]
        visible_px = np.stack([decode_masks(masks, a, (H, W)).sum(axis=(1, 2)) for a in annos])
        entry = objects[vid]
        assert visible_px.tolist() == [
            entry["objects"][str(k)]["pixels"]["visible"] for k in range(len(annos))
        ]
        ck = Checker(observation(entry, visible_px, H, W))
        for exp in video["expressions"].values():
            query = parse(exp["exp"])
            proof = ck.prove(query)
            assert proof.proved and list(proof.referents) == exp["obj_id"], exp
            assert proof.unclear == ()
            assert (list(proof.span) if proof.span else None) == exp["span"]
            assert ck.tags(query, proof) == exp["tags"]
            if query.predicate is None and query.span is None:  # appearance alone: count what is seen
                fits = [
                    k
                    for k in range(len(annos))
                    if query.target.matches(entry["objects"][str(k)]) and visible_px[k].any()
                ]
                assert fits == exp["obj_id"]
            checked += 1
    assert checked >= 3 * N


def test_existing_output_needs_overwrite(split: Path) -> None:
    with pytest.raises(ConfigError, match="already exists"):
        write_split(split, _request())


def test_a_crash_leaves_no_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = writer_module.generate_video

    def flaky(request: GenerationRequest, index: int):
        if index == 2:
            raise RuntimeError("boom")
        return real(request, index)

    monkeypatch.setattr(writer_module, "generate_video", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        write_split(tmp_path / "val", _request(videos=4))
    assert list(tmp_path.iterdir()) == []


def test_knob_overrides_and_errors() -> None:
    knobs = preset("standard").with_overrides(
        ["objects=2,3", "p_hide=0.5", "motions=still,linear", "jpeg_quality=80"]
    )
    assert (knobs.objects, knobs.p_hide, knobs.motions, knobs.jpeg_quality) == (
        (2, 3),
        0.5,
        ("still", "linear"),
        80,
    )
    for bad in (["nope=1"], ["p_hide=2"], ["objects=3,1"], ["motions=fly"], ["speed=fast"], ["objects"]):
        with pytest.raises(ConfigError):
            preset("standard").with_overrides(bad)
    with pytest.raises(ConfigError, match="unknown SynRef difficulty"):
        preset("extreme")
    assert isinstance(preset("hard"), Knobs)


def test_cli_synref_stats_show(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "train"
    result = runner.invoke(
        app,
        [
            "data",
            "synref",
            "--out",
            str(out),
            "--split",
            "train",
            "--videos",
            "3",
            "--frames",
            "6",
            "--size",
            "64x80",
            "--seed",
            "1",
            "--knob",
            "objects=3,4",
            "--json",
            str(tmp_path / "gen.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["data", "stats", str(out), "--json", str(tmp_path / "stats.json")])
    assert result.exit_code == 0, result.output
    stats = _load(tmp_path / "stats.json")
    assert stats["videos"] == 3 and stats["expressions"] > 0
    assert set(stats["tags"]) == set(TAGS) and all(0.0 <= f <= 1.0 for f in stats["tags"].values())
    assert stats == _load(tmp_path / "gen.json")
    result = runner.invoke(
        app, ["data", "show", str(out), "--video", "1", "--out", str(tmp_path / "sheet.png")]
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.size[0] > 4 * 80
    bad = runner.invoke(app, ["data", "synref", "--out", str(tmp_path / "x"), "--size", "64by64"])
    assert isinstance(bad.exception, ConfigError)
    missing = runner.invoke(app, ["data", "stats", str(tmp_path / "nothing")])
    assert "meta_expressions.json not found" in str(missing.exception)
