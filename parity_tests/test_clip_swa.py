"""Gradient clipping, weight averaging (SWA / EMA, SWALR, update_bn) and gradient accumulation vs the
REAL torch functions (torch.nn.utils.clip_grad_norm_ / clip_grad_value_, torch.optim.swa_utils), float64.

Tolerances: clipping multiplies by one coefficient computed from a norm whose summation order differs
(XLA's reduction vs torch's vector_norm): a few ulps of the norm, so <= 1e-14 relative on the clipped
gradients; clamping and averaging are the same elementwise float operations: bitwise. Training loops
(accumulation, update_bn): float64 rounding of different matmul/reduction orders, <= 1e-12 relative.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxinit
import jaxinit.optim as jo
import torchinit.optim as to
from _jaxinit import InitError
from parity_tests._figures import record_figure

SHAPES = [(3, 4), (4,), (2, 3, 5)]


def _grads(seed, dtype=np.float64, scale=1.0):
    rng = np.random.default_rng(seed)
    return [(scale * rng.standard_normal(s)).astype(dtype) for s in SHAPES]


def _torch_clip(grads, fn, *args, **kw):
    ps = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype)) for g in grads]
    for p, g in zip(ps, grads):
        p.grad = torch.tensor(g)
    out = fn(ps, *args, **kw)
    return [p.grad.numpy() for p in ps], out


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.5, 0.0, float("-inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_equals_torch(norm_type, max_norm):
    grads = _grads(0)
    ref, ref_norm = _torch_clip(grads, torch.nn.utils.clip_grad_norm_, max_norm, norm_type)
    tx = jo.clip_grad_norm(max_norm, norm_type)
    upd, st = jax.jit(tx.update)([jnp.asarray(g) for g in grads], tx.init(None))
    err = max(float(np.max(np.abs(np.asarray(u) - r) / np.maximum(np.abs(r), 1e-300))) for u, r in zip(upd, ref))
    record_figure("clip_swa", "clip_norm_rel", err, f"p={norm_type},max={max_norm}")
    assert err <= 1e-14
    assert float(st.total_norm) == pytest.approx(float(ref_norm), rel=1e-14)
    mine, mine_norm = _torch_clip(grads, to.clip_grad_norm, max_norm, norm_type)
    for a, b in zip(mine, ref):
        np.testing.assert_array_equal(a, b)  # torchinit's is torch's
    assert float(mine_norm) == float(ref_norm)


def test_clip_grad_norm_float32_and_not_optax():
    grads = _grads(1, np.float32, scale=3.0)
    ref, _ = _torch_clip(grads, torch.nn.utils.clip_grad_norm_, 1.0)
    tx = jo.clip_grad_norm(1.0)
    upd, _ = jax.jit(tx.update)([jnp.asarray(g) for g in grads], tx.init(None))
    assert all(u.dtype == jnp.float32 for u in upd)  # the coefficient is cast to the gradient's dtype
    for u, r in zip(upd, ref):
        np.testing.assert_allclose(np.asarray(u), r, rtol=2e-6)  # float32 norms: a few float32 ulps
    # optax.clip_by_global_norm scales by max_norm / norm (no 1e-6): not torch's
    g64 = [jnp.asarray(g) for g in _grads(1, scale=3.0)]
    ours, _ = jax.jit(jo.clip_grad_norm(1.0).update)(g64, jo.clip_grad_norm(1.0).init(None))
    theirs, _ = jax.jit(optax.clip_by_global_norm(1.0).update)(g64, optax.EmptyState())
    rel = max(float(jnp.max(jnp.abs(a - b) / jnp.abs(b))) for a, b in zip(ours, theirs))
    assert 1e-8 < rel < 1e-5


def test_clip_grad_norm_nonfinite():
    grads = _grads(2)
    grads[1][0] = np.inf
    with pytest.raises(RuntimeError, match="non-finite, so it cannot be clipped"):
        _torch_clip(grads, torch.nn.utils.clip_grad_norm_, 1.0, error_if_nonfinite=True)
    tx = jo.clip_grad_norm(1.0, error_if_nonfinite=True)
    with pytest.raises(Exception, match="non-finite, so it cannot be clipped"):
        jax.block_until_ready(jax.jit(tx.update)([jnp.asarray(g) for g in grads], tx.init(None)))
    ref, _ = _torch_clip(grads, torch.nn.utils.clip_grad_norm_, 1.0)  # default: scaled by the inf norm
    upd, _ = jo.clip_grad_norm(1.0).update([jnp.asarray(g) for g in grads], jo.clip_grad_norm(1.0).init(None))
    for u, r in zip(upd, ref):
        np.testing.assert_array_equal(np.asarray(u), r)


def test_clip_grad_value_and_errors():
    grads = _grads(3)
    ref, _ = _torch_clip(grads, torch.nn.utils.clip_grad_value_, 0.3)
    upd, _ = jo.clip_grad_value(0.3).update([jnp.asarray(g) for g in grads], optax.EmptyState())
    for u, r in zip(upd, ref):
        np.testing.assert_array_equal(np.asarray(u), r)
    mine, _ = _torch_clip(grads, to.clip_grad_value, 0.3)
    for a, b in zip(mine, ref):
        np.testing.assert_array_equal(a, b)
    for bad, msg in ((lambda p: p.clip_grad_norm(*p_args(p), max_norm="1"), "max_norm must be a real number"),
                     (lambda p: p.clip_grad_norm(*p_args(p), 1.0, norm_type="fro"), "norm_type must be a real"),
                     (lambda p: p.clip_grad_value(*p_args(p), None), "clip_value must be a real number")):
        for pkg in (jo, to):
            with pytest.raises(InitError, match=msg):
                bad(pkg)


def p_args(pkg):
    return () if pkg is jo else ([torch.nn.Parameter(torch.zeros(1))],)


# ------------------------------------------------------------------ AveragedModel (SWA / EMA)

class _TorchNet(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def _variables(model):
    """Flax-style variables holding the torch module's parameters and buffers (same arrays, torch names)."""
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in model.named_parameters()}
    stats = {n: jnp.asarray(b.detach().numpy()) for n, b in model.named_buffers()}
    return {"params": params, "batch_stats": stats}


