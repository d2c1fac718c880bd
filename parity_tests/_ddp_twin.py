"""The data-parallel twins of test_data_parallel.py: one small conv net with BatchNorm, trained
by torch DDP over gloo ranks (real processes) and by JAX on a device mesh, from the same
float64 weights and the same per-rank batches.

Torch: ``torchinit.parallel.ddp`` (``torchinit.BatchNorm.convert_sync_batchnorm`` + DDP) or
DDP with plain BatchNorm and ``broadcast_buffers=True``. JAX: ``jaxinit.parallel.value_and_grad``
inside ``jax.shard_map`` (``jaxinit.BatchNorm(axis_name=...)``, ``mask`` for unequal and empty
per-rank batches, ``jaxinit.parallel.broadcast_buffers`` for plain BatchNorm), or ``jax.jit``
over a batch-sharded global batch with ``jaxinit.parallel.rank_mean``.

Each rank's objective: ``sum(cross_entropy) / max(n_r, 1)`` (its mean; 0 on an empty rank,
whose ``loss.mean()`` would be NaN), so DDP's gradient is that of
``(1/N) * sum_r sum_{i in r} l_i / max(n_r, 1)``: the single-process reference on the
concatenated batch with per-example weights (:func:`torch_reference`).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import time
import warnings
from typing import Any

import numpy as np

# Input channels, BatchNorm channels, image side, classes. The convolution has no bias (as usual
# before BatchNorm): its gradient would be rounding noise around 0, which AdamW's normalized step
# turns into O(lr) differences between any two summation orders.
C_IN, C, HW, K = 1, 3, 6, 3
OUT = HW - 2  # 3x3 valid convolution
NAMES = ("conv.weight", "bn.weight", "bn.bias", "fc.weight", "fc.bias")
BUFFERS = ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked")
OPTIMIZERS = {"sgd_momentum": dict(lr=0.1, momentum=0.9), "adamw": dict(lr=0.05, weight_decay=0.1)}


def init_params(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv.weight": rng.normal(0, 0.5, (C, C_IN, 3, 3)),
            "bn.weight": 1 + rng.normal(0, 0.1, C), "bn.bias": rng.normal(0, 0.1, C),
            "fc.weight": rng.normal(0, 0.3, (K, C * OUT * OUT)), "fc.bias": rng.normal(0, 0.1, K)}


def batches(sizes: tuple[int, ...], steps: int, seed: int = 1) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """``[step][rank] -> (x (n_r, 1, HW, HW) float64, y (n_r,) int64)``; input mean 2 (BatchNorm's
    statistics matter)."""
    rng = np.random.default_rng(seed)
    return [[(2.0 + rng.normal(0, 1, (n, C_IN, HW, HW)), rng.integers(0, K, n)) for n in sizes] for _ in range(steps)]


def steps_of(case: dict) -> list[list]:
    """The case's optimizer steps, each a list of ``case.get('accum', 1)`` micro-batches
    (``[rank] -> (x, y)``; gradient accumulation, DDP's ``no_sync``)."""
    k = case.get("accum", 1)
    flat = batches(tuple(case["sizes"]), case["steps"] * k)
    return [flat[i * k:(i + 1) * k] for i in range(case["steps"])]


# ---------------------------------------------------------------- torch


def torch_net(params: dict, dtype: str = "float64"):
    import torch

    import torchinit

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            dt = getattr(torch, dtype)
            self.conv = torch.nn.Conv2d(C_IN, C, 3, bias=False, dtype=dt)
            self.bn = torchinit.BatchNorm(C, dtype=dt)
            self.fc = torch.nn.Linear(C * OUT * OUT, K, dtype=dt)

        def forward(self, x):
            return self.fc(torch.tanh(self.bn(self.conv(x))).flatten(1))

    net = Net()
    net.load_state_dict({k: torch.from_numpy(v.astype(dtype)) for k, v in params.items()}, strict=False)
    return net


def torch_optimizer(name: str, parameters):
    import torch

    return (torch.optim.SGD if name == "sgd_momentum" else torch.optim.AdamW)(parameters, **OPTIMIZERS[name])


def torch_record(model, opt) -> dict[str, np.ndarray]:
    out = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    for name, p in zip(NAMES, [p for g in opt.param_groups for p in g["params"]]):
        for key, v in opt.state[p].items():
            if key != "step":
                out[f"opt.{name}.{key}"] = v.detach().numpy().copy()
    return out


def torch_rank(rank: int, world_size: int, port: int, cases: list[dict], outdir: str) -> None:
    """One DDP rank over gloo: every case of ``cases``, rank 0 writes ``{case}.npz`` (per step)."""
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    import torchinit.parallel

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # A bounded wait: a rank that never arrives fails the test instead of hanging the suite.
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=120))
    try:
        for case in cases:
            if case.get("layer"):
                torch_layer_rank(rank, case, outdir)
                continue
            model = torch_net(init_params(), case.get("dtype", "float64"))
            if case["sync"]:
                ddp = torchinit.parallel.ddp(model)  # broadcast_buffers=True: the default
            else:
                ddp = torch.nn.parallel.DistributedDataParallel(model)
            opt = torch_optimizer(case["opt"], ddp.parameters())
            records = []
            for micro in steps_of(case):
                opt.zero_grad(set_to_none=True)
                for k, step in enumerate(micro):  # gradient accumulation: no all-reduce before the last
                    x, y = torch.from_numpy(step[rank][0].astype(case.get("dtype", "float64"))), \
                        torch.from_numpy(step[rank][1])
                    with ddp.no_sync() if k < len(micro) - 1 else contextlib.nullcontext():
                        loss = F.cross_entropy(ddp(x), y, reduction="sum") / max(len(y), 1)
                        loss.backward()
                opt.step()
                records.append(torch_record(ddp.module, opt))
            if rank == 0:
                np.savez(os.path.join(outdir, case["name"] + ".npz"),
                         **{f"{i}/{k}": v for i, r in enumerate(records) for k, v in r.items()})
    finally:
        dist.destroy_process_group()


