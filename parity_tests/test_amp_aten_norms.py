"""torch's CPU normalization kernels in ATen's order, which the CPU Autocast policy runs (issue 23, the
twins): the float32 LayerNorm (jaxinit/_src/aten_layer_norm.py, a Flax ``LayerNorm`` on a float32
input) and the mixed-dtype training BatchNorm (jaxinit/_src/aten_batch_norm.py, ``jaxinit.BatchNorm``
on a bf16/fp16 input with float32 parameters).

Judged bitwise against the real ``torch.nn.functional.layer_norm`` / ``torch.native_layer_norm`` /
``torch.native_batch_norm``. LayerNorm:
row lengths with and without a tail (``N % 8``), one chunk of 16 vectors and cascades of several,
with and without weight/bias, eager and under ``jit``. Default run: a sample of lengths and the rule;
``-m exhaustive``: lengths 1 to 8200. Flax's own LayerNorm differs from torch's in about half the
elements (the control that makes the bitwise claim meaningful).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import linen as nn

import jaxinit.amp as ja
from _jaxinit.errors import InitError
import jaxinit
from jaxinit._src import aten_batch_norm as B
from jaxinit._src import aten_layer_norm as A

SAMPLED = (7, 264)  # a tail only; 33 vectors = 3 chunks (a cascade of depth 2) and the lane merges
EXHAUSTIVE = tuple(range(1, 70)) + (127, 128, 129, 255, 256, 257, 300, 513, 1000, 1024, 2051, 4100, 8200)


def _data(n, rows=37, seed=0):
    rng = np.random.default_rng(seed + n)
    x = (rng.standard_normal((rows, n)) * 3 + 1).astype(np.float32)
    return x, rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def _check_bitwise(n, jit):
    x, g, b = _data(n)
    fn = jax.jit(A.layer_norm, static_argnums=3) if jit else A.layer_norm
    want = F.layer_norm(torch.tensor(x), (n,), torch.tensor(g), torch.tensor(b), 1e-5).numpy()
    np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(x), jnp.asarray(g), jnp.asarray(b), 1e-5)), want)
    y, mean, rstd = torch.native_layer_norm(torch.tensor(x), (n,), None, None, 1e-5)
    np.testing.assert_array_equal(np.asarray(fn(jnp.asarray(x), None, None, 1e-5)), y.numpy())
    jm, jv = A.row_moments(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(jm), mean.numpy().ravel())  # ATen's RowwiseMoments mean


@pytest.mark.parametrize("n", SAMPLED)
def test_aten_layer_norm_bitwise_sampled(n):
    _check_bitwise(n, jit=False)


@pytest.mark.exhaustive
@pytest.mark.parametrize("n", EXHAUSTIVE)
def test_aten_layer_norm_bitwise_exhaustive(n):
    _check_bitwise(n, jit=True)
    _check_bitwise(n, jit=False)


def test_flax_layer_norm_is_not_torchs_the_control():
    """Without the rule (Flax's own LayerNorm) about half the float32 outputs differ from torch's."""
    x, g, b = _data(32, rows=96)
    want = F.layer_norm(torch.tensor(x), (32,), torch.tensor(g), torch.tensor(b), 1e-5).numpy()
    flax = np.asarray(nn.LayerNorm(epsilon=1e-5).apply({"params": {"scale": jnp.asarray(g), "bias": jnp.asarray(b)}},
                                                       jnp.asarray(x)))
    share = float((flax != want).mean())
    assert 0.3 < share < 0.8, share


def test_autocast_rule_runs_atens_layer_norm():
    """Under Autocast('cpu') a Flax LayerNorm on a float32 input is bitwise torch's (trailing axes,
    several of them, without scale/bias); a bfloat16 input keeps the rounded-once Flax path; with the
    policy disabled, Flax's own LayerNorm (the non-autocast path is untouched)."""
    ac = ja.Autocast("cpu", jnp.bfloat16)
    x, g, b = _data(40, rows=6)
    x3 = x.reshape(6, 4, 10)
    want = F.layer_norm(torch.tensor(x3), (10,), torch.tensor(g[:10]), torch.tensor(b[:10]), 1e-5).numpy()
    p10 = {"params": {"scale": jnp.asarray(g[:10]), "bias": jnp.asarray(b[:10])}}
    with ac:
        got = nn.LayerNorm(epsilon=1e-5).apply(p10, jnp.asarray(x3))
    np.testing.assert_array_equal(np.asarray(got), want)
    # normalized_shape of two trailing dims: Flax reduction_axes = feature_axes = (-2, -1)
    want2 = F.layer_norm(torch.tensor(x3), (4, 10), torch.tensor(g.reshape(4, 10)), torch.tensor(b.reshape(4, 10)),
                         1e-5).numpy()
    two = nn.LayerNorm(epsilon=1e-5, reduction_axes=(-2, -1), feature_axes=(-2, -1))
    p2 = {"params": {"scale": jnp.asarray(g.reshape(4, 10)), "bias": jnp.asarray(b.reshape(4, 10))}}
    with ac:
        np.testing.assert_array_equal(np.asarray(two.apply(p2, jnp.asarray(x3))), want2)
        plain = nn.LayerNorm(epsilon=1e-5, use_scale=False, use_bias=False).apply({}, jnp.asarray(x3))
    np.testing.assert_array_equal(np.asarray(plain), F.layer_norm(torch.tensor(x3), (10,), eps=1e-5).numpy())
    off = nn.LayerNorm(epsilon=1e-5).apply(p10, jnp.asarray(x3))
    with ja.Autocast(enabled=False):
        np.testing.assert_array_equal(np.asarray(nn.LayerNorm(epsilon=1e-5).apply(p10, jnp.asarray(x3))),
                                      np.asarray(off))
    assert float((np.asarray(off) != want).mean()) > 0.2  # Flax's own order: the rule is what makes it bitwise
    with ac:  # a bf16 input: torch's mixed-dtype kernel, Flax's float32 computation rounded once (unchanged)
        low = nn.LayerNorm(epsilon=1e-5).apply(p10, jnp.asarray(x3).astype(jnp.bfloat16))
    assert low.dtype == jnp.bfloat16


