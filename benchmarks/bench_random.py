"""torchinit.random (JAX keys in torch) speed, as ratios against torch's eager samplers and jax.random.

For N float32 values (default 1M and 16M): the torchinit keyed path (eager, and with
``torch.compile`` when ``--compile``) of ``uniform``, ``normal`` and ``bernoulli(0.3)``,
``jax.random`` (jitted, compilation excluded, ``block_until_ready``) and torch's own eager
samplers ``torch.rand`` / ``torch.randn`` / ``torch.bernoulli`` (a float32 tensor of p: the
cost floor of sampling in torch), timed in the same run. Median of ``--repeats`` after
``--warmup``. The keyed output is checked against jax.random bit for bit in the same run
(and compiled against eager). ``--threads`` sets torch's intra-op threads (default: torch's).
Nothing here asserts a speed. Targets (issue 26): keyed normal <= 5x ``torch.randn``, keyed
uniform and bernoulli <= 2x ``torch.rand`` / ``torch.bernoulli``, eager, float32, 16M.

    python benchmarks/bench_random.py                        # 1M and 16M float32
    python benchmarks/bench_random.py --n 1000000 --compile --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

if not __package__:  # `python benchmarks/bench_random.py`: the repository root, for `benchmarks.*` and the source tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.timing import time_calls  # noqa: E402 (the warmup-then-repeats timer every benchmark shares)


def _time(fn, warmup, repeats):
    """Median milliseconds of ``repeats`` calls after ``warmup`` calls."""
    return statistics.median(time_calls(fn, repeats, warmup)) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1 << 20, 16 * 1024 * 1024])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
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

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dev = args.device
    key = jax.random.key(0)
    tkey = tr.as_key(key)
    rows = []
    print(f"# {platform.platform()} | torch {torch.__version__} threads={torch.get_num_threads()} | "
          f"jax {jax.__version__} {jax.default_backend()} | float32 | median of {args.repeats}")
    for size in args.n:
        n = (size,)
        p = torch.full(n, 0.3, device=dev)
        samplers = (
            ("uniform", lambda: tr.uniform(tkey, n, device=dev),
             jax.jit(lambda k: jax.random.uniform(k, n, jnp.float32)), lambda: torch.rand(n, device=dev), "torch.rand"),
            ("normal", lambda: tr.normal(tkey, n, device=dev),
             jax.jit(lambda k: jax.random.normal(k, n, jnp.float32)), lambda: torch.randn(n, device=dev), "torch.randn"),
            ("bernoulli", lambda: tr.bernoulli(tkey, torch.tensor(0.3, device=dev), n),
             jax.jit(lambda k: jax.random.bernoulli(k, jnp.float32(0.3), n)), lambda: torch.bernoulli(p),
             "torch.bernoulli"),
        )
        for name, tfn, jfn, ref, ref_name in samplers:
            tr.set_compile(False)
            eager = _time(tfn, args.warmup, args.repeats)
            jax_ms = _time(lambda: jfn(key).block_until_ready(), args.warmup, args.repeats)
            torch_ms = _time(ref, args.warmup, args.repeats)
            got = tfn().cpu().numpy()
            same = bool(np.array_equal(got, np.asarray(jfn(key))))
            rows.append((size, name, "eager", eager, jax_ms, torch_ms, ref_name, same))
            if args.compile:
                tr.set_compile(True)
                t0 = time.perf_counter()
                first = tfn()
                compile_s = time.perf_counter() - t0
                comp = _time(tfn, args.warmup, args.repeats)
                same_c = bool(np.array_equal(first.cpu().numpy(), got))
                rows.append((size, name, f"compiled (first {compile_s:.0f} s)", comp, jax_ms, torch_ms, ref_name,
                             same_c))
                tr.set_compile(False)
    print(f"{'n':>9s} {'sampler':9s} {'torchinit path':22s} {'ms':>8s} {'jax ms':>8s} {'torch ms':>8s} "
          f"{'/jax':>6s} {'/torch':>6s}  reference        bitwise")
    for size, name, path, ms, jms, tms, ref_name, same in rows:
        print(f"{size:9d} {name:9s} {path:22s} {ms:8.1f} {jms:8.1f} {tms:8.1f} {ms / jms:6.2f} {ms / tms:6.2f}  "
              f"{ref_name:16s} {same}")
    return rows


if __name__ == "__main__":
    main()
