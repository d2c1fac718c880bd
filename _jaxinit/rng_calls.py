"""What both packages share about Flax's random-key derivation (no framework imported).

Linen (flax/core/scope.py, flax 0.12): a scope's rng for a stream is ``LazyRng(root_key,
suffix)`` whose suffix grows by the child's name at each ``Scope.push``; ``make_rng(name)``
increments the scope's per-stream counter (starting at 0, so the first call folds 1) and
returns ``_fold_in_static(root_key, path + (counter,))``: the SHA-1 of the suffix parts
(strings UTF-8, ints big-endian in their minimal byte length, each preceded by ``b'\\0'``
when ``flax_fix_rng_separator`` is set), whose first 4 bytes (big-endian) are folded in
with ``jax.random.fold_in``. An empty suffix returns the root key unchanged.

:class:`RngCall` records one ``make_rng`` call of a Flax apply (``jaxinit.rngs.rng_calls``)
and what consumed the key: ``torchinit.rngs.bind_rngs`` reads it without jax.
"""
from __future__ import annotations

import hashlib
import numbers
from typing import NamedTuple, Sequence

from _jaxinit.errors import InitError


class RngCall(NamedTuple):
    """One ``make_rng`` call of a Flax Linen apply, in call order.

    path: the scope path of the module calling ``make_rng`` ("" at the top), "/"-joined.
    collection: the stream the key came from ('dropout', or 'params' when Flax fell back).
    number: the scope's call counter for that stream (1 for its first call): ``linen_key``'s ``count``.
    kind: 'dropout' (``flax.linen.Dropout``: select(mask, x / keep_prob, 0)), 'attention'
      (``dot_product_attention_weights``: w * keep / keep_prob) or 'other' (the key was not
      used for a bernoulli mask: nothing to bind).
    rate: the drop rate (1 - the bernoulli ``p``), None for 'other'.
    mask_shape: the shape of the drawn mask (broadcast axes are 1), None for 'other'.
    mask_dtype: 'float32' or 'float64', the dtype of the uniform behind the mask.
    """

    path: str
    collection: str
    number: int
    kind: str
    rate: float | None = None
    mask_shape: tuple | None = None
    mask_dtype: str | None = None


def norm_path(path: str | Sequence[str], who: str) -> tuple[str, ...]:
    """A scope path as a tuple of names: "a/b" or ("a", "b"); "" or () is the top scope."""
    if isinstance(path, str):
        return tuple(p for p in path.split("/") if p)
    if isinstance(path, (tuple, list)) and all(isinstance(p, str) for p in path):
        return tuple(path)
    raise InitError(f"{who}: `path` must be a '/'-joined string or a tuple of scope names, got {path!r}")


def check_count(count, who: str) -> int:
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise InitError(f"{who}: `count` is the scope's make_rng call number, an int >= 1 "
                        f"(1 for the first call), got {count!r}")
    return int(count)


def static_fold_data(parts: Sequence[str | int], separator: bool = False) -> int | None:
    """The 32-bit value ``flax.core.scope._fold_in_static`` folds in for ``parts`` (None: no fold)."""
    if not parts:
        return None
    m = hashlib.sha1()
    for x in parts:
        if separator:
            m.update(b"\0")
        if isinstance(x, str):
            m.update(x.encode("utf-8"))
        elif isinstance(x, int) and not isinstance(x, bool):
            m.update(x.to_bytes((x.bit_length() + 7) // 8, byteorder="big"))
        else:
            raise InitError(f"static_fold_data: scope path parts are str or int, got {x!r}")
    return int.from_bytes(m.digest()[:4], byteorder="big")
