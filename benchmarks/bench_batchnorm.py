"""BatchNorm training-step speed, as RATIOS against the upstream module timed in the same run.

One training step = forward in training mode + backward to the input, scale and
bias (loss ``sum(y * g)``) + the running-statistics update:

- ``jax``: ``jax.jit`` of ``value_and_grad`` through ``Module.apply(...,
  use_running_average=False, mutable=['batch_stats'])``, NHWC input, returning the
  gradients and the new statistics; compilation in the warmup, every call ends in
  ``block_until_ready``. Pairs: ``jaxinit.BatchNorm()`` (PyTorch semantics, the
  'shifted' one-pass variance) vs ``flax.linen.BatchNorm()`` (one-pass variance, its
  default) and vs ``flax.linen.BatchNorm(use_fast_variance=False)`` (two-pass);
  ``jaxinit.BatchNorm(variance='two_pass')`` (the algorithm of the torch convention
  before the 'shifted' variance) vs ``flax.linen.BatchNorm()``; and
  ``jaxinit.BatchNorm.from_convention('flax')`` vs ``flax.linen.BatchNorm()``.
- ``torch``: ``y = m(x); y.backward(g)`` in train mode. Pairs:
  ``torchinit.BatchNorm(C)`` vs ``torch.nn.BatchNorm2d(C)`` on NCHW;
  ``torchinit.BatchNorm(C, axis=-1)`` on an NHWC tensor vs ``torch.nn.BatchNorm2d``
  on the same memory as a channels_last NCHW view; and
  ``torchinit.BatchNorm.from_convention('flax', C)`` (its one-pass statistics, then
  torch's kernels) vs ``torch.nn.BatchNorm2d``.

For jax the ratio of the bytes XLA's cost analysis counts for the two compiled steps
(``bytes``) is printed too: a figure the load of a shared machine does not move.

Shapes (N, H, W, C): (128, 28, 28, 64) and (256, 56, 56, 128) (``--small``: the
first only). Ours and upstream alternate call by call, ``--warmup`` calls are
dropped and the median of ``--repeats`` is reported with ``ratio = ours /
upstream`` (cases above ``--target``, 1.1x, are marked ``!``). JAX and torch run
in separate child processes. Nothing here asserts a speed.

    python benchmarks/bench_batchnorm.py --small --repeats 10
    python benchmarks/bench_batchnorm.py --json bn.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if not __package__:  # `python benchmarks/bench_batchnorm.py`: the repository root, for `benchmarks.*` and the source tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_init import _median, time_pair  # noqa: E402  (same timing method as the initializer benchmark)

SHAPES = [(128, 28, 28, 64), (256, 56, 56, 128)]


def bench_jax(args, shapes):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    import jaxinit

    pairs = [
        ("torch-semantics vs flax default", lambda: jaxinit.BatchNorm(), lambda: nn.BatchNorm()),
        ("torch-semantics vs flax two-pass", lambda: jaxinit.BatchNorm(),
         lambda: nn.BatchNorm(use_fast_variance=False)),
        ("torch-semantics two_pass vs flax default", lambda: jaxinit.BatchNorm(variance="two_pass"),
         lambda: nn.BatchNorm()),
        ("flax convention vs flax default", lambda: jaxinit.BatchNorm.from_convention("flax"),
         lambda: nn.BatchNorm()),
    ]

    def make_step(module, x):
        variables = module.init(jax.random.key(0), x, use_running_average=False)

        @jax.jit
        def step(variables, x, g):
            def loss(x, params):
                y, upd = module.apply({**variables, "params": params}, x, use_running_average=False,
                                      mutable=["batch_stats"])
                return jnp.sum(y * g), upd

            (_, upd), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, variables["params"])
            return grads, upd

        cost = step.lower(variables, x, g).compile().cost_analysis()
        if isinstance(cost, (list, tuple)):
            cost = cost[0]
        run = lambda x, g: step(variables, x, g)  # noqa: E731
        run.bytes = float(cost.get("bytes accessed", float("nan")))
        return run

    out = []
    for shape in shapes:
        kx, kg = jax.random.split(jax.random.key(1))
        x = jax.random.normal(kx, shape, jnp.float32) * 3.0 + 1.0
        g = jax.random.normal(kg, shape, jnp.float32)
        for case, ours_f, up_f in pairs:
            if args.filter and args.filter not in case:
                continue
            ours, up = make_step(ours_f(), x), make_step(up_f(), x)
            t_o, t_u = time_pair(lambda i: ours(x, g), lambda i: up(x, g),
                                 lambda r: jax.block_until_ready(r), args.warmup, args.repeats)
            out.append(dict(group="jax-jit", case=case, shape=shape, ours_ms=_median(t_o), upstream_ms=_median(t_u),
                            ours_samples=t_o, upstream_samples=t_u, device=str(jax.devices()[0]),
                            bytes_ratio=ours.bytes / up.bytes))
            _show(out[-1], args.target)
    return out


def bench_torch(args, shapes):
    import torch

    import torchinit

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def sync(_):
        if dev.type == "cuda":
            torch.cuda.synchronize()

    out = []
    for n, h, w, c in shapes:
        gen = torch.Generator().manual_seed(1)
        x_nchw = (torch.randn(n, c, h, w, generator=gen) * 3.0 + 1.0).to(dev).requires_grad_()
        g_nchw = torch.randn(n, c, h, w, generator=gen).to(dev)
        x_nhwc = x_nchw.detach().permute(0, 2, 3, 1).contiguous().requires_grad_()
        g_nhwc = g_nchw.permute(0, 2, 3, 1).contiguous()
        x_cl = x_nhwc.detach().permute(0, 3, 1, 2).requires_grad_()  # NCHW view, channels_last memory
        g_cl = g_nhwc.permute(0, 3, 1, 2)
        cases = [
            ("torch-semantics NCHW vs BatchNorm2d", torchinit.BatchNorm(c).to(dev), x_nchw, g_nchw,
             torch.nn.BatchNorm2d(c).to(dev), x_nchw, g_nchw),
            ("torch-semantics axis=-1 NHWC vs BatchNorm2d channels_last", torchinit.BatchNorm(c, axis=-1).to(dev),
             x_nhwc, g_nhwc, torch.nn.BatchNorm2d(c).to(dev), x_cl, g_cl),
            ("flax convention NCHW vs BatchNorm2d", torchinit.BatchNorm.from_convention("flax", c).to(dev),
             x_nchw, g_nchw, torch.nn.BatchNorm2d(c).to(dev), x_nchw, g_nchw),
        ]
        for case, mo, xo, go, mu, xu, gu in cases:
            if args.filter and args.filter not in case:
                continue

            def step(m, x, g):
                y = m(x)
                y.backward(g)
                return y

            t_o, t_u = time_pair(lambda i: step(mo, xo, go), lambda i: step(mu, xu, gu), sync,
                                 args.warmup, args.repeats)
            out.append(dict(group="torch", case=case, shape=(n, h, w, c), ours_ms=_median(t_o),
                            upstream_ms=_median(t_u), ours_samples=t_o, upstream_samples=t_u, device=str(dev)))
            _show(out[-1], args.target)
    return out


def _show(r, target):
    ratio = r["ours_ms"] / r["upstream_ms"]
    r["ratio"] = ratio
    mark = "!" if ratio > target else " "
    extra = f"  bytes {r['bytes_ratio']:4.2f}x" if "bytes_ratio" in r else ""
    print(f"{r['group']:8s} {str(tuple(r['shape'])):20s} {r['case']:58s} ours {r['ours_ms']:9.2f} ms  "
          f"upstream {r['upstream_ms']:9.2f} ms  ratio {ratio:5.2f}x {mark}{extra}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="only the (128, 28, 28, 64) shape")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--target", type=float, default=1.1)
    p.add_argument("--filter", default="")
    p.add_argument("--framework", choices=("both", "jax", "torch"), default="both")
    p.add_argument("--json", default="")
    p.add_argument("--same-process", action="store_true")
    p.add_argument("--_child-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    shapes = SHAPES[:1] if args.small else SHAPES

    if args.framework != "both" or args.same_process:
        results = []
        if args.framework in ("both", "jax"):
            results += bench_jax(args, shapes)
        if args.framework in ("both", "torch"):
            results += bench_torch(args, shapes)
        if args._child_out:
            with open(args._child_out, "w") as f:
                json.dump(results, f)
    else:
        print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
              f"shapes {shapes}; warmup {args.warmup}, repeats {args.repeats} (median)", flush=True)
        results = []
        for fw in ("jax", "torch"):
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
                path = tmp.name
            cmd = [sys.executable, os.path.abspath(__file__), "--framework", fw, "--_child-out", path,
                   "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--target", str(args.target),
                   "--filter", args.filter] + (["--small"] if args.small else [])
            subprocess.run(cmd, check=False)
            try:
                with open(path) as f:
                    results += json.load(f)
            except (OSError, ValueError):
                print(f"{fw}: no results (child failed or framework missing)")
            finally:
                os.unlink(path)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "cpus": os.cpu_count(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