def test_layer_norm_gradient_is_torchs_formula():
    """The backward (torch's layer_norm_backward formula, sums in XLA's order) against torch's autograd:
    float32 agreement at a few ulps of each gradient's scale."""
    x, g, b = _data(33, rows=12)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    xt, gt, bt = (torch.tensor(v, requires_grad=True) for v in (x, g, b))
    F.layer_norm(xt, (33,), gt, bt, 1e-5).backward(torch.tensor(dy))
    _, vjp = jax.vjp(lambda a, s, c: A.layer_norm(a, s, c, 1e-5), jnp.asarray(x), jnp.asarray(g), jnp.asarray(b))
    for got, want in zip(vjp(jnp.asarray(dy)), (xt.grad, gt.grad, bt.grad)):
        want = want.numpy()
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=4e-7 * np.abs(want).max())


def test_layer_norm_rejects_other_dtypes():
    with pytest.raises(InitError, match=r"x must be float32.*float64.*astype\(jnp.float32\)"):
        A.layer_norm(np.zeros((2, 3)))


# ---------------------------------------------------------------- BatchNorm (training, low-precision input)

BN_SAMPLED = (((16, 8, 10, 10), "bfloat16"), ((3, 4, 17), "float16"))  # blocks of 16 + tail; a 1-d image
BN_EXHAUSTIVE = tuple((s, d) for s in ((16, 8, 10, 10), (16, 16, 5, 5), (4, 3, 7, 7), (8, 4, 4, 4), (2, 6, 33, 3),
                                       (3, 4, 17), (5, 2, 16, 16), (1, 3, 2, 2))
                      for d in ("bfloat16", "float16"))


def _bn_case(shape, low, seed=2):
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal(shape) * 2 + 0.5, dtype=getattr(torch, low))
    c = shape[1]
    rm, rv = torch.tensor(rng.standard_normal(c), dtype=torch.float32), torch.tensor(rng.random(c) + 0.5, dtype=torch.float32)
    w, b = torch.tensor(rng.standard_normal(c), dtype=torch.float32), torch.tensor(rng.standard_normal(c), dtype=torch.float32)
    return x, w, b, rm, rv


def _check_bn(shape, low):
    x, w, b, rm, rv = _bn_case(shape, low)
    xl = jnp.asarray(np.moveaxis(x.float().numpy(), 1, -1)).astype(low)
    y, mean, var = B.batch_norm_train(xl, jnp.asarray(w.numpy()), jnp.asarray(b.numpy()), jnp.asarray(rm.numpy()),
                                      jnp.asarray(rv.numpy()), 0.1, 1e-5)
    ty, _, _ = torch.native_batch_norm(x, w, b, rm, rv, True, 0.1, 1e-5)  # updates rm, rv in place
    assert y.dtype == low
    np.testing.assert_array_equal(np.moveaxis(np.asarray(y.astype(jnp.float32)), -1, 1), ty.float().numpy())
    np.testing.assert_array_equal(np.asarray(mean), rm.numpy())
    np.testing.assert_array_equal(np.asarray(var), rv.numpy())


