r"""Adadelta: ``torch.optim.Adadelta`` (the torch mirror of :mod:`jaxinit._src.adadelta`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import build_optimizer, split_schedules


def adadelta(params: Iterable, lr: Any = 1.0, rho: Any = 0.9, eps: Any = 1e-6, weight_decay: Any = 0,
             maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adadelta`` (foreach); ``lr`` may be a schedule. Mirror of :func:`jaxinit.optim.adadelta`."""
    _core.check("adadelta", lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.Adadelta, params, lr, scheds, rho=rho, eps=eps, weight_decay=weight_decay,
                  maximize=maximize, foreach=True)
