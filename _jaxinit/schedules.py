r"""``torch.optim.lr_scheduler``'s schedules, written once for both packages: one spec each.

Each schedule is one :class:`Spec`: its argument check (whose signature *is* the
factory's signature), its formula of the number of optimizer steps already taken ``t``
(optax's ``count``; torch's ``scheduler.last_epoch`` when ``scheduler.step()`` is called
after every ``optimizer.step()``), its docstring, and how to read it from / build it as
a torch scheduler. The factories of both packages (``jaxinit/_src/schedule_factories.py``,
``torchinit/_src/schedule_factories.py``) are generated from the specs by
``python -m _jaxinit.schedules_codegen`` (literal docstrings, visible to IDEs and
``help()``; a test checks they are up to date).

The formulas are written against a tiny array namespace (:class:`PyOps` here,
``_JaxOps`` in ``jaxinit/_src/schedules.py``): ``jaxinit`` runs them with ``jax.numpy``
(jittable optax schedules), ``torchinit`` with Python's ``math`` (a callable
``step -> float``). Reading torch objects goes through ``_jaxinit/torch_schedulers.py``
(the only place that touches torch's private attributes).

Closed forms vs torch's recursive forms
---------------------------------------
torch updates StepLR, MultiStepLR, ExponentialLR, LinearLR, PolynomialLR and
CosineAnnealingLR *recursively* (``lr_t = lr_{t-1} * factor_t``); we evaluate
the closed forms torch itself uses for ``scheduler.step(epoch)``
(``_get_closed_form_lr``). In exact arithmetic they are equal; in float64 they
differ by the rounding torch accumulates: measured <= 3.2e-13 of the peak lr over
1000 steps, except CosineAnnealingLR with ``eta_min != 0``, whose recursion loses
``ulp(eta_min)`` at every minimum and carries it to the next maximum (2.6e-12 for
T_max=333, eta_min=0.2; ``parity_tests/test_schedules.py`` states the bound). CosineAnnealingWarmRestarts
and OneCycleLR are closed forms in torch too; we use torch's operation order.

Where the formulas are used in both JAX and Python, ``t`` is converted to the
default float type explicitly: ``int32 / int`` is float32 in JAX even with x64
enabled.
"""
from __future__ import annotations

import bisect
import dataclasses
import inspect
import math
import numbers
import operator
import weakref
from typing import Any, Callable, ClassVar, Mapping, Sequence

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError

# ------------------------------------------------------------------ namespaces


class PyOps:
    """The formulas' array namespace for Python numbers (``torchinit``)."""

    @staticmethod
    def step(t, who):
        try:
            t = operator.index(t)
        except TypeError:
            raise InitError(
                f"{who}: the step must be an int (the number of optimizer steps already taken), got {t!r}"
            ) from None
        if t < 0:
            raise InitError(f"{who}: the step must be >= 0 (steps already taken), got {t}")
        return t

    to_float = staticmethod(float)
    cos = staticmethod(math.cos)
    minimum = staticmethod(min)

    @staticmethod
    def where(cond, a, b):
        return a if cond else b

    @staticmethod
    def count_le(table, t):
        """How many entries of the sorted ``table`` are ``<= t``."""
        return bisect.bisect_right(table, t)

    @staticmethod
    def take(table, i):
        return table[i]

    @staticmethod
    def invalid_if(cond, value, message):
        """torch raises here; Python does too (JAX returns NaN instead)."""
        if cond:
            raise ValueError(message)
        return value

    floor = staticmethod(math.floor)  # an int, as torch's math.floor

    @staticmethod
    def nonzero(x):
        """``x``, or 1 where it is 0 (a divisor on a branch ``where`` does not take)."""
        return x if x != 0 else 1.0

    @staticmethod
    def switch(i, branches):
        """``branches[i]()`` (only the taken branch runs)."""
        return branches[i]()

    @staticmethod
    def product(value, fn, t):
        """``value * fn(1) * fn(2) * ... * fn(t)``, multiplied left to right (prefixes cached per ``fn``)."""
        try:
            prefix = _PRODUCTS.setdefault(fn, {}).setdefault(value, [value])
        except TypeError:  # fn not weak-referenceable: no cache
            prefix = [value]
        while len(prefix) <= t:
            prefix.append(prefix[-1] * fn(len(prefix)))
        return prefix[t]


# fn -> {start value: [value, value * fn(1), ...]}: a torchinit MultiplicativeLR is called at t = 0, 1, 2, ...
_PRODUCTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------ argument checks


