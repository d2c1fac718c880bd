r"""torch's gradient clipping (``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``) as optax transformations.

``clip_grad_norm`` is not ``optax.clip_by_global_norm``: torch always multiplies by
``min(max_norm / (total_norm + 1e-6), 1)`` (so a gradient under the limit is still scaled
by exactly 1.0, and one over it by a factor with the ``1e-6``), for any ``norm_type``;
optax scales by ``max_norm / norm`` only when ``norm > max_norm``, 2-norm only.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import clip as _core


class ClipGradNormState(NamedTuple):
    """``total_norm``: the norm of the last update's gradients (what torch's function returns)."""
    total_norm: jax.Array


def _norm(x, norm_type):
    return jnp.linalg.vector_norm(jnp.ravel(x), ord=norm_type)


def total_norm(grads, norm_type: float = 2.0) -> jax.Array:
    """torch's total norm: the ``norm_type``-norm of the per-tensor ``norm_type``-norms."""
    leaves = jax.tree.leaves(grads)
    if not leaves:
        return jnp.zeros(())
    norms = jnp.stack([_norm(g, norm_type) for g in leaves])
    return jnp.linalg.vector_norm(norms, ord=norm_type)  # type: ignore[arg-type]  # any real ord (and inf) is accepted at run time


def _raise_nonfinite(norm, norm_type):
    if not bool(jnp.isfinite(norm)):
        raise RuntimeError(_core.NONFINITE_MESSAGE.format(norm_type=norm_type))


def clip_grad_norm(max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False) -> optax.GradientTransformation:
    r"""torch's ``clip_grad_norm_(params, max_norm, norm_type, error_if_nonfinite)`` on the updates.

    .. math:: N = \big\|(\|g_1\|_p, \dots, \|g_n\|_p)\big\|_p,\qquad
              g_i \leftarrow g_i \cdot \min\Big(\frac{\text{max\_norm}}{N + 10^{-6}}, 1\Big)

    for any ``p = norm_type`` (``inf``: the largest absolute value). The coefficient is cast to
    each gradient's dtype before multiplying (as torch's in-place ``mul_``). ``N`` is kept in
    the state (``ClipGradNormState.total_norm``), since a transformation cannot return it.
    ``error_if_nonfinite=True`` raises torch's ``RuntimeError`` when ``N`` is nan/inf (under
    ``jit`` through a host callback, when the computation runs).

    Example::

        tx = optax.chain(jaxinit.optim.clip_grad_norm(1.0), jaxinit.optim.adamw(1e-3))
    """
    max_norm, norm_type = _core.check_clip_grad_norm("clip_grad_norm", max_norm, norm_type, error_if_nonfinite)

    def init_fn(params):
        del params
        return ClipGradNormState(jnp.zeros((), jnp.result_type(float)))

    def update_fn(updates, state, params=None):
        del params
        norm = total_norm(updates, norm_type)
        if error_if_nonfinite:
            jax.debug.callback(_raise_nonfinite, norm, norm_type)
        coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)  # torch.clamp(clip_coef, max=1.0)
        updates = jax.tree.map(lambda g: g * coef.astype(g.dtype), updates)
        return updates, ClipGradNormState(norm.astype(state.total_norm.dtype))

    return optax.GradientTransformation(init_fn, update_fn)


def clip_grad_value(clip_value: float) -> optax.GradientTransformation:
    r"""torch's ``clip_grad_value_(params, clip_value)``: every gradient clamped to ``[-clip_value, clip_value]``.

    The same numbers as ``optax.clip(clip_value)`` (both clamp elementwise); here with torch's
    name and argument checks.
    """
    return optax.clip(_core.check_clip_grad_value("clip_grad_value", clip_value))
