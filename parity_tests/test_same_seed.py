"""Same seed, same tensor: torchinit drawing from a JAX key equals jaxinit (and flax) bit for bit.

Every factory x dtype: ``torchinit.NAME(...)(k, shape, dtype)`` vs the real
``jaxinit.NAME(...)(k, shape, dtype)`` (which calls ``jax.random``). Bitwise
(``array_equal``) in every dtype, float64 included, except ``svd`` with explicit
singular values (matmuls in a different order: absolute difference below 2e-6 in
float32, 1e-14 in float64). :func:`test_large_factory_draws_are_bitwise` repeats the
normal-based factories on 2**20 values per dtype. Then the in-place path on PyTorch layouts, and
whole models: a torch MLP / LeNet vs their Flax twins initialized by ``reinit``.
"""
from __future__ import annotations

import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxinit
import torchinit
import torchinit.random as tr
from _jaxinit.errors import InitError
from parity_tests._figures import record_figure

DTYPES = [("float32", torch.float32, jnp.float32), ("float64", torch.float64, jnp.float64),
          ("bfloat16", torch.bfloat16, jnp.bfloat16), ("float16", torch.float16, jnp.float16)]

CASES = [
    ("uniform", dict(a=-0.3, b=0.55)),
    ("normal", dict(mean=0.1, std=0.7)),
    ("trunc_normal", dict(mean=0.1, std=0.7, a=-1.0, b=1.3)),  # inverse-CDF path (within +-3 std)
    ("trunc_normal", dict(std=0.02)),  # bounds at +-100 std: normal rejection loop
    ("trunc_normal", dict(mean=0.0, std=1.0, a=2.5, b=4.0)),  # little mass: uniform-proposal rejection
    ("truncated_normal", dict(stddev=0.5)),
    ("xavier_uniform", dict(gain=1.3)),
    ("xavier_normal", dict()),
    ("kaiming_uniform", dict(a=math.sqrt(5))),
    ("kaiming_normal", dict(mode="fan_out", nonlinearity="relu")),
    ("orthogonal", dict(gain=2.0)),
    ("svd", dict(singular_values=[1.0, 2.0, 3.0, 0.5, 0.1])),
    ("sparse", dict(sparsity=0.3)),
    ("variance_scaling", dict(scale=2.0, mode="fan_avg", distribution="uniform")),
    ("variance_scaling", dict(scale=0.5, mode="fan_geo_avg", distribution="normal")),
    ("glorot_uniform", dict()),
    ("glorot_normal", dict()),
    ("lecun_uniform", dict()),
    ("lecun_normal", dict()),
    ("he_uniform", dict()),
    ("he_normal", dict()),
    ("constant", dict(val=0.25)),
    ("zeros", dict()),
    ("eye", dict()),
]

SVD_ABS = {"float32": 2e-6, "float64": 1e-14}  # u @ v * s @ v.T: torch's and XLA's matmul orders differ


def _np(x):
    x = x.float() if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16 else x
    return np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x).astype(np.float64)


def _key_variants():
    k = jax.random.fold_in(jax.random.key(3), 17)
    return k, tr.as_key(k), jax.random.key_data(k)


# 16-bit dtypes follow one rule (float32 draw, cast), so a subset of factories checks it.
_SIXTEEN_BIT_CASES = ("uniform", "normal", "trunc_normal", "kaiming_uniform", "he_normal", "orthogonal",
                      "sparse", "zeros")
_FACTORY_PARAMS = [
    pytest.param(name, kw, *d, id=f"{d[0]}-{name}-{i}")
    for d in DTYPES for i, (name, kw) in enumerate(CASES)
    if d[0] not in ("float16", "bfloat16") or name in _SIXTEEN_BIT_CASES
]


def _to_torch_layout(flax_shape):
    """Flax (*k, in, out) -> torch (out, in, *k); and the axes taking torch's result back to Flax."""
    nd = len(flax_shape)
    perm = [nd - 1, nd - 2] + list(range(nd - 2))  # torch axis i is flax axis perm[i]
    back = sorted(range(nd), key=lambda i: perm[i])
    return tuple(flax_shape[a] for a in perm), back


def _assert_same_draw(name, kw, dt, got, want, form):
    assert got.shape == want.shape, form
    if name == "svd":  # float32/float64 only: 16-bit dtypes do not run svd
        diff = np.abs(got - want).max()
        record_figure(f"same seed svd {dt}", "max_abs", diff, form)
        assert diff <= SVD_ABS[dt], form
    else:
        assert np.array_equal(got, want), (name, dt, form)


