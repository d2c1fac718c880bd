"""ReduceLROnPlateau: its argument check and its state, read from / written to torch.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

from typing import Mapping

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError
from _jaxinit.schedules.ops import int_arg, real_arg
from _jaxinit.schedules.specs_one_cycle import MOMENTUM_SPECS
from _jaxinit.schedules.specs_factor import set_group_lr


# ------------------------------------------------------------------ ReduceLROnPlateau (checks; metric driven)


def check_reduce_lr_on_plateau(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                               cooldown=0, min_lr=0.0, eps=1e-8):
    """torch's ReduceLROnPlateau arguments, checked once for both packages."""
    who = "reduce_lr_on_plateau"
    if mode not in ("min", "max"):
        raise InitError(f"{who}: mode must be 'min' (the metric should fall, e.g. a loss) or 'max' (e.g. an "
                        f"accuracy), got {mode!r}.")
    if threshold_mode not in ("rel", "abs"):
        raise InitError(f"{who}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}.")
    factor = real_arg(who, "factor", factor, low=0.0, high=1.0, high_open=True, hint=(
        " torch refuses factor >= 1 ('Factor should be < 1.0.'); a negative factor would make lrs negative."))
    if isinstance(min_lr, (list, tuple)):
        min_lr = tuple(real_arg(who, "min_lr", m, low=0.0) for m in min_lr)
    else:
        min_lr = real_arg(who, "min_lr", min_lr, low=0.0, hint=" (or a list, one per param group)")
    return dict(mode=mode, factor=factor,
                patience=int_arg(who, "patience", patience, low=0, hint=" It is the number of bad epochs tolerated."),
                threshold=real_arg(who, "threshold", threshold, low=0.0),
                threshold_mode=threshold_mode,
                cooldown=int_arg(who, "cooldown", cooldown, low=0),
                min_lr=min_lr, eps=real_arg(who, "eps", eps, low=0.0))


def plateau_args_from_torch(scheduler) -> dict:
    """The arguments of a torch ReduceLROnPlateau (public attributes)."""
    mins = [_torch.scalar(m) for m in scheduler.min_lrs]
    return dict(mode=scheduler.mode, factor=scheduler.factor, patience=scheduler.patience,
                threshold=scheduler.threshold, threshold_mode=scheduler.threshold_mode,
                cooldown=scheduler.cooldown, min_lr=mins[0] if len(set(mins)) == 1 else tuple(mins),
                eps=scheduler.eps)


def cycles_momentum(scheduler, who) -> bool:
    """Whether ``scheduler`` sets the momentum / beta1 too (refused inside a composite: not modelled)."""
    torch_class = _torch.class_name(scheduler)
    if torch_class in ("SequentialLR", "ChainedScheduler"):
        for child in _torch.children(scheduler):
            if getattr(child, "cycle_momentum", False):
                raise InitError(f"{who}: the {torch_class} holds a {_torch.class_name(child)} with "
                                "cycle_momentum=True, which also sets momentum/betas; that cycle is not modelled inside a composite. Fix: "
                                "cycle_momentum=False, or use the scheduler on its own.")
        return False
    return torch_class in MOMENTUM_SPECS and bool(scheduler.cycle_momentum)


PLATEAU_FIELDS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")


def plateau_state_from_torch(scheduler) -> dict:
    """A torch ReduceLROnPlateau's counters and its optimizer's group lrs, as Python numbers."""
    if _torch.class_name(scheduler) != "ReduceLROnPlateau":
        raise InitError(f"plateau state: expected a torch ReduceLROnPlateau or a plateau state dict, got "
                        f"{_torch.class_name(scheduler)}.")
    out = {f: getattr(scheduler, f) for f in PLATEAU_FIELDS}
    out["best"] = float(out["best"])
    out["lrs"] = [float(_torch.scalar(g["lr"])) for g in scheduler.optimizer.param_groups]
    return out


def plateau_state_to_torch(state: Mapping, scheduler) -> None:
    """Set a torch ReduceLROnPlateau's counters and group lrs from a plateau state dict."""
    groups = scheduler.optimizer.param_groups
    if len(state["lrs"]) != len(groups):
        raise InitError(f"import_plateau_state: the state has {len(state['lrs'])} lrs, the optimizer "
                        f"{len(groups)} param groups.")
    for f in PLATEAU_FIELDS:
        setattr(scheduler, f, float(state[f]) if f == "best" else int(state[f]))
    for g, lr in zip(groups, state["lrs"]):
        set_group_lr(g, float(lr))
    scheduler._last_lr = [g["lr"] for g in groups]
