"""Video reading and writing: probe, streamed frames, windows, seeks, frame folders, errors, atomicity."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from sparrow.errors import VideoReadError, VideoWriteError
from sparrow.io import (
    DEFAULT_FOLDER_FPS,
    list_frame_files,
    natural_key,
    open_video,
    probe_video,
    write_frame_folder,
    write_image,
    write_video,
)
from sparrow.io.pyav_source import PyAVSource


def level(i: int) -> int:
    """Grey level of synthetic frame ``i`` (distinct for neighbouring frames, far from clipping)."""
    return 24 + (i * 37) % 200


def make_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Frame ``i``: flat ``level(i)`` in red, a bar moving right in green, a fixed ramp in blue."""
    ramp = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    frames = []
    for i in range(n):
        f = np.empty((h, w, 3), np.uint8)
        f[..., 0] = level(i)
        f[..., 1] = 40
        f[:, (i * 3) % w : (i * 3) % w + 4, 1] = 220
        f[..., 2] = ramp
        frames.append(f)
    return frames


def red_levels(frames: np.ndarray) -> np.ndarray:
    """Median red value per frame ``(T,)``, to identify frames after lossy coding."""
    return np.median(frames[..., 0].reshape(len(frames), -1), axis=1)


def encode_with_pyav(path: Path, codec: str, frames: list[np.ndarray], fps: int) -> None:
    """Write a file with a codec our writer does not use (VP8 WebM, MPEG-4 Part 2 AVI)."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames, 48x64, 5 fps: a key frame at least every 10 frames (the writer's 2-second GOP)."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    assert write_video(path, make_frames(60, 48, 64), fps=5) == 60
    return path


# ----------------------------------------------------------------------------- probe and read
def test_probe_of_written_mp4(mp4: Path) -> None:
    info = probe_video(mp4)
    assert (info.kind, info.num_frames, info.fps, info.height, info.width) == ("file", 60, 5.0, 48, 64)
    assert info.duration_s == pytest.approx(12.0)
    assert info.codec == "h264"
    assert info.size == (48, 64)
    assert info.to_dict()["num_frames"] == 60


def test_read_all_frames_in_order(mp4: Path) -> None:
    with open_video(mp4) as reader:
        clip = reader.read()
    assert clip.frames.shape == (60, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.frame_indices.tolist() == list(range(60))
    assert clip.fps == 5.0
    expected = np.asarray([level(i) for i in range(60)])
    assert np.all(np.abs(red_levels(clip.frames) - expected) <= 4)


def test_iter_frames_and_sparse_reads_match_read(mp4: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = open_video(mp4)
    full = reader.read().frames
    streamed = list(reader.iter_frames())
    assert [i for i, _ in streamed] == list(range(60))
    assert all(np.array_equal(f, full[i]) for i, f in streamed)

    seeks: list[int] = []
    original = PyAVSource._seek_target

    def spy(self: PyAVSource, target: int, next_index: int) -> int | None:
        key = original(self, target, next_index)
        if key is not None:
            seeks.append(key)
        return key

    monkeypatch.setattr(PyAVSource, "_seek_target", spy)
    for wanted in ([0, 1, 2], [5, 33, 34, 59], [59], list(range(3, 60, 11))):
        seeks.clear()
        clip = reader.read(wanted)
        assert clip.frame_indices.tolist() == wanted
        assert np.array_equal(clip.frames, full[wanted])
        if wanted[0] >= 10:
            assert seeks, "a far first frame should be reached by seeking to a key frame"
        if wanted == [0, 1, 2]:
            assert not seeks


@pytest.mark.parametrize(
    ("size", "stride", "indices", "expected"),
    [
        (4, None, None, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]),
        (4, 2, None, [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]),
        (2, 5, None, [[0, 1], [5, 6]]),
        (3, None, [1, 4, 7, 8, 9], [[1, 4, 7], [8, 9]]),
        (20, None, None, [list(range(10))]),
    ],
)
def test_windows_stream_the_same_frames(
    mp4: Path, size: int, stride: int | None, indices: list[int] | None, expected: list[list[int]]
) -> None:
    reader = open_video(mp4)
    full = reader.read(list(range(10))).frames
    wanted = indices if indices is not None else list(range(10))
    windows = list(reader.windows(size, stride=stride, indices=wanted))
    assert [w.frame_indices.tolist() for w in windows] == expected
    for w in windows:
        assert np.array_equal(w.frames, full[w.frame_indices])


def test_windows_cover_the_whole_video_and_are_lazy(mp4: Path) -> None:
    reader = open_video(mp4)
    windows = reader.windows(8)
    first = next(windows)
    assert first.frame_indices.tolist() == list(range(8))
    rest = list(windows)
    assert np.concatenate([first.frame_indices] + [w.frame_indices for w in rest]).tolist() == list(range(60))


@pytest.mark.parametrize(("size", "stride"), [(0, None), (2, 0), (1.5, None), (True, None)])
def test_windows_reject_bad_sizes(mp4: Path, size: object, stride: object) -> None:
    with pytest.raises(ValueError):
        next(open_video(mp4).windows(size, stride=stride))  # type: ignore[arg-type]


@pytest.mark.parametrize("ext", [".mkv", ".mov"])
def test_other_h264_containers(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"v{ext}"
    write_video(path, make_frames(12, 32, 48), fps=12)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.size) == (12, 12.0, (32, 48))
    clip = open_video(path).read()
    assert np.all(np.abs(red_levels(clip.frames) - [level(i) for i in range(12)]) <= 4)


@pytest.mark.parametrize(("ext", "codec"), [(".webm", "libvpx"), (".avi", "mpeg4")])
def test_webm_and_avi(tmp_path: Path, ext: str, codec: str) -> None:
    path = tmp_path / f"v{ext}"
    encode_with_pyav(path, codec, make_frames(10, 32, 48), fps=10)
    info = probe_video(path)
    assert (info.num_frames, info.fps, info.size) == (10, 10.0, (32, 48))
    reader = open_video(path)
    clip = reader.read()
    assert clip.frames.shape == (10, 32, 48, 3)
    assert np.all(np.abs(red_levels(clip.frames) - [level(i) for i in range(10)]) <= 8)
    assert np.array_equal(reader.read([3, 7]).frames, clip.frames[[3, 7]])


def test_odd_size_video_keeps_its_size(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    frames = make_frames(8, 97, 131)
    write_video(path, frames, fps=8)
    info = probe_video(path)
    assert (info.height, info.width, info.num_frames) == (97, 131, 8)
    clip = open_video(path).read()
    assert clip.frames.shape == (8, 97, 131, 3)
    assert np.abs(clip.frames.astype(int) - np.stack(frames)).mean() < 3
    # the pad is only a container-level tag; the H.264 stream itself is even-sized
    with av.open(str(path)) as c:
        assert (c.streams.video[0].height, c.streams.video[0].width) == (98, 132)


def test_grayscale_frames_become_rgb(tmp_path: Path) -> None:
    path = tmp_path / "grey.mp4"
    write_video(path, [np.full((30, 40), 20 * i + 30, np.uint8) for i in range(6)], fps=6)
    clip = open_video(path).read()
    assert clip.frames.shape == (6, 30, 40, 3)
    f = clip.frames.astype(int)
    assert np.abs(f[..., 0] - f[..., 1]).max() <= 2 and np.abs(f[..., 0] - f[..., 2]).max() <= 2
    assert np.all(np.abs(f[..., 0].mean(axis=(1, 2)) - (20 * np.arange(6) + 30)) <= 3)


# ----------------------------------------------------------------------------- frame folders
def test_natural_sort() -> None:
    names = ["frame10.jpg", "frame2.jpg", "frame1.jpg", "Frame3.png", "frame10b.jpg"]
    assert sorted(names, key=natural_key) == [
        "frame1.jpg",
        "frame2.jpg",
        "Frame3.png",
        "frame10.jpg",
        "frame10b.jpg",
    ]


def test_frame_folder_order_and_frames(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    colours = {"frame1.png": 10, "frame2.png": 20, "frame10.png": 100, "frame9.png": 90}
    for name, value in colours.items():
        Image.fromarray(np.full((5, 7, 3), value, np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("ignored")
    (folder / ".hidden.png").write_bytes(b"ignored")
    assert [p.name for p in list_frame_files(folder)] == [
        "frame1.png",
        "frame2.png",
        "frame9.png",
        "frame10.png",
    ]
    info = probe_video(folder)
    assert (info.kind, info.num_frames, info.fps, info.size, info.codec) == (
        "folder",
        4,
        DEFAULT_FOLDER_FPS,
        (5, 7),
        "png",
    )
    assert probe_video(folder, fps=12.5).duration_s == pytest.approx(4 / 12.5)
    clip = open_video(folder).read()
    assert clip.frames[:, 0, 0, 0].tolist() == [10, 20, 90, 100]
    assert [i for i, _ in open_video(folder).iter_frames([1, 3])] == [1, 3]


def test_grayscale_and_odd_size_folder_frames(tmp_path: Path) -> None:
    folder = tmp_path / "grey"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((97, 131), 50 * i, np.uint8), mode="L").save(folder / f"{i:05d}.png")
    clip = open_video(folder).read()
    assert clip.frames.shape == (3, 97, 131, 3) and clip.frames.dtype == np.uint8
    assert clip.frames[2].min() == clip.frames[2].max() == 100


def test_write_frame_folder_round_trip(tmp_path: Path, mp4: Path) -> None:
    out = tmp_path / "out"
    reader = open_video(mp4)
    assert write_frame_folder(out, reader.iter_frames([2, 11, 40]), ext="png") == 3
    assert sorted(p.name for p in out.iterdir()) == ["00002.png", "00011.png", "00040.png"]
    again = open_video(out).read()
    assert np.array_equal(again.frames, reader.read([2, 11, 40]).frames)  # png is lossless
    plain = tmp_path / "plain"
    write_frame_folder(plain, make_frames(3, 8, 8), start=7, name_format="img_{:03d}")
    assert sorted(p.name for p in plain.iterdir()) == ["img_007.jpg", "img_008.jpg", "img_009.jpg"]
    with pytest.raises(VideoWriteError, match="already exists"):
        write_frame_folder(plain, make_frames(1, 8, 8))
    write_frame_folder(plain, make_frames(1, 8, 8), overwrite=True)
    assert [p.name for p in plain.iterdir()] == ["00000.jpg"]


def test_write_image(tmp_path: Path) -> None:
    image = make_frames(1, 9, 11)[0]
    write_image(tmp_path / "a.png", image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)
    with pytest.raises(VideoWriteError, match="extension"):
        write_image(tmp_path / "a.gif", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# ----------------------------------------------------------------------------- bad inputs
def _assert_names_file(err: pytest.ExceptionInfo[VideoReadError], path: Path) -> None:
    text = str(err.value)
    assert str(path) in text and "fix:" in text


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoReadError, match="not found") as err:
        probe_video(path)
    _assert_names_file(err, path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(VideoReadError, match="empty") as err:
        open_video(path)
    _assert_names_file(err, path)


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.99])
def test_truncated_mp4(tmp_path: Path, mp4: Path, keep: float) -> None:
    data = mp4.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(VideoReadError) as err:
        probe_video(path)
    assert any(word in str(err.value) for word in ("truncated", "corrupt", "no video stream"))
    _assert_names_file(err, path)


@pytest.mark.parametrize("ext", [".mkv", ".webm"])
def test_truncated_matroska_has_no_header_count(tmp_path: Path, ext: str) -> None:
    src = tmp_path / f"full{ext}"
    if ext == ".mkv":
        write_video(src, make_frames(30, 32, 48), fps=10)
    else:
        encode_with_pyav(src, "libvpx", make_frames(30, 32, 48), fps=10)
    assert probe_video(src).num_frames == 30
    data = src.read_bytes()
    path = tmp_path / f"cut{ext}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="truncated or corrupt") as err:
        probe_video(path)
    _assert_names_file(err, path)


def test_garbage_bytes(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="not a readable video") as err:
        probe_video(path)
    _assert_names_file(err, path)


def test_unsupported_extension(tmp_path: Path, mp4: Path) -> None:
    path = tmp_path / "clip.xyz"
    path.write_bytes(mp4.read_bytes())
    with pytest.raises(VideoReadError, match=r"unsupported video extension '\.xyz'") as err:
        probe_video(path)
    _assert_names_file(err, path)


def test_empty_frame_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(VideoReadError, match="holds no images") as err:
        open_video(tmp_path)
    _assert_names_file(err, tmp_path)


def test_frame_folder_with_mixed_sizes(tmp_path: Path) -> None:
    for i, (h, w) in enumerate([(10, 10), (10, 10), (12, 10)]):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / f"{i}.jpg")
    with pytest.raises(VideoReadError, match="mixes frame sizes") as err:
        probe_video(tmp_path)
    _assert_names_file(err, tmp_path)


def test_corrupt_image_in_frame_folder(tmp_path: Path) -> None:
    write_frame_folder(tmp_path / "f", make_frames(3, 16, 16))
    (tmp_path / "f" / "00001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VideoReadError, match="cannot read frame image") as err:
        probe_video(tmp_path / "f")
    _assert_names_file(err, tmp_path / "f" / "00001.jpg")


@pytest.mark.parametrize("indices", [[60], [-1], [0, 70], [5, 3], [1, 1]])
def test_index_out_of_range_or_unordered(mp4: Path, indices: list[int]) -> None:
    reader = open_video(mp4)
    with pytest.raises(VideoReadError, match="bad frame indices") as err:
        reader.read(indices)
    _assert_names_file(err, mp4)
    with pytest.raises(VideoReadError):
        reader.iter_frames(indices)  # raised before decoding starts


def test_invalid_folder_fps(mp4: Path) -> None:
    with pytest.raises(ValueError, match="fps"):
        probe_video(mp4, fps=0)


# ----------------------------------------------------------------------------- atomic writers
def test_write_video_errors_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(VideoWriteError, match="no frames"):
        write_video(tmp_path / "a.mp4", [], fps=5)
    bad_sizes = make_frames(3, 16, 16) + make_frames(1, 18, 16)
    with pytest.raises(VideoWriteError, match="the first was 16x16"):
        write_video(tmp_path / "b.mp4", bad_sizes, fps=5)
    with pytest.raises(VideoWriteError, match="uint8"):
        write_video(tmp_path / "c.mp4", [np.zeros((8, 8, 3), np.float32)], fps=5)
    with pytest.raises(VideoWriteError, match=r"cannot write H\.264"):
        write_video(tmp_path / "d.webm", make_frames(2, 8, 8), fps=5)
    with pytest.raises(VideoWriteError, match="fps"):
        write_video(tmp_path / "e.mp4", make_frames(2, 8, 8), fps=0)

    def crashing():
        yield from make_frames(3, 16, 16)
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        write_video(tmp_path / "f.mp4", crashing(), fps=5)
    with pytest.raises(RuntimeError, match="producer died"):
        write_frame_folder(tmp_path / "g", crashing())
    assert list(tmp_path.iterdir()) == []


def test_write_video_does_not_clobber_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "keep.mp4"
    write_video(path, make_frames(4, 16, 16), fps=4)
    before = path.read_bytes()
    with pytest.raises(VideoWriteError):
        write_video(path, make_frames(2, 16, 16) + make_frames(1, 8, 8), fps=4)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.mp4"]


def test_write_frame_folder_errors_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(VideoWriteError, match="no frames"):
        write_frame_folder(tmp_path / "a", [])
    with pytest.raises(VideoWriteError, match="unknown image extension"):
        write_frame_folder(tmp_path / "b", make_frames(1, 8, 8), ext="gif")
    with pytest.raises(VideoWriteError, match="both named"):
        write_frame_folder(tmp_path / "c", [(1, make_frames(1, 8, 8)[0])] * 2)
    with pytest.raises(VideoWriteError, match="must be"):
        write_frame_folder(tmp_path / "d", [np.zeros((8, 8, 4), np.uint8)])
    assert list(tmp_path.iterdir()) == []
