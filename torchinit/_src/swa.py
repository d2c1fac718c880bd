"""``torch.optim.swa_utils`` under the names of :mod:`jaxinit.optim` (the mirror).

``averaged_model(model, multi_avg_fn, use_buffers)`` is torch's ``AveragedModel``;
``get_ema_multi_avg_fn``, ``get_swa_multi_avg_fn`` and ``update_bn`` are torch's own; the SWA
lr is the schedule :func:`torchinit.optim.swalr` (or torch's ``SWALR``).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.optim import swa_utils as _swa

from _jaxinit.errors import InitError


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    """torch's ``get_ema_multi_avg_fn``: ``lerp_(avg, current, 1 - decay)``."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
        raise InitError(f"get_ema_multi_avg_fn: Invalid decay value {decay!r} provided. Please provide a value in "
                        "[0,1] range (as torch says); e.g. decay=0.999.")
    return _swa.get_ema_multi_avg_fn(decay)


def get_swa_multi_avg_fn() -> Callable:
    """torch's ``get_swa_multi_avg_fn``: ``lerp_(avg, current, 1 / (n + 1))``."""
    return _swa.get_swa_multi_avg_fn()


def averaged_model(model: torch.nn.Module, multi_avg_fn: Callable | None = None,
                   use_buffers: bool = False) -> _swa.AveragedModel:
    """``torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=..., use_buffers=...)``."""
    if not isinstance(use_buffers, bool):
        raise InitError(f"averaged_model: use_buffers must be True or False, got {use_buffers!r}.")
    return _swa.AveragedModel(model, multi_avg_fn=multi_avg_fn, use_buffers=use_buffers)


def update_bn(loader: Any, model: torch.nn.Module, device: Any = None) -> None:
    """``torch.optim.swa_utils.update_bn(loader, model, device)``."""
    _swa.update_bn(loader, model, device)
