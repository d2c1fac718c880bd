r"""torch.optim.ASGD: ``scale_by_torch_asgd`` and the ``asgd`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, inc, l2, lr_at, negate, scalar, wide


class ScaleByTorchAsgdState(NamedTuple):
    """State of :func:`scale_by_torch_asgd`: torch's ``step``, ``eta``, ``mu`` (0-d arrays per parameter,
    in ``scalar_dtype``) and ``ax`` (the averaged parameters)."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    eta: optax.Updates
    mu: optax.Updates
    ax: optax.Updates


def scale_by_torch_asgd(lr: ScalarOrSchedule = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75, t0: Any = 1e6,
                        scalar_dtype: str = "float32") -> optax.GradientTransformation:
    r"""ASGD's full update (lr inside), torch's formulas; needs ``params``.

    .. math:: p_t = p_{t-1}(1 - \lambda\eta_{t-1}) - \eta_{t-1} g_t,\quad
              a_t = p_t \text{ if } \mu_{t-1} = 1 \text{ else } a_{t-1} + \mu_{t-1}(p_t - a_{t-1}),

    .. math:: \eta_t = \frac{\text{lr}}{(1 + \lambda\,\text{lr}\,t)^{\alpha}},\quad
              \mu_t = \frac{1}{\max(1, t - t_0)},\quad \eta_0 = \text{lr},\ \mu_0 = 1

    ``out = p_t - p_{t-1}``; ``ax`` (torch's ``state['ax']``) holds the
    averaged parameters :math:`a_t`, read it with
    ``optax.tree_utils.tree_get(state, "ax")``. torch keeps :math:`\eta, \mu` in
    0-d tensors of its default dtype (float32 unless changed), rounding them
    every step: ``scalar_dtype`` is that dtype. A schedule ``lr(count)`` enters
    :math:`\eta` the way torch's scheduler does (the lr of the step that just ran).
    """
    def init_fn(params):
        lr0 = lr_at(lr, jnp.zeros([], jnp.int32))
        return ScaleByTorchAsgdState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(lambda p: scalar(lr0, scalar_dtype), params),
            jax.tree.map(lambda p: jnp.ones([], scalar_dtype), params),
            jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("scale_by_torch_asgd needs params: call update(grads, state, params).")
        w = wide()
        count = inc(state.count)
        t = count.astype(w)
        lr_now = scalar(lr_at(lr, state.count), w)
        eta_next = (lr_now / (1 + lambd * lr_now * t) ** alpha).astype(scalar_dtype)
        mu_next = (1 / jnp.maximum(1.0, t - t0)).astype(scalar_dtype)

        def one(g, p, eta, mu, ax):
            dt = p.dtype
            e = eta.astype(w)
            new_p = p * (1 - lambd * e).astype(dt) + g * (-e).astype(dt)
            ax = jnp.where(mu == 1, new_p, ax + (new_p - ax) * mu.astype(dt))
            return new_p - p, ax

        res = jax.tree.map(one, updates, params, state.eta, state.mu, state.ax)
        is_pair = lambda x: isinstance(x, tuple) and len(x) == 2 and not hasattr(x, "_fields")  # noqa: E731
        out = jax.tree.map(lambda r: r[0], res, is_leaf=is_pair)
        ax = jax.tree.map(lambda r: r[1], res, is_leaf=is_pair)
        eta = jax.tree.map(lambda e: eta_next, state.eta)
        mu = jax.tree.map(lambda m: mu_next, state.mu)
        return out, ScaleByTorchAsgdState(count, eta, mu, ax)

    return optax.GradientTransformation(init_fn, update_fn)


def asgd(lr: ScalarOrSchedule = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75, t0: Any = 1e6, weight_decay: Any = 0,
         maximize: bool = False, scalar_dtype: str = "float32") -> optax.GradientTransformation:
    r"""``torch.optim.ASGD`` as an optax transformation (see :func:`scale_by_torch_asgd`).

    State: ``(Empty [maximize], Empty [L2 decay], ScaleByTorchAsgdState)``; the
    averaged parameters are its ``ax``. ``scalar_dtype``: the dtype torch keeps
    ``eta``/``mu`` in (torch's default dtype, ``'float32'`` unless changed).
    """
    _core.check("asgd", lr=lr, weight_decay=weight_decay, maximize=maximize, scalar_dtype=scalar_dtype)
    return optax.chain(
        negate() if maximize else optax.identity(),
        l2(weight_decay),
        scale_by_torch_asgd(lr, lambd, alpha, t0, scalar_dtype),
    )
