"""Twin models for the mixed-precision tests: an MLP, a conv net with BatchNorm and a small
transformer block, each written once for torch and once for Flax Linen (weights copied with
``jaxinit.from_torch_state_dict``), and the 20-step training loop run in both frameworks under
torch's autocast / ``jaxinit.amp.Autocast`` (and in float32 for the bf16-vs-float32 gap)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from flax import linen as nn

import jaxinit
import jaxinit.amp as ja
import jaxinit.optim as jo


def torch_gelu(x):
    """torch's ``F.gelu`` formula (``x * 0.5 * (1 + erf(x / sqrt(2)))``, aten GeluKernel); ``jax.nn.gelu``
    evaluates ``x * erfc(-x / sqrt(2)) / 2`` instead, a different float32 number in the negative tail."""
    return x * 0.5 * (1.0 + jax.lax.erf(x * np.float32(0.7071067811865476)))


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(32, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc3(F.gelu(self.fc2(F.relu(self.fc1(x)))))


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
        x = nn.relu(nn.Dense(64, name="fc1")(x))
        x = ja.active().pointwise(torch_gelu)(nn.Dense(64, name="fc2")(x))
        return nn.Dense(10, name="fc3")(x)


class TorchConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
        self.conv2, self.bn2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


class LinenConvBN(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):  # x: NHWC
        x = nn.Conv(8, (3, 3), padding=1, name="conv1")(x)
        x = nn.relu(jaxinit.BatchNorm(use_running_average=not train, name="bn1")(x))
        x = nn.Conv(16, (3, 3), strides=2, padding=1, name="conv2")(x)
        x = nn.relu(jaxinit.BatchNorm(use_running_average=not train, name="bn2")(x))
        return nn.Dense(10, name="fc")(x.mean((1, 2)))


class TorchBlock(torch.nn.Module):
    """Pre-norm transformer block (LayerNorm, MultiheadAttention, GELU MLP, residuals) and a head."""
    def __init__(self, e=32, heads=4):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(e), torch.nn.LayerNorm(e)
        self.attn = torch.nn.MultiheadAttention(e, heads, batch_first=True)
        self.fc1, self.fc2, self.head = torch.nn.Linear(e, 2 * e), torch.nn.Linear(2 * e, e), torch.nn.Linear(e, 10)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.fc2(F.gelu(self.fc1(self.ln2(x))))
        return self.head(x.mean(1))


class LinenBlock(nn.Module):
    e: int = 32
    heads: int = 4

    @nn.compact
    def __call__(self, x, train=True):
        h = nn.LayerNorm(epsilon=1e-5, name="ln1")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, deterministic=True, name="attn")(h)
        h = nn.Dense(2 * self.e, name="fc1")(nn.LayerNorm(epsilon=1e-5, name="ln2")(x))
        x = x + nn.Dense(self.e, name="fc2")(ja.active().pointwise(torch_gelu)(h))
        return nn.Dense(10, name="head")(x.mean(1))


# name -> (torch class, Linen class, input shape in torch layout, torch->Flax input permutation)
TWINS = {
    "mlp": (TorchMLP, LinenMLP, (32, 32), None),
    "conv_bn": (TorchConvBN, LinenConvBN, (16, 3, 10, 10), (0, 2, 3, 1)),
    "transformer_block": (TorchBlock, LinenBlock, (8, 12, 32), None),
}


def _batches(shape, steps, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(shape).astype(np.float32), rng.integers(0, 10, shape[0])) for _ in range(steps)]


def torch_losses(name, steps=20, autocast=None, lr=0.05, seed=0):
    """Per-step training losses of the torch twin (SGD), under ``torch.autocast('cpu', autocast)`` if given."""
    tcls, _, shape, _ = TWINS[name]
    torch.manual_seed(seed)
    model = tcls()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for x, y in _batches(shape, steps, seed):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            loss = F.cross_entropy(model(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def jax_losses(name, steps=20, policy=None, lr=0.05, seed=0):
    """Per-step losses of the Flax twin from the torch twin's initial weights, under ``policy``
    (a ``jaxinit.amp.Autocast``; ``None``: float32), the step jitted."""
    tcls, lcls, shape, perm = TWINS[name]
    torch.manual_seed(seed)
    tmodel = tcls()
    model = lcls()
    x0 = np.zeros(shape, np.float32)
    x0 = x0.transpose(perm) if perm else x0
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(x0)))
    variables = jaxinit.from_torch_state_dict(tmodel, template)
    params = variables["params"]
    stats = {k: v for k, v in variables.items() if k != "params"}
    tx = jo.sgd(lr)
    policy = policy or ja.Autocast(enabled=False)

    def loss_fn(p, stats, x, y):
        with policy:
            logits, new = model.apply({"params": p, **stats}, x, mutable=list(stats))
        (logits,) = policy.cast("cross_entropy_loss", logits)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

    @jax.jit
    def step(p, stats, opt_state, x, y):
        (loss, new), g = jax.value_and_grad(loss_fn, has_aux=True)(p, stats, x, y)
        u, opt_state = tx.update(g, opt_state, p)
        return optax.apply_updates(p, u), new, opt_state, loss

    opt_state = tx.init(params)
    losses = []
    for x, y in _batches(shape, steps, seed):
        x = x.transpose(perm) if perm else x
        params, stats, opt_state, loss = step(params, stats, opt_state, jnp.asarray(x), jnp.asarray(y))
        losses.append(float(loss))
    return np.array(losses)


# ---------------------------------------------------------------- NNX twins of the Linen ones (Autocast.nnx)

from flax import nnx  # noqa: E402

import jaxinit.nnx as tn  # noqa: E402


class NnxConvBN(nnx.Module):
    """``LinenConvBN`` in NNX (``jaxinit.nnx.BatchNorm``), the same parameter tree."""
    def __init__(self, rngs):
        self.conv1, self.bn1 = nnx.Conv(3, 8, (3, 3), padding=1, rngs=rngs), tn.BatchNorm(8)
        self.conv2, self.bn2 = nnx.Conv(8, 16, (3, 3), strides=2, padding=1, rngs=rngs), tn.BatchNorm(16)
        self.fc = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn1(self.conv1(x)))
        x = nnx.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((1, 2)))


class NnxBlock(nnx.Module):
    """``LinenBlock`` in NNX, the same parameter tree."""
    def __init__(self, rngs, e=32, heads=4):
        self.ln1, self.ln2 = nnx.LayerNorm(e, epsilon=1e-5, rngs=rngs), nnx.LayerNorm(e, epsilon=1e-5, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, e, deterministic=True, decode=False, rngs=rngs)
        self.fc1, self.fc2 = nnx.Linear(e, 2 * e, rngs=rngs), nnx.Linear(2 * e, e, rngs=rngs)
        self.head = nnx.Linear(e, 10, rngs=rngs)

    def __call__(self, x):
        h = self.ln1(x)
        x = x + self.attn(h)
        h = self.fc1(self.ln2(x))
        x = x + self.fc2(ja.active().pointwise(torch_gelu)(h))
        return self.head(x.mean(1))


NNX_TWINS = {"conv_bn": NnxConvBN, "transformer_block": NnxBlock}


def linen_and_nnx(name, seed=0):
    """The Linen twin, its variables (the torch twin's initial weights) and the NNX twin holding the
    same values (every variable of the Linen tree assigned to the NNX variable of the same path)."""
    tcls, lcls, shape, perm = TWINS[name]
    torch.manual_seed(seed)
    tmodel, model = tcls(), lcls()
    x0 = np.zeros(shape, np.float32)
    x0 = x0.transpose(perm) if perm else x0
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(x0)))
    variables = jaxinit.from_torch_state_dict(tmodel, template)
    nmodel = NNX_TWINS[name](nnx.Rngs(1))
    assigned = 0
    for collection in variables.values():
        for path, value in jax.tree_util.tree_flatten_with_path(collection)[0]:
            node = nmodel
            for k in path:
                node = getattr(node, k.key)
            assert node[...].shape == value.shape, (path, node[...].shape, value.shape)
            node[...] = value
            assigned += 1
    assert assigned == len(jax.tree.leaves(nnx.state(nmodel))), "every NNX variable comes from the Linen tree"
    return model, variables, nmodel
