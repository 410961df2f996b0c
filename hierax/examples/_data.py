"""Access to the seed datasets shipped inside the package."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pandas as pd


def load_csv(name: str) -> pd.DataFrame:
    """The seed table ``<name>.csv`` shipped in ``hierax/examples/data``."""
    with resources.files("hierax.examples").joinpath("data", f"{name}.csv").open("r") as handle:
        return pd.read_csv(handle)


def load_truth(name: str) -> dict[str, Any]:
    """The values that generated ``<name>.csv`` (the JSON beside it)."""
    with resources.files("hierax.examples").joinpath("data", f"{name}.json").open("r") as handle:
        return json.load(handle)
