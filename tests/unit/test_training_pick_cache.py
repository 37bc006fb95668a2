"""The pick cache of a stage-3 ``cache: true`` stage: built once, atomically, read back per dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from sparrow.errors import CheckpointError, ConfigError
from sparrow.models import PickBatch
from sparrow.training.pick_cache import ROWS_FILE, build_pick_cache, load_pick_sources


class Source:
    """Items 0..n-1 of a dataset; item i has i % 2 + 1 [BOX] rows."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def __len__(self) -> int:
        return self.n

    def build(self, index: int, seed: int) -> int:
        assert seed == 0  # one sample per item, built as validation builds it
        return index

    def sample_id(self, index: int) -> str:
        return f"{self.name}-{index}"


class Batch:
    def __init__(self, items: list[int]) -> None:
        counts = [i % 2 + 1 for i in items]
        self.items = torch.tensor(items).repeat_interleave(torch.tensor(counts))
        self.box_sample = torch.arange(len(items)).repeat_interleave(torch.tensor(counts))
        self.box_valid = torch.ones(len(self.box_sample), dtype=torch.bool)

    def to(self, device: torch.device) -> Batch:
        return self


class Model(nn.Module):
    """Rows whose state is the item index, so a row tells where it came from."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.calls, self.fail_after = 0, fail_after

    def pick_inputs(self, batch: Batch) -> PickBatch:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("killed")
        r, k = len(batch.items), 3
        words = torch.arange(1, int(batch.items.max()) + 2)[None].repeat(r, 1)
        return PickBatch(
            states=batch.items[:, None].float().repeat(1, 4),
            words=words,
            word_mask=words <= batch.items[:, None] + 1,
            features=torch.zeros(r, k, 2),
            boxes=torch.full((r, k, 4), 0.5),
            logits=torch.zeros(r, k),
            fine=None,
            targets=torch.full((r, 4), 0.5),
        )


def _build(folder: Path, model: nn.Module, sources: list[Source]) -> None:
    build_pick_cache(model, sources, Batch, folder, device=torch.device("cpu"), batch_size=2, progress=False)


def test_rows_read_back_per_dataset_with_their_items(tmp_path: Path) -> None:
    sources = [Source("a", 5), Source("b", 2)]
    _build(tmp_path / "cache", Model(), sources)
    a, b = load_pick_sources(tmp_path / "cache", sources)
    assert (a.name, len(a), b.name, len(b)) == ("a", 7, "b", 3)  # 1 + 2 + 1 + 2 + 1 rows, 1 + 2
    row = a.build(4, seed=123)  # the same row whatever the seed
    assert len(row) == 1 and row.states[0, 0] == 3 and a.sample_id(4) == "a-3"
    assert row.words.tolist() == [[1, 2, 3, 4]] and row.word_mask.all()  # padding trimmed to its words
    assert (tmp_path / "cache" / "summary.json").read_text().count('"a": 7') == 1


def test_a_killed_build_leaves_nothing_and_another_recipe_is_refused(tmp_path: Path) -> None:
    sources = [Source("a", 5)]
    with pytest.raises(RuntimeError, match="killed"):
        _build(tmp_path / "cache", Model(fail_after=2), sources)
    assert not (tmp_path / "cache").exists() and not any(tmp_path.iterdir())
    _build(tmp_path / "cache", Model(), sources)
    assert (tmp_path / "cache" / ROWS_FILE).is_file()
    with pytest.raises(CheckpointError, match="delete the pick_cache folder"):
        load_pick_sources(tmp_path / "cache", [Source("other", 5)])


def test_a_model_without_pick_inputs_cannot_build_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot train on a pick cache"):
        _build(tmp_path / "cache", nn.Linear(2, 2), [Source("a", 2)])
