"""The device report's ``syncbn`` section: ``torchinit.BatchNorm(process_group=...)`` and
``jaxinit.BatchNorm(axis_name=...)`` against torch's own SyncBatchNorm, on the devices present.

References, by what the machine has:

* ``torch.nn.SyncBatchNorm`` itself over NCCL, one rank per GPU (world size ``min(4, GPUs)``):
  needs at least 2 CUDA GPUs. NCCL cannot run two ranks on one GPU, and torch's SyncBatchNorm
  with a world size of 1 does not synchronize (``torch/nn/modules/batchnorm.py``,
  ``SyncBatchNorm.forward``: ``need_sync = world_size > 1``).
* torch's SyncBN CUDA kernels, N ranks emulated in one process: the calls of
  ``torch.nn.modules._functions.SyncBatchNorm.forward`` / ``backward`` for each rank's chunk, in
  their order (``torch.batch_norm_stats``; the all_gather as the rows of every rank in rank order;
  empty ranks filtered out; ``torch.batch_norm_gather_stats_with_counts`` with each rank's own
  running buffers; ``torch.batch_norm_elemt``; ``torch.batch_norm_backward_reduce``; the
  all_reduce as a sum in rank order; ``torch.batch_norm_backward_elemt``): needs one CUDA GPU
  (these kernels have no CPU implementation in torch).
* ``torch.nn.BatchNorm2d`` on the concatenated batch, on torch's device (any machine): what
  SyncBatchNorm computes by the maths (output, input gradient, running statistics; the per-rank
  weight/bias gradients summed).

Ours: ``torchinit.BatchNorm(process_group='world')`` in real ranks (NCCL ranks next to torch's
SyncBatchNorm on the GPUs; gloo ranks on CPU), started as fresh interpreters
(``python -m parity_tests._device_syncbn SPEC``, the ``env://``-free TCP rendezvous of
``torch.distributed.init_process_group``); ``jaxinit.BatchNorm(axis_name='rank')`` under
``jax.vmap`` over the ranks on the gathered batch (each rank's rows padded to the largest, a
``mask``), on jax's default device.

Each run: ``steps`` training forward/backward passes (loss ``sum(y * g)``) with momentum 0.1
from zero/one running statistics; per rank: the output, the input gradient, the LOCAL weight and
bias gradients (DDP averages them), then the running statistics and ``num_batches_tracked``.
This module imports only numpy at the top: the rank processes import torch and torchinit, not jax.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

C, H, W = 5, 3, 3  # channels, spatial
EPS, MOMENTUM = 1e-5, 0.1
BMAX = 5  # the largest per-rank batch of every case: one compiled JAX program per dtype
WEIGHT = np.array([0.5, 1.5, -2.0, 1.0, 0.25])
BIAS = np.array([0.1, -0.2, 0.3, 0.0, -0.5])
FIELDS = ("y", "dx", "dweight", "dbias")  # per step
BUFFERS = ("running_mean", "running_var")  # after the last step
IMPLS = ("torch.nn.SyncBatchNorm", "torchinit")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cases_for(world: int) -> dict[str, tuple[int, ...]]:
    """``{name: per-rank batch sizes}``: equal, unequal and one empty rank, for ``world`` ranks."""
    if not isinstance(world, int) or not 2 <= world <= 4:
        raise ValueError(f"cases_for: world must be 2, 3 or 4 ranks (SyncBatchNorm with one rank does not "
                         f"synchronize; the report uses at most 4), got {world!r}.")
    base = {"equal": (4, 4, 4, 4), "unequal": (5, 1, 3, 2), "empty rank": (4, 0, 2, 3)}
    return {f"{name} {sizes[:world]}": sizes[:world] for name, sizes in base.items()}


def make_data(sizes: tuple[int, ...], steps: int, seed: int = 0) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """``[step][rank] -> (x (n_r, C, H, W), g)`` in float64: per-channel means in [-10, 10] and
    scales 0.1..10 (the count-weighted variance merge matters), g the output's cotangent."""
    if any(n < 0 or n > BMAX for n in sizes):
        raise ValueError(f"make_data: per-rank batch sizes must be in [0, {BMAX}], got {sizes}.")
    if not any(sizes):
        raise ValueError(f"make_data: at least one rank needs rows, got sizes {sizes}.")
    rng = np.random.default_rng(seed)
    mu = rng.uniform(-10, 10, C).reshape(1, C, 1, 1)
    sd = (10.0 ** rng.uniform(-1, 1, C)).reshape(1, C, 1, 1)
    return [[(mu + sd * rng.standard_normal((n, C, H, W)), rng.standard_normal((n, C, H, W))) for n in sizes]
            for _ in range(steps)]


