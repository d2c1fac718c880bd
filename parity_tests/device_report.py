"""The device report: parity and speed of jaxinit/torchinit on the machine at hand (GPU, TPU or CPU).

    PYTHONPATH=. python -m parity_tests.device_report --out DIR [--quick] [--only SECTION ...]

One command for a lent accelerator (no network, nothing installed): it measures what the
parity suite claims, on the default jax backend and on CUDA when torch sees one, and the
speed ratios of the benchmarks, all in one run, and writes ``DIR/report.md`` (tables to
paste into the README) and ``DIR/report.json`` (every figure). Sections:

1. ``environment``: versions, devices, memory, and the settings parity is measured under
   (JAX ``jax_default_matmul_precision='highest'``, torch TF32 off, ``jax_enable_x64``).
2. ``same_seed``: ``jax.random`` bits/uniform/normal/truncated_normal on the default jax
   backend vs ``torchinit.random`` on CPU and on CUDA (and jax's CPU backend vs its default
   backend), per sampler x dtype: bitwise, or the max distance in units in the last place.
3. ``initializers``: every jaxinit factory vs its torchinit twin with the same JAX key.
4. ``batchnorm``: jaxinit.BatchNorm (Linen) and torchinit.BatchNorm vs torch.nn.BatchNorm2d
   (torch's device), 20 training steps + eval, float32 and float64: max relative differences.
5. ``twins``: LeNet-BN and a ResNet basic block (``parity_tests/test_twins.py``), torch on
   its device vs Flax Linen on jax's: ``twin_check`` and 20 SGD steps.
6. ``syncbn``: ``torchinit.BatchNorm(process_group=...)`` and ``jaxinit.BatchNorm(axis_name=...)``
   vs ``torch.nn.SyncBatchNorm`` over NCCL (>= 2 GPUs), vs torch's SyncBN CUDA kernels with the
   ranks emulated in one process (1 GPU), and vs ``torch.nn.BatchNorm2d`` on the concatenated
   batch (``parity_tests/_device_syncbn.py``).
7. ``precision``: the mixed-precision twins at each torch precision setting (TF32 flags,
   ``set_float32_matmul_precision``) and the JAX precision of ``jaxinit.amp.precision_contract``,
   and under bf16/fp16 autocast (``parity_tests/_device_precision.py``).
8. ``speed``: ratios measured in this run: LeNet+BN training throughput (examples/lenet_bn.py
   via benchmarks/bench_lenet.py) at several batch sizes; the BatchNorm training step
   (benchmarks/bench_batchnorm.py); keyed uniform/normal vs torch.rand/randn and jax.random;
   one optimizer step on 100M parameters vs optax and torch.optim (foreach and fused).
9. ``optim``: jaxinit.optim vs torch.optim, 200 steps: every configuration of
   ``parity_tests/test_optim.py`` in float64, the plain one of each factory in float32.

Measured differences are data: the exit status is non-zero only when a section crashed
(its traceback is in the report). What the machine cannot run (no CUDA, a torch feature
too old) is reported as skipped with the reason. ``--quick`` shrinks every size so the
whole report runs in seconds on a CPU (the test suite runs it so it cannot rot); it starts no
rank processes unless ``--launch-ranks`` (the full report does, ``--no-launch-ranks`` not).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from types import SimpleNamespace

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import jaxinit  # noqa: E402
import torchinit  # noqa: E402
import torchinit.random as tr  # noqa: E402
from parity_tests import _device_precision, _device_syncbn  # noqa: E402  (sections 6 and 7)

CUDA = torch.cuda.is_available()
TORCH_DEVICES = ["cpu"] + (["cuda"] if CUDA else [])
TORCH_DEV = torch.device("cuda" if CUDA else "cpu")  # the device of the torch side of sections 4-7

FLOATS = {"float32": (torch.float32, jnp.float32), "float64": (torch.float64, jnp.float64),
          "bfloat16": (torch.bfloat16, jnp.bfloat16), "float16": (torch.float16, jnp.float16)}
UINTS = {"uint8": (torch.uint8, jnp.uint8), "uint16": (torch.uint16, jnp.uint16),
         "uint32": (torch.uint32, jnp.uint32), "uint64": (torch.uint64, jnp.uint64)}


def parity_settings() -> dict:
    """What output parity is measured under (as parity_tests/conftest.py sets it)."""
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return {"jax_enable_x64": True, "jax_default_matmul_precision": "highest",
            "torch.backends.cuda.matmul.allow_tf32": False, "torch.backends.cudnn.allow_tf32": False}


# --------------------------------------------------------------------------- comparison helpers
_UINT = {1: (torch.uint8, np.uint8), 2: (torch.int16, np.uint16), 4: (torch.int32, np.uint32),
         8: (torch.int64, np.uint64)}


def _raw_bits(x) -> np.ndarray:
    """The bit patterns of a torch tensor or jax/numpy array as unsigned integers of the same width."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        tdt, ndt = _UINT[x.element_size()]
        return x.view(tdt).numpy().view(ndt)
    x = np.asarray(x)
    return x.view(_UINT[x.dtype.itemsize][1])


