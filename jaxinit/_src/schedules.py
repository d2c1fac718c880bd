"""Learning-rate schedules equal to ``torch.optim.lr_scheduler``'s, as optax schedules.

Each factory takes the scheduler's arguments (torch's names, the base lr first)
and returns a :class:`Schedule`: a jittable callable ``count -> lr`` where
``count`` is the number of optimizer updates already applied (optax's
convention), equal to the lr torch's scheduler has set after ``count``
``scheduler.step()`` calls (one per ``optimizer.step()``). Use it as ``lr`` of
the :mod:`jaxinit.optim` optimizers, as ``learning_rate`` of any optax
optimizer, or with ``optax.inject_hyperparams``.

The formulas are written once in ``_jaxinit.schedules``; :mod:`torchinit.optim`
runs the same formulas with Python's ``math``. Precision follows JAX: float64
with ``jax_enable_x64``, float32 otherwise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from _jaxinit import schedules as _core


class _JaxOps:
    """The ``_jaxinit.schedules`` namespace for ``jax.numpy`` (traceable)."""

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

    floor = staticmethod(jnp.floor)

    @staticmethod
    def nonzero(x):
        return jnp.where(x != 0, x, 1.0)

    @staticmethod
    def switch(i, branches):
        # every branch is evaluated (the others at shifted steps) and the taken one selected
        values = [jnp.asarray(b()) for b in branches]
        out = values[-1]
        for k in range(len(values) - 2, -1, -1):
            out = jnp.where(i == k, values[k], out)
        return out

    @staticmethod
    def product(value, fn, t):
        dtype = jnp.result_type(float)

        def body(k, v):
            return (v * fn(k)).astype(dtype)

        return jax.lax.fori_loop(1, jnp.asarray(t) + 1, body, jnp.asarray(value, dtype))


class Schedule(_core.ScheduleBase):
    """An optax schedule equal to a torch scheduler; ``repr`` shows its arguments.

    ``schedule(count)`` is the lr of the update after ``count`` updates;
    ``schedule.torch_scheduler(optimizer, steps_taken=0)`` builds the equal real
    ``torch.optim.lr_scheduler`` object (for resuming in torch).
    """

    __slots__ = ()
    _ops = _JaxOps
    _package = "jaxinit.optim"


def schedules_from_torch(scheduler, which: str = "lr", *, lr_lambda=None) -> list[Schedule]:
    """One :class:`Schedule` per param group, equal to a ``torch.optim.lr_scheduler`` object.

    Reads the scheduler duck-typed (no torch import): StepLR, MultiStepLR,
    ExponentialLR, CosineAnnealingLR, LinearLR, PolynomialLR, ConstantLR,
    CosineAnnealingWarmRestarts, OneCycleLR, CyclicLR, LambdaLR, MultiplicativeLR,
    SWALR, SequentialLR and ChainedScheduler over them; the base lr of group ``i`` is
    ``scheduler.base_lrs[i]`` (OneCycleLR: the group's ``initial_lr``/``max_lr``/
    ``min_lr``; a 1-element tensor lr is read with ``.item()``). ``which='momentum'``
    gives OneCycleLR's / CyclicLR's momentum / beta1 cycle (``cycle_momentum=True``
    only). LambdaLR / MultiplicativeLR hold Python functions JAX cannot be assumed
    to trace: pass ``lr_lambda=`` the same function written with ``jax.numpy`` (one
    for all groups, or a list per group); it is checked against torch's on the
    first 64 steps, and refused without it. The schedules are functions of the number
    of optimizer steps, i.e. they assume ``scheduler.step()`` after every
    ``optimizer.step()``.
    """
    read = _core.read_torch_scheduler(scheduler, which, schedule_class=Schedule, lr_lambda=lr_lambda)
    return [Schedule(name, args, params) for name, args, params in read]


