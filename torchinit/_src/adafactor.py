"""The torch mirror of :func:`jaxinit.optim.adafactor`: ``torch.optim.Adafactor`` itself."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim_checks as checks
from torchinit._src.optim_common import build_optimizer, split_schedules


def adafactor(params: Iterable, lr: Any = 1e-2, beta2_decay: Any = -0.8, eps: tuple = (None, 1e-3), d: Any = 1.0,
              weight_decay: Any = 0.0, maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adafactor(params, lr, beta2_decay, eps, d, weight_decay, foreach=True, maximize=...)``.

    ``lr`` may be a schedule ``step -> lr``. Mirror of :func:`jaxinit.optim.adafactor`
    (the formula is in ``jaxinit/_src/adafactor.py``).
    """
    checks.check_adafactor("adafactor", lr, beta2_decay, eps, d, weight_decay, maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.Adafactor, params, lr, scheds, beta2_decay=beta2_decay, eps=tuple(eps), d=d,
                  weight_decay=weight_decay, maximize=maximize, foreach=True)
