r"""``torch.optim.LBFGS`` in JAX: a jittable step that takes a value-and-grad function.

torch's LBFGS (torch/optim/lbfgs.py) is closure-driven: one ``optimizer.step(closure)``
runs up to ``max_iter`` L-BFGS iterations and re-evaluates the loss up to
``max_eval`` times (fixed steps, or the strong-Wolfe line search ``_strong_wolfe``
with ``_cubic_interpolate``). An ``optax.GradientTransformation`` only sees one
gradient per update and cannot re-evaluate the loss, so LBFGS has its own API::

    tx = jaxinit.optim.lbfgs(lr=1, max_iter=20, line_search_fn="strong_wolfe")
    state = tx.init(params)
    step = jax.jit(lambda p, s: tx.step(p, s, jax.value_and_grad(loss_fn)))
    params, state, loss = step(params, state)      # == loss = torch_opt.step(closure)

``tx.step(params, state, value_and_grad, *args)`` calls ``value_and_grad(params, *args)``
(-> ``(loss, grads)``) wherever torch calls the closure, and returns the new params,
the new state and the loss at the entry point (what torch's ``step`` returns). It is
pure and jittable: every loop of torch's code is a ``jax.lax.while_loop`` over the
same decisions in the same order (the two-loop recursion, the history shift when
``history_size`` is reached, every stopping test, the bracketing and zoom phases of
the line search and the "insufficient progress" rule), all in the parameters' dtype.
Fixed steps match torch in float32 and float64; the strong-Wolfe search is refused for
parameters other than float64, because torch's does part of its arithmetic on Python floats
(float64 losses) and part in the tensors' dtype (see ``_check_line_search_dtype``).

Parameters are flattened in ``jax.tree.leaves`` order (``jax.flatten_util.ravel_pytree``),
torch's order is ``param_groups[0]["params"]``: pass the params as a list in
``model.parameters()`` order (or a pytree whose leaves come in that order) for
torch's numbers (dot products sum in that order).

State :class:`LBFGSState` uses torch's names (``func_evals``, ``n_iter``, ``d``, ``t``,
``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``,
``al``), with the history as fixed ``(history_size, n)`` arrays of which the first
``num_old`` rows are torch's lists. :func:`jaxinit.optim.export_state` /
:func:`jaxinit.optim.import_state` convert it to and from torch's ``state_dict``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from _jaxinit import optim_checks as checks
from _jaxinit.arrays import to_numpy


class LBFGSState(NamedTuple):
    """torch's LBFGS state (kept by torch under the first parameter), as arrays."""
    func_evals: jax.Array       # int32: closure calls over all steps
    n_iter: jax.Array           # int32: L-BFGS iterations over all steps
    d: jax.Array                # (n,) last search direction
    t: jax.Array                # last step length
    old_dirs: jax.Array         # (history_size, n): y vectors, the first num_old rows used
    old_stps: jax.Array         # (history_size, n): s vectors
    ro: jax.Array               # (history_size,): 1 / (y . s)
    num_old: jax.Array          # int32: len(old_dirs)
    H_diag: jax.Array           # initial inverse-Hessian scale
    prev_flat_grad: jax.Array   # (n,)
    prev_loss: jax.Array
    al: jax.Array               # (history_size,): the two-loop's alphas (scratch, kept as torch keeps it)


class LBFGS(NamedTuple):
    """``init(params) -> LBFGSState``; ``step(params, state, value_and_grad, *args) -> (params, state, loss)``.

    ``update`` only raises: LBFGS is not an optax transformation (see the module docstring).
    """
    init: Callable
    step: Callable
    hyperparams: dict
    update: Callable


def _no_update(*args, **kwargs):
    raise checks.InitError(
        "jaxinit.optim.lbfgs: LBFGS has no optax update(grads, state, params): like torch's LBFGS.step(closure) it "
        "re-evaluates the loss up to max_eval times per step, which a GradientTransformation cannot do. Use "
        "params, state, loss = tx.step(params, state, jax.value_and_grad(loss_fn)) (jittable).")


