r"""torch.optim.Adamax: ``scale_by_torch_adamax`` and the ``adamax`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, adam_like, inc, lerp, scalar, wide


class ScaleByTorchAdamaxState(NamedTuple):
    """State of :func:`scale_by_torch_adamax`: torch's ``step``, ``exp_avg``, ``exp_inf``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    exp_avg: optax.Updates
    exp_inf: optax.Updates


def scale_by_torch_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> optax.GradientTransformation:
    r"""Adamax's scaling, torch's formulas (lr applied afterwards).

    .. math:: m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
              u_t = \max(\beta_2 u_{t-1},\ |g_t| + \epsilon),\quad
              \text{out}_t = \frac{m_t}{(1-\beta_1^t)\,u_t}

    ``optax.adamax`` adds ``eps`` after the max (:math:`\max(\beta_2 u, |g|) + \epsilon`):
    not equal.
    """
    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchAdamaxState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update_fn(updates, state, params=None):
        del params
        count = inc(state.count)
        w = wide()
        bc = 1 - scalar(b1, w) ** count.astype(w)
        m = jax.tree.map(lambda m, g: lerp(m, g, 1 - b1), state.exp_avg, updates)
        u = jax.tree.map(lambda u, g: jnp.maximum(u * b2, jnp.abs(g) + eps), state.exp_inf, updates)
        out = jax.tree.map(lambda m, u: m / u / bc.astype(m.dtype), m, u)
        return out, ScaleByTorchAdamaxState(count, m, u)

    return optax.GradientTransformation(init_fn, update_fn)


def adamax(lr: ScalarOrSchedule = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
           maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adamax`` as an optax transformation (see :func:`scale_by_torch_adamax`).

    State: ``(Empty, Empty, ScaleByTorchAdamaxState, Empty, ScaleByScheduleState)``.
    """
    _core.check("adamax", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
    b1, b2 = betas
    return adam_like("adamax", maximize, weight_decay, False, scale_by_torch_adamax(b1, b2, eps), lr)