def _empty_record(world: int) -> list[dict[str, Any]]:
    return [{f: [] for f in FIELDS} for _ in range(world)]


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


# ---------------------------------------------------------------- torch modules in one rank


def run_module(bn, data_rank: list[tuple[np.ndarray, np.ndarray]], dtype, device) -> dict[str, Any]:
    """One rank's training steps of the BatchNorm module ``bn`` (torch's or torchinit's) on its rows."""
    import torch

    with torch.no_grad():
        bn.weight.copy_(torch.as_tensor(WEIGHT))
        bn.bias.copy_(torch.as_tensor(BIAS))
    bn.train()
    rec: dict[str, Any] = {f: [] for f in FIELDS}
    for x_np, g_np in data_rank:
        x = torch.tensor(x_np, dtype=dtype, device=device, requires_grad=True)
        y = bn(x)
        (y * torch.tensor(g_np, dtype=dtype, device=device)).sum().backward()
        rec["y"].append(_np(y))
        rec["dx"].append(np.zeros(x_np.shape, y.detach().cpu().numpy().dtype) if x.grad is None else _np(x.grad))
        for name, p in (("dweight", bn.weight), ("dbias", bn.bias)):  # an empty rank: None (zeros to autograd)
            rec[name].append(np.zeros(C, rec["y"][-1].dtype) if p.grad is None else _np(p.grad))
            p.grad = None
    rec.update(running_mean=_np(bn.running_mean), running_var=_np(bn.running_var),
               num_batches_tracked=int(bn.num_batches_tracked))
    return rec


