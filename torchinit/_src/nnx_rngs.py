"""``flax.nnx.Rngs`` / ``RngStream`` in torch: the same keys, call after call (flax/nnx/rnglib.py).

An ``RngStream(key)`` returns ``fold_in(key, count)`` and increments ``count`` (from 0);
``fork()`` is a new stream whose key is the parent's next key (what ``nnx.Dropout(rngs=...)``
keeps). ``Rngs(dropout=key)`` holds named streams; a missing name falls back to ``default``.
An int seed is ``torchinit.random.key(seed)`` (``jax.random.key`` without x64).
"""
from __future__ import annotations

import numbers
from typing import Any

import torch

import torchinit.random as _rnd
from _jaxinit.errors import InitError


def _as_key(key: Any, who: str) -> torch.Tensor:
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return _rnd.key(int(key))
    try:
        return _rnd.as_key(key)
    except InitError as err:
        raise InitError(f"{who}: a stream's key is an int seed or a JAX key: {err}") from err


class RngStream:
    """``flax.nnx.RngStream`` in torch: ``stream()`` is ``fold_in(key, count)``, then ``count += 1``.

    >>> import torchinit.rngs as trn
    >>> s = trn.RngStream(0)
    >>> k0, k1 = s(), s()          # nnx.RngStream(0): fold_in(key(0), 0), fold_in(key(0), 1)
    """

    def __init__(self, key: Any, *, tag: str = "default") -> None:
        self.key = _as_key(key, "torchinit.rngs.RngStream")
        self.tag = tag
        self.count = 0

    def __call__(self) -> torch.Tensor:
        k = _rnd.fold_in(self.key, self.count)
        self.count += 1
        return k

    def fork(self) -> "RngStream":
        """A new stream whose key is this stream's next key (``nnx.RngStream.fork``)."""
        return RngStream(self(), tag=self.tag)

    def __repr__(self) -> str:
        return f"RngStream(key={self.key.view(torch.int32).tolist()}, count={self.count}, tag={self.tag!r})"


class Rngs:
    """``flax.nnx.Rngs`` in torch: named :class:`RngStream` s (``Rngs(0)`` is the ``default`` stream,
    ``Rngs(dropout=1)``...); ``rngs.dropout`` / ``rngs['dropout']`` fall back to ``default``.

    >>> import torch, torchinit.nn as fnn, torchinit.rngs as trn
    >>> layer = fnn.Dropout(0.1, rngs=trn.Rngs(dropout=0))   # nnx.Dropout(0.1, rngs=nnx.Rngs(dropout=0))
    """

    def __init__(self, default: Any = None, **rngs: Any) -> None:
        if default is not None:
            rngs = {**default, **rngs} if isinstance(default, dict) else {**rngs, "default": default}
        for tag, key in rngs.items():
            stream = RngStream(key.key if isinstance(key, RngStream) else key, tag=tag)
            object.__setattr__(self, tag, stream)

    def _get(self, name: str, err: type[Exception]) -> RngStream:
        streams = vars(self)
        if name in streams:
            return streams[name]
        if "default" in streams:
            return streams["default"]
        raise err(f"No RngStream named '{name}' found in Rngs (and no 'default' stream); "
                  f"pass it, e.g. Rngs({name}=0)")

    def __getitem__(self, name: str) -> RngStream:
        return self._get(name, KeyError)

    def __getattr__(self, name: str) -> RngStream:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._get(name, AttributeError)

    def __call__(self) -> torch.Tensor:
        return self._get("default", AttributeError)()
