"""Optimizer state at scale (jaxinit.optim.load_optimizer_state / save_optimizer_state and the
torchinit mirror; docs/training_state.md, "Optimizer state at scale"): torch optimizer state in
torch.distributed.checkpoint (DCP) directories, written by torch's own ``dcp.save`` of
``optimizer.state_dict()`` or ``get_optimizer_state_dict``, and in Hugging Face-style sharded
safetensors, read one tensor at a time into optax state created directly in a NamedSharding over
4 devices, bitwise ``import_state``'s; saved with Orbax and back; written back to DCP / sharded
safetensors and loaded by torch bitwise. The training-state acceptance through DCP: a torch run of
10 AdamW steps with its scheduler saved with DCP, resumed in JAX for 10 steps == 20 torch steps
within 1e-12 (float64; the tolerance of test_training_state.py), and the reverse.
"""
from __future__ import annotations

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

import jaxinit.optim as jo
import torchinit.optim as to
from _jaxinit import InitError
from parity_tests._figures import record_figure
from parity_tests.test_training_state import GRADS, STEPS, TOL, _rel_err, _torch_run, _torch_steps

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


_JITTED: dict = {}


def _jax_steps(tx, params, st, start, stop):
    """test_training_state's steps as one jitted program per ``tx`` (compiled once)."""
    import optax

    if id(tx) not in _JITTED:
        def step(params, st, grads):
            u, st = tx.update(grads, st, params)
            return optax.apply_updates(params, u), st

        _JITTED.clear()
        _JITTED[id(tx)] = jax.jit(step)
    step = _JITTED[id(tx)]
    for t in range(start, stop):
        params, st = step(params, st, {n: jnp.asarray(GRADS[n][t]) for n in params})
    return params, st