def layer_data(sizes: tuple[int, ...], seed: int = 2):
    """``[rank] -> (x (n_r, C, 3, 3), g (n_r, C, 3, 3))``: SyncBatchNorm input (mean 3) and the
    cotangent of its output, float64."""
    rng = np.random.default_rng(seed)
    return [(3.0 + rng.normal(0, 2, (n, C, 3, 3)), rng.normal(0, 1, (n, C, 3, 3))) for n in sizes]


def torch_layer_rank(rank: int, case: dict, outdir: str) -> None:
    """One training forward/backward of ``torchinit.BatchNorm(process_group='world')`` on this
    rank's rows, loss ``sum(y * g)``: writes y, dx, the LOCAL dweight/dbias (DDP averages them
    later) and the running statistics to ``{case}.rank{r}.npz``."""
    import torch

    import torchinit

    x_np, g_np = layer_data(tuple(case["sizes"]))[rank]
    bn = torchinit.BatchNorm(C, momentum=case.get("momentum", 0.1), dtype=torch.float64, process_group="world")
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -2.0], dtype=torch.float64))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    x = torch.from_numpy(x_np).requires_grad_(True)
    y = bn(x)
    (y * torch.from_numpy(g_np)).sum().backward()
    zero = np.zeros(C)  # an empty rank: torch leaves the gradients None (zeros to autograd)
    grads = [zero if p.grad is None else p.grad.numpy() for p in (bn.weight, bn.bias)]
    dx = np.zeros_like(x_np) if x.grad is None else x.grad.numpy()
    np.savez(os.path.join(outdir, f"{case['name']}.rank{rank}.npz"), y=y.detach().numpy(), dx=dx,
             dweight=grads[0], dbias=grads[1], running_mean=bn.running_mean.numpy(),
             running_var=bn.running_var.numpy(), num_batches_tracked=bn.num_batches_tracked.numpy())


