"""``python -m sparrow ...``: the ``sparrow`` command (also ``torchrun ... -m sparrow train ...``)."""

from __future__ import annotations

if __name__ == "__main__":
    from sparrow.cli.app import main

    main()