def ulp_distance(a_bits: np.ndarray, b_bits: np.ndarray, nbits: int, nmant: int):
    """Exact ulp distances between two arrays of IEEE bit patterns (``nbits`` wide, ``nmant`` mantissa bits).

    Sign-magnitude -> one ordered integer line (``+m`` for a positive pattern of magnitude
    ``m``, ``-m`` for a negative one, so +0 and -0 are the same point and the line is
    monotonic in the float value); the distance of two non-NaN values is the difference of
    their points, computed in wrapping uint64 arithmetic, which is exact because every
    distance lies in [0, 2**64). Returns ``(dist, a_nan, b_nan)``: ``dist`` is uint64
    (0 where either value is NaN), the masks mark NaNs (any payload).
    """
    a = a_bits.astype(np.uint64)
    b = b_bits.astype(np.uint64)
    sign = np.uint64(1 << (nbits - 1))
    mag = np.uint64((1 << (nbits - 1)) - 1)
    inf = np.uint64(((1 << (nbits - 1 - nmant)) - 1) << nmant)  # exponent all ones, mantissa 0
    am, bm = a & mag, b & mag
    a_neg, b_neg = (a & sign) != 0, (b & sign) != 0
    a_nan, b_nan = am > inf, bm > inf
    # same sign: |am - bm|; opposite signs: am + bm (both < 2**63, so the sum fits in uint64)
    same = np.where(am >= bm, am - bm, bm - am)
    dist = np.where(a_neg == b_neg, same, am + bm)
    return np.where(a_nan | b_nan, np.uint64(0), dist), a_nan, b_nan


_MANTISSA = {"float64": 52, "float32": 23, "float16": 10, "bfloat16": 7}


def _mantissa_bits(x) -> int:
    name = str(x.dtype).replace("torch.", "")
    if name not in _MANTISSA:
        raise ValueError(f"compare: no IEEE layout known for dtype {x.dtype}; expected one of {sorted(_MANTISSA)}")
    return _MANTISSA[name]


def compare(got, want, floating: bool) -> dict:
    """Bitwise equality and, for floats, the exact ulp distance, consistent by construction.

    ``mismatch``: share of elements whose bit patterns differ. For floats also ``max_ulp``
    (a Python int, exact for every width: :func:`ulp_distance`), ``ulp_mismatch`` (share of
    elements at a distance > 0, so ``max_ulp > 0`` exactly when ``ulp_mismatch > 0``) and
    ``nan_mismatch`` (share where one side is NaN and the other is not: no ulp distance)
    and ``same_value_mismatch`` (different bits for the same value: +0 vs -0, or two NaNs
    with different payloads). The three partition the differing elements.
    """
    a, b = _raw_bits(got), _raw_bits(want)
    if a.shape != b.shape:
        return {"bitwise": False, "max_ulp": None, "mismatch": 1.0, "note": f"shapes {a.shape} vs {b.shape}"}
    if a.dtype != b.dtype:
        return {"bitwise": False, "max_ulp": None, "mismatch": 1.0,
                "note": f"widths {8 * a.dtype.itemsize} vs {8 * b.dtype.itemsize} bits"}
    diff = a != b
    n = diff.size
    out = {"bitwise": bool(not diff.any()), "mismatch": float(diff.mean()) if n else 0.0}
    if floating:
        nmant = _mantissa_bits(want)
        if _mantissa_bits(got) != nmant:
            return {"bitwise": False, "max_ulp": None, "mismatch": 1.0, "note": f"dtypes {got.dtype} vs {want.dtype}"}
        dist, a_nan, b_nan = ulp_distance(a, b, 8 * a.dtype.itemsize, nmant)
        nan_one = a_nan != b_nan
        out["max_ulp"] = int(dist.max(initial=0))
        out["ulp_mismatch"] = float((dist > 0).mean()) if n else 0.0
        out["nan_mismatch"] = float(nan_one.mean()) if n else 0.0
        out["same_value_mismatch"] = float((diff & (dist == 0) & ~nan_one).mean()) if n else 0.0
    return out


def _pct(share: float) -> str:
    """A share as a percentage that never rounds a nonzero share to 0 (or a partial one to 100)."""
    if 0 < share < 1e-4:
        return "<0.01%"
    if 0.9999 < share < 1:
        return ">99.99%"
    return f"{100 * share:.2f}".rstrip("0").rstrip(".") + "%" if share >= 0.1 else f"{100 * share:.2g}%"


def _cell(c: dict | None) -> str:
    if c is None:
        return "n/a"
    if c.get("skipped"):
        return f"skipped ({c['skipped']})"
    if c["bitwise"]:
        return "bitwise"
    ulp = c.get("max_ulp")
    if ulp is None:
        return f"differs ({_pct(c['mismatch'])} of bit patterns)" + (f"; {c['note']}" if "note" in c else "")
    parts = []
    if c["ulp_mismatch"]:
        parts.append(f"{ulp} ulp ({_pct(c['ulp_mismatch'])} differ)")
    if c["nan_mismatch"]:
        parts.append(f"NaN vs number ({_pct(c['nan_mismatch'])})")
    if c["same_value_mismatch"]:
        parts.append(f"same values, other bits (+-0 or NaN payloads: {_pct(c['same_value_mismatch'])})")
    return "; ".join(parts)


def _rel(a, b) -> float:
    """max|a - b| / max(1, max|b|), in float64 (the measure of the BatchNorm parity tests)."""
    a = np.asarray(a.detach().cpu().double() if isinstance(a, torch.Tensor) else a, np.float64)
    b = np.asarray(b.detach().cpu().double() if isinstance(b, torch.Tensor) else b, np.float64)
    return float(np.abs(a - b).max(initial=0.0)) / max(1.0, float(np.abs(b).max(initial=0.0)))