def jax_layer(case: dict, mesh) -> list[dict]:
    """The same layer step as :func:`torch_layer_rank` with ``jaxinit.BatchNorm(axis=1,
    axis_name='data')`` under ``shard_map`` (rows padded to the largest rank, ``mask``); the
    gradient of the global ``sum(y * g)`` with respect to per-rank copies of scale and bias
    (``lax.pcast``): each rank's local dweight/dbias, as torch's. Returns one dict per rank."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.sharding import PartitionSpec as P

    import jaxinit

    sizes = tuple(case["sizes"])
    bmax = max(sizes)
    data = layer_data(sizes)
    pad = lambda a: np.concatenate([a, np.zeros((bmax - len(a), *a.shape[1:]))])  # noqa: E731
    x = np.concatenate([pad(a) for a, _ in data])
    g = np.concatenate([pad(b) for _, b in data])
    m = np.concatenate([np.arange(bmax) < n for n in sizes])
    bn = jaxinit.BatchNorm(axis=1, momentum=case.get("momentum", 0.1), param_dtype=jnp.float64, axis_name="data")
    params = {"scale": jnp.array([0.5, 1.5, -2.0]), "bias": jnp.array([0.1, -0.2, 0.3])}
    stats = {"mean": jnp.zeros(C, jnp.float64), "var": jnp.ones(C, jnp.float64),
             "num_batches_tracked": jnp.zeros((), jnp.int32)}

    def local(params, stats, x, g, m):
        def loss(p, x):
            y, upd = bn.apply({"params": p, "batch_stats": stats}, x, use_running_average=False,
                              mutable=["batch_stats"], mask=m.reshape(-1, 1, 1, 1))
            return jnp.sum(jnp.where(m.reshape(-1, 1, 1, 1), y * g, 0.0)), (y, upd["batch_stats"])

        p_local = jax.tree.map(lambda a: lax.pcast(a, "data", to="varying"), params)
        (_, (y, new)), (dp, dx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(p_local, x)
        return y, dx, dp["scale"][None], dp["bias"][None], new

    f = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P("data"), P("data"), P("data")),
                              out_specs=(P("data"), P("data"), P("data"), P("data"), P())))
    y, dx, dw, db, new = jax.device_get(f(params, stats, x, g, m))
    return [{"y": y[r * bmax:r * bmax + n], "dx": dx[r * bmax:r * bmax + n], "dweight": dw[r], "dbias": db[r],
             "running_mean": new["mean"], "running_var": new["var"],
             "num_batches_tracked": new["num_batches_tracked"]} for r, n in enumerate(sizes)]


def run_torch_ranks(world_size: int, cases: list[dict], outdir: str, start_method: str = "fork",
                    timeout: float = 300) -> dict[str, list[dict]]:
    """Start ``world_size`` gloo ranks (``torch.multiprocessing``; fork: 1 s instead of the 10-20 s of
    spawn, which imports torch again in every rank) on the cases; returns ``{case: [per-step record]}``
    from rank 0."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if start_method == "fork":
        # DDP's constructor imports torch._dynamo (4 s under load): once here, inherited by every rank.
        import torch._dynamo  # noqa: F401
    with warnings.catch_warnings():  # the ranks use torch only: the JAX threads of this process stay idle
        warnings.filterwarnings("ignore", message=".*fork.*")
        ctx = mp.start_processes(torch_rank, args=(world_size, port, cases, outdir), nprocs=world_size, join=False,
                                 start_method=start_method)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=2):  # raises when a rank fails
        if time.monotonic() > deadline:  # a rank stuck outside a collective: fail, never hang the suite
            for proc in ctx.processes:
                proc.kill()
            raise TimeoutError(f"the {world_size} torch ranks did not finish within {timeout:.0f} s")
    out = {}
    for c in cases:
        if c.get("layer"):  # one record per rank
            out[c["name"]] = [dict(np.load(os.path.join(outdir, f"{c['name']}.rank{r}.npz"))) for r in range(world_size)]
        else:
            out[c["name"]] = load_records(os.path.join(outdir, c["name"] + ".npz"))
    return out


def load_records(path: str) -> list[dict]:
    data = np.load(path)
    steps: dict[int, dict] = {}
    for key in data.files:
        i, name = key.split("/", 1)
        steps.setdefault(int(i), {})[name] = data[key]
    return [steps[i] for i in sorted(steps)]


def torch_reference(case: dict) -> list[dict]:
    """One process, plain BatchNorm on the concatenated batch, per-example weights
    ``1 / (N * max(n_r, 1))``: what DDP + SyncBatchNorm computes (the maths says equal)."""
    import torch
    import torch.nn.functional as F

    dtype = case.get("dtype", "float64")
    model = torch_net(init_params(), dtype)
    opt = torch_optimizer(case["opt"], model.parameters())
    n = len(case["sizes"])
    w = torch.from_numpy(np.concatenate([np.full(s, 1.0 / (n * max(s, 1))) for s in case["sizes"]]).astype(dtype))
    records = []
    for micro in steps_of(case):
        opt.zero_grad(set_to_none=True)
        for step in micro:
            x = torch.from_numpy(np.concatenate([a for a, _ in step]).astype(dtype))
            y = torch.from_numpy(np.concatenate([b for _, b in step]))
            (F.cross_entropy(model(x), y, reduction="none") * w).sum().backward()
        opt.step()
        records.append(torch_record(model, opt))
    return records


