"""XLA's float32 math, ported to torch bit for bit: the fused multiply-add, ``log``, ``erf_inv``, ``erf``.

``jax.random.normal`` and ``truncated_normal`` are ``erf_inv``/``erf`` of uniform draws, and
XLA compiles those with its own polynomial approximations (not the C library's) and with
every ``a * b + c`` contracted into one fused multiply-add. To get JAX's floats in torch,
:mod:`torchinit._src.random` and :mod:`torchinit._src.keyed` call these ports instead of
``torch.erfinv``/``torch.log``. Read from XLA's sources (``ErfInv32`` and ``ErfImpl32`` in
``xla/hlo/builder/lib/math.cc``, the CPU backend's Cephes polynomial ``log`` in
``xla/service/cpu/polynomial_approximations.cc``, and LLVM's multiply-add contraction there)
and checked against ``jax.lax`` on every float32 mantissa (``parity_tests/test_random.py``).

- :func:`fma`: ``a * b + c`` rounded once (float32 through float64, exact; float64 through
  Dekker's product and Knuth's two-sum).
- :func:`log_f32`: XLA CPU's float32 ``log`` for positive normal inputs.
- :func:`erfinv_f32`: ``w = -log1p(-u * u)`` and Giles' two polynomials.
- :func:`erf_f32`: XLA's rational approximation in ``x ** 2``.

These reproduce XLA's CPU backend. Whether XLA's GPU backend lowers them the same way is
measured, not assumed, by ``python -m parity_tests.device_report`` (docs/gpu.md).
"""
from __future__ import annotations

import math

import numpy as np
import torch

Tensor = torch.Tensor


def _bits_f32(v: int) -> float:
    return float(np.array([v], dtype=np.uint32).view(np.float32)[0])


def fma(a: Tensor, b, c) -> Tensor:
    """Fused multiply-add ``a * b + c`` with one rounding, as XLA's CPU code contracts it.

    float32: the float64 product of two floats is exact, so a float64 add rounded
    once to float32 is the fused result. float64: Dekker's exact product and
    Knuth's two-sum (error-free transformations) give the fused result.
    """
    if a.dtype == torch.float64:
        return fma64(a, b, c)
    a64 = a.double()
    b64 = b.double() if isinstance(b, torch.Tensor) else b
    c64 = c.double() if isinstance(c, torch.Tensor) else c
    return (a64 * b64 + c64).to(a.dtype)


def _split(x):
    t = x * 134217729.0  # 2**27 + 1
    hi = t - (t - x)
    return hi, x - hi


def fma64(a: Tensor, b, c) -> Tensor:
    b = b if isinstance(b, torch.Tensor) else torch.tensor(b, dtype=torch.float64, device=a.device)
    c = c if isinstance(c, torch.Tensor) else torch.tensor(c, dtype=torch.float64, device=a.device)
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    s = p + c
    bb = s - p
    t = (p - (s - bb)) + (c - bb)
    return s + (t + e)


_LOG_P = [_bits_f32(b) for b in (0x3D9021BB, 0xBDEBD1B8, 0x3DEF251A, 0xBDFE5D4F, 0x3E11E9BF,
                                 0xBE2AAE50, 0x3E4CCEAC, 0xBE7FFFFC, 0x3EAAAAAA)]
_LOG_Q1, _LOG_Q2 = _bits_f32(0xB95E8083), _bits_f32(0x3F318000)
_SQRTHF = _bits_f32(0x3F3504F3)
_MIN_NORM = _bits_f32(0x00800000)


def log_f32(v: Tensor) -> Tensor:
    """XLA CPU's float32 log for positive normal inputs (Cephes polynomial, FMAs as compiled)."""
    v = torch.clamp_min(v, _MIN_NORM)
    b = v.view(torch.int32)
    e = ((b >> 23) - 127).float() + 1.0
    m = ((b & -2139095041) | 0x3F000000).view(torch.float32)  # frexp mantissa in [0.5, 1)
    small = m < _SQRTHF
    x = (m - 1.0) + torch.where(small, m, 0.0)
    e = e - small.float()
    x2 = x * x
    x3 = x2 * x
    p = _LOG_P
    y = fma(x, p[0], p[1])
    y1 = fma(x, p[3], p[4])
    y2 = fma(x, p[6], p[7])
    y = fma(y, x, p[2])
    y1 = fma(y1, x, p[5])
    y2 = fma(y2, x, p[8])
    y = fma(y, x3, y1)
    y = fma(y, x3, y2)
    y = fma(y, x3, e * _LOG_Q1)
    xm = fma(x2, -0.5, x)
    return fma(e, _LOG_Q2, xm + y)


_L1P_NUM = [float(np.float32(c)) for c in (
    4.5270000862445199635215E-5, 4.9854102823193375972212E-1, 6.5787325942061044846969E0,
    2.9911919328553073277375E1, 6.0949667980987787057556E1, 5.7112963590585538103336E1,
    2.0039553499201281259648E1)]
_L1P_DEN = [float(np.float32(c)) for c in (
    1., 1.5062909083469192043167E1, 8.3047565967967209469434E1, 2.2176239823732856465394E2,
    3.0909872225312059774938E2, 2.1642788614495947685003E2, 6.0118660497603843919306E1)]
_EI_LT = [float(np.float32(c)) for c in (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                                         0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)]
_EI_GT = [float(np.float32(c)) for c in (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                                         0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)]


def erfinv_f32(u: Tensor) -> Tensor:
    """XLA CPU's float32 erf_inv, bit for bit: w = -log1p(-u*u), Giles' two polynomials."""
    x = u * -u
    xs = x * x
    num = torch.full_like(x, _L1P_NUM[0])
    den = torch.full_like(x, _L1P_DEN[0])
    for c in _L1P_NUM[1:]:
        num = fma(num, x, c)
    for c in _L1P_DEN[1:]:
        den = fma(den, x, c)
    r = (x * xs) * (num / den)
    small = x + fma(xs, -0.5, r)
    l1p = torch.where(x.abs() < 0.41421356237309504880, small, log_f32(x + 1.0))
    lt = l1p > -5.0
    w = torch.where(lt, -2.5 - l1p, torch.sqrt((-l1p).double()).float() - 3.0)  # correctly rounded sqrt
    p = torch.where(lt, _EI_LT[0], _EI_GT[0])
    for a, b in zip(_EI_LT[1:], _EI_GT[1:]):
        p = fma(p, w, torch.where(lt, a, b))
    p = torch.where(u.abs() == 1, math.inf, p)
    return u * p


_ERF_NUM = [_bits_f32(b) for b in (0x39702D51, 0x3B5F5DA2, 0x3D50B6EB, 0x3E3DA740, 0x3F906EBA)]
_ERF_DEN = [_bits_f32(b) for b in (0xB3FD3906, 0x37C588DF, 0x3A856D28, 0x3C6687D4, 0x3DE34C21, 0x3EFEB44A, 0x3F800000)]
_ERF_CLAMP = _bits_f32(0x407547CB)


def erf_f32(x: Tensor) -> Tensor:
    """XLA CPU's float32 erf (rational approximation in x**2, FMAs as compiled)."""
    x2 = x * x
    p = fma(x2, _ERF_NUM[0], _ERF_NUM[1])
    for c in _ERF_NUM[2:]:
        p = fma(x2, p, c)
    num = x * p
    q = fma(x2, _ERF_DEN[0], _ERF_DEN[1])
    for c in _ERF_DEN[2:]:
        q = fma(x2, q, c)
    return torch.where(x.abs() >= _ERF_CLAMP, torch.sign(x) + (x == 0).float(), num / q)
