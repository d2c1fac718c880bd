"""Learning-rate schedules equal to ``torch.optim.lr_scheduler``'s, as optax schedules.

Each factory takes the scheduler's arguments (torch's names, the base lr first)
and returns a :class:`Schedule`: a jittable callable ``count -> lr`` where
``count`` is the number of optimizer updates already applied (optax's
convention), equal to the lr torch's scheduler has set after ``count``
``scheduler.step()`` calls (one per ``optimizer.step()``). Use it as ``lr`` of
the :mod:`jaxinit.optim` optimizers, as ``learning_rate`` of any optax
optimizer, or with ``optax.inject_hyperparams``.

The formulas are written once in ``_initcore.schedules``; :mod:`torchinit.optim`
runs the same formulas with Python's ``math``. Precision follows JAX: float64
with ``jax_enable_x64``, float32 otherwise.
"""
from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp

from _initcore import schedules as _core


class _JaxOps:
    """The ``_initcore.schedules`` namespace for ``jax.numpy`` (traceable)."""

    @staticmethod
    def step(t, who):
        return jnp.asarray(t)

    @staticmethod
    def to_float(t):
        # int32 / int is float32 in JAX even with x64 on: convert explicitly
        return jnp.asarray(t).astype(jnp.result_type(float))

    cos = staticmethod(jnp.cos)
    minimum = staticmethod(jnp.minimum)
    where = staticmethod(jnp.where)

    @staticmethod
    def _table(table):
        dtype = jnp.result_type(int)
        limit = jnp.iinfo(dtype).max
        return jnp.asarray([v for v in table if v <= limit], dtype)

    @staticmethod
    def count_le(table, t):
        if not table:
            return jnp.zeros_like(t)
        return jnp.searchsorted(_JaxOps._table(table), t, side="right")

    @staticmethod
    def take(table, i):
        return _JaxOps._table(table)[i]

    @staticmethod
    def invalid_if(cond, value, message):
        return jnp.where(cond, jnp.nan, value)


class Schedule(_core.ScheduleBase):
    """An optax schedule equal to a torch scheduler; ``repr`` shows its arguments.

    ``schedule(count)`` is the lr of the update after ``count`` updates;
    ``schedule.torch_scheduler(optimizer, steps_taken=0)`` builds the equal real
    ``torch.optim.lr_scheduler`` object (for resuming in torch).
    """

    __slots__ = ()
    _ops = _JaxOps
    _package = "jaxinit.optim"


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    return Schedule("step_lr", dict(lr=lr, step_size=step_size, gamma=gamma))


def multi_step_lr(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    return Schedule("multi_step_lr", dict(lr=lr, milestones=milestones, gamma=gamma))


def exponential_lr(lr: float, gamma: float) -> Schedule:
    return Schedule("exponential_lr", dict(lr=lr, gamma=gamma))


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    return Schedule("cosine_annealing_lr", dict(lr=lr, T_max=T_max, eta_min=eta_min))


def linear_lr(lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
              total_iters: int = 5) -> Schedule:
    return Schedule("linear_lr", dict(lr=lr, start_factor=start_factor, end_factor=end_factor,
                                      total_iters=total_iters))


def polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0) -> Schedule:
    return Schedule("polynomial_lr", dict(lr=lr, total_iters=total_iters, power=power))


def cosine_annealing_warm_restarts(lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> Schedule:
    return Schedule("cosine_annealing_warm_restarts", dict(lr=lr, T_0=T_0, T_mult=T_mult, eta_min=eta_min))


def one_cycle_lr(max_lr: float, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False) -> Schedule:
    return Schedule("one_cycle_lr", dict(
        max_lr=max_lr, total_steps=total_steps, epochs=epochs, steps_per_epoch=steps_per_epoch,
        pct_start=pct_start, anneal_strategy=anneal_strategy, cycle_momentum=cycle_momentum,
        base_momentum=base_momentum, max_momentum=max_momentum, div_factor=div_factor,
        final_div_factor=final_div_factor, three_phase=three_phase))


def one_cycle_momentum(total_steps: int | None = None, epochs: int | None = None,
                       steps_per_epoch: int | None = None, pct_start: float = 0.3,
                       anneal_strategy: str = "cos", base_momentum: float = 0.85,
                       max_momentum: float = 0.95, three_phase: bool = False) -> Schedule:
    return Schedule("one_cycle_momentum", dict(
        total_steps=total_steps, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start,
        anneal_strategy=anneal_strategy, base_momentum=base_momentum, max_momentum=max_momentum,
        three_phase=three_phase))


def schedules_from_torch(scheduler, which: str = "lr") -> list[Schedule]:
    """One :class:`Schedule` per param group, equal to a ``torch.optim.lr_scheduler`` object.

    Reads the scheduler duck-typed (no torch import): StepLR, MultiStepLR,
    ExponentialLR, CosineAnnealingLR, LinearLR, PolynomialLR,
    CosineAnnealingWarmRestarts, OneCycleLR; the base lr of group ``i`` is
    ``scheduler.base_lrs[i]`` (OneCycleLR: the group's ``initial_lr``/``max_lr``/
    ``min_lr``). ``which='momentum'`` gives OneCycleLR's momentum / beta1 cycle
    (``cycle_momentum=True`` only). The schedules are functions of the number
    of optimizer steps, i.e. they assume ``scheduler.step()`` after every
    ``optimizer.step()``.
    """
    return [Schedule(name, args, params) for name, args, params in _core.read_torch_scheduler(scheduler, which)]


for _f in (step_lr, multi_step_lr, exponential_lr, cosine_annealing_lr, linear_lr, polynomial_lr,
           cosine_annealing_warm_restarts, one_cycle_lr, one_cycle_momentum):
    _f.__doc__ = _core.doc(_f.__name__, "jaxinit")
del _f
