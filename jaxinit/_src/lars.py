r"""LARS (layer-wise trust ratio, ``optax.lars``'s convention with torch-style options).

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, scale_by_torch_lr


def _resolve_mask(mask, params):
    if isinstance(mask, bool):
        return jax.tree.map(lambda _: mask, params)
    return mask(params) if callable(mask) else mask


def scale_by_lars_trust_ratio(trust_coefficient: Any = 0.001, weight_decay: Any = 0.0, eps: Any = 0.0,
                              decay_in_norm: bool = False, weight_decay_mask: Any = True,
                              trust_ratio_mask: Any = True) -> optax.GradientTransformation:
    r"""LARS's local step (You et al. 2017, Algorithm 1), per parameter array ``w``:

    .. math:: d = g + \beta w,\qquad
              \text{out} = \eta\,\frac{\lVert w\rVert}{\lVert g\rVert + \beta\lVert w\rVert + \epsilon}\; d

    ``decay_in_norm=True`` uses :math:`\lVert d\rVert + \epsilon` as the
    denominator instead (``optax.lars``' form). The ratio is 1 where
    :math:`\lVert w\rVert = 0` or the denominator norm is 0 (as
    ``optax.scale_by_trust_ratio``). ``weight_decay_mask`` / ``trust_ratio_mask``:
    optax masks (bool, pytree of bools, or ``params -> pytree``); False leaves
    are not decayed / not rescaled (biases and norm scales usually).
    """
    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("scale_by_lars_trust_ratio needs params: call update(grads, state, params).")
        wdm = _resolve_mask(weight_decay_mask, params)
        trm = _resolve_mask(trust_ratio_mask, params)

        def one(g, w, decay_it, scale_it):
            wd = weight_decay if decay_it else 0.0
            d = g if _core.is_static_zero(wd) else g + wd * w
            if not scale_it:
                return d
            w_norm = jnp.linalg.norm(w.ravel())
            g_norm = jnp.linalg.norm(d.ravel() if decay_in_norm else g.ravel())
            denom_norm = g_norm if decay_in_norm else g_norm + wd * w_norm
            ratio = trust_coefficient * w_norm / (denom_norm + eps)
            ratio = jnp.where((w_norm == 0) | (denom_norm == 0), jnp.ones_like(ratio), ratio)
            return d * ratio.astype(d.dtype)

        return jax.tree.map(one, updates, params, wdm, trm), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def lars(lr: ScalarOrSchedule, momentum: Any = 0.9, weight_decay: Any = 0.0, trust_coefficient: Any = 0.001,
         eps: Any = 0.0, nesterov: bool = False, decay_in_norm: bool = False, weight_decay_mask: Any = True,
         trust_ratio_mask: Any = True) -> optax.GradientTransformation:
    r"""LARS (You et al. 2017): layer-wise trust ratio, then lr, then momentum.

    .. math:: v_t = \mu v_{t-1} + \gamma_t\,\eta\frac{\lVert w\rVert}{\lVert g\rVert+\beta\lVert w\rVert+\epsilon}(g+\beta w),
              \quad w \leftarrow w - v_t

    torch has no LARS; :func:`torchinit.optim.lars` is the mirror.
    ``lars(lr, momentum, weight_decay, trust_coefficient, eps, nesterov,
    decay_in_norm=True, ...)`` equals ``optax.lars`` with the same arguments.
    Exclude biases / BatchNorm with e.g.
    ``weight_decay_mask=trust_ratio_mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)``.
    """
    _core.check("lars", lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps,
                trust_coefficient=trust_coefficient, nesterov=nesterov, decay_in_norm=decay_in_norm)
    return optax.chain(
        scale_by_lars_trust_ratio(trust_coefficient, weight_decay, eps, decay_in_norm,
                                  weight_decay_mask, trust_ratio_mask),
        scale_by_torch_lr(lr),
        optax.trace(decay=momentum, nesterov=nesterov),
    )
