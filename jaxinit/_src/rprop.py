r"""torch.optim.Rprop: ``scale_by_torch_rprop`` and the ``rprop`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import inc, negate


class ScaleByTorchRpropState(NamedTuple):
    """State of :func:`scale_by_torch_rprop`: torch's ``step``, ``prev``, ``step_size``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    prev: optax.Updates
    step_size: optax.Updates


def scale_by_torch_rprop(lr: Any = 1e-2, etas: tuple = (0.5, 1.2),
                         step_sizes: tuple = (1e-6, 50)) -> optax.GradientTransformation:
    r"""Rprop's full update (the lr is only the initial step size), torch's formulas.

    .. math:: s = \mathrm{sign}(g_t\, g_{t-1}),\quad
              \delta_t = \mathrm{clip}(\delta_{t-1}\cdot\{\eta_+ \text{ if } s>0;\ \eta_- \text{ if } s<0;\ 1\},
              \delta_{\min}, \delta_{\max}),

    .. math:: g_t \leftarrow 0 \text{ where } s < 0,\qquad \text{out}_t = -\mathrm{sign}(g_t)\,\delta_t,
              \qquad \text{prev} \leftarrow g_t

    :math:`\delta_0 = \text{lr}`. ``optax.rprop`` keeps the sign flip of the
    previous step differently (it stores the sign-masked product); torch's
    rule is the one written here.
    """
    if callable(lr):
        raise _core.InitError(
            "rprop: lr must be a number (torch's Rprop reads lr once, to fill step_size on the first step, and "
            "ignores it afterwards, so a schedule would have no effect in torch); pass lr=<initial step size>.")
    etaminus, etaplus = etas
    smin, smax = step_sizes

    def init_fn(params):
        return ScaleByTorchRpropState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params),
                                      jax.tree.map(lambda p: jnp.full_like(p, lr), params))

    def update_fn(updates, state, params=None):
        del params

        def one(g, prev, size):
            prod = g * prev  # torch takes its sign; the comparisons below are the same (NaN kept, as torch)
            factor = jnp.where(prod > 0, jnp.asarray(etaplus, g.dtype),
                               jnp.where(prod < 0, jnp.asarray(etaminus, g.dtype),
                                         jnp.where(prod == 0, jnp.ones_like(g), prod)))
            size = jnp.clip(size * factor, smin, smax)
            g = jnp.where(prod < 0, jnp.zeros_like(g), g)
            return -jnp.sign(g) * size, g, size

        res = jax.tree.map(one, updates, state.prev, state.step_size)
        is_triple = lambda x: isinstance(x, tuple) and len(x) == 3 and not hasattr(x, "_fields")  # noqa: E731
        out, prev, size = (jax.tree.map(lambda r: r[k], res, is_leaf=is_triple) for k in range(3))
        return out, ScaleByTorchRpropState(inc(state.count), prev, size)

    return optax.GradientTransformation(init_fn, update_fn)


def rprop(lr: Any = 1e-2, etas: tuple = (0.5, 1.2), step_sizes: tuple = (1e-6, 50),
          maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Rprop`` as an optax transformation (see :func:`scale_by_torch_rprop`).

    ``lr`` is the initial step size only (a number; torch ignores later lr
    changes). State: ``(Empty [maximize], ScaleByTorchRpropState)``.
    """
    _core.check("rprop", lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
    return optax.chain(
        negate() if maximize else optax.identity(),
        scale_by_torch_rprop(lr, etas, step_sizes),
    )
