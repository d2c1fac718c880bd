"""Specs of torch's SequentialLR, ChainedScheduler and swa_utils.SWALR.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

import math
import operator
from typing import Any, Sequence

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError
from _jaxinit.schedules.ops import PyOps, int_arg, lr_arg
from _jaxinit.schedules.registry import SPECS, ScheduleSpec, register, by_torch_class
from _jaxinit.schedules.specs_decay import read_base_lr
from _jaxinit.schedules.specs_factor import set_group_lr
from _jaxinit.schedules.schedule import ScheduleBase


# ------------------------------------------------------------------ SequentialLR / ChainedScheduler

COMPOSITES = ("sequential_lr", "chained_scheduler")


def _children(who, schedules):
    try:
        items = list(schedules)
    except TypeError:
        items = None
    if not items:
        raise InitError(f"{who}: schedules must be a non-empty list of schedules of this package "
                        f"(step_lr, linear_lr, ...), got {schedules!r}.")
    for k, s in enumerate(items):
        if not isinstance(s, ScheduleBase):
            raise InitError(f"{who}: schedules[{k}] is {s!r}, not a schedule of this package; build it with "
                            "one of the factories (linear_lr, cosine_annealing_lr, ...).")
        if s.name in COMPOSITES or SPECS[s.name].torch is None:
            raise InitError(f"{who}: schedules[{k}] is {s.name}, which torch cannot put inside a "
                            f"{who} (torch's SequentialLR restarts a child with step(0), which "
                            "SequentialLR/ChainedScheduler do not take; momentum cycles are not lr schedules).")
    return items


def check_sequential_lr(schedules: Sequence[Any], milestones: Sequence[int]):
    who = "sequential_lr"
    items = _children(who, schedules)
    try:
        ms = [operator.index(m) for m in milestones]
    except TypeError:
        raise InitError(f"{who}: milestones must be a list of ints, got {milestones!r}.") from None
    if len(ms) != len(items) - 1:
        raise InitError(f"{who}: Sequential Schedulers expects number of schedulers provided to be one more than "
                        f"the number of milestone points (as torch says), got {len(items)} schedules and "
                        f"milestones={milestones!r}.")
    if any(m < 1 for m in ms) or any(b <= a for a, b in zip(ms, ms[1:])):
        raise InitError(f"{who}: milestones must be increasing ints >= 1, got {milestones!r}; torch would never "
                        "run the schedule of an empty segment. Fix: drop that schedule or its milestone.")
    lrs = {s.params["lr"] for s in items if "lr" in s.params}
    if len(lrs) > 1:
        raise InitError(f"{who}: the schedules have different base lrs {sorted(lrs)}; torch's SequentialLR restarts "
                        "each from the group's one initial lr. Fix: give them the same lr.")
    children: list = []
    for k, s in enumerate(items):
        params = dict(s.params)
        if s.name == "multiplicative_lr" and k > 0:
            # torch restarts it with step(0): get_lr() = (the lr the previous one left) * lr_lambda(0),
            # then multiplies by lr_lambda(1), lr_lambda(2), ...
            prev = _sequential_lr(PyOps, ms[k - 1] - 1, tuple(children), tuple(ms[:k - 1]))
            params["lr"] = float(prev) * float(params["lr_lambda"](0))
        children.append((s.name, params))
    return dict(children=tuple(children), milestones=tuple(ms))


def _sequential_lr(o, t, children, milestones):
    """torch's SequentialLR: child ``k`` runs from milestone ``k - 1`` on, restarted at its own step 0."""
    starts = (0,) + tuple(milestones)
    branches = [lambda k=k, c=c: SPECS[c[0]].formula(o, t - starts[k], **c[1]) for k, c in enumerate(children)]
    return o.switch(o.count_le(milestones, t), branches)


