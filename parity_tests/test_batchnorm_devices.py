"""Cross-device BatchNorm: ``axis_name`` on the 8 fake CPU devices (conftest) against one device
on the whole batch and against torch on the whole batch (torch.nn.SyncBatchNorm's semantics:
count-weighted statistics, running variance unbiased over the GLOBAL count).

Tolerances: float64, 1e-12 relative to max(1, max|reference|) of each quantity (only the
summation order differs: per-device partial means combined by a collective); the Flax convention against flax.linen.BatchNorm with the
same ``axis_name``: bitwise (same collective, same formula).
"""
from __future__ import annotations

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxinit
import jaxinit.nnx
from flax import nnx
from parity_tests._figures import record_figure
from parity_tests.test_batchnorm import F64_TOL, make_data

NDEV = 8
STEPS = 5
C = 3

pytestmark = pytest.mark.skipif(len(jax.devices("cpu")) < NDEV, reason="needs the 8 fake CPU devices of conftest")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def mesh() -> Mesh:
    return Mesh(np.array(jax.devices("cpu")[:NDEV]), ("b",))


def sharded_steps(module, variables, xs, gs, masks=None):
    """STEPS training steps of a Linen module under shard_map over the batch axis.

    The loss ``sum(y * g)`` is taken OUTSIDE shard_map, so the gradients are those of the
    global batch. Returns per-step y, dx, dscale, dbias and the final batch_stats."""
    m = mesh()
    rep = NamedSharding(m, P())
    params = jax.device_put(variables["params"], rep)
    stats = jax.device_put(variables["batch_stats"], rep)

    def local(params, stats, x, mask):
        kw = {} if mask is None else {"mask": mask}
        return module.apply({"params": params, "batch_stats": stats}, x, use_running_average=False,
                            mutable=["batch_stats"], **kw)

    fwd = jax.shard_map(local, mesh=m, in_specs=(P(), P(), P("b"), None if masks is None else P("b")),
                        out_specs=(P("b"), P()))

    @jax.jit
    def step(params, stats, x, g, mask):
        def loss(x, params):
            y, upd = fwd(params, stats, x, mask)
            return jnp.sum(y * g), (y, upd["batch_stats"])

        (_, (y, new)), (dx, dp) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, params)
        return y, dx, dp, new

    out = []
    for i, (x, g) in enumerate(zip(xs, gs)):
        y, dx, dp, stats = step(params, stats, jnp.asarray(x), jnp.asarray(g),
                                None if masks is None else jnp.asarray(masks[i]))
        out.append((np.asarray(y), np.asarray(dx), np.asarray(dp["scale"]), np.asarray(dp["bias"])))
    return out, jax.tree.map(np.asarray, stats)


def torch_steps(xs, gs, weight, bias, valid=None):
    tb = torch.nn.BatchNorm2d(C, dtype=torch.float64)
    with torch.no_grad():
        tb.weight.copy_(torch.as_tensor(weight))
        tb.bias.copy_(torch.as_tensor(bias))
    out = []
    for i, (x, g) in enumerate(zip(xs, gs)):
        sel = slice(None) if valid is None else valid[i]
        xt = torch.tensor(x[sel], requires_grad=True)
        y = tb(xt)
        (y * torch.tensor(g[sel])).sum().backward()
        out.append((y.detach().numpy(), xt.grad.numpy(), tb.weight.grad.numpy().copy(), tb.bias.grad.numpy().copy()))
        tb.weight.grad = tb.bias.grad = None
    return out, {"mean": tb.running_mean.numpy(), "var": tb.running_var.numpy(),
                 "num_batches_tracked": tb.num_batches_tracked.numpy()}


def _rel(a, b) -> float:
    """max|a - b| / max(1, max|b|): the measure every tolerance here applies to."""
    return float(np.abs(a - b).max()) / max(1.0, float(np.abs(b).max()))


def _max_diff(a_steps, b_steps):
    return max(_rel(u, v) for a, b in zip(a_steps, b_steps) for u, v in zip(a, b))


def _stats_diff(a, b):
    assert int(a["num_batches_tracked"]) == int(b["num_batches_tracked"])
    return max(_rel(a[k], b[k]) for k in ("mean", "var"))


def _data(seed, batch=16, steps=STEPS):
    xs, gs, _, weight, bias = make_data(4, seed=seed, steps=steps, shape=(batch, C, 2, 3))
    return xs, gs, weight, bias


