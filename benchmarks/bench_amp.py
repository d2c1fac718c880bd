"""Speed of a jitted bf16 training step under ``jaxinit.amp.Autocast``, as a RATIO against the
same model written with Flax's ``dtype=jnp.bfloat16`` by hand, timed in the same run.

One step = ``jax.value_and_grad`` of the mean cross-entropy through ``Module.apply`` + an
``optax.sgd`` update, ``jax.jit``-compiled (compilation in the warmup, ``block_until_ready``
in the timed region). Models (parameters float32 in both):

- ``mlp``: Dense 1024 -> 1024 -> 1024 -> 10 with GELU, batch 256;
- ``conv_bn``: two 3x3 convolutions (64, 128 channels) with ``jaxinit.BatchNorm`` and ReLU, mean
  pool, Dense head; 32x32x3 images, batch 64;
- ``transformer_block``: pre-norm block (LayerNorm, 8-head self-attention, GELU MLP), E=256,
  length 128, batch 16.

``policy``: the Flax modules with default dtypes under ``with Autocast('cpu', bfloat16)`` (torch's
op policy, one rounding per op, torch's CPU attention). ``hand``: ``dtype=jnp.bfloat16`` on every
Dense/Conv/attention/LayerNorm and ``jax.nn.dot_product_attention``-style Flax attention. Ours and
hand alternate call by call, ``--warmup`` calls are dropped, the median of ``--repeats`` is
reported with ``ratio = policy / hand`` (above ``--target``, 1.1x, marked ``!``). Nothing here
asserts a speed.

    python benchmarks/bench_amp.py --repeats 20
    python benchmarks/bench_amp.py --json amp.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if not __package__:  # `python benchmarks/bench_amp.py`: the repository root, for `benchmarks.*` and the source tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.bench_init import _median, time_pair  # noqa: E402  (same timing method as the other benchmarks)


def models(dtype):
    """name -> (Linen module, input shape): ``dtype=None`` for the policy, ``bfloat16`` by hand."""
    import flax.linen as nn
    import jax.numpy as jnp

    import jaxinit
    import jaxinit.amp as ja

    def gelu(x):
        return ja.active().pointwise(nn.gelu)(x) if dtype is None else nn.gelu(x)

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(2):
                x = gelu(nn.Dense(1024, dtype=dtype)(x))
            return nn.Dense(10, dtype=dtype)(x)

    class ConvBN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for c in (64, 128):
                x = nn.Conv(c, (3, 3), padding=1, dtype=dtype)(x)
                x = nn.relu(jaxinit.BatchNorm(use_running_average=False, dtype=dtype)(x))
            return nn.Dense(10, dtype=dtype)(x.mean((1, 2)))

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm(dtype=dtype)(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=8, deterministic=True, dtype=dtype)(h)
            h = gelu(nn.Dense(512, dtype=dtype)(nn.LayerNorm(dtype=dtype)(x)))
            x = x + nn.Dense(256, dtype=dtype)(h)
            return nn.Dense(10, dtype=dtype)(x.mean(1))

    del jnp
    return {"mlp": (MLP(), (256, 1024)), "conv_bn": (ConvBN(), (64, 32, 32, 3)),
            "transformer_block": (Block(), (16, 128, 256))}


def step_fn(model, policy):
    import jax
    import optax

    tx = optax.sgd(0.01)

    def loss_fn(params, variables, x, y):
        with policy:
            logits, new = model.apply({**variables, "params": params}, x, mutable=["batch_stats"])
        (logits,) = policy.cast("cross_entropy_loss", logits)
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype("float32"), y).mean(), new

    @jax.jit
    def step(variables, opt_state, x, y):
        (loss, new), g = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"], variables, x, y)
        u, opt_state = tx.update(g, opt_state)
        return {**variables, **new, "params": optax.apply_updates(variables["params"], u)}, opt_state, loss

    return step, tx


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--target", type=float, default=1.1)
    p.add_argument("--filter", default="")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxinit.amp as ja

    policy, off = ja.Autocast("cpu", jnp.bfloat16), ja.Autocast(enabled=False)
    ours, hand = models(None), models(jnp.bfloat16)
    print(f"jax {jax.__version__}, devices {jax.devices()}, python {platform.python_version()}")
    print(f"{'model':<20} {'policy ms':>10} {'hand ms':>10} {'ratio':>7}")
    results = []
    for name in ours:
        if args.filter not in name:
            continue
        (m_ours, shape), (m_hand, _) = ours[name], hand[name]
        x = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
        y = jnp.asarray(np.random.default_rng(1).integers(0, 10, shape[0]))
        v = m_ours.init(jax.random.key(0), x)
        s_ours, tx = step_fn(m_ours, policy)
        s_hand, _ = step_fn(m_hand, off)
        st = tx.init(v["params"])
        t_ours, t_hand = time_pair(lambda i: s_ours(v, st, x, y), lambda i: s_hand(v, st, x, y),
                                   lambda r: jax.block_until_ready(r), args.warmup, args.repeats)
        mo, mh = _median(t_ours), _median(t_hand)
        ratio = mo / mh
        results.append({"model": name, "policy_ms": mo, "hand_ms": mh, "ratio": ratio})
        print(f"{name:<20} {mo:>10.2f} {mh:>10.2f} {ratio:>6.2f}x{' !' if ratio > args.target else ''}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax": jax.__version__, "devices": [str(d) for d in jax.devices()], "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
