"""Threefry keys in torch: seeding, conversion from and to JAX keys, and their checks.

A key is a ``torch.uint32`` tensor of shape ``(2,)`` holding the two threefry words, i.e. the
``jax.random.key_data`` of a JAX key. :func:`key` seeds as ``jax.random.key`` does (32-bit
seeding, ``(0, seed mod 2**32)``); :func:`as_key` converts anything that holds a key
losslessly (a JAX typed key read through ``jax.random.key_data`` found in ``sys.modules``,
never imported here; a JAX/numpy uint32[2] array; a torch tensor; any ``__array__``);
:func:`key_to_numpy` goes back. Public through :mod:`torchinit.random` (re-exported by
:mod:`torchinit._src.random`, which splits and folds keys with the hash).
"""
from __future__ import annotations

import numbers
import sys
from typing import Any

import numpy as np
import torch

from _jaxinit.errors import InitError
from torchinit._src.threefry import M32, i32

Tensor = torch.Tensor

def _make_key(k0: int, k1: int, device=None) -> Tensor:
    return torch.tensor([i32(k0), i32(k1)], dtype=torch.int32, device=device).view(torch.uint32)


# The seed checks repeat jaxinit.random.key's with torch-side hints in the messages (the mirror).
def key(seed: int) -> Tensor:
    """A threefry key from an integer seed, as ``jax.random.key(seed)`` (32-bit seeding).

    The key is ``(0, seed mod 2**32)``, a ``torch.uint32`` tensor of shape (2,).
    ``seed`` must be an int in ``[-2**31, 2**32)``: outside it JAX's result depends
    on ``jax_enable_x64`` (x64 keeps the high word), so it is refused.

    >>> key(0).tolist()
    [0, 0]
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InitError(
            f"key: `seed` must be an int, got {type(seed).__name__} {seed!r}; "
            "e.g. torchinit.random.key(0), or torchinit.random.as_key(jax_key) to convert a JAX key."
        )
    seed = int(seed)
    if not -(1 << 31) <= seed < (1 << 32):
        raise InitError(
            f"key: `seed`={seed} is outside [-2**31, 2**32), where JAX's 32-bit seeding is unambiguous; "
            "use seed % 2**32, or build the key in JAX (jax.random.key) and convert it with as_key."
        )
    return _make_key(0, seed)


def _is_key_dtype(obj) -> bool:
    dt = getattr(obj, "dtype", None)
    return dt is not None and "key<" in str(dt)


def as_key(obj: Any) -> Tensor:
    """Convert a key to torchinit's form (``torch.uint32`` tensor of shape (2,)), losslessly.

    Accepts a JAX typed key (``jax.random.key``; read with ``jax.random.key_data``
    from ``sys.modules``), a raw key (``jax.random.PRNGKey``, a numpy or torch
    uint32 array of shape (2,), or an int tensor/array whose two values lie in
    [0, 2**32)), or any object with ``__array__``. Ints are seeds, not keys: use :func:`key`.
    """
    if isinstance(obj, torch.Tensor):
        if obj.dtype == torch.uint32:
            arr = obj.detach().cpu().view(torch.int32).numpy().view(np.uint32)
        elif obj.dtype in (torch.int64, torch.int32, torch.uint8, torch.int16):
            arr = obj.detach().cpu().numpy()
        else:
            raise InitError(f"as_key: a key tensor must have an integer dtype (uint32), got {obj.dtype}")
    elif isinstance(obj, (bool, numbers.Number, str, bytes)) or obj is None:
        raise InitError(
            f"as_key: expected a key (uint32[2] array or JAX typed key), got {type(obj).__name__} {obj!r}; "
            "for an int seed use torchinit.random.key(seed)."
        )
    elif _is_key_dtype(obj):
        jr = getattr(sys.modules.get("jax"), "random", None)
        if jr is None:
            raise InitError("as_key: got a JAX typed key but jax is not imported")
        if getattr(obj, "shape", ()) != ():
            raise InitError(f"as_key: expected a single key, got a key array of shape {tuple(obj.shape)}")
        arr = np.asarray(jr.key_data(obj))
    elif hasattr(obj, "__array__") or isinstance(obj, (list, tuple)):
        try:
            arr = np.asarray(obj)
        except Exception as err:  # noqa: BLE001 - reported with the fix
            raise InitError(f"as_key: could not read {type(obj).__name__} as an array: {err}") from err
    else:
        raise InitError(
            f"as_key: expected a key (uint32[2] array or JAX typed key), got {type(obj).__name__}; "
            "for an int seed use torchinit.random.key(seed)."
        )
    if arr.shape != (2,):
        raise InitError(
            f"as_key: a threefry key has shape (2,), got shape {arr.shape}; "
            "pass one key (index a split result first)."
        )
    if arr.dtype.kind not in "ui":
        raise InitError(f"as_key: a key must hold integers (uint32), got dtype {arr.dtype}")
    vals = [int(v) for v in arr]
    if any(not 0 <= v <= M32 for v in vals):
        raise InitError(f"as_key: key words must lie in [0, 2**32), got {vals}")
    return _make_key(vals[0], vals[1])


def is_key(obj: Any) -> bool:
    """True for objects :func:`as_key` reads as a key (not for int seeds or generators)."""
    if isinstance(obj, torch.Tensor):
        return obj.shape == (2,) and obj.dtype == torch.uint32
    if _is_key_dtype(obj):
        return getattr(obj, "shape", None) == ()
    if isinstance(obj, np.ndarray):
        return obj.shape == (2,) and obj.dtype == np.uint32
    if hasattr(obj, "__array__") and getattr(obj, "shape", None) == (2,):
        return str(getattr(obj, "dtype", "")) == "uint32"
    return False


def key_to_numpy(k: Any) -> np.ndarray:
    """The key as a numpy ``uint32`` array of shape (2,): a raw JAX key.

    ``jax.random.wrap_key_data(key_to_numpy(k))`` is the equivalent typed key.
    """
    k = as_key(k)
    return k.view(torch.int32).numpy().view(np.uint32).copy()


def _words(k) -> tuple[int, int]:
    k = k if (isinstance(k, torch.Tensor) and k.dtype == torch.uint32 and k.shape == (2,)) else as_key(k)
    a, b = k.view(torch.int32).tolist()
    return a & M32, b & M32
