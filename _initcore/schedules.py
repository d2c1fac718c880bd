r"""``torch.optim.lr_scheduler``'s schedules, written once for both packages: one spec each.

Each schedule is one :class:`Spec`: its argument check (whose signature *is* the
factory's signature), its formula of the number of optimizer steps already taken ``t``
(optax's ``count``; torch's ``scheduler.last_epoch`` when ``scheduler.step()`` is called
after every ``optimizer.step()``), its docstring, and how to read it from / build it as
a torch scheduler. The factories of both packages (``jaxinit/_src/schedule_factories.py``,
``torchinit/_src/schedule_factories.py``) are generated from the specs by
``python -m _initcore.schedules_codegen`` (literal docstrings, visible to IDEs and
``help()``; a test checks they are up to date).

The formulas are written against a tiny array namespace (:class:`PyOps` here,
``_JaxOps`` in ``jaxinit/_src/schedules.py``): ``jaxinit`` runs them with ``jax.numpy``
(jittable optax schedules), ``torchinit`` with Python's ``math`` (a callable
``step -> float``). Reading torch objects goes through ``_initcore/torch_schedulers.py``
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
from typing import Any, Callable, ClassVar, Mapping, Sequence

from _initcore import torch_schedulers as _torch
from _initcore.errors import InitError

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
    ``read(scheduler, i, group) -> (args, params | None)`` reads param group ``i`` of a torch
    scheduler of class ``torch``; ``to_torch(args, optimizer, build)`` builds one (default:
    set every group's lr to ``args["lr"]`` and call the class with the other arguments).
    """

    name: str
    torch: str | None
    check: Callable[..., dict]
    formula: Callable[..., Any]
    doc: str
    read: Callable[..., tuple] | None = None
    to_torch: Callable[..., Any] | None = None


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