def _rounded(p):
    """``p`` unchanged, but opaque to the compiler: torch rounds this product before the add/sub that uses it.

    XLA's CPU backend lets LLVM contract ``a - b * c`` into one fused multiply-add (measured: every such
    pattern under ``jit``, ``vmap`` and in loop bodies, ``lax.optimization_barrier`` included), while
    torch's LBFGS computes those products as separately rounded tensor / Python-float multiplications;
    the result differs in 24% of random float64 triples. ``i | (isnan(p) & i >> 1)`` is the identity
    (a NaN stays a NaN) that the compiler cannot see through, so the product is rounded on its own as
    in torch. The fused ``x + t * d`` / ``q + (-al) * y`` / ``r + (al - be) * s`` are left alone: torch
    does those with ``add_(v, alpha=...)``, which ATen computes as an FMA (checked bitwise).
    """
    p = jnp.asarray(p)
    i = jax.lax.bitcast_convert_type(p, jnp.dtype(f"int{8 * p.dtype.itemsize}"))
    i = i | (jnp.isnan(p).astype(i.dtype) & (i >> 1))
    return jax.lax.bitcast_convert_type(i, p.dtype)


def _pymax(a, b):
    """Python's ``max(a, b)``: ``b`` only if ``b > a`` (NaN-propagation as torch's code)."""
    return jnp.where(b > a, b, a)


def _pymin(a, b):
    return jnp.where(b < a, b, a)


def cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """torch's ``_cubic_interpolate`` (minimiser of the cubic through two points and slopes, clamped)."""
    if bounds is not None:
        lo, hi = bounds
    else:
        lo, hi = jnp.where(x1 <= x2, x1, x2), jnp.where(x1 <= x2, x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = _rounded(d1 ** 2) - _rounded(g1 * g2)
    d2 = jnp.sqrt(jnp.where(d2_square >= 0, d2_square, 0))
    pos12 = x2 - _rounded((x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)))
    pos21 = x1 - _rounded((x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)))
    min_pos = jnp.where(x1 <= x2, pos12, pos21)
    return jnp.where(d2_square >= 0, _pymin(_pymax(min_pos, lo), hi), (lo + hi) / 2.0)