def _sync(dev) -> None:
    if str(dev).startswith("cuda"):
        torch.cuda.synchronize()


def _median_ms(fn, warmup: int, repeats: int) -> float:
    """Median of ``repeats`` timed calls after ``warmup`` untimed ones, in ms (the benchmarks' timer)."""
    from benchmarks.timing import time_calls

    return statistics.median(time_calls(fn, repeats, warmup)) * 1e3


# --------------------------------------------------------------------------- 1. environment
def section_environment(cfg) -> dict:
    import flax
    import optax

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
           "numpy": np.__version__, "torch": torch.__version__, "jax": jax.__version__,
           "jaxlib": _jaxlib_version(),
           "flax": flax.__version__, "optax": optax.__version__,
           "jax_backend": jax.default_backend(), "jax_devices": [str(d) for d in jax.devices()],
           "jax_device_kind": jax.devices()[0].device_kind, "torch_cuda": CUDA,
           "torch_threads": torch.get_num_threads(), "settings": cfg.settings, "quick": cfg.quick}
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if stats and "bytes_limit" in stats:
        env["jax_device_memory_gib"] = round(stats["bytes_limit"] / 2**30, 1)
    if CUDA:
        p = torch.cuda.get_device_properties(0)
        env.update(torch_cuda_device=p.name, torch_cuda_memory_gib=round(p.total_memory / 2**30, 1),
                   torch_cuda_capability=f"{p.major}.{p.minor}", torch_cuda_version=torch.version.cuda)
    # torch.nn.init.trunc_normal_ is rejection sampling from torch 2.12 on (pytorch#174997); nothing in
    # this report compares against it, but the parity suite does: say which behaviour this torch has.
    env["torch_trunc_normal_rejection"] = torch.__version__ >= "2.12"
    rows = [{"item": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else str(v)} for k, v in env.items()]
    return {"columns": ["item", "value"], "rows": rows, "data": env}


def _jaxlib_version():
    import jaxlib

    return getattr(jaxlib, "__version__", None) or getattr(getattr(jaxlib, "version", None), "__version__", "?")


# --------------------------------------------------------------------------- 2. same seed
def _keys():
    """(name, torchinit key, jax key): seeds, a split subkey and a fold_in subkey."""
    out = [(f"key({s})", tr.key(s), jax.random.key(s)) for s in (0, 2**31 - 1)]
    out.append(("fold_in(key(3), 2**32-1)", tr.fold_in(tr.key(3), 2**32 - 1),
                jax.random.fold_in(jax.random.key(3), np.uint32(2**32 - 1))))
    return out


SAMPLERS = {
    "bits": (lambda k, s, dt, dev: tr.bits(k, s, dt, device=dev), lambda k, s, dt: jax.random.bits(k, s, dt), UINTS),
    "uniform": (lambda k, s, dt, dev: tr.uniform(k, s, dt, -0.37, 0.55, device=dev),
                lambda k, s, dt: jax.random.uniform(k, s, dt, -0.37, 0.55), FLOATS),
    "normal": (lambda k, s, dt, dev: tr.normal(k, s, dt, device=dev), lambda k, s, dt: jax.random.normal(k, s, dt),
               FLOATS),
    "truncated_normal": (lambda k, s, dt, dev: tr.truncated_normal(k, -2.0, 1.5, s, dt, device=dev),
                         lambda k, s, dt: jax.random.truncated_normal(k, -2.0, 1.5, s, dt), FLOATS),
}


def _worst(cells: list[dict]) -> dict:
    """Bitwise if every cell is; else the largest ulp distance and the largest shares.

    ``max_ulp`` (and its shares) only when every cell has one: a cell without (a shape or
    dtype mismatch) makes the worst case unknown in ulp.
    """
    w = {"bitwise": all(c["bitwise"] for c in cells), "mismatch": max(c["mismatch"] for c in cells)}
    if all(c.get("max_ulp") is not None for c in cells):
        w["max_ulp"] = max(c["max_ulp"] for c in cells)
        w["ulp_mismatch"] = max(c["ulp_mismatch"] for c in cells)
        w["nan_mismatch"] = max(c["nan_mismatch"] for c in cells)
        w["same_value_mismatch"] = max(c["same_value_mismatch"] for c in cells)
    else:
        w["max_ulp"] = None
    return w