def _perturb(model, rng):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.tensor(rng.standard_normal(tuple(p.shape))))
        for n, b in model.named_buffers():
            if b.is_floating_point():
                b.add_(torch.tensor(rng.random(tuple(b.shape))))
            else:
                b.add_(3)


@pytest.mark.parametrize("avg", ["ema", "swa", "swa_lerp"])
@pytest.mark.parametrize("use_buffers", [False, True])
def test_averaged_model_equals_torch(avg, use_buffers):
    """30 updates of torch's AveragedModel vs jaxinit.optim.averaged_model on the same weights. EMA and the
    lerp SWA: bitwise (the same elementwise float64 operations, torch's lerp formula, float32-then-truncate
    for integer buffers). The CPU SWA mean divides by n + 1, which XLA on CPU does through the reciprocal:
    one rounding more per update, so <= 30 updates * 2 ulp, i.e. 1e-14 of the largest value."""
    if avg == "swa_lerp" and use_buffers:  # torch's lerp SWA fails on the integer num_batches_tracked
        with pytest.raises(RuntimeError, match="Integer division with addcdiv"):
            m = _TorchNet().double()
            a = to.averaged_model(m, multi_avg_fn=to.get_swa_multi_avg_fn(), use_buffers=True)
            a.update_parameters(m)
            a.update_parameters(m)
        with pytest.raises(InitError, match="integer leaves"):
            ours = jo.averaged_model(jo.get_swa_multi_avg_fn(), use_buffers=True)
            v = _variables(_TorchNet().double())
            ours.update(ours.update(ours.init(v), v), v)
        return
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = _TorchNet().double()
    fn_t = {"ema": to.get_ema_multi_avg_fn(0.9), "swa": None, "swa_lerp": to.get_swa_multi_avg_fn()}[avg]
    fn_j = {"ema": jo.get_ema_multi_avg_fn(0.9), "swa": None, "swa_lerp": jo.get_swa_multi_avg_fn()}[avg]
    ref = to.averaged_model(model, multi_avg_fn=fn_t, use_buffers=use_buffers)
    ours = jo.averaged_model(fn_j, use_buffers=use_buffers)
    state = ours.init(_variables(model))
    update = jax.jit(ours.update)
    for _ in range(30):
        _perturb(model, rng)
        ref.update_parameters(model)
        state = update(state, _variables(model))
    got = state.average
    pairs = [(got["params"][n], p.detach().numpy()) for n, p in ref.module.named_parameters()]
    pairs += [(got["batch_stats"][n], b.numpy()) for n, b in ref.module.named_buffers()]
    for a, b in pairs:
        if avg == "swa" and np.issubdtype(b.dtype, np.floating):
            assert np.max(np.abs(np.asarray(a) - b)) <= 1e-14 * np.max(np.abs(b))
        else:
            np.testing.assert_array_equal(np.asarray(a), b)
    assert int(state.n_averaged) == int(ref.n_averaged) == 30


