r"""Flax's dropout keys and masks, named so a torch twin can reproduce them (mirror: torchinit.rngs).

- :func:`linen_key`: the key ``make_rng`` returns in a Linen scope (``flax.core.scope``'s own
  ``LazyRng``/``_fold_in_static``, called, not copied).
- :func:`nnx_key`: the ``count``-th key of an ``nnx.RngStream`` (``fold_in(key, count)``).
- :func:`rng_calls`: every ``make_rng`` call of one Linen apply, with what consumed the key
  (a ``flax.linen.Dropout``, attention-weight dropout, or nothing random), the mask's shape,
  rate and dtype: what ``torchinit.rngs.bind_rngs`` needs to bind a torch model to the same keys.
- :func:`dropout`, :func:`attention_dropout`, :func:`stochastic_depth`, :func:`drop_path`:
  functional forms with torch's argument names (``p``, ``training``) computing exactly what
  ``flax.linen.Dropout`` (resp. ``dot_product_attention_weights``) computes for ``key``.
"""
from __future__ import annotations

import numbers
import sys
from typing import Any, Sequence, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from _jaxinit.errors import InitError
from _jaxinit.rng_calls import RngCall, check_count, norm_path
from jaxinit._src import random as _rnd


def _check_rate(p, who: str, name: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise InitError(f"{who}: dropout probability `{name}` must be a float in [0, 1], got {p!r}; "
                        f"`{name}` is the probability of dropping a unit (Flax's `rate`, not the keep rate)")
    return float(p)


def _check_key(key, who: str):
    if key is None:
        raise InitError(f"{who}: training-mode dropout needs a JAX key (`key`), or training=False")
    try:
        return _rnd.as_key(key)
    except InitError as err:
        raise InitError(f"{who}: `key` is not a JAX key: {err}") from err


def linen_key(key: Any, path: str | Sequence[str] = "", count: int = 1, separator: bool | None = None) -> jax.Array:
    """The key ``self.make_rng(stream)`` returns on its ``count``-th call in the Linen scope at
    ``path`` when the apply got ``rngs={stream: key}``.

    ``path`` is the module path ("Encoder_0/Dropout_0" or a tuple; "" for the top module).
    ``separator`` defaults to ``flax.config.flax_fix_rng_separator``.

    >>> import jax, jaxinit.rngs as jr
    >>> k = jr.linen_key(jax.random.key(0), "Dropout_0", 1)   # what Dropout_0's first call draws from
    """
    from flax.core.scope import LazyRng

    who = "jaxinit.rngs.linen_key"
    parts = norm_path(path, who)
    count = check_count(count, who)
    k = _rnd.as_key(key)
    if separator is None:
        return LazyRng.create(k, *parts, count).as_jax_rng()
    from flax import config as fconfig

    old = fconfig.flax_fix_rng_separator
    fconfig.update("flax_fix_rng_separator", bool(separator))
    try:
        return LazyRng.create(k, *parts, count).as_jax_rng()
    finally:
        fconfig.update("flax_fix_rng_separator", old)


def nnx_key(key: Any, count: int = 0) -> jax.Array:
    """The key an ``nnx.RngStream(key)`` returns on its call number ``count`` (0 for the first):
    ``fold_in(key, count)`` (flax/nnx/rnglib.py ``RngStream.__call__``). ``nnx.Dropout(rngs=rngs)``
    forks at construction: its stream key is ``nnx_key(stream_key, n)`` for the stream's n-th call."""
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or not 0 <= int(count) < 2 ** 32:
        raise InitError(f"jaxinit.rngs.nnx_key: `count` is the stream's call number in [0, 2**32), got {count!r}")
    return jax.random.fold_in(_rnd.as_key(key), np.uint32(count))


def _path_str(path) -> str:
    return "/".join(str(p) for p in path)


def rng_calls(module: Any, *args: Any, variables: Any = None, rngs: Any = None, method: Any = None,
              **kwargs: Any) -> list[RngCall]:
    """Trace one ``module.apply(variables, *args, rngs=rngs, method=method, **kwargs)`` (with
    ``jax.eval_shape``: nothing is computed) and list its ``make_rng`` calls in call order.

    ``module`` is a ``flax.linen.Module`` or a Hugging Face Flax model (called as
    ``model(*args, params=..., dropout_rng=..., **kwargs)``). Pass the arguments that switch
    dropout on (``deterministic=False`` for Linen modules, ``train=True`` for Hugging Face). ``rngs`` defaults to ``{'dropout': key(0)}`` (the keys do not change
    the calls). Linen only; NNX modules carry their streams (:func:`nnx_key`).

    >>> import jax, jax.numpy as jnp, flax.linen as nn, jaxinit.rngs as jr
    >>> calls = jr.rng_calls(nn.Dropout(0.1), jnp.ones((2, 3)), deterministic=False)
    >>> calls[0].path, calls[0].number, calls[0].kind
    ('', 1, 'dropout')
    """
    import flax.core.scope as fscope
    import flax.linen as nn

    who = "jaxinit.rngs.rng_calls"
    hf = not isinstance(module, nn.Module) and isinstance(getattr(module, "module", None), nn.Module)
    if not hf and not isinstance(module, nn.Module):
        raise InitError(f"{who}: `module` must be a flax.linen.Module or a Hugging Face Flax model, "
                        f"got {type(module).__name__}; NNX modules: use jaxinit.rngs.nnx_key")
    if rngs is None:
        rngs = {"dropout": jax.random.key(0)}
    if variables is None:
        variables = {"params": module.params} if hf else {}
    calls: list[dict] = []
    by_key: dict[int, dict] = {}
    orig_make_rng = fscope.Scope.make_rng
    orig_bernoulli = jax.random.bernoulli

    def make_rng(self, name: str = "params"):
        resolved = name if self.has_rng(name) else "params"
        out = orig_make_rng(self, name)
        rec = {"path": _path_str(self.path), "collection": resolved, "number": int(self.rng_counters[resolved]),
               "kind": "other"}
        calls.append(rec)
        by_key[id(out)] = rec
        return out

    def bernoulli(key, p=0.5, shape=None, mode="low", **kw):
        rec = by_key.get(id(key))
        if rec is not None and rec["kind"] == "other":
            caller = sys._getframe(1).f_code
            if caller.co_name == "dot_product_attention_weights":
                rec["kind"] = "attention"
            elif caller.co_filename.endswith("stochastic.py") and caller.co_name == "__call__":
                rec["kind"] = "dropout"
            if rec["kind"] != "other":
                rec["rate"] = float(f"{1.0 - float(p):.15g}")  # Flax computed keep = 1.0 - rate
                rec["mask_shape"] = tuple(int(d) for d in (shape if shape is not None else jnp.shape(p)))
                rec["mask_dtype"] = np.dtype(lax.dtype(p)).name
        return orig_bernoulli(key, p, shape, mode, **kw)

    def run(variables, rngs):
        if hf:  # the Hugging Face wrapper fills the default masks and calls module.apply itself
            return module(*args, params=variables["params"], dropout_rng=rngs.get("dropout"), **kwargs)
        return module.apply(variables, *args, rngs=rngs, method=method, **kwargs)

    fscope.Scope.make_rng = make_rng  # type: ignore[method-assign]
    jax.random.bernoulli = bernoulli
    try:
        jax.eval_shape(run, variables, rngs)
    finally:
        fscope.Scope.make_rng = orig_make_rng  # type: ignore[method-assign]
        jax.random.bernoulli = orig_bernoulli
    return [RngCall(**c) for c in calls]


# --------------------------------------------------------------------------- functional forms
def _mask(key, p: float, shape, who):
    return jax.random.bernoulli(_check_key(key, who), 1.0 - p, tuple(shape))


def dropout(input: jax.Array, p: float = 0.5, training: bool = True, *, key: Any = None,
            broadcast_dims: Sequence[int] = ()) -> jax.Array:
    """``flax.linen.Dropout(p, broadcast_dims)(input, deterministic=not training, rng=key)``
    with torch's argument names (mirror of ``torchinit.rngs.dropout``)."""
    import flax.linen as nn

    p = _check_rate(p, "jaxinit.rngs.dropout")
    if p == 0.0 or not training:
        return input
    k = _check_key(key, "jaxinit.rngs.dropout")
    out = nn.Dropout(p, broadcast_dims=tuple(broadcast_dims)).apply({}, input, deterministic=False, rng=k)
    return cast(jax.Array, out)


def attention_dropout(weights: jax.Array, p: float, training: bool = True, *, key: Any = None,
                      broadcast_dropout: bool = True) -> jax.Array:
    """The dropout step of ``flax.linen.dot_product_attention_weights`` on given weights
    (..., heads, q, k): ``w * keep / dt(1 - p)``; mirror of ``torchinit.rngs.attention_dropout``."""
    who = "jaxinit.rngs.attention_dropout"
    p = _check_rate(p, who)
    if p == 0.0 or not training:
        return weights
    shape = weights.shape
    mshape = (1,) * (weights.ndim - 2) + tuple(shape[-2:]) if broadcast_dropout else tuple(shape)
    keep = _mask(key, p, mshape, who)
    return weights * (keep.astype(weights.dtype) / jnp.asarray(1.0 - p, dtype=weights.dtype))


def stochastic_depth(input: jax.Array, p: float, mode: str = "row", training: bool = True, *,
                     key: Any = None) -> jax.Array:
    """torchvision's ``stochastic_depth`` as its usual Flax twin computes it:
    ``flax.linen.Dropout(p, broadcast_dims=range(1 if mode == 'row' else 0, ndim))``."""
    if mode not in ("row", "batch"):
        raise InitError(f"jaxinit.rngs.stochastic_depth: `mode` must be 'row' or 'batch', got {mode!r}")
    dims = tuple(range(1 if mode == "row" else 0, jnp.ndim(input)))
    return dropout(input, p, training, key=key, broadcast_dims=dims)


def drop_path(x: jax.Array, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True, *,
              key: Any = None) -> jax.Array:
    """timm's ``drop_path`` with a per-sample Flax mask: :func:`stochastic_depth` in row mode, or
    unscaled rows with ``scale_by_keep=False``."""
    if scale_by_keep:
        return stochastic_depth(x, drop_prob, "row", training, key=key)
    p = _check_rate(drop_prob, "jaxinit.rngs.drop_path", "drop_prob")
    if p == 0.0 or not training:
        return x
    if p == 1.0:
        return jnp.zeros_like(x)
    keep = _mask(key, p, (x.shape[0],) + (1,) * (x.ndim - 1), "jaxinit.rngs.drop_path")
    return lax.select(jnp.broadcast_to(keep, x.shape), x, jnp.zeros_like(x))
