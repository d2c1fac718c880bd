"""Array handling shared by the weight converters: numpy <-> torch tensors (duck-typed, no
torch import), templates' shapes and dtypes (:class:`ShapeDtype`), and nested Flax
variables <-> ``{(collection, path): leaf}``.

Framework-free (numpy only; ``ml_dtypes`` arrays for bfloat16).
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from _jaxinit.errors import InitError

FlaxKey = tuple  # (collection, path tuple)


class ShapeDtype(NamedTuple):
    """Shape and dtype of a template entry (no data)."""

    shape: tuple
    dtype: Any


def bfloat16():
    try:
        import ml_dtypes
    except ImportError as err:  # pragma: no cover - jax depends on ml_dtypes
        raise InitError("bfloat16 arrays need numpy's bfloat16 from ml_dtypes: pip install ml_dtypes") from err
    return np.dtype(ml_dtypes.bfloat16)


def is_float(dt) -> bool:
    dt = np.dtype(dt)
    return np.issubdtype(dt, np.floating) or dt.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")


def is_torch_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "numpy")


def torch_dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


def tensor_to_numpy(t) -> np.ndarray:
    """A torch tensor as numpy (a CPU view where possible); bfloat16 through ml_dtypes.
    Duck-typed: the torch module is the one the tensor comes from."""
    t = t.detach().cpu()
    if torch_dtype_name(t) == "bfloat16":
        torch = sys.modules["torch"]
        return t.contiguous().view(torch.int16).numpy().view(bfloat16())
    return t.numpy()


def tensor_spec(t) -> ShapeDtype:
    if torch_dtype_name(t) == "bfloat16":
        return ShapeDtype(tuple(t.shape), bfloat16())
    return ShapeDtype(tuple(t.shape), np.dtype(torch_dtype_name(t)))


def shape_dtype(v) -> ShapeDtype:
    """The :class:`ShapeDtype` of an array-like: a torch tensor (read without copying), a numpy /
    jax array or ``jax.ShapeDtypeStruct`` (its ``dtype``), or a Python number (numpy's dtype of it)."""
    if is_torch_tensor(v):
        return tensor_spec(v)
    return ShapeDtype(tuple(np.shape(v)), np.dtype(v.dtype) if hasattr(v, "dtype") else np.asarray(v).dtype)


def shape_dtypes(flat: Mapping) -> dict:
    """``{key: ShapeDtype}`` of a flat ``{key: array}`` (a template: shapes and dtypes, no data)."""
    return {k: shape_dtype(v) for k, v in flat.items()}


def numpy_to_tensor(a: np.ndarray, torch, device=None):
    """A numpy array (ml_dtypes bfloat16 included) as a new torch tensor (a copy)."""
    a = np.array(a, order="C", copy=True)  # one copy: the tensor never aliases the caller's array
    t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a)
    return t if device is None else t.to(device)


def to_numpy(x, copy: bool = False) -> np.ndarray:
    """numpy view of a torch tensor, jax array or array-like (``copy=True``: a new array that
    never aliases ``x``'s memory)."""
    a = tensor_to_numpy(x) if is_torch_tensor(x) else np.asarray(x)
    return np.array(a, copy=True) if copy else a


def fname(key: FlaxKey) -> str:
    """``('params', ('a', 'kernel'))`` -> ``'params/a/kernel'``."""
    coll, path = key
    return "/".join((coll,) + tuple(str(p) for p in path))


# --------------------------------------------------------------------------- nested dicts
_PARAM_LEAVES = {"kernel", "bias", "scale", "embedding"}


def flatten_flax(tree: Mapping, who: str) -> dict:
    """``{'params': {...}, 'batch_stats': {...}}`` -> ``{(collection, path): leaf}``."""
    if not isinstance(tree, Mapping):
        raise InitError(f"{who}: Flax variables must be a dict like {{'params': {{...}}, 'batch_stats': "
                        f"{{...}}}}, got {type(tree).__name__}.")
    flat = {}

    def walk(node, coll, path):
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, coll, path + (str(k),))
        else:
            flat[(coll, path)] = node

    for coll, sub in tree.items():
        if not isinstance(sub, Mapping):
            raise InitError(f"{who}: Flax variables must map collection names ('params', 'batch_stats') to "
                            f"nested dicts; {coll!r} holds a {type(sub).__name__}. If you passed "
                            "variables['params'], pass the whole variables dict or {'params': params}.")
        walk(sub, str(coll), ())
    _check_collection_level(tree, flat, who)
    return flat


def _check_collection_level(tree: Mapping, flat: Mapping, who: str) -> None:
    """A params tree without its ``params`` level (HF Flax models' ``model.params``, or
    ``variables['params']``) would read every layer as a collection: say so once."""
    if "params" in tree or "batch_stats" in tree or not flat:
        return
    if any(path and path[-1] in _PARAM_LEAVES for _, path in flat):
        top = ", ".join(repr(k) for k in list(tree)[:4])
        raise InitError(f"{who}: these Flax variables have no 'params' level (top-level keys {top}{', ...' if len(tree) > 4 else ''} "
                        "hold layers, not collections): this is a params tree such as Hugging Face's "
                        "`model.params` or variables['params']. Wrap it as {'params': ...}.")


def unflatten_flax(flat: Mapping) -> dict:
    tree: dict = {}
    for (coll, path), v in flat.items():
        node = tree.setdefault(coll, {})
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = v
    return tree
