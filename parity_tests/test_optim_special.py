"""torch 2.13's Adafactor, Muon, LBFGS and SparseAdam: jaxinit.optim == torch.optim step for step.

Against the real ``torch.optim`` classes, on torch's own CPU configurations of these optimizers
(``optim_db`` in torch/testing/_internal/common_optimizers.py, enumerated here):

* float64, 100 steps of shared injected gradients through the direct factory, ``from_torch`` and a
  resume at step 50 (torch state -> ``import_state``): within 1e-12 relative (the formulas are
  torch's; XLA and ATen round a few operations differently, ~1e-16 per step).
* torchinit vs jaxinit, 500 steps on a small model with each framework's own gradients: float64
  1e-12; float32 see ``F32_TOL``.
* state round trips torch -> JAX -> torch bitwise; errors.

Muon's Newton-Schulz runs in bfloat16 in torch; jaxinit reproduces its bits on the small matrices
used here (every product exact in float32). LBFGS is compared on an objective computed by the same
NumPy function in both frameworks (``jax.pure_callback``), so that the optimizer, not the two
frameworks' gradient rounding, is under test: L-BFGS amplifies a 1e-16 gradient difference through
``y = g - g_prev`` (measured 0.1 relative after 600 iterations of a tanh MLP with autodiff gradients).
"""
from __future__ import annotations

import sys
import types
import unittest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxinit.optim as jo
import torchinit.optim as to
from _jaxinit import InitError
from parity_tests._figures import record_figure

TOL = 1e-12
# float32, 500 steps, each framework's own gradients: the two backward passes differ by a few ulp
# (u = 6e-8) per step and the optimizers carry it forward (same argument and bound as
# test_optim.py's F32_TOL: 500 steps x 8u = 2.4e-4, plus amplification by the normalised updates).
F32_TOL = 1e-3
STEPS, HALF = 100, 50


def _muon_tol(lr: float) -> float:
    """Muon's bound: torch orthogonalises in bfloat16 (torch/optim/_muon.py), and its CPU GEMM's float32
    accumulation order decides rare ties of the bfloat16 rounding (test_muon_newton_schulz_bits: ~1 call
    in 700 differs in one element by one bfloat16 ulp). One such event moves a parameter element by
    lr * sqrt(max(1, A/B)) * 2^-8 * |O| <= lr * 1.2 * 2^-8 (|O| <= 1, matrices 5x7 / 7x5); allow 10 of
    them over the run, relative to max|p| >= 1 of these parameters."""
    return 10 * lr * 1.2 * 2.0 ** -8


def _optim_db():
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:  # a test dependency of torch, used by common_utils for a TestCase base only
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase
            sys.modules["expecttest"] = stub
    from torch.testing._internal import common_optimizers as co

    # torch.backends in sys.modules is not the namespace its functions read (flags_frozen.__globals__ is
    # the module torch/backends/__init__.py ran in): set the flag there, and check it took.
    torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    assert not torch.backends.flags_frozen()
    return {info.optim_cls.__name__: info for info in co.optim_db}


DB = _optim_db()
NAMES = ("Adafactor", "Muon", "SparseAdam", "LBFGS")
CONFIGS = [(n, oi.desc, oi.kwargs) for n in NAMES for oi in DB[n].optim_inputs_func(device="cpu")]
SHAPES = {"Adafactor": [(4, 5), (5,), (2, 3, 4), ()], "Muon": [(5, 7), (7, 5)], "SparseAdam": [(9, 3), (6,)]}


def _rel(a_list, b_list) -> float:
    worst = 0.0
    for a, b in zip(a_list, b_list):
        b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
        worst = max(worst, float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


def _plain(kwargs):
    return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items() if k != "foreach"}


def _inputs(name, seed=0, steps=STEPS, dtype=np.float64):
    rng = np.random.default_rng(seed)
    shapes = SHAPES[name]
    w0 = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[(rng.standard_normal(s) * 0.3).astype(dtype) for s in shapes] for _ in range(steps)]
    masks = None
    if name == "SparseAdam":  # rows present per step; absent rows have a zero dense gradient
        masks = [[rng.random(s[:1]) < 0.5 for s in shapes] for _ in range(steps)]
        grads = [[g * m.reshape(m.shape + (1,) * (g.ndim - 1)) for g, m in zip(gs, ms)] for gs, ms in zip(grads, masks)]
    return w0, grads, masks


def _torch_grad(g, m):
    g = torch.tensor(g)
    if m is None:
        return g
    rows = torch.tensor(np.nonzero(m)[0], dtype=torch.int64)
    return torch.sparse_coo_tensor(rows[None], g[rows], g.shape).coalesce()


def _torch_run(name, kwargs, w0, grads, masks, upto=STEPS, start=None):
    ps = [torch.tensor(w.copy(), requires_grad=True) for w in w0]
    opt = DB[name].optim_cls(ps, **kwargs)
    if start is not None:
        opt.load_state_dict(start)
    mid = None
    for t in range(upto):
        if t == HALF:
            mid = ([p.detach().numpy().copy() for p in ps], _clone_sd(opt.state_dict()))
        for i, p in enumerate(ps):
            p.grad = _torch_grad(grads[t][i], None if masks is None else masks[t][i])
        opt.step()
    return ps, opt, mid


