r"""SGD: ``torch.optim.SGD`` (the torch mirror of :mod:`jaxinit._src.sgd`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import build_optimizer, split_schedules


def sgd(params: Iterable, lr: Any = 1e-3, momentum: Any = 0, dampening: Any = 0, weight_decay: Any = 0,
        nesterov: bool = False, maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.SGD(params, lr, ..., foreach=True)``; ``lr`` may be a schedule. Mirror of :func:`jaxinit.optim.sgd`."""
    _core.check("sgd", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, maximize=maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.SGD, params, lr, scheds, momentum=momentum, dampening=dampening,
                  weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, foreach=True)