def _composite_to_torch(args, optimizer, build, reset):
    import torch.optim.lr_scheduler as tls

    kids = [build(s, k == 0) for k, s in enumerate(args["schedules"])]  # built on each other, as torch's users do
    if "milestones" in args:
        return tls.SequentialLR(optimizer, kids, list(args["milestones"]))
    return tls.ChainedScheduler(kids, optimizer)


def _read_composite(s, i, group, ctx):
    kids = []
    for k, child in enumerate(_torch.children(s)):
        spec = by_torch_class(_torch.class_name(child))
        if spec is None or spec.read is None or spec.name in COMPOSITES:
            raise InitError(f"schedules_from_torch: {_torch.class_name(s)} holds a {_torch.class_name(child)} "
                            f"(at index {k}), which is not supported inside it; supported children are "
                            f"{sorted(x.torch for x in SPECS.values() if x.torch and x.name not in COMPOSITES)}.")
        a, p = spec.read(child, i, group, ctx)
        kids.append(ctx["schedule_class"](spec.name, a, p))
    if _torch.class_name(s) == "SequentialLR":
        return dict(schedules=kids, milestones=_torch.milestones(s)), None
    return dict(schedules=kids), None


register(ScheduleSpec(
    "sequential_lr", "SequentialLR", check_sequential_lr, _sequential_lr,
    doc="torch's ``SequentialLR(optimizer, schedulers, milestones)``: {returns}.\n\n"
        "    lr_t = schedules[k](t - milestones[k-1])   for milestones[k-1] <= t < milestones[k]\n\n"
        "Each schedule restarts at its own step 0 at its milestone, as torch's ``step(0)`` does "
        "(closed forms from their base lr; a ``multiplicative_lr`` continues from the lr the previous "
        "one left, times ``lr_lambda(0)``, as in torch). Warm-up then cosine, as in "
        "``SequentialLR(opt, [LinearLR(opt, 0.01, total_iters=100), CosineAnnealingLR(opt, 900)], "
        "[100])``:\n\n"
        "Example::\n\n"
        "    sched = {pkg}.sequential_lr([{pkg}.linear_lr(0.1, 0.01, total_iters=100),\n"
        "                                 {pkg}.cosine_annealing_lr(0.1, T_max=900)], milestones=[100])\n",
    read=_read_composite, to_torch=_composite_to_torch,
))


def check_chained_scheduler(schedules: Sequence[Any]):
    who = "chained_scheduler"
    items = _children(who, schedules)
    lrs = set()
    children = []
    for k, s in enumerate(items):
        if not SPECS[s.name].chainable:
            raise InitError(
                f"{who}: schedules[{k}] is {s.name}, which sets the lr from its own base value at every step "
                "(torch's recursion discards the factors of the schedulers before it), so the chain has no "
                f"closed form; chainable are {[n for n, x in SPECS.items() if x.chainable]}. Fix: use sequential_lr, or a lambda_lr of the "
                "product you want.")
        if s.name == "cosine_annealing_lr" and s.params["eta_min"] != 0:
            raise InitError(f"{who}: schedules[{k}] is cosine_annealing_lr with eta_min={s.params['eta_min']}; "
                            "torch's recursion then adds eta_min to the product of the other factors (no closed "
                            "form). Fix: eta_min=0 inside a chain.")
        lrs.add(s.params["lr"])
        children.append((s.name, dict(s.params, lr=1.0)))
    if len(lrs) != 1:
        raise InitError(f"{who}: the schedules have different base lrs {sorted(lrs)}; torch's chained schedulers "
                        "all start from the group's one initial lr. Fix: give them the same lr.")
    return dict(lr=lrs.pop(), children=tuple(children))


def _chained_scheduler(o, t, lr, children):
    """torch's ChainedScheduler: every scheduler multiplies the lr by its own factor at every step."""
    value = lr
    for name, params in children:
        value = value * SPECS[name].formula(o, t, **params)
        if name == "cosine_annealing_lr":  # past T_max torch's restart branch adds instead of multiplying
            value = o.invalid_if(
                t > params["T_max"], value,
                f"chained_scheduler: step {t} is past T_max={params['T_max']} of its cosine_annealing_lr, where "
                "torch's ChainedScheduler adds base_lr * (1 - cos(pi / T_max)) / 2 to the product instead of "
                "multiplying (no closed form; the JAX schedule returns NaN there). Fix: T_max >= the run length.")
    return value


