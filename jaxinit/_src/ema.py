r"""Exponential moving average of the updates (torch's ``lerp`` form).

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import inc, lerp, powm1


class TorchEmaState(NamedTuple):
    """State of :func:`ema`: ``count`` updates seen, ``ema`` the raw average."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    ema: optax.Updates


def ema(decay: Any, debias: bool = False) -> optax.GradientTransformation:
    r"""Exponentially weighted average of the updates, torch's ``lerp`` form.

    .. math:: m_t = m_{t-1} + (1 - \beta)(g_t - m_{t-1}),\quad
              \text{out}_t = m_t \;\text{ or }\; m_t / (1 - \beta^t)\ (\text{debias})

    ``m_0 = 0``. This is Adam's ``exp_avg`` (``torch.Tensor.lerp_``); with
    ``debias=True`` the bias-corrected average :math:`\hat m_t`. Equal in
    exact arithmetic to ``optax.ema(decay, debias)``, which computes
    ``(1 - decay) * g + decay * m`` (different float rounding).

    Example: ``optax.chain(jaxinit.optim.ema(0.9, debias=True), optax.scale(-0.1))``.
    """
    _core.check("ema", decay=decay, debias=debias)

    def init_fn(params):
        return TorchEmaState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        count = inc(state.count)
        m = jax.tree.map(lambda m, g: lerp(m, g, 1 - decay), state.ema, updates)
        out = m
        if debias:
            out = jax.tree.map(lambda x: x / powm1(decay, count, x.dtype), m)
        return out, TorchEmaState(count, m)

    return optax.GradientTransformation(init_fn, update_fn)
