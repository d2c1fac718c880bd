"""Data-parallel twins on real distributed engines: torch DDP (+ SyncBatchNorm through
``torchinit``) over gloo ranks in real processes, against ``jaxinit.parallel`` on a JAX device
mesh (``shard_map`` and ``jax.jit`` + ``NamedSharding``, one process, and 2 processes x 2
devices through ``jax.distributed``), and against one process on the concatenated batch.

The model, data and runners are in ``parity_tests/_ddp_twin.py``. Tolerance: float64, 1e-12
relative to ``max(1, max|reference|)`` per quantity (parameters, optimizer state, running
statistics, every step): the runs differ only in summation order (per-rank partial sums
combined by gloo or XLA collectives, count-weighted merges); measured 1e-15. A semantic slip is
far larger: the 4x ``pmean`` trap moves parameters by 0.3 in 5 steps, Flax's biased running
variance by 1/(n-1).

Real processes cost seconds to start (forked torch ranks; fresh interpreters for
``jax.distributed``): the default run has one sampled twin (2 ranks, unequal batches, AdamW);
the 4-rank matrix and the 2x2 ``jax.distributed`` run are marked ``multiprocess``
(``pytest -m multiprocess``; docs/suite.md).
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jaxinit
import jaxinit.parallel
import torchinit
import torchinit.parallel
from parity_tests import _ddp_twin as twin
from parity_tests._figures import record_figure

TOL = 1e-12
# float32, 10 steps: rounding only (XLA's and torch's kernels sum in other orders, ~1e-7 per op,
# grown by 10 optimizer steps); a semantic slip is >= 1e-2 (see above).
F32_TOL = 1e-4
pytestmark = pytest.mark.skipif(len(jax.devices("cpu")) < 4, reason="needs 4 CPU devices (conftest fakes 8)")


def mesh_of(n: int) -> Mesh:
    return Mesh(np.array(jax.devices("cpu")[:n]), ("data",))


def check(name: str, a, b, what: str, tol: float = TOL, family: str = "data parallel float64") -> None:
    d, where = twin.max_rel_diff(a, b)
    record_figure(family, what, d, name)
    assert d <= tol, (name, what, d, where)


def run_matrix(cases: list[dict], world_size: int, tmp_path, jit_path: bool) -> None:
    ddp = twin.run_torch_ranks(world_size, cases, str(tmp_path))
    mesh = mesh_of(world_size)
    for case in cases:
        name = case["name"]
        if case.get("layer"):  # SyncBatchNorm alone: per-rank y, dx, local dweight/dbias, running statistics
            check(name, twin.jax_layer(case, mesh), ddp[name], "SyncBN layer vs jaxinit axis_name")
            continue
        f32 = case.get("dtype") == "float32"
        kw = dict(tol=F32_TOL, family="data parallel float32") if f32 else {}
        check(name, twin.run_jax(case, mesh, "shard_map"), ddp[name], "shard_map vs DDP", **kw)
        if case["sync"]:  # plain BatchNorm under jit would be SyncBatchNorm: only the synced cases have a jit twin
            if jit_path:
                check(name, twin.run_jax(case, mesh, "jit"), ddp[name], "jit vs DDP", **kw)
            check(name, ddp[name], twin.torch_reference(case), "DDP vs one process", **kw)


# ---------------------------------------------------------------- the twins


def test_ddp_syncbn_twin_sampled(tmp_path):
    """2 gloo ranks of DDP + torchinit SyncBatchNorm, unequal per-rank batches (5 and 3), AdamW,
    3 steps: equal to jaxinit.parallel.value_and_grad under shard_map (masked SyncBatchNorm) and
    to one process on the concatenated batch; and the SyncBatchNorm layer alone (forward,
    backward, running statistics) on unequal per-rank batches (3 rows and 1 row)
    equal to jaxinit.BatchNorm(axis_name=...)."""
    run_matrix([dict(name="2 ranks unequal adamw", sync=True, sizes=(5, 3), opt="adamw", steps=3),
                dict(name="2 ranks unequal", layer=True, sizes=(3, 1))], 2, tmp_path, jit_path=False)


CASES_4 = [dict(name=f"{label} {opt}", sync=True, sizes=sizes, opt=opt, steps=10)
           for label, sizes in (("equal", (4, 4, 4, 4)), ("unequal", (5, 3, 4, 2)), ("empty rank", (5, 0, 4, 3)))
           for opt in twin.OPTIMIZERS]
CASES_4 += [dict(name=f"layer {label}", layer=True, sizes=sizes, momentum=mom)
            for label, sizes, mom in (("equal", (3, 3, 3, 3), 0.1), ("unequal", (4, 1, 2, 3), 0.1),
                                      ("empty rank", (4, 0, 2, 3), None))]
CASES_4.append(dict(name="plain BN broadcast_buffers sgd_momentum", sync=False, sizes=(4, 4, 4, 4),
                    opt="sgd_momentum", steps=10))
CASES_4 += [dict(name=f"float32 unequal {opt}", sync=True, sizes=(5, 3, 4, 2), opt=opt, steps=10, dtype="float32")
            for opt in twin.OPTIMIZERS]
CASES_4.append(dict(name="no_sync accumulation of 3, unequal adamw", sync=True, sizes=(5, 3, 4, 2), opt="adamw",
                    steps=5, accum=3))


@pytest.mark.multiprocess
def test_ddp_twins_4_ranks(tmp_path):
    """4 gloo ranks, 10 steps of SGD with momentum and of AdamW: equal, unequal and one empty
    per-rank batch with SyncBatchNorm (shard_map and jit twins, one-process reference), plain
    BatchNorm with DDP's broadcast_buffers (rank 0's running statistics), and gradient
    accumulation over 3 micro-batches (DDP's no_sync)."""
    run_matrix(CASES_4, 4, tmp_path, jit_path=True)


@pytest.mark.multiprocess
def test_jax_distributed_2x2_equals_4_devices(tmp_path):
    """2 processes x 2 CPU devices (jax.distributed, gloo CPU collectives) vs the 4-device single
    process run: measured 5e-16 (gloo adds the cross-process partial sums in its own order)."""
    case = dict(name="unequal adamw", sync=True, sizes=(4, 3, 4, 2), opt="adamw", steps=10)
    multi = twin.run_jax_processes(2, 2, case, str(tmp_path / "out.npz"))
    for path, records in multi.items():  # shard_map + value_and_grad, jit + NamedSharding + rank_mean
        check(case["name"], records, twin.run_jax(case, mesh_of(4), path), f"jax.distributed 2x2 vs 4 devices, {path}")


# ---------------------------------------------------------------- the shard_map trap


def _trap_programs(n: int):
    """DDP's gradient of a linear-tanh model with SyncBatchNorm-like coupling (a pmean'd batch
    mean), four ways on an n-device mesh."""
    mesh = mesh_of(n)

    def local(w, x):
        h = jnp.tanh(x @ w)
        mu = lax.pmean(h.mean(0), "data")  # a cross-rank statistic, as SyncBatchNorm's
        return jnp.mean((h - mu) ** 2)

    def naive(w, x):  # the natural port: grad inside the map, then DDP's average
        return lax.pmean(jax.grad(local)(w, x), "data")

    def helper(w, x):
        return jaxinit.parallel.value_and_grad(local, "data")(w, x)[1]

    def helper_twice(w, x):  # a second pmean on top changes nothing
        return lax.pmean(helper(w, x), "data")

    def smap(f, check_vma):
        return jax.shard_map(f, mesh=mesh, in_specs=(P(), P("data")), out_specs=P(), check_vma=check_vma)

    ways = {"naive": smap(naive, True), "naive, check_vma=False": smap(naive, False),
            "helper": smap(helper, True), "helper, check_vma=False": smap(helper, False),
            "helper + pmean": smap(helper_twice, True)}
    return jax.jit(lambda w, x: {k: f(w, x) for k, f in ways.items()})  # one program: one compilation


def test_value_and_grad_closes_the_pmean_trap():
    n = 4
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(3, 2)), rng.normal(size=(8, 3))

    def global_loss(w):  # one process: the mean over ranks of each rank's loss, the statistic over all ranks
        hs = [jnp.tanh(x[r * 2:(r + 1) * 2] @ w) for r in range(n)]
        mu = jnp.mean(jnp.stack([h.mean(0) for h in hs]), 0)
        return jnp.mean(jnp.stack([jnp.mean((h - mu) ** 2) for h in hs]))

    ref = np.asarray(jax.grad(global_loss)(w))
    got = {k: np.asarray(v) for k, v in _trap_programs(n)(w, x).items()}
    ratio = np.median(got["naive"] / ref)
    record_figure("data parallel float64", "naive shard_map grad / DDP", float(ratio), "check_vma=True, 4 devices")
    np.testing.assert_allclose(got["naive"], n * ref, rtol=1e-12)  # the trap, as it happens: n times DDP's
    for k in ("helper", "helper, check_vma=False", "helper + pmean", "naive, check_vma=False"):
        np.testing.assert_allclose(got[k], ref, rtol=1e-12, atol=1e-15, err_msg=k)


