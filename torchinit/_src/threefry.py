"""threefry2x32, the counter-based hash under ``jax.random``'s default PRNG, on int32 torch tensors.

The one implementation :mod:`torchinit._src.random` draws every bit from (eagerly, or through
``torch.compile``); the constants are JAX's (``jax/_src/random/threefry2x32.py``: rotations
``(13, 15, 26, 6)``, ``(17, 29, 16, 24)`` and key-schedule parity ``0x1BD11BDA``).

This package never imports jax.
"""
from __future__ import annotations

import torch

Tensor = torch.Tensor

M32 = 0xFFFFFFFF
ROT = ((13, 15, 26, 6), (17, 29, 16, 24))


def i32(v: int) -> int:
    """An unsigned 32-bit value as the int32 with the same bits."""
    v &= M32
    return v - (1 << 32) if v >= (1 << 31) else v


def threefry2x32(k0, k1, x0: Tensor | int, x1: Tensor) -> tuple[Tensor, Tensor]:
    """threefry2x32 on int32 tensors holding uint32 bits (adds wrap), the one implementation.

    The key words ``k0``, ``k1`` are ints (already as int32, see :func:`i32`) or 0-d int32
    tensors (what the ``torch.compile``d hash receives, so a new key does not recompile).
    ``x0`` may be an int: the high counter word shared by a whole chunk (eager draws).
    The rounds work in place on fresh copies of ``x0``/``x1`` with one scratch buffer.
    """
    k2 = k0 ^ k1 ^ i32(0x1BD11BDA)
    ks = (k0, k1, k2)
    x1 = x1 + k1  # fresh tensors: the rounds below work in place on them
    if isinstance(x0, int):  # a constant high word: the first round's x0 + x1 in one op
        y0 = x1 + i32(x0 + k0)
        first = False
    else:
        y0 = x0 + k0
        first = True
    tmp = torch.empty_like(x1)
    for i in range(5):
        for r in ROT[i % 2]:
            if first:
                y0.add_(x1)
            first = True
            # x1 = rotl(x1, r) ^ x0; >> on int32 is arithmetic, so mask the low r bits
            torch.bitwise_right_shift(x1, 32 - r, out=tmp).bitwise_and_((1 << r) - 1)
            x1.bitwise_left_shift_(r).bitwise_or_(tmp).bitwise_xor_(y0)
        y0.add_(ks[(i + 1) % 3])
        inj = ks[(i + 2) % 3] + (i + 1)  # key word and round count in one add (wrapping)
        x1.add_(i32(inj) if isinstance(inj, int) else inj)
    return y0, x1