def test_ema_first_update_copies():
    ema = jo.averaged_model(jo.get_ema_multi_avg_fn(0.5))
    st = ema.init({"w": jnp.zeros(2)})
    st = ema.update(st, {"w": jnp.ones(2)})
    np.testing.assert_array_equal(st.average["w"], np.ones(2))  # torch copies on the first update
    st = ema.update(st, {"w": jnp.full(2, 3.0)})
    np.testing.assert_array_equal(st.average["w"], np.full(2, 2.0))
    for pkg in (jo, to):
        with pytest.raises(InitError, match=r"Invalid decay value 1.5 provided. Please provide a value in \[0,1\]"):
            pkg.get_ema_multi_avg_fn(1.5)
    with pytest.raises(InitError, match="use_buffers must be True or False"):
        jo.averaged_model(use_buffers="yes")


@pytest.mark.parametrize("kw", [dict(anneal_epochs=10), dict(anneal_epochs=37, anneal_strategy="linear"),
                                dict(anneal_epochs=0)])
def test_swalr_equals_torch(kw):
    from torch.optim.swa_utils import SWALR

    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    o = torch.optim.SGD([p], lr=0.3)
    s = SWALR(o, swa_lr=0.05, **kw)
    ref = []
    for _ in range(200):
        ref.append(o.param_groups[0]["lr"])
        o.step()
        s.step()
    ref = np.array(ref)
    for pkg in (jo, to):
        for sched in (pkg.swalr(0.3, 0.05, **kw), pkg.schedules_from_torch(s)[0]):
            vals = np.asarray(jax.jit(jax.vmap(sched))(jnp.arange(200))) if pkg is jo else \
                np.array([sched(t) for t in range(200)])
            assert np.max(np.abs(vals - ref)) <= 1e-12 * 0.3
    ts = to.swalr(0.3, 0.05, **kw).torch_scheduler(torch.optim.SGD([p], lr=1.0))
    assert type(ts) is SWALR


# ------------------------------------------------------------------ update_bn


class _FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Dense(4, param_dtype=jnp.float64)(x)
        return jaxinit.BatchNorm(use_running_average=not train, param_dtype=jnp.float64)(x)


