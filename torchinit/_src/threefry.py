"""threefry2x32, the counter-based hash under ``jax.random``'s default PRNG, on int32 torch tensors.

The one implementation :mod:`torchinit._src.random` draws every bit from (eagerly, or through
``torch.compile``); the constants are JAX's (``jax/_src/random/threefry2x32.py``: rotations
``(13, 15, 26, 6)``, ``(17, 29, 16, 24)`` and key-schedule parity ``0x1BD11BDA``).

Eager cost. Each torch op is one pass over the chunk, so the hash is written in as few passes
as the ops allow: a round ``x0 += x1; x1 = rotl(x1, r) ^ x0`` is five (int32 has no logical
right shift and torch's uint32 has no shifts or adds, so the rotation's high part is an
arithmetic shift and a mask, and its low part ``x1 << r`` is folded into the add that joins
the two: ``t + x1 * 2**r``, the parts do not overlap), every op in place on three buffers that
stay in cache (:func:`hash_counters`), the counter's low word and ``k1`` in one ``arange``.
Scalar operands are cached 0-d int32 tensors (a Python int is wrapped into a fresh tensor on every
call, which costs torch about a microsecond per op: a quarter of a 64K-element pass).

This package never imports jax.
"""
from __future__ import annotations

import functools

import torch

Tensor = torch.Tensor

M32 = 0xFFFFFFFF
ROT = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def i32(v: int) -> int:
    """An unsigned 32-bit value as the int32 with the same bits."""
    v &= M32
    return v - (1 << 32) if v >= (1 << 31) else v


def _int32_scalars(values) -> tuple[Tensor, ...]:
    """0-d CPU int32 tensors (torch takes them as scalars on every device)."""
    return tuple(torch.tensor([i32(v) for v in values], dtype=torch.int32).unbind())


# per rotation r: the shift 32 - r and the mask 2**r - 1 of the rotation's high part
_SHIFT = dict(zip(sorted({r for rr in ROT for r in rr}), _int32_scalars(32 - r for r in sorted({r for rr in ROT for r in rr}))))
_MASK = dict(zip(sorted(_SHIFT), _int32_scalars((1 << r) - 1 for r in sorted(_SHIFT))))


def _rotl_xor(x0: Tensor, x1: Tensor, t: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """``rotl(x1, r) ^ x0`` in 4 in-place passes, written over ``t``; returns ``(result, old x1)``
    (the caller swaps the buffers). ``>>`` on int32 is arithmetic, so the high part is masked;
    ``t + x1 * 2**r`` is ``t | (x1 << r)`` (disjoint bits) with int32 products wrapping."""
    torch.bitwise_right_shift(x1, _SHIFT[r], out=t).bitwise_and_(_MASK[r])
    t.add_(x1, alpha=1 << r)
    return t.bitwise_xor_(x0), x1


def _injections(ks, last_x0_extra: int = 0) -> list:
    """The 10 key-schedule addends (x0's, x1's per block): ints as cached 0-d int32 tensors."""
    adds = []
    for i in range(5):
        k = ks[(i + 1) % 3] + (last_x0_extra if i == 4 else 0)
        inj = ks[(i + 2) % 3] + (i + 1)  # key word and round count in one add (wrapping)
        adds += [k, inj]
    if all(isinstance(a, int) for a in adds):
        return list(_injection_scalars(tuple(i32(a) for a in adds)))
    return adds


@functools.lru_cache(maxsize=64)
def _injection_scalars(adds: tuple[int, ...]) -> tuple[Tensor, ...]:
    return _int32_scalars(adds)


def _rounds(x0: Tensor, x1: Tensor, t: Tensor, ks, first_add_done: bool, last_x0_extra: int = 0) -> tuple[Tensor, Tensor]:
    """The 20 rounds and 5 key injections after the initial ``x0 += k0, x1 += k1``, in place
    (``t`` is scratch). ``last_x0_extra`` is added with the last injection of ``x0`` (a constant
    the caller would otherwise add in a pass of its own)."""
    adds = _injections(ks, last_x0_extra)
    for i in range(5):
        for j, r in enumerate(ROT[i % 2]):
            if i or j or not first_add_done:
                x0.add_(x1)
            x1, t = _rotl_xor(x0, x1, t, r)
        x0.add_(adds[2 * i])
        x1.add_(adds[2 * i + 1])
    return x0, x1


def threefry2x32(k0, k1, x0: Tensor | int, x1: Tensor) -> tuple[Tensor, Tensor]:
    """threefry2x32 on int32 tensors holding uint32 bits (adds wrap), the one implementation.

    The key words ``k0``, ``k1`` are ints (already as int32, see :func:`i32`) or 0-d int32
    tensors (what the ``torch.compile``d hash receives, so a new key does not recompile).
    ``x0`` may be an int: the high counter word shared by a whole chunk (eager draws).
    The rounds work in place on fresh copies of ``x0``/``x1`` with one scratch buffer.
    """
    k2 = k0 ^ k1 ^ i32(_PARITY)
    x1 = x1 + k1  # fresh tensors: the rounds below work in place on them
    if isinstance(x0, int):  # a constant high word: the first round's x0 + x1 in one op
        y0 = x1 + i32(x0 + k0)
        first_done = True
    else:
        y0 = x0 + k0
        first_done = False
    return _rounds(y0, x1, torch.empty_like(x1), (k0, k1, k2), first_done)


def hash_counters(k0: int, k1: int, hi: int, lo: int, buf: Tensor, flip_x0: bool = False,
                  scratch: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """threefry2x32 of the counters ``(hi, lo + j)``, ``j < n``, eagerly into ``buf`` (int32, shape
    ``(3, n)``, rows reused as x0, x1 and scratch): returns views ``(y0, y1)`` of ``buf``'s first
    two rows. ``scratch`` (an int32 row of ``n``, e.g. the caller's output viewed as int32) replaces
    the third row: it holds garbage afterwards (x1 and the scratch swap every round: 20 swaps).

    ``k0``, ``k1`` are the key words as int32 (:func:`i32`); ``lo + n - 1`` must not carry into
    ``hi`` (``lo + n <= 2**32``). ``flip_x0`` adds ``2**31`` to ``y0`` with its last key word
    (the same as flipping its top bit): callers that read ``y0 ^ y1`` as a signed number use it.
    111 passes: one ``arange`` (``x1 = lo + j + k1``), one add (the first round's ``x0 + x1``),
    4 + 19 x 5 round passes and 10 key injections.
    """
    n = buf.shape[1]
    x1, x0, t = buf[0], buf[1], (buf[2] if scratch is None else scratch)
    s = i32(lo + k1)
    wrap = (1 << 31) - s  # elements before x1 wraps from 2**31 - 1 to -2**31
    if wrap >= n:
        torch.arange(s, s + n, dtype=torch.int32, out=x1)
    else:
        torch.arange(s, s + wrap, dtype=torch.int32, out=x1[:wrap])
        torch.arange(-(1 << 31), -(1 << 31) + n - wrap, dtype=torch.int32, out=x1[wrap:])
    torch.add(x1, _injection_scalars((i32(hi + k0),))[0], out=x0)
    k2 = k0 ^ k1 ^ i32(_PARITY)
    return _rounds(x0, x1, t, (k0, k1, k2), True, 1 << 31 if flip_x0 else 0)
