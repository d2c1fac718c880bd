"""torch's ``ReduceLROnPlateau``: the mirror of :mod:`jaxinit.optim`'s plateau transformation.

:func:`reduce_lr_on_plateau` returns torch's own scheduler (after the same argument checks as
the JAX side); :func:`export_plateau_state` / :func:`import_plateau_state` move its counters
(``best``, ``num_bad_epochs``, ``cooldown_counter``, ``last_epoch``) and the group lrs to and
from :func:`jaxinit.optim.export_plateau_state` / :func:`jaxinit.optim.import_plateau_state`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from _jaxinit import schedules as _core
from _jaxinit.errors import InitError


def reduce_lr_on_plateau(optimizer: torch.optim.Optimizer, mode: str = "min", factor: float = 0.1,
                         patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                         cooldown: int = 0, min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8, *,
                         lr_name: str = "lr") -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """``torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, ...)`` (step it with the metric).

    The mirror of :func:`jaxinit.optim.reduce_lr_on_plateau`, whose first argument is the
    optax optimizer instead; ``lr_name`` must be ``"lr"`` here (torch's group key).
    """
    c = _core.check_reduce_lr_on_plateau(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)
    if lr_name != "lr":
        raise InitError(f"torchinit.optim.reduce_lr_on_plateau: lr_name must be 'lr' (torch's param group "
                        f"key), got {lr_name!r}.")
    mins = list(c.pop("min_lr")) if isinstance(c["min_lr"], tuple) else c.pop("min_lr")
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, min_lr=mins, **c)


def export_plateau_state(scheduler: Any, *, lr_name: str = "lr") -> dict:
    """``{"best", "num_bad_epochs", "cooldown_counter", "last_epoch", "lrs"}`` of a torch ReduceLROnPlateau."""
    return _core.plateau_state_from_torch(scheduler)


def import_plateau_state(state: dict, scheduler: Any, *, lr_name: str = "lr") -> Any:
    """Load such a dict (e.g. from :func:`jaxinit.optim.export_plateau_state`) into ``scheduler``
    (its counters and its optimizer's group lrs). Returns ``scheduler``."""
    _core.plateau_state_to_torch(state, scheduler)
    return scheduler
