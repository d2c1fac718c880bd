r"""ASGD: ``torch.optim.ASGD`` (the torch mirror of :mod:`jaxinit._src.asgd`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import build_optimizer, check_scalar_dtype, split_schedules


def asgd(params: Iterable, lr: Any = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75, t0: Any = 1e6,
         weight_decay: Any = 0, maximize: bool = False, scalar_dtype: str = "float32") -> torch.optim.Optimizer:
    """``torch.optim.ASGD`` (single-tensor: ``foreach=False``); ``lr`` may be a schedule. Mirror of
    :func:`jaxinit.optim.asgd`.

    torch's two ASGD implementations differ: the multi-tensor one (``foreach=True``, torch's default on
    GPU) computes ``eta`` from the float32 ``step`` tensor in float32 arithmetic (torch/optim/asgd.py
    ``_multi_tensor_asgd``), ~1e-7 relative away from the single-tensor one, whose formulas these are.
    """
    _core.check("asgd", lr=lr, weight_decay=weight_decay, maximize=maximize, scalar_dtype=scalar_dtype)
    check_scalar_dtype("asgd", scalar_dtype)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.ASGD, params, lr, scheds, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay,
                  maximize=maximize, foreach=False)