def section_same_seed(cfg) -> dict:
    backend = jax.default_backend()
    shapes = [(7, 13)] if cfg.quick else [(), (3, 5, 7), ((1 << 20) + 3,)]
    keys = _keys()[:1] if cfg.quick else _keys()
    cpu = jax.devices("cpu")[0]
    rows = []
    for sname, (tfn, jfn, dtypes) in SAMPLERS.items():
        floating = dtypes is FLOATS
        for dname, (tdt, jdt) in dtypes.items():
            if cfg.quick and dname not in ("uint32", "float32", "float64"):
                continue
            cells = {dev: [] for dev in TORCH_DEVICES}
            jax_cpu = []
            for _, tk, jk in keys:
                for shape in shapes:
                    want = np.asarray(jfn(jk, shape, jdt))
                    for dev in TORCH_DEVICES:
                        cells[dev].append(compare(tfn(tk, shape, tdt, dev), want, floating))
                    if backend != "cpu":
                        with jax.default_device(cpu):
                            jax_cpu.append(compare(np.asarray(jfn(jax.device_put(jk, cpu), shape, jdt)), want,
                                                   floating))
            row = {"sampler": sname, "dtype": dname}
            for dev in ("cpu", "cuda"):
                row[f"torchinit {dev}"] = _worst(cells[dev]) if dev in cells else {"skipped": "no CUDA"}
            row["jax cpu"] = _worst(jax_cpu) if jax_cpu else {"skipped": "default backend is cpu"}
            rows.append(row)
    cols = ["sampler", "dtype", "torchinit cpu", "torchinit cuda", "jax cpu"]
    return {"columns": cols, "rows": rows, "cell": _cell,
            "notes": [f"Reference: jax.random on the default backend ({backend}); keys {[k[0] for k in keys]}, "
                      f"shapes {shapes}, uniform on [-0.37, 0.55), truncated_normal on (-2, 1.5). "
                      "'jax cpu' is jax.random on jax's CPU backend against the default backend."]}


# --------------------------------------------------------------------------- 3. initializers
def _init_cases():
    from jaxinit._src.initializers import _FACTORIES
    from parity_tests.test_same_seed import CASES

    covered = {name for name, _ in CASES}
    extra = [(name, {}) for name in sorted(_FACTORIES) if name not in covered]
    return list(CASES) + extra


def section_initializers(cfg) -> dict:
    k = jax.random.fold_in(jax.random.key(3), 17)
    tk = tr.as_key(k)
    rows = []
    cases = _init_cases()[:2] if cfg.quick else _init_cases()
    for name, kw in cases:
        shape = {"sparse": (6, 9), "eye": (6, 9), "svd": (5, 9)}.get(name, (3, 3, 4, 6))
        # torchinit reads shapes in torch's layout (out, in, *k): its draw on the torch shape is
        # jaxinit's draw on the Flax twin (*k, in, out), transposed (test_same_seed.py)
        perm = [len(shape) - 1, len(shape) - 2, *range(len(shape) - 2)]
        tshape, back = tuple(shape[a] for a in perm), sorted(range(len(shape)), key=lambda i: perm[i])
        for dname, (tdt, jdt) in FLOATS.items():
            if cfg.quick and dname != "float32":
                continue
            row = {"factory": name, "args": ", ".join(f"{a}={v!r}" for a, v in kw.items()), "dtype": dname}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want = np.asarray(getattr(jaxinit, name)(**kw)(k, shape, jdt))
                for dev in ("cpu", "cuda"):
                    if dev not in TORCH_DEVICES:
                        row[f"torchinit {dev}"] = {"skipped": "no CUDA"}
                        continue
                    got = getattr(torchinit, name)(**kw)(tk, tshape, tdt, device=dev).permute(back)
                    row[f"torchinit {dev}"] = compare(got, want, True)
            rows.append(row)
    return {"columns": ["factory", "args", "dtype", "torchinit cpu", "torchinit cuda"], "rows": rows, "cell": _cell,
            "notes": [f"jaxinit.NAME(**args)(key, shape, dtype) on jax's default backend ({jax.default_backend()}) "
                      "vs torchinit.NAME(**args)(same key, torch-layout shape, dtype, device=...), transposed back. Expected (parity suite, CPU): "
                      "bitwise in every dtype except svd with explicit singular values (matmul order: "
                      "abs <= 2e-6 in float32, 1e-14 in float64)."]}


