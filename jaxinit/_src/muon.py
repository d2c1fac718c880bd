r"""``torch.optim.Muon`` (torch 2.13) as an optax transformation, 2-D parameters only.

Per 2-D parameter ``p`` (shape ``(A, B)``, torch's layout) with gradient ``g``:

.. math::
    B_t = \mathrm{lerp}(B_{t-1}, g_t, 1-\mu),\quad
    \tilde B_t = \mathrm{lerp}(g_t, B_t, \mu)\ (\text{nesterov}) \text{ else } B_t,\quad
    O_t = \mathrm{NS}^{(a,b,c)}_k(\tilde B_t; \varepsilon),

.. math::
    p_t = p_{t-1}(1 - \gamma\lambda) - \gamma\, r(A, B)\, O_t,\qquad
    r = \sqrt{\max(1, A/B)}\ (\text{'original'}),\ 0.2\sqrt{\max(A, B)}\ (\text{'match\_rms\_adamw'})

The Newton-Schulz iteration :math:`\mathrm{NS}` runs in **bfloat16**, whatever the
parameter dtype, exactly as torch's ``_zeropower_via_newtonschulz``: cast to
bfloat16, transpose if ``A > B``, divide by ``max(||X||_F, eps)``, then ``k`` times
:math:`G = XX^\top,\ X \leftarrow aX + (bG + cG^2)X` with every product
accumulated in float32 and rounded to bfloat16 once (torch's CPU bfloat16 GEMM).
torch's result itself depends on its GEMM's float32 accumulation order (CPU and GPU
give different bits): where that order rounds a float32 sum to the other side of a
bfloat16 rounding boundary, one element of the orthogonalised update moves by one
bfloat16 ulp (2^-8 relative). Measured on 5x7 / 7x5 matrices: 4 of 3000 NS calls
differ from torch's CPU bits in one element (all others bitwise); the mismatch
grows with the matrix size (more terms per dot product). So parameters follow
torch's to ~``lr * 2^-8`` per such event, not to 1e-12: bfloat16 is torch's choice.

``optax.contrib.muon`` differs: it orthogonalises in the update's dtype (not
bfloat16), uses ``optax.trace``-style momentum (``mu * b + g``, not torch's ``lerp``),
its width scaling is ``sqrt(max(1, fan_out/fan_in))`` over its own axis convention,
weight decay is added to the update (times lr) and it runs Adam on non-2-D leaves.
Use this transform for torch's numbers.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim_checks as checks
from jaxinit._src.optim_common import ScalarOrSchedule, aten_lerp  # aten_lerp: torch.lerp's two-sided formula


class ScaleByTorchMuonState(NamedTuple):
    """torch's ``momentum_buffer`` per parameter (torch's Muon keeps no step count)."""
    momentum_buffer: optax.Updates


def _bf16_mm(x, y):
    """bfloat16 matrix product accumulated in float32 (exact bfloat16 products), as float32."""
    return jnp.matmul(x.astype(jnp.float32), y.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)


def zeropower_via_newtonschulz(g: jax.Array, ns_coefficients=checks.MUON_NS_COEFFICIENTS,
                               ns_steps: int = checks.MUON_NS_STEPS, eps: Any = checks.MUON_EPS) -> jax.Array:
    """torch's ``_zeropower_via_newtonschulz``: the bfloat16 NS orthogonalisation of a 2-D ``g``."""
    if g.ndim != 2:
        raise ValueError(f"zeropower_via_newtonschulz: Input tensor gradient must be a 2D matrix, got shape {g.shape}.")
    a, b, c = ns_coefficients
    bf = jnp.bfloat16
    x = g.astype(bf)
    transpose = g.shape[0] > g.shape[1]
    if transpose:
        x = x.T
    xf = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(xf * xf)).astype(bf)
    norm = jnp.maximum(norm, jnp.asarray(eps, jnp.float32).astype(bf))
    x = (xf / norm.astype(jnp.float32)).astype(bf)
    def iteration(_, x):
        gram = _bf16_mm(x, x.T).astype(bf)
        gf = gram.astype(jnp.float32)
        upd = (b * gf + c * _bf16_mm(gram, gram)).astype(bf)          # torch.addmm(G, G, G, beta=b, alpha=c)
        return (a * x.astype(jnp.float32) + _bf16_mm(upd, x)).astype(bf)  # torch.addmm(X, U, X, beta=a)

    x = jax.lax.fori_loop(0, ns_steps, iteration, x)
    if transpose:
        x = x.T
    return x


