"""Optimizer step speed, as RATIOS against the upstream equivalent timed in the same run.

Two groups, each over two pytrees:

- ``jax``: one jitted update step ``(params, state) -> (params + updates, state')``
  (params and state donated, ``block_until_ready`` in the timed region) for a
  ``jaxinit.optim`` optimizer vs the nearest plain optax chain (e.g.
  ``optax.adam``; ``chain(add_decayed_weights, optax.sgd)`` for SGD with decay).
- ``torch``: ``opt.step()`` of a ``torchinit.optim`` optimizer vs ``torch.optim``
  with ``foreach=True`` (gradients preassigned; ``torch.cuda.synchronize`` on GPU).

Pytrees: ``big`` = ``--params`` float32 parameters in 8 equal tensors (the issue's
100M; pass a smaller ``--params`` where memory or time is short) and ``small`` =
``--small-count`` tensors (500) of 64x32 + 32 ... sizes cycling through 2k-20k
elements (the many-small-tensors case). Calls of ours and upstream alternate,
``--warmup`` calls are dropped (compilation included), the median of ``--repeats``
is reported, ratio = ours / upstream; ratios above the targets (1.05x of optax,
1.1x of torch) are marked ``!``. JAX and torch run in separate child processes.
Nothing here asserts a speed.

    python benchmarks/bench_optim.py                  # 100M + 500 small tensors
    python benchmarks/bench_optim.py --params 20000000 --repeats 20
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if not __package__:  # `python benchmarks/bench_optim.py`: the repository root, for `benchmarks.*` and the source tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sizes(args, tree):
    if tree == "big":
        return [args.params // 8] * 8
    cycle = [2048, 4096, 8192, 20480, 32, 512]
    return [cycle[i % len(cycle)] for i in range(args.small_count)]


def _time_pair(ours, upstream, warmup, repeats):
    t_o, t_u = [], []
    for i in range(warmup + repeats):
        order = ((ours, t_o), (upstream, t_u)) if i % 2 == 0 else ((upstream, t_u), (ours, t_o))
        for fn, sink in order:
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                sink.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(t_o), statistics.median(t_u)


# ------------------------------------------------------------------ jax
def bench_jax(args):
    import jax
    import jax.numpy as jnp
    import optax

    import jaxinit.optim as jo

    pairs = {
        "sgd_mom_wd": (lambda: jo.sgd(0.1, momentum=0.9, weight_decay=1e-4),
                       lambda: optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, 0.9))),
        "adagrad": (lambda: jo.adagrad(1e-2), lambda: optax.adagrad(1e-2, initial_accumulator_value=0.0, eps=1e-10)),
        "rmsprop": (lambda: jo.rmsprop(1e-2), lambda: optax.rmsprop(1e-2, decay=0.99, eps=1e-8, eps_in_sqrt=False)),
        "adam": (lambda: jo.adam(1e-3), lambda: optax.adam(1e-3)),
        "adamw": (lambda: jo.adamw(1e-3), lambda: optax.adamw(1e-3, weight_decay=1e-2)),
        "adam_amsgrad": (lambda: jo.adam(1e-3, amsgrad=True), lambda: optax.amsgrad(1e-3)),
        "lars": (lambda: jo.lars(0.1, decay_in_norm=True), lambda: optax.lars(0.1)),
        # the rest of torch.optim, each against optax's nearest alias (third item: what it is)
        "nadam": (lambda: jo.nadam(2e-3), lambda: optax.nadam(2e-3), "optax.nadam (another NAdam: no mu schedule)"),
        "radam": (lambda: jo.radam(1e-3), lambda: optax.radam(1e-3), "optax.radam (same rule)"),
        "adamax": (lambda: jo.adamax(2e-3), lambda: optax.adamax(2e-3), "optax.adamax (eps after the max)"),
        "adadelta": (lambda: jo.adadelta(1.0), lambda: optax.adadelta(1.0), "optax.adadelta (same rule)"),
        "rprop": (lambda: jo.rprop(1e-2), lambda: optax.rprop(1e-2), "optax.rprop (its sign-flip rule)"),
        "asgd": (lambda: jo.asgd(1e-2), lambda: optax.sgd(1e-2), "optax.sgd (optax has no ASGD; info only)"),
    }
    out = []
    for tree in ("big", "small"):
        sizes = _sizes(args, tree)
        keys = jax.random.split(jax.random.key(0), len(sizes))
        grads = [jax.random.normal(k, (n,), jnp.float32) for k, n in zip(keys, sizes)]
        for name, (ours_f, up_f, *label) in pairs.items():
            if args.filter and args.filter not in name:
                continue
            runners = []
            for fac in (ours_f, up_f):
                tx = fac()
                step = jax.jit(lambda p, s, g, tx=tx: (lambda u, s2: (optax.apply_updates(p, u), s2))(
                    *tx.update(g, s, p)), donate_argnums=(0, 1))
                box = {"p": [jnp.ones_like(g) for g in grads]}
                box["s"] = tx.init(box["p"])

                def run(step=step, box=box):
                    box["p"], box["s"] = step(box["p"], box["s"], grads)
                    jax.block_until_ready(box["p"])
                runners.append(run)
            o, u = _time_pair(runners[0], runners[1], args.warmup, args.repeats)
            out.append(("jax", tree, name, label[0] if label else "optax", o, u))
            del runners
    return out


# ------------------------------------------------------------------ torch
def bench_torch(args):
    import torch

    import torchinit.optim as to

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    T = torch.optim
    pairs = {
        "sgd_mom_wd": (lambda p: to.sgd(p, 0.1, momentum=0.9, weight_decay=1e-4),
                       lambda p: T.SGD(p, 0.1, momentum=0.9, weight_decay=1e-4, foreach=True)),
        "adagrad": (lambda p: to.adagrad(p, 1e-2), lambda p: T.Adagrad(p, 1e-2, foreach=True)),
        "rmsprop": (lambda p: to.rmsprop(p, 1e-2), lambda p: T.RMSprop(p, 1e-2, foreach=True)),
        "adam": (lambda p: to.adam(p, 1e-3), lambda p: T.Adam(p, 1e-3, foreach=True)),
        "adamw": (lambda p: to.adamw(p, 1e-3), lambda p: T.AdamW(p, 1e-3, foreach=True)),
        "adam_sched": (lambda p: to.adam(p, lambda k: 1e-3 * 0.999 ** k),
                       lambda p: T.Adam(p, 1e-3, foreach=True)),
        # optax-convention options run torchinit's own Optimizer subclasses
        "adam_eps_root": (lambda p: to.adam(p, 1e-3, eps_root=1e-8), lambda p: T.Adam(p, 1e-3, foreach=True)),
        "rmsprop_eps_in_sqrt": (lambda p: to.rmsprop(p, 1e-2, eps_in_sqrt=True),
                                lambda p: T.RMSprop(p, 1e-2, foreach=True)),
        "adagrad_eps_in_sqrt": (lambda p: to.adagrad(p, 1e-2, eps_in_sqrt=True),
                                lambda p: T.Adagrad(p, 1e-2, foreach=True)),
        # the rest of torch.optim: torchinit returns torch's own classes
        "nadam": (lambda p: to.nadam(p), lambda p: T.NAdam(p, foreach=True)),
        "radam": (lambda p: to.radam(p), lambda p: T.RAdam(p, foreach=True)),
        "adamax": (lambda p: to.adamax(p), lambda p: T.Adamax(p, foreach=True)),
        "adadelta": (lambda p: to.adadelta(p), lambda p: T.Adadelta(p, foreach=True)),
        "rprop": (lambda p: to.rprop(p), lambda p: T.Rprop(p, foreach=True)),
        "asgd": (lambda p: to.asgd(p), lambda p: T.ASGD(p, foreach=False), "torch.optim single-tensor"),
    }
    out = []
    for tree in ("big", "small"):
        sizes = _sizes(args, tree)
        gen = torch.Generator().manual_seed(0)
        grads = [torch.randn(n, generator=gen).to(dev) for n in sizes]
        for name, (ours_f, up_f, *label) in pairs.items():
            if args.filter and args.filter not in name:
                continue
            runners = []
            for fac in (ours_f, up_f):
                ps = [torch.ones(n, device=dev, requires_grad=True) for n in sizes]
                for p, g in zip(ps, grads):
                    p.grad = g
                opt = fac(ps)

                def run(opt=opt):
                    opt.step()
                    sync()
                runners.append(run)
            o, u = _time_pair(runners[0], runners[1], args.warmup, args.repeats)
            out.append(("torch", tree, name, label[0] if label else "torch.optim foreach", o, u))
            del runners
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=int, default=100_000_000, help="parameters in the big pytree (100M)")
    ap.add_argument("--small-count", type=int, default=500, help="tensors in the many-small pytree (500)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--filter", default="", help="substring of the case name")
    ap.add_argument("--frameworks", default="jax,torch")
    ap.add_argument("--json", default="")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        rows = bench_jax(args) if args.child == "jax" else bench_torch(args)
        print("ROWS" + json.dumps(rows))
        return
    rows = []
    for fw in args.frameworks.split(","):
        cmd = [sys.executable, __file__, "--child", fw] + [a for a in sys.argv[1:]]
        res = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in res.stdout.splitlines() if ln.startswith("ROWS")]
        if res.returncode or not line:
            print(f"[{fw}] failed:\n{res.stderr[-2000:]}")
            continue
        rows += json.loads(line[0][4:])
    print(f"params(big)={args.params:,} in 8 tensors; small={args.small_count} tensors; "
          f"median of {args.repeats} (warmup {args.warmup}); float32")
    print(f"{'group':6s} {'tree':6s} {'case':22s} {'ours ms':>10s} {'upstream ms':>12s} {'ratio':>7s}  vs")
    for fw, tree, name, vs, o, u in rows:
        target = 1.05 if fw == "jax" else 1.1
        r = o / u
        print(f"{fw:6s} {tree:6s} {name:22s} {o:10.3f} {u:12.3f} {r:7.3f}{'!' if r > target else ' '} {vs}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
