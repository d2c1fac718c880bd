"""Optimizer state at scale: torch optimizer state files -> optax state in a NamedSharding, and back.

An Adam state of one ``N x N`` float32 weight and its bias (``exp_avg``, ``exp_avg_sq``, ``step``)
is written as jaxinit's sharded optimizer safetensors (``optimizer.safetensors.index.json``), then,
each in a fresh process with 4 CPU devices:

- ``plain``: the upstream route, ``safetensors.numpy.load_file`` of every shard, then
  ``jax.device_put`` of each buffer into the same sharding;
- ``load``: ``jaxinit.optim.load_optimizer_state`` (each device's slice read from the file);
- ``save``: ``jaxinit.optim.save_optimizer_state`` of the sharded state (shard by shard).

Peak resident memory is VmHWM above the warmed-up baseline, as a multiple of the largest tensor;
for the loads it includes the result itself (the state: 2x the largest tensor here).

    python benchmarks/bench_optimizer_state.py            # N = 8192: 512 MiB of state
    python benchmarks/bench_optimizer_state.py --n 2048   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not __package__:  # `python benchmarks/bench_optimizer_state.py`: the repository root, for `benchmarks.*`
    sys.path.insert(0, ROOT)

from benchmarks.bench_checkpoint import _reset_peak, _status  # noqa: E402


def generate(path: str, n: int) -> None:
    from _jaxinit import optimizer_files as of
    from _jaxinit.arrays import to_numpy

    rng = np.random.default_rng(0)
    state = {0: {"step": np.array(3.0, np.float32), "exp_avg": rng.standard_normal((n, n), dtype=np.float32),
                 "exp_avg_sq": rng.random((n, n), dtype=np.float32)},
             1: {"step": np.array(3.0, np.float32), "exp_avg": rng.standard_normal((n,), dtype=np.float32),
                 "exp_avg_sq": rng.random((n,), dtype=np.float32)}}
    sd = {"state": state, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                            "params": [0, 1], "param_names": ["fc.weight", "fc.bias"]}]}
    of.write_optimizer_safetensors(path, sd, to_numpy, "bench", {"class": "Adam"}, max_shard_bytes=n * n * 4)


def child(mode: str, src: str, dst: str, n: int) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxinit.optim as jo

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("d",))
    sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    params = {"fc.weight": jax.ShapeDtypeStruct((n, n), jnp.float32, sharding=sh),
              "fc.bias": jax.ShapeDtypeStruct((n,), jnp.float32, sharding=sh)}
    tx = jo.adam(1e-3)
    warm = tempfile.mkdtemp()
    try:  # the first-call allocations of jax / safetensors are not the measured step's
        generate(os.path.join(warm, "w"), 8)
        small = {"fc.weight": jax.ShapeDtypeStruct((8, 8), jnp.float32, sharding=sh),
                 "fc.bias": jax.ShapeDtypeStruct((8,), jnp.float32, sharding=sh)}
        jo.save_optimizer_state(os.path.join(warm, "o"), jo.load_optimizer_state(os.path.join(warm, "w"), small, tx),
                                small)
    finally:
        shutil.rmtree(warm)
    state = jo.load_optimizer_state(src, params, tx) if mode == "save" else None
    _reset_peak()
    base = _status("VmRSS")
    t = time.perf_counter()
    if mode == "plain":
        import safetensors.numpy

        arrays: dict = {}
        for name in sorted(os.listdir(src)):
            if name.endswith(".safetensors"):
                arrays.update(safetensors.numpy.load_file(os.path.join(src, name)))
        out = {k: jax.device_put(v, sh if v.ndim else None) for k, v in arrays.items()}
        del arrays
        jax.block_until_ready(out)
    elif mode == "load":
        out = jo.load_optimizer_state(src, params, tx)
        jax.block_until_ready(out)
    elif mode == "save":
        jo.save_optimizer_state(dst, state, params, max_shard_size=n * n * 4)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - t
    peak = _status("VmHWM")
    total = 2 * (n * n + n) * 4 + 8
    return {"mode": mode, "seconds": seconds, "bytes": total, "largest": n * n * 4, "peak_above_baseline": peak - base,
            "gb_per_s": total / seconds / 1e9}


def measure(mode: str, src: str, dst: str, n: int) -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import json, sys; sys.path.insert(0, %r); from benchmarks.bench_optimizer_state import child; "
            "print('RESULT', json.dumps(child(%r, %r, %r, %d)))" % (ROOT, mode, src, dst, n))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(f"{mode} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads([ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="bench_optimizer_state_")
    try:
        src = os.path.join(root, "opt")
        generate(src, args.n)
        rows = [measure(m, src, os.path.join(root, "back"), args.n) for m in ("plain", "load", "save")]
        print(f"optimizer state {rows[0]['bytes'] / 2**20:.0f} MiB, largest tensor {rows[0]['largest'] / 2**20:.0f} MiB")
        print("| case | seconds | GB/s | ratio vs plain | peak above baseline | x largest tensor |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['mode']} | {r['seconds']:.2f} | {r['gb_per_s']:.2f} | {r['gb_per_s'] / rows[0]['gb_per_s']:.2f} | "
                  f"{r['peak_above_baseline'] / 2**20:.0f} MiB | {r['peak_above_baseline'] / r['largest']:.2f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
