r"""``torch.optim.SparseAdam`` as an optax transformation with an explicit row mask.

torch's SparseAdam (torch/optim/sparse_adam.py, ``torch.optim._functional.sparse_adam``)
takes *sparse* gradients, e.g. from ``nn.Embedding(sparse=True)``, and updates the
moments and the parameter **only at the indices present in the sparse gradient**;
every other row keeps its moments and value. JAX has no sparse gradients (the
gradient of an embedding lookup is dense, zero in the rows not looked up), so the
rows present are given explicitly:

    ``updates, state = tx.update(grads, state, params, row_mask=row_mask)``

``row_mask`` is a pytree like ``params`` whose leaves are boolean arrays with a
*prefix* of the parameter's shape: shape ``(num_embeddings,)`` for an embedding
table (torch's ``sparse_dim=1`` gradient: whole rows present), the full shape for
an element-wise sparse gradient (``sparse_dim = ndim``), ``()`` for all or nothing.
For an embedding looked up with integer ``ids``, the rows present are
``jnp.zeros(num_embeddings, bool).at[ids.ravel()].set(True)`` (what torch's
embedding backward lists; a row present with a zero gradient still decays its
moments). For every present entry (``t`` = number of steps taken):

.. math::
    m \leftarrow m + (1-\beta_1)(g - m),\quad v \leftarrow v + (1-\beta_2)(g^2 - v),\quad
    p \leftarrow p - \eta\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,\frac{m}{\sqrt v + \epsilon}

(note: :math:`\epsilon` is added to the *uncorrected* :math:`\sqrt v`, unlike Adam).
There is no default for ``row_mask``: updating every row would silently be a
different optimizer (dense rows decay their moments); pass
``row_mask=jax.tree.map(lambda g: jnp.any(g != 0, axis=tuple(range(1, g.ndim))), grads)``
to call "present" the rows with a non-zero gradient, or a mask of ``True`` for all.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim_checks as checks
from _jaxinit.errors import InitError
from jaxinit._src.adafactor import flatten_up_to
from jaxinit._src.optim_common import ScalarOrSchedule, inc


class ScaleByTorchSparseAdamState(NamedTuple):
    """torch's ``step``, ``exp_avg`` and ``exp_avg_sq`` (full parameter shape)."""
    count: jax.Array  # type: ignore[assignment]  # optax's state field name (optax.ScaleByAdamState.count), which mypy flags as shadowing tuple.count
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates


def _masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


def _broadcast_mask(mask, p, where):
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise InitError(f"sparse_adam: row_mask{where} must be boolean, got {mask.dtype}; e.g. "
                        "jnp.zeros(num_rows, bool).at[ids].set(True).")
    if tuple(p.shape[:mask.ndim]) != tuple(mask.shape):
        raise InitError(f"sparse_adam: row_mask{where} has shape {mask.shape}, which is not a prefix of the "
                        f"parameter's shape {p.shape}; pass shape {p.shape[:1]} (rows, as Embedding(sparse=True)) "
                        f"or {p.shape} (element-wise).")
    return mask.reshape(mask.shape + (1,) * (p.ndim - mask.ndim))


def sparse_adam(lr: ScalarOrSchedule = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8,
                maximize: bool = False) -> optax.GradientTransformationExtraArgs:
    r"""``torch.optim.SparseAdam(params, lr, betas, eps, maximize)`` with an explicit ``row_mask``.

    ``update(grads, state, params=None, *, row_mask)`` (see the module docstring):
    only entries where ``row_mask`` is True change (moments and parameter); the
    update is 0 elsewhere. State: :class:`ScaleByTorchSparseAdamState`. Inside
    ``optax.chain`` / ``optax.multi_transform`` the ``row_mask`` keyword is passed
    through as an extra argument.

    Example::

        tx = jaxinit.optim.sparse_adam(1e-2)
        updates, state = tx.update(grads, state, params, row_mask={"emb": rows_seen})
    """
    checks.check_sparse_adam("sparse_adam", lr, betas, eps, maximize)
    b1, b2 = betas
    sched = lr if callable(lr) else (lambda count: lr)

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchSparseAdamState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update_fn(updates, state, params=None, *, row_mask=None, **extra):
        del params, extra
        if row_mask is None:
            raise InitError(
                "sparse_adam: update needs row_mask=<pytree of boolean arrays, one per parameter, shape a prefix "
                "of the parameter's>: torch's SparseAdam updates only the rows present in the sparse gradient, "
                "which a dense JAX gradient does not say. Pass e.g. row_mask={'emb': jnp.zeros(n, bool)"
                ".at[ids].set(True)}, or use jaxinit.optim.adam for dense gradients.")
        count = inc(state.count)
        lr_t = sched(state.count)
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_masked)
        masks = flatten_up_to(treedef, row_mask)
        ms = flatten_up_to(treedef, state.exp_avg)
        vs = flatten_up_to(treedef, state.exp_avg_sq)
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(updates, is_leaf=_masked)[0]]
        outs, new_m, new_v = [], [], []
        for path, g, mask, m, v in zip(paths, leaves, masks, ms, vs):
            if _masked(g):
                outs.append(g)
                new_m.append(m)
                new_v.append(v)
                continue
            dt = g.dtype
            if maximize:
                g = -g
            present = _broadcast_mask(mask, g, path)
            m_upd = (g - m) * (1 - jnp.asarray(b1, dt)) if not isinstance(b1, float) else (g - m) * (1 - b1)
            v_upd = (g * g - v) * (1 - jnp.asarray(b2, dt)) if not isinstance(b2, float) else (g * g - v) * (1 - b2)
            m_new = m + m_upd
            v_new = v + v_upd
            step = count.astype(dt)
            bc1 = 1 - jnp.asarray(b1, dt) ** step
            bc2 = 1 - jnp.asarray(b2, dt) ** step
            step_size = jnp.asarray(lr_t, dt) * jnp.sqrt(bc2) / bc1
            upd = -step_size * (m_new / (jnp.sqrt(v_new) + eps))
            outs.append(jnp.where(present, upd, jnp.zeros_like(upd)))
            new_m.append(jnp.where(present, m_new, m))
            new_v.append(jnp.where(present, v_new, v))
        unflat = lambda xs: jax.tree_util.tree_unflatten(treedef, xs)  # noqa: E731
        return unflat(outs), ScaleByTorchSparseAdamState(count, unflat(new_m), unflat(new_v))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
