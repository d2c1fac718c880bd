"""Momentum SGD, Adagrad, RMSprop and Adam on the same problem in JAX (jaxinit.optim) and PyTorch (torch.optim).

The problem: a 64-64-10 tanh MLP classifying scikit-learn's 8x8 digits (1536
training images, pixels / 16), minibatches of 128 drawn by one numpy RNG and fed
to both frameworks, cross-entropy loss. Both start from the same weights (Flax
``jaxinit.linen.Dense`` with torch's default init, converted into ``torch.nn.Linear`` by
``jaxinit.to_torch_state_dict``).
The JAX side is ``jaxinit.optim.<name>`` (optax transformations with torch.optim's
update rules), the torch side the real ``torch.optim.<Name>``, with the same
hyper-parameters. Prints the final losses and the largest step-by-step loss
difference per optimizer, and plots the loss curves.

    python examples/optimizers.py [--steps 300] [--out optimizers.png]
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lenet_bn import DIGITS_TRAIN, pyplot, table  # noqa: E402  (the main example's helpers)

# name -> (jaxinit.optim factory name, torch.optim class name, keyword arguments shared verbatim)
OPTIMIZERS = {
    "SGD momentum=0.9": ("sgd", "SGD", {"lr": 0.05, "momentum": 0.9}),
    "Adagrad": ("adagrad", "Adagrad", {"lr": 0.05}),
    "RMSprop": ("rmsprop", "RMSprop", {"lr": 0.002}),
    "Adam": ("adam", "Adam", {"lr": 0.002}),
}
HIDDEN = 64


def digits_64(seed: int = 0):
    """The raw 8x8 digits as 64 features, the same fixed 1536-image training split as the LeNet example."""
    from sklearn.datasets import load_digits

    d = load_digits()
    perm = np.random.default_rng(0).permutation(len(d.target))[:DIGITS_TRAIN]
    return (d.data[perm] / 16.0).astype(np.float32), d.target[perm].astype(np.int32)


def _flax_mlp():
    import flax.linen as nn

    import jaxinit.linen as tl

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return tl.Dense(10, name="fc2")(nn.tanh(tl.Dense(HIDDEN, name="fc1")(x)))

    return MLP()


def train_jax(model, params, tx, xs, ys):
    """All steps in one jit-compiled lax.scan; returns the per-step losses."""
    import jax
    import optax

    def step(carry, batch):
        params, opt_state = carry
        x, y = batch

        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()

        loss, g = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(g, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    _, losses = jax.jit(lambda p, xs, ys: jax.lax.scan(step, (p, tx.init(p)), (xs, ys)))(params, xs, ys)
    return np.asarray(losses, np.float64)


def train_torch(params, opt_name, kwargs, xs, ys):
    import torch
    import torch.nn.functional as F

    import jaxinit

    net = torch.nn.Sequential()  # the Flax MLP's twin: same layer names
    net.add_module("fc1", torch.nn.Linear(64, HIDDEN))
    net.add_module("act", torch.nn.Tanh())
    net.add_module("fc2", torch.nn.Linear(HIDDEN, 10))
    net.load_state_dict(jaxinit.to_torch_state_dict({"params": params}, net))  # kernels (in, out) -> (out, in)
    opt = getattr(torch.optim, opt_name)(net.parameters(), **kwargs)
    X, Y = torch.from_numpy(xs), torch.from_numpy(ys.astype(np.int64))
    losses = []
    for i in range(len(xs)):
        opt.zero_grad()
        loss = F.cross_entropy(net(X[i]), Y[i])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.asarray(losses)


def run(steps: int = 300, batch_size: int = 128, seed: int = 0, out: str | None = None, verbose: bool = True,
        optimizers: dict | None = None) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxinit.optim

    say = print if verbose else (lambda *a, **k: None)
    x, y = digits_64()
    rng = np.random.default_rng(seed)
    per_epoch = len(x) // batch_size
    idx = np.concatenate([rng.permutation(len(x))[: per_epoch * batch_size].reshape(per_epoch, batch_size)
                          for _ in range(-(-steps // per_epoch))])[:steps]
    xs, ys = x[idx], y[idx]
    model = _flax_mlp()
    params = model.init(jax.random.key(seed), jnp.zeros((1, 64), jnp.float32))["params"]
    curves, rows = {}, []
    for name, (jname, tname, kw) in (optimizers or OPTIMIZERS).items():
        lj = train_jax(model, params, getattr(jaxinit.optim, jname)(**kw), xs, ys)
        lt = train_torch(params, tname, kw, xs, ys)
        d = np.abs(lj - lt)
        curves[name] = {"jax": lj, "torch": lt}
        rows.append({"opt": name, "hp": ", ".join(f"{k}={v}" for k, v in kw.items()), "jl": lj[-1], "tl": lt[-1],
                     "d": float(d.max()), "at": int(d.argmax()) + 1, "d50": float(d[:50].max())})
    say(f"64-{HIDDEN}-10 tanh MLP on 8x8 digits, {steps} steps of {batch_size}, same weights and batches\n")
    say(table(rows, [("opt", "optimizer", "<18"), ("hp", "arguments", "<24"),
                             ("jl", "final loss jax", ".4f"), ("tl", "final loss torch", ".4f"),
                             ("d50", "max|dloss| 50", ".2e"), ("d", "max|dloss|", ".2e"), ("at", "at step", "d")]))
    if out:
        plot(curves, out)
        say(f"plot: {out}")
    return {"curves": curves, "rows": rows}


def plot(curves: dict, out: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for i, (name, c) in enumerate(curves.items()):
        steps = np.arange(1, len(c["jax"]) + 1)
        axes[0].plot(steps, c["jax"], color=f"C{i}", label=f"{name} jax")
        axes[0].plot(steps, c["torch"], "--", color=f"C{i}", label=f"{name} torch")
        axes[1].semilogy(steps, np.maximum(np.abs(c["jax"] - c["torch"]), 1e-12), color=f"C{i}", label=name)
    axes[0].set(xlabel="step", ylabel="training loss", yscale="log",
                title="loss: solid = JAX (jaxinit.optim), dashed = torch.optim")
    axes[1].set(xlabel="step", ylabel="|loss jax - loss torch|", title="step-by-step difference (float32)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# Each example is a standalone script with its own command line, so the argparse/plot boilerplate
# repeats across examples by design (a user copies one file).
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="optimizers.png", help="PNG ('' for none)")
    a = p.parse_args(argv)
    run(a.steps, a.batch_size, a.seed, a.out or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
