r"""``torch.optim.Adafactor`` (torch 2.13's variant) as an optax transformation.

torch's Adafactor (torch/optim/_adafactor.py) is not ``optax.adafactor``: no
momentum, no relative-step / parameter-scale switches, ``lr`` caps the relative
step size and scales a decoupled weight decay, :math:`\epsilon_1` is applied to
the variance estimate (not to the squared gradient), and the second-moment
factors are *means* (not sums) over rows and columns. Per parameter ``p`` with
gradient ``G`` (``-G`` if ``maximize``) at step ``t``:

.. math::
    \hat\beta_{2,t} = 1 - t^{\tau},\quad \rho_t = \min(\gamma, 1/\sqrt t),\quad
    \alpha_t = \max(\epsilon_2, \mathrm{RMS}(p_{t-1}))\,\rho_t

.. math::
    \text{ndim} \ge 2:\ R_t = \mathrm{lerp}(R_{t-1}, \mathrm{mean}_{-1}(G^2), t^{\tau}),\
    C_t = \mathrm{lerp}(C_{t-1}, \mathrm{mean}_{-2}(G^2), t^{\tau}),\
    \hat V_t = \frac{R_t C_t}{\max(\mathrm{mean}_{-2}(R_t), \epsilon_1)}

.. math::
    \text{else}:\ \hat V_t = \mathrm{lerp}(\hat V_{t-1}, G^2, t^{\tau}),\qquad
    U_t = G / \sqrt{\max(\hat V_t, \epsilon_1^2)},

.. math::
    p_t = p_{t-1}(1 - \gamma\lambda) - \frac{\alpha_t}{\max(1, \mathrm{RMS}(U_t)/d)}\, U_t

with :math:`\tau` = ``beta2_decay``, :math:`\gamma` = ``lr``, :math:`\lambda` =
``weight_decay`` and ``eps=(eps1, eps2)``; ``eps1=None`` is the machine epsilon
of the parameter's dtype (torch: ``torch.finfo(param.dtype).eps``; torch takes the
dtype of a group's first parameter for the whole group, which only differs for a
group mixing dtypes). Factoring is over the last two axes of torch's layout
(``(out, in)`` for a Linear weight): a Flax ``(in, out)`` kernel swaps rows and
columns, which changes the numbers; convert weights to torch's layout first
(:func:`jaxinit.to_torch_state_dict`) for parity.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _jaxinit import optim as _core
from _jaxinit import optim_checks as checks
from jaxinit._src.optim_common import ScalarOrSchedule, aten_lerp, inc


def flatten_up_to(treedef: Any, tree: Any) -> list:
    """``treedef.flatten_up_to(tree)``: ``tree``'s subtrees at the leaves of ``treedef`` (a prefix of it)."""
    return treedef.flatten_up_to(tree)  # PyTreeDef.flatten_up_to is missing from jax's stubs; treedef typed Any


class ScaleByTorchAdafactorState(NamedTuple):
    """torch's ``step``, ``row_var`` / ``col_var`` (parameters with ndim >= 2) and ``variance`` (others).

    A parameter that has no such buffer holds ``optax.MaskedNode()`` in that field
    (e.g. a bias has ``row_var = col_var = MaskedNode()``), so each field is a pytree
    with the params' structure. ``row_var`` has shape ``(..., m, 1)``, ``col_var``
    ``(..., 1, n)`` for a parameter of shape ``(..., m, n)``, as torch's.
    """
    count: jax.Array  # type: ignore[assignment]  # optax's state field name (optax.ScaleByAdamState.count), which mypy flags as shadowing tuple.count
    row_var: Any
    col_var: Any
    variance: Any


def _masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