# ---------------------------------------------------------------- DistributedSampler and the layout


@pytest.mark.parametrize("n,world,drop_last", [(10, 4, False), (10, 4, True), (12, 3, False), (3, 4, False),
                                               (7, 2, True)])
def test_sampler_indices_are_distributed_sampler(n, world, drop_last):
    order = np.random.default_rng(n).permutation(n)
    for rank in range(world):
        sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False,
                                                      drop_last=drop_last)
        expect = order[list(sampler)]
        got_j = jaxinit.parallel.sampler_indices(n, world, rank, order=order, drop_last=drop_last)
        got_t = torchinit.parallel.sampler_indices(n, world, rank, order=order, drop_last=drop_last)
        np.testing.assert_array_equal(got_j, expect)
        np.testing.assert_array_equal(got_t, expect)


def test_global_batches_put_each_rank_batch_on_its_device():
    order = np.random.default_rng(0).permutation(50)
    g = jaxinit.parallel.global_batches(order, 4, 3)  # 50 -> 48 (drop_last), 12 per rank, 4 steps
    assert g.shape == (4, 12)
    for rank in range(4):
        loader = torch.utils.data.DataLoader(
            torch.from_numpy(order), batch_size=3, drop_last=True,
            sampler=torch.utils.data.DistributedSampler(range(50), 4, rank, shuffle=False, drop_last=True))
        for s, batch in enumerate(loader):
            np.testing.assert_array_equal(g[s, rank * 3:(rank + 1) * 3], batch.numpy())
    # the union of a step's rank batches is the single-process global batch of 12
    np.testing.assert_array_equal(np.sort(g[1]), np.sort(order[12:24]))


