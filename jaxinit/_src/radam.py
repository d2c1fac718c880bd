r"""torch.optim.RAdam: ``scale_by_torch_radam`` and the ``radam`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, adam_like, inc, lerp, scalar, wide


class ScaleByTorchRadamState(NamedTuple):
    """State of :func:`scale_by_torch_radam`: torch's ``step``, ``exp_avg``, ``exp_avg_sq``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates


def scale_by_torch_radam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> optax.GradientTransformation:
    r"""RAdam's scaling, torch's formulas (lr applied afterwards).

    .. math:: \rho_\infty = \frac{2}{1-\beta_2} - 1,\quad
              \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t},\quad
              \hat m_t = \frac{m_t}{1-\beta_1^t},

    .. math:: \text{out}_t = \hat m_t\,\frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}\,
              \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
              \ \text{ if } \rho_t > 5 \text{ else } \hat m_t

    Equal to ``optax.radam(lr, threshold=5.0)`` in exact arithmetic (optax
    writes the same terms in another order).
    """
    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchRadamState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update_fn(updates, state, params=None):
        del params
        count = inc(state.count)
        w = wide()
        t = count.astype(w)
        b2w = scalar(b2, w)
        bc1 = 1 - scalar(b1, w) ** t
        bc2 = 1 - b2w ** t
        rho_inf = 2 / (1 - b2w) - 1
        rho_t = rho_inf - 2 * t * (b2w ** t) / bc2
        on = rho_t > 5.0
        rect = jnp.sqrt(jnp.where(on, (rho_t - 4) * (rho_t - 2) * rho_inf
                                  / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 1.0))
        m = jax.tree.map(lambda m, g: lerp(m, g, 1 - b1), state.exp_avg, updates)
        v = jax.tree.map(lambda v, g: v * b2 + (1 - b2) * (g * g), state.exp_avg_sq, updates)

        def one(m, v):
            dt = m.dtype
            bm = m / bc1.astype(dt)
            adaptive = jnp.sqrt(bc2).astype(dt) / (jnp.sqrt(v) + eps)
            return jnp.where(on, bm * adaptive * rect.astype(dt), bm)

        return jax.tree.map(one, m, v), ScaleByTorchRadamState(count, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


def radam(lr: ScalarOrSchedule = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
          decoupled_weight_decay: bool = False, maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.RAdam`` as an optax transformation (see :func:`scale_by_torch_radam`).

    State: ``(Empty, Empty, ScaleByTorchRadamState, Empty, ScaleByScheduleState)``.
    """
    _core.check("radam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
    b1, b2 = betas
    return adam_like("radam", maximize, weight_decay, decoupled_weight_decay, scale_by_torch_radam(b1, b2, eps), lr)
