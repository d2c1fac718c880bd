"""Step speed of Adafactor, Muon, SparseAdam and LBFGS, as RATIOS against upstream timed in the same run.

- ``jax``: one jitted, donated update step of the ``jaxinit.optim`` optimizer vs the nearest optax
  one (``optax.adafactor(lr, min_dim_size_to_factor=0, momentum=None)``, ``optax.contrib.muon``,
  ``optax.adam`` for ``sparse_adam`` with every row present; none for LBFGS: its ``step`` is timed
  against torch). Not the same algorithms: the nearest optax chains, as issue 12 asks.
- ``torch``: ``opt.step()`` of the ``torchinit.optim`` factory (torch's class; Adafactor with
  ``foreach=True``) vs ``torch.optim`` with its defaults; LBFGS: ``jaxinit.optim.lbfgs`` jitted
  step vs ``torch.optim.LBFGS.step(closure)`` on the same least-squares problem.

Matrices ``--n`` x ``--n`` (``--count`` of them, default 8 x 512 x 512 = 2M float32 parameters).
Calls alternate, ``--warmup`` dropped, median of ``--repeats``; ratio = ours / upstream. Nothing
asserts a speed.

    python benchmarks/bench_optim_more.py
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if not __package__:  # `python benchmarks/bench_optim_more.py`: the repository root, for `benchmarks.*` and the source tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_optim import _time_pair as _pair  # noqa: E402 (the same alternating timer as bench_optim)


def _report(name, upstream_name, t_o, t_u, target):
    r = t_o / t_u
    print(f"{name:34s} {t_o:9.2f} ms  vs {upstream_name:34s} {t_u:9.2f} ms  ratio {r:5.2f}"
          f"{' !' if r > target else ''}")


def bench_jax(args):
    import jax
    import jax.numpy as jnp
    import optax

    import jaxinit.optim as jo

    key = jax.random.PRNGKey(0)
    params = [jax.random.normal(jax.random.fold_in(key, i), (args.n, args.n), jnp.float32) for i in range(args.count)]
    grads = [p * 0.01 for p in params]
    rows = [jnp.ones(args.n, bool) for _ in params]

    def stepper(tx, extra=None):
        kw = {} if extra is None else {"row_mask": extra}

        # as bench_optim.py: params and state donated, gradients an argument (not constants of the program)
        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(p, s, g):
            u, s = tx.update(g, s, p, **kw)
            return optax.apply_updates(p, u), s

        own = [jnp.array(p, copy=True) for p in params]  # donated: each optimizer its own copy
        box = [own, tx.init(own)]

        def run():
            box[0], box[1] = step(box[0], box[1], grads)
            jax.block_until_ready(box[0])
        return run

    pairs = [
        ("jaxinit adafactor", jo.adafactor(1e-2), None,
         "optax.adafactor", optax.adafactor(1e-2, min_dim_size_to_factor=0, momentum=None), None),
        ("jaxinit muon", jo.muon(0.02), None, "optax.contrib.muon", optax.contrib.muon(0.02), None),
        ("jaxinit sparse_adam (all rows)", jo.sparse_adam(1e-3), rows, "optax.adam", optax.adam(1e-3), None),
    ]
    for name, tx, extra, uname, utx, uextra in pairs:
        t_o, t_u = _pair(stepper(tx, extra), stepper(utx, uextra), args.warmup, args.repeats)
        _report(name, uname, t_o, t_u, 1.05)


def bench_torch(args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    import jaxinit.optim as jo
    import torchinit.optim as to

    torch.manual_seed(0)

    def make():
        return [torch.randn(args.n, args.n) for _ in range(args.count)]

    def stepper(opt, ps):
        for p in ps:
            p.grad = p.detach() * 0.01
        return opt.step

    for name, ours, upstream in (
        ("torchinit adafactor", lambda p: to.adafactor(p, 1e-2), lambda p: torch.optim.Adafactor(p, 1e-2)),
        ("torchinit muon", lambda p: to.muon(p, 0.02), lambda p: torch.optim.Muon(p, 0.02)),
    ):
        a, b = make(), make()
        t_o, t_u = _pair(stepper(ours(a), a), stepper(upstream(b), b), args.warmup, args.repeats)
        _report(name, f"torch.optim.{type(upstream(make())).__name__}", t_o, t_u, 1.1)

    # LBFGS: least squares ||A x - y||^2 / m, x of n*count elements in count tensors
    rng = np.random.default_rng(0)
    m = 64
    A = (rng.standard_normal((m, args.n)) / np.sqrt(args.n)).astype(np.float32)
    Y = rng.standard_normal((m, args.count)).astype(np.float32)
    x0 = [np.zeros(args.n, np.float32) for _ in range(args.count)]
    tA, tY = torch.tensor(A), torch.tensor(Y)
    tx_ = [torch.tensor(v, requires_grad=True) for v in x0]
    topt = torch.optim.LBFGS(tx_, lr=0.5, max_iter=10, history_size=10)

    def closure():
        topt.zero_grad()
        loss = ((tA @ torch.stack(tx_, 1) - tY) ** 2).mean()
        loss.backward()
        return loss

    jA, jY = jnp.asarray(A), jnp.asarray(Y)
    tx = jo.lbfgs(lr=0.5, max_iter=10, history_size=10)

    def loss_fn(p):
        return jnp.mean((jA @ jnp.stack(p, 1) - jY) ** 2)

    step = jax.jit(lambda p, s: tx.step(p, s, jax.value_and_grad(loss_fn)))
    box = [[jnp.asarray(v) for v in x0]]
    box.append(tx.init(box[0]))

    def jrun():
        box[0], box[1], loss = step(box[0], box[1])
        jax.block_until_ready(loss)

    t_o, t_u = _pair(jrun, lambda: topt.step(closure), args.warmup, args.repeats)
    _report("jaxinit lbfgs step (10 iterations)", "torch.optim.LBFGS.step", t_o, t_u, 1.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    bench_jax(args)
    bench_torch(args)


if __name__ == "__main__":
    main()
