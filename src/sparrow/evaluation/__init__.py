"""Evaluation with official-parity metrics (see ``specs/METRICS.md``).

The J&F core (:mod:`.jf`, :mod:`.statistics`), the VOS protocols (:mod:`.davis`, :mod:`.mevis`,
:mod:`.refdavis`, :mod:`.revos`, :mod:`.identity`), the SynRef diagnostic report (:mod:`.synref_report`)
and the grounding/caption protocols. Shared helpers: :mod:`.parallel` (order-preserving process map)
and :mod:`.report` (JSON, tables).
"""

from __future__ import annotations

from sparrow.evaluation.davis import DavisResult, evaluate_davis
from sparrow.evaluation.gcg import GcgResult, evaluate_gcg
from sparrow.evaluation.identity import IdentityResult, evaluate_identity
from sparrow.evaluation.jf import f_measure, jaccard, jf_series
from sparrow.evaluation.mevis import MevisResult, evaluate_mevis
from sparrow.evaluation.parallel import default_workers, parallel_map
from sparrow.evaluation.refdavis import (
    RefDavisReferFormerResult,
    evaluate_refdavis_per_expression,
    evaluate_refdavis_referformer,
)
from sparrow.evaluation.report import print_table, write_json
from sparrow.evaluation.revos import RevosResult, evaluate_revos
from sparrow.evaluation.statistics import db_statistics
from sparrow.evaluation.stvg import StvgResult, evaluate_stvg
from sparrow.evaluation.synref_report import SynrefReport, evaluate_synref
from sparrow.evaluation.vg import VgResult, evaluate_vg

__all__ = [
    "DavisResult",
    "GcgResult",
    "IdentityResult",
    "MevisResult",
    "RefDavisReferFormerResult",
    "RevosResult",
    "StvgResult",
    "SynrefReport",
    "VgResult",
    "db_statistics",
    "default_workers",
    "evaluate_davis",
    "evaluate_gcg",
    "evaluate_identity",
    "evaluate_mevis",
    "evaluate_refdavis_per_expression",
    "evaluate_refdavis_referformer",
    "evaluate_revos",
    "evaluate_stvg",
    "evaluate_synref",
    "evaluate_vg",
    "f_measure",
    "jaccard",
    "jf_series",
    "parallel_map",
    "print_table",
    "write_json",
]
