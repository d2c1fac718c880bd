"""Specs of torch's CyclicLR: its lr and its momentum / beta1 cycle.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

from typing import Any, Callable

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError
from _jaxinit.schedules.ops import lr_arg, real_arg
from _jaxinit.schedules.registry import ScheduleSpec, register
from _jaxinit.schedules.specs_one_cycle import MOMENTUM_SPECS, no_torch_scheduler
from _jaxinit.schedules.specs_factor import callable_arg


# ------------------------------------------------------------------ CyclicLR (lr and momentum)


def _cyclic_common(who, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode):
    up = real_arg(who, "step_size_up", step_size_up, low=0.0, low_open=True, hint=(
        " It is the number of steps of the rising half of a cycle."))
    down = up if step_size_down is None else real_arg(who, "step_size_down", step_size_down, low=0.0, hint=(
        " It is the number of steps of the falling half (None: step_size_up)."))
    if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
        raise InitError(f"{who}: mode is invalid and scale_fn is None (as torch's CyclicLR says): mode must be "
                        f"'triangular', 'triangular2' or 'exp_range', got {mode!r}; or pass scale_fn.")
    if scale_mode not in ("cycle", "iterations"):
        raise InitError(f"{who}: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r} (torch's "
                        "CyclicLR would silently treat it as 'iterations').")
    gamma = real_arg(who, "gamma", gamma, hint=" It is exp_range's decay base.")
    scale: tuple
    if scale_fn is not None:
        scale = ("custom", callable_arg(who, "scale_fn", scale_fn, "of the cycle number or the step; jittable for "
                                                          "jaxinit"))
    else:  # torch's _init_scale_fn: the mode picks the function and the scale_mode
        scale = ("exp_range", gamma) if mode == "exp_range" else (mode,)
        scale_mode = "iterations" if mode == "exp_range" else "cycle"
    total = float(up) + float(down)  # torch: float(step_size_up) + float(step_size_down)
    return dict(total_size=total, step_ratio=float(up) / total, scale=scale, scale_mode=scale_mode)


def check_cyclic_lr(base_lr: float, max_lr: float, step_size_up: int = 2000, step_size_down: int | None = None,
                    mode: str = "triangular", gamma: float = 1.0, scale_fn: Callable[[Any], Any] | None = None,
                    scale_mode: str = "cycle", cycle_momentum: bool = True, base_momentum: float = 0.8,
                    max_momentum: float = 0.9):
    who = "cyclic_lr"
    if not isinstance(cycle_momentum, bool):
        raise InitError(f"{who}: cycle_momentum must be True or False, got {cycle_momentum!r}.")
    real_arg(who, "base_momentum", base_momentum)
    real_arg(who, "max_momentum", max_momentum)
    return dict(_cyclic_common(who, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode),
                low=lr_arg(who, base_lr, "base_lr"), high=lr_arg(who, max_lr, "max_lr"), momentum=False)


def check_cyclic_momentum(base_momentum: float = 0.8, max_momentum: float = 0.9, step_size_up: int = 2000,
                          step_size_down: int | None = None, mode: str = "triangular", gamma: float = 1.0,
                          scale_fn: Callable[[Any], Any] | None = None, scale_mode: str = "cycle"):
    who = "cyclic_momentum"
    return dict(_cyclic_common(who, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode),
                low=real_arg(who, "base_momentum", base_momentum), high=real_arg(who, "max_momentum", max_momentum),
                momentum=True)


def _cyclic(o, t, total_size, step_ratio, scale, scale_mode, low, high, momentum):
    """torch's CyclicLR.get_lr, same operations: the lr rises low -> high, the momentum falls high -> low."""
    tf = o.to_float(t)
    cycle = o.floor(1 + tf / total_size)
    x = 1.0 + tf / total_size - cycle
    scale_factor = o.where(x <= step_ratio, x / step_ratio, (x - 1) / o.nonzero(step_ratio - 1))
    arg = cycle if scale_mode == "cycle" else t
    if scale[0] == "triangular":
        s = 1.0
    elif scale[0] == "triangular2":
        s = 1 / (2.0 ** (arg - 1))
    elif scale[0] == "exp_range":
        s = scale[1] ** arg
    else:
        s = scale[1](arg)
    base_height = (high - low) * scale_factor
    return high - base_height * s if momentum else low + base_height * s