STEP_LR = _register(Spec(
    "step_lr", "StepLR", check_step_lr, _step_lr,
    doc="torch's ``StepLR(optimizer, step_size, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** (t // step_size)\n\n"
        "The formula of ``optax.exponential_decay(lr, step_size, gamma, staircase=True)`` (float32 "
        "there). torch multiplies recursively; the values agree to float64 rounding (<1e-13 relative "
        "over 1000 steps).\n\n"
        "Example::\n\n    sched = {pkg}.step_lr(0.1, step_size=30)   # 0.1 until step 29, then 0.01\n",
    read=lambda s, i, g: (dict(lr=_base_lr(s, i), step_size=s.step_size, gamma=s.gamma), None),
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


MULTI_STEP_LR = _register(Spec(
    "multi_step_lr", "MultiStepLR", check_multi_step_lr, _multi_step_lr,
    doc="torch's ``MultiStepLR(optimizer, milestones, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** (number of milestones <= t)\n\n"
        "A milestone listed twice decays twice, as in torch. Milestones must be ints >= 0 (torch "
        "silently never reaches others).\n\n"
        "Example::\n\n    sched = {pkg}.multi_step_lr(0.1, milestones=[30, 80])\n",
    read=lambda s, i, g: (dict(lr=_base_lr(s, i), milestones=sorted(s.milestones.elements()), gamma=s.gamma),
                          None),
))


# ------------------------------------------------------------------ ExponentialLR


def check_exponential_lr(lr: float, gamma: float):
    who = "exponential_lr"
    return dict(lr=_lr(who, lr), gamma=_real(who, "gamma", gamma, low=0.0, hint=(
        " It multiplies the lr at every step, e.g. gamma=0.99.")))


def _exponential_lr(o, t, lr, gamma):
    return lr * gamma ** t


EXPONENTIAL_LR = _register(Spec(
    "exponential_lr", "ExponentialLR", check_exponential_lr, _exponential_lr,
    doc="torch's ``ExponentialLR(optimizer, gamma)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * gamma ** t\n\n"
        "The formula of ``optax.exponential_decay(lr, 1, gamma)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.exponential_lr(0.1, gamma=0.99)\n",
    read=lambda s, i, g: (dict(lr=_base_lr(s, i), gamma=s.gamma), None),
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


COSINE_ANNEALING_LR = _register(Spec(
    "cosine_annealing_lr", "CosineAnnealingLR", check_cosine_annealing_lr, _cosine_annealing_lr,
    doc="torch's ``CosineAnnealingLR(optimizer, T_max, eta_min)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2\n\n"
        "Beyond ``T_max`` the lr rises again (period ``2 * T_max``), as torch's recursion does; "
        "``optax.cosine_decay_schedule`` instead holds ``eta_min``. torch updates recursively; "
        "the values agree to float64 rounding (<= 3.2e-13 of the peak over 1000 steps; with "
        "``eta_min != 0`` torch's recursion drifts after each minimum, up to ~8 eps |eta_min| "
        "(2 T_max / pi)^2).\n\n"
        "Example::\n\n    sched = {pkg}.cosine_annealing_lr(0.1, T_max=100, eta_min=1e-4)\n",
    read=lambda s, i, g: (dict(lr=_base_lr(s, i), T_max=s.T_max, eta_min=s.eta_min), None),
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


LINEAR_LR = _register(Spec(
    "linear_lr", "LinearLR", check_linear_lr, _linear_lr,
    doc="torch's ``LinearLR(optimizer, start_factor, end_factor, total_iters)`` for base lr ``lr``: "
        "{returns}.\n\n"
        "    lr_t = lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)\n\n"
        "(``total_iters=0``: ``lr * start_factor`` forever, as torch). The formula of "
        "``optax.linear_schedule(lr*start_factor, lr*end_factor, total_iters)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.linear_lr(0.1, start_factor=0.1, total_iters=100)   # warm-up\n",
    read=lambda s, i, g: (dict(lr=_base_lr(s, i), start_factor=s.start_factor, end_factor=s.end_factor,
                               total_iters=s.total_iters), None),
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


POLYNOMIAL_LR = _register(Spec(
    "polynomial_lr", "PolynomialLR", check_polynomial_lr, _polynomial_lr,
    doc="torch's ``PolynomialLR(optimizer, total_iters, power)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * (1 - min(t, total_iters) / total_iters) ** power\n\n"
        "The formula of ``optax.polynomial_schedule(lr, 0, power, total_iters)`` (float32 there).\n\n"
        "Example::\n\n    sched = {pkg}.polynomial_lr(0.1, total_iters=1000, power=2.0)\n",
    read=lambda s, i, g: (dict(lr=_base_lr(s, i), total_iters=s.total_iters, power=s.power), None),
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


COSINE_ANNEALING_WARM_RESTARTS = _register(Spec(
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
    read=lambda s, i, g: (dict(lr=_base_lr(s, i), T_0=s.T_0, T_mult=s.T_mult, eta_min=s.eta_min), None),
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
    def read(s, i, group):
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


def _one_cycle_to_torch(args, optimizer, build):
    import torch.optim.lr_scheduler as tls  # the optimizer is a torch object: torch is loaded

    return tls.OneCycleLR(optimizer, **args)


def _no_torch_scheduler(lr_name):
    def to_torch(args, optimizer, build):
        raise InitError(f"{lr_name.replace('_lr', '_momentum')} has no torch scheduler of its own: build the "
                        f"{lr_name} schedule with the same arguments (torch's scheduler cycles momentum with "
                        "cycle_momentum=True) and call its torch_scheduler().")
    return to_torch


ONE_CYCLE_LR = _register(Spec(
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

ONE_CYCLE_MOMENTUM = _register(Spec(
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

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self._package}.{self.name}({inner})"

    def __eq__(self, other):
        return type(other) is type(self) and (self.name, self.params) == (other.name, other.params)

    def __hash__(self):
        return hash((self.name, repr(sorted(self.params.items()))))

    def _build_torch(self, optimizer):
        spec = SPECS[self.name]
        if spec.to_torch is not None:
            return spec.to_torch(dict(self.args), optimizer, lambda s: s._build_torch(optimizer))
        import torch.optim.lr_scheduler as tls  # the optimizer is a torch object: torch is loaded

        a = dict(self.args)
        for group in optimizer.param_groups:
            group["lr"] = a["lr"]
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


def read_torch_scheduler(scheduler, which: str = "lr"):
    """``[(name, args, params), ...]``, one per param group, for a torch scheduler (duck-typed).

    ``which='momentum'`` gives the momentum / beta1 cycle of a scheduler that cycles it.
    """
    kind = _torch.kind(scheduler)
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
        args, params = spec.read(scheduler, i, group)
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
