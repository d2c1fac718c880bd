"""JAX's threefry2x32 random numbers in PyTorch: same key, same bits, same floats.

A port of ``jax.random`` (jax 0.10.2, default ``jax_threefry_partitionable=True``)
with plain torch ops, so ``torchinit`` draws from a JAX key exactly the numbers
``jaxinit`` draws from it. This module never imports jax.

Keys (:mod:`torchinit._src.random_keys`, re-exported here). A key is a ``torch.uint32`` tensor of shape ``(2,)`` holding the two
threefry words, i.e. the ``jax.random.key_data`` of a JAX key (or a raw
``jax.random.PRNGKey``). :func:`as_key` converts, losslessly, anything that
holds such a key: a JAX typed key (through ``jax.random.key_data`` found in
``sys.modules``, never imported here), a JAX/numpy uint32[2] array, a torch
tensor, or any object exposing ``__array__``. :func:`key_to_numpy` goes back:
``jax.random.wrap_key_data(key_to_numpy(k))`` is the JAX typed key.

Algorithm (read from jax/_src/random/{core,prng,threefry2x32}.py and XLA's CPU
code generation, checked against jax bit for bit):

- ``key(seed)``: 32-bit seeding, ``(0, seed mod 2**32)`` (JAX without x64).
- threefry2x32: 5 blocks of 4 rounds, rotations (13, 15, 26, 6) / (17, 29, 16, 24),
  key schedule ``(k0, k1, k0 ^ k1 ^ 0x1BD11BDA)``.
- Partitionable layout: element ``i`` of the flat output hashes the counter
  ``(i >> 32, i & 0xFFFFFFFF)``; a 32-bit word is ``y0 ^ y1``; 64-bit words are
  ``(y0 << 32) | y1``; 8/16-bit words are the low bits of ``y0 ^ y1``.
  ``split(k, n)[i] = (y0, y1)`` at counter ``i``; ``fold_in(k, d) = threefry(k, (0, d))``.
- ``uniform``: mantissa bits ``| 1.0``, minus 1, ``max(min, f * (max - min) + min)``.
- ``normal``: ``sqrt(2) * erf_inv(u)``, ``u`` uniform on ``(nextafter(-1, 0), 1)``.
  In float32 ``erf_inv`` is XLA's (Giles' polynomial after ``-log1p(-u*u)``, with
  XLA's own ``log1p`` and ``log``) with every multiply-add fused as XLA's CPU
  backend fuses it (emulated exactly: a float64 multiply-add rounded once); the
  ports live in :mod:`torchinit._src.xla_math` (float64: :mod:`torchinit._src.xla_math64`).
  16-bit dtypes compute ``erf_inv`` in float32, as XLA does. float64 is XLA's float64
  ``erf_inv`` (Giles' three polynomials after Cephes' ``log1p``, with glibc's ``log``, which
  XLA's CPU backend calls) with its fused multiply-adds: bitwise too.
- ``truncated_normal``: ``erf`` of the bounds (XLA's float32 rational approximation;
  float64: the C library's ``erf``, which XLA calls), a uniform between them, ``erf_inv``,
  clipped to the open interval.
- float16 arithmetic follows the host as XLA's CPU backend does: one float16 FMA for
  ``f * (hi - lo) + lo`` with AVX512-FP16, else float32 per op (see ``_host_has_native_f16``).

Work is chunked (``_CHUNK`` elements per thread at a time, in place on a few preallocated rows) so
temporaries stay bounded and in cache; see :mod:`torchinit._src.threefry` for the pass count.
:func:`set_compile` (public as ``torchinit.random.set_compile``) runs the hash and
``erf_inv`` through ``torch.compile``, opt-in.
"""
from __future__ import annotations

import math
import numbers
import os
from typing import Sequence

import numpy as np
import torch

from _jaxinit.errors import InitError
from torchinit._src import xla_math, xla_math64
from torchinit._src.random_keys import _make_key, _words
from torchinit._src.random_keys import as_key as as_key
from torchinit._src.random_keys import is_key as is_key
from torchinit._src.random_keys import key as key
from torchinit._src.random_keys import key_to_numpy as key_to_numpy
from torchinit._src.threefry import M32, hash_counters, i32, threefry2x32
from torchinit._src.xla_math import ERFINV_F32_WORK, fma