def _strong_wolfe(obj, x, t, d, f, g, gtd, c1, c2, tolerance_change, max_ls):
    """torch's ``_strong_wolfe`` as one while-loop: (f_new, g_new, t, ls_func_evals).

    Each iteration evaluates ``obj`` once, then takes every decision torch takes
    before its next evaluation (bracketing phase 0, zoom phase 1, finished 2).
    """
    dt = x.dtype
    d_norm = jnp.max(jnp.abs(d))
    zero = jnp.zeros([], dt)
    i0 = jnp.zeros([], jnp.int32)

    def pair(a, b):
        return jnp.stack([a, b])

    init = dict(t=t, f_new=f, g_new=g, gtd_new=gtd, t_prev=zero, f_prev=f, g_prev=g, gtd_prev=gtd,
                b_t=pair(zero, zero), b_f=pair(f, f), b_g=jnp.stack([g, g]), b_gtd=pair(gtd, gtd),
                low=i0, high=i0 + 1, done=jnp.array(False), insuf=jnp.array(False), ls_iter=i0, evals=i0,
                phase=i0, first=jnp.array(True))

    def set_at(s, k, tt, ff, gg, ggtd):
        return dict(s, b_t=s["b_t"].at[k].set(tt), b_f=s["b_f"].at[k].set(ff), b_g=s["b_g"].at[k].set(gg),
                    b_gtd=s["b_gtd"].at[k].set(ggtd))

    def sel(c, a, b):
        return jax.tree.map(lambda u, v: jnp.where(c, u, v), a, b)

    def lowhigh(s):
        lo = jnp.where(s["b_f"][0] <= s["b_f"][1], 0, 1).astype(jnp.int32)
        return dict(s, low=lo, high=1 - lo)

    def bracket_phase(s, f_e, g_e, gtd_e):
        ls_iter = s["ls_iter"] + jnp.where(s["first"], 0, 1)
        s = dict(s, ls_iter=ls_iter, first=jnp.array(False), f_new=f_e, g_new=g_e, gtd_new=gtd_e)
        tt = s["t"]
        in_loop = ls_iter < max_ls
        c1c = (f_e > (f + _rounded(c1 * tt * gtd))) | ((ls_iter > 1) & (f_e >= s["f_prev"]))
        c2c = jnp.abs(gtd_e) <= -c2 * gtd
        c3c = gtd_e >= 0
        two = dict(s, b_t=pair(s["t_prev"], tt), b_f=pair(s["f_prev"], f_e), b_g=jnp.stack([s["g_prev"], g_e]),
                   b_gtd=pair(s["gtd_prev"], gtd_e), phase=i0 + 1)
        one = dict(s, b_t=pair(tt, tt), b_f=pair(f_e, f_e), b_g=jnp.stack([g_e, g_e]), b_gtd=pair(gtd_e, gtd_e),
                   phase=i0 + 1, done=jnp.array(True))
        t_next = cubic_interpolate(s["t_prev"], s["f_prev"], s["gtd_prev"], tt, f_e, gtd_e,
                                   bounds=(tt + _rounded(0.01 * (tt - s["t_prev"])), tt * 10))
        step_on = dict(s, t=t_next, t_prev=tt, f_prev=f_e, g_prev=g_e, gtd_prev=gtd_e)
        maxed = dict(s, b_t=pair(zero, tt), b_f=pair(f, f_e), b_g=jnp.stack([g, g_e]), b_gtd=pair(gtd, gtd_e),
                     phase=i0 + 1)
        out = sel(in_loop, sel(c1c, two, sel(c2c, one, sel(c3c, two, step_on))), maxed)
        return sel(out["phase"] == 1, lowhigh(out), out)

    def zoom_phase(s, f_e, g_e, gtd_e):
        s = dict(s, ls_iter=s["ls_iter"] + 1, f_new=f_e, g_new=g_e, gtd_new=gtd_e)
        tt, low, high = s["t"], s["low"], s["high"]
        armijo_fail = (f_e > (f + _rounded(c1 * tt * gtd))) | (f_e >= s["b_f"][low])
        a = lowhigh(set_at(s, high, tt, f_e, g_e, gtd_e))
        wolfe = jnp.abs(gtd_e) <= -c2 * gtd
        flip = (~wolfe) & (gtd_e * (s["b_t"][high] - s["b_t"][low]) >= 0)
        b = sel(flip, set_at(s, high, s["b_t"][low], s["b_f"][low], s["b_g"][low], s["b_gtd"][low]), s)
        b = set_at(dict(b, done=s["done"] | wolfe), low, tt, f_e, g_e, gtd_e)
        return sel(armijo_fail, a, b)

    def zoom_next(s):
        b_t = s["b_t"]
        stop = s["done"] | (s["ls_iter"] >= max_ls) | (jnp.abs(b_t[1] - b_t[0]) * d_norm < tolerance_change)
        tt = cubic_interpolate(b_t[0], s["b_f"][0], s["b_gtd"][0], b_t[1], s["b_f"][1], s["b_gtd"][1])
        bmax, bmin = _pymax(b_t[0], b_t[1]), _pymin(b_t[0], b_t[1])
        eps = _rounded(0.1 * (bmax - bmin))
        near = _pymin(bmax - tt, tt - bmin) < eps
        move = s["insuf"] | (tt >= bmax) | (tt <= bmin)
        moved = jnp.where(jnp.abs(tt - bmax) < jnp.abs(tt - bmin), bmax - eps, bmin + eps)
        t_new = jnp.where(near & move, moved, tt)
        insuf = near & ~move
        go = dict(s, t=t_new, insuf=insuf)
        return sel(stop, dict(s, phase=i0 + 2), go)

    def body(s):
        f_e, g_e = obj(x, s["t"], d)
        gtd_e = jnp.dot(g_e, d)
        s = dict(s, evals=s["evals"] + 1)
        s = sel(s["phase"] == 0, bracket_phase(s, f_e, g_e, gtd_e), zoom_phase(s, f_e, g_e, gtd_e))
        return sel(s["phase"] == 1, zoom_next(s), s)

    s = jax.lax.while_loop(lambda s: s["phase"] != 2, body, init)
    low = s["low"]
    return s["b_f"][low], s["b_g"][low], s["b_t"][low], s["evals"]


def _loss_change_below(loss, prev_loss, tolerance_change):
    """torch's ``abs(loss - prev_loss) < tolerance_change``: on Python floats (float64) in torch, as
    ``loss = float(closure())`` (torch/optim/lbfgs.py); so in float64 here whenever jax has it (x64).
    Without x64 a float32 subtraction, exact when the losses are within a factor 2 (Sterbenz)."""
    if loss.dtype != jnp.float64 and jax.config.read("jax_enable_x64"):
        loss, prev_loss = loss.astype(jnp.float64), prev_loss.astype(jnp.float64)
    return jnp.abs(loss - prev_loss) < tolerance_change


