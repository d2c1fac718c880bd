r"""torch.optim.Adam and AdamW: ``scale_by_torch_adam`` and the ``adam`` / ``adamw`` factories.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, dtype_of, inc, l2, lerp, negate, powm1, scale_by_torch_lr


class ScaleByTorchAdamState(NamedTuple):
    """State of :func:`scale_by_torch_adam`: torch's ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates
    max_exp_avg_sq: Any


def scale_by_torch_adam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, amsgrad: bool = False,
                        eps_root: Any = 0.0, amsgrad_bias_corrected: bool = False) -> optax.GradientTransformation:
    r"""Adam's scaling, torch's formulas (lr applied afterwards).

    .. math:: m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
              v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
              \hat v_t = \max(\hat v_{t-1}, v_t)\ (\text{amsgrad}) \text{ else } v_t,

    .. math:: \text{out}_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    torch's AMSGrad keeps the max of the *raw* :math:`v_t` and bias-corrects
    afterwards; ``optax.amsgrad`` keeps the max of :math:`v_t/(1-\beta_2^t)`
    (``amsgrad_bias_corrected=True`` here). ``eps_root`` moves to optax's
    denominator :math:`\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon`.
    """
    optax_denominator = not _core.is_static_zero(eps_root) or amsgrad_bias_corrected

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchAdamState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros() if amsgrad else None)

    def update_fn(updates, state, params=None):
        del params
        count = inc(state.count)
        m = jax.tree.map(lambda m, g: lerp(m, g, 1 - b1), state.exp_avg, updates)
        v = jax.tree.map(lambda v, g: v * b2 + (1 - b2) * (g * g), state.exp_avg_sq, updates)
        dtype = dtype_of(updates)
        bc1, bc2 = powm1(b1, count, dtype), powm1(b2, count, dtype)
        vmax = None
        if amsgrad and amsgrad_bias_corrected:
            vmax = jax.tree.map(lambda a, v: jnp.maximum(a, v / bc2), state.max_exp_avg_sq, v)
            denom = jax.tree.map(lambda a: jnp.sqrt(a + eps_root) + eps, vmax)
        else:
            vv = v
            if amsgrad:
                vmax = vv = jax.tree.map(jnp.maximum, state.max_exp_avg_sq, v)
            if optax_denominator:
                denom = jax.tree.map(lambda a: jnp.sqrt(a / bc2 + eps_root) + eps, vv)
            else:
                denom = jax.tree.map(lambda a: jnp.sqrt(a) / jnp.sqrt(bc2) + eps, vv)
        out = jax.tree.map(lambda m, d: (m / d / bc1).astype(m.dtype), m, denom)
        return out, ScaleByTorchAdamState(count, m, v, vmax)

    return optax.GradientTransformation(init_fn, update_fn)


def _adam_family(who, lr, betas, eps, weight_decay, amsgrad, maximize, eps_root, amsgrad_bias_corrected,
                 decoupled):
    _core.check(who, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                maximize=maximize, eps_root=eps_root, amsgrad_bias_corrected=amsgrad_bias_corrected)
    b1, b2 = betas
    return optax.chain(
        negate() if maximize else optax.identity(),
        optax.identity() if decoupled else l2(weight_decay),
        scale_by_torch_adam(b1, b2, eps, amsgrad, eps_root, amsgrad_bias_corrected),
        l2(weight_decay) if decoupled else optax.identity(),
        scale_by_torch_lr(lr),
    )


def adam(lr: ScalarOrSchedule = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
         amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
         amsgrad_bias_corrected: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adam`` as an optax transformation (``weight_decay`` is L2 on the gradient).

    .. math:: g \leftarrow \pm g + \lambda p,\quad
              p \leftarrow p - \eta\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    See :func:`scale_by_torch_adam` (AMSGrad differs from ``optax.amsgrad``:
    use ``amsgrad_bias_corrected=True`` for optax's).
    """
    return _adam_family("adam", lr, betas, eps, weight_decay, amsgrad, maximize, eps_root,
                        amsgrad_bias_corrected, decoupled=False)


def adamw(lr: ScalarOrSchedule = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 1e-2,
          amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
          amsgrad_bias_corrected: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.AdamW`` as an optax transformation (decoupled decay, default 1e-2).

    .. math:: p \leftarrow p - \eta\,(\text{adam}_t + \lambda p)

    ``optax.adamw``'s default weight decay is 1e-4, torch's 1e-2.
    """
    return _adam_family("adamw", lr, betas, eps, weight_decay, amsgrad, maximize, eps_root,
                        amsgrad_bias_corrected, decoupled=True)
