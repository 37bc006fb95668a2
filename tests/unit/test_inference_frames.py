"""Frame sources and the lazy SAM2 frame sequence: order, values, memory bound, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sparrow.errors import ConfigError, VideoReadError
from sparrow.inference.frames import (
    ArrayFrames,
    FrameView,
    ImageFileFrames,
    SamFrames,
    SparseFrames,
    open_frames,
    read_frames,
)
from sparrow.io import write_video


def video(t: int = 40, h: int = 6, w: int = 5) -> np.ndarray:
    """Frame ``i`` is filled with the value ``i`` (so a frame tells its own number)."""
    return np.broadcast_to(np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3)).copy()


class CountingSource(ArrayFrames):
    """An in-memory source that counts decoded frames and decoder openings."""

    def __init__(self, frames: np.ndarray) -> None:
        super().__init__(frames)
        self.decoded = 0
        self.opened = 0

    def iter_frames(self, indices):
        self.opened += 1
        for i, frame in super().iter_frames(indices):
            self.decoded += 1
            yield i, frame


def value(x: torch.Tensor) -> int:
    return int(x[0, 0, 0])


def preprocess(batch: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(batch).permute(0, 3, 1, 2).float()


def test_sam_frames_streams_forward_then_backward_in_bounded_memory() -> None:
    source = CountingSource(video(40))
    frames = SamFrames(source, preprocess, chunk=8)
    key = 17
    order = [key, *range(key + 1, 40), *range(key - 1, -1, -1)]
    seen = []
    for t in order:
        seen.append(value(frames[t]))
        seen.append(value(frames[t]))  # a second reader of the same frame (lock-step targets)
        assert len(frames._cache) <= frames.chunk + 2
    assert seen == [t for t in order for _ in range(2)]
    # forward: one decoder, each frame once; backward: one decoder per chunk of 8
    assert source.decoded == 40
    assert source.opened == 1 + -(-key // 8)
    frames.close()
    assert not frames._cache


def test_sam_frames_random_access_and_negative_index() -> None:
    frames = SamFrames(ArrayFrames(video(10)), preprocess, chunk=3)
    for t in (9, 2, 5, 0, -1, 4):
        assert value(frames[t]) == t % 10
    with pytest.raises(IndexError):
        frames[10]


def test_frame_view_maps_indices() -> None:
    frames = SamFrames(ArrayFrames(video(10)), preprocess)
    view = FrameView(frames, range(6, -1, -1))
    assert len(view) == 7
    assert [value(view[i]) for i in range(7)] == [6, 5, 4, 3, 2, 1, 0]


def test_read_frames_and_sparse_frames_decode_only_what_is_asked() -> None:
    source = CountingSource(video(30))
    got = read_frames(source, [7, 3, 7])
    assert got.shape == (3, 6, 5, 3) and got[:, 0, 0, 0].tolist() == [7, 3, 7]
    sparse = SparseFrames(source, np.array([0, 10, 10, 29]))
    assert len(sparse) == 30
    assert sparse[np.array([29, 0])][:, 0, 0, 0].tolist() == [29, 0]
    assert source.decoded == 2 + 3
    with pytest.raises(KeyError):
        sparse[np.array([5])]


def test_grey_arrays_become_rgb() -> None:
    grey = video(4)[..., 0]
    source = open_frames(grey)
    frame = read_frames(source, [2])[0]
    assert frame.shape == (6, 5, 3) and (frame == 2).all()


def test_image_file_list(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        p = tmp_path / f"f{i}.png"
        Image.fromarray(np.full((7, 9), 40 * i, np.uint8)).save(p)  # grey PNGs
        paths.append(p)
    source = open_frames(paths)
    assert isinstance(source, ImageFileFrames)
    assert (source.num_frames, source.size) == (3, (7, 9))
    assert read_frames(source, [2])[0, 0, 0].tolist() == [80, 80, 80]


def test_video_file_and_folder_paths(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    write_video(path, video(5, 16, 18) * 40, fps=5)
    source = open_frames(path)
    assert (source.num_frames, source.size, source.fps) == (5, (16, 18), 5.0)
    source.close()


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (np.zeros((0, 4, 4, 3), np.uint8), VideoReadError),
        (np.zeros((2, 4, 4, 3), np.float32), VideoReadError),
        (np.zeros((4, 4), np.uint8), VideoReadError),
        (12, ConfigError),
    ],
)
def test_bad_video_inputs_raise_clear_errors(bad: object, error: type) -> None:
    with pytest.raises(error):
        source = open_frames(bad)  # type: ignore[arg-type]
        read_frames(source, [0])


def test_missing_video_path(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match="not found"):
        open_frames(tmp_path / "nope.mp4")