def _check_line_search_dtype(line_search_fn, dt) -> None:
    """The strong-Wolfe search is torch's only for float64 parameters (refused otherwise, with the reason)."""
    if line_search_fn is not None and jnp.dtype(dt) != jnp.float64:
        raise checks.InitError(
            f"jaxinit.optim.lbfgs(line_search_fn={line_search_fn!r}) needs float64 parameters, got {jnp.dtype(dt)}: "
            "torch's _strong_wolfe (torch/optim/lbfgs.py) keeps every loss value as a Python float (float64, "
            "`loss = float(closure())`) and mixes it with tensors of the parameters' dtype (the Armijo test "
            "`f + c1 * t * gtd`, `(f1 - f2)` in _cubic_interpolate), so in float32 part of its arithmetic is "
            "float64 and part float32, which this implementation (all in the parameters' dtype) does not "
            "reproduce; measured with lr=0.01: iterates 0.49 relative apart after the second step. Use float64 "
            "parameters (jax.config.update('jax_enable_x64', True)) or line_search_fn=None (fixed steps, which "
            "match torch in float32).")


def lbfgs(lr: Any = 1, max_iter: int = 20, max_eval: int | None = None, tolerance_grad: float = 1e-7,
          tolerance_change: float = 1e-9, history_size: int = 100, line_search_fn: str | None = None) -> LBFGS:
    r"""``torch.optim.LBFGS(params, lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size,
    line_search_fn)`` as a pure, jittable JAX step (see the module docstring for the API).

    One ``step`` is torch's ``step(closure)``: up to ``max_iter`` iterations of

    .. math:: d_k = -H_k g_k\ \text{(two-loop recursion over the last history\_size pairs}
              \ (s, y),\ H_0 = \tfrac{y^\top s}{y^\top y}),\quad x_{k+1} = x_k + t_k d_k

    with :math:`t_1 = \min(1, 1/\lVert g\rVert_1)\,\eta` on the very first iteration and
    :math:`t_k = \eta` after (or the strong-Wolfe line search from that guess,
    ``c1=1e-4, c2=0.9, max_ls = max_eval - evaluations so far``); a pair is stored only
    when :math:`y^\top s > 10^{-10}`. Stops on ``max_iter``, ``max_eval``,
    :math:`\max|g| \le` ``tolerance_grad``, :math:`\max|t d| \le` ``tolerance_change``,
    :math:`|f - f_{prev}| <` ``tolerance_change`` or :math:`g^\top d > -` ``tolerance_change``.

    Example::

        tx = jaxinit.optim.lbfgs(line_search_fn="strong_wolfe")
        state = tx.init(params)
        params, state, loss = jax.jit(lambda p, s: tx.step(p, s, jax.value_and_grad(f)))(params, state)
    """
    max_eval = checks.check_lbfgs("lbfgs", lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size,
                                 line_search_fn)
    hp = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
              tolerance_change=tolerance_change, history_size=history_size, line_search_fn=line_search_fn)
    H = history_size

    def init(params) -> LBFGSState:
        flat, _ = ravel_pytree(params)
        n, dt = flat.shape[0], flat.dtype
        _check_line_search_dtype(line_search_fn, dt)
        z = jnp.zeros([], dt)
        i0 = jnp.zeros([], jnp.int32)
        return LBFGSState(i0, i0, jnp.zeros(n, dt), z, jnp.zeros((H, n), dt), jnp.zeros((H, n), dt),
                          jnp.zeros(H, dt), i0, jnp.ones([], dt), jnp.zeros(n, dt), z, jnp.zeros(H, dt))

    def step(params, state: LBFGSState, value_and_grad: Callable, *args):
        x0, unravel = ravel_pytree(params)
        dt = x0.dtype
        _check_line_search_dtype(line_search_fn, dt)

        def evaluate(x):
            loss, grads = value_and_grad(unravel(x), *args)
            g, _ = ravel_pytree(grads)
            return jnp.asarray(loss, dt), g.astype(dt)

        def obj(x, t, d):
            return evaluate(x + t * d)

        loss0, g0 = evaluate(x0)
        opt0 = jnp.max(jnp.abs(g0)) <= tolerance_grad
        st = state._asdict()
        carry = dict(st, func_evals=state.func_evals + 1, x=x0, loss=loss0, g=g0, opt=opt0, local=jnp.int32(0),
                     evals=jnp.int32(1), stop=opt0)

        def direction(c):
            first = c["n_iter"] == 1
            y = c["g"] - c["prev_flat_grad"]
            s = c["d"] * c["t"]
            ys = jnp.dot(y, s)
            store = (~first) & (ys > 1e-10)
            full = c["num_old"] == H
            pos = jnp.where(full, H - 1, c["num_old"])

            def push(buf, v):
                shifted = jnp.where(full, jnp.roll(buf, -1, axis=0), buf)
                return jnp.where(store, shifted.at[pos].set(v), buf)

            dirs, stps = push(c["old_dirs"], y), push(c["old_stps"], s)
            ro = push(c["ro"], 1.0 / ys)
            num_old = jnp.where(store, jnp.minimum(c["num_old"] + 1, H), c["num_old"])
            h_diag = jnp.where(store, ys / jnp.dot(y, y), c["H_diag"])

            def back(k, qa):
                q, al = qa
                i = num_old - 1 - k
                a = jnp.dot(stps[i], q) * ro[i]
                return q + (-a) * dirs[i], al.at[i].set(a)

            q, al = jax.lax.fori_loop(0, num_old, back, (-c["g"], c["al"]))
            r = q * h_diag

            def fwd(i, r):
                be = jnp.dot(dirs[i], r) * ro[i]
                return r + (al[i] - _rounded(be)) * stps[i]

            r = jax.lax.fori_loop(0, num_old, fwd, r)
            new = dict(d=r, old_dirs=dirs, old_stps=stps, ro=ro, num_old=num_old, H_diag=h_diag, al=al)
            reset = dict(d=-c["g"], old_dirs=c["old_dirs"], old_stps=c["old_stps"], ro=c["ro"],
                         num_old=jnp.int32(0), H_diag=jnp.ones([], dt), al=c["al"])
            return jax.tree.map(lambda a, b: jnp.where(first, a, b), reset, new)

        def body(c):
            c = dict(c, local=c["local"] + 1, n_iter=c["n_iter"] + 1)
            c.update(direction(c))
            c.update(prev_flat_grad=c["g"], prev_loss=c["loss"])
            t0 = _pymin(jnp.ones([], dt), 1.0 / jnp.sum(jnp.abs(c["g"]))) * lr
            t = jnp.where(c["n_iter"] == 1, t0, jnp.asarray(lr, dt))
            gtd = jnp.dot(c["g"], c["d"])
            c["t"] = t
            no_descent = gtd > -tolerance_change

            def move(c):
                x, d = c["x"], c["d"]
                if line_search_fn is not None:
                    loss, g, t, ls_evals = _strong_wolfe(obj, x, c["t"], d, c["loss"], c["g"], gtd, 1e-4, 0.9,
                                                         tolerance_change, max_eval - c["evals"])
                    x = x + t * d
                    opt = jnp.max(jnp.abs(g)) <= tolerance_grad
                else:
                    t = c["t"]
                    x = x + t * d
                    last = c["local"] == max_iter

                    def again(_):
                        loss, g = evaluate(x)
                        return loss, g, jnp.max(jnp.abs(g)) <= tolerance_grad, jnp.int32(1)

                    loss, g, opt, ls_evals = jax.lax.cond(
                        last, lambda _: (c["loss"], c["g"], c["opt"], jnp.int32(0)), again, None)
                evals = c["evals"] + ls_evals
                stop = ((c["local"] == max_iter) | (evals >= max_eval) | opt
                        | (jnp.max(jnp.abs(d * t)) <= tolerance_change)
                        | _loss_change_below(loss, c["prev_loss"], tolerance_change))
                return dict(c, x=x, t=t, loss=loss, g=g, opt=opt, evals=evals,
                            func_evals=c["func_evals"] + ls_evals, stop=stop)

            return jax.lax.cond(no_descent, lambda c: dict(c, stop=jnp.array(True)), move, c)

        c = jax.lax.while_loop(lambda c: (~c["stop"]) & (c["local"] < max_iter), body, carry)
        new_state = LBFGSState(**{k: c[k] for k in LBFGSState._fields})
        return unravel(c["x"]), new_state, loss0

    return LBFGS(init, step, hp, _no_update)


