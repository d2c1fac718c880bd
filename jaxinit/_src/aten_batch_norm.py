r"""torch's CPU BatchNorm in training for a bfloat16/float16 input with float32 parameters (what
``torch.autocast("cpu")`` runs: a convolution's low-precision output into ``nn.BatchNorm2d``),
forward in ATen's order: bit for bit ``torch.native_batch_norm``'s output, saved mean and running
statistics, and its saved inverse standard deviation where float64 is available.

ATen's mixed-dtype kernels (aten/src/ATen/native/cpu/batch_norm_kernel.cpp,
``batch_norm_cpu_collect_stats_contiguous_internal`` and ``batch_norm_cpu_contiguous_impl``; the
update in aten/src/ATen/native/Normalization.cpp, ``batch_norm_cpu_update_stats_template``), for a
contiguous NCHW input, per channel:

* sum: each image row is read in vectors of 16 low-precision values, converted to two float32
  vectors of 8 lanes and added in turn to an 8-lane float32 accumulator (over the batch, then the
  row); the ``HW % 16`` tail values go to a scalar float32 sum, in order; the 8 lanes are then
  added to it one after the other; ``mean = sum / N``;
* ``var_sum`` the same way over ``(x - mean)^2`` (each square rounded, then added);
* ``invstd = 1 / sqrt(var_sum / N + eps)``: ``var_sum / N`` in float32, the rest in float64
  (``InvStd<float>`` adds the ``double`` eps), rounded to float32;
* running statistics: ``m * mean + (1 - m) * running_mean`` and
  ``m * var_sum / (N - 1) + (1 - m) * running_var`` with ``m = float32(momentum)``;
* output ``fma(x, alpha, beta)`` with ``alpha = invstd * weight``, ``beta = fma(-mean, alpha, bias)``
  (the compiler contracts both), rounded once to the input's dtype.

Each sum is a sequential ``lax.scan`` (the order is the point); products ATen rounds on their own
go through :func:`jaxinit._src.aten_layer_norm._rounded` so XLA forms no FMA with them (the
squares summed in the loops: the compiler does not contract a loop-carried accumulation). Flax's and
``jaxinit.BatchNorm``'s statistics are XLA reductions: another float32 order, whose last-bit
differences flip bf16 roundings of the normalised output (a conv net's 20-step bf16 training run:
5x below its bf16-vs-float32 gap instead of 10x; docs/amp.md).

The float64 step runs under ``jax.enable_x64(True)`` inside the trace, so it is exact with or without
``jax_enable_x64`` (without it a float32 ``1/sqrt`` moved the conv twin's 20-step ratio to 1.5x).

The backward is torch's formula (``batch_norm_cpu_backward``, training):
``dx = (dy - \sum dy / N - (x - \mu) k)\,invstd\,w`` with ``k = \sum (x-\mu) dy \cdot invstd^2 / N``,
``dw = invstd \sum (x-\mu) dy``, ``db = \sum dy``; the sums in XLA's order.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinit._src.amp_round import round_low
from jaxinit._src.aten_layer_norm import _div, _rounded

f32 = jnp.float32
BVEC = 16  # Vectorized<BFloat16/Half>::size() in the AVX2 build (two float32 vectors of 8)
FVEC = 8


def _seq_sum(slabs, init):
    """``init + slabs[0] + slabs[1] + ...`` in that order (a scan: XLA keeps the order)."""
    if slabs.shape[0] == 0:
        return init
    return lax.scan(lambda acc, s: (acc + s, None), init, slabs)[0]


def _channel_sum(vals):
    """ATen's per-channel sum of ``vals`` [B, HW, C] (float32): 8-lane vector accumulator over the
    16-wide blocks, scalar tail, lanes added to the tail sum one by one."""
    b, hw, c = vals.shape
    k = hw // BVEC
    body = vals[:, :k * BVEC, :].reshape(b * k * 2, FVEC, c)  # (n, block, half) in ATen's order
    lanes = _seq_sum(body, jnp.zeros((FVEC, c), f32))
    tail = vals[:, k * BVEC:, :].reshape(b * (hw - k * BVEC), c)
    total = _seq_sum(tail, jnp.zeros((c,), f32))
    acc = lanes[0]
    for i in range(1, FVEC):
        acc = acc + lanes[i]
    return total + acc


def batch_stats(x):
    """(mean, var_sum) of a low-precision ``x`` [B, ..., C] (channels last) as ATen's mixed-dtype
    kernel computes them for the NCHW-contiguous torch tensor."""
    b, c = x.shape[0], x.shape[-1]
    vals = x.astype(f32).reshape(b, -1, c)
    n = vals.shape[0] * vals.shape[1]
    mean = _div(_channel_sum(vals), n)
    d = vals - mean
    return mean, _channel_sum(_rounded(d * d))


def _invstd(var_sum, n: int, eps: float):
    v = _div(var_sum, n)
    with jax.enable_x64(True):  # float64 inside the trace even when jax_enable_x64 is off (InvStd<float> is double)
        s = jnp.sqrt(v.astype(jnp.float64) + jnp.float64(eps))
        return (1.0 / _opaque64(s)).astype(f32)  # opaque: XLA would rewrite 1/sqrt as rsqrt


def _opaque64(p):
    i = lax.bitcast_convert_type(p, jnp.int64)
    i = i | (jnp.isnan(p).astype(jnp.int64) & (i >> 1))
    return lax.bitcast_convert_type(i, jnp.float64)


def _forward(x, weight, bias, mean, invstd):
    alpha = _rounded(invstd * weight)
    beta = bias - mean * alpha
    return round_low(x.astype(f32) * alpha + beta, x.dtype)


@jax.custom_vjp
def _normalize(x, weight, bias, mean, invstd):
    return _forward(x, weight, bias, mean, invstd)


def _normalize_fwd(x, weight, bias, mean, invstd):
    return _forward(x, weight, bias, mean, invstd), (x, weight, mean, invstd)


def _normalize_bwd(res, dy):
    x, w, mean, invstd = res
    xf, dyf = x.astype(f32), dy.astype(f32)
    axes = tuple(range(x.ndim - 1))
    n = int(np.prod([x.shape[a] for a in axes]))
    total = jnp.sum(dyf, axis=axes)
    dotp = jnp.sum((xf - mean) * dyf, axis=axes)
    k = dotp * invstd * invstd / n
    dx = (dyf - total / n - (xf - mean) * k) * invstd * w
    zero = jnp.zeros_like(mean)
    return dx.astype(x.dtype), dotp * invstd, total, zero, zero


_normalize.defvjp(_normalize_fwd, _normalize_bwd)


@functools.partial(jax.jit, static_argnums=(5, 6))
def batch_norm_train(x, weight, bias, running_mean, running_var, momentum: float, eps: float):
    """Training-mode BatchNorm of a low-precision channels-last ``x`` with float32 ``weight``,
    ``bias`` and running statistics, as torch's CPU kernel under autocast (module docstring).

    Returns ``(y, new_running_mean, new_running_var)``; ``y`` in ``x``'s dtype. The statistics
    carry no gradient (torch's ``save_mean``/``save_invstd`` are treated as constants by its backward
    formula, which accounts for them); the gradient is torch's formula.

    Example::

        y, rm, rv = batch_norm_train(x_bf16, scale, bias, mean, var, 0.1, 1e-5)
    """
    weight, bias, running_mean, running_var = (jnp.asarray(a, f32) for a in (weight, bias, running_mean, running_var))
    n = int(np.prod(x.shape[:-1]))
    mean, var_sum = batch_stats(lax.stop_gradient(x))
    invstd = _invstd(var_sum, n, eps)
    m = f32(np.float32(momentum))
    one_m = f32(np.float32(1.0) - np.float32(momentum))
    new_mean = _rounded(m * mean) + _rounded(one_m * running_mean)
    unbiased = _div(var_sum, n - 1) if n > 1 else jnp.full_like(var_sum, jnp.nan)
    new_var = _rounded(m * unbiased) + _rounded(one_m * running_var)
    y = _normalize(x, weight, bias, mean, invstd)
    return y, lax.stop_gradient(new_mean), lax.stop_gradient(new_var)
