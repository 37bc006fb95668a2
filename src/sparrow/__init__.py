"""sparrow: pixel-grounded video MLLM (SPARROW) with evaluation, data formats and SynRef.

The public entry points live in the sub-packages:

- :mod:`sparrow.structures` -- typed containers (``VideoClip``, ``Masklet``, ``GroundingResult``)
  and box / mask / RLE operations.
- :mod:`sparrow.io` -- streamed video reading and writing, mask files.
- :mod:`sparrow.evaluation` -- official-parity benchmark metrics.
- :mod:`sparrow.data` -- dataset records, public formats and the SynRef generator.
- :mod:`sparrow.models`, :mod:`sparrow.training`, :mod:`sparrow.inference` -- the model.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
