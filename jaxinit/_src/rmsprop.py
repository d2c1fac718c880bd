r"""torch.optim.RMSprop: ``scale_by_torch_rms`` and the ``rmsprop`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, inc, l2, lerp, negate, scale_by_torch_lr
from jaxinit._src.sgd import trace_torch


class ScaleByTorchRmsState(NamedTuple):
    """State of :func:`scale_by_torch_rms`: torch's ``step``, ``square_avg``, ``grad_avg`` (None unless centered)."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    square_avg: optax.Updates
    grad_avg: Any


def scale_by_torch_rms(alpha: Any = 0.99, eps: Any = 1e-8, centered: bool = False,
                       eps_in_sqrt: bool = False, initial_scale: Any = 0.0) -> optax.GradientTransformation:
    r"""RMSprop's scaling, torch's formulas.

    .. math:: v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,\quad
              \bar g_t = \mathrm{lerp}(\bar g_{t-1}, g_t, 1-\alpha)\ (\text{centered}),\quad
              \text{out}_t = g_t / (\sqrt{v_t - \bar g_t^2} + \epsilon)

    ``eps_in_sqrt=True``: :math:`g_t\,\mathrm{rsqrt}(v_t - \bar g_t^2 + \epsilon)` (optax's default).
    ``initial_scale``: :math:`v_0` (optax's ``initial_scale``; torch uses 0).
    """
    def init_fn(params):
        return ScaleByTorchRmsState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params),
            jax.tree.map(jnp.zeros_like, params) if centered else None)

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree.map(lambda v, g: v * alpha + (1 - alpha) * (g * g), state.square_avg, updates)
        if centered:
            ga = jax.tree.map(lambda a, g: lerp(a, g, 1 - alpha), state.grad_avg, updates)
            var = jax.tree.map(lambda v, a: v - a * a, v, ga)
        else:
            ga, var = None, v
        if eps_in_sqrt:
            out = jax.tree.map(lambda s, g: jax.lax.rsqrt(s + eps) * g, var, updates)
        else:
            out = jax.tree.map(lambda s, g: g / (jnp.sqrt(s) + eps), var, updates)
        return out, ScaleByTorchRmsState(inc(state.count), v, ga)

    return optax.GradientTransformation(init_fn, update_fn)


def rmsprop(lr: ScalarOrSchedule = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0,
            momentum: Any = 0, centered: bool = False, maximize: bool = False,
            eps_in_sqrt: bool = False, initial_scale: Any = 0.0) -> optax.GradientTransformation:
    r"""``torch.optim.RMSprop`` as an optax transformation.

    .. math:: u_t = g / (\sqrt{v_t - \bar g_t^2} + \epsilon),\quad
              b_t = \mu b_{t-1} + u_t,\quad p \leftarrow p - \eta\, b_t

    The momentum buffer is taken *before* the lr, as torch does; ``optax.rmsprop``
    traces after the lr, which differs when lr is scheduled. ``optax.rmsprop(lr)``
    is ``rmsprop(lr, alpha=0.9, eps_in_sqrt=True)`` (for a constant lr).
    """
    _core.check("rmsprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale)
    return optax.chain(
        negate() if maximize else optax.identity(),
        l2(weight_decay),
        scale_by_torch_rms(alpha, eps, centered, eps_in_sqrt, initial_scale),
        optax.identity() if _core.is_static_zero(momentum) else trace_torch(momentum),
        scale_by_torch_lr(lr),
    )