@pytest.mark.parametrize("shape,low", BN_SAMPLED)
def test_aten_batch_norm_bitwise_sampled(shape, low):
    _check_bn(shape, low)


@pytest.mark.exhaustive
@pytest.mark.parametrize("shape,low", BN_EXHAUSTIVE)
def test_aten_batch_norm_bitwise_exhaustive(shape, low):
    _check_bn(shape, low)


def test_autocast_rule_runs_atens_batch_norm():
    """jaxinit.BatchNorm in training under Autocast('cpu') on a bf16 NHWC input: output, running statistics
    and num_batches_tracked bitwise torch.nn.BatchNorm2d's on the bf16 NCHW tensor (what autocast feeds it);
    the gradient is torch's formula (dx at most one bf16 ulp in a few elements, dw/db to float32 rounding)."""
    x, w, b, rm, rv = _bn_case((16, 8, 10, 10), "bfloat16", seed=5)
    tm = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        tm.weight.copy_(w), tm.bias.copy_(b), tm.running_mean.copy_(rm), tm.running_var.copy_(rv)
    xt = x.clone().requires_grad_()
    ty = tm(xt)
    dy = torch.tensor(np.random.default_rng(6).standard_normal(ty.shape), dtype=torch.bfloat16)
    ty.backward(dy)
    v = {"params": {"scale": jnp.asarray(w.numpy()), "bias": jnp.asarray(b.numpy())},
         "batch_stats": {"mean": jnp.asarray(rm.numpy()), "var": jnp.asarray(rv.numpy()),
                         "num_batches_tracked": jnp.zeros((), jnp.int32)}}
    xl = jnp.asarray(np.moveaxis(x.float().numpy(), 1, -1)).astype(jnp.bfloat16)
    bn = jaxinit.BatchNorm(use_running_average=False)

    def f(params, xin):
        with ja.Autocast("cpu", jnp.bfloat16):
            return bn.apply({"params": params, "batch_stats": v["batch_stats"]}, xin, mutable=["batch_stats"])

    y, new = f(v["params"], xl)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(y.astype(jnp.float32)), -1, 1), ty.detach().float().numpy())
    np.testing.assert_array_equal(np.asarray(new["batch_stats"]["mean"]), tm.running_mean.numpy())
    np.testing.assert_array_equal(np.asarray(new["batch_stats"]["var"]), tm.running_var.numpy())
    assert int(new["batch_stats"]["num_batches_tracked"]) == 1
    _, vjp = jax.vjp(lambda p, xin: f(p, xin)[0], v["params"], xl)
    gp, gx = vjp(jnp.asarray(np.moveaxis(dy.float().numpy(), 1, -1)).astype(jnp.bfloat16))
    gx = np.moveaxis(np.asarray(gx.astype(jnp.float32)), -1, 1)
    want = xt.grad.float().numpy()
    assert float((gx != want).mean()) < 0.01
    # and those few at one bf16 ulp of torch's value (2^(e - 7) for |value| in [2^e, 2^(e+1)))
    ulp = 2.0 ** (np.floor(np.log2(np.maximum(np.abs(want), np.finfo(np.float32).tiny))) - 7)
    assert np.all(np.abs(gx - want) <= ulp), float(np.max(np.abs(gx - want) / ulp))
    np.testing.assert_allclose(np.asarray(gp["scale"]), tm.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(gp["bias"]), tm.bias.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_forward_only_jit_keeps_every_bf16_rounding():
    """XLA's excess precision (on by default) removes a bf16 ``convert`` pair between fused ops; in a
    forward-only ``jax.jit`` of the conv twin the model's own ``x.mean`` of the bf16 BatchNorm output
    then reached ``fc`` unrounded and 37.5% of the bf16 logits were one ulp off torch's (bitwise
    under ``value_and_grad``). The policy pins its bf16 roundings (``reduce_precision``): bitwise."""
    from parity_tests import _amp_twins as T

    tcls, lcls, shape, perm = T.TWINS["conv_bn"]
    torch.manual_seed(0)
    tmodel, model = tcls(), lcls()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xj = jnp.asarray(x.transpose(perm))
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), xj))
    variables = jaxinit.from_torch_state_dict(tmodel, template)
    policy = ja.Autocast("cpu", jnp.bfloat16)

    def forward(v, x):
        with policy:
            return model.apply(v, x, mutable=["batch_stats"])[0]

    got = np.asarray(jax.jit(forward)(variables, xj), np.float32)
    with torch.autocast("cpu", torch.bfloat16):
        want = tmodel(torch.from_numpy(x)).detach().float().numpy()
    np.testing.assert_array_equal(got, want)
