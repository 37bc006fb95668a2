"""Suite-wide test settings: offline, and one compute thread per test process.

``make test`` runs two pytest-xdist workers on a 2-core machine; letting each worker's torch spawn
more threads only makes them fight. These variables are set before any test imports torch.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
