"""Specs of torch's OneCycleLR: its lr and its momentum / beta1 cycle.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

import math
import numbers

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError
from _jaxinit.schedules.ops import lr_arg, real_arg
from _jaxinit.schedules.registry import ScheduleSpec, register


# ------------------------------------------------------------------ OneCycleLR (lr and momentum)


def _one_cycle(o, t, total_steps, phases, anneal_strategy):
    """torch's OneCycleLR.get_lr for one group: ``phases`` = ((end_step, start, end), ...)."""
    tf = o.to_float(t)
    start_step = 0.0
    values = []
    for end_step, start, end in phases:
        pct = (tf - start_step) / (end_step - start_step)
        if anneal_strategy == "cos":
            cos_out = o.cos(math.pi * pct) + 1
            values.append(end + (start - end) / 2.0 * cos_out)
        else:
            values.append((end - start) * pct + start)
        start_step = end_step
    # torch takes the first phase with step <= end_step, else the last one
    value = values[-1]
    for (end_step, _, _), v in zip(reversed(phases[:-1]), reversed(values[:-1])):
        value = o.where(tf <= end_step, v, value)
    return o.invalid_if(
        t > total_steps, value,
        f"Tried to step {t} times. The specified number of total steps is {total_steps} "
        "(torch's OneCycleLR refuses this too; the JAX schedule returns NaN). Fix: raise "
        "total_steps (or epochs/steps_per_epoch) to cover the whole run.",
    )


def _total_steps(who, total_steps, epochs, steps_per_epoch):
    if total_steps is not None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps <= 0:
            raise InitError(f"{who}: Expected positive integer total_steps, but got {total_steps!r} "
                            "(torch's OneCycleLR refuses it too).")
        return int(total_steps)
    if epochs is not None and steps_per_epoch is not None:
        for name, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                raise InitError(f"{who}: Expected positive integer {name}, but got {v!r} "
                                "(torch's OneCycleLR refuses it too).")
        return int(epochs) * int(steps_per_epoch)
    raise InitError(f"{who}: You must define either total_steps OR (epochs AND steps_per_epoch), "
                    "as for torch's OneCycleLR; e.g. total_steps=1000.")


def _one_cycle_ends(who, total_steps, pct_start, anneal_strategy, three_phase):
    if isinstance(pct_start, bool) or not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
        raise InitError(f"{who}: Expected float between 0 and 1 pct_start, but got {pct_start!r} "
                        "(torch's OneCycleLR refuses it too); e.g. pct_start=0.3.")
    if anneal_strategy not in ("cos", "linear"):
        raise InitError(f"{who}: anneal_strategy must be one of 'cos' or 'linear', instead got "
                        f"{anneal_strategy!r} (as in torch's OneCycleLR).")
    if not isinstance(three_phase, bool):
        raise InitError(f"{who}: three_phase must be True or False, got {three_phase!r}.")
    ends: tuple
    if three_phase:
        ends = (float(pct_start * total_steps) - 1, float(2 * pct_start * total_steps) - 2,
                total_steps - 1)
    else:
        ends = (float(pct_start * total_steps) - 1, total_steps - 1)
    # torch divides by (end_step - start_step) of the phase it picks: a zero-length first phase
    # is picked at step 0, a zero-length last phase at step total_steps.
    if ends[0] == 0.0 or ends[-1] == ends[-2]:
        raise InitError(
            f"{who}: pct_start={pct_start} with total_steps={total_steps} gives a phase of zero steps "
            f"(phase ends {ends}); torch's OneCycleLR raises ZeroDivisionError on it. Fix: choose "
            "pct_start so that pct_start * total_steps != 1 and the last phase is not empty.")
    return ends


def one_cycle_params(total_steps, ends, points, anneal_strategy):
    """Phases ((end_step, start, end), ...) from the phase ends and the values at the corners."""
    phases = tuple((e, points[i], points[i + 1]) for i, e in enumerate(ends))
    return dict(total_steps=total_steps, phases=phases, anneal_strategy=anneal_strategy)


def check_one_cycle_lr(max_lr: float, total_steps: int | None = None, epochs: int | None = None,
                       steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                       cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                       div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False):
    who = "one_cycle_lr"
    total = _total_steps(who, total_steps, epochs, steps_per_epoch)
    ends = _one_cycle_ends(who, total, pct_start, anneal_strategy, three_phase)
    max_lr = lr_arg(who, max_lr, "max_lr")
    div_factor = real_arg(who, "div_factor", div_factor, low=0.0, low_open=True,
                       hint=" initial_lr = max_lr / div_factor.")
    final_div_factor = real_arg(who, "final_div_factor", final_div_factor, low=0.0, low_open=True,
                             hint=" min_lr = initial_lr / final_div_factor.")
    if not isinstance(cycle_momentum, bool):
        raise InitError(f"{who}: cycle_momentum must be True or False, got {cycle_momentum!r}.")
    real_arg(who, "base_momentum", base_momentum)
    real_arg(who, "max_momentum", max_momentum)
    initial = max_lr / div_factor  # torch's operation order
    minimum = initial / final_div_factor
    points = (initial, max_lr, initial, minimum) if three_phase else (initial, max_lr, minimum)
    return one_cycle_params(total, ends, points, anneal_strategy)