# --------------------------------------------------------------------------- 4. BatchNorm
def section_batchnorm(cfg) -> dict:
    from parity_tests.test_batchnorm import make_data

    steps, c = (3, 4) if cfg.quick else (20, 8)
    rows = []
    for dname in ("float64",) if cfg.quick else ("float32", "float64"):
        tdt, jdt = FLOATS[dname]
        npd = np.float32 if dname == "float32" else np.float64
        xs, gs, x_eval, weight, bias = make_data(4, seed=11, steps=steps, c=c, shape=(16, c, 6, 6))
        xs, gs, x_eval = xs.astype(npd), gs.astype(npd), x_eval.astype(npd)

        def torch_run(mod):
            with torch.no_grad():
                mod.weight.copy_(torch.as_tensor(weight))
                mod.bias.copy_(torch.as_tensor(bias))
            mod.train()
            out = []
            for x, g in zip(xs, gs):
                xt = torch.tensor(x, device=TORCH_DEV, requires_grad=True)
                y = mod(xt)
                (y * torch.tensor(g, device=TORCH_DEV)).sum().backward()
                out.append((y.detach(), xt.grad, mod.weight.grad.clone(), mod.bias.grad.clone()))
                mod.weight.grad = mod.bias.grad = None
            mod.eval()
            with torch.no_grad():
                ev = mod(torch.tensor(x_eval, device=TORCH_DEV))
            return out, (mod.running_mean, mod.running_var), int(mod.num_batches_tracked), ev

        ref = torch_run(torch.nn.BatchNorm2d(c, dtype=tdt, device=TORCH_DEV))
        ours = {"torchinit.BatchNorm": torch_run(torchinit.BatchNorm(c, dtype=tdt, device=TORCH_DEV))}

        bn = jaxinit.BatchNorm(axis=1, param_dtype=jdt)
        v = bn.init(jax.random.key(0), jnp.asarray(xs[0]), use_running_average=False)
        params = {"scale": jnp.asarray(weight, jdt), "bias": jnp.asarray(bias, jdt)}
        stats = v["batch_stats"]

        @jax.jit
        def step(params, stats, x, g):
            def loss(x, params):
                y, upd = bn.apply({"params": params, "batch_stats": stats}, x, use_running_average=False,
                                  mutable=["batch_stats"])
                return jnp.sum(y * g), (y, upd["batch_stats"])

            (_, (y, new)), (dx, dp) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, params)
            return y, dx, dp, new

        out = []
        for x, g in zip(xs, gs):
            y, dx, dp, stats = step(params, stats, jnp.asarray(x), jnp.asarray(g))
            out.append((y, dx, dp["scale"], dp["bias"]))
        ev = bn.apply({"params": params, "batch_stats": stats}, jnp.asarray(x_eval), use_running_average=True)
        ours["jaxinit.BatchNorm (Linen)"] = (out, (stats["mean"], stats["var"]), int(stats["num_batches_tracked"]), ev)

        for name, (o_steps, o_stats, o_n, o_ev) in ours.items():
            r_steps, r_stats, r_n, r_ev = ref
            rows.append({
                "implementation": name, "dtype": dname,
                "train y/dx/dscale/dbias": max(_rel(a, b) for s, t in zip(o_steps, r_steps) for a, b in zip(s, t)),
                "running mean/var": max(_rel(a, b) for a, b in zip(o_stats, r_stats)),
                "eval output": _rel(o_ev, r_ev), "num_batches_tracked equal": o_n == r_n})
    cols = ["implementation", "dtype", "train y/dx/dscale/dbias", "running mean/var", "eval output",
            "num_batches_tracked equal"]
    return {"columns": cols, "rows": rows,
            "notes": [f"Reference: torch.nn.BatchNorm2d on {TORCH_DEV}; jaxinit on jax's {jax.default_backend()}. "
                      f"{steps} training steps (loss sum(y * g)) on (16, {c}, 6, 6) batches with per-channel means "
                      "up to 20 and scales 0.1..10 (parity_tests/test_batchnorm.make_data), then eval. "
                      "Max of max|a - b| / max(1, max|ref|) over steps and tensors. Parity-suite bounds: "
                      "float64 1e-12, float32 1e-4."]}


# --------------------------------------------------------------------------- 5. optimizers
def section_optim(cfg) -> dict:
    import jaxinit.optim as jo
    from parity_tests import test_optim as T

    steps = 10 if cfg.quick else 200
    first_of_factory = [c for i, c in enumerate(T.CONFIGS) if c[1] not in {d[1] for d in T.CONFIGS[:i]}]
    if cfg.quick:  # Adam only
        cases = [(c, "float64") for c in T.CONFIGS if c[0] == "adam"]
    else:  # every configuration in float64, the plain one of each factory in float32
        cases = [(c, "float64") for c in T.CONFIGS] + [(c, "float32") for c in first_of_factory]
    rows = []
    for (cid, name, tcls, kw, gamma), dtype in cases:
        npd, tdt = T.DT[dtype]
        p0, x, y, grads = T._problem(npd, steps=steps)
        lr = kw["lr"]
        jlr = (lambda count, lr=lr, gamma=gamma: lr * gamma ** count) if gamma else lr
        tx = getattr(jo, name)(**{**kw, "lr": jlr})
        sign = -1.0 if kw.get("maximize") else 1.0
        jm, ji, _, _ = T.jax_run(tx, p0, x, y, grads, sign=sign)
        sched = (lambda o, gamma=gamma: torch.optim.lr_scheduler.ExponentialLR(o, gamma)) if gamma else None
        tm, ti, _, _ = T.torch_run(lambda ps, tcls=tcls, kw=kw: tcls(ps, **kw), p0, x, y, grads, tdt, sched,
                                   sign=sign)
        rows.append({"config": cid, "torch class": tcls.__name__, "dtype": dtype,
                     "model gradients": T.rel_diff(jm, tm), "injected gradients": T.rel_diff(ji, ti)})
    return {"columns": ["config", "torch class", "dtype", "model gradients", "injected gradients"], "rows": rows,
            "notes": [f"jaxinit.optim (jitted scan on jax's {jax.default_backend()}) vs torch.optim on "
                      f"{T.TORCH_DEVICE}, {steps} steps of parity_tests/test_optim.py's problem, "
                      "max|a - b| / max|b| over the parameters. Parity-suite bounds (500 steps): float64 1e-12, "
                      "float32 1e-3."]}


