"""Counts and tag distribution of a SynRef split (``sparrow data stats``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sparrow.errors import DataFormatError

from .language import TAGS
from .query import KINDS
from .reader import read_json


@dataclass(frozen=True)
class SplitStats:
    """Summary of one split.

    Attributes:
        videos, expressions, objects: counts (``objects``: every object of every video).
        tag_counts: expressions carrying each tag (``TAGS``).
        kinds: expressions of each kind (``appearance``, ``spatial``, ...).
        referents: expressions by number of referents.
    """

    videos: int
    expressions: int
    objects: int
    tag_counts: dict[str, int]
    kinds: dict[str, int]
    referents: dict[int, int] = field(default_factory=dict)

    @property
    def tags(self) -> dict[str, float]:
        """Fraction of expressions carrying each tag."""
        return {t: self.tag_counts.get(t, 0) / self.expressions if self.expressions else 0.0 for t in TAGS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "videos": self.videos,
            "expressions": self.expressions,
            "objects": self.objects,
            "tags": self.tags,
            "tag_counts": {t: self.tag_counts.get(t, 0) for t in TAGS},
            "kinds": {k: self.kinds.get(k, 0) for k in KINDS},
            "referents": {str(n): c for n, c in sorted(self.referents.items())},
        }


def split_stats(root: str | Path) -> SplitStats:
    """Read ``meta_expressions.json`` of a SynRef split and count.

    Raises:
        DataFormatError: the file is missing or malformed.
    """
    path = Path(root) / "meta_expressions.json"
    meta = read_json(path, "meta_expressions.json")
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict):
        raise DataFormatError(
            "no 'videos' mapping", path=path, fix="regenerate the split with `sparrow data synref`"
        )
    tags: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    referents: Counter[int] = Counter()
    expressions = objects = 0
    for name, video in videos.items():
        if not isinstance(video, dict) or not isinstance(video.get("expressions"), dict):
            raise DataFormatError(
                f"video {name!r} has no 'expressions' mapping", path=path, fix="regenerate the split"
            )
        objects += len(video.get("objects", {}))
        for exp in video["expressions"].values():
            expressions += 1
            tags.update(exp.get("tags", []))
            kinds[exp.get("kind", "unknown")] += 1
            referents[len(exp.get("obj_id", []))] += 1
    return SplitStats(len(videos), expressions, objects, dict(tags), dict(kinds), dict(referents))


def print_stats(stats: SplitStats, console: Console, title: str = "SynRef split") -> None:
    """Print the counts, the tag fractions and the kinds as rich tables."""
    counts = Table(title=title, show_header=False)
    counts.add_row("videos", str(stats.videos))
    counts.add_row("expressions", str(stats.expressions))
    counts.add_row("objects", str(stats.objects))
    if stats.videos:
        counts.add_row("expressions / video", f"{stats.expressions / stats.videos:.2f}")
    console.print(counts)
    tags = Table(title="tags (fraction of expressions)")
    tags.add_column("tag")
    tags.add_column("expressions", justify="right")
    tags.add_column("fraction", justify="right")
    for tag, frac in stats.tags.items():
        tags.add_row(tag, str(stats.tag_counts.get(tag, 0)), f"{frac:.1%}")
    console.print(tags)
    kinds = Table(title="expression kinds")
    kinds.add_column("kind")
    kinds.add_column("expressions", justify="right")
    for kind in KINDS:
        kinds.add_row(kind, str(stats.kinds.get(kind, 0)))
    console.print(kinds)
