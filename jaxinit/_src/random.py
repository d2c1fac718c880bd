"""The jax side of :mod:`torchinit.random`: ``jax.random`` under the same names and signatures.

Every sampler is ``jax.random``'s (threefry2x32, partitionable layout); this
module only fixes the conventions both packages share:

- ``key(seed)`` is 32-bit seeding, ``(0, seed mod 2**32)``, whatever
  ``jax_enable_x64`` says (``jax.random.key`` keeps the high word under x64);
  seeds outside ``[-2**31, 2**32)`` are refused, as in torchinit.
- ``dtype`` defaults to float32 (``jax.random`` defaults to float64 under x64);
  a Python float ``p`` in :func:`bernoulli` is float32.
- :func:`as_key` takes typed keys and raw uint32[2] keys (numpy, jax, or a torch
  tensor through ``__array__``) and returns a typed key; :func:`key_to_numpy`
  returns the raw words.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from _jaxinit.errors import InitError

_M32 = 0xFFFFFFFF


def key(seed: int) -> jax.Array:
    """A typed threefry key ``(0, seed mod 2**32)``, as ``jax.random.key(seed)`` without x64."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InitError(
            f"key: `seed` must be an int, got {type(seed).__name__} {seed!r}; "
            "e.g. jaxinit.random.key(0), or jaxinit.random.as_key(raw_key) to convert a raw key."
        )
    seed = int(seed)
    if not -(1 << 31) <= seed < (1 << 32):
        raise InitError(
            f"key: `seed`={seed} is outside [-2**31, 2**32), where JAX's 32-bit seeding is unambiguous; "
            "use seed % 2**32, or build the key with jax.random.key and convert it with as_key."
        )
    return jax.random.wrap_key_data(np.array([0, seed & _M32], dtype=np.uint32))


def _is_typed(obj) -> bool:
    return isinstance(obj, jax.Array) and jnp.issubdtype(obj.dtype, jax.dtypes.prng_key)


def as_key(obj: Any) -> jax.Array:
    """A typed threefry key from a typed key or a raw uint32[2] key (numpy, jax, torch tensor)."""
    if _is_typed(obj):
        if obj.shape != ():
            raise InitError(f"as_key: expected a single key, got a key array of shape {obj.shape}")
        return obj
    if isinstance(obj, (bool, numbers.Number, str, bytes)) or obj is None:
        raise InitError(
            f"as_key: expected a key (uint32[2] array or typed key), got {type(obj).__name__} {obj!r}; "
            "for an int seed use jaxinit.random.key(seed)."
        )
    torch = __import__("sys").modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        if obj.dtype == torch.uint32:
            obj = obj.detach().cpu().view(torch.int32).numpy().view(np.uint32)
        else:
            obj = obj.detach().cpu().numpy()
    try:
        arr = np.asarray(obj)
    except Exception as err:  # noqa: BLE001 - reported with the fix
        raise InitError(f"as_key: could not read {type(obj).__name__} as an array: {err}") from err
    if arr.shape != (2,):
        raise InitError(
            f"as_key: a threefry key has shape (2,), got shape {arr.shape}; pass one key (index a split result first)."
        )
    if arr.dtype.kind not in "ui":
        raise InitError(f"as_key: a key must hold integers (uint32), got dtype {arr.dtype}")
    vals = [int(v) for v in arr]
    if any(not 0 <= v <= _M32 for v in vals):
        raise InitError(f"as_key: key words must lie in [0, 2**32), got {vals}")
    return jax.random.wrap_key_data(jnp.asarray(np.array(vals, dtype=np.uint32)))


def is_key(obj: Any) -> bool:
    """True for a single typed key or a raw uint32[2] array."""
    if _is_typed(obj):
        return obj.shape == ()
    return getattr(obj, "shape", None) == (2,) and str(getattr(obj, "dtype", "")) in ("uint32", "torch.uint32")


def key_to_numpy(k: Any) -> np.ndarray:
    """The raw key words as a numpy uint32 array of shape (2,) (``torchinit.random.as_key`` reads it)."""
    return np.asarray(jax.random.key_data(as_key(k))).astype(np.uint32)


def split(k, num: int | Sequence[int] = 2) -> jax.Array:
    """``jax.random.split``: ``num`` new typed keys."""
    return jax.random.split(as_key(k), tuple(num) if isinstance(num, Sequence) else num)


def fold_in(k, data: int) -> jax.Array:
    """``jax.random.fold_in`` with ``data`` in [0, 2**32)."""
    if isinstance(data, bool) or not isinstance(data, numbers.Integral):
        raise InitError(f"fold_in: `data` must be an int in [0, 2**32), got {data!r}")
    if not 0 <= int(data) <= _M32:
        raise InitError(f"fold_in: `data`={data} is outside [0, 2**32); reduce it with data % 2**32")
    return jax.random.fold_in(as_key(k), np.uint32(int(data)))


def bits(k, shape: Sequence[int] = (), dtype=jnp.uint32) -> jax.Array:
    """``jax.random.bits`` (uint8/16/32/64)."""
    return jax.random.bits(as_key(k), tuple(shape), dtype)


def uniform(k, shape: Sequence[int] = (), dtype=jnp.float32, minval: float = 0.0, maxval: float = 1.0) -> jax.Array:
    """``jax.random.uniform``, float32 by default."""
    return jax.random.uniform(as_key(k), tuple(shape), dtype, minval, maxval)


def normal(k, shape: Sequence[int] = (), dtype=jnp.float32) -> jax.Array:
    """``jax.random.normal``, float32 by default."""
    return jax.random.normal(as_key(k), tuple(shape), dtype)


def truncated_normal(k, lower: float, upper: float, shape: Sequence[int] | None = None, dtype=jnp.float32) -> jax.Array:
    """``jax.random.truncated_normal`` with scalar bounds, float32 by default."""
    for name, v in (("lower", lower), ("upper", upper)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise InitError(f"truncated_normal: `{name}` must be a real number, got {v!r}")
    return jax.random.truncated_normal(as_key(k), lower, upper, None if shape is None else tuple(shape), dtype)


def bernoulli(k, p=0.5, shape: Sequence[int] | None = None, mode: str = "low") -> jax.Array:
    """``jax.random.bernoulli``; a Python float ``p`` is float32."""
    if mode not in ("low", "high"):
        raise InitError(f"bernoulli: `mode` must be 'low' or 'high', got {mode!r}")
    if isinstance(p, numbers.Real) and not isinstance(p, bool):
        p = jnp.float32(p)
    return jax.random.bernoulli(as_key(k), p, None if shape is None else tuple(shape), mode)


def permutation(k, x, axis: int = 0, independent: bool = False) -> jax.Array:
    """``jax.random.permutation``."""
    return jax.random.permutation(as_key(k), x, axis, independent)