def test_update_bn_equals_torch():
    """torch's update_bn (reset, momentum=None, a pass over the loader) vs jaxinit.optim.update_bn on a Linen
    model with jaxinit.BatchNorm: running statistics within 1e-12 relative (float64 matmul order)."""
    torch.manual_seed(0)
    tm = _TorchNet().double()
    rng = np.random.default_rng(0)
    loader = [(torch.tensor(rng.standard_normal((8, 3))), torch.zeros(8)) for _ in range(5)]
    x0 = jnp.asarray(loader[0][0].numpy())
    model = _FlaxNet()
    v = model.init(jax.random.key(0), x0, train=False)
    v = {"params": {"Dense_0": {"kernel": jnp.asarray(tm[0].weight.detach().numpy().T),
                                "bias": jnp.asarray(tm[0].bias.detach().numpy())},
                    "BatchNorm_0": v["params"]["BatchNorm_0"]},
         "batch_stats": jax.tree.map(lambda a: a + 7, v["batch_stats"])}  # stale statistics, reset by update_bn
    torch.optim.swa_utils.update_bn(loader, tm)
    new = jo.update_bn([(jnp.asarray(x.numpy()), y) for x, y in loader], model, v, train=True)
    bs = new["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(bs["mean"], tm[1].running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(bs["var"], tm[1].running_var.numpy(), rtol=1e-12)
    assert int(bs["num_batches_tracked"]) == int(tm[1].num_batches_tracked) == 5
    assert model.apply(new, x0, train=False).shape == (8, 4)


def test_update_bn_refuses_flax_batchnorm():
    class FlaxBN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            return nn.BatchNorm(use_running_average=not train)(x)

    x = jnp.ones((4, 3))
    v = FlaxBN().init(jax.random.key(0), x, train=False)
    with pytest.raises(InitError, match="flax.linen.BatchNorm has no cumulative average"):
        jo.update_bn([x], FlaxBN(), v, train=True)


# ------------------------------------------------------------------ gradient accumulation


def test_gradient_accumulation_equals_the_torch_loop():
    """torch: for 4 micro-batches ``(loss / 4).backward()`` then ``opt.step()``; JAX: ``grad(loss / 4)`` per
    micro-batch into ``optax.MultiSteps(jaxinit.optim.adamw(...), 4, use_grad_mean=False,
    accumulator_dtype=None)``, which sums the gradients in torch's order (``.grad +=``) and dtype. 12 optimizer
    steps of a float64 MLP: <= 1e-12 relative (float64 rounding of different matmul orders; measured 3e-15).
    With optax's default float32 accumulator the same loop is off by ~1e-7: the trap this test pins."""
    accum, steps = 4, 12
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((steps * accum, 16, 5))
    ys = rng.standard_normal((steps * accum, 16, 1))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    params = [jnp.asarray(p.detach().numpy()) for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for k in range(steps * accum):
        loss = torch.nn.functional.mse_loss(net(torch.tensor(xs[k])), torch.tensor(ys[k]))
        (loss / accum).backward()
        if (k + 1) % accum == 0:
            opt.step()
            opt.zero_grad()

    def loss_fn(ps, x, y):
        w1, b1, w2, b2 = ps
        out = jnp.tanh(x @ w1.T + b1) @ w2.T + b2
        return jnp.mean((out - y) ** 2) / accum

    def run(accumulator_dtype):
        # accumulator_dtype=None: accumulate in the gradients' dtype, as torch (optax's default is float32)
        tx = optax.MultiSteps(jo.adamw(1e-2), every_k_schedule=accum, use_grad_mean=False,
                              accumulator_dtype=accumulator_dtype)

        @jax.jit
        def micro(ps, st, x, y):
            g = jax.grad(loss_fn)(ps, x, y)
            u, st = tx.update(g, st, ps)
            return optax.apply_updates(ps, u), st

        ps, st = params, tx.init(params)
        for k in range(steps * accum):
            ps, st = micro(ps, st, jnp.asarray(xs[k]), jnp.asarray(ys[k]))
        return max(float(np.max(np.abs(np.asarray(a) - p.detach().numpy()) / np.abs(p.detach().numpy())))
                   for a, p in zip(ps, net.parameters()))

    err = run(None)
    record_figure("clip_swa", "accumulation_rel", err, "adamw x4")
    assert err <= 1e-12
    assert run(jnp.float32) > 1e-9  # optax's default accumulator: float32 sums