def rank_main(spec: dict) -> None:
    """One rank (a fresh interpreter): ``init_process_group``, then every (case, dtype, impl) of
    ``spec``; writes ``rank{r}.npz`` (arrays) and ``rank{r}.json`` (counts, errors)."""
    import datetime

    import torch
    import torch.distributed as dist

    import torchinit

    rank, world = spec["rank"], spec["world"]
    torch.set_num_threads(1)
    if spec["device"] == "cuda":
        device = torch.device("cuda", rank if spec["backend"] == "nccl" else 0)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group(spec["backend"], init_method=f"tcp://127.0.0.1:{spec['port']}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=spec.get("collective_timeout", 60)))
    data = np.load(spec["data"])
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    try:
        for case in spec["cases"]:
            rows = [(data[f"{case}|{s}|x|{rank}"], data[f"{case}|{s}|g|{rank}"]) for s in range(spec["steps"])]
            for dname in spec["dtypes"]:
                dtype = getattr(torch, dname)
                for impl in spec["impls"]:
                    key = f"{impl}|{case}|{dname}"
                    try:
                        if impl == "torch.nn.SyncBatchNorm":
                            bn = torch.nn.SyncBatchNorm(C, eps=EPS, momentum=MOMENTUM, device=device, dtype=dtype)
                        else:
                            bn = torchinit.BatchNorm(C, eps=EPS, momentum=MOMENTUM, device=device, dtype=dtype,
                                                     process_group="world")
                        rec = run_module(bn, rows, dtype, device)
                    except Exception as err:  # noqa: BLE001 - reported in the row (the same on every rank)
                        meta[key] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
                        continue
                    meta[key] = {"num_batches_tracked": rec.pop("num_batches_tracked")}
                    for f in FIELDS:
                        for s, a in enumerate(rec[f]):
                            arrays[f"{key}|{f}|{s}"] = a
                    for f in BUFFERS:
                        arrays[f"{key}|{f}"] = rec[f]
    finally:
        dist.destroy_process_group()
    np.savez(os.path.join(spec["out"], f"rank{rank}.npz"), **arrays)
    with open(os.path.join(spec["out"], f"rank{rank}.json"), "w") as f:
        json.dump(meta, f)


def launch(world: int, backend: str, device: str, impls: tuple[str, ...], data: dict, dtypes: tuple[str, ...],
           steps: int, timeout: float = 240.0) -> dict:
    """Start ``world`` ranks (fresh interpreters, ``backend`` 'gloo' or 'nccl', tensors on ``device``)
    on every case of ``data`` (``{case: make_data(...)}``); returns ``{impl: {(case, dtype): per-rank
    records or {'error': text}}}``. A rank that fails or a run past ``timeout`` raises with the logs."""
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"launch: backend must be 'gloo' or 'nccl', got {backend!r}.")
    if device not in ("cpu", "cuda") or (backend == "nccl" and device != "cuda"):
        raise ValueError(f"launch: device must be 'cpu' or 'cuda' ('cuda' for nccl), got {device!r} with {backend!r}.")
    if unknown := set(impls) - set(IMPLS):
        raise ValueError(f"launch: impls must be among {list(IMPLS)}, got {sorted(unknown)}.")
    for case, steps_data in data.items():
        if len(steps_data[0]) != world:
            raise ValueError(f"launch: case {case!r} has {len(steps_data[0])} ranks' batches for world={world}.")
    out = tempfile.mkdtemp(prefix="syncbn_ranks_")
    arrays = {f"{case}|{s}|{k}|{r}": xg[i] for case, sd in data.items() for s, ranks in enumerate(sd)
              for r, xg in enumerate(ranks) for i, k in enumerate("xg")}
    np.savez(os.path.join(out, "data.npz"), **arrays)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    if device == "cpu":  # CPU ranks on a GPU machine: no CUDA context per rank
        env["CUDA_VISIBLE_DEVICES"] = ""
    procs, logs = [], []
    for r in range(world):
        spec = dict(rank=r, world=world, port=port, backend=backend, device=device, impls=list(impls),
                    cases=list(data), dtypes=list(dtypes), steps=steps, data=os.path.join(out, "data.npz"), out=out)
        log = open(os.path.join(out, f"rank{r}.log"), "w+")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "parity_tests._device_syncbn", json.dumps(spec)],
                                      cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"launch: the {world} {backend} ranks did not finish within {timeout:.0f} s"
                                   + _tails(logs))
            if any(p.returncode not in (None, 0) for p in procs):  # one failed: the others would wait for it
                break
            time.sleep(0.1)
        failed = [(r, p.returncode) for r, p in enumerate(procs) if p.returncode not in (None, 0)]
        if failed:
            raise RuntimeError(f"launch: {backend} rank(s) {[r for r, _ in failed]} exited with "
                               f"{[c for _, c in failed]}" + _tails(logs))
        per_rank = []
        for r in range(world):
            with open(os.path.join(out, f"rank{r}.json")) as f:
                per_rank.append((dict(np.load(os.path.join(out, f"rank{r}.npz"))), json.load(f)))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
        shutil.rmtree(out, ignore_errors=True)
    results: dict = {impl: {} for impl in impls}
    for impl in impls:
        for case in data:
            for dname in dtypes:
                key = f"{impl}|{case}|{dname}"
                errors = [m[key]["error"] for _, m in per_rank if "error" in m.get(key, {"error": "missing"})]
                if errors:
                    results[impl][(case, dname)] = {"error": errors[0]}
                    continue
                recs = []
                for a, m in per_rank:
                    rec: dict[str, Any] = {f: [a[f"{key}|{f}|{s}"] for s in range(steps)] for f in FIELDS}
                    rec.update({f: a[f"{key}|{f}"] for f in BUFFERS})
                    rec["num_batches_tracked"] = m[key]["num_batches_tracked"]
                    recs.append(rec)
                results[impl][(case, dname)] = recs
    return results