@pytest.mark.parametrize("name,kw,dt,tdt,jdt", _FACTORY_PARAMS)
def test_factory_keyed_equals_jaxinit(name, kw, dt, tdt, jdt):
    """Every key form x every factory: torchinit's default (torch) layout on the torch
    shape is jaxinit's draw on the Flax twin, transposed; with the Flax layout given
    explicitly, it is jaxinit's draw on the same shape."""
    shape = (5, 9) if name == "svd" else (6, 9) if name in ("sparse", "eye") else (3, 3, 4, 6)
    tshape, back = _to_torch_layout(shape)
    variants = _key_variants()
    tinit = getattr(torchinit, name)(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _np(getattr(jaxinit, name)(**kw)(variants[0], shape, jdt))
        # typed jax key, torchinit key, raw uint32[2]: each gives the same draw
        for form, key in zip(("jax.random.key", "torchinit.random key", "uint32[2]"), variants):
            got = _np(tinit(key, tshape, tdt)).transpose(back)
            _assert_same_draw(name, kw, dt, got, want, form)
        if any(a in tinit.args for a in ("in_axis", "out_axis")):
            got = _np(tinit.with_layout(**jaxinit.FLAX_LAYOUT)(variants[0], shape, tdt))
            _assert_same_draw(name, kw, dt, got, want, "explicit FLAX_LAYOUT")


# The factories whose arithmetic goes beyond the samplers' (test_random.py measures those on
# 2**20 + 3 draws x 3 keys): normal's fused affine map, trunc_normal's inverse-CDF draw with its
# clamp, variance_scaling's eager scale; 2**20 values each (torch layout: the Flax draw, transposed).
_LARGE_FACTORIES = [("normal", dict(mean=0.1, std=0.7)), ("trunc_normal", dict(mean=0.1, std=0.7, a=-1.0, b=1.3)),
                    ("variance_scaling", dict(scale=0.5, mode="fan_geo_avg", distribution="normal"))]


@pytest.mark.parametrize("dt,tdt,jdt", DTYPES[:2], ids=["float32", "float64"])
def test_large_factory_draws_are_bitwise(dt, tdt, jdt):
    k = jax.random.fold_in(jax.random.key(3), 2**32 - 1)
    shape = (1024, 1024)
    for name, kw in _LARGE_FACTORIES:
        want = np.asarray(getattr(jaxinit, name)(**kw)(k, shape, jdt))  # as a user calls it: not wrapped in a jit
        tshape, back = _to_torch_layout(shape)
        got = getattr(torchinit, name)(**kw)(tr.as_key(k), tshape, tdt).numpy().transpose(back)
        assert np.array_equal(got, want), (name, dt)


def test_factory_default_layout_is_torch():
    """torchinit factories read (out, in): kaiming_uniform(a=sqrt(5)) on (256, 512) has
    torch's bound 1/sqrt(512), with a seed (bitwise the in-place path) and with a JAX key."""
    init = torchinit.kaiming_uniform(a=math.sqrt(5))
    ref = torch.nn.init.kaiming_uniform_(torch.empty(256, 512), a=math.sqrt(5),
                                         generator=torch.Generator().manual_seed(3))
    assert torch.equal(init(3, (256, 512)), ref)
    keyed = init(tr.key(3), (256, 512))
    assert 0.9 / math.sqrt(512) < keyed.abs().max() <= 1 / math.sqrt(512)
    assert torchinit.compute_fans((256, 512)) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(256, 512))