Tensor = torch.Tensor

# Elements per chunk and intra-op thread (CPU): every eager pass works on one chunk's rows (3 int32
# rows for the hash; 8 float32 rows and the output's chunk for erf_inv), in place, so they stay in
# each core's L2 (hash) or L2 and L3 (erf_inv) cache; bigger chunks pay torch's per-op dispatch
# (about a microsecond) less often: 64K per thread was the fastest of 32K-256K for both
# (benchmarks/README.md). On accelerators every pass is a kernel launch: chunks of _GPU_CHUNK.
_CHUNK = 1 << 16
_GPU_CHUNK = 1 << 22


def _chunk_size(device) -> int:
    if torch.device(device).type != "cpu":
        return _GPU_CHUNK
    return max(1, _CHUNK * max(1, min(torch.get_num_threads(), 16)))


# --------------------------------------------------------------------------- threefry, eager or compiled
_COMPILED: dict = {}
_USE_COMPILE = os.environ.get("TORCHINIT_COMPILE", "0") == "1"
_COMPILE_MIN = 4096  # smaller draws stay eager (a compiled call's overhead is larger than its gain)


def set_compile(enabled: bool) -> None:
    """Run the threefry hash and the float32 ``erf_inv`` through ``torch.compile`` (opt-in).

    Off by default; ``TORCHINIT_COMPILE=1`` in the environment switches it on at import.
    Compiled code takes the key as a tensor, so new keys do not recompile; the first call
    compiles (seconds) and needs what ``torch.compile`` needs (a C++ compiler on CPU, triton
    on CUDA). If compilation fails, the draw raises an ``InitError`` naming the cause:
    switch it off with ``set_compile(False)``. The bits are the eager ones
    (``benchmarks/bench_random.py`` and ``parity_tests/test_random.py`` check it).

    jaxinit has no counterpart: ``jax.random`` is always compiled by XLA.

    >>> import torchinit.random as tr
    >>> tr.set_compile(False)
    """
    if not isinstance(enabled, bool):
        raise InitError(f"set_compile: `enabled` must be True or False, got {enabled!r}")
    global _USE_COMPILE
    _USE_COMPILE = enabled


def _run_compiled(name: str, fn, *args):
    """``torch.compile(fn)(*args)``, compiled once per ``name``; a failure is an InitError, not a fallback."""
    c = _COMPILED.get(name)
    if c is None:
        c = _COMPILED[name] = torch.compile(fn, dynamic=True)
    try:
        return c(*args)
    except Exception as err:  # noqa: BLE001 - re-raised with the fix; torch.compile raises many types
        raise InitError(
            f"torchinit.random: torch.compile of {name} failed ({type(err).__name__}: {err}); "
            "draw eagerly (same bits) with torchinit.random.set_compile(False) or unset TORCHINIT_COMPILE."
        ) from err


def _hash(k0: int, k1: int, x0: Tensor, x1: Tensor) -> tuple[Tensor, Tensor]:
    if _USE_COMPILE and x1.numel() >= _COMPILE_MIN:
        kt = torch.tensor([i32(k0), i32(k1)], dtype=torch.int32, device=x0.device)
        return _run_compiled("threefry", threefry2x32, kt[0], kt[1], x0, x1)
    return threefry2x32(i32(k0), i32(k1), x0, x1)


