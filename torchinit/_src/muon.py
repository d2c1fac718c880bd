"""The torch mirror of :func:`jaxinit.optim.muon`: ``torch.optim.Muon`` itself (2-D parameters only)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim_checks as checks
from torchinit._src.optim_common import build_optimizer, split_schedules


def muon(params: Iterable, lr: Any = 1e-3, weight_decay: Any = 0.1, momentum: Any = 0.95, nesterov: bool = True,
         ns_coefficients: tuple = checks.MUON_NS_COEFFICIENTS, eps: Any = checks.MUON_EPS,
         ns_steps: int = checks.MUON_NS_STEPS, adjust_lr_fn: str | None = None) -> torch.optim.Optimizer:
    """``torch.optim.Muon(params, ...)``; ``lr`` may be a schedule. Non-2-D parameters are refused with the fix.

    Mirror of :func:`jaxinit.optim.muon` (the formula is in ``jaxinit/_src/muon.py``).
    """
    checks.check_muon("muon", lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn)
    groups: list
    groups, lr, scheds = split_schedules(params, lr)
    flat = [p for g in groups for p in g["params"]] if groups and isinstance(groups[0], dict) else groups
    for i, p in enumerate(flat):
        if p.ndim != 2:
            raise checks.muon_shape_error("torchinit.optim.muon", f"parameter #{i}", tuple(p.shape))
    return build_optimizer(torch.optim.Muon, groups, lr, scheds, weight_decay=weight_decay, momentum=momentum,
                  nesterov=nesterov, ns_coefficients=tuple(ns_coefficients), eps=eps, ns_steps=ns_steps,
                  adjust_lr_fn=adjust_lr_fn)