def _read_cyclic(which):
    def read(s, i, group, ctx):
        fn = _torch.cyclic_scale_fn(s)
        up = s.step_ratio * s.total_size
        common = dict(step_size_up=up, step_size_down=s.total_size - up, mode=s.mode, gamma=s.gamma,
                      scale_fn=fn, scale_mode=s.scale_mode)
        exact = dict(total_size=s.total_size, step_ratio=s.step_ratio,  # torch's own floats, not re-derived
                     scale=("custom", fn) if fn is not None else (
                         ("exp_range", s.gamma) if s.mode == "exp_range" else (s.mode,)), scale_mode=s.scale_mode)
        if which == "momentum":
            low, high = s.base_momentums[i], s.max_momentums[i]
            args = dict(base_momentum=low, max_momentum=high, **common)
        else:
            low, high = _torch.scalar(s.base_lrs[i]), _torch.scalar(s.max_lrs[i])
            args = dict(base_lr=low, max_lr=high, **common, cycle_momentum=bool(s.cycle_momentum),
                        base_momentum=group.get("base_momentum", 0.8), max_momentum=group.get("max_momentum", 0.9))
        return args, dict(exact, low=low, high=high, momentum=which == "momentum")
    return read


def _cyclic_to_torch(args, optimizer, build, reset):
    import torch.optim.lr_scheduler as tls

    for group in optimizer.param_groups:
        group.pop("initial_lr", None)
    return tls.CyclicLR(optimizer, **args)


register(ScheduleSpec(
    "cyclic_lr", "CyclicLR", check_cyclic_lr, _cyclic,
    doc="torch's ``CyclicLR(optimizer, base_lr, max_lr, ...)`` learning rate: {returns}.\n\n"
        "    cycle = floor(1 + t / (up + down));  x = 1 + t / (up + down) - cycle\n"
        "    f = x / r if x <= r else (x - 1) / (r - 1)          (r = up / (up + down))\n"
        "    lr_t = base_lr + (max_lr - base_lr) * f * scale\n\n"
        "with ``scale = 1`` (triangular), ``1 / 2 ** (cycle - 1)`` (triangular2), ``gamma ** t`` "
        "(exp_range) or ``scale_fn(cycle)`` / ``scale_fn(t)`` (``scale_mode``; as in torch, "
        "``scale_mode`` counts only with a custom ``scale_fn``). For jaxinit a custom ``scale_fn`` "
        "must be jittable (it gets the cycle as a float array, the step as an int array). "
        "``cycle_momentum``, ``base_momentum`` and ``max_momentum`` do not change the lr: use "
        "``cyclic_momentum`` for the momentum / beta1 cycle.\n\n"
        "Example::\n\n    sched = {pkg}.cyclic_lr(0.001, 0.1, step_size_up=200, mode='triangular2')\n",
    read=_read_cyclic("lr"), to_torch=_cyclic_to_torch,
))

register(ScheduleSpec(
    "cyclic_momentum", None, check_cyclic_momentum, _cyclic,
    doc="torch's ``CyclicLR`` momentum (SGD/RMSprop ``momentum``, Adam/AdamW ``betas[0]``) cycle: "
        "{returns}.\n\n"
        "    momentum_t = max_momentum - (max_momentum - base_momentum) * f * scale\n\n"
        "with the ``f`` and ``scale`` of :func:`cyclic_lr` (inverse to the lr). torch sets it before "
        "each step when ``cycle_momentum=True``.\n\n"
        "Example::\n\n    mom = {pkg}.cyclic_momentum(0.8, 0.9, step_size_up=200)\n",
    read=_read_cyclic("momentum"), to_torch=no_torch_scheduler("cyclic_lr"),
))
MOMENTUM_SPECS["CyclicLR"] = "cyclic_momentum"
