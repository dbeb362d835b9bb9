"""Datasets: image/mask pairs on disk, splits, augmentation, synthetic data."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """Where the real datasets live: ``$BANET_DATA``, else ``../shared/data`` beside this checkout.

    The one definition read by the export's parity default, the bench's ``--data`` default, the
    reference commands and the tests (read at each call, so a changed ``BANET_DATA`` is seen).
    """
    return Path(os.environ.get("BANET_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def kvasir_split(split: str = "test") -> str:
    """``ROOT:SPLIT`` of the Kvasir-SEG copy under :func:`data_root`, the default data of every command."""
    return f"{data_root() / 'kvasir-seg'}:{split}"