def _counter_bits(k0: int, k1: int, start: int, n: int, device, buf: Tensor | None = None,
                  flip: bool = False, scratch: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(y0, y1) for flat counters start .. start + n - 1; eagerly in ``buf`` (int32 ``(3, n)``,
    allocated when not given) where the range has one high word (always so for aligned chunks).
    ``flip`` adds ``2**31`` to ``y0`` (flips its top bit: ``y0 ^ y1`` then reads as a signed
    number offset by ``-2**31``, which the float32 samplers use); ``scratch`` (int32, ``n``)
    replaces ``buf``'s third row (:func:`hash_counters`)."""
    compiled = _USE_COMPILE and n >= _COMPILE_MIN
    if not compiled and n and start >> 32 == (start + n - 1) >> 32:
        if buf is None:
            buf = torch.empty((3, n), dtype=torch.int32, device=device)
        return hash_counters(i32(k0), i32(k1), start >> 32, start & M32, buf, flip, scratch)
    idx = torch.arange(start, start + n, dtype=torch.int64, device=device)
    hi = (idx >> 32).to(torch.int32)
    lo = (idx & M32).to(torch.int32)  # wraps to the int32 with the same bits
    y0, y1 = _hash(k0, k1, hi, lo)
    return (y0.bitwise_xor_(i32(1 << 31)) if flip else y0), y1


def _check_shape(shape, who: str) -> tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError as err:
        raise InitError(f"{who}: `shape` must be a tuple of ints, got {shape!r}") from err
    if any(d < 0 for d in shape):
        raise InitError(f"{who}: `shape` must have non-negative sizes, got {shape}")
    return shape


def split(k, num: int | Sequence[int] = 2) -> Tensor:
    """Split a key into ``num`` new keys, as ``jax.random.split``: shape ``(*num, 2)`` uint32."""
    k0, k1 = _words(k)
    shape = _check_shape(num, "split")
    n = math.prod(shape)
    y0, y1 = _counter_bits(k0, k1, 0, n, "cpu")
    return torch.stack([y0, y1], dim=-1).reshape(shape + (2,)).view(torch.uint32)


def fold_in(k, data: int) -> Tensor:
    """Fold a 32-bit integer into a key, as ``jax.random.fold_in``; ``data`` in [0, 2**32)."""
    if isinstance(data, bool) or not isinstance(data, numbers.Integral):
        raise InitError(f"fold_in: `data` must be an int in [0, 2**32), got {data!r}")
    data = int(data)
    if not 0 <= data <= M32:
        raise InitError(f"fold_in: `data`={data} is outside [0, 2**32); reduce it with data % 2**32")
    k0, k1 = _words(k)
    y0, y1 = threefry2x32(i32(k0), i32(k1), torch.zeros(1, dtype=torch.int32),
                       torch.tensor([i32(data)], dtype=torch.int32))
    return _make_key(int(y0) & M32, int(y1) & M32)


# --------------------------------------------------------------------------- float formats
_FLOATS = {
    torch.float32: (32, 23, torch.int32, 0x3F800000),
    torch.float64: (64, 52, torch.int64, 0x3FF0000000000000),
    torch.bfloat16: (16, 7, torch.int16, 0x3F80),
    torch.float16: (16, 10, torch.int16, 0x3C00),
}


def _float_dtype(dtype, who):
    if dtype not in _FLOATS:
        raise InitError(f"{who}: `dtype` must be one of torch.float32/float64/bfloat16/float16, got {dtype!r}")
    return dtype


def _bits_chunk(k0, k1, start, n, width, device, buf: Tensor | None = None) -> Tensor:
    """Raw random words for flat indices [start, start + n): int tensors holding the bits."""
    y0, y1 = _counter_bits(k0, k1, start, n, device, buf)
    if width == 64:
        return (y0.to(torch.int64) << 32) | (y1.to(torch.int64) & M32)
    w = y0.bitwise_xor_(y1)  # y0 is this call's own tensor
    if width == 32:
        return w
    return w.bitwise_and_((1 << width) - 1)


def _unit_into(k0, k1, start, dst: Tensor, buf: Tensor) -> Tensor:
    """float32 f in [0, 1) (the mantissa trick) written into ``dst``, in 4 passes after the hash.

    JAX: ``f = bitcast((w >> 9) | 0x3F800000) - 1 = m / 2**23``, ``m = w >> 9`` (logical). With
    ``y0``'s top bit flipped, ``w' = w - 2**31`` as int32 and ``w' >> 9`` (arithmetic) is
    ``m - 2**22``, so ``f = (w' >> 9) / 2**23 + 1/2``: an exact int-to-float copy and one exact add.
    """
    y0, y1 = _counter_bits(k0, k1, start, dst.numel(), dst.device, buf, flip=True, scratch=dst.view(torch.int32))
    dst.copy_(y0.bitwise_xor_(y1).bitwise_right_shift_(xla_math._int32(9)))
    return torch.add(_const(0.5, dst), dst, alpha=2.0 ** -23, out=dst)


def _const(v: float, like: Tensor) -> Tensor:
    """A cached 0-d tensor of ``v`` in ``like``'s dtype and device."""
    return xla_math._scalar_tensor(v, like.dtype, like.device)


def _unit_chunk(k0, k1, start, n, dtype, device) -> Tensor:
    """f in [0, 1) of ``dtype`` from the mantissa trick (before scaling)."""
    nbits, nmant, itype, one = _FLOATS[dtype]
    rng_bits = 8 if nmant < 8 else nbits
    b = _bits_chunk(k0, k1, start, n, rng_bits, device)
    if nbits == 64:
        fb = ((b >> 12) & ((1 << 52) - 1)) | one
    else:  # in place on b, this call's own tensor
        fb = b.bitwise_right_shift_(rng_bits - nmant).bitwise_and_((1 << nmant) - 1).bitwise_or_(one)
    return fb.to(itype).view(dtype).sub_(1)


def _scalar(v, dtype, device):
    return torch.tensor(v, dtype=torch.float64).to(dtype).to(device)


def _host_has_native_f16(flags: str | None = None, cpuinfo: str | None = None) -> bool:
    """Whether XLA's CPU backend computes float16 arithmetic natively on this host.

    XLA compiles for the host CPU: with AVX512-FP16 (x86-64, e.g. Sapphire Rapids) LLVM emits
    float16 instructions and contracts ``a * b + c`` into one float16 FMA; without it, float16 ops
    are widened to float32 one by one and rounded back after each (what torch does). The XLA flag
    ``--xla_cpu_max_isa`` set to SSE4_2/AVX/AVX2 switches the native path off. Read from
    ``/proc/cpuinfo`` (Linux); elsewhere the widened path is assumed (the device report measures it).
    """
    flags = os.environ.get("XLA_FLAGS", "") if flags is None else flags
    for tok in flags.split():
        if tok.startswith("--xla_cpu_max_isa=") and tok.split("=", 1)[1].upper() in ("SSE4_2", "AVX", "AVX2"):
            return False
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
                cpuinfo = fh.read()
        except OSError:
            return False
    return any(line.startswith("flags") and " avx512_fp16" in line for line in cpuinfo.splitlines())


_NATIVE_F16 = _host_has_native_f16()


def _fma16(f: Tensor, d: Tensor, lo: Tensor) -> Tensor:
    """float16 ``f * d + lo`` rounded once (a float16 FMA). In float64 the sum is exact (at most
    50 significant bits for float16 operands); rounded to float32 by rounding to odd, then to
    float16 to nearest, it is rounded once (Boldo and Melquiond: 24 >= 11 + 2 bits)."""
    v = torch.addcmul(lo.double(), f.double(), d.double())  # exact whether or not it is fused
    v32 = v.float()
    bits = v32.view(torch.int32)
    back = v32.double()
    step = (v.abs() > back.abs()).to(torch.int32) * 2 - 1  # +1 on the int32 view grows the magnitude
    fix = ((back != v) & ((bits & 1) == 0)).to(torch.int32)
    return (bits + fix * step).view(torch.float32).to(torch.float16)


def _uniform_from_unit(f, lo, hi, out: Tensor | None = None):
    """JAX: ``max(minval, floats * (maxval - minval) + minval)``; XLA's CPU backend fuses the
    multiply-add in float32/float64, and in float16 where the host computes float16 natively
    (:func:`_host_has_native_f16`); bfloat16 (and float16 elsewhere) rounds after every op,
    as torch does. ``out`` (may be ``f``) receives the result."""
    d = hi - lo
    if f.dtype == torch.float16 and _NATIVE_F16:
        return torch.maximum(lo, _fma16(f, d, lo), out=out)
    if f.dtype in (torch.bfloat16, torch.float16):
        return torch.maximum(lo, f * d + lo, out=out)
    return torch.maximum(lo, fma(f, d, lo, out=out), out=out)


def _fill(out: Tensor, fn, chunk: int | None = None) -> Tensor:
    """``fn(start, dst)`` for every chunk ``dst`` of the flat ``out`` (a fresh contiguous tensor)."""
    flat = out.view(-1)
    n = flat.numel()
    c = _chunk_size(out.device) if chunk is None else chunk
    for s in range(0, n, c):
        fn(s, flat[s:s + min(c, n - s)])
    return out


def _hash_buf(n: int, device) -> Tensor:
    """The hash's three int32 rows for chunks of a draw of ``n`` elements."""
    return torch.empty((3, min(n, _chunk_size(device))), dtype=torch.int32, device=device)


def _rows(buf: Tensor, m: int) -> Tensor:
    """The first ``m`` columns of a chunk buffer (each row contiguous)."""
    return buf[:, :m]


def bits(k, shape: Sequence[int] = (), dtype: torch.dtype = torch.uint32, device=None) -> Tensor:
    """Random raw bits, as ``jax.random.bits``: dtype uint8/uint16/uint32/uint64."""
    widths = {torch.uint8: 8, torch.uint16: 16, torch.uint32: 32, torch.uint64: 64}
    if dtype not in widths:
        raise InitError(f"bits: `dtype` must be torch.uint8/uint16/uint32/uint64, got {dtype!r}")
    k0, k1 = _words(k)
    shape = _check_shape(shape, "bits")
    width = widths[dtype]
    itype = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64}[width]
    out = torch.empty(shape, dtype=itype, device=device)
    buf = _hash_buf(out.numel(), out.device)

    def chunk(s, dst):
        if width == 32:
            y0, y1 = _counter_bits(k0, k1, s, dst.numel(), dst.device, _rows(buf, dst.numel()), scratch=dst)
            torch.bitwise_xor(y0, y1, out=dst)
        else:
            dst.copy_(_bits_chunk(k0, k1, s, dst.numel(), width, dst.device, _rows(buf, dst.numel())))

    _fill(out, chunk)
    return out if width == 8 else out.view(dtype)


