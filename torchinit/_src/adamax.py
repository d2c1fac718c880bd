r"""Adamax: ``torch.optim.Adamax`` (the torch mirror of :mod:`jaxinit._src.adamax`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import build_optimizer, split_schedules


def adamax(params: Iterable, lr: Any = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
           maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adamax`` (foreach); ``lr`` may be a schedule. Mirror of :func:`jaxinit.optim.adamax`."""
    _core.check("adamax", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.Adamax, params, lr, scheds, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                  maximize=maximize, foreach=True)