def _tails(logs) -> str:
    out = []
    for r, log in enumerate(logs):
        log.flush()
        log.seek(0)
        text = log.read()
        if text.strip():
            out.append(f"\n--- rank {r} ---\n{text[-2000:]}")
    return "".join(out)


# ---------------------------------------------------------------- torch's kernels, ranks emulated

KERNELS = ("batch_norm_stats", "batch_norm_gather_stats_with_counts", "batch_norm_elemt",
           "batch_norm_backward_reduce", "batch_norm_backward_elemt")


def torch_kernels() -> dict:
    """torch's SyncBN kernels by name (``torch.batch_norm_stats``, ...): what the emulation calls."""
    import torch

    return {name: getattr(torch, name) for name in KERNELS}


def kernels_missing(device: str) -> str | None:
    """None when torch's SyncBN kernels run on ``device``, else why not (the probe's error)."""
    import torch

    try:
        torch.batch_norm_stats(torch.ones(2, 1, device=device), EPS)
    except (NotImplementedError, RuntimeError) as err:
        return f"torch.batch_norm_stats on {device}: {str(err).splitlines()[0][:120]}"
    return None


def emulate_torch_syncbn(data: list[list[tuple[np.ndarray, np.ndarray]]], dtype, device, kernels=None) -> list[dict]:
    """``torch.nn.SyncBatchNorm`` training steps over ``len(data[0])`` ranks in one process, with
    torch's kernels called as ``torch.nn.modules._functions.SyncBatchNorm`` calls them per rank
    (``kernels``: ``{name: function}``, default :func:`torch_kernels`). The collectives: all_gather
    = every rank's row in rank order; all_reduce(SUM) = the sum in rank order. Per-rank records."""
    import torch

    k = kernels or torch_kernels()
    if set(k) != set(KERNELS):
        raise ValueError(f"emulate_torch_syncbn: kernels must name exactly {list(KERNELS)}, got {sorted(k)}.")
    world = len(data[0])
    rm = [torch.zeros(C, dtype=dtype, device=device) for _ in range(world)]
    rv = [torch.ones(C, dtype=dtype, device=device) for _ in range(world)]
    weight = torch.as_tensor(WEIGHT, dtype=dtype, device=device)
    bias = torch.as_tensor(BIAS, dtype=dtype, device=device)
    recs = _empty_record(world)
    for step in data:
        xs = [torch.tensor(x, dtype=dtype, device=device) for x, _ in step]
        gs = [torch.tensor(g, dtype=dtype, device=device) for _, g in step]
        # forward: each rank's (mean, invstd, count), or zeros for an empty rank, then all_gather
        rows = []
        for x in xs:
            if x.numel() > 0:
                mean, invstd = k["batch_norm_stats"](x, EPS)
                count = torch.full((1,), x.numel() // x.size(1), dtype=mean.dtype, device=mean.device)
                rows.append(torch.cat([mean, invstd, count], dim=0))
            else:
                rows.append(torch.zeros(2 * C + 1, dtype=x.dtype, device=x.device))
        combined = torch.stack(rows, dim=0)
        mean_all, invstd_all, count_all = torch.split(combined, C, dim=1)
        keep = count_all.squeeze(-1) >= 1  # stats of empty ranks are removed
        count_all, mean_all, invstd_all = count_all[keep], mean_all[keep], invstd_all[keep]
        counts = count_all.view(-1).to(rm[0].dtype)
        saved = []
        for r, x in enumerate(xs):  # every rank merges the same rows into its own running buffers
            mean, invstd = k["batch_norm_gather_stats_with_counts"](x, mean_all, invstd_all, rm[r], rv[r],
                                                                     MOMENTUM, EPS, counts)
            saved.append((mean, invstd))
            y = k["batch_norm_elemt"](x, weight, bias, mean, invstd, EPS) if x.numel() > 0 else torch.empty_like(x)
            recs[r]["y"].append(_np(y))
        # backward: local sums and weight/bias gradients, all_reduce of (sum_dy, sum_dy_xmu), input gradient
        local, grads = [], []
        for (mean, invstd), x, g in zip(saved, xs, gs):
            if x.numel() > 0:
                sum_dy, sum_dy_xmu, gw, gb = k["batch_norm_backward_reduce"](g, x, mean, invstd, weight, True, True,
                                                                             True)
                local.append(torch.cat([sum_dy, sum_dy_xmu], dim=0))
                grads.append((gw, gb))
            else:
                local.append(torch.zeros(2 * C, dtype=x.dtype, device=x.device))
                grads.append((torch.zeros(C, dtype=dtype, device=device),) * 2)  # torch: None, zeros to autograd
        total = local[0]
        for part in local[1:]:
            total = total + part
        sum_dy, sum_dy_xmu = torch.split(total, C)
        for r, ((mean, invstd), x, g) in enumerate(zip(saved, xs, gs)):
            if x.numel() > 0:
                dx = k["batch_norm_backward_elemt"](g, x, mean, invstd, weight.to(mean.dtype), sum_dy, sum_dy_xmu,
                                                    count_all.to(torch.int32))
            else:
                dx = torch.zeros_like(x)
            recs[r]["dx"].append(_np(dx))
            recs[r]["dweight"].append(_np(grads[r][0]))
            recs[r]["dbias"].append(_np(grads[r][1]))
    for r in range(world):
        recs[r].update(running_mean=_np(rm[r]), running_var=_np(rv[r]), num_batches_tracked=len(data))
    return recs


# ---------------------------------------------------------------- torch.nn.BatchNorm2d on the concatenation


def concat_reference(data: list[list[tuple[np.ndarray, np.ndarray]]], dtype, device) -> dict:
    """``torch.nn.BatchNorm2d`` on every rank's rows concatenated (the gathered form of :func:`gather`)."""
    import torch

    bn = torch.nn.BatchNorm2d(C, eps=EPS, momentum=MOMENTUM, dtype=dtype, device=device)
    cat = [[(np.concatenate([x for x, _ in step]), np.concatenate([g for _, g in step]))] for step in data]
    return run_module(bn, [s[0] for s in cat], dtype, device)


def gather(recs: list[dict]) -> dict:
    """Per-rank records as one process's: outputs and input gradients concatenated in rank order,
    the local weight/bias gradients summed in rank order, rank 0's running statistics."""
    out: dict[str, Any] = {}
    for f in ("y", "dx"):
        out[f] = [np.concatenate([r[f][s] for r in recs]) for s in range(len(recs[0][f]))]
    for f in ("dweight", "dbias"):
        out[f] = []
        for s in range(len(recs[0][f])):
            total = recs[0][f][s]
            for r in recs[1:]:
                total = total + r[f][s]
            out[f].append(total)
    out.update({f: recs[0][f] for f in (*BUFFERS, "num_batches_tracked")})
    return out


# ---------------------------------------------------------------- jaxinit.BatchNorm(axis_name=...)

_JAX_STEP: dict = {}


def _jax_step():
    """The jitted training step, ``jax.vmap`` over ranks (axis 'rank'): per-rank params (so each
    rank's weight/bias gradient is its local one, as torch's), shared running statistics in."""
    if "step" not in _JAX_STEP:
        import jax
        import jax.numpy as jnp

        import jaxinit

        def local(params, stats, x, g, m):
            bn = jaxinit.BatchNorm(axis=1, eps=EPS, momentum=MOMENTUM, param_dtype=x.dtype, axis_name="rank")
            mask = m.reshape(-1, 1, 1, 1)

            def loss(p, x):
                y, upd = bn.apply({"params": p, "batch_stats": stats}, x, use_running_average=False,
                                  mutable=["batch_stats"], mask=mask)
                return jnp.sum(jnp.where(mask, y * g, 0.0)), (y, upd["batch_stats"])

            (_, (y, new)), (dp, dx) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
            return y, dx, dp["scale"], dp["bias"], new

        _JAX_STEP["step"] = jax.jit(jax.vmap(local, in_axes=(0, None, 0, 0, 0), axis_name="rank"))
    return _JAX_STEP["step"]


def jax_syncbn(data: list[list[tuple[np.ndarray, np.ndarray]]], dtype: str) -> list[dict]:
    """``jaxinit.BatchNorm(axis=1, axis_name='rank')`` on the ranks' rows (padded to :data:`BMAX`,
    masked) under ``jax.vmap``, on jax's default device: per-rank records."""
    import jax
    import jax.numpy as jnp

    world = len(data[0])
    sizes = [len(x) for x, _ in data[0]]
    jdt = jnp.dtype(dtype)
    params = {"scale": jnp.asarray(np.tile(WEIGHT, (world, 1)), jdt), "bias": jnp.asarray(np.tile(BIAS, (world, 1)), jdt)}
    stats = {"mean": jnp.zeros(C, jdt), "var": jnp.ones(C, jdt), "num_batches_tracked": jnp.zeros((), jnp.int32)}
    pad = lambda a: np.concatenate([a, np.zeros((BMAX - len(a), *a.shape[1:]))])  # noqa: E731
    m = jnp.asarray(np.stack([np.arange(BMAX) < n for n in sizes]))
    recs = _empty_record(world)
    step = _jax_step()
    for s in data:
        x = jnp.asarray(np.stack([pad(a) for a, _ in s]), jdt)
        g = jnp.asarray(np.stack([pad(b) for _, b in s]), jdt)
        y, dx, dw, db, new = jax.device_get(step(params, stats, x, g, m))
        stats = jax.tree.map(lambda a: a[0], new)  # every rank holds the same statistics
        for r, n in enumerate(sizes):
            recs[r]["y"].append(np.asarray(y[r, :n]))
            recs[r]["dx"].append(np.asarray(dx[r, :n]))
            recs[r]["dweight"].append(np.asarray(dw[r]))
            recs[r]["dbias"].append(np.asarray(db[r]))
        for r in range(world):
            recs[r].update(running_mean=np.asarray(new["mean"][r]), running_var=np.asarray(new["var"][r]),
                           num_batches_tracked=int(new["num_batches_tracked"][r]))
    return recs


# ---------------------------------------------------------------- comparison and the section

GROUPS = {"y": ("y",), "dx": ("dx",), "dweight, dbias": ("dweight", "dbias"),
          "running mean, var": ("running_mean", "running_var")}


def compare_records(ours, ref) -> dict:
    """Per column of :data:`GROUPS`: the max relative difference ``max|a - b| / max(1, max|b|)``
    and the exact ulp distance (``device_report.compare``, worst over ranks and steps), plus
    whether ``num_batches_tracked`` agrees. ``ours``/``ref``: per-rank lists or gathered dicts."""
    from parity_tests import device_report as dr

    ours = ours if isinstance(ours, list) else [ours]
    ref = ref if isinstance(ref, list) else [ref]
    if len(ours) != len(ref):
        raise ValueError(f"compare_records: {len(ours)} ranks vs {len(ref)}.")
    row: dict[str, Any] = {}
    for col, keys in GROUPS.items():
        rels, cells = [], []
        for o, r in zip(ours, ref):
            for key in keys:
                pairs = zip(o[key], r[key]) if isinstance(r[key], list) else [(o[key], r[key])]
                for a, b in pairs:
                    a, b = np.asarray(a), np.asarray(b)
                    rels.append(dr._rel(a, b))
                    cells.append(dr.compare(a, b, True))
        row[col] = {"rel": max(rels), **dr._worst(cells)}
    row["num_batches_tracked equal"] = all(o["num_batches_tracked"] == r["num_batches_tracked"]
                                           for o, r in zip(ours, ref))
    return row


def cell(c: dict) -> str:
    """A comparison cell: 'REL (ULP CELL)', or why it is missing."""
    from parity_tests import device_report as dr

    if c.get("skipped"):
        return f"skipped ({c['skipped']})"
    if c.get("error"):
        return f"failed: {c['error']}"
    return f"{c['rel']:.2g} ({dr._cell(c)})" if c["rel"] else f"0 ({dr._cell(c)})"


COLUMNS = ["ours", "reference", "case", "dtype", *GROUPS, "num_batches_tracked equal"]
# (ours, reference): the comparisons, in the report's order
COMPARISONS = (("torchinit nccl", "torch nccl"), ("jax", "torch nccl"), ("emulated", "torch nccl"),
               ("torchinit gloo", "emulated"), ("jax", "emulated"), ("torchinit gloo", "jax"), ("jax", "concat"))


def section(cfg) -> dict:
    import jax
    import torch

    from parity_tests.device_report import FLOATS, TORCH_DEV

    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    world = min(4, n_gpu) if n_gpu >= 2 else 4
    cases = cases_for(world)
    if cfg.quick:  # the case that covers the others (unequal sizes and an empty rank), float64, one step
        cases = {k: v for k, v in cases.items() if k.startswith("empty rank")}
    dtypes = ("float64",) if cfg.quick else ("float32", "float64")
    steps = 1 if cfg.quick else 2
    data = {case: make_data(sizes, steps, seed=i) for i, (case, sizes) in enumerate(cases.items())}
    launch_ranks = getattr(cfg, "launch_ranks", None)
    launch_ranks = (not cfg.quick) if launch_ranks is None else launch_ranks
    backend = jax.default_backend()
    labels = {
        "torch nccl": f"torch.nn.SyncBatchNorm, NCCL, {world} ranks on {world} GPUs" if n_gpu >= 2 else
                      "torch.nn.SyncBatchNorm, NCCL, one rank per GPU",
        "torchinit nccl": "torchinit.BatchNorm(process_group='world'), NCCL, the same ranks",
        "emulated": f"torch's SyncBN CUDA kernels, {world} ranks emulated in one process",
        "torchinit gloo": f"torchinit.BatchNorm(process_group='world'), gloo, {world} CPU ranks",
        "jax": f"jaxinit.BatchNorm(axis_name=...), jax.vmap over {world} ranks ({backend})",
        "concat": f"torch.nn.BatchNorm2d on the concatenated batch ({TORCH_DEV})",
    }
    results: dict[str, Any] = {}  # name -> {(case, dtype): records or {'error'}} or a reason string (skipped)

    def each(fn):
        out = {}
        for case in cases:
            for dname in dtypes:
                try:
                    out[(case, dname)] = fn(data[case], dname)
                except Exception as err:  # noqa: BLE001 - reported in its rows
                    out[(case, dname)] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
        return out

    results["jax"] = each(jax_syncbn)
    results["concat"] = each(lambda d, dn: concat_reference(d, FLOATS[dn][0], TORCH_DEV))
    why = "no CUDA" if n_gpu == 0 else kernels_missing("cuda")
    if why is None:
        results["emulated"] = each(lambda d, dn: emulate_torch_syncbn(d, FLOATS[dn][0], "cuda"))
    else:
        results["emulated"] = (f"{why}; torch's SyncBN kernels run on CUDA only" if n_gpu == 0 else why)
    no_launch = "--quick starts no rank processes (pytest -m multiprocess and the full report do)"
    if launch_ranks:
        for name, args in (("gloo", (world, "gloo", "cpu", ("torchinit",))),
                           ("nccl", (world, "nccl", "cuda", IMPLS))):
            if name == "nccl" and n_gpu < 2:
                continue
            try:
                got = launch(*args, data=data, dtypes=dtypes, steps=steps)
            except Exception as err:  # noqa: BLE001 - every row of these ranks says why
                msg = f"{type(err).__name__}: {str(err)[:1500]}"
                got = {impl: {key: {"error": msg} for key in results["jax"]} for impl in args[3]}
            results[f"torchinit {name}"] = got["torchinit"]
            if name == "nccl":
                results["torch nccl"] = got["torch.nn.SyncBatchNorm"]
    else:
        results["torchinit gloo"] = no_launch
    if "torch nccl" not in results:
        results["torch nccl"] = no_launch if (n_gpu >= 2 and not launch_ranks) else (
            f"needs >= 2 CUDA GPUs, this machine has {n_gpu} (NCCL runs one rank per GPU; torch's SyncBatchNorm "
            "with one rank does not synchronize)")
        results["torchinit nccl"] = results["torch nccl"]

    rows = []
    for ours, ref in COMPARISONS:
        base = {"ours": labels[ours], "reference": labels[ref]}
        skipped = "; ".join(dict.fromkeys(results[k] for k in (ours, ref) if isinstance(results[k], str)))
        if skipped:
            rows.append({**base, "case": "all", "dtype": "", "y": {"skipped": skipped}})
            continue
        for (case, dname), got in results[ours].items():
            want = results[ref][(case, dname)]
            bad = next((r["error"] for r in (got, want) if isinstance(r, dict) and "error" in r), None)
            if bad:
                rows.append({**base, "case": case, "dtype": dname, "y": {"error": bad}})
                continue
            if ref == "concat":
                got = gather(got)
            rows.append({**base, "case": case, "dtype": dname, **compare_records(got, want)})
    notes = [
        f"{steps} training step(s) (loss sum(y * g), momentum {MOMENTUM}, eps {EPS}) on (n_r, {C}, {H}, {W}) "
        "batches per rank with per-channel means in [-10, 10] and scales 0.1..10; per rank: output y, input "
        "gradient dx, the LOCAL weight/bias gradients (DDP averages them), then the running statistics. Cells: "
        "max|a - b| / max(1, max|ref|) over ranks and steps, then the exact ulp distance (bitwise, or the largest "
        "and the share of differing values). Against the concatenated batch: y and dx concatenated, the local "
        "gradients summed in rank order.",
        "torch's SyncBN CUDA kernels, N ranks emulated in one process: the kernel calls of "
        "torch.nn.modules._functions.SyncBatchNorm.forward/backward per rank chunk (batch_norm_stats, "
        "batch_norm_gather_stats_with_counts, batch_norm_elemt, batch_norm_backward_reduce, "
        "batch_norm_backward_elemt), the all_gather as the ranks' rows in rank order, the all_reduce as their "
        "sum in rank order. torch.nn.SyncBatchNorm itself needs >= 2 GPUs (NCCL, one rank per GPU).",
        "Expected: float64 at rounding (the parity suite's bound, test_data_parallel.py: 1e-12); float32 at "
        "float32 rounding, from the summation order of the per-channel statistics. Large ulp counts sit on "
        "values near 0 (outputs and gradients that cancel), where an ulp is tiny: read them with the relative "
        "column."]
    return {"columns": COLUMNS, "rows": rows, "cell": cell, "notes": notes,
            "data": {"world": world, "gpus": n_gpu, "launched": bool(launch_ranks)}}


if __name__ == "__main__":
    rank_main(json.loads(sys.argv[1]))