def _real(who, name, value, *, low=None, low_open=False, high=None, high_open=False, hint=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InitError(f"{who}: {name} must be a finite real number, got {value!r}.{hint}")
    bad = (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        rng = f"{lo}, {hi}" if low is not None and high is not None else (
            f"{'>' if low_open else '>='} {low}" if low is not None else f"{'<' if high_open else '<='} {high}")
        raise InitError(f"{who}: {name} must be {rng}, got {value!r}.{hint}")
    return float(value) if not isinstance(value, int) else value


def _int(who, name, value, *, low, hint=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InitError(f"{who}: {name} must be an int >= {low}, got {value!r}.{hint}")
    return int(value)


def _lr(who, lr, name="lr"):
    return _real(who, name, lr, low=0.0, hint=(
        f" (torch.optim refuses a negative learning rate: 'Invalid learning rate'); pass {name}=<base lr >= 0>."))


# ------------------------------------------------------------------ the spec


@dataclasses.dataclass(frozen=True)
class Spec:
    """One schedule: everything both packages need, in one place.

    ``check``'s signature (names, annotations, defaults) is the factory's; it returns the
    resolved parameters that ``formula(ops, t, **params)`` takes. ``doc`` is the factory
    docstring (``{returns}``, ``{pkg}`` and ``{momentum_example}`` are filled in per package).
    ``read(scheduler, i, group, ctx) -> (args, params | None)`` reads param group ``i`` of a torch
    scheduler of class ``torch``; ``to_torch(args, optimizer, build, reset)`` builds one (default:
    set every group's lr to ``args["lr"]`` and call the class with the other arguments).
    """

    name: str
    torch: str | None
    check: Callable[..., dict]
    formula: Callable[..., Any]
    doc: str
    read: Callable[..., tuple] | None = None
    to_torch: Callable[..., Any] | None = None
    chainable: bool = False  # torch's recursion multiplies the incoming lr (what ChainedScheduler composes)


# One Spec per schedule below, the same shape by design (the lr and momentum variants of OneCycleLR
# and CyclicLR are separate public schedules with their own docs).
SPECS: dict[str, Spec] = {}


def _register(spec: Spec) -> Spec:
    SPECS[spec.name] = spec
    return spec


def by_torch_class(kind: str) -> Spec | None:
    for s in SPECS.values():
        if s.torch == kind:
            return s
    return None


# ------------------------------------------------------------------ StepLR


def check_step_lr(lr: float, step_size: int, gamma: float = 0.1):
    who = "step_lr"
    return dict(lr=_lr(who, lr), step_size=_int(who, "step_size", step_size, low=1, hint=(
        " It is the period of the decay in optimizer steps (torch's StepLR divides by it).")),
        gamma=_real(who, "gamma", gamma, low=0.0, hint=" It is the multiplicative decay factor, e.g. 0.1."))


def _step_lr(o, t, lr, step_size, gamma):
    # torch closed form: base_lr * gamma ** (last_epoch // step_size)
    return lr * gamma ** (t // step_size)


_register(Spec(
    "step_lr", "StepLR", check_step_lr, _step_lr,
    doc="torch's ``StepLR(optimizer, step_size, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** (t // step_size)\n\n"
        "The formula of ``optax.exponential_decay(lr, step_size, gamma, staircase=True)`` (float32 "
        "there). torch multiplies recursively; the values agree to float64 rounding (<1e-13 relative "
        "over 1000 steps).\n\n"
        "Example::\n\n    sched = {pkg}.step_lr(0.1, step_size=30)   # 0.1 until step 29, then 0.01\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), step_size=s.step_size, gamma=s.gamma), None),
    chainable=True,
))


def _base_lr(scheduler, i):
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
    return dict(lr=_lr(who, lr), milestones=tuple(sorted(int(m) for m in ms)),
                gamma=_real(who, "gamma", gamma, low=0.0, hint=" e.g. gamma=0.1."))


def _multi_step_lr(o, t, lr, milestones, gamma):
    # torch closed form: base_lr * gamma ** bisect_right(sorted(milestones), last_epoch)
    return lr * gamma ** o.count_le(milestones, t)


_register(Spec(
    "multi_step_lr", "MultiStepLR", check_multi_step_lr, _multi_step_lr,
    doc="torch's ``MultiStepLR(optimizer, milestones, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** (number of milestones <= t)\n\n"
        "A milestone listed twice decays twice, as in torch. Milestones must be ints >= 0 (torch "
        "silently never reaches others).\n\n"
        "Example::\n\n    sched = {pkg}.multi_step_lr(0.1, milestones=[30, 80])\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), milestones=sorted(s.milestones.elements()), gamma=s.gamma),
                          None),
    chainable=True,
))


# ------------------------------------------------------------------ ExponentialLR


def check_exponential_lr(lr: float, gamma: float):
    who = "exponential_lr"
    return dict(lr=_lr(who, lr), gamma=_real(who, "gamma", gamma, low=0.0, hint=(
        " It multiplies the lr at every step, e.g. gamma=0.99.")))


def _exponential_lr(o, t, lr, gamma):
    return lr * gamma ** t


_register(Spec(
    "exponential_lr", "ExponentialLR", check_exponential_lr, _exponential_lr,
    doc="torch's ``ExponentialLR(optimizer, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** t\n\n"
        "The formula of ``optax.exponential_decay(lr, 1, gamma)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.exponential_lr(0.1, gamma=0.99)\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), gamma=s.gamma), None),
    chainable=True,
))


# ------------------------------------------------------------------ CosineAnnealingLR


def check_cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0):
    who = "cosine_annealing_lr"
    return dict(lr=_lr(who, lr), T_max=_real(who, "T_max", T_max, low=0.0, low_open=True, hint=(
        " It is the half period in optimizer steps (torch divides by it).")),
        eta_min=_real(who, "eta_min", eta_min, hint=" It is the minimum learning rate, e.g. 0.0."))


def _cosine_annealing_lr(o, t, lr, T_max, eta_min):
    # torch closed form, same operation order (periodic beyond T_max, like torch's recursion)
    return eta_min + (lr - eta_min) * (1 + o.cos(math.pi * o.to_float(t) / T_max)) / 2


_register(Spec(
    "cosine_annealing_lr", "CosineAnnealingLR", check_cosine_annealing_lr, _cosine_annealing_lr,
    doc="torch's ``CosineAnnealingLR(optimizer, T_max, eta_min)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2\n\n"
        "Beyond ``T_max`` the lr rises again (period ``2 * T_max``), as torch's recursion does; "
        "``optax.cosine_decay_schedule`` instead holds ``eta_min``. torch updates recursively; "
        "the values agree to float64 rounding (<= 3.2e-13 of the peak over 1000 steps; with "
        "``eta_min != 0`` torch's recursion drifts after each minimum, up to ~8 eps |eta_min| "
        "(2 T_max / pi)^2).\n\n"
        "Example::\n\n    sched = {pkg}.cosine_annealing_lr(0.1, T_max=100, eta_min=1e-4)\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), T_max=s.T_max, eta_min=s.eta_min), None),
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
    return dict(lr=_lr(who, lr), start_factor=_real(who, "start_factor", start_factor),
                end_factor=_real(who, "end_factor", end_factor),
                total_iters=_int(who, "total_iters", total_iters, low=0, hint=(
                    " It is the number of steps of the linear ramp.")))


def _linear_lr(o, t, lr, start_factor, end_factor, total_iters):
    if total_iters == 0:  # torch: start_factor at step 0, then unchanged forever
        return lr * start_factor + 0.0 * o.to_float(t)
    frac = o.to_float(o.minimum(total_iters, t))
    return lr * (start_factor + (end_factor - start_factor) * frac / total_iters)


_register(Spec(
    "linear_lr", "LinearLR", check_linear_lr, _linear_lr,
    doc="torch's ``LinearLR(optimizer, start_factor, end_factor, total_iters)`` for base lr ``lr``: "
        "{returns}.\n\n"
        "    lr_t = lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)\n\n"
        "(``total_iters=0``: ``lr * start_factor`` forever, as torch). The formula of "
        "``optax.linear_schedule(lr*start_factor, lr*end_factor, total_iters)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.linear_lr(0.1, start_factor=0.1, total_iters=100)   # warm-up\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), start_factor=s.start_factor, end_factor=s.end_factor,
                               total_iters=s.total_iters), None),
    chainable=True,
))


# ------------------------------------------------------------------ PolynomialLR


def check_polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0):
    who = "polynomial_lr"
    return dict(lr=_lr(who, lr), total_iters=_int(who, "total_iters", total_iters, low=0, hint=(
        " It is the number of decay steps.")),
        power=_real(who, "power", power, low=0.0, hint=(
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


_register(Spec(
    "polynomial_lr", "PolynomialLR", check_polynomial_lr, _polynomial_lr,
    doc="torch's ``PolynomialLR(optimizer, total_iters, power)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * (1 - min(t, total_iters) / total_iters) ** power\n\n"
        "The formula of ``optax.polynomial_schedule(lr, 0, power, total_iters)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.polynomial_lr(0.1, total_iters=1000, power=2.0)\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), total_iters=s.total_iters, power=s.power), None),
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
    params = dict(lr=_lr(who, lr), T_0=int(T_0), T_mult=int(T_mult),
                  eta_min=_real(who, "eta_min", eta_min, hint=" It is the minimum learning rate."))
    starts, periods = _restart_tables(int(T_0), int(T_mult)) if T_mult > 1 else ((), ())
    return dict(params, starts=starts, periods=periods)


def _cosine_annealing_warm_restarts(o, t, lr, T_0, T_mult, eta_min, starts, periods):
    if T_mult == 1:
        t_cur, t_i = t % T_0, T_0
    else:  # cycle n starts at T_0 * (T_mult**n - 1) / (T_mult - 1): exact integer table
        n = o.count_le(starts, t) - 1
        t_cur, t_i = t - o.take(starts, n), o.take(periods, n)
    return eta_min + (lr - eta_min) * (1 + o.cos(math.pi * o.to_float(t_cur) / t_i)) / 2


_register(Spec(
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
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), T_0=s.T_0, T_mult=s.T_mult, eta_min=s.eta_min), None),
))


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
    max_lr = _lr(who, max_lr, "max_lr")
    div_factor = _real(who, "div_factor", div_factor, low=0.0, low_open=True,
                       hint=" initial_lr = max_lr / div_factor.")
    final_div_factor = _real(who, "final_div_factor", final_div_factor, low=0.0, low_open=True,
                             hint=" min_lr = initial_lr / final_div_factor.")
    if not isinstance(cycle_momentum, bool):
        raise InitError(f"{who}: cycle_momentum must be True or False, got {cycle_momentum!r}.")
    _real(who, "base_momentum", base_momentum)
    _real(who, "max_momentum", max_momentum)
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
    base = _real(who, "base_momentum", base_momentum)
    top = _real(who, "max_momentum", max_momentum)
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


def _no_torch_scheduler(lr_name):
    def to_torch(args, optimizer, build, reset):
        raise InitError(f"{lr_name.replace('_lr', '_momentum')} has no torch scheduler of its own: build the "
                        f"{lr_name} schedule with the same arguments (torch's scheduler cycles momentum with "
                        "cycle_momentum=True) and call its torch_scheduler().")
    return to_torch


_register(Spec(
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

_register(Spec(
    "one_cycle_momentum", None, check_one_cycle_momentum, _one_cycle,
    doc="torch's ``OneCycleLR`` momentum (SGD/RMSprop ``momentum``, Adam/AdamW ``betas[0]``) cycle: "
        "{returns}.\n\n"
        "Same phases as :func:`one_cycle_lr`, going ``max_momentum -> base_momentum -> "
        "max_momentum`` (three-phase: then held at ``max_momentum``), i.e. inversely to the lr. "
        "torch sets this value before each step when ``cycle_momentum=True``.\n\n"
        "Example::\n\n{momentum_example}",
    read=_read_one_cycle("momentum"), to_torch=_no_torch_scheduler("one_cycle_lr"),
))

# the momentum spec of each torch class that cycles momentum (cycle_momentum=True)
MOMENTUM_SPECS = {"OneCycleLR": "one_cycle_momentum"}


# ------------------------------------------------------------------ ConstantLR


def check_constant_lr(lr: float, factor: float = 1.0 / 3, total_iters: int = 5):
    who = "constant_lr"
    if isinstance(factor, numbers.Real) and not isinstance(factor, bool) and not 0 <= factor <= 1:
        raise InitError(f"{who}: Constant multiplicative factor expected to be between 0 and 1 (torch's "
                        f"ConstantLR refuses it too), got factor={factor!r}.")
    return dict(lr=_lr(who, lr), factor=_real(who, "factor", factor),
                total_iters=_int(who, "total_iters", total_iters, low=0, hint=(
                    " It is the number of steps the lr is scaled by factor.")))


def _constant_lr(o, t, lr, factor, total_iters):
    # torch closed form: base_lr * (factor + (last_epoch >= total_iters) * (1 - factor))
    return lr * (factor + o.where(t >= total_iters, 1 - factor, 0.0))


_register(Spec(
    "constant_lr", "ConstantLR", check_constant_lr, _constant_lr,
    doc="torch's ``ConstantLR(optimizer, factor, total_iters)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * factor   for t < total_iters,   lr afterwards\n\n"
        "torch multiplies by ``factor`` at step 0 and by ``1 / factor`` at ``total_iters`` (equal to "
        "the closed form to float64 rounding).\n\n"
        "Example::\n\n    sched = {pkg}.constant_lr(0.1, factor=0.5, total_iters=4)\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), factor=s.factor, total_iters=s.total_iters), None),
    chainable=True,
))


# ------------------------------------------------------------------ LambdaLR / MultiplicativeLR


def _fn(who, name, fn, what):
    if not callable(fn):
        raise InitError(f"{who}: {name} must be a function of the step ({what}), got {fn!r}.")
    return fn


def check_lambda_lr(lr: float, lr_lambda: Callable[[Any], Any]):
    who = "lambda_lr"
    return dict(lr=_lr(who, lr), lr_lambda=_fn(who, "lr_lambda", lr_lambda, "jittable for jaxinit: it gets an "
                                                                              "int array"))


def _lambda_lr(o, t, lr, lr_lambda):
    return lr * lr_lambda(t)  # torch: base_lr * lmbda(last_epoch)


def _lambdas(which):
    """Read group ``i``'s function: the caller's ``lr_lambda`` (checked against torch's) or torch's own."""
    def read(s, i, group, ctx):
        theirs = s.lr_lambdas[i]
        given = ctx.get("lr_lambda")
        if given is None:
            if not ctx.get("python_ok"):
                raise InitError(
                    f"jaxinit.optim.schedules_from_torch: {_torch.kind(s)} holds a Python function "
                    "(lr_lambdas) that JAX cannot be assumed to trace; pass lr_lambda=<the same function "
                    "written with jax.numpy> (or one per param group), e.g. "
                    "schedules_from_torch(sched, lr_lambda=lambda k: 0.95 ** k). It is checked against "
                    "torch's on the first steps.")
            fn = theirs
        else:
            fn = given[i] if isinstance(given, (list, tuple)) else given
            if theirs is not None:  # None: read from training-state files, which hold no function to check
                _same_function(fn, theirs, i, max(int(s.last_epoch), 0))
        if fn is None:
            raise InitError(
                f"jaxinit.optim.schedules_from_torch: this {_torch.kind(s)} was read from files, which hold no "
                "Python function (torch's state_dict() stores None for it); pass lr_lambda=<the function>.")
        return dict(lr=_base_lr(s, i), lr_lambda=fn), None
    return read


def _same_function(ours, theirs, group, last, n=64):
    for k in sorted(set(range(n)) | {last}):
        a, b = float(ours(k)), float(theirs(k))
        if not (a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))):
            raise InitError(
                f"schedules_from_torch: lr_lambda does not match the scheduler's lr_lambdas[{group}] at step "
                f"{k}: {a!r} vs torch's {b!r}. Fix: pass the same function (written with jax.numpy for "
                "jaxinit), or one per param group as a list.")


def _lambda_to_torch(cls_name):
    def to_torch(args, optimizer, build, reset):
        import torch.optim.lr_scheduler as tls

        fn = args["lr_lambda"]
        for group in optimizer.param_groups if reset else ():
            _set_group_lr(group, args["lr"])
            group.pop("initial_lr", None)
        return getattr(tls, cls_name)(optimizer, lambda k: float(fn(k)))
    return to_torch


def _set_group_lr(group, lr):
    if hasattr(group.get("lr"), "fill_"):  # a tensor lr stays a tensor, as torch's schedulers keep it
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


_register(Spec(
    "lambda_lr", "LambdaLR", check_lambda_lr, _lambda_lr,
    doc="torch's ``LambdaLR(optimizer, lr_lambda)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * lr_lambda(t)\n\n"
        "For jaxinit ``lr_lambda`` must be jittable (it gets the step as an int array); the torch "
        "scheduler built by ``.torch_scheduler()`` calls it with Python ints.\n\n"
        "Example::\n\n    sched = {pkg}.lambda_lr(0.1, lambda k: 0.95 ** k)\n",
    read=_lambdas("lr"), to_torch=_lambda_to_torch("LambdaLR"),
))


def check_multiplicative_lr(lr: float, lr_lambda: Callable[[Any], Any]):
    who = "multiplicative_lr"
    return dict(lr=_lr(who, lr), lr_lambda=_fn(who, "lr_lambda", lr_lambda, "jittable for jaxinit: it gets an "
                                                                              "int array"))


def _multiplicative_lr(o, t, lr, lr_lambda):
    # torch: lr_t = lr_{t-1} * lmbda(t) from t = 1 on: the same products in the same order
    return o.product(lr, lr_lambda, t)


_register(Spec(
    "multiplicative_lr", "MultiplicativeLR", check_multiplicative_lr, _multiplicative_lr,
    doc="torch's ``MultiplicativeLR(optimizer, lr_lambda)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * lr_lambda(1) * lr_lambda(2) * ... * lr_lambda(t)\n\n"
        "multiplied in torch's order (so equal to torch's recursion bit for bit in Python). It costs "
        "``t`` calls of ``lr_lambda`` (a ``lax.fori_loop`` in JAX): for a long run prefer a closed "
        "form (``lambda_lr``) when one exists. For jaxinit ``lr_lambda`` must be jittable.\n\n"
        "Example::\n\n    sched = {pkg}.multiplicative_lr(0.1, lambda k: 0.95)\n",
    read=_lambdas("lr"), to_torch=_lambda_to_torch("MultiplicativeLR"),
    chainable=True,
))


# ------------------------------------------------------------------ CyclicLR (lr and momentum)


def _cyclic_common(who, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode):
    up = _real(who, "step_size_up", step_size_up, low=0.0, low_open=True, hint=(
        " It is the number of steps of the rising half of a cycle."))
    down = up if step_size_down is None else _real(who, "step_size_down", step_size_down, low=0.0, hint=(
        " It is the number of steps of the falling half (None: step_size_up)."))
    if mode not in ("triangular", "triangular2", "exp_range") and scale_fn is None:
        raise InitError(f"{who}: mode is invalid and scale_fn is None (as torch's CyclicLR says): mode must be "
                        f"'triangular', 'triangular2' or 'exp_range', got {mode!r}; or pass scale_fn.")
    if scale_mode not in ("cycle", "iterations"):
        raise InitError(f"{who}: scale_mode must be 'cycle' or 'iterations', got {scale_mode!r} (torch's "
                        "CyclicLR would silently treat it as 'iterations').")
    gamma = _real(who, "gamma", gamma, hint=" It is exp_range's decay base.")
    if scale_fn is not None:
        scale = ("custom", _fn(who, "scale_fn", scale_fn, "of the cycle number or the step; jittable for "
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
    _real(who, "base_momentum", base_momentum)
    _real(who, "max_momentum", max_momentum)
    return dict(_cyclic_common(who, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode),
                low=_lr(who, base_lr, "base_lr"), high=_lr(who, max_lr, "max_lr"), momentum=False)


def check_cyclic_momentum(base_momentum: float = 0.8, max_momentum: float = 0.9, step_size_up: int = 2000,
                          step_size_down: int | None = None, mode: str = "triangular", gamma: float = 1.0,
                          scale_fn: Callable[[Any], Any] | None = None, scale_mode: str = "cycle"):
    who = "cyclic_momentum"
    return dict(_cyclic_common(who, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode),
                low=_real(who, "base_momentum", base_momentum), high=_real(who, "max_momentum", max_momentum),
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


_register(Spec(
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

_register(Spec(
    "cyclic_momentum", None, check_cyclic_momentum, _cyclic,
    doc="torch's ``CyclicLR`` momentum (SGD/RMSprop ``momentum``, Adam/AdamW ``betas[0]``) cycle: "
        "{returns}.\n\n"
        "    momentum_t = max_momentum - (max_momentum - base_momentum) * f * scale\n\n"
        "with the ``f`` and ``scale`` of :func:`cyclic_lr` (inverse to the lr). torch sets it before "
        "each step when ``cycle_momentum=True``.\n\n"
        "Example::\n\n    mom = {pkg}.cyclic_momentum(0.8, 0.9, step_size_up=200)\n",
    read=_read_cyclic("momentum"), to_torch=_no_torch_scheduler("cyclic_lr"),
))
MOMENTUM_SPECS["CyclicLR"] = "cyclic_momentum"


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
    children = []
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
        spec = by_torch_class(_torch.kind(child))
        if spec is None or spec.read is None or spec.name in COMPOSITES:
            raise InitError(f"schedules_from_torch: {_torch.kind(s)} holds a {_torch.kind(child)} (at index {k}), "
                            "which is not supported inside it; supported children are "
                            f"{sorted(x.torch for x in SPECS.values() if x.torch and x.name not in COMPOSITES)}.")
        a, p = spec.read(child, i, group, ctx)
        kids.append(ctx["schedule_class"](spec.name, a, p))
    if _torch.kind(s) == "SequentialLR":
        return dict(schedules=kids, milestones=_torch.milestones(s)), None
    return dict(schedules=kids), None


_register(Spec(
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


_register(Spec(
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
    return dict(lr=_lr(who, lr), swa_lr=_lr(who, swa_lr, "swa_lr"),
                anneal_epochs=_int(who, "anneal_epochs", anneal_epochs, low=0, hint=(
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
        _set_group_lr(group, a["lr"])
        group.pop("initial_lr", None)
    del a["lr"]
    return SWALR(optimizer, **a)


_register(Spec(
    "swalr", "SWALR", check_swalr, _swalr,
    doc="torch's ``torch.optim.swa_utils.SWALR(optimizer, swa_lr, anneal_epochs, anneal_strategy)`` "
        "for the optimizer's lr ``lr``: {returns}.\n\n"
        "    a = anneal(min(1, t / anneal_epochs))     (cos: (1 - cos(pi * x)) / 2, linear: x)\n"
        "    lr_t = swa_lr * a + lr * (1 - a)\n\n"
        "(``anneal_epochs=0``: ``swa_lr`` at once). torch recovers the start lr from the current one "
        "at every step; the closed form agrees to float64 rounding.\n\n"
        "Example::\n\n    sched = {pkg}.swalr(0.1, swa_lr=0.05, anneal_epochs=5)\n",
    read=lambda s, i, g, c: (dict(lr=_base_lr(s, i), swa_lr=_torch.scalar(g["swa_lr"]),
                                  anneal_epochs=s.anneal_epochs, anneal_strategy=_torch.swalr_anneal(s)), None),
    to_torch=_swalr_to_torch,
))


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
    factor = _real(who, "factor", factor, low=0.0, high=1.0, high_open=True, hint=(
        " torch refuses factor >= 1 ('Factor should be < 1.0.'); a negative factor would make lrs negative."))
    if isinstance(min_lr, (list, tuple)):
        min_lr = tuple(_real(who, "min_lr", m, low=0.0) for m in min_lr)
    else:
        min_lr = _real(who, "min_lr", min_lr, low=0.0, hint=" (or a list, one per param group)")
    return dict(mode=mode, factor=factor,
                patience=_int(who, "patience", patience, low=0, hint=" It is the number of bad epochs tolerated."),
                threshold=_real(who, "threshold", threshold, low=0.0),
                threshold_mode=threshold_mode,
                cooldown=_int(who, "cooldown", cooldown, low=0),
                min_lr=min_lr, eps=_real(who, "eps", eps, low=0.0))


def plateau_args_from_torch(scheduler) -> dict:
    """The arguments of a torch ReduceLROnPlateau (public attributes)."""
    mins = [_torch.scalar(m) for m in scheduler.min_lrs]
    return dict(mode=scheduler.mode, factor=scheduler.factor, patience=scheduler.patience,
                threshold=scheduler.threshold, threshold_mode=scheduler.threshold_mode,
                cooldown=scheduler.cooldown, min_lr=mins[0] if len(set(mins)) == 1 else tuple(mins),
                eps=scheduler.eps)


def cycles_momentum(scheduler, who) -> bool:
    """Whether ``scheduler`` sets the momentum / beta1 too (refused inside a composite: not modelled)."""
    kind = _torch.kind(scheduler)
    if kind in ("SequentialLR", "ChainedScheduler"):
        for child in _torch.children(scheduler):
            if getattr(child, "cycle_momentum", False):
                raise InitError(f"{who}: the {kind} holds a {_torch.kind(child)} with cycle_momentum=True, which also "
                                "sets momentum/betas; that cycle is not modelled inside a composite. Fix: "
                                "cycle_momentum=False, or use the scheduler on its own.")
        return False
    return kind in MOMENTUM_SPECS and bool(scheduler.cycle_momentum)


PLATEAU_FIELDS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")


def plateau_state_from_torch(scheduler) -> dict:
    """A torch ReduceLROnPlateau's counters and its optimizer's group lrs, as Python numbers."""
    if _torch.kind(scheduler) != "ReduceLROnPlateau":
        raise InitError(f"plateau state: expected a torch ReduceLROnPlateau or a plateau state dict, got "
                        f"{_torch.kind(scheduler)}.")
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
        _set_group_lr(g, float(lr))
    scheduler._last_lr = [g["lr"] for g in groups]


def scheduler_steps(optimizer, scheduler, step, who) -> int:
    """The optimizer steps taken, checked against ``scheduler``'s count (a schedule is a function of it).

    Adagrad/RMSprop/Adam/... count steps in their state; torch's SGD keeps none, so the number of
    optimizer steps must then be given (``step=``) unless nothing has happened yet.
    """
    sched_steps = _torch.steps_taken(scheduler)
    counted = set()
    for st in optimizer.state.values():
        if "step" in st:
            s = st["step"]
            counted.add(int(float(s.item() if hasattr(s, "item") else s)))
    if step is not None:
        step = _int(who, "step", step, low=0)
        if counted and counted != {step}:
            raise InitError(f"{who}: step={step} but the optimizer state says {sorted(counted)} steps.")
        counted = {step}
    if not counted:
        has_state = any(any(v is not None for v in st.values()) for st in optimizer.state.values())
        if sched_steps == 0 and not has_state:
            return 0  # neither has stepped
        raise InitError(
            f"{who}: {type(optimizer).__name__} keeps no step count (torch's SGD does not), so whether "
            f"{_torch.kind(scheduler)} (stepped {sched_steps} times) was stepped once per optimizer.step() "
            "cannot be checked; the schedule is a function of the optimizer step. Fix: pass step=<number of "
            "optimizer.step() calls so far> (equal to the scheduler's count when it steps per batch).")
    if counted != {sched_steps}:
        raise InitError(
            f"{who}: the optimizer has taken {sorted(counted)[0] if len(counted) == 1 else sorted(counted)} "
            f"steps but the scheduler was stepped {sched_steps} times; the schedule is a function of the "
            "optimizer step, so the scheduler must be stepped once per optimizer.step() from the start (not "
            "per epoch).")
    return sched_steps


# ------------------------------------------------------------------ the schedule object


class ScheduleBase:
    """A named schedule with its arguments; calling it gives the lr after ``count`` steps.

    Subclasses set ``_ops`` (the array namespace) and ``_package``.
    """

    __slots__ = ("name", "args", "params", "__weakref__")
    _ops: ClassVar[Any] = PyOps
    _package: ClassVar[str] = ""

    def __init__(self, name: str, args: Mapping[str, Any], params: Mapping[str, Any] | None = None):
        self.name = name
        self.args = dict(args)
        self.params = dict(SPECS[name].check(**self.args) if params is None else params)

    def __call__(self, count):
        t = self._ops.step(count, f"{self._package}.{self.name}")
        return SPECS[self.name].formula(self._ops, t, **self.params)

    # The same repr as _jaxinit.initializer.Initializer's (a call that rebuilds the object); equality
    # differs (params, not args), so the three methods are not shared.
    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self._package}.{self.name}({inner})"

    def __eq__(self, other):
        return type(other) is type(self) and (self.name, self.params) == (other.name, other.params)

    def __hash__(self):
        return hash((self.name, repr(sorted(self.params.items()))))

    def _build_torch(self, optimizer, reset: bool = True):
        """The torch scheduler; ``reset``: first set every group's lr to the base lr (not for a
        ChainedScheduler's later children, which torch builds on the lr the earlier ones set)."""
        spec = SPECS[self.name]
        if spec.to_torch is not None:
            return spec.to_torch(dict(self.args), optimizer, lambda s, r=True: s._build_torch(optimizer, r), reset)
        import torch.optim.lr_scheduler as tls  # the optimizer is a torch object: torch is loaded

        a = dict(self.args)
        if reset:
            for group in optimizer.param_groups:
                _set_group_lr(group, a["lr"])
                group.pop("initial_lr", None)
        del a["lr"]
        return getattr(tls, spec.torch)(optimizer, **a)

    def torch_scheduler(self, optimizer, steps_taken: int = 0):
        """The real ``torch.optim.lr_scheduler`` object equal to this schedule, for ``optimizer``.

        Every param group's ``lr`` is first set to this schedule's base lr (torch schedulers read
        their base lr from the groups); ``steps_taken`` replays that many ``scheduler.step()``
        calls, so a run resumed after ``steps_taken`` optimizer steps gets the very values
        (recursive rounding included) of an uninterrupted torch run.
        """
        import warnings

        steps_taken = _int("torch_scheduler", "steps_taken", steps_taken, low=0)
        sched = self._build_torch(optimizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
            for _ in range(steps_taken):
                sched.step()
        return sched


# ------------------------------------------------------------------ reading torch schedulers


# torch.optim.lr_scheduler classes that are no schedule of the step, with what replaces them (every other
# scheduler class of torch is a spec's ``torch`` class: parity_tests/test_schedules.py checks it)
NOT_SCHEDULES = {
    "ReduceLROnPlateau": "ReduceLROnPlateau is driven by a metric, not by the step, so it is no schedule; use "
                         "jaxinit.optim.reduce_lr_on_plateau (an optax transformation whose update takes "
                         "value=metric) or jaxinit.optim.from_torch(optimizer, scheduler).",
}


def read_torch_scheduler(scheduler, which: str = "lr", *, schedule_class=None, lr_lambda=None,
                         python_ok: bool = False):
    """``[(name, args, params), ...]``, one per param group, for a torch scheduler (duck-typed).

    ``which='momentum'`` gives the momentum / beta1 cycle of a scheduler that cycles it.
    ``schedule_class`` builds the children of SequentialLR / ChainedScheduler; ``lr_lambda``
    is the caller's version of LambdaLR's / MultiplicativeLR's functions (checked against
    torch's), required unless ``python_ok`` (torchinit runs torch's own functions).
    """
    ctx = dict(schedule_class=schedule_class, lr_lambda=lr_lambda, python_ok=python_ok)
    kind = _torch.kind(scheduler)
    if kind in NOT_SCHEDULES:
        raise InitError(f"schedules_from_torch: {NOT_SCHEDULES[kind]}")
    if which not in ("lr", "momentum"):
        raise InitError(f"schedules_from_torch: which must be 'lr' or 'momentum', got {which!r}.")
    if which == "momentum":
        if not (kind in MOMENTUM_SPECS and scheduler.cycle_momentum):
            raise InitError(
                f"schedules_from_torch: which='momentum' needs a {' or '.join(MOMENTUM_SPECS)} with "
                f"cycle_momentum=True, got {kind}"
                + (" with cycle_momentum=False" if kind in MOMENTUM_SPECS else "") + ".")
        spec = SPECS[MOMENTUM_SPECS[kind]]
    else:
        spec = by_torch_class(kind)
        if spec is None or spec.read is None:
            supported = sorted(s.torch for s in SPECS.values() if s.torch and s.read)
            raise InitError(
                f"schedules_from_torch: {kind} is not supported; supported are {supported}. Fix: express "
                "the schedule with one of them, or pass an optax schedule / callable as lr yourself.")
    out = []
    for i, group in enumerate(scheduler.optimizer.param_groups):
        args, params = spec.read(scheduler, i, group, ctx)
        out.append((spec.name, args, spec.check(**args) if params is None else params))
    return out


# ------------------------------------------------------------------ docstrings (rendered per package)

_RETURNS = {
    "jaxinit": "an optax schedule ``count -> lr`` (jittable; ``count`` = optimizer steps already taken)",
    "torchinit": "a callable ``step -> lr`` (Python float; ``step`` = optimizer steps already taken), "
                 "accepted as ``lr`` by the :mod:`torchinit.optim` optimizers",
}

MOMENTUM_EXAMPLES = {
    "jaxinit": (
        "    lr = jaxinit.optim.one_cycle_lr(0.1, total_steps=1000)\n"
        "    mom = jaxinit.optim.one_cycle_momentum(total_steps=1000)\n"
        "    tx = optax.inject_hyperparams(jaxinit.optim.sgd)(lr=lr, momentum=mom)\n"
        "    # Adam's beta1: optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=mom)\n"),
    "torchinit": (
        "    sched = torchinit.optim.one_cycle_lr(0.1, total_steps=1000)\n"
        "    torch_sched = sched.torch_scheduler(optimizer)   # real OneCycleLR, cycles momentum too\n"
        "    mom = torchinit.optim.one_cycle_momentum(total_steps=1000)\n"
        "    mom(0)  # 0.95, the momentum torch uses at the first step\n"),
}


def doc(name: str, package: str) -> str:
    return SPECS[name].doc.format(returns=_RETURNS[package], pkg=f"{package}.optim",
                                  momentum_example=MOMENTUM_EXAMPLES[package])


def factory_parameters(name: str) -> list[inspect.Parameter]:
    """The factory's parameters: those of the spec's ``check``."""
    return list(inspect.signature(SPECS[name].check).parameters.values())
