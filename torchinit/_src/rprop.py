r"""Rprop: ``torch.optim.Rprop`` (the torch mirror of :mod:`jaxinit._src.rprop`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core


def rprop(params: Iterable, lr: Any = 1e-2, etas: tuple = (0.5, 1.2), step_sizes: tuple = (1e-6, 50),
          maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Rprop`` (foreach). ``lr`` is the initial step size only: a number (torch ignores later
    lr changes, so a schedule is refused). Mirror of :func:`jaxinit.optim.rprop`."""
    _core.check("rprop", lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
    if callable(lr) or (isinstance(params, (list, tuple)) and any(isinstance(g, dict) and callable(g.get("lr"))
                                                                  for g in params)):
        raise _core.InitError(
            "rprop: lr must be a number (torch's Rprop reads lr once, to fill step_size on the first step, and "
            "ignores it afterwards, so a schedule would have no effect in torch); pass lr=<initial step size>.")
    return torch.optim.Rprop(params, lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), maximize=maximize,
                             foreach=True)