def _mesh_sharding(shape):
    """Four of the suite's devices; each buffer split along its first axis that 4 divides."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("d",))
    spec = [None] * len(shape)
    for a, n in enumerate(shape):
        if n % 4 == 0:
            spec[a] = "d"
            break
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def _same_tree(a, b) -> bool:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(np.asarray(x).dtype == np.asarray(y).dtype and
                            np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


@pytest.mark.parametrize("form", ["a training loop's dcp.save",
                                  pytest.param("save_training_state(format='dcp')", marks=pytest.mark.exhaustive)])
def test_torch_dcp_run_resumes_in_jax_sharded(tmp_path, form):
    """10 torch steps saved with DCP; JAX reads the files, builds the optimizer state in a
    NamedSharding over 4 devices one tensor at a time, and 10 JAX steps equal 20 torch steps."""
    path = tmp_path / "dcp"
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    if form == "a training loop's dcp.save":
        m, o, s = _torch_run(named_groups=True, step_lr=True)
        _torch_steps(m, o, s, 0, 10)
        msd, osd = get_state_dict(m, o)  # torch's recipe: the optimizer state keyed by parameter names
        dcp.save({"model": msd, "optimizer": osd, "scheduler": s.state_dict(), "scaler": scaler.state_dict(),
                  "step": 10}, checkpoint_id=str(path))
        ts = jo.load_training_state(path, optimizer_class="AdamW", scheduler_class="StepLR")
        ref = _torch_run(named_groups=True, step_lr=True)
    else:
        m, o, s = _torch_run(named_groups=False)  # SequentialLR; plain groups named by identity
        _torch_steps(m, o, s, 0, 10)
        to.save_training_state(path, model=m, optimizer=o, scheduler=s, grad_scaler=scaler, rng=True,
                               counters={"epoch": 2}, format="dcp")
        assert (path / ".metadata").exists() and (path / "training_state.json").exists()
        ts = jo.load_training_state(path)
        assert ts.counters == {"epoch": 2}
        np.testing.assert_array_equal(ts.rng["torch"], torch.get_rng_state().numpy())
        ref = _torch_run(named_groups=False)
    assert ts.step == 10
    assert ts.grad_scaler == {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 7,
                              "_growth_tracker": 0}
    tx = jo.from_torch(ts.optimizer, ts.scheduler)
    params = {n: jax.device_put(v, _mesh_sharding(v.shape)) for n, v in ts.model.items()}
    abstract = {n: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding) for n, v in params.items()}
    st = jo.load_optimizer_state(path, abstract, tx)
    assert _same_tree(st, jo.import_state(ts.optimizer, {n: np.asarray(v) for n, v in params.items()}, tx))
    sharded = [x for x in jax.tree.leaves(st) if x.ndim and x.shape[0] % 4 == 0]
    assert len(sharded) == 8 and all(x.sharding == _mesh_sharding(x.shape) for x in sharded)  # exp_avg(_sq) x 4
    params, _ = _jax_steps(tx, params, st, 10, STEPS)
    _torch_steps(*ref, 0, STEPS)
    err = _rel_err(params, ref[0])
    record_figure("training_state", "torch->DCP->jax (sharded)", err, form)
    assert err <= TOL, err


def test_jax_run_resumes_in_torch_through_dcp(tmp_path):
    """10 JAX steps saved as DCP; torchinit loads model, optimizer and the replayed scheduler; 10 torch
    steps == 20 JAX steps. A chain that carries torch's optimizer record (torch -> DCP -> JAX -> DCP)
    is loaded by torch's own DCP API (get_state_dict, dcp.load, set_state_dict) too, bitwise."""
    m0, o0, s0 = _torch_run()
    tx = jo.from_torch(o0, s0)
    p0 = {n: jnp.asarray(p.detach().numpy()) for n, p in m0.named_parameters()}
    half, st = _jax_steps(tx, p0, tx.init(p0), 0, 10)
    full, _ = _jax_steps(tx, half, st, 10, STEPS)  # the same 20 steps, uninterrupted
    jo.save_training_state(tmp_path / "dcp", params=half, opt_state=st, format="dcp")
    m, o, s = _torch_run()
    ts = to.load_training_state(tmp_path / "dcp", model=m, optimizer=o, scheduler=s)
    assert ts.step == 10 and s.last_epoch == 10
    _torch_steps(m, o, s, 10, STEPS)
    err = _rel_err(full, m)
    record_figure("training_state", "jax->DCP->torch", err, "adamw+sequential")
    assert err <= TOL, err
    # torch -> DCP -> JAX (sharded optax state) -> DCP with torch's class and groups carried -> torch's
    # own DCP loader, bitwise torchinit's
    m1, o1, s1 = _torch_run()
    _torch_steps(m1, o1, s1, 0, 5)
    to.save_training_state(tmp_path / "a", model=m1, optimizer=o1, scheduler=s1, format="dcp")
    ts1 = jo.load_training_state(tmp_path / "a")
    tx1 = jo.from_torch(ts1.optimizer, ts1.scheduler)
    p1 = {n: jnp.asarray(v) for n, v in ts1.model.items()}
    st1 = jo.load_optimizer_state(tmp_path / "a", p1, tx1)
    jo.save_training_state(tmp_path / "b", params=p1, opt_state=st1, optimizer=ts1.optimizer, format="dcp")
    m2, o2, _ = _torch_run()
    _torch_steps(m2, o2, None, 0, 1)  # torch's DCP loader needs the state to exist (get_state_dict's rule)
    msd, osd = get_state_dict(m2, o2)
    dcp.load({"model": msd, "optimizer": osd}, checkpoint_id=str(tmp_path / "b"))
    set_state_dict(m2, o2, model_state_dict=msd, optim_state_dict=osd)
    m3, o3, s3 = _torch_run()
    to.load_training_state(tmp_path / "b", model=m3, optimizer=o3, scheduler=s3)
    for p1_, p2, p3 in zip(m1.parameters(), m2.parameters(), m3.parameters()):
        assert torch.equal(p2, p3) and torch.equal(p1_, p3)
        assert torch.equal(o1.state[p1_]["exp_avg"], o3.state[p3]["exp_avg"])
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(o2.state[p2][k].to(o3.state[p3][k].dtype), o3.state[p3][k]), k


