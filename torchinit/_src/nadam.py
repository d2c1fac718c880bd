r"""NAdam: ``torch.optim.NAdam`` (the torch mirror of :mod:`jaxinit._src.nadam`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import build_optimizer, check_scalar_dtype, split_schedules


def nadam(params: Iterable, lr: Any = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
          momentum_decay: Any = 4e-3, decoupled_weight_decay: bool = False, maximize: bool = False,
          scalar_dtype: str = "float32", differentiable: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.NAdam`` (foreach; single-tensor with ``differentiable=True``); ``lr`` may be a schedule.
    Mirror of :func:`jaxinit.optim.nadam`."""
    _core.check("nadam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, scalar_dtype=scalar_dtype,
                differentiable=differentiable)
    check_scalar_dtype("nadam", scalar_dtype)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.NAdam, params, lr, scheds, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                  momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                  differentiable=differentiable, foreach=not differentiable)