# --------------------------------------------------------------------------- 6. twin models
def section_twins(cfg) -> dict:
    from parity_tests import test_twins as T

    n_steps = 3 if cfg.quick else 20
    models = ("mlp",) if cfg.quick else ("lenet_bn", "resnet_block")  # quick: the fastest compile
    dtypes = ("float64",) if cfg.quick else ("float64", "float32")
    rows = []
    lr = 0.05
    for name in models:
        image = T.MODELS[name][4]
        for dtype in dtypes:
            tm, lm, variables, _nm, x, xf, out_t = T._setup(name, dtype)
            tm = tm.to(TORCH_DEV)
            rep = jaxinit.twin_check(tm, lm, x, flax_inputs=xf, output_transform=out_t, variables=variables)
            rng = np.random.default_rng(1)
            xs = [rng.standard_normal(x.shape).astype(dtype) for _ in range(n_steps)]
            with torch.no_grad():
                tm.eval()
                ys = [tm(torch.from_numpy(xb).to(TORCH_DEV)).cpu().numpy() for xb in xs]
            ys = [yb + rng.standard_normal(yb.shape).astype(dtype) for yb in ys]
            tm.train()
            for xb, yb in zip(xs, ys):  # plain SGD, as test_twins._torch_train, on torch's device
                tm.zero_grad()
                loss = ((tm(torch.from_numpy(xb).to(TORCH_DEV)) - torch.from_numpy(yb).to(TORCH_DEV)) ** 2).mean()
                loss.backward()
                with torch.no_grad():
                    for p in tm.parameters():
                        p -= lr * p.grad
            lv = T._linen_train(lm, variables, [jnp.asarray(T._to_flax_layout(xb, image)) for xb in xs],
                                [jnp.asarray(yb) for yb in ys], lr, out_t)
            got = jaxinit.to_torch_state_dict(lv, tm.cpu())
            worst = {"params": 0.0, "running": 0.0}
            for k, a in tm.state_dict().items():
                if k.endswith("num_batches_tracked"):
                    continue
                d = float((a.double() - got[k].double()).abs().max())
                worst["running" if "running" in k else "params"] = max(worst["running" if "running" in k else
                                                                           "params"], d)
            rows.append({"model": name, "dtype": dtype,
                         "eval output": rep["eval"]["output"], "train output": rep["train"]["output"],
                         "train grads": rep["train"]["grad"], "train batch_stats": rep["train"].get("batch_stats"),
                         f"params after {n_steps} SGD": worst["params"],
                         f"running stats after {n_steps} SGD": worst["running"]})
    cols = ["model", "dtype", "eval output", "train output", "train grads", "train batch_stats",
            f"params after {n_steps} SGD", f"running stats after {n_steps} SGD"]
    return {"columns": cols, "rows": rows,
            "notes": [f"torch on {TORCH_DEV} vs Flax Linen with jaxinit.BatchNorm on jax's {jax.default_backend()} "
                      "(models of parity_tests/test_twins.py). Max absolute differences. Parity-suite bounds: "
                      "float64 1e-10; float32 2e-4 (one pass) and 5e-4 (20 steps)."]}


# --------------------------------------------------------------------------- 7. speed
def _speed_lenet(cfg, rows):
    from benchmarks import bench_lenet

    # quick: one step of 64 per epoch, the program shape (batch 64, one step per call, lr 1.0) of
    # test_examples.py's both-mode run, so within a suite run the persistent compilation cache can
    # serve one of the two from the other (a smaller, faster smoke run either way)
    examples, epochs = (64, 2) if cfg.quick else (61440, 3)
    sizes = {"jax": (64,) if cfg.quick else (128, 256, 512, 1024, 2048, 4096),
             "torch": (64,) if cfg.quick else (256, 1024, 4096)}
    best = {}
    res = {}
    for fw, batch_sizes in sizes.items():
        for bs in batch_sizes:
            r = bench_lenet.child(fw, examples, epochs, bs)
            res[(fw, bs)] = r["steady_ex_per_s"]
            if r["steady_ex_per_s"] > best.get(fw, (0, 0))[0]:
                best[fw] = (r["steady_ex_per_s"], bs)
    for bs in sorted({b for _, b in res}):
        j, t = res.get(("jax", bs)), res.get(("torch", bs))
        rows.append({"benchmark": f"LeNet+BN training, batch {bs}", "ours": _fmt(j, "ex/s"),
                     "upstream": _fmt(t, "ex/s (torch path)"),
                     "ratio": (j / t) if j and t else None, "jax_ex_per_s": j, "torch_ex_per_s": t})
    for fw, (v, bs) in best.items():
        rows.append({"benchmark": f"LeNet+BN training, best batch size ({fw} path)", "ours": _fmt(v, "ex/s"),
                     "upstream": f"batch {bs}", "ratio": None, f"{fw}_ex_per_s": v, "batch_size": bs})
    return f"LeNet+BN: examples/lenet_bn.py's training loops on {examples} digits images, {epochs} epochs, " \
           "median examples/s after the first epoch; ratio = JAX path / torch path"


def _fmt(v, unit):
    return "n/a" if v is None else f"{v:,.0f} {unit}"


def _speed_batchnorm(cfg, rows):
    from benchmarks import bench_batchnorm

    args = SimpleNamespace(warmup=1 if cfg.quick else 3, repeats=1 if cfg.quick else 10, filter="", target=1.1)
    shapes = [(8, 8, 8, 16)] if cfg.quick else bench_batchnorm.SHAPES
    jargs = SimpleNamespace(**{**vars(args), "filter": "torch-semantics vs flax default" if cfg.quick else ""})
    for r in bench_batchnorm.bench_jax(jargs, shapes) + bench_batchnorm.bench_torch(args, shapes):
        rows.append({"benchmark": f"BatchNorm train step {r['group']} {tuple(r['shape'])}: {r['case']}",
                     "ours": f"{r['ours_ms']:.3f} ms", "upstream": f"{r['upstream_ms']:.3f} ms",
                     "ratio": r["ours_ms"] / r["upstream_ms"]})
    return "BatchNorm: benchmarks/bench_batchnorm.py's training step (forward + backward + statistics); " \
           "ratio = ours / upstream, median of alternating calls"