def uniform(k, shape: Sequence[int] = (), dtype: torch.dtype = torch.float32, minval: float = 0.0,
            maxval: float = 1.0, device=None) -> Tensor:
    """U[minval, maxval), bitwise ``jax.random.uniform`` on every backend (integer bits, exact float ops).

    ``minval``/``maxval`` are Python numbers, rounded to ``dtype`` as JAX does.
    """
    dtype = _float_dtype(dtype, "uniform")
    k0, k1 = _words(k)
    shape = _check_shape(shape, "uniform")
    out = torch.empty(shape, dtype=dtype, device=device)
    unit = float(minval) == 0.0 and float(maxval) == 1.0  # max(0, f * 1 + 0) is f itself, exactly
    lo, hi = _scalar(minval, dtype, out.device), _scalar(maxval, dtype, out.device)
    if dtype == torch.float32:
        buf = _hash_buf(out.numel(), out.device)

        def chunk(s, dst):
            _unit_into(k0, k1, s, dst, _rows(buf, dst.numel()))
            if not unit:
                _uniform_from_unit(dst, lo, hi, out=dst)
    else:
        def chunk(s, dst):
            f = _unit_chunk(k0, k1, s, dst.numel(), dtype, dst.device)
            dst.copy_(f if unit else _uniform_from_unit(f, lo, hi))

    return _fill(out, chunk)


