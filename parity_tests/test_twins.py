"""Twin models: the same network in torch, Flax Linen and Flax NNX, weights converted by
name with the default naming rule (explicit names, Linen auto names ``Conv_0``, NNX
``layers/0``). Outputs and gradients agree in eval and train mode (``twin_check``), and
20 plain SGD steps leave identical parameters and running statistics.

BatchNorm twins use jaxinit.BatchNorm / jaxinit.nnx.BatchNorm: flax.linen.BatchNorm
keeps biased running variances and would drift from torch's (torch/nn/modules/batchnorm.py vs
flax/linen/normalization.py; pytorch#77427).

Tolerances (max abs differences, measured values recorded under family twin/<model>):
- float64: 1e-10. The two frameworks only sum in different orders (1e-16 relative per
  operation); the largest values are O(10), a few hundred operations deep, and 20 SGD
  steps of lr 0.05 cannot amplify that past 1e-12. A layout or semantics error gives O(1e-2).
- float32: 2e-4 for outputs and gradients, 5e-4 for 20-step statistics and parameters:
  2^-24 relative rounding of O(10) values accumulated over dot products of length <= 150,
  through BatchNorm's 1/std (std ~0.1 of pre-activations amplifies by 10).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from flax import nnx

import jaxinit
import jaxinit.nnx as jnnx
import torchinit
from parity_tests._figures import record_figure

TOL = {"float64": dict(out=1e-10, steps=1e-10), "float32": dict(out=2e-4, steps=5e-4)}
TDTYPE = {"float64": torch.float64, "float32": torch.float32}
JDTYPE = {"float64": jnp.float64, "float32": jnp.float32}


# --------------------------------------------------------------------------- MLP
class TorchMLP(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.ReLU(),
                         torch.nn.Linear(16, 3))


class LinenMLP(nn.Module):  # auto names Dense_0..2 <- torch "0", "2", "4"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.tanh(nn.Dense(16, param_dtype=self.dtype)(x))
        x = nn.relu(nn.Dense(16, param_dtype=self.dtype)(x))
        return nn.Dense(3, param_dtype=self.dtype)(x)


def nnx_mlp(dtype):  # nnx.Sequential: layers/0, layers/2, layers/4 <- torch "0", "2", "4"
    r = nnx.Rngs(0)
    return nnx.Sequential(nnx.Linear(6, 16, rngs=r, param_dtype=dtype), nnx.tanh,
                          nnx.Linear(16, 16, rngs=r, param_dtype=dtype), nnx.relu,
                          nnx.Linear(16, 3, rngs=r, param_dtype=dtype))


# --------------------------------------------------------------------------- LeNet with BatchNorm
class TorchLeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(1, 6, 5), torch.nn.BatchNorm2d(6)
        self.conv2, self.bn2 = torch.nn.Conv2d(6, 16, 3), torch.nn.BatchNorm2d(16)
        self.fc1, self.bn3, self.fc2 = torch.nn.Linear(16 * 2 * 2, 24), torch.nn.BatchNorm1d(24), torch.nn.Linear(24, 10)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        x = torch.relu(self.bn3(self.fc1(x.flatten(1))))
        return self.fc2(x)


class LinenLeNet(nn.Module):  # explicit names equal to torch's
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: jaxinit.BatchNorm(use_running_average=not train, param_dtype=self.dtype, name=name)  # noqa: E731
        x = nn.Conv(6, (5, 5), padding="VALID", param_dtype=self.dtype, name="conv1")(x)
        x = nn.max_pool(nn.relu(bn("bn1")(x)), (2, 2), (2, 2))
        x = nn.Conv(16, (3, 3), padding="VALID", param_dtype=self.dtype, name="conv2")(x)
        x = nn.max_pool(nn.relu(bn("bn2")(x)), (2, 2), (2, 2))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # torch's (C, H, W) flatten order
        x = nn.relu(bn("bn3")(nn.Dense(24, param_dtype=self.dtype, name="fc1")(x)))
        return nn.Dense(10, param_dtype=self.dtype, name="fc2")(x)


class NnxLeNet(nnx.Module):
    def __init__(self, dtype):
        r = nnx.Rngs(0)
        self.conv1 = nnx.Conv(1, 6, (5, 5), padding="VALID", rngs=r, param_dtype=dtype)
        self.bn1 = jnnx.BatchNorm(6, param_dtype=dtype)
        self.conv2 = nnx.Conv(6, 16, (3, 3), padding="VALID", rngs=r, param_dtype=dtype)
        self.bn2 = jnnx.BatchNorm(16, param_dtype=dtype)
        self.fc1 = nnx.Linear(64, 24, rngs=r, param_dtype=dtype)
        self.bn3 = jnnx.BatchNorm(24, param_dtype=dtype)
        self.fc2 = nnx.Linear(24, 10, rngs=r, param_dtype=dtype)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.bn1(self.conv1(x))), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.bn2(self.conv2(x))), (2, 2), (2, 2))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)
        return self.fc2(nnx.relu(self.bn3(self.fc1(x))))


# --------------------------------------------------------------------------- ResNet basic block
class TorchBlock(torch.nn.Module):
    def __init__(self, cin=4, cout=8, stride=2):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.downsample = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.downsample(x))


class LinenDownsample(nn.Module):  # auto names Conv_0 / BatchNorm_0 <- torch downsample.0 / .1
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, train):
        x = nn.Conv(8, (1, 1), strides=2, use_bias=False, param_dtype=self.dtype)(x)
        return jaxinit.BatchNorm(use_running_average=not train, param_dtype=self.dtype)(x)


class LinenBlock(nn.Module):
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: jaxinit.BatchNorm(use_running_average=not train, param_dtype=self.dtype, name=name)  # noqa: E731
        conv = lambda s, name: nn.Conv(8, (3, 3), strides=s, padding=((1, 1), (1, 1)), use_bias=False,  # noqa: E731
                                       param_dtype=self.dtype, name=name)
        y = nn.relu(bn("bn1")(conv(2, "conv1")(x)))
        return nn.relu(bn("bn2")(conv(1, "conv2")(y)) + LinenDownsample(self.dtype, name="downsample")(x, train))


class NnxBlock(nnx.Module):
    def __init__(self, dtype):
        r = nnx.Rngs(0)
        self.conv1 = nnx.Conv(4, 8, (3, 3), strides=2, padding=((1, 1), (1, 1)), use_bias=False, rngs=r,
                              param_dtype=dtype)
        self.bn1 = jnnx.BatchNorm(8, param_dtype=dtype)
        self.conv2 = nnx.Conv(8, 8, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=r, param_dtype=dtype)
        self.bn2 = jnnx.BatchNorm(8, param_dtype=dtype)
        self.downsample = nnx.Sequential(nnx.Conv(4, 8, (1, 1), strides=2, use_bias=False, rngs=r, param_dtype=dtype),
                                         jnnx.BatchNorm(8, param_dtype=dtype))

    def __call__(self, x):
        y = nnx.relu(self.bn1(self.conv1(x)))
        return nnx.relu(self.bn2(self.conv2(y)) + self.downsample(x))


RNG = np.random.default_rng(0)
MODELS = {
    # name: (torch class, Linen class, NNX factory, input shape (torch layout), image?)
    "mlp": (TorchMLP, LinenMLP, nnx_mlp, (16, 6), False),
    "lenet_bn": (TorchLeNet, LinenLeNet, NnxLeNet, (8, 1, 16, 16), True),
    "resnet_block": (TorchBlock, LinenBlock, NnxBlock, (4, 4, 8, 8), True),
}


def _to_flax_layout(x: np.ndarray, image: bool) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if image else x


def _out_to_torch_layout(image_out: bool):
    return (lambda y: y.transpose(0, 3, 1, 2)) if image_out else None


def _setup(name, dtype):
    tcls, lcls, nfac, shape, image = MODELS[name]
    torch.manual_seed(0)
    tm = tcls().to(TDTYPE[dtype])
    with torch.no_grad():  # non-trivial BatchNorm affine parameters and running statistics
        for mod in tm.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    x = RNG.standard_normal(shape).astype(dtype)
    xf = _to_flax_layout(x, image)
    lm = lcls(JDTYPE[dtype])
    template = jax.eval_shape(lm.init, jax.random.key(0), jnp.asarray(xf))
    variables = jaxinit.from_torch_state_dict(tm, template)
    # Abstract NNX model (no init computation), filled with the torch weights: every Param and
    # BatchStat must be produced by the converter, or it raises.
    nm = nnx.eval_shape(lambda: nfac(JDTYPE[dtype]))
    assert jaxinit.from_torch_state_dict(tm, nm) is nm
    image_out = name == "resnet_block"
    return tm, lm, variables, nm, x, xf, _out_to_torch_layout(image_out)


# float64 for every model (the identity claim); float32 (the realistic tolerance) for the MLP and the
# BatchNorm ResNet block: LeNet in float32 adds ~10 s of eager compilation and no new operation.
# LeNet's float64 pass (11 s of compilation) is -m exhaustive: by default test_twin_20_sgd_steps
# trains the same LeNet twin 20 steps in float64 (outputs, parameters, running statistics).
@pytest.mark.parametrize("name,dtype", [(n, "float64") if n != "lenet_bn" else
                                        pytest.param(n, "float64", marks=pytest.mark.exhaustive) for n in MODELS]
                         + [("mlp", "float32"), ("resnet_block", "float32")])
def test_twin_outputs_and_gradients(name, dtype):
    """twin_check: outputs, parameter gradients and (train) running statistics after one pass."""
    tm, lm, variables, nm, x, xf, out_t = _setup(name, dtype)
    tol = TOL[dtype]["out"]
    for flavor, fmod, kw in (("linen", lm, {"variables": variables}), ("nnx", nm, {})):
        report = jaxinit.twin_check(tm, fmod, x, flax_inputs=xf, output_transform=out_t, **kw)
        for mode in ("eval", "train"):
            r = report[mode]
            for metric in ("output", "grad", "batch_stats"):
                if metric in r:
                    record_figure(f"twin/{name}", f"{metric}_{dtype}", r[metric], f"{flavor} {mode}")
                    assert r[metric] < tol, (flavor, mode, metric, r)
            assert r["output_scale"] > 0.1  # the outputs are not trivially zero
        if name == "mlp" and flavor == "linen":  # the torchinit name is the same implementation
            mirror = torchinit.twin_check(tm, fmod, x, flax_inputs=xf, output_transform=out_t, **kw)
            assert mirror == report
    # the caller's modules are untouched by the check
    assert all(int(b) == 0 for k, b in tm.state_dict().items() if k.endswith("num_batches_tracked"))


def _torch_train(tm, xs, ys, lr):
    tm.train()
    for x, y in zip(xs, ys):
        tm.zero_grad()
        loss = ((tm(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in tm.parameters():
                p -= lr * p.grad  # plain SGD, written out
    return tm


def _linen_train(lm, variables, xs, ys, lr, out_t):
    @jax.jit
    def step(variables, x, y):
        def loss(params):
            out, upd = lm.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
            out = out_t(out) if out_t else out
            return jnp.mean((out - y) ** 2), upd

        (_, upd), g = jax.value_and_grad(loss, has_aux=True)(variables["params"])
        params = jax.tree_util.tree_map(lambda p, gp: p - lr * gp, variables["params"], g)
        return {**variables, **upd, "params": params}

    for x, y in zip(xs, ys):
        variables = step(variables, x, y)
    return variables


def _nnx_train(nm, xs, ys, lr, out_t):
    nm.train()

    @nnx.jit
    def step(model, x, y):
        def loss(m):
            out = m(x)
            out = out_t(out) if out_t else out
            return jnp.mean((out - y) ** 2)

        g = nnx.grad(loss)(model)
        params = nnx.state(model, nnx.Param)
        nnx.update(model, jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g))

    for x, y in zip(xs, ys):
        step(nm, x, y)
    return nm


@pytest.mark.parametrize("name", list(MODELS))
def test_twin_20_sgd_steps(name, dtype="float64"):
    """20 plain SGD steps in train mode on the same batches: running statistics (and
    num_batches_tracked) and parameters stay identical across torch, Linen and NNX.
    float64 only (the claim is identity up to summation order; float32 would add
    compile time, and its one-pass differences are covered above)."""
    tm, lm, variables, nm, x, xf, out_t = _setup(name, dtype)
    image = MODELS[name][4]
    lr, steps = 0.05, 20
    xs = [RNG.standard_normal(x.shape).astype(dtype) for _ in range(steps)]
    with torch.no_grad():
        tm.eval()  # targets from the initial model, without touching its running statistics
        ys = [tm(torch.from_numpy(xb)).numpy() for xb in xs]
    ys = [y + RNG.standard_normal(y.shape).astype(dtype) for y in ys]  # targets: nonzero gradients
    xfs = [jnp.asarray(_to_flax_layout(xb, image)) for xb in xs]
    tm = _torch_train(tm, xs, ys, lr)
    lv = _linen_train(lm, variables, xfs, [jnp.asarray(y) for y in ys], lr, out_t)
    nm = _nnx_train(nm, xfs, [jnp.asarray(y) for y in ys], lr, out_t)
    tol = TOL[dtype]["steps"]
    expected = tm.state_dict()
    for flavor, got in (("linen", jaxinit.to_torch_state_dict(lv, tm)), ("nnx", jaxinit.to_torch_state_dict(nm, tm))):
        worst = {"running_stats": 0.0, "params": 0.0}
        for k, a in expected.items():
            b = got[k]
            if k.endswith("num_batches_tracked"):
                assert int(a) == int(b) == steps, (flavor, k)
                continue
            metric = "running_stats" if "running" in k else "params"
            worst[metric] = max(worst[metric], float((a.double() - b.double()).abs().max()))
        for metric, value in worst.items():
            if name == "mlp" and metric == "running_stats":
                continue
            record_figure(f"twin/{name}", f"{metric}_20steps_{dtype}", value, flavor)
            assert value < tol, (flavor, metric, value)


def test_twin_check_errors():
    tm = TorchMLP()
    with pytest.raises(jaxinit.InitError, match="needs its `variables`"):
        jaxinit.twin_check(tm, LinenMLP(), np.ones((2, 6), np.float32))
    with pytest.raises(torchinit.InitError, match="`modes` must be"):
        torchinit.twin_check(tm, nnx.eval_shape(lambda: nnx_mlp(jnp.float32)), np.ones((2, 6), np.float32),
                             modes=("test",))
