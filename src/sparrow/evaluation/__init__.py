"""Evaluation with official-parity metrics (see ``specs/METRICS.md``).

The J&F core (:mod:`.jf`, :mod:`.statistics`), the VOS protocols (:mod:`.davis`, :mod:`.mevis`,
:mod:`.refdavis`, :mod:`.revos`, :mod:`.identity`) and the grounding/caption protocols. Shared
helpers: :mod:`.parallel` (order-preserving process map) and :mod:`.report` (JSON, tables).
"""

from __future__ import annotations

from sparrow.evaluation.gcg import GcgResult, evaluate_gcg
from sparrow.evaluation.parallel import default_workers, parallel_map
from sparrow.evaluation.report import print_table, write_json
from sparrow.evaluation.stvg import StvgResult, evaluate_stvg
from sparrow.evaluation.vg import VgResult, evaluate_vg

__all__ = [
    "GcgResult",
    "StvgResult",
    "VgResult",
    "default_workers",
    "evaluate_gcg",
    "evaluate_stvg",
    "evaluate_vg",
    "parallel_map",
    "print_table",
    "write_json",
]
