r"""torch's float32 CPU LayerNorm in JAX, in ATen's order of operations: bit for bit ``F.layer_norm``.

Flax's ``LayerNorm`` computes ``var = mean(x**2) - mean(x)**2`` (or two passes) with XLA's reductions;
ATen's CPU kernel (aten/src/ATen/native/cpu/layer_norm_kernel.cpp, ``LayerNormKernelImplInternal``)
computes each row's moments with ``RowwiseMoments`` (aten/src/ATen/native/cpu/moments_utils.h): a
vectorised Welford over vectors of :data:`VEC` float32 lanes, chunks of 16 vectors merged in a
binary cascade, a scalar Welford over the ``N % VEC`` tail, then the lanes merged one by one. On
the same float32 input the two differ in about half the output elements (measured: 54% of a
(96, 32) batch, up to thousands of float32 ulps near zero outputs); under bf16 autocast, where torch
leaves ``layer_norm`` in float32 on CPU and the next matmul rounds its input to bfloat16, those
differences flip bfloat16 roundings and a training run drifts (docs/amp.md).

:func:`layer_norm` reproduces the kernel's operations in order, each rounded to float32 as the
kernel rounds it:

* chunk Welford (``UpdateMomentsVec``): ``m1 = fma(1/(j+1), x - m1, m1)``,
  ``m2 = fma(x - m1_old, x - m1, m2)`` (explicit ``vec::fmadd``);
* chunk merge (``AddMomentsVec``): ``c = m0_add / n``, ``d = m1_add - m1``,
  ``m1 = m1 + c d``, ``m2 = fma(d\,m0, c\,d, m2 + m2_add)``;
* tail (scalar): ``m1 += d / k``, ``m2 += d (x - m1)`` (not fused);
* lane merge (``AddMoments``, scalar, contracted by the compiler): ``m1 = fma(c, d, m1)``,
  ``m2 = m2 + fma(d d c, m0, m2_add)``;
* ``rstd = 1 / sqrt(m2 / N + eps)``, ``y = fma((x - mean) rstd, gamma, beta)``.

A fused multiply-add is written ``a * b + c`` inside a jitted function (XLA's CPU backend contracts
it into one FMA instruction; :func:`layer_norm` is always jitted, since op-by-op execution forms no
FMA); a product that ATen rounds on its own goes through :func:`_rounded`, which hides it from that
contraction, and a division by a constant through :func:`_div`. Checked bitwise against ``torch.nn.functional.layer_norm`` on CPU for
row lengths 1 to 8200 (tails, one and many chunks, cascades of depth 1 to 6):
``parity_tests/test_amp_layer_norm.py``.

:data:`VEC` is 8, measured on an AVX512 host (16 lanes match no row length above 15): ATen's
``REGISTER_DISPATCH`` gives AVX512 hosts the AVX2 build of a kernel unless it is registered with
``ALSO_REGISTER_AVX512_DISPATCH``, so x86-64 hosts with AVX2 or AVX512 both sum in
``Vectorized<float>::size() == 8`` lanes, and the generic build has 8 lanes too. An ARM build of torch (NEON/SVE vectors) sums in another order: there the
result is torch's formula in another rounding order, not bitwise.

The backward is torch's formula (``layer_norm_backward_frame``): ``dx = rstd\,dy\,\gamma + b\,x + c``
with ``b = (db\,\mu - ds)\,rstd^3/N``, ``c = -b\mu - db\,rstd/N``, ``ds = \sum dy\,x\,\gamma``,
``db = \sum dy\,\gamma``; the sums in XLA's order (a float32 last-bit difference from torch's, which
under autocast stays in the float32 residual stream).
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from _jaxinit.errors import InitError

VEC = 8  # Vectorized<float>::size() of the ATen build that runs the kernel (AVX2 / generic)
CHUNK = 16  # kChunkSize in moments_utils.h

f32 = jnp.float32


def _rounded(p):
    """``p`` unchanged but opaque to the compiler, so a product is rounded before the add that uses
    it (as ``jaxinit._src.lbfgs._rounded``: the bit pattern passes through an identity XLA cannot
    see through)."""
    i = jax.lax.bitcast_convert_type(p, jnp.int32)
    i = i | (jnp.isnan(p).astype(jnp.int32) & (i >> 1))
    return jax.lax.bitcast_convert_type(i, f32)


def _div(a, k: float):
    """``a / k`` for a Python constant ``k``, divided (XLA's simplifier turns a division by a constant
    into a multiplication by its rounded reciprocal: another float32 result). The divisor is built
    from ``a`` (``k`` where ``a`` is not NaN), which no simplification can fold."""
    return a / jnp.where(jnp.isnan(a), a, f32(k))


def _ceil_log2(x: int) -> int:
    """``utils::CeilLog2`` (aten/src/ATen/native/cpu/utils.h): 1 for x <= 2."""
    return 1 if x <= 2 else int(x - 1).bit_length()


def _merge_vec(m0_add: int, m1_add, m2_add, m0: int, m1, m2):
    """``AddMomentsVec``: fold (m0_add, m1_add, m2_add) into (m0, m1, m2)."""
    n = m0 + m0_add
    if m0_add == 0:
        return m0, m1, m2
    c = f32(np.float32(m0_add) / np.float32(n))
    delta = m1_add - m1
    m2_tmp = m2 + m2_add
    c_delta = _rounded(c * delta)
    m0_delta = _rounded(delta * f32(m0))
    return n, m1 + c_delta, m0_delta * c_delta + m2_tmp


def _merge_scalar(m0_add: int, m1_add, m2_add, m0: int, m1, m2):
    """``AddMoments`` (scalar; the compiler contracts ``m1 + c*delta`` and ``m2_add + t*m0``)."""
    n = m0 + m0_add
    c = f32(0.0) if n == 0 else f32(np.float32(m0_add) / np.float32(n))
    delta = m1_add - m1
    t = _rounded(_rounded(delta * delta) * c)
    return n, c * delta + m1, m2 + (t * f32(m0) + m2_add)


def _row_moments(x):
    """``RowwiseMoments(x, N)`` over the last axis of a float32 array: (mean, biased variance)."""
    n_total = x.shape[-1]
    n = n_total // VEC
    m = -(-n // CHUNK)
    depth = _ceil_log2(m)
    lead = x.shape[:-1]
    zero = jnp.zeros(lead + (VEC,), f32)
    vecs = x[..., :n * VEC].reshape(lead + (n, VEC))
    c_vecs = [f32(np.float32(1.0) / np.float32(j + 1)) for j in range(CHUNK)]

    def welford(block):  # block [..., chunks, k, VEC] -> (m1, m2) per chunk
        m1 = jnp.zeros(block.shape[:-2] + (VEC,), f32)
        m2 = m1
        for j in range(block.shape[-2]):
            xv = block[..., j, :]
            delta = xv - m1
            m1 = c_vecs[j] * delta + m1
            m2 = delta * (xv - m1) + m2
        return m1, m2

    full = n // CHUNK
    chunks = []
    if full:
        fm1, fm2 = welford(vecs[..., :full * CHUNK, :].reshape(lead + (full, CHUNK, VEC)))
        chunks += [(CHUNK, fm1[..., i, :], fm2[..., i, :]) for i in range(full)]
    if n % CHUNK:
        pm1, pm2 = welford(vecs[..., full * CHUNK:, :][..., None, :, :])
        chunks.append((n % CHUNK, pm1[..., 0, :], pm2[..., 0, :]))

    stk: list[tuple[int, Any, Any]] = [(0, zero, zero) for _ in range(depth)]
    for i, (k, cm1, cm2) in enumerate(chunks):
        stk[0] = _merge_vec(k, cm1, cm2, *stk[0])
        mask, j = i + 1, 1
        while j < depth and (mask & 1) == 0:
            stk[j] = _merge_vec(*stk[j - 1], *stk[j])
            stk[j - 1] = (0, zero, zero)
            mask >>= 1
            j += 1
    for i in range(1, depth):
        stk[0] = _merge_vec(*stk[i], *stk[0])

    m0 = 0
    m1 = jnp.zeros(lead, f32)
    m2 = m1
    for i in range(n * VEC, n_total):
        xi = x[..., i]
        delta = xi - m1
        m0 += 1
        m1 = m1 + _div(delta, m0)
        m2 = m2 + _rounded(delta * (xi - m1))
    for lane in range(VEC):
        m0, m1, m2 = _merge_scalar(n, stk[0][1][..., lane], stk[0][2][..., lane], m0, m1, m2)
    return m1, _div(m2, n_total)


def _forward(x, scale, bias, eps):
    mean, var = _row_moments(x)
    rstd = f32(1.0) / _rounded(jnp.sqrt(var + f32(eps)))  # opaque: XLA would rewrite 1/sqrt as rsqrt
    t = _rounded((x + (-mean)[..., None]) * rstd[..., None])
    return t * scale + bias, mean, rstd  # one FMA (ATen's map3 / scalar loop, contracted)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x, scale, bias, eps):
    return _forward(x, scale, bias, eps)[0]


def _layer_norm_fwd(x, scale, bias, eps):
    y, mean, rstd = _forward(x, scale, bias, eps)
    return y, (x, scale, mean, rstd)


def _layer_norm_bwd(eps, res, dy):
    x, g, mean, rstd = res
    n = x.shape[-1]
    a, mu = rstd[..., None], mean[..., None]
    ds = jnp.sum(dy * x * g, axis=-1, keepdims=True)
    db = jnp.sum(dy * g, axis=-1, keepdims=True)
    inv_n = f32(np.float32(1.0) / np.float32(n))
    b = (db * mu - ds) * a * a * a * inv_n
    c = -b * mu - db * a * inv_n
    dx = a * dy * g + b * x + c
    rows = tuple(range(x.ndim - 1))
    return dx, jnp.sum(dy * (a * x - a * mu), axis=rows), jnp.sum(dy, axis=rows)


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(x, scale=None, bias=None, eps: float = 1e-5):
    r"""``torch.nn.functional.layer_norm(x, (N,), scale, bias, eps)`` for a float32 ``x`` normalised over
    its last axis (length N), bit for bit torch's CPU kernel (module docstring: the order of operations).

    Args:
      x: float32 array ``[..., N]``.
      scale, bias: float32 ``[N]`` or None (torch's ``weight``/``bias``; Flax's ``scale``/``bias``).
      eps: torch's ``eps`` (rounded to float32, as the kernel reads it).

    Example::

        y = jaxinit._src.aten_layer_norm.layer_norm(x, params["scale"], params["bias"], 1e-5)

    Differs from ``flax.linen.LayerNorm``: the variance is Welford's in ATen's order instead of
    ``E[x^2] - E[x]^2``; the same formula, other float32 roundings (half the elements, by a few ulps).
    Under ``jaxinit.amp.Autocast("cpu", ...)`` a Flax ``LayerNorm`` on a float32 input runs this.
    """
    if jnp.dtype(x.dtype) != jnp.float32:
        raise InitError(f"layer_norm: x must be float32 (this is ATen's float32 CPU kernel), got {jnp.dtype(x.dtype).name}; "
                        "pass x.astype(jnp.float32), or use flax.linen.LayerNorm for other dtypes.")
    n = x.shape[-1]
    g = jnp.ones((n,), f32) if scale is None else jnp.asarray(scale, f32)
    b = jnp.zeros((n,), f32) if bias is None else jnp.asarray(bias, f32)
    return _jitted(x, g, b, float(np.float32(eps)))


row_moments = jax.jit(_row_moments)
row_moments.__doc__ = _row_moments.__doc__
# jitted even when called eagerly: op by op, XLA compiles each multiply and add alone and forms no FMA
_jitted = jax.jit(_layer_norm, static_argnums=(3,))
