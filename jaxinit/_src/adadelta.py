r"""torch.optim.Adadelta: ``scale_by_torch_adadelta`` and the ``adadelta`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, inc, l2, negate, scale_by_torch_lr


class ScaleByTorchAdadeltaState(NamedTuple):
    """State of :func:`scale_by_torch_adadelta`: torch's ``step``, ``square_avg``, ``acc_delta``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    square_avg: optax.Updates
    acc_delta: optax.Updates


def scale_by_torch_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> optax.GradientTransformation:
    r"""Adadelta's scaling, torch's formulas (lr applied afterwards).

    .. math:: v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad
              \Delta_t = \frac{\sqrt{a_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}}\, g_t,\quad
              a_t = \rho a_{t-1} + (1-\rho)\Delta_t^2,\quad \text{out}_t = \Delta_t

    Equal to ``optax.scale_by_adadelta(rho, eps)`` in exact arithmetic.
    """
    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchAdadeltaState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree.map(lambda v, g: v * rho + (1 - rho) * (g * g), state.square_avg, updates)
        delta = jax.tree.map(lambda a, v, g: jnp.sqrt(a + eps) / jnp.sqrt(v + eps) * g, state.acc_delta, v, updates)
        acc = jax.tree.map(lambda a, d: a * rho + (1 - rho) * (d * d), state.acc_delta, delta)
        return delta, ScaleByTorchAdadeltaState(inc(state.count), v, acc)

    return optax.GradientTransformation(init_fn, update_fn)


def adadelta(lr: ScalarOrSchedule = 1.0, rho: Any = 0.9, eps: Any = 1e-6, weight_decay: Any = 0,
             maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adadelta`` as an optax transformation (see :func:`scale_by_torch_adadelta`).

    ``optax.adadelta(lr, rho, eps)`` is the same rule (``weight_decay`` there is
    also L2 on the gradient). State: ``(Empty, Empty, ScaleByTorchAdadeltaState,
    ScaleByScheduleState)``.
    """
    _core.check("adadelta", lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
    return optax.chain(
        negate() if maximize else optax.identity(),
        l2(weight_decay),
        scale_by_torch_adadelta(rho, eps),
        scale_by_torch_lr(lr),
    )