def scale_by_torch_adafactor(lr: ScalarOrSchedule = 1e-2, beta2_decay: Any = -0.8, eps: tuple = (None, 1e-3),
                             d: Any = 1.0, weight_decay: Any = 0.0) -> optax.GradientTransformation:
    """torch's Adafactor step (lr, weight decay and the sign included): the update ``p_t - p_{t-1}``.

    Needs ``params`` (the relative step uses RMS(p)). ``lr`` may be a schedule of the step count.
    """
    checks.check_adafactor("scale_by_torch_adafactor", lr, beta2_decay, eps, d, weight_decay, False)
    eps1, eps2 = eps
    sched = lr if callable(lr) else (lambda count: lr)

    def init_fn(params):
        def rows(p):
            return jnp.zeros((*p.shape[:-1], 1), p.dtype) if p.ndim > 1 else optax.MaskedNode()

        def cols(p):
            return jnp.zeros((*p.shape[:-2], 1, p.shape[-1]), p.dtype) if p.ndim > 1 else optax.MaskedNode()

        def var(p):
            return optax.MaskedNode() if p.ndim > 1 else jnp.zeros_like(p)

        return ScaleByTorchAdafactorState(jnp.zeros([], jnp.int32), jax.tree.map(rows, params),
                                          jax.tree.map(cols, params), jax.tree.map(var, params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_torch_adafactor needs params (alpha uses RMS(p)): call "
                             "update(grads, state, params).")
        count = inc(state.count)
        lr_t = sched(state.count)

        def one(g, p, r, c, v):
            dt = p.dtype
            step = count.astype(dt)
            w = step ** jnp.asarray(beta2_decay, dt)                       # 1 - beta2_t
            rho = jnp.minimum(jnp.asarray(lr_t, dt), 1 / jnp.sqrt(step))
            e1 = np.finfo(dt).eps if eps1 is None else eps1
            numel = int(np.prod(p.shape))
            alpha = jnp.maximum(jnp.asarray(eps2, dt), jnp.linalg.norm(p.ravel()) / np.sqrt(numel)) * rho
            if p.ndim > 1:
                row_mean = jnp.linalg.norm(g, axis=-1, keepdims=True) ** 2 / g.shape[-1]
                r = aten_lerp(r, row_mean, w)
                col_mean = jnp.linalg.norm(g, axis=-2, keepdims=True) ** 2 / g.shape[-2]
                c = aten_lerp(c, col_mean, w)
                est = (r * c) / jnp.maximum(jnp.mean(r, axis=-2, keepdims=True), jnp.asarray(e1, dt))
            else:
                v = aten_lerp(v, g * g, w)
                est = v
            u = jax.lax.rsqrt(jnp.maximum(est, jnp.asarray(e1 * e1, dt))) * g
            denom = jnp.maximum(1.0, jnp.linalg.norm(u.ravel()) / (np.sqrt(numel) * d)).astype(dt)
            out = -(alpha / denom) * u
            if not _core.is_static_zero(weight_decay):  # torch: p.mul_(1 - lr * weight_decay) first
                out = out - (jnp.asarray(lr_t, dt) * weight_decay) * p
            return out, r, c, v

        leaves_g, treedef = jax.tree_util.tree_flatten(updates)
        leaves_p = flatten_up_to(treedef, params)
        leaves_r = flatten_up_to(treedef, state.row_var)
        leaves_c = flatten_up_to(treedef, state.col_var)
        leaves_v = flatten_up_to(treedef, state.variance)
        res = [one(*a) for a in zip(leaves_g, leaves_p, leaves_r, leaves_c, leaves_v)]
        unflat = lambda i: jax.tree_util.tree_unflatten(treedef, [x[i] for x in res])  # noqa: E731
        return unflat(0), ScaleByTorchAdafactorState(count, unflat(1), unflat(2), unflat(3))

    return optax.GradientTransformation(init_fn, update_fn)


def adafactor(lr: ScalarOrSchedule = 1e-2, beta2_decay: Any = -0.8, eps: tuple = (None, 1e-3), d: Any = 1.0,
              weight_decay: Any = 0.0, maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adafactor(params, lr, beta2_decay, eps, d, weight_decay, maximize=...)`` as optax.

    See the module docstring for the formula. State: ``(Empty [maximize],
    ScaleByTorchAdafactorState)``. Differs from ``optax.adafactor`` (momentum off,
    relative step on, eps added to the squared gradient, sums, parameter scale
    from 1e-3, ...): the numbers are torch's.

    Example::

        tx = jaxinit.optim.adafactor(1e-2, weight_decay=0.1)   # == torch.optim.Adafactor(p, 1e-2, weight_decay=0.1)
    """
    checks.check_adafactor("adafactor", lr, beta2_decay, eps, d, weight_decay, maximize)
    return optax.chain(
        optax.scale(-1.0) if maximize else optax.identity(),
        scale_by_torch_adafactor(lr, beta2_decay, tuple(eps), d, weight_decay),
    )