def test_sharded_safetensors_orbax_and_back(tmp_path):
    """torch AdamW (amsgrad in one group: max_exp_avg_sq there only) -> sharded optimizer
    safetensors -> optax state on 4 devices (bitwise import_state's) -> Orbax -> optax again ->
    sharded safetensors and DCP -> torch: every state tensor bitwise the original."""
    from orbax.checkpoint import v1

    torch.manual_seed(1)
    m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    named = dict(m.named_parameters())
    o = torch.optim.Adam([{"params": [named["0.weight"], named["2.weight"]], "amsgrad": True},
                          {"params": [named["0.bias"], named["2.bias"]]}], lr=0.01)
    for _ in range(3):
        m(torch.randn(5, 8, dtype=torch.float64)).pow(2).sum().backward()
        o.step()
        o.zero_grad()
    to.save_optimizer_state(tmp_path / "st", o, param_names=m, max_shard_size=1500)
    index = json.loads((tmp_path / "st" / "optimizer.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    tx = jo.from_torch(o, param_names=m)
    params = {n: p.detach().numpy() for n, p in m.named_parameters()}
    abstract = {n: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=_mesh_sharding(v.shape)) for n, v in params.items()}
    st = jo.load_optimizer_state(tmp_path / "st", abstract, tx)
    assert _same_tree(st, jo.import_state(o, params, tx, param_names=m))
    kernel_state = next(x for x in jax.tree.leaves(st) if x.shape == (16, 8))  # exp_avg of 0.weight
    assert kernel_state.sharding == _mesh_sharding((16, 8)) and kernel_state.addressable_shards[0].data.shape == (4, 8)
    # Orbax (Flax's checkpointing) and back into the same shardings
    v1.save(tmp_path / "orbax", st)
    abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), st)
    back = v1.load(tmp_path / "orbax", abstract_state)
    assert _same_tree(st, back) and next(x for x in jax.tree.leaves(back) if x.shape == (16, 8)).sharding == \
        kernel_state.sharding
    # optax -> torch files, one buffer at a time; torch loads them bitwise
    for fmt in ("safetensors", "dcp"):
        jo.save_optimizer_state(tmp_path / fmt, back, params, format=fmt, max_shard_size=1500)
        fresh = torch.optim.Adam([{"params": [named["0.weight"], named["2.weight"]], "amsgrad": True},
                                  {"params": [named["0.bias"], named["2.bias"]]}], lr=0.01)
        to.load_optimizer_state(tmp_path / fmt, fresh, param_names=m)
        for p in m.parameters():
            for k, v in o.state[p].items():
                assert torch.equal(fresh.state[p][k].to(v.dtype), v), (fmt, k)


def test_errors_are_named(tmp_path):
    m, o, s = _torch_run(named_groups=True)
    _torch_steps(m, o, s, 0, 2)
    tx = jo.from_torch(o)
    params = {n: p.detach().numpy() for n, p in m.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": m.state_dict(), "opt_a": o.state_dict(), "opt_b": o.state_dict()},
                 checkpoint_id=str(tmp_path / "two"))
        dcp.save({"model": m.state_dict()}, checkpoint_id=str(tmp_path / "none"))
    with pytest.raises(InitError, match=r"several optimizer states \['opt_a', 'opt_b'\]; pass which one"):
        jo.load_optimizer_state(tmp_path / "two", params, tx)
    st = jo.load_optimizer_state(tmp_path / "two", params, tx, optimizer_key="opt_b")
    assert _same_tree(st, jo.import_state(o, params, tx))
    with pytest.raises(InitError, match="no optimizer state dict"):
        jo.load_optimizer_state(tmp_path / "none", params, tx)
    with pytest.raises(InitError, match=r"'0.weight' shape \(4, 5\) != torch parameter 0.weight shape \(4, 4\)"):
        jo.load_optimizer_state(tmp_path / "two", {**params, "0.weight": np.zeros((4, 5))}, tx, optimizer_key="opt_a")
    with pytest.raises(InitError, match="format must be 'safetensors' or 'dcp'"):
        jo.save_optimizer_state(tmp_path / "x", st, params, format="orbax")
    with pytest.raises(FileExistsError, match="exists"):
        to.save_optimizer_state(tmp_path / "two", o)
    with pytest.raises(InitError, match="format must be None"):
        to.save_training_state(tmp_path / "y", model=m, format="zip")