def test_int_seed_stays_a_torch_seed():
    """Backward compatibility: an int is a torch seed, not a JAX key."""
    a = torchinit.normal()(0, (4, 5))
    b = torch.empty(4, 5).normal_(0, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert not torch.equal(a, torchinit.normal()(tr.key(0), (4, 5)))


def test_keyed_errors():
    w = torch.empty(3, 4)
    with pytest.raises(InitError, match="not both"):
        torchinit.kaiming_uniform_(w, key=tr.key(0), generator=torch.Generator())
    with pytest.raises(InitError, match="JAX-style key"):
        torchinit.normal_(w, key=5)
    with pytest.raises(InitError, match="key"):
        torchinit.normal()(torch.zeros(2, dtype=torch.int64), (2, 2))


# --------------------------------------------------------------------------- in-place, torch layouts
@pytest.mark.parametrize("dt,tdt,jdt", [DTYPES[0], DTYPES[2]], ids=["float32", "bfloat16"])
def test_inplace_key_is_the_flax_twin_permuted(dt, tdt, jdt):
    k = jax.random.key(8)

    def check(torch_shape, fn, jax_init, flax_shape, to_torch, **kw):
        t = torch.empty(torch_shape, dtype=tdt)
        fn(t, key=k, **kw)
        want = np.asarray(jax_init(k, flax_shape, jdt)).astype(np.float64).transpose(to_torch)
        assert np.array_equal(_np(t), want), fn.__name__

    # Linear(4, 6): torch (out, in) = Dense kernel (in, out) transposed
    check((6, 4), torchinit.kaiming_uniform_, jaxinit.kaiming_uniform(a=math.sqrt(5)), (4, 6), (1, 0), a=math.sqrt(5))
    check((6, 4), torchinit.xavier_normal_, jaxinit.xavier_normal(), (4, 6), (1, 0))
    check((6, 4), torchinit.orthogonal_, jaxinit.orthogonal(), (4, 6), (1, 0))
    check((6, 4), torchinit.trunc_normal_, jaxinit.trunc_normal(std=0.5), (4, 6), (1, 0), std=0.5)
    check((6,), torchinit.uniform_, jaxinit.uniform(-0.5, 0.5), (6,), (0,), a=-0.5, b=0.5)
    # Conv2d(3, 8, 5): torch (out, in, kh, kw) = Flax Conv kernel (kh, kw, in, out) permuted
    check((8, 3, 5, 5), torchinit.lecun_normal_, jaxinit.lecun_normal(), (5, 5, 3, 8), (3, 2, 0, 1))
    check((8, 3, 5, 5), torchinit.he_uniform_, jaxinit.he_uniform(), (5, 5, 3, 8), (3, 2, 0, 1))
    # ConvTranspose2d(3, 8, 5): torch (in, out, kh, kw) = Flax ConvTranspose kernel (kh, kw, in, out)
    check((3, 8, 5, 5), torchinit.xavier_uniform_, jaxinit.xavier_uniform(**jaxinit.FLAX_CONV_TRANSPOSE_LAYOUT),
          (5, 5, 3, 8), (2, 3, 0, 1), conv_transpose=True)


# --------------------------------------------------------------------------- whole models
class FlaxMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(32, name="fc1")(x))
        x = nn.relu(nn.Dense(16, name="fc2")(x))
        return nn.Dense(10, name="fc3")(x)


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(20, 32), torch.nn.Linear(32, 16), torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class FlaxLeNet(nn.Module):
    @nn.compact
    def __call__(self, x):  # NHWC
        x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="VALID", name="conv1")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID", name="conv2")(x)), (2, 2), (2, 2))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # flatten in torch's (C, H, W) order
        # the head's names are torch LeNet's (below): the converter needs no name mapping
        x = nn.relu(nn.Dense(120, name="fc1")(x))
        x = nn.relu(nn.Dense(84, name="fc2")(x))
        return nn.Dense(10, name="fc3")(x)


class TorchLeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(256, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, 10)

    def forward(self, x):  # NCHW
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = x.flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _to_flax_layout(name, value):
    v = value.detach().numpy()
    if name.endswith("weight"):
        return v.transpose(1, 0) if v.ndim == 2 else v.transpose(2, 3, 1, 0)
    return v


@pytest.mark.parametrize("kind", ["mlp", "lenet"])
def test_whole_model_torch_equals_flax_twin(kind):
    if kind == "mlp":
        tmodel, fmodel, x = TorchMLP(), FlaxMLP(), np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32)
    else:
        tmodel, fmodel = TorchLeNet(), FlaxLeNet()
        x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype(np.float32)
    # PyTorch's default scheme in both (kaiming_uniform(a=sqrt(5)) weights) and a
    # truncated-normal rule, so uniform and inverse-CDF normal paths are both exercised
    trules = [(r"fc3\.weight$", torchinit.lecun_normal()), (r"weight$", torchinit.kaiming_uniform(a=math.sqrt(5))),
              (r"bias$", torchinit.uniform(-0.1, 0.1))]
    jrules = [(r"fc3/kernel$", jaxinit.lecun_normal()), (r"kernel$", jaxinit.kaiming_uniform(a=math.sqrt(5))),
              (r"bias$", jaxinit.uniform(-0.1, 0.1))]
    key = jax.random.key(2024)
    params = jax.jit(fmodel.init)(jax.random.key(0), x)["params"]  # upstream Flax: one compile, not one per op
    params = jaxinit.reinit(params, jrules, key)
    torchinit.reinit(tmodel, trules, tr.as_key(key))
    for name, value in tmodel.named_parameters():
        mod, leaf = name.rsplit(".", 1)
        flax_leaf = params[mod]["kernel" if leaf == "weight" else "bias"]
        assert np.array_equal(_to_flax_layout(name, value), np.asarray(flax_leaf)), name
    # the same function: outputs agree to float32 rounding of different kernels' summation orders
    tx = torch.from_numpy(x if kind == "mlp" else x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        out_t = tmodel(tx).numpy()
    out_f = np.asarray(jax.jit(fmodel.apply)({"params": params}, x))
    diff = np.abs(out_t - out_f).max()
    record_figure("same seed whole model", "max_abs_out", diff, kind)
    assert diff < 1e-5