def test_rank_mean_twins():
    rng = np.random.default_rng(0)
    v, m = rng.normal(size=(8, 2)), np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)
    expect = np.mean([v[0:2].mean(), 0.0, v[4:5].mean(), 0.0])  # an empty rank contributes 0
    assert float(jaxinit.parallel.rank_mean(jnp.asarray(v), 4, jnp.asarray(m))) == pytest.approx(expect, rel=1e-15)
    assert float(torchinit.parallel.rank_mean(torch.from_numpy(v), 4, torch.from_numpy(m))) == pytest.approx(
        expect, rel=1e-15)
    assert float(jaxinit.parallel.rank_mean(jnp.asarray(v), 4)) == pytest.approx(v.mean(), rel=1e-15)


def test_mirror_names():
    jax_only = set(torchinit.parallel.JAX_ONLY)
    assert set(jaxinit.parallel.__all__) == set(torchinit.parallel.__all__) - {"ddp"} | jax_only
    assert jaxinit.parallel.sampler_indices is torchinit.parallel.sampler_indices  # one shared core


# ---------------------------------------------------------------- misuse


def test_errors():
    with pytest.raises(jaxinit.InitError, match="batch.*=10 does not split into 4 .*multiple of 4"):
        jaxinit.parallel.shard_batch(mesh_of(4), "data", np.zeros((10, 2)))
    with pytest.raises(jaxinit.InitError, match="values.shape\\[0\\]`=6 does not split into 4"):
        torchinit.parallel.rank_mean(torch.zeros(6), 4)
    with pytest.raises(jaxinit.InitError, match="has 4 devices but world_size=2"):
        f = jaxinit.parallel.value_and_grad(lambda w, x: jnp.sum(x @ w), "data", world_size=2)
        jax.shard_map(f, mesh=mesh_of(4), in_specs=(P(), P("data")), out_specs=P())(jnp.ones(2), jnp.ones((4, 2)))
    with pytest.raises(jaxinit.InitError, match="no mapped axis of that name.*shard_map"):
        jaxinit.parallel.value_and_grad(lambda w: jnp.sum(w), "data")(jnp.ones(2))
    with pytest.raises(jaxinit.InitError, match="per_rank_batch=8; use a smaller batch or fewer ranks"):
        jaxinit.parallel.global_batches(np.arange(10), 4, 8)
    with pytest.raises(jaxinit.InitError, match="`rank` must be an int in \\[0, 3\\]"):
        jaxinit.parallel.sampler_indices(10, 4, 4)
    # torch: a process group that is not there, conventions SyncBatchNorm does not have
    bn = torchinit.BatchNorm(3, process_group="world")
    with pytest.raises(torchinit.InitError, match="torch.distributed is not initialized.*init_process_group"):
        bn(torch.randn(4, 3))
    bn.eval()
    bn(torch.randn(4, 3))  # evaluation never synchronizes (as torch.nn.SyncBatchNorm)
    with pytest.raises(torchinit.InitError, match="process_group.*PyTorch's convention.*axis_name"):
        torchinit.BatchNorm.from_convention("flax", 3, process_group="world")
    with pytest.raises(torchinit.InitError, match="`process_group` must be None.*'world'"):
        torchinit.BatchNorm(3, process_group="all")
    with pytest.raises(torchinit.InitError, match="convert_sync_batchnorm.*PyTorch's convention only"):
        torchinit.BatchNorm.convert_sync_batchnorm(torch.nn.Sequential(torchinit.BatchNorm.from_convention("flax", 3)))
    with pytest.raises(torchinit.InitError, match="parallel.ddp: torch.distributed is not initialized"):
        torchinit.parallel.ddp(torch.nn.Linear(2, 2))


def test_convert_sync_batchnorm_shares_parameters_and_buffers():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3),
                                torch.nn.Sequential(torch.nn.BatchNorm1d(4, momentum=None, affine=False)))
    bn = model[1]
    out = torchinit.BatchNorm.convert_sync_batchnorm(model)
    assert isinstance(out[1], torchinit.BatchNorm) and out[1].process_group == "world"
    assert out[1].weight is bn.weight and out[1].running_var is bn.running_var
    inner = out[2][0]
    assert isinstance(inner, torchinit.BatchNorm) and inner.momentum is None and inner.weight is None
    assert "process_group='world'" in repr(out[1])
    # one process (no torch.distributed), evaluation: the same numbers as the layer it replaced
    out.eval()
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(out[1](x), torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var,
                                                                         bn.weight, bn.bias, False))


