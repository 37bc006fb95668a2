"""Readers and writers of the public dataset layouts, one module per format.

Readers return a :class:`~sparrow.data.records.DatasetSplit` of lazy records (no pixel is decoded);
writers produce the exact layout each official evaluator or server expects, atomically.
"""

from __future__ import annotations

from .davis import davis_results_writer, read_davis
from .mevis import MevisSplitWriter, mevis_results_writer, read_mevis
from .mevis import has_split as has_mevis_split
from .refdavis import RefDavisWriter, read_ref_davis, refdavis_labels
from .revos import read_revos, revos_results_writer
from .sequences import parse_groundtruth, read_sparrow_sequences
from .stvg import StvgPrediction, read_hcstvg, read_vidstg, write_stvg_predictions
from .videogcg import GcgWriter, read_videogcg
from .ytvos import read_ref_youtube_vos, ref_youtube_vos_writer

__all__ = [
    "GcgWriter",
    "MevisSplitWriter",
    "RefDavisWriter",
    "StvgPrediction",
    "davis_results_writer",
    "has_mevis_split",
    "mevis_results_writer",
    "parse_groundtruth",
    "read_davis",
    "read_hcstvg",
    "read_mevis",
    "read_ref_davis",
    "read_ref_youtube_vos",
    "read_revos",
    "read_sparrow_sequences",
    "read_videogcg",
    "read_vidstg",
    "ref_youtube_vos_writer",
    "refdavis_labels",
    "revos_results_writer",
    "write_stvg_predictions",
]
