r"""torch.optim.NAdam: ``scale_by_torch_nadam`` and the ``nadam`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, adam_like, inc, l2, lerp, lr_at, negate, scalar, wide, with_decoupled_decay


# One NamedTuple state per transform, optax's pattern (by design): the field names are torch's
# state keys, which the state converters read.
class ScaleByTorchNadamState(NamedTuple):
    """State of :func:`scale_by_torch_nadam`: torch's ``step``, ``mu_product`` (one 0-d array per
    parameter, in ``scalar_dtype``), ``exp_avg``, ``exp_avg_sq``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    mu_product: optax.Updates
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates


def scale_by_torch_nadam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, momentum_decay: Any = 4e-3,
                         scalar_dtype: str = "float32", differentiable_lr: Any = None) -> optax.GradientTransformation:
    r"""NAdam's scaling, torch's formulas (lr applied afterwards).

    .. math:: \mu_t = \beta_1\bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr),\quad
              \Pi_t = \Pi_{t-1}\,\mu_t\ (\text{mu\_product}),\quad
              m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
              v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

    .. math:: \text{out}_t = \frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{d_t}
              + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\,\frac{m_t}{d_t},\qquad
              d_t = \sqrt{v_t / (1-\beta_2^t)} + \epsilon

    torch keeps :math:`\Pi_t` in a 0-d tensor of ``torch.get_default_dtype()``
    (float32 by default, also for float64 parameters): ``scalar_dtype`` is
    that dtype, and the product is rounded to it every step as torch does.
    ``optax.nadam`` is a different algorithm (Adam with a Nesterov
    look-ahead, no :math:`\mu_t` schedule).

    ``differentiable_lr`` (a number or schedule): torch's ``differentiable=True``
    path, which folds the lr into the two coefficients and computes them as
    ``scalar_dtype`` tensor arithmetic (torch/optim/nadam.py
    ``_single_tensor_nadam``: ``1 - mu_product`` in float32, ``x / t`` as
    ``t.reciprocal() * x``); the output then already holds ``-lr`` (the caller
    scales by 1).
    """
    def init_fn(params):
        return ScaleByTorchNadamState(
            jnp.zeros([], jnp.int32), jax.tree.map(lambda p: jnp.ones([], scalar_dtype), params),
            jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        count = inc(state.count)
        w = wide()
        t = count.astype(w)
        decay = jnp.asarray(0.96, w)
        mu = scalar(b1, w) * (1.0 - 0.5 * decay ** (t * momentum_decay))
        mu_next = scalar(b1, w) * (1.0 - 0.5 * decay ** ((t + 1) * momentum_decay))
        bc2 = 1 - scalar(b2, w) ** t
        mp = jax.tree.map(lambda a: a * mu.astype(a.dtype), state.mu_product)
        m = jax.tree.map(lambda m, g: lerp(m, g, 1 - b1), state.exp_avg, updates)
        v = jax.tree.map(lambda v, g: v * b2 + (1 - b2) * (g * g), state.exp_avg_sq, updates)

        def one(g, m, v, mp):
            dt = g.dtype
            d = jnp.sqrt(v / bc2.astype(dt)) + eps
            if differentiable_lr is not None:  # torch's tensor arithmetic in mu_product's dtype
                sd = mp.dtype
                lr_now = scalar(lr_at(differentiable_lr, state.count), w)
                c1 = (1 / (1 - mp)) * (-lr_now * (1.0 - mu)).astype(sd)
                mpn = mp * mu_next.astype(sd)
                c2 = (1 / (1 - mpn)) * (-lr_now * mu_next).astype(sd)
                return (g * c1.astype(dt)) / d + (m * c2.astype(dt)) / d
            mpw = mp.astype(w)
            c1 = ((1.0 - mu) / (1.0 - mpw)).astype(dt)
            c2 = (mu_next / (1.0 - mpw * mu_next)).astype(dt)
            return c1 * (g / d) + c2 * (m / d)

        out = jax.tree.map(one, updates, m, v, mp)
        return out, ScaleByTorchNadamState(count, mp, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


def nadam(lr: ScalarOrSchedule = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
          momentum_decay: Any = 4e-3, decoupled_weight_decay: bool = False, maximize: bool = False,
          scalar_dtype: str = "float32", differentiable: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.NAdam`` as an optax transformation (see :func:`scale_by_torch_nadam`).

    .. math:: g \leftarrow \pm g + \lambda p\ (\text{or } p \leftarrow p(1-\eta\lambda) \text{ if decoupled}),
              \quad p \leftarrow p - \eta\,\text{out}_t

    State: ``(Empty, Empty, ScaleByTorchNadamState, Empty, ScaleByScheduleState)``.
    ``scalar_dtype``: the dtype torch keeps ``mu_product`` in (torch's default
    dtype: ``'float32'`` unless ``torch.set_default_dtype(torch.float64)``).
    ``differentiable``: torch's ``differentiable=True`` arithmetic (the step
    coefficients as float32 tensor arithmetic, see :func:`scale_by_torch_nadam`).
    """
    _core.check("nadam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, scalar_dtype=scalar_dtype,
                differentiable=differentiable)
    b1, b2 = betas
    core = scale_by_torch_nadam(b1, b2, eps, momentum_decay, scalar_dtype, lr if differentiable else None)
    if not differentiable:
        return adam_like("nadam", maximize, weight_decay, decoupled_weight_decay, core, lr)
    if decoupled_weight_decay and not _core.is_static_zero(weight_decay):
        core = with_decoupled_decay(core, lr, weight_decay)
    return optax.chain(  # the same layout; the core's output already holds -lr (and the decoupled decay)
        negate() if maximize else optax.identity(),
        optax.identity() if decoupled_weight_decay else l2(weight_decay),
        core,
        optax.identity(),
        optax.scale_by_schedule(lambda count: 1.0),
    )