def test_axis_name_equals_one_device_and_torch():
    """8 devices x 2 examples == one device on 16 examples == torch on 16 examples."""
    xs, gs, weight, bias = _data(71)
    bn_sync = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64, axis_name="b")
    bn_one = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64)
    v = bn_one.init(jax.random.key(0), xs[0], use_running_average=False)
    v = {"params": {"scale": jnp.asarray(weight), "bias": jnp.asarray(bias)}, "batch_stats": v["batch_stats"]}
    sync, sync_stats = sharded_steps(bn_sync, v, xs, gs)
    ref, ref_stats = torch_steps(xs, gs, weight, bias)
    # one device, whole batch: the same loop without shard_map
    stats, one = v["batch_stats"], []
    for x, g in zip(xs, gs):
        def loss(x, params):
            y, upd = bn_one.apply({"params": params, "batch_stats": stats}, x, use_running_average=False,
                                  mutable=["batch_stats"])
            return jnp.sum(y * g), (y, upd["batch_stats"])
        (_, (y, stats)), (dx, dp) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(jnp.asarray(x), v["params"])
        one.append((np.asarray(y), np.asarray(dx), np.asarray(dp["scale"]), np.asarray(dp["bias"])))
    d_one = max(_max_diff(sync, one), _stats_diff(sync_stats, jax.tree.map(np.asarray, stats)))
    d_torch = max(_max_diff(sync, ref), _stats_diff(sync_stats, ref_stats))
    record_figure("bn 8 devices float64", "rel|d| vs 1 dev", d_one, "shard_map axis_name")
    record_figure("bn 8 devices float64", "rel|d| vs torch", d_torch, "shard_map axis_name")
    assert d_one <= F64_TOL and d_torch <= F64_TOL
    assert int(sync_stats["num_batches_tracked"]) == STEPS


def test_unequal_per_device_batches_with_mask():
    """Devices holding 1..4 valid examples (padding masked out): SyncBatchNorm's count weighting,
    equal to torch on the 20 valid examples; the running variance is unbiased over n = 20 * H * W."""
    per_dev = 4
    xs, gs, weight, bias = _data(72, batch=NDEV * per_dev)
    counts = [[1, 2, 3, 4, 4, 2, 1, 3], [4, 4, 4, 4, 1, 1, 1, 1], [2, 3, 2, 3, 2, 3, 2, 3]] + [[2] * NDEV] * 2
    masks, valid = [], []
    for cs in counts:
        m = np.zeros((NDEV * per_dev, 1, 1, 1), bool)
        for d, k in enumerate(cs):
            m[d * per_dev:d * per_dev + k] = True
        masks.append(m)
        valid.append(np.flatnonzero(m[:, 0, 0, 0]))
    gs = gs * np.asarray(masks)  # padding rows are outputs nobody uses: no loss on them
    bn = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64, axis_name="b")
    v = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64).init(jax.random.key(0), xs[0], use_running_average=False)
    v = {"params": {"scale": jnp.asarray(weight), "bias": jnp.asarray(bias)}, "batch_stats": v["batch_stats"]}
    sync, sync_stats = sharded_steps(bn, v, xs, gs, masks)
    ref, ref_stats = torch_steps(xs, gs, weight, bias, valid=valid)
    d = _stats_diff(sync_stats, ref_stats)
    for (y, dx, ds, db), (ry, rdx, rds, rdb), sel in zip(sync, ref, valid):
        d = max(d, _rel(y[sel], ry), _rel(dx[sel], rdx), _rel(ds, rds), _rel(db, rdb))
    record_figure("bn 8 devices float64", "rel|d| masked", d, "unequal batches vs torch")
    assert d <= F64_TOL


def test_flax_convention_with_axis_name_is_flax_bitwise():
    xs, gs, weight, bias = _data(73)
    xs = np.moveaxis(xs, 2, -1).astype(np.float32)
    gs = np.moveaxis(gs, 2, -1).astype(np.float32)
    v = fnn.BatchNorm().init(jax.random.key(0), xs[0], use_running_average=False)
    ours, ours_stats = sharded_steps(jaxinit.BatchNorm.from_convention("flax", axis_name="b"),
                                     {**v, "batch_stats": {**v["batch_stats"], "num_batches_tracked": jnp.int32(0)}},
                                     xs, gs)
    theirs, their_stats = sharded_steps(fnn.BatchNorm(axis_name="b"), v, xs, gs)
    assert _max_diff(ours, theirs) == 0.0
    assert all((ours_stats[k] == their_stats[k]).all() for k in ("mean", "var"))