# --------------------------------------------------------------------------- erf_inv / erf per dtype
def _erfinv(u: Tensor, out: Tensor | None = None, work: Tensor | None = None) -> Tensor:
    """XLA's erf_inv: float32 and float64 ports (16-bit dtypes through float32, as XLA does).
    ``out`` receives the result; ``work`` is float32 scratch for the eager float32 port."""
    if u.dtype == torch.float32:
        if not (_USE_COMPILE and u.numel() >= _COMPILE_MIN):
            return xla_math.erfinv_f32(u, out=out, work=work)
        res = _run_compiled("erfinv", xla_math.erfinv_f32, u)
    elif u.dtype == torch.float64:
        res = xla_math64.erfinv_f64(u)
    else:
        res = xla_math.erfinv_f32(u.float()).to(u.dtype)
    return res if out is None else out.copy_(res)


def _erf(x: Tensor) -> Tensor:
    """XLA's erf of the (few) truncation bounds: float32 port; float64 is the C library's ``erf``
    (XLA's CPU backend calls it), i.e. Python's ``math.erf``, element by element."""
    if x.dtype == torch.float64:
        return torch.tensor([math.erf(v) for v in x.reshape(-1).tolist()], dtype=torch.float64).reshape(x.shape)
    if x.dtype == torch.float32:
        return xla_math.erf_f32(x)
    return xla_math.erf_f32(x.float()).to(x.dtype)