def lbfgs_state_to_torch(state: LBFGSState) -> dict:
    """torch's ``optimizer.state[params[0]]`` (as NumPy / Python values) for an :class:`LBFGSState`."""
    s = jax.tree.map(np.asarray, state)
    n_iter, func_evals = int(s.n_iter), int(s.func_evals)
    if func_evals == 0:
        return {}
    out: dict[str, Any] = {"func_evals": func_evals, "n_iter": n_iter}
    if n_iter == 0:
        return out
    k = int(s.num_old)
    H = s.ro.shape[0]
    out.update(d=s.d.copy(), t=s.t.copy(), old_dirs=[s.old_dirs[i].copy() for i in range(k)],
               old_stps=[s.old_stps[i].copy() for i in range(k)], ro=[s.ro[i].copy() for i in range(k)],
               H_diag=s.H_diag.copy(), prev_flat_grad=s.prev_flat_grad.copy(), prev_loss=float(s.prev_loss))
    if n_iter > 1:  # torch creates "al" at the first iteration that runs the two-loop recursion
        out["al"] = [s.al[i].copy() if i < k else None for i in range(H)]
    return out


def lbfgs_state_from_torch(entry: dict, params, history_size: int) -> LBFGSState:
    """The :class:`LBFGSState` for ``params`` holding torch's LBFGS state ``entry`` (NumPy / tensors read as arrays)."""
    flat, _ = ravel_pytree(params)
    n, dt = flat.shape[0], flat.dtype
    fresh = lbfgs(history_size=history_size).init(params)
    if not entry:
        return fresh
    # copy=True: to_numpy views a CPU tensor's memory and jnp.asarray may keep that view (zero-copy on
    # CPU), while torch's step updates prev_flat_grad in place (prev_flat_grad.copy_(flat_grad)); without the
    # copy a state imported from a live optimizer changed under JAX's feet at torch's next step.
    arr = lambda v: to_numpy(v, copy=True)  # noqa: E731
    problems = []
    for key in ("d", "prev_flat_grad"):
        if key in entry and arr(entry[key]).shape != (n,):
            problems.append(f"{key} has shape {arr(entry[key]).shape}, params have {n} elements")
    dirs = [arr(v) for v in entry.get("old_dirs", [])]
    if len(dirs) > history_size:
        problems.append(f"the torch history holds {len(dirs)} pairs, more than history_size={history_size}")
    if problems:
        raise checks.InitError("jaxinit.optim.import_state (LBFGS): the torch state does not fit these params: "
                              + "; ".join(problems) + ". Pass the params of the same model, in torch order.")

    def hist(key):
        buf = np.zeros((history_size, n), dt)
        for i, v in enumerate(entry.get(key, [])):
            buf[i] = arr(v)
        return jnp.asarray(buf)

    ro = np.zeros(history_size, dt)
    for i, v in enumerate(entry.get("ro", [])):
        ro[i] = arr(v)
    al = np.zeros(history_size, dt)
    for i, v in enumerate(entry.get("al", None) or []):
        if v is not None:
            al[i] = arr(v)
    n_iter = int(entry.get("n_iter", 0))
    return LBFGSState(
        func_evals=jnp.int32(int(entry.get("func_evals", 0))), n_iter=jnp.int32(n_iter),
        d=jnp.asarray(arr(entry["d"]), dt) if "d" in entry else fresh.d,
        t=jnp.asarray(arr(entry["t"]), dt) if "t" in entry else fresh.t,
        old_dirs=hist("old_dirs"), old_stps=hist("old_stps"), ro=jnp.asarray(ro),
        num_old=jnp.int32(len(dirs)),
        H_diag=jnp.asarray(arr(entry["H_diag"]), dt) if "H_diag" in entry else fresh.H_diag,
        prev_flat_grad=jnp.asarray(arr(entry["prev_flat_grad"]), dt) if "prev_flat_grad" in entry
        else fresh.prev_flat_grad,
        prev_loss=jnp.asarray(entry.get("prev_loss", 0.0), dt), al=jnp.asarray(al))