def test_axis_index_groups_with_pmap():
    """Groups [[0..3], [4..7]] normalize each half of the batch on its own (pmap; shard_map
    has no axis_index_groups)."""
    xs, _, _, _ = _data(74, steps=1)
    x = xs[0]  # (16, C, 2, 3): devices 0-3 hold rows 0-7, devices 4-7 rows 8-15
    groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
    bn = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64, axis_name="b", axis_index_groups=groups)
    v = bn.init(jax.random.key(0), x[:2], use_running_average=False)

    def local(x):
        y, upd = bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])
        return y, upd["batch_stats"]

    y, stats = jax.pmap(local, axis_name="b", devices=jax.devices("cpu")[:NDEV])(jnp.asarray(x.reshape(NDEV, 2, *x.shape[1:])))
    y = np.asarray(y).reshape(x.shape)
    d = 0.0
    for half, devs in ((slice(0, 8), 0), (slice(8, 16), 4)):
        tb = torch.nn.BatchNorm2d(C, dtype=torch.float64)
        ty = tb(torch.tensor(x[half])).detach().numpy()
        d = max(d, _rel(y[half], ty), _rel(np.asarray(stats["var"][devs]), tb.running_var.numpy()),
                _rel(np.asarray(stats["mean"][devs]), tb.running_mean.numpy()))
    record_figure("bn 8 devices float64", "rel|d| groups", d, "pmap axis_index_groups vs torch per group")
    assert d <= F64_TOL


def test_one_example_per_device_is_fine_globally():
    """SyncBatchNorm counts the global batch: 8 devices x 1 example is 8 values per channel."""
    x = np.random.default_rng(75).normal(2.0, 3.0, (NDEV, C))
    bn = jaxinit.BatchNorm(param_dtype=jnp.float64, axis_name="b")
    v = jaxinit.BatchNorm(param_dtype=jnp.float64).init(jax.random.key(0), x, use_running_average=False)
    fwd = jax.jit(jax.shard_map(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"]),
                                mesh=mesh(), in_specs=(P(), P("b")), out_specs=(P("b"), P())))
    y, upd = fwd(v, jnp.asarray(x))
    tb = torch.nn.BatchNorm1d(C, dtype=torch.float64)
    ty = tb(torch.tensor(x)).detach().numpy()
    assert _rel(np.asarray(y), ty) <= F64_TOL
    assert _rel(np.asarray(upd["batch_stats"]["var"]), tb.running_var.numpy()) <= F64_TOL


def test_nnx_axis_name_equals_linen():
    xs, _, _, _ = _data(76, steps=2)
    bn = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64, axis_name="b")
    v = bn.init(jax.random.key(0), xs[0], use_running_average=False)
    mod = jaxinit.nnx.BatchNorm(C, axis=1, param_dtype=jnp.float64, axis_name="b")
    graphdef, state = nnx.split(mod)

    def nnx_local(state, x):
        m = nnx.merge(graphdef, state, copy=True)
        y = m(x)
        return y, nnx.state(m)

    nnx_fwd = jax.jit(jax.shard_map(nnx_local, mesh=mesh(), in_specs=(P(), P("b")), out_specs=(P("b"), P())))
    lin_fwd = jax.jit(jax.shard_map(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"]),
                                    mesh=mesh(), in_specs=(P(), P("b")), out_specs=(P("b"), P())))
    for x in xs:
        y_n, state = nnx_fwd(state, jnp.asarray(x))
        y_l, upd = lin_fwd(v, jnp.asarray(x))
        v = {**v, **upd}
        assert (np.asarray(y_n) == np.asarray(y_l)).all()
    pure = nnx.to_pure_dict(state)
    for k in ("mean", "var", "num_batches_tracked"):
        assert (np.asarray(pure[k]) == np.asarray(v["batch_stats"][k])).all()


def test_spmd_jit_without_axis_name_is_global():
    """Under jit with a batch-sharded input and no axis_name, XLA inserts the collectives: the
    statistics are the global ones (the same as one device)."""
    xs, _, _, _ = _data(77, steps=1)
    bn = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64)
    v = bn.init(jax.random.key(0), xs[0], use_running_average=False)
    f = jax.jit(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"]))
    xsh = jax.device_put(jnp.asarray(xs[0]), NamedSharding(mesh(), P("b")))
    y_s, u_s = f(v, xsh)
    y_1, u_1 = f(v, jnp.asarray(xs[0]))
    d = max(_rel(np.asarray(y_s), np.asarray(y_1)),
            _stats_diff(jax.tree.map(np.asarray, u_s["batch_stats"]), jax.tree.map(np.asarray, u_1["batch_stats"])))
    assert d <= F64_TOL
