"""torchinit.random (JAX keys in torch) speed, as ratios against jax.random and torch.rand/randn.

For N float32 values (default 16M): the torchinit keyed path (eager, and with
``torch.compile`` when ``--compile``), ``jax.random`` (jitted, compilation
excluded, ``block_until_ready``) and ``torch.rand``/``torch.randn`` (torch's own
Philox/MT generator: the cost floor of sampling in torch), timed in the same
run. Median of ``--repeats`` after ``--warmup``. The keyed output is checked
against jax.random bit for bit on the same run (and compiled against eager).
Nothing here asserts a speed.

    python benchmarks/bench_random.py                 # 16M float32
    python benchmarks/bench_random.py --n 1000000 --compile
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from bench_convert import _time as _runs  # noqa: E402 (the same warmup-then-repeats timer)


def _time(fn, warmup, repeats):
    """Median milliseconds of ``repeats`` calls after ``warmup`` calls."""
    return statistics.median(_runs(fn, repeats, warmup)) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16 * 1024 * 1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd keyed path")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import torchinit.random as tr

    n, dev = (args.n,), args.device
    key = jax.random.key(0)
    tkey = tr.as_key(key)
    rows = []
    print(f"# {platform.platform()} | torch {torch.__version__} threads={torch.get_num_threads()} | "
          f"jax {jax.__version__} {jax.default_backend()} | n={args.n} float32 | median of {args.repeats}")
    for name, tfn, jfn, ref in (
        ("uniform", tr.uniform, jax.jit(lambda k: jax.random.uniform(k, n, jnp.float32)),
         lambda: torch.rand(n, device=dev)),
        ("normal", tr.normal, jax.jit(lambda k: jax.random.normal(k, n, jnp.float32)),
         lambda: torch.randn(n, device=dev)),
    ):
        tr.set_compile(False)
        eager = _time(lambda: tfn(tkey, n, device=dev), args.warmup, args.repeats)
        jax_ms = _time(lambda: jfn(key).block_until_ready(), args.warmup, args.repeats)
        torch_ms = _time(ref, args.warmup, args.repeats)
        got = tfn(tkey, n, device=dev).cpu().numpy()
        same = bool(np.array_equal(got, np.asarray(jfn(key))))
        rows.append((name, "eager", eager, jax_ms, torch_ms, same))
        if args.compile:
            tr.set_compile(True)
            t0 = time.perf_counter()
            first = tfn(tkey, n, device=dev)
            compile_s = time.perf_counter() - t0
            comp = _time(lambda: tfn(tkey, n, device=dev), args.warmup, args.repeats)
            same_c = bool(np.array_equal(first.cpu().numpy(), got))
            rows.append((name, f"compiled (first call {compile_s:.0f} s)", comp, jax_ms, torch_ms, same_c))
            tr.set_compile(False)
    print(f"{'sampler':8s} {'torchinit path':28s} {'ms':>9s} {'jax ms':>9s} {'torch ms':>9s} "
          f"{'/jax':>7s} {'/torch':>7s}  bitwise")
    for name, path, ms, jms, tms, same in rows:
        print(f"{name:8s} {path:28s} {ms:9.1f} {jms:9.1f} {tms:9.1f} {ms / jms:7.2f} {ms / tms:7.2f}  {same}")


if __name__ == "__main__":
    main()
