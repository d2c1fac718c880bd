"""Shared test state: the torch device and the parity figures recorded by tests.

Tests record what they measured (KS p-values, relative std differences, max
absolute differences) per family; conftest prints the worst of each at the end
of the run. With pytest-xdist each worker prints its own worst values.
"""
from __future__ import annotations

import torch

TORCH_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

FIGURES: dict[tuple[str, str], tuple[float, str]] = {}
_WORST_IS_MIN = {"ks_p"}


def record_figure(family: str, metric: str, value: float, case: str = "") -> None:
    """Keep the worst ``value`` of ``metric`` for ``family`` (smallest p-value, largest difference)."""
    key = (family, metric)
    old = FIGURES.get(key)
    if old is None or (value < old[0] if metric in _WORST_IS_MIN else value > old[0]):
        FIGURES[key] = (float(value), case)
