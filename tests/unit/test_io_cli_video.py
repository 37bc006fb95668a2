"""``sparrow video probe`` and ``sparrow video frames`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from sparrow.errors import VideoReadError
from sparrow.io import open_video, write_frame_folder, write_video

try:  # the whole CLI, when every command group imports
    from sparrow.cli.app import app as _root

    APP: typer.Typer = _root
    PREFIX = ["video"]
except ImportError:  # another group is mid-edit: test the video group on its own
    from sparrow.cli.video import app as APP

    PREFIX = []

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(APP, [*PREFIX, *args])


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "clip.mp4"
    frames = [np.full((24, 40, 3), 10 * i, np.uint8) for i in range(20)]
    write_video(path, frames, fps=10)
    return path


def test_probe_prints_a_table_and_json(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "info.json"
    result = invoke("probe", str(video), "--json", str(out))
    assert result.exit_code == 0, result.output
    for text in ("frames", "20", "fps", "10", "40 x 24", "2.000 s", "h264"):
        assert text in result.output
    data = json.loads(out.read_text())
    assert (data["num_frames"], data["fps"], data["height"], data["width"], data["kind"]) == (
        20,
        10.0,
        24,
        40,
        "file",
    )


def test_probe_of_a_folder_with_source_fps(tmp_path: Path) -> None:
    write_frame_folder(tmp_path / "f", [np.zeros((6, 8, 3), np.uint8)] * 5)
    result = invoke("probe", str(tmp_path / "f"), "--source-fps", "2.5")
    assert result.exit_code == 0, result.output
    assert "folder" in result.output and "2.000 s" in result.output


def test_probe_error_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xyz"
    bad.write_bytes(b"xyz")
    result = invoke("probe", str(bad))
    assert result.exit_code != 0
    assert isinstance(result.exception, VideoReadError)
    assert "unsupported video extension" in str(result.exception)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ([], list(range(20))),
        (["--every", "7"], [0, 7, 14]),
        (["--num", "3"], [0, 10, 19]),  # round(9.5) = 10 (half to even)
        (["--fps", "2"], [0, 5, 10, 15]),
    ],
)
def test_frames_names_files_by_source_frame(
    video: Path, tmp_path: Path, option: list[str], expected: list[int]
) -> None:
    out = tmp_path / "frames"
    result = invoke(
        "frames", str(video), str(out), *option, "--ext", "png", "--json", str(tmp_path / "f.json")
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.png" for i in expected]
    assert json.loads((tmp_path / "f.json").read_text())["frame_indices"] == expected
    assert f"wrote {len(expected)} of 20 frames" in result.output
    decoded = open_video(video).read(expected).frames
    assert np.array_equal(open_video(out).read().frames, decoded)


def test_frames_usage_errors(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    result = invoke("frames", str(video), str(out), "--every", "2", "--num", "3")
    assert result.exit_code == 2 and "at most one" in result.output
    result = invoke("frames", str(video), str(out), "--num", "50")
    assert result.exit_code == 2 and "more frames than the video has" in result.output
    result = invoke("frames", str(video), str(out), "--ext", "gif")
    assert result.exit_code == 2
    assert not out.exists()


def test_frames_refuses_to_overwrite_unless_asked(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    assert invoke("frames", str(video), str(out), "--num", "2").exit_code == 0
    result = invoke("frames", str(video), str(out), "--num", "3")
    assert result.exit_code != 0 and "already exists" in str(result.exception)
    assert len(list(out.iterdir())) == 2
    assert invoke("frames", str(video), str(out), "--num", "3", "--overwrite").exit_code == 0
    assert len(list(out.iterdir())) == 3


def test_frames_leaves_nothing_when_a_frame_fails(tmp_path: Path) -> None:
    src = tmp_path / "src"
    noise = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    write_frame_folder(src, list(noise))
    broken = src / "00003.jpg"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])  # the header is intact, the pixels are cut
    with Image.open(broken) as im:
        assert im.size == (32, 32)
    out = tmp_path / "out"
    result = invoke("frames", str(src), str(out))
    assert result.exit_code != 0
    assert isinstance(result.exception, VideoReadError) and "00003.jpg" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_help_texts() -> None:
    for command in ("probe", "frames"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "--json" in result.output