register(ScheduleSpec(
    "chained_scheduler", "ChainedScheduler", check_chained_scheduler, _chained_scheduler,
    doc="torch's ``ChainedScheduler(schedulers)``: {returns}.\n\n"
        "    lr_t = lr * prod_k (schedules[k](t) / lr)\n\n"
        "the product of the chained factors, for the schedules whose torch recursion multiplies the "
        "incoming lr (step, multi-step, exponential, linear, polynomial, constant, multiplicative, "
        "and cosine annealing with ``eta_min=0`` up to ``T_max``); all must share the base lr.\n\n"
        "Example::\n\n"
        "    sched = {pkg}.chained_scheduler([{pkg}.constant_lr(1.0, factor=0.1, total_iters=2),\n"
        "                                     {pkg}.exponential_lr(1.0, gamma=0.9)])\n",
    read=_read_composite, to_torch=_composite_to_torch,
))


# ------------------------------------------------------------------ SWALR (torch.optim.swa_utils)


def check_swalr(lr: float, swa_lr: float, anneal_epochs: int = 10, anneal_strategy: str = "cos"):
    who = "swalr"
    if anneal_strategy not in ("cos", "linear"):
        raise InitError(f"{who}: anneal_strategy must be one of 'cos' or 'linear', instead got "
                        f"{anneal_strategy!r} (as torch's SWALR says).")
    return dict(lr=lr_arg(who, lr), swa_lr=lr_arg(who, swa_lr, "swa_lr"),
                anneal_epochs=int_arg(who, "anneal_epochs", anneal_epochs, low=0, hint=(
                    " torch's SWALR refuses it too ('anneal_epochs must be equal or greater than 0').")),
                anneal_strategy=anneal_strategy)


def _swalr(o, t, lr, swa_lr, anneal_epochs, anneal_strategy):
    # torch: t = clamp(step / max(1, anneal_epochs), 0, 1), step >= 1 when anneal_epochs == 0
    if anneal_epochs == 0:
        return swa_lr + 0.0 * o.to_float(t)
    frac = o.minimum(1.0, o.to_float(t) / anneal_epochs)
    alpha = (1 - o.cos(math.pi * frac)) / 2 if anneal_strategy == "cos" else frac
    return swa_lr * alpha + lr * (1 - alpha)


def _swalr_to_torch(args, optimizer, build, reset):
    from torch.optim.swa_utils import SWALR

    a = dict(args)
    for group in optimizer.param_groups if reset else ():
        set_group_lr(group, a["lr"])
        group.pop("initial_lr", None)
    del a["lr"]
    return SWALR(optimizer, **a)


register(ScheduleSpec(
    "swalr", "SWALR", check_swalr, _swalr,
    doc="torch's ``torch.optim.swa_utils.SWALR(optimizer, swa_lr, anneal_epochs, anneal_strategy)`` "
        "for the optimizer's lr ``lr``: {returns}.\n\n"
        "    a = anneal(min(1, t / anneal_epochs))     (cos: (1 - cos(pi * x)) / 2, linear: x)\n"
        "    lr_t = swa_lr * a + lr * (1 - a)\n\n"
        "(``anneal_epochs=0``: ``swa_lr`` at once). torch recovers the start lr from the current one "
        "at every step; the closed form agrees to float64 rounding.\n\n"
        "Example::\n\n    sched = {pkg}.swalr(0.1, swa_lr=0.05, anneal_epochs=5)\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), swa_lr=_torch.scalar(g["swa_lr"]),
                                  anneal_epochs=s.anneal_epochs, anneal_strategy=_torch.swalr_anneal(s)), None),
    to_torch=_swalr_to_torch,
))
