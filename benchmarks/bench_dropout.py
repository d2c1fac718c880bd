"""Keyed dropout speed: torchinit's Flax-mask dropout against torch.nn.functional.dropout.

On a (256, 1024) float32 input by default, eager mode, the same run: torch's own dropout
(its Philox/MT generator, the cost floor), ``torchinit.rngs.dropout`` with a JAX key (the
threefry mask Flax draws, Flax's scaling), forward only and forward + backward, and the
jitted ``flax.linen.Dropout`` for reference (compilation excluded). The keyed output is
checked against Flax bit for bit first. The cases are timed round-robin (one call of each
per round, median of ``--repeats`` rounds), so load on a shared machine hits them alike.
Nothing here asserts a speed; the ratio is keyed / torch (target: within 3x).

    python benchmarks/bench_dropout.py
    python benchmarks/bench_dropout.py --shape 64 512 --repeats 50
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import time  # noqa: E402


def _interleaved_ms(cases: dict, warmup: int, repeats: int) -> dict:
    """Median milliseconds per case, the cases timed round-robin (one call each per round), so a
    busy machine slows them alike and the ratios stay meaningful."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    samples: dict = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) * 1e3 for name, v in samples.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args(argv)

    import flax.linen as nn
    import jax
    import numpy as np
    import torch

    import torchinit.random as tr
    import torchinit.rngs as trn

    if args.threads:
        torch.set_num_threads(args.threads)
    shape, p = tuple(args.shape), args.p
    x = torch.randn(shape)
    key = jax.random.key(0)
    tkey = tr.as_key(key)
    flax_drop = jax.jit(lambda x, k: nn.Dropout(p).apply({}, x, deterministic=False, rng=k))
    ref = np.asarray(flax_drop(x.numpy(), key))
    got = trn.dropout(x, p, key=tkey).numpy()
    assert np.array_equal(ref.view(np.uint32), got.view(np.uint32)), "keyed dropout != flax.linen.Dropout"

    xg = x.clone().requires_grad_()
    g = torch.ones(shape)

    def fwd_bwd(fn):
        def run():
            xg.grad = None
            fn(xg).backward(g)
        return run

    cases = {
        "torch F.dropout": lambda: torch.nn.functional.dropout(x, p, True),
        "keyed (torchinit)": lambda: trn.dropout(x, p, key=tkey),
        "torch F.dropout fwd+bwd": fwd_bwd(lambda t: torch.nn.functional.dropout(t, p, True)),
        "keyed fwd+bwd": fwd_bwd(lambda t: trn.dropout(t, p, key=tkey)),
        "flax.linen.Dropout (jit)": lambda: flax_drop(x.numpy(), key).block_until_ready(),
    }
    ms = _interleaved_ms(cases, args.warmup, args.repeats)
    print(f"# {platform.platform()} | torch {torch.__version__} threads={torch.get_num_threads()} | "
          f"jax {jax.__version__} | shape {shape} float32, p={p} | median of {args.repeats}, interleaved (ms)")
    print("| case | ms | ratio vs torch |")
    print("|---|---|---|")
    for name, v in ms.items():
        base = ms["torch F.dropout fwd+bwd"] if "bwd" in name else ms["torch F.dropout"]
        print(f"| {name} | {v:.3f} | {v / base:.2f}x |")


if __name__ == "__main__":
    main()