def _speed_random(cfg, rows):
    n = (1 << 12) if cfg.quick else (1 << 24)
    shape = (n,)
    warm, rep = (1, 1) if cfg.quick else (2, 7)
    jk = jax.random.key(0)
    tk = tr.as_key(jk)
    for sname, tfn, ref, jfn in (
            ("uniform", tr.uniform, torch.rand, jax.jit(lambda k: jax.random.uniform(k, shape, jnp.float32))),
            ("normal", tr.normal, torch.randn, jax.jit(lambda k: jax.random.normal(k, shape, jnp.float32)))):
        jms = _median_ms(lambda: jfn(jk).block_until_ready(), warm, rep)
        for dev in TORCH_DEVICES:
            def ours(dev=dev):
                tfn(tk, shape, torch.float32, device=dev)
                _sync(dev)

            def theirs(dev=dev):
                ref(shape, device=dev)
                _sync(dev)
            oms, tms = _median_ms(ours, warm, rep), _median_ms(theirs, warm, rep)
            rows.append({"benchmark": f"keyed {sname} {n} float32, torchinit.random on {dev} vs torch.{ref.__name__}",
                         "ours": f"{oms:.2f} ms", "upstream": f"{tms:.2f} ms", "ratio": oms / tms})
            rows.append({"benchmark": f"keyed {sname} {n} float32, torchinit.random on {dev} vs jax.random "
                                      f"({jax.default_backend()}, jitted)",
                         "ours": f"{oms:.2f} ms", "upstream": f"{jms:.2f} ms", "ratio": oms / jms})
    return "random: eager torchinit.random (torch.compile off) vs torch's own generator on the same device and " \
           "jitted jax.random (compilation excluded); medians, synchronized"


def _speed_optim(cfg, rows):
    import optax

    import jaxinit.optim as jo
    import torchinit.optim as to
    from benchmarks.bench_init import time_pair

    n = 80_000 if cfg.quick else 100_000_000
    warm, rep = (1, 1) if cfg.quick else (3, 10)
    sizes = [n // 8] * 8
    keys = jax.random.split(jax.random.key(0), len(sizes))
    grads = [jax.random.normal(k, (m,), jnp.float32) for k, m in zip(keys, sizes)]

    def jax_runner(tx):
        step = jax.jit(lambda p, s, g: (lambda u, s2: (optax.apply_updates(p, u), s2))(*tx.update(g, s, p)),
                       donate_argnums=(0, 1))
        box = {"p": [jnp.ones_like(g) for g in grads]}
        box["s"] = tx.init(box["p"])

        def run(i):
            box["p"], box["s"] = step(box["p"], box["s"], grads)
            return box["p"]
        return run

    pairs = {"adam": (jo.adam(1e-3), optax.adam(1e-3)),
             "sgd momentum+wd": (jo.sgd(0.1, momentum=0.9, weight_decay=1e-4),
                                 optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, 0.9)))}
    for name, (ours_tx, up_tx) in pairs.items():
        if cfg.quick and name != "adam":
            continue
        o, u = time_pair(jax_runner(ours_tx), jax_runner(up_tx), jax.block_until_ready, warm, rep)
        rows.append({"benchmark": f"optimizer step {n:,} params float32: jaxinit.optim.{name} vs optax "
                                  f"({jax.default_backend()})",
                     "ours": f"{statistics.median(o):.2f} ms", "upstream": f"{statistics.median(u):.2f} ms",
                     "ratio": statistics.median(o) / statistics.median(u)})
    grads.clear()  # free the JAX gradients before the torch ones (the runners above are done)
    gen = torch.Generator().manual_seed(0)
    tgrads = [torch.randn(m, generator=gen).to(TORCH_DEV) for m in sizes]
    T = torch.optim
    for name, ours_f, up_f in (
            ("adam", lambda p: to.adam(p, 1e-3), lambda p, **k: T.Adam(p, 1e-3, **k)),
            ("sgd momentum+wd", lambda p: to.sgd(p, 0.1, momentum=0.9, weight_decay=1e-4),
             lambda p, **k: T.SGD(p, 0.1, momentum=0.9, weight_decay=1e-4, **k))):
        if cfg.quick and name != "adam":
            continue
        for mode in ("foreach", "fused"):
            def make(fac):
                ps = [torch.ones(m, device=TORCH_DEV, requires_grad=True) for m in sizes]
                for p, g in zip(ps, tgrads):
                    p.grad = g
                opt = fac(ps)
                return lambda i: opt.step()
            try:
                up = make(lambda p: up_f(p, **{mode: True}))
            except (RuntimeError, ValueError, TypeError) as err:  # fused needs a device/dtype torch supports
                rows.append({"benchmark": f"optimizer step {n:,} params: torchinit.optim.{name} vs torch {mode}",
                             "ours": "", "upstream": f"skipped ({str(err).splitlines()[0][:80]})", "ratio": None})
                continue
            o, u = time_pair(make(ours_f), up, lambda _: _sync(TORCH_DEV), warm, rep)
            rows.append({"benchmark": f"optimizer step {n:,} params float32: torchinit.optim.{name} vs "
                                      f"torch.optim {mode} ({TORCH_DEV})",
                         "ours": f"{statistics.median(o):.2f} ms", "upstream": f"{statistics.median(u):.2f} ms",
                         "ratio": statistics.median(o) / statistics.median(u)})
    return f"optimizers: one update step on {n:,} float32 parameters in 8 tensors (jitted, donated, on jax's " \
           "device; torch: opt.step() with gradients preassigned); ratio = ours / upstream"


