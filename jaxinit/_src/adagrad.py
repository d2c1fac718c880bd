r"""torch.optim.Adagrad: ``scale_by_torch_adagrad`` and the ``adagrad`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, inc, l2, negate, scale_by_torch_lr


class ScaleByTorchAdagradState(NamedTuple):
    """State of :func:`scale_by_torch_adagrad`: torch's ``step`` and ``sum``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    sum: optax.Updates


def scale_by_torch_adagrad(initial_accumulator_value: Any = 0.0, eps: Any = 1e-10,
                           eps_in_sqrt: bool = False) -> optax.GradientTransformation:
    r"""Adagrad's scaling :math:`s_t = s_{t-1} + g_t^2`, out :math:`g_t / (\sqrt{s_t} + \epsilon)`.

    ``eps_in_sqrt=True``: optax's :math:`g_t \cdot \mathrm{rsqrt}(s_t + \epsilon)`
    (0 where :math:`s_t = 0`), as ``optax.scale_by_rss``.
    """
    def init_fn(params):
        return ScaleByTorchAdagradState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update_fn(updates, state, params=None):
        del params
        s = jax.tree.map(lambda s, g: s + g * g, state.sum, updates)
        if eps_in_sqrt:
            out = jax.tree.map(lambda s, g: jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0).astype(g.dtype) * g, s, updates)
        else:
            out = jax.tree.map(lambda s, g: g / (jnp.sqrt(s) + eps), s, updates)
        return out, ScaleByTorchAdagradState(inc(state.count), s)

    return optax.GradientTransformation(init_fn, update_fn)


def adagrad(lr: ScalarOrSchedule = 1e-2, lr_decay: Any = 0, weight_decay: Any = 0,
            initial_accumulator_value: Any = 0, eps: Any = 1e-10, maximize: bool = False,
            eps_in_sqrt: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adagrad`` as an optax transformation.

    .. math:: g \leftarrow \pm g + \lambda p,\quad s_t = s_{t-1} + g^2\ (s_0 = \text{initial\_accumulator\_value}),

    .. math:: p \leftarrow p - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}\, \frac{g}{\sqrt{s_t} + \epsilon}

    ``optax.adagrad(lr)`` starts at 0.1 with ``eps=1e-7`` inside the root:
    reproduce it with ``adagrad(lr, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True)``.
    """
    _core.check("adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                eps_in_sqrt=eps_in_sqrt)
    return optax.chain(
        negate() if maximize else optax.identity(),
        l2(weight_decay),
        scale_by_torch_adagrad(initial_accumulator_value, eps, eps_in_sqrt),
        scale_by_torch_lr(lr, lr_decay),
    )
