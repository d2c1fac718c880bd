"""Keyed dropout speed: torchinit's Flax-mask dropout against torch.nn.functional.dropout.

On a (256, 1024) float32 input by default, eager mode, the same run: torch's own dropout
(its Philox/MT generator, the cost floor), ``torchinit.rngs.dropout`` with a JAX key (the
threefry mask Flax draws, Flax's scaling), forward only and forward + backward, and the
jitted ``flax.linen.Dropout`` for reference (compilation excluded). The keyed output is
checked against Flax bit for bit first. Nothing here asserts a speed; the ratio is
keyed / torch (target: within 3x).

    python benchmarks/bench_dropout.py
    python benchmarks/bench_dropout.py --shape 64 512 --repeats 50
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from bench_convert import _time as _runs  # noqa: E402 (the same warmup-then-repeats timer)


def _ms(fn, warmup, repeats):
    return statistics.median(_runs(fn, repeats, warmup)) * 1e3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--p", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args(argv)

    import flax.linen as nn
    import jax
    import numpy as np
    import torch

    import torchinit.random as tr
    import torchinit.rngs as trn

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
    ms = {name: _ms(fn, args.warmup, args.repeats) for name, fn in cases.items()}
    print(f"# {platform.platform()} | torch {torch.__version__} threads={torch.get_num_threads()} | "
          f"jax {jax.__version__} | shape {shape} float32, p={p} | median of {args.repeats} (ms)")
    print("| case | ms | ratio vs torch |")
    print("|---|---|---|")
    for name, v in ms.items():
        base = ms["torch F.dropout fwd+bwd"] if "bwd" in name else ms["torch F.dropout"]
        print(f"| {name} | {v:.3f} | {v / base:.2f}x |")


if __name__ == "__main__":
    main()