def section_speed(cfg) -> dict:
    rows, notes = [], ["Speed is measured under the parity settings (JAX matmul precision 'highest', torch TF32 "
                       "off), so both frameworks compute the same float32 arithmetic."]
    for part in (_speed_lenet, _speed_batchnorm, _speed_random, _speed_optim):
        if cfg.only_speed and part.__name__.removeprefix("_speed_") not in cfg.only_speed:
            continue
        notes.append(part(cfg, rows))
    return {"columns": ["benchmark", "ours", "upstream", "ratio"], "rows": rows, "notes": notes}


SECTIONS = {
    "environment": section_environment,
    "same_seed": section_same_seed,
    "initializers": section_initializers,
    "batchnorm": section_batchnorm,
    "twins": section_twins,
    "syncbn": _device_syncbn.section,
    "precision": _device_precision.section,
    "speed": section_speed,
    "optim": section_optim,  # last: the most compilations (a cut-short run still has the rest)
}
TITLES = {
    "environment": "Environment",
    "same_seed": "Same seed: torchinit.random vs jax.random",
    "initializers": "Same seed: every initializer factory, torchinit vs jaxinit",
    "batchnorm": "BatchNorm (torch convention) vs torch.nn.BatchNorm2d",
    "optim": "Optimizers: jaxinit.optim vs torch.optim",
    "twins": "Twin models: torch vs Flax Linen",
    "syncbn": "SyncBatchNorm: torchinit and jaxinit vs torch's SyncBatchNorm",
    "precision": "Precision settings: the same twin at each torch setting and its JAX contract",
    "speed": "Speed (ratios measured in this run)",
}


# --------------------------------------------------------------------------- report
def _fmt_value(v, cell) -> str:
    if isinstance(v, dict):
        return cell(v) if cell else json.dumps(v)
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}" if v != 0 else "0"
    return str(v)


def to_markdown(report: dict) -> str:
    env = report["sections"].get("environment", {}).get("data", {})
    device = env.get("torch_cuda_device") or env.get("jax_device_kind") or "?"
    lines = [f"# Device report: {device}", "",
             f"Generated {report['started']} in {report['seconds']:.0f} s by "
             f"`python -m parity_tests.device_report{' --quick' if report['quick'] else ''}`.", ""]
    for name, sec in report["sections"].items():
        lines += [f"## {TITLES[name]}", ""]
        status = sec.get("status")
        if status == "skipped":
            lines += [f"Skipped: {sec['reason']}", ""]
            continue
        if status == "error":
            lines += [f"**Section failed** ({sec['seconds']:.1f} s):", "", "```text", sec["error"].rstrip(), "```", ""]
            continue
        cols = sec["columns"]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        for row in sec["rows"]:
            lines.append("| " + " | ".join(_fmt_value(row.get(c), sec.get("cell")) for c in cols) + " |")
        lines.append("")
        for note in sec.get("notes", []):
            lines += [note, ""]
        lines += [f"({sec['seconds']:.1f} s)", ""]
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not callable(v)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def run(out_dir: str, quick: bool = False, only=None, only_speed=None, launch_ranks: bool | None = None) -> dict:
    """Every section (or those of ``only``) into ``out_dir``; ``launch_ranks``: whether the ``syncbn``
    section starts rank processes (None: unless ``quick``)."""
    cfg = SimpleNamespace(quick=quick, settings=parity_settings(), only_speed=only_speed or (),
                          launch_ranks=(not quick) if launch_ranks is None else launch_ranks)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    t_all = time.perf_counter()
    sections = {}
    for name, fn in SECTIONS.items():
        if only and name not in only and name != "environment":
            continue
        print(f"[device_report] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            sec = fn(cfg)
            sec["status"] = "ok"
        except Exception:  # noqa: BLE001 - a crashed section is reported (and makes the exit status 1)
            sec = {"status": "error", "error": traceback.format_exc()}
            print(sec["error"], file=sys.stderr, flush=True)
        sec["seconds"] = time.perf_counter() - t0
        sections[name] = sec
        print(f"[device_report] {name}: {sec['status']} in {sec['seconds']:.1f} s", flush=True)
        report = {"started": started, "quick": quick, "seconds": time.perf_counter() - t_all, "sections": sections}
        _write(out_dir, report)  # after every section: a run cut short by a timeout still leaves its figures
    return report


def _write(out_dir: str, report: dict) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(to_markdown(report))
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(_jsonable(report), f, indent=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", required=True, help="directory for report.md and report.json")
    p.add_argument("--quick", action="store_true", help="small sizes: seconds on a CPU (what the test suite runs)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument("--only-speed", nargs="+", choices=("lenet", "batchnorm", "random", "optim"),
                   help="run only these parts of the speed section")
    p.add_argument("--launch-ranks", action=argparse.BooleanOptionalAction, default=None,
                   help="syncbn: start the torch rank processes (gloo; NCCL with >= 2 GPUs); default: unless --quick")
    a = p.parse_args(argv)
    report = run(a.out, a.quick, a.only, a.only_speed, a.launch_ranks)
    failed = [n for n, s in report["sections"].items() if s["status"] == "error"]
    print(f"[device_report] wrote {os.path.join(a.out, 'report.md')} and report.json in {report['seconds']:.0f} s"
          + (f"; FAILED sections: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
