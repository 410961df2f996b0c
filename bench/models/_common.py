"""Helpers shared by the model modules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "data"


def codes(column: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """0-based integer codes over the sorted levels (the order hierax's formula uses)."""
    levels = sorted(column.unique().tolist())
    lookup = {level: i for i, level in enumerate(levels)}
    return column.map(lookup).to_numpy(dtype=np.int64), levels


def pick(raw: Mapping[str, np.ndarray], names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named arrays that are present (a missing one is reported as missing later)."""
    return {n: np.asarray(raw[n], dtype=float) for n in names if n in raw}


def seed_table(name: str) -> pd.DataFrame:
    from hierax.examples._data import load_csv

    return load_csv(name)