def scale_by_torch_muon(lr: ScalarOrSchedule = 1e-3, weight_decay: Any = 0.1, momentum: Any = 0.95,
                        nesterov: bool = True, ns_coefficients: tuple = checks.MUON_NS_COEFFICIENTS,
                        eps: Any = checks.MUON_EPS, ns_steps: int = checks.MUON_NS_STEPS,
                        adjust_lr_fn: str | None = None) -> optax.GradientTransformation:
    """torch's Muon step (lr, decoupled decay and the sign included): the update ``p_t - p_{t-1}``."""
    checks.check_muon("scale_by_torch_muon", lr, weight_decay, momentum, nesterov, ns_coefficients, eps,
                     ns_steps, adjust_lr_fn)
    sched: Callable[[Any], Any] = lr if callable(lr) else (lambda count: lr)
    # torch's Muon has no step count; a schedule needs one: kept by the ScaleByScheduleState of muon()

    def check(tree, what):
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
            if x.ndim != 2:
                raise checks.muon_shape_error("jaxinit.optim.muon", f"{what} {jax.tree_util.keystr(path)}", x.shape)

    def init_fn(params):
        check(params, "params leaf")
        return ScaleByTorchMuonState(jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None, lr_t=None):
        if params is None:
            raise ValueError("scale_by_torch_muon needs params (decoupled weight decay): call "
                             "update(grads, state, params).")
        check(updates, "gradient leaf")
        lr_now = sched(0) if lr_t is None else lr_t

        def buf_of(g, b):
            return aten_lerp(b, g, 1 - momentum)

        bufs = jax.tree.map(buf_of, updates, state.momentum_buffer)

        def out(g, b, p):
            u = aten_lerp(g, b, momentum) if nesterov else b
            o = zeropower_via_newtonschulz(u, ns_coefficients, ns_steps, eps)
            ratio = checks.muon_lr_ratio(adjust_lr_fn, p.shape)
            lr_p = jnp.asarray(lr_now, p.dtype)
            return -(lr_p * ratio) * o.astype(p.dtype) - (lr_p * weight_decay) * p

        return jax.tree.map(out, updates, bufs, params), ScaleByTorchMuonState(bufs)

    return optax.GradientTransformation(init_fn, update_fn)


class MuonState(NamedTuple):
    """State of :func:`muon`: the lr schedule's counter and torch's ``momentum_buffer``."""
    count: jax.Array  # type: ignore[assignment]  # optax's state field name (optax.ScaleByAdamState.count), which mypy flags as shadowing tuple.count
    momentum_buffer: optax.Updates


def muon(lr: ScalarOrSchedule = 1e-3, weight_decay: Any = 0.1, momentum: Any = 0.95, nesterov: bool = True,
         ns_coefficients: tuple = checks.MUON_NS_COEFFICIENTS, eps: Any = checks.MUON_EPS,
         ns_steps: int = checks.MUON_NS_STEPS, adjust_lr_fn: str | None = None) -> optax.GradientTransformation:
    r"""``torch.optim.Muon(params, lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps,
    adjust_lr_fn)`` as an optax transformation (every params leaf must be 2-D).

    See the module docstring for the formula and the bfloat16 Newton-Schulz.
    State: :class:`MuonState` ``(count, momentum_buffer)`` (``count`` drives a
    schedule ``lr``; torch keeps no step). Non-2-D parameters are refused at
    ``init`` with the fix (``optax.multi_transform`` with AdamW for the rest).
    With ``optax.inject_hyperparams`` pass ``static_args=('ns_steps',)``.

    Example::

        tx = jaxinit.optim.muon(0.02)           # == torch.optim.Muon(p, lr=0.02)
    """
    checks.check_muon("muon", lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps, adjust_lr_fn)
    inner = scale_by_torch_muon(lr, weight_decay, momentum, nesterov, tuple(ns_coefficients), eps, ns_steps,
                                adjust_lr_fn)
    sched = lr if callable(lr) else (lambda count: lr)

    def init_fn(params):
        return MuonState(jnp.zeros([], jnp.int32), inner.init(params).momentum_buffer)

    def update_fn(updates, state, params=None):
        out, st = inner.update(updates, ScaleByTorchMuonState(state.momentum_buffer), params,
                               lr_t=sched(state.count))
        return out, MuonState(optax.safe_increment(state.count), st.momentum_buffer)

    return optax.GradientTransformation(init_fn, update_fn)