_SQRT2 = math.sqrt(2.0)
_LO32 = -(1.0 - 2.0 ** -24)  # nextafter(-1, 0) in float32: the normal's minval


def _erfinv_fill(k0: int, k1: int, shape, dtype, device, lo: Tensor, hi: Tensor, finish) -> Tensor:
    """A fresh tensor of ``finish(erf_inv(u), dst)`` chunk by chunk, ``u`` JAX's uniform on
    ``[lo, hi)``; ``finish`` writes into ``dst`` (and may read its first argument in place).

    float32 works in place on one chunk's buffers. For the normal's ``lo = nextafter(-1, 0)``,
    ``hi = 1`` (``hi - lo`` rounds to 2): ``u = max(lo, f * 2 + lo) = 2 f - 1 + 2**-24`` exactly
    (every such value is a float32 above ``lo``), i.e. ``(w' >> 9) / 2**22 + 2**-24`` from the
    flipped word of :func:`_unit_into`: one exact pass instead of the unit float's and the fma's.
    """
    out = torch.empty(shape, dtype=dtype, device=device)
    dev = out.device
    if dtype != torch.float32:
        def chunk(s, dst):
            u = _uniform_from_unit(_unit_chunk(k0, k1, s, dst.numel(), dtype, dev), lo, hi)
            finish(_erfinv(u), dst)
        return _fill(out, chunk)
    c = _chunk_size(dev)
    work = torch.empty((ERFINV_F32_WORK, min(out.numel(), c)), dtype=dtype, device=dev)
    buf = work[:3].view(torch.int32)  # the hash's rows, free again once u is drawn
    fast = float(lo) == _LO32 and float(hi) == 1.0 and float(hi - lo) == 2.0

    def chunk32(s, u):  # u: the output's chunk, which holds u until erf_inv overwrites it
        m = u.numel()
        if fast:
            y0, y1 = _counter_bits(k0, k1, s, m, dev, _rows(buf, m), flip=True)
            u.copy_(y0.bitwise_xor_(y1).bitwise_right_shift_(xla_math._int32(9)))
            torch.add(_const(2.0 ** -24, u), u, alpha=2.0 ** -22, out=u)
        else:
            _uniform_from_unit(_unit_into(k0, k1, s, u, _rows(buf, m)), lo, hi, out=u)
        finish(_erfinv(u, out=u, work=_rows(work, m)), u)

    return _fill(out, chunk32, c)


