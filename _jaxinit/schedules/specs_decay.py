"""Specs of torch's decaying schedulers: StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR,
LinearLR, PolynomialLR, CosineAnnealingWarmRestarts.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError
from _jaxinit.schedules.ops import int_arg, lr_arg, real_arg
from _jaxinit.schedules.registry import ScheduleSpec, register


# ------------------------------------------------------------------ StepLR


def check_step_lr(lr: float, step_size: int, gamma: float = 0.1):
    who = "step_lr"
    return dict(lr=lr_arg(who, lr), step_size=int_arg(who, "step_size", step_size, low=1, hint=(
        " It is the period of the decay in optimizer steps (torch's StepLR divides by it).")),
        gamma=real_arg(who, "gamma", gamma, low=0.0, hint=" It is the multiplicative decay factor, e.g. 0.1."))


def _step_lr(o, t, lr, step_size, gamma):
    # torch closed form: base_lr * gamma ** (last_epoch // step_size)
    return lr * gamma ** (t // step_size)


register(ScheduleSpec(
    "step_lr", "StepLR", check_step_lr, _step_lr,
    doc="torch's ``StepLR(optimizer, step_size, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** (t // step_size)\n\n"
        "The formula of ``optax.exponential_decay(lr, step_size, gamma, staircase=True)`` (float32 "
        "there). torch multiplies recursively; the values agree to float64 rounding (<1e-13 relative "
        "over 1000 steps).\n\n"
        "Example::\n\n    sched = {pkg}.step_lr(0.1, step_size=30)   # 0.1 until step 29, then 0.01\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), step_size=s.step_size, gamma=s.gamma), None),
    chainable=True,
))


def read_base_lr(scheduler, i):
    return _torch.scalar(scheduler.base_lrs[i])


# ------------------------------------------------------------------ MultiStepLR


def check_multi_step_lr(lr: float, milestones: Sequence[int], gamma: float = 0.1):
    who = "multi_step_lr"
    try:
        ms = list(milestones)
    except TypeError:
        raise InitError(f"{who}: milestones must be an iterable of ints (steps at which to decay), "
                        f"got {milestones!r}; e.g. milestones=[30, 80].") from None
    for m in ms:
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 0:
            raise InitError(
                f"{who}: milestones must hold ints >= 0, got {milestones!r}; torch's MultiStepLR never "
                "reaches a negative or fractional milestone, so it would be silently ignored. Fix: "
                "pass step indices, e.g. milestones=[30, 80].")
    return dict(lr=lr_arg(who, lr), milestones=tuple(sorted(int(m) for m in ms)),
                gamma=real_arg(who, "gamma", gamma, low=0.0, hint=" e.g. gamma=0.1."))


def _multi_step_lr(o, t, lr, milestones, gamma):
    # torch closed form: base_lr * gamma ** bisect_right(sorted(milestones), last_epoch)
    return lr * gamma ** o.count_le(milestones, t)


register(ScheduleSpec(
    "multi_step_lr", "MultiStepLR", check_multi_step_lr, _multi_step_lr,
    doc="torch's ``MultiStepLR(optimizer, milestones, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** (number of milestones <= t)\n\n"
        "A milestone listed twice decays twice, as in torch. Milestones must be ints >= 0 (torch "
        "silently never reaches others).\n\n"
        "Example::\n\n    sched = {pkg}.multi_step_lr(0.1, milestones=[30, 80])\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), milestones=sorted(s.milestones.elements()), gamma=s.gamma),
                          None),
    chainable=True,
))


# ------------------------------------------------------------------ ExponentialLR


def check_exponential_lr(lr: float, gamma: float):
    who = "exponential_lr"
    return dict(lr=lr_arg(who, lr), gamma=real_arg(who, "gamma", gamma, low=0.0, hint=(
        " It multiplies the lr at every step, e.g. gamma=0.99.")))


def _exponential_lr(o, t, lr, gamma):
    return lr * gamma ** t


register(ScheduleSpec(
    "exponential_lr", "ExponentialLR", check_exponential_lr, _exponential_lr,
    doc="torch's ``ExponentialLR(optimizer, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** t\n\n"
        "The formula of ``optax.exponential_decay(lr, 1, gamma)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.exponential_lr(0.1, gamma=0.99)\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), gamma=s.gamma), None),
    chainable=True,
))


# ------------------------------------------------------------------ CosineAnnealingLR


def check_cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0):
    who = "cosine_annealing_lr"
    return dict(lr=lr_arg(who, lr), T_max=real_arg(who, "T_max", T_max, low=0.0, low_open=True, hint=(
        " It is the half period in optimizer steps (torch divides by it).")),
        eta_min=real_arg(who, "eta_min", eta_min, hint=" It is the minimum learning rate, e.g. 0.0."))


def _cosine_annealing_lr(o, t, lr, T_max, eta_min):
    # torch closed form, same operation order (periodic beyond T_max, like torch's recursion)
    return eta_min + (lr - eta_min) * (1 + o.cos(math.pi * o.to_float(t) / T_max)) / 2


register(ScheduleSpec(
    "cosine_annealing_lr", "CosineAnnealingLR", check_cosine_annealing_lr, _cosine_annealing_lr,
    doc="torch's ``CosineAnnealingLR(optimizer, T_max, eta_min)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2\n\n"
        "Beyond ``T_max`` the lr rises again (period ``2 * T_max``), as torch's recursion does; "
        "``optax.cosine_decay_schedule`` instead holds ``eta_min``. torch updates recursively; "
        "the values agree to float64 rounding (<= 3.2e-13 of the peak over 1000 steps; with "
        "``eta_min != 0`` torch's recursion drifts after each minimum, up to ~8 eps |eta_min| "
        "(2 T_max / pi)^2).\n\n"
        "Example::\n\n    sched = {pkg}.cosine_annealing_lr(0.1, T_max=100, eta_min=1e-4)\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), T_max=s.T_max, eta_min=s.eta_min), None),
    chainable=True,
))


# ------------------------------------------------------------------ LinearLR


def check_linear_lr(lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5):
    who = "linear_lr"
    if isinstance(start_factor, numbers.Real) and not isinstance(start_factor, bool) and (
            start_factor > 1.0 or start_factor <= 0):
        raise InitError(f"{who}: Starting multiplicative factor expected to be greater than 0 and less or "
                        f"equal to 1 (torch's LinearLR refuses it too), got start_factor={start_factor!r}.")
    if isinstance(end_factor, numbers.Real) and not isinstance(end_factor, bool) and (
            end_factor > 1.0 or end_factor < 0):
        raise InitError(f"{who}: Ending multiplicative factor expected to be between 0 and 1 (torch's "
                        f"LinearLR refuses it too), got end_factor={end_factor!r}.")
    return dict(lr=lr_arg(who, lr), start_factor=real_arg(who, "start_factor", start_factor),
                end_factor=real_arg(who, "end_factor", end_factor),
                total_iters=int_arg(who, "total_iters", total_iters, low=0, hint=(
                    " It is the number of steps of the linear ramp.")))


def _linear_lr(o, t, lr, start_factor, end_factor, total_iters):
    if total_iters == 0:  # torch: start_factor at step 0, then unchanged forever
        return lr * start_factor + 0.0 * o.to_float(t)
    frac = o.to_float(o.minimum(total_iters, t))
    return lr * (start_factor + (end_factor - start_factor) * frac / total_iters)


register(ScheduleSpec(
    "linear_lr", "LinearLR", check_linear_lr, _linear_lr,
    doc="torch's ``LinearLR(optimizer, start_factor, end_factor, total_iters)`` for base lr ``lr``: "
        "{returns}.\n\n"
        "    lr_t = lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)\n\n"
        "(``total_iters=0``: ``lr * start_factor`` forever, as torch). The formula of "
        "``optax.linear_schedule(lr*start_factor, lr*end_factor, total_iters)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.linear_lr(0.1, start_factor=0.1, total_iters=100)   # warm-up\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), start_factor=s.start_factor, end_factor=s.end_factor,
                               total_iters=s.total_iters), None),
    chainable=True,
))


# ------------------------------------------------------------------ PolynomialLR


def check_polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0):
    who = "polynomial_lr"
    return dict(lr=lr_arg(who, lr), total_iters=int_arg(who, "total_iters", total_iters, low=0, hint=(
        " It is the number of decay steps.")),
        power=real_arg(who, "power", power, low=0.0, hint=(
            " A negative power makes torch's PolynomialLR divide by zero at step total_iters.")))


def _polynomial_lr(o, t, lr, total_iters, power):
    if total_iters == 0:  # torch: base_lr forever
        return lr + 0.0 * o.to_float(t)
    frac = o.to_float(o.minimum(total_iters, t)) / total_iters
    base = 1.0 - frac
    if power == 0:  # torch: 0.0 ** 0 == 1, the lr never moves
        return lr * base ** 0
    # XLA's jitted pow(0, non-integer) is NaN; torch's is 0
    positive = base > 0
    return lr * o.where(positive, o.where(positive, base, 1.0) ** power, 0.0)


register(ScheduleSpec(
    "polynomial_lr", "PolynomialLR", check_polynomial_lr, _polynomial_lr,
    doc="torch's ``PolynomialLR(optimizer, total_iters, power)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * (1 - min(t, total_iters) / total_iters) ** power\n\n"
        "The formula of ``optax.polynomial_schedule(lr, 0, power, total_iters)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.polynomial_lr(0.1, total_iters=1000, power=2.0)\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), total_iters=s.total_iters, power=s.power), None),
    chainable=True,
))


# ------------------------------------------------------------------ CosineAnnealingWarmRestarts


def _restart_tables(T_0, T_mult, limit=2**62):
    starts, periods, s, p = [], [], 0, T_0
    while s <= limit:
        starts.append(s)
        periods.append(p)
        s, p = s + p, p * T_mult
    return tuple(starts), tuple(periods)


def check_cosine_annealing_warm_restarts(lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0):
    who = "cosine_annealing_warm_restarts"
    if isinstance(T_0, bool) or not isinstance(T_0, numbers.Integral) or T_0 <= 0:
        raise InitError(f"{who}: Expected positive integer T_0, but got {T_0!r} (torch refuses it too); "
                        "T_0 is the number of steps until the first restart.")
    if isinstance(T_mult, bool) or not isinstance(T_mult, numbers.Integral) or T_mult < 1:
        raise InitError(f"{who}: Expected integer T_mult >= 1, but got {T_mult!r} (torch refuses it too); "
                        "T_mult multiplies the period after each restart.")
    params = dict(lr=lr_arg(who, lr), T_0=int(T_0), T_mult=int(T_mult),
                  eta_min=real_arg(who, "eta_min", eta_min, hint=" It is the minimum learning rate."))
    starts, periods = _restart_tables(int(T_0), int(T_mult)) if T_mult > 1 else ((), ())
    return dict(params, starts=starts, periods=periods)


def _cosine_annealing_warm_restarts(o, t, lr, T_0, T_mult, eta_min, starts, periods):
    if T_mult == 1:
        t_cur, t_i = t % T_0, T_0
    else:  # cycle n starts at T_0 * (T_mult**n - 1) / (T_mult - 1): exact integer table
        n = o.count_le(starts, t) - 1
        t_cur, t_i = t - o.take(starts, n), o.take(periods, n)
    return eta_min + (lr - eta_min) * (1 + o.cos(math.pi * o.to_float(t_cur) / t_i)) / 2


register(ScheduleSpec(
    "cosine_annealing_warm_restarts", "CosineAnnealingWarmRestarts", check_cosine_annealing_warm_restarts,
    _cosine_annealing_warm_restarts,
    doc="torch's ``CosineAnnealingWarmRestarts(optimizer, T_0, T_mult, eta_min)`` for base lr ``lr``: "
        "{returns}.\n\n"
        "    lr_t = eta_min + (lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2\n\n"
        "where cycle ``n`` lasts ``T_i = T_0 * T_mult**n`` steps and ``T_cur`` counts the steps since "
        "its start (exact integer arithmetic, no floating log). This is torch's "
        "``scheduler.step()`` (per optimizer step) behaviour; torch's fractional ``step(epoch)`` is "
        "not modelled.\n\n"
        "Example::\n\n    sched = {pkg}.cosine_annealing_warm_restarts(0.1, T_0=10, T_mult=2)\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), T_0=s.T_0, T_mult=s.T_mult, eta_min=s.eta_min), None),
))
