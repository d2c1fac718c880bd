"""XLA's CPU math, ported to torch bit for bit: the fused multiply-add, ``log``, ``erf_inv``, ``erf``.

``jax.random.normal`` and ``truncated_normal`` are ``erf_inv``/``erf`` of uniform draws, and
XLA compiles those with its own polynomial approximations and with every ``a * b + c``
contracted into one fused multiply-add. To get JAX's floats in torch,
:mod:`torchinit._src.random` and :mod:`torchinit._src.keyed` call these ports instead of
``torch.erfinv``/``torch.log``. Read from XLA's sources (``ErfInv32`` and ``ErfImpl32`` in
``xla/hlo/builder/lib/math.cc``, chlo's float64 ``erf_inv`` decomposition, the CPU backend's
Cephes polynomial ``log`` in ``xla/service/cpu/polynomial_approximations.cc``,
``ElementalIrEmitter::EmitLog1p``, and LLVM's multiply-add contraction) and from glibc's
``log`` (``sysdeps/ieee754/dbl-64/e_log.c``, which XLA's CPU code calls for float64), and
checked against ``jax.lax`` (every float32 mantissa; float64 on 2**20 + 3 draws x 3 keys and
the boundary uniforms: ``parity_tests/test_random.py``).

- :func:`fma`: ``a * b + c`` rounded once: ``torch.addcmul`` / ``torch.add(alpha=)`` where
  :func:`native_fma` shows they are fused, else exact emulations (:func:`fma32`, :func:`fma64`).
- :func:`log_f32`, :func:`erfinv_f32`, :func:`erf_f32`: the float32 ports.
- :mod:`torchinit._src.xla_math64`: the float64 ports (:func:`log_f64`, glibc's;
  :func:`log1p_f64`; :func:`sqrt_f64`, correctly rounded; :func:`erfinv_f64`).

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


def fma(a: Tensor, b, c, out: Tensor | None = None) -> Tensor:
    """Fused multiply-add ``a * b + c`` with one rounding, as XLA's CPU code contracts it.

    ``a`` is a float32 or float64 tensor; ``b`` and ``c`` tensors of its dtype (broadcastable)
    or Python floats. Where a probe has shown that ``torch.addcmul`` and ``torch.add(...,
    alpha=)`` round once on this device and dtype (ATen's AVX2/AVX512 CPU kernels and CUDA's
    compile ``c + a * b`` to FMA instructions; :func:`native_fma`), those are used: one op. Otherwise, and while
    ``torch.compile`` traces (Inductor's code generation may split it), an exact emulation:
    :func:`fma64` for float64, :func:`fma32` for float32. ``out`` (eager only) receives the
    result; it may be ``a``, ``b`` or ``c`` itself (elementwise, so in place is safe).
    """
    dev = a.device
    nat = _NATIVE.get(("cpu" if a.is_cpu else dev.type, a.dtype))  # (the hot path: no device parsing)
    if nat is None:
        nat = native_fma(dev, a.dtype)
    if nat and not torch.compiler.is_compiling():
        ct = c if isinstance(c, torch.Tensor) else _scalar_tensor(c, a.dtype, dev)
        if isinstance(b, torch.Tensor) and b.ndim == 0 and b.device.type == "cpu":
            b = b.item()
        if not isinstance(b, torch.Tensor):  # c + alpha * a: ATen's add kernel, vec::fmadd
            return torch.add(ct, a, alpha=b, out=out)  # (addcmul with two broadcast operands is ~5x slower)
        return torch.addcmul(ct, a, b, out=out)
    res = fma64(a, b, c) if a.dtype == torch.float64 else fma32(a, b, c)
    return res if out is None else out.copy_(res)


_NATIVE: dict = {}
_SCALARS: dict = {}


def _scalar_tensor(v: float, dtype: torch.dtype, device) -> Tensor:
    """A cached 0-d tensor of the constant ``v`` (the polynomials reuse a few dozen of them)."""
    key = (v, dtype, device)
    t = _SCALARS.get(key)
    if t is None:
        t = _SCALARS[key] = torch.tensor(float(v), dtype=dtype, device=device)
    return t


_INTS: dict = {}


def _int32(v: int) -> Tensor:
    """A cached 0-d CPU int32 tensor (torch takes it as a scalar on every device; a Python int
    operand is wrapped into a fresh tensor on every call)."""
    t = _INTS.get(v)
    if t is None:
        t = _INTS[v] = torch.tensor(v, dtype=torch.int32)
    return t


def native_fma(device, dtype: torch.dtype) -> bool:
    """Whether ``torch.addcmul(c, a, b)`` is a fused multiply-add (one rounding) on ``device``/``dtype``.

    Probed once per (device type, dtype) on inputs where one rounding and two roundings
    differ in every element: ``a = (1 + e) * s``, ``b = 1 + e``, ``c = -s`` (``e = 2**-13``
    in float32, ``2**-30`` in float64, ``s`` powers of two), so ``a * b + c = s * (2e + e**2)``
    exactly, which an unfused multiply-add rounds to ``2 s e``. 131 elements (vector bodies and
    a scalar tail) and the broadcast forms the samplers use (0-d ``b`` and/or ``c``).
    """
    key = (torch.device(device).type, dtype)
    if key not in _NATIVE:
        _NATIVE[key] = _probe_addcmul(torch.device(device), dtype)
    return _NATIVE[key]


def _probe_addcmul(device, dtype) -> bool:
    if dtype not in (torch.float32, torch.float64):
        return False
    e = 2.0**-13 if dtype == torch.float32 else 2.0**-30
    s = torch.exp2(torch.arange(-65, 66, dtype=torch.float64) % 21 - 10).to(dtype).to(device)
    b = torch.full_like(s, 1 + e)
    want = s * (2 * e + e * e)
    one = torch.ones((), dtype=dtype, device=device)
    checks = [(torch.addcmul(-s, s * b, b), want),  # all tensors
              (torch.addcmul(-s, s * b, one * (1 + e)), want),  # 0-d b
              (torch.addcmul(-one, b, b), torch.full_like(s, 2 * e + e * e)),  # 0-d c
              (torch.addcmul(-one, b, one * (1 + e)), torch.full_like(s, 2 * e + e * e))]  # 0-d b and c
    checks += [(torch.add(-s, s * b, alpha=1 + e), want),  # c + alpha * a, c a tensor
               (torch.add(-one, b, alpha=1 + e), torch.full_like(s, 2 * e + e * e))]  # and c 0-d
    return all(bool(torch.equal(got, w)) for got, w in checks)


def fma32(a: Tensor, b, c) -> Tensor:
    """float32 ``a * b + c`` rounded once, from float64 ops (exact).

    The float64 product of two floats is exact; ``p + c`` in float64 with its exact error
    (Knuth's two-sum), rounded to odd (an inexact, even result moves one ulp toward the exact
    sum), then rounded to float32: rounding to odd with more than ``24 + 1`` bits, then to
    nearest, is one rounding to nearest (Boldo and Melquiond, IEEE Trans. Computers 57(4), 2008).
    """
    a64 = a.double()
    p = a64 * (b.double() if isinstance(b, torch.Tensor) else b)
    c64 = c.double() if isinstance(c, torch.Tensor) else torch.tensor(float(c), dtype=torch.float64, device=a.device)
    return _round_odd_sum(p, c64).to(a.dtype)


def _round_odd_sum(x: Tensor, y: Tensor) -> Tensor:
    """``x + y`` rounded to odd (float64): round to nearest; if that was inexact and the last
    significand bit is even, step one ulp toward the exact sum (Knuth's two-sum gives its error)."""
    v = x + y
    vb = v - x
    err = (x - (v - vb)) + (y - vb)
    bits = v.view(torch.int64)
    # +1 on the int64 view grows the magnitude whatever the sign; v == 0 is always exact
    step = ((err > 0) == (v > 0)).to(torch.int64) * 2 - 1
    fix = ((err != 0) & ((bits & 1) == 0)).to(torch.int64)
    return (bits + fix * step).view(torch.float64)


_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's splitter for 53-bit significands


def _split(x):
    """Veltkamp's split: ``x == hi + lo`` exactly, each half with at most 26 significant bits."""
    t = x * _SPLIT
    hi = t - (t - x)
    return hi, x - hi


def _const(v, like: Tensor) -> Tensor:
    return v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.float64, device=like.device)


def fma64(a: Tensor, b, c) -> Tensor:
    """float64 ``a * b + c`` rounded once (correctly rounded, as a hardware FMA), from float64 ops.

    Boldo and Melquiond's emulation ("Emulation of FMA and correctly rounded sums: proved
    algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008): the exact product
    ``ph + pl`` (Dekker's product with Veltkamp's split), the exact sum ``sh + sl = c + ph``
    (Knuth's two-sum), ``v = RO(sl + pl)`` rounded to odd (round to nearest, then, if that was
    inexact and the last significand bit is even, step one ulp toward the exact sum), and
    ``RN(sh + v)`` is ``RN(a * b + c)``. Exact whenever nothing overflows and ``a * b`` does not
    underflow (true of every use here). ``b`` and ``c`` may be Python floats or tensors.
    """
    b = _const(b, a)
    c = _const(c, a)
    ph = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    pl = ((ah * bh - ph) + ah * bl + al * bh) + al * bl  # a * b - ph, exactly
    sh = c + ph
    bb = sh - ph
    sl = (ph - (sh - bb)) + (c - bb)  # c + ph - sh, exactly
    return sh + _round_odd_sum(sl, pl)


_LOG_P = [_bits_f32(b) for b in (0x3D9021BB, 0xBDEBD1B8, 0x3DEF251A, 0xBDFE5D4F, 0x3E11E9BF,
                                 0xBE2AAE50, 0x3E4CCEAC, 0xBE7FFFFC, 0x3EAAAAAA)]
_LOG_Q1, _LOG_Q2 = _bits_f32(0xB95E8083), _bits_f32(0x3F318000)
_SQRTHF = _bits_f32(0x3F3504F3)
_MIN_NORM = _bits_f32(0x00800000)


def _neg_mask32(d: Tensor) -> Tensor:
    """int32 all ones where the float32 ``d`` is negative (sign bit set), else 0: a comparison
    without a bool tensor (ATen's bool-producing kernels are several times slower than
    arithmetic ones). ``d = x - c`` with ``c != 0`` is never -0, so its sign bit is ``x < c``."""
    return d.view(torch.int32) >> 31


def _work(like: Tensor, rows: int, work: Tensor | None) -> Tensor:
    """``rows`` scratch rows shaped like the 1-d ``like`` (``work``'s first rows when given)."""
    if work is None:
        return torch.empty((rows,) + tuple(like.shape), dtype=like.dtype, device=like.device)
    return work


def log_f32(v: Tensor, out: Tensor | None = None, work: Tensor | None = None, overwrite: bool = False) -> Tensor:
    """XLA CPU's float32 log for positive normal inputs (Cephes polynomial, FMAs as compiled).

    XLA splits ``v = 2**e * m``, ``m`` in [0.5, 1) (frexp), and where ``m < sqrt(1/2)`` takes
    ``x = m + m - 1, e - 1``, else ``x = m - 1``: that is ``v = 2**k * m'`` with ``m'`` in
    [sqrt(1/2), sqrt(2)), ``x = m' - 1`` (exact), which the integer subtraction of sqrt(1/2)'s
    bits gives in three passes (musl's ``logf``; the same ``x`` and ``k``, bit for bit).
    ``out`` receives the result, ``work`` is optional float32 scratch of shape ``(4, *v.shape)``;
    both may be given to avoid allocations. ``overwrite=True`` lets the passes work in ``v``
    itself (its values are lost), else they work in a copy.
    """
    w = _work(v, 4, work)
    e, x2, y, y1 = w[0], w[1], w[2], w[3]
    dev = v.device
    xv = torch.clamp_min(v, _scalar_tensor(_MIN_NORM, v.dtype, dev), out=v if overwrite else None)
    xi = xv.view(torch.int32)
    xi.sub_(_int32(0x3F3504F3))  # ix: k in the bits above 23 (arithmetic), m' - sqrt(1/2) below
    e.copy_(torch.bitwise_right_shift(xi, _int32(23), out=y.view(torch.int32)))  # k, exactly, as float32
    xi.bitwise_and_(_int32(0x7FFFFF)).add_(_int32(0x3F3504F3))
    xv.sub_(_scalar_tensor(1.0, v.dtype, dev))  # x = m' - 1
    x = xv
    p = _LOG_P
    torch.mul(x, x, out=x2)
    x3 = torch.mul(x2, x, out=y1)
    fma(x, p[0], p[1], out=y)
    fma(y, x, p[2], out=y)
    t = fma(x, p[3], p[4], out=out)  # out as scratch until the last step
    fma(t, x, p[5], out=t)
    fma(y, x3, t, out=y)
    fma(x, p[6], p[7], out=t)
    fma(t, x, p[8], out=t)
    fma(y, x3, t, out=y)
    torch.mul(e, _scalar_tensor(_LOG_Q1, v.dtype, dev), out=t)
    fma(y, x3, t, out=y)
    xm = fma(x2, -0.5, x, out=x2)
    xm.add_(y)
    return fma(e, _LOG_Q2, xm, out=t)


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


_L1P_SMALL32 = float(np.float32(0.41421356237309504880))  # the threshold as a float32 compare sees it


def _horner(x: Tensor, coeffs, out: Tensor | None = None) -> Tensor:
    """``((c0 * x + c1) * x + c2) ...`` with every step one fused multiply-add (XLA's Horner)."""
    p = fma(x, coeffs[0], coeffs[1], out=out)
    for c in coeffs[2:]:
        p = fma(p, x, c, out=out)
    return p


def _erfinv_f32_traced(u: Tensor) -> Tensor:
    """:func:`erfinv_f32` as ``torch.compile`` traces it: selects as ``torch.where`` (fused there)."""
    x = u * -u
    xs = x * x
    r = (x * xs) * (_horner(x, _L1P_NUM) / _horner(x, _L1P_DEN))
    small = x + fma(xs, -0.5, r)
    l1p = torch.where(x.abs() < 0.41421356237309504880, small, log_f32(x + 1.0))
    lt = l1p > -5.0
    w = torch.where(lt, -2.5 - l1p, torch.sqrt((-l1p).double()).float() - 3.0)
    p = torch.where(lt, _EI_LT[0], _EI_GT[0])
    for a, b in zip(_EI_LT[1:], _EI_GT[1:]):
        p = fma(p, w, torch.where(lt, a, b))
    p = torch.where(u.abs() == 1, math.inf, p)
    return u * p


ERFINV_F32_WORK = 8  # scratch rows erfinv_f32 uses


def erfinv_f32(u: Tensor, out: Tensor | None = None, work: Tensor | None = None) -> Tensor:
    """XLA CPU's float32 erf_inv, bit for bit: ``u * p(w)``, ``w = -log1p(-u*u)``, Giles' two
    polynomials in ``w - 2.5`` (``w < 5``) and ``sqrt(w) - 3``.

    XLA's ``log1p`` is Cephes' rational function for ``|x| < sqrt(2) - 1`` and ``log(1 + x)``
    elsewhere; both run on every element and an integer select on the sign bit keeps one, as in
    XLA's code (ATen's bool kernels are slow). The tail polynomial (``w >= 5``: ``|u| > 0.9966``,
    about 3 draws in 1000) runs on the tail elements only; ``erf_inv(+-1) = +-inf``.
    Eagerly every pass is in place on the scratch rows ``work`` (float32, shape
    ``(ERFINV_F32_WORK, *u.shape)``, allocated when not given), so a chunk's temporaries stay in
    cache; ``out`` (may be ``u`` itself) receives the result. Under ``torch.compile``:
    :func:`_erfinv_f32_traced`.
    """
    if torch.compiler.is_compiling():
        return _erfinv_f32_traced(u)
    if u.ndim != 1:
        res = erfinv_f32(u.reshape(-1), work=None if work is None else work.reshape(ERFINV_F32_WORK, -1))
        return res.reshape(u.shape) if out is None else out.copy_(res.reshape(u.shape))
    w = _work(u, ERFINV_F32_WORK, work)
    x, xs, num, small = w[0], w[1], w[2], w[3]
    torch.mul(u, u, out=x).neg_()  # u * -u
    torch.mul(x, x, out=xs)
    _horner(x, _L1P_NUM, out=num)
    num.div_(_horner(x, _L1P_DEN, out=small))
    torch.mul(x, xs, out=small).mul_(num)  # r = (x * xs) * (P(x) / Q(x))
    fma(xs, -0.5, small, out=small).add_(x)  # x + fma(xs, -0.5, r)
    dev, dt = u.device, u.dtype
    torch.add(x, _scalar_tensor(1.0, dt, dev), out=num)
    large = log_f32(num, out=xs, work=w[4:8], overwrite=True)
    # |x| < sqrt(2) - 1 (x <= 0): -L - x < 0, +0 at x = -L (large there, as the float compare)
    mask = torch.sub(_scalar_tensor(-_L1P_SMALL32, dt, dev), x, out=num).view(torch.int32)
    mask.bitwise_right_shift_(_int32(31))
    si, li = small.view(torch.int32), large.view(torch.int32)
    l1p = small
    si.bitwise_xor_(li).bitwise_and_(mask).bitwise_xor_(li)  # small where mask, else large
    p = _horner(torch.sub(_scalar_tensor(-2.5, dt, dev), l1p, out=x), _EI_LT, out=num)
    tail = torch.nonzero(l1p <= _scalar_tensor(-5.0, dt, dev)).squeeze(1)  # |u| > 0.9966: w >= 5
    if tail.numel():
        lt = l1p[tail]
        pt = _horner(torch.sqrt((-lt).double()).float() - 3.0, _EI_GT)  # float64 sqrt: correctly rounded
        ut = u[tail]
        p[tail] = torch.where(ut.abs() == 1, math.inf, pt)  # erf_inv(+-1) = +-inf
    return torch.mul(u, p, out=out)


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