def normal(k, shape: Sequence[int] = (), dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """N(0, 1), as ``jax.random.normal``: ``sqrt(2) * erf_inv(u)``, u uniform on (-1, 1).

    Bitwise JAX on CPU in every dtype (XLA's float32 and float64 erf_inv ported with
    their fused multiply-adds; checked on 2**20 + 3 draws x 3 keys, parity_tests/test_random.py).
    """
    dtype = _float_dtype(dtype, "normal")
    k0, k1 = _words(k)
    shape = _check_shape(shape, "normal")
    dev = torch.empty(0, device=device).device
    lo = _nextafter(_scalar(-1.0, dtype, "cpu"), 0.0).to(dev)
    hi = _scalar(1.0, dtype, dev)
    s2 = _scalar(_SQRT2, dtype, dev)
    return _erfinv_fill(k0, k1, shape, dtype, dev, lo, hi, lambda v, dst: torch.mul(v, s2, out=dst))


def normal_affine(k, shape, dtype, scale: float, shift: float, device=None) -> Tensor:
    """``normal(k) * scale + shift`` as XLA compiles it inside a jitted sampler with constant
    ``scale``/``shift``: ``sqrt(2) * scale`` is folded into one constant (rounded to dtype)
    and the multiply-add is fused: ``fma(erf_inv(u), sqrt(2) * scale, shift)``."""
    k0, k1 = _words(k)
    dev = torch.empty(0, device=device).device
    lo = _nextafter(_scalar(-1.0, dtype, "cpu"), 0.0).to(dev)
    hi = _scalar(1.0, dtype, dev)
    c = (_scalar(_SQRT2, dtype, "cpu") * _scalar(scale, dtype, "cpu")).to(dev)
    b = _scalar(shift, dtype, dev)
    return _erfinv_fill(k0, k1, shape, dtype, dev, lo, hi, lambda v, dst: fma(v, c, b, out=dst))


def _nextafter(x: Tensor, toward: float) -> Tensor:
    """The next representable value of a 0-d CPU tensor toward ``toward`` (16-bit types via their bits)."""
    if x.dtype in (torch.float32, torch.float64):
        return torch.nextafter(x, torch.tensor(toward, dtype=x.dtype))
    xv = float(x)
    if xv == toward or math.isnan(xv):
        return x
    b = int(x.reshape(1).view(torch.int16)[0]) & 0xFFFF
    if xv == 0:
        nb = 0x0001 if toward > 0 else 0x8001
    elif (toward > xv) == (xv > 0):
        nb = b + 1
    else:
        nb = b - 1
    nb = nb - 0x10000 if nb >= 0x8000 else nb
    return torch.tensor([nb], dtype=torch.int16).view(x.dtype)[0]


def truncated_normal(k, lower: float, upper: float, shape: Sequence[int] | None = None,
                     dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """N(0, 1) truncated to (lower, upper), as ``jax.random.truncated_normal`` (scalar bounds).

    ``sqrt(2) * erf_inv(U[erf(lower/sqrt2), erf(upper/sqrt2)))`` clipped to the open
    interval. Note (jax#10951): wide bounds give erf_inv outliers in JAX, and here.
    """
    dtype = _float_dtype(dtype, "truncated_normal")
    for name, v in (("lower", lower), ("upper", upper)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise InitError(f"truncated_normal: `{name}` must be a real number, got {v!r}")
    k0, k1 = _words(k)
    shape = _check_shape((), "truncated_normal") if shape is None else _check_shape(shape, "truncated_normal")
    dev = torch.empty(0, device=device).device
    s2 = _scalar(_SQRT2, dtype, "cpu")
    lo_t, hi_t = _scalar(lower, dtype, "cpu"), _scalar(upper, dtype, "cpu")
    # XLA rewrites x / sqrt(2) as x * (1 / sqrt(2)) (the reciprocal rounded to dtype).
    inv = _scalar(1.0 / _SQRT2, dtype, "cpu")
    a = _erf((lo_t * inv).reshape(1)).reshape(())
    b = _erf((hi_t * inv).reshape(1)).reshape(())
    clip_lo = _nextafter(lo_t, math.inf).to(dev)
    clip_hi = _nextafter(hi_t, -math.inf).to(dev)
    a, b, s2d = a.to(dev), b.to(dev), s2.to(dev)

    def finish(v, dst):
        return torch.clamp(torch.mul(v, s2d, out=dst), clip_lo, clip_hi, out=dst)

    return _erfinv_fill(k0, k1, shape, dtype, dev, a, b, finish)


def bernoulli(k, p: float | Tensor = 0.5, shape: Sequence[int] | None = None, mode: str = "low") -> Tensor:
    """Boolean draws with mean ``p``, as ``jax.random.bernoulli`` (``uniform < p``).

    A Python float ``p`` is float32 (JAX without x64); pass a float64 tensor for float64.
    ``mode='high'`` draws two uniforms per value (JAX's small-``p`` mode).
    """
    if mode not in ("low", "high"):
        raise InitError(f"bernoulli: `mode` must be 'low' or 'high', got {mode!r}")
    if isinstance(p, torch.Tensor):
        pt = p
    elif isinstance(p, numbers.Real) and not isinstance(p, bool):
        pt = torch.tensor(float(p), dtype=torch.float32)
    else:
        raise InitError(f"bernoulli: `p` must be a float or a floating tensor, got {p!r}")
    dtype = _float_dtype(pt.dtype, "bernoulli")
    shape = tuple(pt.shape) if shape is None else _check_shape(shape, "bernoulli")
    if mode == "high":
        u = uniform(k, (2,) + shape, dtype, device=pt.device)
        u1, u2 = u[0], u[1] * (2.0 ** -_FLOATS[dtype][1])
        return u2 < pt - u1
    if dtype == torch.float32 and pt.ndim == 0:
        return _bernoulli32(k, float(pt), shape, pt.device)
    return uniform(k, shape, dtype, device=pt.device) < pt


def _bernoulli32(k, p: float, shape: tuple[int, ...], device) -> Tensor:
    """``uniform(k, shape) < p`` for a float32 ``p``, as one integer compare on the raw words.

    ``u = m / 2**23`` (``m = w >> 9``, logical) is below ``p`` iff ``m < ceil(p * 2**23)`` iff
    ``w < 512 * ceil(p * 2**23)``; with ``y0``'s top bit flipped (:func:`_counter_bits`) the
    word reads as the int32 ``w - 2**31``, so the test is ``(y0 ^ y1) < 512 * ceil(p * 2**23) - 2**31``.
    ``p <= 0`` or NaN: all False; ``ceil(p * 2**23) == 2**23`` (``p > 1 - 2**-23``): all True.
    """
    k0, k1 = _words(k)
    m = math.ceil(p * 2.0 ** 23) if 0 < p < 1 else (1 << 23 if p >= 1 else 0)  # (NaN: 0)
    if m <= 0 or m >= 1 << 23:
        return torch.full(shape, m > 0, dtype=torch.bool, device=device)
    thr = torch.tensor(512 * m - (1 << 31), dtype=torch.int32)  # 0-d: a scalar operand
    out = torch.empty(shape, dtype=torch.bool, device=device)
    buf = _hash_buf(out.numel(), out.device)

    def chunk(s, dst):
        y0, y1 = _counter_bits(k0, k1, s, dst.numel(), dst.device, _rows(buf, dst.numel()), flip=True)
        torch.lt(y0.bitwise_xor_(y1), thr, out=dst)

    return _fill(out, chunk)


def permutation(k, x: int | Tensor, axis: int = 0, independent: bool = False) -> Tensor:
    """A random permutation of ``range(x)`` or of ``x`` along ``axis``, as ``jax.random.permutation``.

    JAX sorts by fresh 32-bit random keys ``ceil(3 ln(n) / ln(2**32 - 1))`` times
    (stable sorts), splitting the key before each round; so does this.
    """
    if isinstance(x, bool):
        raise InitError("permutation: `x` must be an int or a tensor, got a bool")
    if isinstance(x, numbers.Integral):
        if int(x) < 0:
            raise InitError(f"permutation: `x` must be non-negative, got {x}")
        return _shuffle(k, torch.arange(int(x)), 0)
    if not isinstance(x, torch.Tensor):
        raise InitError(f"permutation: `x` must be an int or a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise InitError("permutation: `x` must be an int or at least 1-dimensional")
    axis = axis % x.ndim
    if independent or x.ndim == 1:
        return _shuffle(k, x, axis)
    ind = _shuffle(k, torch.arange(x.shape[axis], device=x.device), 0)
    return torch.index_select(x, axis, ind)


def _shuffle(k, x: Tensor, axis: int) -> Tensor:
    n = x.numel()
    rounds = int(np.ceil(3 * np.log(max(1, n)) / np.log(M32)))
    for _ in range(rounds):
        k, sub = split(k)
        sort_keys = bits(sub, tuple(x.shape), device=x.device).view(torch.int32).to(torch.int64) & M32
        order = torch.sort(sort_keys, dim=axis, stable=True).indices
        x = torch.take_along_dim(x, order, dim=axis)
    return x