def test_before_the_first_step_buffers_are_tx_init_in_their_shardings(tmp_path):
    """A state saved before any step holds no buffers: they are tx.init's, each in its parameter's sharding."""
    m, o, _ = _torch_run(named_groups=True)
    to.save_optimizer_state(tmp_path / "opt", o, format="dcp")
    tx = jo.from_torch(o)
    params = {n: jax.device_put(p.detach().numpy(), _mesh_sharding(tuple(p.shape))) for n, p in m.named_parameters()}
    st = jo.load_optimizer_state(tmp_path / "opt", params, tx)
    assert _same_tree(st, tx.init(params))
    assert all(x.sharding == _mesh_sharding(x.shape) for x in jax.tree.leaves(st) if x.ndim)


def test_cli_converts_optimizer_state_between_dcp_and_sharded_safetensors(tmp_path, capsys):
    """``python -m jaxinit.convert SRC DST --to torch --optimizer``: torch's DCP (get_optimizer_state_dict
    form) -> sharded optimizer safetensors -> DCP again, one tensor at a time; torch loads the result bitwise."""
    from _jaxinit.jax_and_torch.convert_cli import main

    m, o, s = _torch_run(named_groups=True)
    _torch_steps(m, o, s, 0, 3)
    msd, osd = get_state_dict(m, o)
    dcp.save({"model": msd, "optimizer": osd}, checkpoint_id=str(tmp_path / "dcp"))
    assert main([str(tmp_path / "dcp"), str(tmp_path / "st"), "--to", "torch", "--optimizer",
                 "--max-shard-size", "300", "--no-progress"]) == 0
    assert (tmp_path / "st" / "optimizer.safetensors.index.json").exists()
    assert "kept 12, rebuilt 0, dropped 0" in capsys.readouterr().out  # 4 parameters x (step, exp_avg, exp_avg_sq)
    assert main([str(tmp_path / "st"), str(tmp_path / "dcp2"), "--to", "torch", "--optimizer", "--no-progress"]) == 0
    m2, o2, _ = _torch_run(named_groups=True)
    to.load_optimizer_state(tmp_path / "dcp2", o2)
    for p, p2 in zip(m.parameters(), m2.parameters()):
        assert all(torch.equal(o.state[p][k], o2.state[p2][k].to(o.state[p][k].dtype)) for k in o.state[p])
    assert main([str(tmp_path / "dcp"), str(tmp_path / "x"), "--to", "flax", "--optimizer"]) == 2
    assert "stay in torch's layout: pass --to torch" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.bigcheckpoint
def test_big_optimizer_state_peak_memory(tmp_path):
    """An Adam state of one 8192 x 8192 float32 weight (512 MiB, sharded optimizer safetensors) into a
    NamedSharding over 4 devices and back, each in a fresh process: the load peaks within the state
    itself (2x the largest tensor) plus 0.75x; the save (shard by shard) within 0.5x. Measured 2.50x
    and 0.00x (benchmarks/bench_optimizer_state.py)."""
    from benchmarks.bench_optimizer_state import generate, measure

    n = 8192
    src = str(tmp_path / "opt")
    generate(src, n)
    load = measure("load", src, "", n)
    save = measure("save", src, str(tmp_path / "back"), n)
    print(json.dumps([load, save]))
    assert load["peak_above_baseline"] <= 2.75 * load["largest"], load
    assert save["peak_above_baseline"] <= 0.5 * save["largest"], save