# ---------------------------------------------------------------- JAX


def jax_forward(params: dict, stats: dict, x, mask, axis_name):
    """Logits and new batch_stats: ``lax.conv`` in torch's NCHW/OIHW layout, ``jaxinit.BatchNorm(axis=1)``."""
    import jax
    import jax.numpy as jnp

    import jaxinit

    h = jax.lax.conv_general_dilated(x, params["conv.weight"], (1, 1), "VALID",
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
    bn = jaxinit.BatchNorm(axis=1, param_dtype=params["bn.weight"].dtype, axis_name=axis_name)
    kw = {} if mask is None else {"mask": mask.reshape(-1, 1, 1, 1)}
    h, upd = bn.apply({"params": {"scale": params["bn.weight"], "bias": params["bn.bias"]}, "batch_stats": stats},
                      h, use_running_average=False, mutable=["batch_stats"], **kw)
    return jnp.tanh(h).reshape(h.shape[0], -1) @ params["fc.weight"].T + params["fc.bias"], upd["batch_stats"]


def jax_optimizer(name: str):
    import jaxinit.optim

    return (jaxinit.optim.sgd if name == "sgd_momentum" else jaxinit.optim.adamw)(**OPTIMIZERS[name])


def padded_global(step: list, bmax: int):
    """The ranks' batches padded to ``bmax`` rows each, laid out rank by rank, and the mask."""
    xs, ys, ms = [], [], []
    for x, y in step:
        pad = bmax - len(y)
        xs.append(np.concatenate([x, np.zeros((pad, *x.shape[1:]))]))
        ys.append(np.concatenate([y, np.zeros(pad, y.dtype)]))
        ms.append(np.arange(bmax) < len(y))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ms)


def jax_program(case: dict, mesh, path: str):
    """The jitted training step of ``case``: ``path`` 'shard_map' (jaxinit.parallel.value_and_grad,
    SyncBatchNorm by ``axis_name``) or 'jit' (global batch sharded, rank_mean, BatchNorm over it)."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import PartitionSpec as P

    import jaxinit.parallel

    tx = jax_optimizer(case["opt"])
    n = mesh.shape["data"]
    masked = len(set(case["sizes"])) > 1

    def local_loss(params, stats, x, y, m):
        logits, new = jax_forward(params, stats, x, m if masked else None, "data" if case["sync"] else None)
        per = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return jnp.sum(jnp.where(m, per, 0.0)) / jnp.maximum(jnp.sum(m), 1), new

    if path == "shard_map":
        grads_fn = jaxinit.parallel.value_and_grad(local_loss, "data", has_aux=True, world_size=n)

        def step(params, opt_state, stats, x, y, m):  # x: (rows, micro-batches, ...)
            g = None
            for k in range(x.shape[1]):  # accumulation: pmean is linear, so summing DDP's averaged
                (loss, stats), gk = grads_fn(params, stats, x[:, k], y[:, k], m[:, k])  # gradients = no_sync
                if not case["sync"]:  # plain BatchNorm: DDP's broadcast_buffers=True keeps rank 0's
                    stats = jaxinit.parallel.broadcast_buffers(stats, "data")
                g = gk if g is None else jax.tree.map(jnp.add, g, gk)
            upd, opt_state = tx.update(g, opt_state, params)
            return optax.apply_updates(params, upd), opt_state, stats, loss

        mapped = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(), P(), P("data"), P("data"), P("data")),
                               out_specs=(P(), P(), P(), P()))
        return tx, jax.jit(mapped)

    def global_step(params, opt_state, stats, x, y, m):
        def loss_fn(p, stats, x, y, m):
            logits, new = jax_forward(p, stats, x, m if masked else None, None)
            per = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return jaxinit.parallel.rank_mean(per, n, m), new

        g = None
        for k in range(x.shape[1]):
            (loss, stats), gk = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, x[:, k], y[:, k], m[:, k])
            g = gk if g is None else jax.tree.map(jnp.add, g, gk)
        upd, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, upd), opt_state, stats, loss

    return tx, jax.jit(global_step)


def run_jax(case: dict, mesh, path: str = "shard_map") -> list[dict]:
    """The case on ``mesh`` (axis 'data', one device per rank; with ``jax.distributed``, every
    process runs this with its part of each global batch): per-step records in torch's names."""
    import jax
    import jax.numpy as jnp

    import jaxinit.optim
    import jaxinit.parallel

    tx, step = jax_program(case, mesh, path)
    dtype = case.get("dtype", "float64")
    params = {k: jnp.asarray(v.astype(dtype)) for k, v in init_params().items()}
    stats = {"mean": jnp.zeros(C, dtype), "var": jnp.ones(C, dtype), "num_batches_tracked": jnp.zeros((), jnp.int32)}
    opt_state = tx.init(params)
    bmax = max(case["sizes"])
    records = []
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    rows = np.concatenate([np.arange(r * bmax, (r + 1) * bmax) for r in mine])  # this process's ranks
    for micro in steps_of(case):
        parts = [padded_global(b, bmax) for b in micro]  # (rows, micro-batch, ...): the rows are sharded
        arrays = [np.stack([p[i] for p in parts], axis=1)[rows] for i in range(3)]
        arrays[0] = arrays[0].astype(dtype)
        x, y, m = jaxinit.parallel.shard_batch(mesh, "data", *arrays)
        params, opt_state, stats, _ = step(params, opt_state, stats, x, y, m)
        records.append(jax_record(params, stats, opt_state))
    return records