def check_one_cycle_momentum(total_steps: int | None = None, epochs: int | None = None,
                             steps_per_epoch: int | None = None, pct_start: float = 0.3,
                             anneal_strategy: str = "cos", base_momentum: float = 0.85,
                             max_momentum: float = 0.95, three_phase: bool = False):
    who = "one_cycle_momentum"
    total = _total_steps(who, total_steps, epochs, steps_per_epoch)
    ends = _one_cycle_ends(who, total, pct_start, anneal_strategy, three_phase)
    base = real_arg(who, "base_momentum", base_momentum)
    top = real_arg(who, "max_momentum", max_momentum)
    points = (top, base, top, top) if three_phase else (top, base, top)
    return one_cycle_params(total, ends, points, anneal_strategy)


def _read_one_cycle(which):
    def read(s, i, group, ctx):
        total = s.total_steps
        phases = _torch.one_cycle_phases(s)
        ends = tuple(float(p["end_step"]) for p in phases)
        keys = "lr" if which == "lr" else "momentum"
        points = [_torch.scalar(group[p[f"start_{keys}"]]) for p in phases]
        points.append(_torch.scalar(group[phases[-1][f"end_{keys}"]]))
        anneal = _torch.one_cycle_anneal(s)
        params = one_cycle_params(total, ends, tuple(points), anneal)
        pct = (ends[0] + 1) / total
        three = len(ends) == 3
        if which == "momentum":
            return dict(total_steps=total, pct_start=pct, anneal_strategy=anneal,
                        base_momentum=group["base_momentum"], max_momentum=group["max_momentum"],
                        three_phase=three), params
        max_lr, initial = _torch.scalar(group["max_lr"]), _torch.scalar(group["initial_lr"])
        return dict(max_lr=max_lr, total_steps=total, pct_start=pct, anneal_strategy=anneal,
                    cycle_momentum=bool(s.cycle_momentum), base_momentum=group.get("base_momentum", 0.85),
                    max_momentum=group.get("max_momentum", 0.95), div_factor=max_lr / initial,
                    final_div_factor=initial / _torch.scalar(group["min_lr"]), three_phase=three), params
    return read


def _one_cycle_to_torch(args, optimizer, build, reset):
    import torch.optim.lr_scheduler as tls  # the optimizer is a torch object: torch is loaded

    return tls.OneCycleLR(optimizer, **args)


def no_torch_scheduler(lr_name):
    def to_torch(args, optimizer, build, reset):
        raise InitError(f"{lr_name.replace('_lr', '_momentum')} has no torch scheduler of its own: build the "
                        f"{lr_name} schedule with the same arguments (torch's scheduler cycles momentum with "
                        "cycle_momentum=True) and call its torch_scheduler().")
    return to_torch


register(ScheduleSpec(
    "one_cycle_lr", "OneCycleLR", check_one_cycle_lr, _one_cycle,
    doc="torch's ``OneCycleLR(optimizer, max_lr, ...)`` learning rate: {returns}.\n\n"
        "Phases end at steps ``pct_start*T - 1`` and ``T - 1`` (three-phase: ``pct_start*T - 1``, "
        "``2*pct_start*T - 2``, ``T - 1``) with ``T = total_steps``; inside phase ``[s, e]`` "
        "``pct = (t - s) / (e - s)`` and the lr goes from ``a`` to ``b`` by\n\n"
        "    cos:    b + (a - b) / 2 * (cos(pi * pct) + 1)\n"
        "    linear: (b - a) * pct + a\n\n"
        "through ``initial_lr = max_lr / div_factor``, ``max_lr`` and "
        "``min_lr = initial_lr / final_div_factor``. ``optax.cosine_onecycle_schedule`` puts the "
        "boundaries at ``pct_start*T`` and ``T`` and is ~1.5% off torch. torch raises after "
        "``total_steps`` steps; the JAX schedule returns NaN there, the torch one raises.\n\n"
        "``cycle_momentum``, ``base_momentum`` and ``max_momentum`` do not change the lr; they are "
        "used by ``.torch_scheduler()``. For the momentum / beta1 cycle use "
        "``one_cycle_momentum`` with the same arguments.\n\n"
        "Example::\n\n    sched = {pkg}.one_cycle_lr(0.1, total_steps=1000)\n",
    read=_read_one_cycle("lr"), to_torch=_one_cycle_to_torch,
))

register(ScheduleSpec(
    "one_cycle_momentum", None, check_one_cycle_momentum, _one_cycle,
    doc="torch's ``OneCycleLR`` momentum (SGD/RMSprop ``momentum``, Adam/AdamW ``betas[0]``) cycle: "
        "{returns}.\n\n"
        "Same phases as :func:`one_cycle_lr`, going ``max_momentum -> base_momentum -> "
        "max_momentum`` (three-phase: then held at ``max_momentum``), i.e. inversely to the lr. "
        "torch sets this value before each step when ``cycle_momentum=True``.\n\n"
        "Example::\n\n{momentum_example}",
    read=_read_one_cycle("momentum"), to_torch=no_torch_scheduler("one_cycle_lr"),
))

# the momentum spec of each torch class that cycles momentum (cycle_momentum=True)
MOMENTUM_SPECS = {"OneCycleLR": "one_cycle_momentum"}
