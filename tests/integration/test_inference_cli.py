"""``sparrow ground / chat / predict / demo`` end to end through the real entry point (``main``), with
a randomly initialised tiny model saved to a temporary folder: files, sizes, JSON schema and exit
codes are checked, never accuracy (random weights)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparrow.cli.app import main
from sparrow.data.synref import GenerationRequest, preset, write_split
from sparrow.io import probe_video, write_video
from sparrow.models import SparrowModel, load_config, train_tokenizer

CORPUS = [
    "Can you segment the red square in this video?",
    "Sure, [BOX] [SEG].",
    "Sure, <p> the red square </p> [BOX] [SEG] moves past <p> a blue circle </p> [BOX] [SEG].",
    "Where is the square? It moves left.",
]
H, W, T = 97, 131, 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = load_config("tiny")
    tokenizer = train_tokenizer(CORPUS * 4, config.llm.template, vocab_size=300)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    SparrowModel(config, tokenizer).save_pretrained(folder)
    return folder


def frames(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 50, (t, h, w, 3)).astype(np.uint8)
    for i in range(t):
        video[i, 20:50, 10 + 5 * i : 40 + 5 * i] = (220, 30, 30)
    return video


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, frames(), fps=10)
    return path


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str, stdin: str = ""
) -> tuple[int, str]:
    """Run ``sparrow ARGS`` through ``main()``; returns the exit code and stdout + stderr."""
    monkeypatch.setattr(sys, "argv", ["sparrow", *map(str, args)])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else int(code)), captured.out + captured.err


def test_ground_mp4_writes_masks_json_and_overlay_at_the_original_size(
    model_dir, clip, tmp_path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    code, text = run(
        monkeypatch, capsys, "ground", clip, "the red square", "--out", out, "--model", model_dir,
        "--answer", "template", "--json", tmp_path / "summary.json", "--key-frame", "best",
        "--key-frame-candidates", "2",
    )  # fmt: skip
    assert code == 0, text
    result = json.loads((out / "result.json").read_text())
    assert set(result) >= {"text", "raw_text", "size", "fps", "frame_indices", "phrases", "meta"}
    options = result["meta"]["options"]
    assert (options["key_frame"], options["key_frame_candidates"]) == ("best", 2)
    assert result["meta"]["key_frame"] in (0, T - 1)  # the two candidates: first and last frame
    assert result["size"] == [H, W] and result["frame_indices"] == list(range(T))
    assert result["raw_text"] == "Sure, [BOX] [SEG]."
    (phrase,) = result["phrases"]
    assert set(phrase) >= {"text", "char_span", "masks", "boxes_xyxy", "scores", "spans", "frame_indices"}
    assert len(phrase["masks"]) == T and all(
        m["size"] == [H, W] and isinstance(m["counts"], str) for m in phrase["masks"]
    )
    boxes = np.asarray(phrase["boxes_xyxy"])
    assert boxes.shape == (T, 4) and (boxes[:, [0, 2]] <= W).all() and (boxes[:, [1, 3]] <= H).all()
    assert all(0.0 <= s <= 1.0 for s in phrase["scores"])
    pngs = sorted((out / "masks" / "0").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(T)]
    with Image.open(pngs[0]) as im:
        assert im.size == (W, H) and im.mode == "L"
    info = probe_video(out / "overlay.mp4")
    assert (info.num_frames, info.height, info.width) == (T, H, W)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["phrases"][0]["text"] == "the red square" and summary["num_frames"] == T


def test_ground_grey_frame_folder_in_the_mevis_layout(model_dir, tmp_path, monkeypatch, capsys) -> None:
    folder = tmp_path / "grey"
    folder.mkdir()
    for i, frame in enumerate(frames(4, 40, 52)):
        Image.fromarray(frame.mean(axis=-1).astype(np.uint8)).save(folder / f"frame{i}.png")
    out = tmp_path / "out"
    code, text = run(
        monkeypatch, capsys, "ground", folder, "the red square", "--out", out, "--model", model_dir,
        "--answer", "template", "--format", "mevis", "--overlay", tmp_path / "ov.mp4",
    )  # fmt: skip
    assert code == 0, text
    pngs = sorted((out / "mevis" / "grey" / "0").glob("*.png"))
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    assert probe_video(tmp_path / "ov.mp4").num_frames == 4


def test_ground_one_frame_video_with_generation(model_dir, tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "one.mp4"
    write_video(path, frames(1), fps=5)
    code, text = run(
        monkeypatch, capsys, "ground", path, "Where is the red square?", "--out", tmp_path / "out",
        "--model", model_dir, "--max-new-tokens", "4", "--format", "json", "--no-overlay",
    )  # fmt: skip
    assert code == 0, text
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["frame_indices"] == [0] and not (tmp_path / "out" / "overlay.mp4").exists()
    options = result["meta"]["options"]  # flags left out: the model's saved settings
    assert (options["key_frame"], options["propagation"]) == ("first", "video")


def test_bad_inputs_exit_2_with_a_message(model_dir, clip, tmp_path, monkeypatch, capsys) -> None:
    base = ["ground", clip, "the red square", "--out", tmp_path / "o", "--answer", "template"]
    code, text = run(monkeypatch, capsys, *base, "--model", tmp_path / "no-model")
    assert (
        code == 2 and "model folder not found" in text and "sparrow train" in text and "Traceback" not in text
    )
    code, text = run(monkeypatch, capsys, "ground", clip, "  ", "--out", tmp_path / "o", "--model", model_dir)
    assert code == 2 and "prompt is empty" in text
    code, text = run(
        monkeypatch,
        capsys,
        "ground",
        tmp_path / "none.mp4",
        "x",
        "--out",
        tmp_path / "o",
        "--model",
        model_dir,
    )
    assert code == 2 and "not found" in text
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    code, text = run(monkeypatch, capsys, *base, "--model", broken)
    assert code == 2 and "corrupt" in text and "Traceback" not in text


def test_chat_reads_turns_from_stdin(model_dir, clip, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "chat"
    code, text = run(
        monkeypatch, capsys, "chat", clip, "--out", out, "--model", model_dir, "--answer", "template",
        stdin="the red square\n/reset\n\nWhat moves?\n/quit\nnever read\n",
    )  # fmt: skip
    assert code == 0, text
    assert text.count("> ") == 2 and "history cleared" in text
    assert sorted(p.name for p in out.iterdir()) == [
        "turn_00.json",
        "turn_00.mp4",
        "turn_01.json",
        "turn_01.mp4",
    ]
    assert json.loads((out / "turn_01.json").read_text())["meta"]["question"] == "What moves?"


@pytest.fixture(scope="module")
def synref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synref") / "val"
    request = GenerationRequest(
        split="val",
        videos=2,
        frames=4,
        size=(48, 64),
        seed=3,
        difficulty="standard",
        knobs=preset("standard"),
    )
    write_split(root, request)
    return root


def test_predict_writes_the_mevis_layout_that_eval_scores(
    model_dir, synref, tmp_path, monkeypatch, capsys
) -> None:
    meta = json.loads((synref / "meta_expressions.json").read_text())["videos"]
    out = tmp_path / "pred"
    args = ["predict", "--dataset", "mevis", "--root", synref, "--out", out, "--model", model_dir]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, text = run(monkeypatch, capsys, *args, "--answer", "template")
    assert code == 0, text
    assert [p.name for p in out.iterdir()] == [sorted(meta)[1]]  # rank 1 of 2: the second video
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    code, text = run(monkeypatch, capsys, *args, "--answer", "template", "--json", tmp_path / "p.json")
    assert code == 0, text
    assert json.loads((tmp_path / "p.json").read_text())["predicted"] == [
        sorted(meta)[0]
    ]  # the other was done
    for video, entry in meta.items():
        for exp_id in entry["expressions"]:
            names = sorted(p.stem for p in (out / video / exp_id).glob("*.png"))
            assert names == entry["frames"]
            with Image.open(out / video / exp_id / "00000.png") as im:
                assert im.size == (64, 48)
    code, text = run(
        monkeypatch, capsys, "eval", "mevis", "--gt", synref, "--results", out, "--json", tmp_path / "s.json",
        "--workers", "1", "--strict",
    )  # fmt: skip
    assert code == 0, text
    scores = json.loads((tmp_path / "s.json").read_text())
    assert 0.0 <= scores["J&F"] <= 1.0 and not scores["dropped"] and not scores["missing_videos"]
    code, text = run(monkeypatch, capsys, "predict", "--dataset", "davis17", "--root", synref, "--out", out)
    assert code == 2 and "does not write" in text


def test_demo_without_a_bundled_model_checks_the_ground_truth(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sparrow.inference.model_path.bundled_model_dir", lambda: tmp_path / "not-installed")
    out = tmp_path / "demo"
    code, text = run(monkeypatch, capsys, "demo", "--out", out, "--frames", "5", "--expressions", "2")
    assert code == 0, text
    assert "No trained bundled model" in text and "synref_tiny.yaml" in text and "1.0000" in text
    summary = json.loads((out / "demo.json").read_text())
    assert summary["ground_truth_self_check"]["J&F"] == 1.0 and summary["prediction"] is None
    assert probe_video(out / "clip.mp4").num_frames == 5
    assert probe_video(out / "ground_truth.mp4").num_frames == 5
    assert len(json.loads((out / "ground_truth.json").read_text())["expressions"]) == 2
    assert not (out / "prediction.mp4").exists()


def test_demo_with_a_model_folder_scores_its_predictions(model_dir, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "demo"
    code, text = run(
        monkeypatch, capsys, "demo", "--out", out, "--frames", "4", "--expressions", "1", "--model", model_dir
    )
    assert code == 0, text
    summary = json.loads((out / "demo.json").read_text())
    assert summary["model"] == str(model_dir) and 0.0 <= summary["prediction"]["J&F"] <= 1.0
    assert probe_video(out / "prediction.mp4").num_frames == 4


def test_demo_on_your_own_video(model_dir, clip, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sparrow.inference.model_path.bundled_model_dir", lambda: tmp_path / "not-installed")
    code, text = run(monkeypatch, capsys, "demo", "--video", clip, "--out", tmp_path / "a")
    assert code == 0 and "No trained bundled model" in text and (tmp_path / "a" / "frames.png").is_file()
    code, text = run(
        monkeypatch, capsys, "demo", "--video", clip, "--out", tmp_path / "b", "--model", model_dir
    )
    assert code == 2 and "--prompt" in text
    code, text = run(
        monkeypatch, capsys, "demo", "--video", clip, "--out", tmp_path / "c", "--model", model_dir,
        "--prompt", "the red square",
    )  # fmt: skip
    assert code == 0, text
    assert json.loads((tmp_path / "c" / "prompt_0.json").read_text())["size"] == [H, W]
    assert probe_video(tmp_path / "c" / "prompt_0.mp4").num_frames == T