def _host(tree):
    """Replicated (possibly multi-process) arrays as numpy: this process's first copy."""
    import jax

    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def jax_record(params, stats, opt_state) -> dict[str, Any]:
    import jaxinit.optim

    params, stats, opt_state = _host(params), _host(stats), _host(opt_state)
    rec = dict(params)
    rec.update({"bn.running_mean": np.asarray(stats["mean"]), "bn.running_var": np.asarray(stats["var"]),
                "bn.num_batches_tracked": np.asarray(stats["num_batches_tracked"])})
    exported = jaxinit.optim.export_state(opt_state, params, param_names=list(NAMES))
    for i, s in exported["state"].items():
        for key, v in s.items():
            if key != "step":
                rec[f"opt.{NAMES[i]}.{key}"] = np.asarray(v)
    return rec


def max_rel_diff(a: list[dict], b: list[dict], keys=None) -> tuple[float, str]:
    """Largest ``|a - b| / max(1, max|b|)`` over steps and quantities (and where)."""
    worst, where = 0.0, ""
    assert len(a) == len(b)
    for i, (ra, rb) in enumerate(zip(a, b)):
        for k in (keys or rb):
            assert k in ra, (k, sorted(ra))
            d = float(np.max(np.abs(np.asarray(ra[k], np.float64) - np.asarray(rb[k], np.float64)), initial=0.0))
            d /= max(1.0, float(np.max(np.abs(np.asarray(rb[k], np.float64)), initial=0.0)))
            if d > worst:
                worst, where = d, f"step {i + 1} {k}"
    return worst, where


# ---------------------------------------------------------------- jax.distributed


def jax_process_main(process_id: int, num_processes: int, local_devices: int, port: int, case: dict,
                     out: str) -> None:
    """One ``jax.distributed`` process with ``local_devices`` CPU devices (gloo CPU collectives):
    the case on the global mesh of every process's devices; process 0 writes the records."""
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={local_devices}"
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id)
    try:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
        for path in ("shard_map", "jit"):
            records = run_jax(case, mesh, path)
            if process_id == 0:
                np.savez(out.replace(".npz", f".{path}.npz"),
                         **{f"{i}/{k}": v for i, r in enumerate(records) for k, v in r.items()})
    finally:
        jax.distributed.shutdown()


def run_jax_processes(num_processes: int, local_devices: int, case: dict, out: str, timeout: float = 300) -> dict:
    """Start ``num_processes`` fresh Python processes (``jax.distributed`` needs its own process: the
    backend cannot be re-initialized) on ``case``, ``shard_map`` and ``jax.jit`` paths; returns
    process 0's records per path."""
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "parity_tests._ddp_twin", str(i), str(num_processes),
                               str(local_devices), str(port), json.dumps(case), out], env=env, cwd=root,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(num_processes)]
    logs = [p.communicate(timeout=timeout)[0] for p in procs]
    for p, log in zip(procs, logs):
        if p.returncode != 0:
            raise RuntimeError(f"jax.distributed process exited with {p.returncode}:\n{log[-3000:]}")
    return {path: load_records(out.replace(".npz", f".{path}.npz")) for path in ("shard_map", "jit")}


if __name__ == "__main__":
    import json
    import sys

    pid, nproc, ndev, port_arg, case_json, out_path = sys.argv[1:]
    jax_process_main(int(pid), int(nproc), int(ndev), int(port_arg), json.loads(case_json), out_path)