def _clone_sd(sd):
    return {"state": {i: {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
                      for i, st in sd["state"].items()}, "param_groups": sd["param_groups"]}


def _scan(txs, masks_given):
    """One jitted scan stepping several (tx, params, state) trajectories with the same gradients."""
    def body(carry, xs):
        g, m = xs
        extra = {"row_mask": m} if masks_given else {}
        out = []
        for tx, (p, s) in zip(txs, carry):
            u, s = tx.update(g, s, p, **extra)
            out.append((optax.apply_updates(p, u), s))
        return tuple(out), None

    return jax.jit(lambda carry, xs: jax.lax.scan(body, carry, xs)[0])


def _stack(grads, masks, t0, t1):
    g = [jnp.asarray(np.stack([grads[t][i] for t in range(t0, t1)])) for i in range(len(grads[0]))]
    m = None if masks is None else [jnp.asarray(np.stack([masks[t][i] for t in range(t0, t1)]))
                                    for i in range(len(masks[0]))]
    return g, m


# configurations that only change a number (the same compiled structure as another one): run by the
# exhaustive sweep (pytest -m exhaustive), the default run keeps every structural variant
_SAMPLED_OUT = {("Muon", "non-default lr"), ("Muon", "non-default weight_decay"), ("Muon", "non-default momentum"),
                ("SparseAdam", "non-default lr")}


@pytest.mark.parametrize("name,desc,kwargs", [
    pytest.param(*c, id=f"{c[0]}-{c[1]}", marks=[pytest.mark.exhaustive] if c[:2] in _SAMPLED_OUT else [])
    for c in CONFIGS if c[0] != "LBFGS"])
def test_optim_db_float64(name, desc, kwargs):
    if isinstance(kwargs.get("lr"), torch.Tensor):  # torch computes the step size in float32 then
        opt = DB[name].optim_cls([torch.zeros(SHAPES[name][0], dtype=torch.float64)], **kwargs)
        for conv in (jo.from_torch, to.from_torch):
            with pytest.raises(InitError, match="tensor lr.*float32.*lr=float\\(lr\\)"):
                conv(opt)
        return
    w0, grads, masks = _inputs(name, seed=len(desc))
    ps, opt, (mid_p, mid_sd) = _torch_run(name, kwargs, w0, grads, masks)
    factory_name = {"Adafactor": "adafactor", "Muon": "muon", "SparseAdam": "sparse_adam"}[name]
    direct = getattr(jo, factory_name)(**_plain(kwargs))
    conv = jo.from_torch(opt)
    p0 = [jnp.asarray(w) for w in w0]
    pm = [jnp.asarray(w) for w in mid_p]
    sm = jo.import_state(mid_sd, pm, direct, step=HALF if name == "Muon" else None)  # resume from torch at 50
    if name == "Muon":  # the NS is the expensive part to compile: from_torch's tx is checked on one update
        g0, m0 = _stack(grads, masks, 0, 1)
        ud, ucv = (tx.update([x[0] for x in g0], tx.init(p0), p0)[0] for tx in (direct, conv))
        assert all(np.array_equal(a, b) for a, b in zip(ud, ucv))
        run = _scan((direct, direct), False)
        first = run(((p0, direct.init(p0)), (pm, sm)), _stack(grads, masks, 0, HALF))
        final = run((first[0], (pm, sm)), _stack(grads, masks, HALF, STEPS))
    else:
        run = _scan((direct, conv, direct), masks is not None)
        first = run(((p0, direct.init(p0)), (p0, conv.init(p0)), (pm, sm)), _stack(grads, masks, 0, HALF))
        first = (first[0], first[1], (pm, sm))  # the resumed trajectory starts at step 50
        final = run(first, _stack(grads, masks, HALF, STEPS))
    worst = max(_rel(traj[0], ps) for traj in final)
    # and the way back: JAX state at 50 -> torch, 50 torch steps
    back = to.import_state(jo.export_state(sm, pm), DB[name].optim_cls(
        [torch.tensor(w, requires_grad=True) for w in mid_p], **kwargs))
    tp = back.param_groups[0]["params"]
    for t in range(HALF, STEPS):
        for i, q in enumerate(tp):
            q.grad = _torch_grad(grads[t][i], None if masks is None else masks[t][i])
        back.step()
    worst = max(worst, _rel([q.detach().numpy() for q in tp], ps))
    record_figure("optim_more", "rel_f64_db", worst, f"{name} {desc}")
    assert worst <= (_muon_tol(_plain(kwargs).get("lr", 1e-3)) if name == "Muon" else TOL), (name, desc, worst)


def test_muon_newton_schulz_bits():
    """jaxinit's bfloat16 Newton-Schulz == torch's _zeropower_via_newtonschulz, bitwise on >= 99% of calls."""
    from torch.optim._muon import _zeropower_via_newtonschulz as torch_ns

    rng = np.random.default_rng(4)
    ns = jax.jit(jo.zeropower_via_newtonschulz, static_argnums=(1, 2))
    calls, differ, worst_elems = 0, 0, 0
    for k in range(60):
        g = rng.standard_normal((5, 7) if k % 2 else (7, 5)) * rng.choice([1e-3, 1.0, 30.0])
        for coeffs, steps in (((3.4445, -4.775, 2.0315), 5), ((3.4, -4.7, 2.0), 6)):
            t = torch_ns(torch.tensor(g), coeffs, steps, 1e-7).float().numpy()
            j = np.asarray(ns(jnp.asarray(g), coeffs, steps).astype(jnp.float32))
            calls += 1
            n = int(np.sum(t != j))
            differ += n > 0
            worst_elems = max(worst_elems, n)
            if n:  # one bfloat16 ulp at most
                assert np.max(np.abs(t - j) / np.maximum(np.abs(t), 2.0 ** -20)) <= 2.0 ** -7
    record_figure("optim_more", "ns_calls_differ", differ / calls, "5x7/7x5")
    assert differ / calls <= 0.01 and worst_elems <= 2, (differ, calls, worst_elems)


def test_state_round_trip_bitwise():
    """torch state -> jaxinit.import_state -> jaxinit.export_state -> torchinit.import_state: same bits."""
    for name, kwargs in (("Adafactor", {}), ("Muon", {}), ("SparseAdam", {})):
        w0, grads, masks = _inputs(name, steps=3)
        ps, opt, _ = _torch_run(name, kwargs, w0, grads, masks, upto=3)
        tx = getattr(jo, {"Adafactor": "adafactor", "Muon": "muon", "SparseAdam": "sparse_adam"}[name])()
        params = [jnp.asarray(p.detach().numpy()) for p in ps]
        st = jo.import_state(opt, params, tx, step=3 if name == "Muon" else None)
        fresh = DB[name].optim_cls([torch.tensor(w) for w in w0], **kwargs)
        to.import_state(jo.export_state(st, params), fresh)
        a, b = opt.state_dict()["state"], fresh.state_dict()["state"]
        assert a.keys() == b.keys()
        for i in a:
            assert a[i].keys() == b[i].keys(), (name, a[i].keys(), b[i].keys())
            for k in a[i]:
                va, vb = a[i][k], b[i][k]
                assert type(va) is type(vb), (name, k)
                if isinstance(va, torch.Tensor):
                    assert va.dtype == vb.dtype and torch.equal(va, vb), (name, k)
                else:
                    assert va == vb


# ----------------------------------------------------------------- LBFGS on a shared NumPy objective
_RNG = np.random.default_rng(5)
_A = _RNG.standard_normal((10, 10))
_A = _A @ _A.T / 10 + 0.05 * np.eye(10)
_B = _RNG.standard_normal(10)
_X0 = _RNG.standard_normal(10)


def _f_np(x, cos=0.3):
    """Smooth: 0.5 x'Ax - b'x + 0.05 sum(x^4) + cos * sum(cos(2x)) (convex for cos=0, not for 0.3)."""
    x = np.asarray(x, np.float64)
    f = 0.5 * x @ _A @ x - _B @ x + 0.05 * np.sum(x ** 4) + cos * np.sum(np.cos(2 * x))
    return np.float64(f), _A @ x - _B + 0.2 * x ** 3 - 2 * cos * np.sin(2 * x)


def _jvg(p, cos=0.3):
    return jax.pure_callback(lambda x: _f_np(x, cos),
                             (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((10,), jnp.float64)), p[0])


def _lbfgs_pair(kwargs, steps, cos=0.3):
    tp = torch.tensor(_X0.copy(), requires_grad=True)
    opt = torch.optim.LBFGS([tp], **kwargs)

    def closure():
        f, g = _f_np(tp.detach().numpy(), cos)
        tp.grad = torch.tensor(g)
        return torch.tensor(f)

    tx = jo.lbfgs(**_plain(kwargs))
    p = [jnp.asarray(_X0)]
    s = tx.init(p)
    step = jax.jit(lambda p, s: tx.step(p, s, lambda q: _jvg(q, cos)))
    worst, mid = 0.0, None
    for t in range(steps):
        if t == steps // 2:
            mid = (tp.detach().numpy().copy(), jo.import_state(opt, [jnp.asarray(tp.detach().numpy())], tx))
        x_in = tp.detach().numpy().copy()
        lt = opt.step(closure)
        p, s, lj = step(p, s)
        # The loss is returned at the step's entry point, i.e. at the params of the previous step, which
        # agree only to `worst` (<= TOL relative, asserted below). What differs is summation order alone:
        # torch's dot is MKL's ddot and its sum|g| ATen's vectorised reduction, XLA adds in its own order
        # (61% / 49% of random 10-element float64 dots / abs-sums differ by an ulp; MKL's order depends on
        # the CPU's code path, so it is not reproduced); with torch's dot/sum substituted the trajectories
        # are bitwise equal (test_lbfgs_bitwise_given_torch_reductions). L-BFGS amplifies those ulps
        # through y = g - g_prev: with lr=0.01 / 0.001 the steps are small and y cancels (measured 1.4e-13 /
        # 5e-13 relative in x). To first order a params difference dx moves f by
        # |g . dx| <= |g|_1 max|dx| <= |g|_1 TOL max|x|, so the loss is held to that plus TOL |f| for its
        # own rounding; TOL |f| alone fails where |f| << |g|_1 max|x| ("non-default lr": 6.6e-12 at
        # f = 6.46 against TOL |f| = 6.5e-12, and 37 TOL |f| where f crosses zero), while the first-order
        # bound is met with a 10x margin (measured: at most 0.095 of it over the five optim_db inputs).
        g_in = _f_np(x_in, cos)[1]
        bound = TOL * (abs(float(lt)) + np.abs(g_in).sum() * np.max(np.abs(x_in)))
        assert abs(float(lj) - float(lt)) <= bound, (abs(float(lj) - float(lt)), bound)
        worst = max(worst, _rel(p, [tp]))
    st = opt.state[tp]
    assert (int(s.func_evals), int(s.n_iter)) == (st["func_evals"], st["n_iter"])
    return worst, tp, opt, tx, step, mid


LBFGS_FAST = ("default", "strong_wolfe")


@pytest.mark.parametrize("desc,kwargs", [(d, k) for n, d, k in CONFIGS if n == "LBFGS"],
                         ids=[d for n, d, k in CONFIGS if n == "LBFGS"])
def test_lbfgs_from_torch_refuses(desc, kwargs):
    """from_torch returns optax transformations: torch's LBFGS is refused, naming jaxinit.optim.lbfgs."""
    ps = [torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    with pytest.raises(InitError, match="LBFGS is not supported.*jaxinit.optim.lbfgs"):
        jo.from_torch(torch.optim.LBFGS(ps, **kwargs))


@pytest.mark.parametrize("desc,kwargs", [
    pytest.param(d, k, id=d, marks=[] if d in LBFGS_FAST else [pytest.mark.exhaustive])
    for n, d, k in CONFIGS if n == "LBFGS"])
def test_lbfgs_optim_db(desc, kwargs):
    """Each LBFGS configuration compiles its own step (~3 s): the default run covers both line-search modes."""
    kwargs = dict(kwargs, max_iter=4, history_size=3)  # short steps and a full history: 100 steps do work
    worst, tp, topt, tx, step, (mid_x, mid_state) = _lbfgs_pair(kwargs, STEPS)
    # resume at 50 from torch's state
    p, s = [jnp.asarray(mid_x)], mid_state
    for _ in range(STEPS - STEPS // 2):
        p, s, _ = step(p, s)
    worst = max(worst, _rel(p, [tp]))
    # the LBFGS state round trip: torch -> JAX -> torch, bitwise
    fresh = to.lbfgs([torch.tensor(_X0.copy(), requires_grad=True)], **kwargs)
    to.import_state(jo.export_state(jo.import_state(to.export_state(topt), [p[0]], tx), [p[0]]), fresh)
    a, b = topt.state[tp], fresh.state[fresh.param_groups[0]["params"][0]]
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, list):
            assert len(va) == len(vb) and all((x is None and y is None) or torch.equal(torch.as_tensor(x), y)
                                              for x, y in zip(va, vb)), k
        elif isinstance(va, torch.Tensor):
            assert va.dtype == vb.dtype and torch.equal(va, vb), k
        else:  # func_evals, n_iter, prev_loss; H_diag / t while still Python numbers (t keeps torch's
            # dtype when it is a tensor: lr's dtype for a tensor lr, see torchinit/_src/lbfgs.py _torch_t)
            assert float(va) == float(vb), k
    record_figure("optim_more", "rel_f64_lbfgs", worst, desc)
    assert worst <= TOL, worst



def _f_np_as(dtype, cos=0.3):
    """The shared objective, its loss and gradient rounded to ``dtype`` (the same values in both frameworks)."""
    def f(x):
        v, g = _f_np(x, cos)
        return np.asarray(v, dtype)[()], g.astype(dtype)
    return f


def _lbfgs_in(dtype, kwargs):
    """torch's LBFGS and jaxinit's jitted step from the same start, on the shared objective in ``dtype``:
    ``(torch param, torch optimizer, closure, jaxinit step, params, state)``."""
    objective = _f_np_as(dtype)
    x0 = _X0.astype(dtype)
    tp = torch.tensor(x0.copy(), requires_grad=True)
    opt = torch.optim.LBFGS([tp], **kwargs)

    def closure():
        f, g = objective(tp.detach().numpy())
        tp.grad = torch.tensor(g)
        return torch.tensor(f)

    def jvg(p):
        return jax.pure_callback(objective, (jax.ShapeDtypeStruct((), dtype), jax.ShapeDtypeStruct((10,), dtype)),
                                 p[0])

    tx = jo.lbfgs(**kwargs)
    p = [jnp.asarray(x0)]
    return tp, opt, closure, jax.jit(lambda p, s: tx.step(p, s, jvg)), p, tx.init(p)


@pytest.mark.parametrize("kwargs,dtype", [({"lr": 0.01}, np.float64),
                                          ({"lr": 0.01, "line_search_fn": "strong_wolfe"}, np.float64),
                                          ({"lr": 0.01}, np.float32), ({}, np.float32)],
                         ids=["fixed", "strong_wolfe", "fixed-float32", "fixed-lr1-float32"])
def test_lbfgs_bitwise_given_torch_reductions(kwargs, dtype, monkeypatch):
    """With torch's own dot / sum substituted (run by torch through jax.pure_callback), jaxinit's LBFGS is
    torch's bit for bit: every other operation rounds as torch's does (no compiler-fused multiply-add where
    torch rounds the product: cubic interpolation, Armijo test, zoom eps, the two-loop's al - be; FMAs
    where ATen's add_(alpha=) does them). What remains in test_lbfgs_optim_db is summation order alone.
    float32: fixed steps only (the strong-Wolfe search is refused there, test_lbfgs_float32_line_search_refused)."""
    import types

    import jaxinit._src.lbfgs as lb

    def on_torch(fn):
        def call(*xs, **_):
            dt = xs[0].dtype
            f = lambda *a: np.asarray(fn(*(torch.tensor(np.asarray(v)) for v in a)).item(), dt)[()]  # noqa: E731
            return jax.pure_callback(f, jax.ShapeDtypeStruct((), dt), *xs)
        return call

    fake = types.SimpleNamespace(**{k: getattr(jnp, k) for k in dir(jnp) if not k.startswith("__")})
    fake.dot, fake.sum = on_torch(torch.dot), on_torch(torch.sum)
    monkeypatch.setattr(lb, "jnp", fake)
    tp, opt, closure, step, p, s = _lbfgs_in(dtype, dict(kwargs, max_iter=4, history_size=3))
    for _ in range(40):
        lt = float(opt.step(closure))
        p, s, lj = step(p, s)
        assert p[0].dtype == dtype and float(lj) == lt
        np.testing.assert_array_equal(np.asarray(p[0]), tp.detach().numpy())
    st = opt.state[tp]
    assert (int(s.func_evals), int(s.n_iter)) == (st["func_evals"], st["n_iter"])


def test_lbfgs_float32_fixed_steps():
    """float32, fixed steps, XLA's own dot/sum: 100 steps of 4 iterations against torch. Only summation order
    differs (the test above is bitwise with torch's reductions), so the float64 bound in units of the
    dtype's epsilon holds: TOL / eps64 = 4504 ulp, i.e. 5.4e-4 relative in float32 (measured 1e-5)."""
    bound = TOL / np.finfo(np.float64).eps * np.finfo(np.float32).eps
    for lr in (0.01, 1.0):
        tp, opt, closure, step, p, s = _lbfgs_in(np.float32, dict(lr=lr, max_iter=4, history_size=3))
        worst = 0.0
        for _ in range(STEPS):
            opt.step(closure)
            p, s, _ = step(p, s)
            worst = max(worst, _rel(p, [tp]))
        st = opt.state[tp]
        assert p[0].dtype == np.float32
        assert (int(s.func_evals), int(s.n_iter)) == (st["func_evals"], st["n_iter"])
        record_figure("optim_more", "rel_f32_lbfgs", worst, f"fixed lr={lr}")
        assert worst <= bound, (lr, worst, bound)


def test_lbfgs_loss_change_test_is_torchs_on_python_floats():
    """torch stops when abs(loss - prev_loss) < tolerance_change with both losses Python floats (float64)
    even for float32 parameters; a float32 subtraction rounds, and near the threshold decides otherwise.
    Pairs of float32 losses whose exact difference straddles tolerance_change, against Python's floats."""
    from jaxinit._src.lbfgs import _loss_change_below

    rng = np.random.default_rng(5)
    tol = 1e-9
    a = rng.uniform(-3e-9, 3e-9, 20000).astype(np.float32)
    b = (a.astype(np.float64) - tol * rng.choice([-1, 1], a.size) * (1 + rng.uniform(-1e-6, 1e-6, a.size)))
    b = b.astype(np.float32)
    want = np.array([abs(float(x) - float(y)) < tol for x, y in zip(a, b)])
    got = np.asarray(jax.jit(lambda x, y: _loss_change_below(x, y, tol))(jnp.asarray(a), jnp.asarray(b)))
    f32 = np.abs(a - b) < np.float32(tol)
    assert (f32 != want).sum() > 100  # the float32 subtraction does decide differently here
    np.testing.assert_array_equal(got, want)


def test_lbfgs_float32_line_search_refused():
    """The strong-Wolfe search with float32 parameters is refused at init and at step, saying why and what
    to do: torch mixes Python-float (float64) losses with float32 tensors there (torch/optim/lbfgs.py)."""
    tx = jo.lbfgs(line_search_fn="strong_wolfe")
    p = [jnp.asarray(_X0, jnp.float32)]
    msg = r"needs float64 parameters, got float32.*Python float.*jax_enable_x64.*line_search_fn=None"
    with pytest.raises(InitError, match=msg):
        tx.init(p)
    s = tx.init([jnp.asarray(_X0)])
    with pytest.raises(InitError, match=msg):
        tx.step(p, s, lambda q: (jnp.sum(q[0] ** 2), [2 * q[0]]))
    jo.lbfgs().init(p)  # fixed steps: float32 accepted


def test_lbfgs_rounded_is_identity():
    """_rounded (the contraction barrier) returns its argument bit for bit, NaN and inf included, any float dtype."""
    from jaxinit._src.lbfgs import _rounded

    for dt in (np.float64, np.float32, np.float16):
        v = np.array([0.0, -0.0, 1.5, -3e-30, np.inf, -np.inf, np.nan, 1e-45, 7.0], dt)
        out = np.asarray(jax.jit(_rounded)(jnp.asarray(v)))
        assert out.dtype == v.dtype
        assert np.array_equal(out, v, equal_nan=True) and np.array_equal(np.signbit(out), np.signbit(v))


def test_lbfgs_import_state_copies():
    """import_state from a live torch LBFGS owns its arrays: torch's next step updates prev_flat_grad in place
    (prev_flat_grad.copy_(flat_grad)), which used to change the imported JAX state (a resume drifted 1.5e-4)."""
    tp = torch.tensor(_X0.copy(), requires_grad=True)
    opt = torch.optim.LBFGS([tp], lr=0.01, max_iter=2)

    def closure():
        f, g = _f_np(tp.detach().numpy())
        tp.grad = torch.tensor(g)
        return torch.tensor(f)

    opt.step(closure)
    tx = jo.lbfgs(lr=0.01, max_iter=2)
    imported = jo.import_state(opt, [jnp.asarray(tp.detach().numpy())], tx)
    before = jax.tree.map(lambda a: np.array(a, copy=True), imported)
    opt.step(closure)
    for name in imported._fields:
        np.testing.assert_array_equal(np.asarray(getattr(imported, name)), getattr(before, name), err_msg=name)


@pytest.mark.parametrize("scale,expect", [(1.0, torch.float64), (1e-3, torch.float32)],
                         ids=["first-iteration product", "1.0 * lr"])
def test_lbfgs_tensor_lr_t_dtype(scale, expect):
    """With a tensor lr torch keeps lr a tensor (optimizer._to_scalar): state t is lr itself (float32) after the
    first iteration, and on the first one min(1.0, 1 / sum|g|) * lr: the float64 product if 1 / sum|g| < 1,
    1.0 * lr (float32) otherwise. The round trip torch -> JAX -> torch gives torch's dtype and value in each case."""
    for max_iter in (1, 3):
        tp = torch.tensor(_X0.copy(), requires_grad=True)
        opt = torch.optim.LBFGS([tp], lr=torch.tensor(0.001), max_iter=max_iter)

        def closure():
            f, g = _f_np(tp.detach().numpy(), 0.0)
            tp.grad = torch.tensor(g * scale)
            return torch.tensor(f * scale)

        opt.step(closure)
        t = opt.state[tp]["t"]
        assert isinstance(t, torch.Tensor) and t.dtype == (expect if max_iter == 1 else torch.float32)
        tx = jo.lbfgs(lr=0.001, max_iter=max_iter)
        fresh = to.lbfgs([torch.tensor(_X0.copy(), requires_grad=True)], lr=torch.tensor(0.001), max_iter=max_iter)
        p = [jnp.asarray(tp.detach().numpy())]
        to.import_state(jo.export_state(jo.import_state(to.export_state(opt), p, tx), p), fresh)
        back = fresh.state[fresh.param_groups[0]["params"][0]]["t"]
        assert back.dtype == t.dtype and torch.equal(back, t)


# ----------------------------------------------------------------- torchinit vs jaxinit on models, 500 steps
def _mlp(rng, dtype, bias):
    w = {"w1": rng.standard_normal((6, 4)) * 0.5, "w2": rng.standard_normal((3, 6)) * 0.5}
    if bias:
        w.update(b1=rng.standard_normal(6) * 0.1, b2=rng.standard_normal(3) * 0.1)
    return {k: v.astype(dtype) for k, v in w.items()}


def _fwd(p, x, tanh, xp_sum):
    h = tanh(x @ p["w1"].T + (p["b1"] if "b1" in p else 0))
    return xp_sum((h @ p["w2"].T + (p["b2"] if "b2" in p else 0)) ** 2) / x.shape[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mlp_500_steps(dtype):
    """torchinit.adafactor vs jaxinit.adafactor: 500 steps of a tanh MLP, each framework's own gradients."""
    npdt = np.float64 if dtype == "float64" else np.float32
    rng = np.random.default_rng(1)
    w0 = _mlp(rng, npdt, bias=True)
    x = rng.standard_normal((500, 8, 4)).astype(npdt)
    names = sorted(w0)
    kw = dict(lr=0.01, weight_decay=0.1)
    tp = {k: torch.tensor(w0[k], requires_grad=True) for k in names}
    topt = to.adafactor([tp[k] for k in names], **kw)
    for t in range(500):
        topt.zero_grad()
        _fwd(tp, torch.tensor(x[t]), torch.tanh, torch.sum).backward()
        topt.step()
    tx = jo.adafactor(**kw)
    jp = [jnp.asarray(w0[k]) for k in names]

    def body(c, xb):
        p, s = c
        g = jax.grad(lambda q: _fwd(dict(zip(names, q)), xb, jnp.tanh, jnp.sum))(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (jp, _), _ = jax.jit(lambda p, xs: jax.lax.scan(body, (p, tx.init(p)), xs))(jp, jnp.asarray(x))
    err = _rel(jp, [tp[k] for k in names])
    record_figure("optim_more", f"rel_{dtype}_mlp", err, "adafactor")
    assert err <= (TOL if dtype == "float64" else F32_TOL), err


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_muon_mlp_500_steps_per_step(dtype):
    """torchinit.muon vs jaxinit.muon on a bias-free MLP, 500 steps, the JAX step taken from torch's state.

    End to end, two Muon runs cannot stay close: the update is normalised (its size does not shrink
    with the gradient), so one bfloat16 tie decided differently (see _muon_tol) changes the next
    gradients, whose bfloat16 casts then differ elsewhere: the runs separate (measured 1.4 relative after
    500 steps). So each of the 500 steps is compared from the same state (torch's params and momentum
    buffers, imported), JAX computing its own model gradient: the update equals torch's within 1e-12
    (float64; float32: F32_TOL) on every step but those where a bfloat16 tie falls differently (at most 2%)."""
    npdt = np.float64 if dtype == "float64" else np.float32
    rng = np.random.default_rng(1)
    w0 = _mlp(rng, npdt, bias=False)
    x = rng.standard_normal((500, 8, 4)).astype(npdt)
    names = sorted(w0)
    tp = {k: torch.tensor(w0[k], requires_grad=True) for k in names}
    topt = to.muon([tp[k] for k in names], lr=0.02, weight_decay=0.01)
    tx = jo.muon(lr=0.02, weight_decay=0.01)

    before, bufs, after = [], [], []
    for t in range(500):
        before.append([tp[k].detach().numpy().copy() for k in names])
        bufs.append([topt.state[tp[k]]["momentum_buffer"].numpy().copy() if topt.state[tp[k]] else
                     np.zeros_like(w0[k]) for k in names])
        topt.zero_grad()
        _fwd(tp, torch.tensor(x[t]), torch.tanh, torch.sum).backward()
        topt.step()
        after.append([tp[k].detach().numpy().copy() for k in names])

    def jstep(p, b, t, xb):  # one JAX step from torch's state (params, momentum buffers, step count)
        g = jax.grad(lambda q: _fwd(dict(zip(names, q)), xb, jnp.tanh, jnp.sum))(p)
        u, _ = tx.update(g, jo.MuonState(t, b), p)
        return optax.apply_updates(p, u)

    stack = lambda rows: [jnp.asarray(np.stack([r[i] for r in rows])) for i in range(len(names))]  # noqa: E731
    out = jax.jit(jax.vmap(jstep))(stack(before), stack(bufs), jnp.arange(500, dtype=jnp.int32), jnp.asarray(x))
    out = [np.asarray(o) for o in out]
    tol = TOL if dtype == "float64" else F32_TOL
    off, worst = 0, 0.0
    for t in range(500):
        err = _rel([o[t] for o in out], after[t])
        if err > tol:
            off += 1
        else:
            worst = max(worst, err)
    record_figure("optim_more", f"rel_{dtype}_muon_step", worst, f"{off} of 500 steps off (bf16 ties)")
    assert off <= 10, off


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sparse_adam_embedding_500_steps(dtype):
    """nn.Embedding(sparse=True) + torch's SparseAdam == jaxinit.sparse_adam with the looked-up rows as mask."""
    npdt, tdt = (np.float64, torch.float64) if dtype == "float64" else (np.float32, torch.float32)
    rng = np.random.default_rng(2)
    e0 = rng.standard_normal((12, 4)).astype(npdt)
    ids = rng.integers(0, 12, size=(500, 5))
    y = rng.standard_normal((500, 4)).astype(npdt)
    emb = torch.nn.Embedding(12, 4, sparse=True).to(tdt)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(e0))
    topt = to.sparse_adam(emb.parameters(), lr=0.01)
    for t in range(500):
        topt.zero_grad()
        (((emb(torch.tensor(ids[t])).sum(0) - torch.tensor(y[t])) ** 2).sum()).backward()
        topt.step()
    tx = jo.sparse_adam(lr=0.01)

    def body(c, xs):
        p, s = c
        i, yy = xs
        g = jax.grad(lambda e: ((e[i].sum(0) - yy) ** 2).sum())(p)
        mask = jnp.zeros(12, bool).at[i].set(True)
        u, s = tx.update(g, s, p, row_mask=mask)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.jit(lambda p, xs: jax.lax.scan(body, (p, tx.init(p)), xs))(jnp.asarray(e0),
                                                                            (jnp.asarray(ids), jnp.asarray(y)))
    err = _rel([p], [emb.weight])
    record_figure("optim_more", f"rel_{dtype}_embedding", err, "sparse_adam")
    assert err <= (TOL if dtype == "float64" else F32_TOL), err


def test_lbfgs_500_iterations():
    """500 steps of one L-BFGS iteration each (history 5): fixed steps on the convex objective, strong-Wolfe
    steps on the non-convex one. (Fixed steps on the non-convex objective drift to ~3e-10 after 500
    iterations: pairs with y's close to the 1e-10 curvature threshold amplify the last-bit differences
    of BLAS's and XLA's dot products; the decisions stay the same.)"""
    for kwargs, cos in ((dict(lr=0.1, max_iter=1, history_size=5), 0.0),
                        (dict(lr=0.1, max_iter=1, history_size=5, line_search_fn="strong_wolfe"), 0.3)):
        worst, *_ = _lbfgs_pair(kwargs, 500, cos)
        record_figure("optim_more", "rel_f64_lbfgs", worst, f"500 x max_iter=1 {kwargs.get('line_search_fn')}")
        assert worst <= TOL, worst


# ----------------------------------------------------------------- optax composition
def test_inject_multi_transform_jit():
    rng = np.random.default_rng(3)
    p = {"w": jnp.asarray(rng.standard_normal((5, 4))), "b": jnp.asarray(rng.standard_normal(4))}
    g = jax.tree.map(lambda x: x * 0.1, p)
    # Adafactor with an injected lr equals the plain one, under jit
    a, b = jo.adafactor(0.01), optax.inject_hyperparams(jo.adafactor)(lr=0.01)
    ua, _ = jax.jit(a.update)(g, a.init(p), p)
    ub, _ = jax.jit(b.update)(g, b.init(p), p)
    np.testing.assert_array_equal(ua["w"], ub["w"])
    # Muon on the matrix, AdamW on the rest; ns_steps static under inject_hyperparams
    m = optax.inject_hyperparams(jo.muon, static_args=("ns_steps",))(lr=0.02)
    tx = optax.multi_transform({"muon": m, "adam": jo.adamw(1e-3)},
                               lambda t: jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", t))
    u, s = jax.jit(tx.update)(g, tx.init(p), p)
    ref, _ = jo.muon(0.02).update({"w": g["w"]}, jo.muon(0.02).init({"w": p["w"]}), {"w": p["w"]})
    np.testing.assert_allclose(u["w"], ref["w"], rtol=1e-15, atol=0)  # injected arrays: last-bit rounding
    # SparseAdam inside multi_transform: the row_mask extra argument reaches it
    tx = optax.multi_transform({"s": jo.sparse_adam(0.01), "a": jo.adam(0.01)}, {"w": "s", "b": "a"})
    mask = {"w": jnp.array([True, False, True, False, False]), "b": jnp.ones((), bool)}
    u, _ = jax.jit(tx.update)(g, tx.init(p), p, row_mask=mask)
    assert np.all(np.asarray(u["w"])[[1, 3, 4]] == 0) and np.all(np.asarray(u["w"])[[0, 2]] != 0)


# ----------------------------------------------------------------- errors
def test_errors():
    with pytest.raises(InitError, match="beta2_decay should be <= 0"):
        jo.adafactor(beta2_decay=0.5)
    with pytest.raises(InitError, match="Clipping threshold d should be >= 1"):
        to.adafactor([torch.zeros(2)], d=0.5)
    with pytest.raises(InitError, match="eps must be a pair"):
        jo.adafactor(eps=1e-3)
    with pytest.raises(InitError, match="Muon only supports 2D parameters.*multi_transform"):
        jo.muon().init({"b": jnp.zeros(3)})
    with pytest.raises(InitError, match="Muon only supports 2D parameters"):
        to.muon([torch.zeros(3)])
    with pytest.raises(InitError, match="Number of steps must be less than 100"):
        jo.muon(ns_steps=100)
    with pytest.raises(InitError, match="static_args=\\('ns_steps',\\)"):
        jo.muon(ns_steps=jnp.asarray(5))
    with pytest.raises(InitError, match="Adjust learning rate function"):
        to.muon([torch.zeros(2, 2)], adjust_lr_fn="other")
    with pytest.raises(InitError, match="only 'strong_wolfe' is supported"):
        jo.lbfgs(line_search_fn="armijo")
    with pytest.raises(InitError, match="no optax update"):
        jo.lbfgs().update({}, None)
    with pytest.raises(InitError, match="Tensor lr must be 1-element"):
        jo.sparse_adam(lr=jnp.ones(2))
    with pytest.raises(InitError, match="Invalid learning rate"):
        to.sparse_adam([torch.zeros(2)], lr=0.0)
    tx = jo.sparse_adam()
    p = {"e": jnp.zeros((4, 2))}
    with pytest.raises(InitError, match="needs row_mask"):
        tx.update(p, tx.init(p), p)
    with pytest.raises(InitError, match="not a prefix"):
        tx.update(p, tx.init(p), p, row_mask={"e": jnp.ones(2, bool)})


@pytest.mark.parametrize("name", ["Adafactor", "SparseAdam", "Muon"])
def test_scheduler_from_torch(name):
    """from_torch(optimizer, CosineAnnealingLR): the schedule drives lr (Adafactor: also rho_t and the decay)."""
    w0, grads, masks = _inputs(name, seed=11, steps=30)
    ps = [torch.tensor(w.copy(), requires_grad=True) for w in w0]
    kwargs = {"Adafactor": dict(lr=0.02, weight_decay=0.1), "SparseAdam": dict(lr=0.01), "Muon": dict(lr=0.01)}[name]
    opt = DB[name].optim_cls(ps, **kwargs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=12)
    tx = jo.from_torch(opt, sched)
    # torchinit's twin takes over the optimizer's own parameters: build it on a copy
    tps = [torch.tensor(w.copy(), requires_grad=True) for w in w0]
    opt2 = DB[name].optim_cls(tps, **kwargs)
    twin = to.from_torch(opt2, torch.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=12))
    for t in range(30):
        for i, (p, q) in enumerate(zip(ps, tps)):
            p.grad = _torch_grad(grads[t][i], None if masks is None else masks[t][i])
            q.grad = p.grad.clone()
        opt.step()
        sched.step()
        twin.step()
    p0 = [jnp.asarray(w) for w in w0]
    run = _scan((tx,), masks is not None)
    (p, _), = run(((p0, tx.init(p0)),), _stack(grads, masks, 0, 30))
    err = max(_rel(p, ps), _rel([q.detach().numpy() for q in tps], ps))
    record_figure("optim_more", "rel_f64_sched", err, name)
    assert err <= (_muon_tol(0.01) if name == "Muon" else TOL), err
