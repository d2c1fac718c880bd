"""Checkpoint files shared by ``jaxinit`` and ``torchinit``: safetensors as numpy, and
the format rules. Framework-free: ``.pt`` files are read by the torch side
(``torch.load(weights_only=True)``), never unpickled here.

safetensors' own numpy loader has no bfloat16 (its table stops at F16), so files
are parsed by ``safetensors.deserialize`` (the library validates the header and
the byte ranges) and each tensor is viewed with the dtype from the table below,
BF16 through ``ml_dtypes``. Writing uses ``safetensors.numpy.save_file``, which
accepts ml_dtypes bfloat16 arrays.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from _jaxinit.arrays import bfloat16
from _jaxinit.errors import InitError

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "U64": np.uint64,
    "I32": np.int32, "U32": np.uint32, "I16": np.int16, "U16": np.uint16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_, "C64": np.complex64,
}


def file_format(path, who: str) -> str:
    name = os.fspath(path)
    if name.endswith(SAFETENSORS_SUFFIXES):
        return "safetensors"
    if name.endswith(TORCH_SUFFIXES):
        return "torch"
    raise InitError(f"{who}: cannot tell the format of {name!r} from its suffix; accepted: "
                    f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)} (safetensors is recommended).")


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as err:
        raise InitError("safetensors is not installed: pip install safetensors "
                        "(or jaxinit[jax] / jaxinit[torch])") from err
    return safetensors


def bad_file_error(name: str, size: int, err: Exception, who: str) -> InitError:
    return InitError(f"{who}: {name!r} is not a valid safetensors file ({size} bytes): "
                     f"{type(err).__name__}: {err}. The file is malformed or truncated; re-save it.")


def has_bfloat16(name: str) -> bool | None:
    """Whether the header lists a BF16 tensor (None when the header cannot be read)."""
    import json

    try:
        with open(name, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or n > os.path.getsize(name) - 8:
                return None
            header = json.loads(fh.read(n))
        return any(isinstance(v, dict) and v.get("dtype") == "BF16" for v in header.values())
    except (ValueError, OSError):
        return None


def read_safetensors(path, who: str) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, metadata)`` of a safetensors file; a malformed or truncated file raises
    :class:`InitError` naming the file and the problem. Files without bfloat16 go through
    ``safetensors.numpy.load_file`` (memory-mapped); bfloat16 ones through ``deserialize``."""
    st = _safetensors()
    name = os.fspath(path)
    if not os.path.exists(name):
        raise FileNotFoundError(f"{who}: no such file: {name!r}")
    if has_bfloat16(name) is False:
        try:
            with st.safe_open(name, framework="np") as f:
                metadata = f.metadata() or {}
                return {k: f.get_tensor(k) for k in f.keys()}, metadata
        except Exception as err:
            raise bad_file_error(name, os.path.getsize(name), err, who) from err
    with open(name, "rb") as fh:
        data = fh.read()
    try:
        items = st.deserialize(data)
    except Exception as err:  # SafetensorError, or a header the library rejects
        raise bad_file_error(name, len(data), err, who) from err
    out = {}
    for key, info in items:
        code = info["dtype"]
        dt = bfloat16() if code == "BF16" else ST_DTYPES.get(code)
        if dt is None:
            raise InitError(f"{who}: {name!r}: tensor {key!r} has dtype {code}, which is not supported "
                            f"(supported: BF16, {', '.join(ST_DTYPES)}).")
        out[key] = np.frombuffer(info["data"], dtype=dt).reshape(info["shape"]).copy()
    metadata = _read_metadata(data)
    return out, metadata


def _read_metadata(data: bytes) -> dict:
    import json

    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__", {}) or {}


def write_safetensors(path, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None, who: str) -> None:
    st = _safetensors()
    for k, v in arrays.items():
        if not isinstance(v, np.ndarray) or (v.dtype.kind not in "fiubc" and v.dtype.name != "bfloat16"):
            what = type(v).__name__ if not isinstance(v, np.ndarray) else f"array of {v.dtype}"
            raise InitError(f"{who}: {k!r} is a {what}, not a numeric array; a checkpoint file holds tensors "
                            "(a state_dict or Flax variables). An optimizer state (state_dict() or export_state's "
                            "dict) is written whole by save_checkpoint; numbers, strings and the rest of a training "
                            "state by save_training_state (docs/training_state.md).")
    meta = None if metadata is None else {str(k): str(v) for k, v in metadata.items()}
    st.numpy.save_file({k: np.array(v, order="C", copy=True) for k, v in arrays.items()}, os.fspath(path), metadata=meta)


def flatten_for_file(state: Mapping, who: str) -> dict[str, Any]:
    """A flat torch state dict stays as is; a nested Flax dict becomes ``'params/Dense_0/kernel'`` keys."""
    if not isinstance(state, Mapping):
        raise InitError(f"{who}: `state` must be a dict (a torch state_dict or Flax variables), "
                        f"got {type(state).__name__}.")
    flat: dict[str, Any] = {}

    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}/{k}" if prefix else str(k)
            if isinstance(v, Mapping):
                walk(v, key)
            else:
                flat[key] = v

    walk(state, "")
    return flat


def nest_if_flax(flat: dict) -> dict:
    """Keys with '/' are Flax paths: they come back as nested dicts."""
    if not flat or not all("/" in k for k in flat):
        return flat
    tree: dict = {}
    for k, v in flat.items():
        parts = k.split("/")
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return tree


def torch_load(torch, path, who: str):
    """``torch.load(path)`` of a tensors-only file on CPU (``weights_only=True``: arbitrary pickles are
    never loaded); any failure but a missing file becomes :func:`torch_load_error`'s InitError."""
    try:
        return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise torch_load_error(path, err, who) from err


def torch_load_error(path, err: Exception, who: str) -> InitError:
    return InitError(f"{who}: {os.fspath(path)!r} cannot be read by torch.load(weights_only=True): "
                     f"{type(err).__name__}: {err}. It is malformed, truncated, or holds objects other than "
                     "tensors (arbitrary pickles are never loaded); re-save it as a dict of tensors, "
                     "preferably with safetensors.")
