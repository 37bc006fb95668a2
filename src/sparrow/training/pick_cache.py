"""Stage 3 on a cache: the frozen model's pick inputs, taken once, trained on for many epochs.

In stage 3 only the pick trains (the ``[BOX]`` MLP, the question bag, the filtration head); what it
reads -- the LLM's ``[BOX]`` states, the question's words, the key frame's proposals and their
fine-map crops -- comes from frozen parts. A stage with ``cache: true`` therefore has rank 0 compute
it once at the stage's start (:meth:`SparrowModel.pick_inputs
<sparrow.models.sparrow.SparrowModel.pick_inputs>`) for every item of every training dataset, one
sample per item built with seed 0 (its clip and key frame, as validation builds them), and write it
to the stage folder::

    RUN/<index>-match/pick_cache/rows.pt     written atomically (a killed build is redone)
    RUN/<index>-match/pick_cache/summary.json

Every rank then trains on the rows: one :class:`PickRowSource` per dataset (the mixture's weights
apply as before), one item per ``[BOX]`` row with a target on its key frame; batches are
:class:`~sparrow.models.batch.PickBatch` es. A step costs the pick's layers alone (the bundled
recipe: 6.5 min to build the cache of its 4,331 rows, then about 5 min for 25 passes with two CPU
threads, against some 30 min for 1.5 passes uncached). The cache depends only on the stage's start
model and the data, so a resumed stage reuses it; the sampler, checkpoints and exact resume work as
for any stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from sparrow.errors import CheckpointError, ConfigError
from sparrow.models.batch import PickBatch

from .checkpoint import durable_dir, load_torch, save_torch
from .task import SampleSource

CACHE_DIR = "pick_cache"
ROWS_FILE = "rows.pt"
CACHE_FORMAT = 1


class PickRowSource:
    """The cached rows of one training dataset as a :class:`~.task.SampleSource`: item ``i`` is row
    ``i`` (a one-row :class:`PickBatch`, whatever the seed: the row is fixed)."""

    def __init__(self, source: SampleSource, rows: PickBatch, items: Tensor) -> None:
        self.name = source.name
        self.source = source
        self.rows = rows
        self.items = items

    def __len__(self) -> int:
        return len(self.rows)

    def build(self, index: int, seed: int) -> PickBatch:
        return self.rows.select([index])

    def sample_id(self, index: int) -> str:
        """The id of the dataset item the row comes from."""
        return self.source.sample_id(int(self.items[index]))


@torch.no_grad()
def build_pick_cache(
    model: nn.Module,
    sources: Sequence[SampleSource],
    collate: Callable[[list[Any]], Any],
    folder: Path,
    *,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = True,
) -> None:
    """Write the pick inputs of every item of ``sources`` to ``folder`` (atomically; it must not exist).

    ``model`` must be the frozen stage-3 model with ``pick_inputs`` (it is put in eval mode);
    ``collate`` makes its batches of built samples.

    Raises:
        ConfigError: the model has no ``pick_inputs`` (another task than ``sparrow``), or a
            dataset has no row (no ``[BOX]`` with a target on its key frame).
    """
    if not hasattr(model, "pick_inputs"):
        raise ConfigError(
            f"{type(model).__name__} cannot train on a pick cache (it has no pick_inputs)",
            fix="remove cache: true from the stage",
        )
    model.eval()
    saved: list[dict[str, Any]] = []
    for source in sources:
        parts, items = [], []
        for start in tqdm(
            range(0, len(source), batch_size),
            desc=f"pick cache {source.name}",
            unit="batch",
            disable=not progress,
        ):
            indices = range(start, min(start + batch_size, len(source)))
            batch = collate([source.build(i, 0) for i in indices]).to(device)
            parts.append(model.pick_inputs(batch).to("cpu"))
            items.append(start + batch.box_sample[batch.box_valid].cpu())
        rows = PickBatch.cat(parts)
        if not len(rows):
            raise ConfigError(
                f"dataset {source.name!r} gives no pick row (no [BOX] target on a key frame)",
                fix="train stage 3 on referring data with masks or boxes",
            )
        saved.append({"name": source.name, "rows": vars(rows), "items": torch.cat(items)})
    with durable_dir(folder) as tmp:
        save_torch(tmp / ROWS_FILE, {"format": CACHE_FORMAT, "sources": saved})
        summary = {s["name"]: len(s["items"]) for s in saved}
        (tmp / "summary.json").write_text(json.dumps({"rows": summary}, indent=2) + "\n", encoding="utf-8")


def load_pick_sources(folder: Path, sources: Sequence[SampleSource]) -> list[PickRowSource]:
    """The cached rows of ``folder`` as one source per dataset of ``sources`` (same order).

    Raises:
        CheckpointError: unreadable, of another format, or of other datasets.
    """
    data = load_torch(folder / ROWS_FILE)
    names = [s.name for s in sources]
    if data.get("format") != CACHE_FORMAT or [s["name"] for s in data["sources"]] != names:
        raise CheckpointError(
            f"the pick cache is not of this recipe's datasets {names}",
            path=folder,
            fix="delete the pick_cache folder to rebuild it",
        )
    return [
        PickRowSource(source, PickBatch(**saved["rows"]), saved["items"])
        for source, saved in zip(sources, data["sources"], strict=True)
    ]
