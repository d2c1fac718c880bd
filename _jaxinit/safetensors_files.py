"""Safetensors files, framework-free: one file or a Hugging Face sharded checkpoint, read and
written one tensor (or one block of rows) at a time.

- :class:`SafetensorsReader`: a ``.safetensors`` file or a Hugging Face sharded checkpoint
  (``model.safetensors.index.json`` with ``metadata.total_size`` and ``weight_map``, as
  ``transformers``' ``save_pretrained(max_shard_size=...)`` writes it). Shapes and dtypes come
  from the headers; data is read one tensor or one SLICE at a time with safetensors'
  ``safe_open(...).get_slice(key)[index]`` (a memory map: only the slice's pages are read).
- :class:`SafetensorsWriter`: the same layouts written one tensor (or one block of rows) at a
  time. safetensors' own ``save_file`` takes the whole dict and copies every tensor to
  ``bytes`` first (safetensors/numpy.py ``save_file`` -> ``_flatten`` -> ``_tobytes``), twice the
  model in memory, so the header (fixed once every shape and dtype is known) and the data are
  written here with positioned writes in the format of the safetensors spec (safetensors
  README, "Format": 8-byte little-endian header size, JSON header with ``dtype``, ``shape``,
  ``data_offsets``, then the bytes). Every file written is opened again with ``safe_open``
  before it is committed. Output goes to a temporary sibling that is renamed into place at
  the end: a failed conversion leaves nothing at the destination.

How a converted checkpoint is planned from these files: :mod:`_jaxinit.sharded`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from _jaxinit.arrays import bfloat16
from _jaxinit.checkpoint import ST_DTYPES
from _jaxinit.errors import InitError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


class CheckpointFileError(InitError):
    """A checkpoint file or directory that cannot be read as what it claims to be: truncated or
    malformed file, wrong index, missing shard, dtype mismatch. Names the file and the fix."""


def _st():
    try:
        import safetensors
    except ImportError as err:
        raise InitError("safetensors is not installed: pip install safetensors "
                        "(or jaxinit[jax] / jaxinit[torch])") from err
    bfloat16()  # registers ml_dtypes' bfloat16 with numpy: safe_open(framework='np') then reads BF16
    return safetensors


def st_dtype(code: str) -> np.dtype:
    return np.dtype(bfloat16()) if code == "BF16" else np.dtype(ST_DTYPES[code])


def st_code(dtype) -> str:
    dt = np.dtype(dtype)
    if dt == np.dtype(bfloat16()):
        return "BF16"
    for code, t in ST_DTYPES.items():
        if np.dtype(t) == dt:
            return code
    raise InitError(f"safetensors cannot store dtype {dt} (supported: BF16, {', '.join(ST_DTYPES)}).")


class TensorInfo(NamedTuple):
    shape: tuple
    dtype: np.dtype
    file: str

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * self.dtype.itemsize


# --------------------------------------------------------------------------- reading
def _header(name: str, who: str) -> tuple[dict, int]:
    """The JSON header of a safetensors file and where its data starts, checked against the
    file size (a truncated file is named as such)."""
    size = os.path.getsize(name)
    with open(name, "rb") as fh:
        raw = fh.read(8)
        n = int.from_bytes(raw, "little") if len(raw) == 8 else -1
        if n <= 0 or n > size - 8:
            raise CheckpointFileError(f"{who}: {name!r} is truncated or not a safetensors file ({size} bytes; "
                                      f"header size field {n}). Re-download or re-save it.")
        try:
            header = json.loads(fh.read(n))
        except ValueError as err:
            raise CheckpointFileError(f"{who}: {name!r}: the safetensors header is not JSON ({err}); the file is "
                                      "malformed. Re-save it.") from err
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointFileError(f"{who}: {name!r} is truncated: its header describes {8 + n + end} bytes, the "
                                  f"file has {size}. Re-download or re-save it.")
    for k, v in header.items():
        if k == "__metadata__":
            continue
        code = v.get("dtype")
        if code != "BF16" and code not in ST_DTYPES:
            raise CheckpointFileError(f"{who}: {name!r}: tensor {k!r} has dtype {code!r}, which is not supported "
                                      f"(supported: BF16, {', '.join(ST_DTYPES)}).")
        b, e = (int(x) for x in v["data_offsets"])
        want = int(math.prod(v["shape"])) * st_dtype(code).itemsize
        if e - b != want:
            raise CheckpointFileError(
                f"{who}: {name!r}: dtype mismatch for tensor {k!r}: the header says {code} {tuple(v['shape'])} "
                f"({want} bytes) but stores {e - b} bytes. The file is malformed; re-save it.")
    return header, 8 + n


class SafetensorsReader:
    """A ``.safetensors`` file, or a directory / ``*.index.json`` of a Hugging Face sharded
    checkpoint. ``infos``: ``{key: TensorInfo}`` from the headers (nothing else is read);
    :meth:`read` reads one tensor or one slice of it. Every inconsistency raises
    :class:`CheckpointFileError` naming it: truncated file, ``wrong index`` (a key listed in a
    shard that does not hold it, a tensor no index entry lists, ``total_size`` that is not the
    sum of the tensors), ``missing shard``, dtype mismatch between a header and its bytes."""

    def __init__(self, path, who: str, stem: str = "model"):
        self.who = who
        name = os.fspath(path)
        if os.path.isdir(name):
            index_name, single_name = f"{stem}.safetensors.index.json", f"{stem}.safetensors"
            index = os.path.join(name, index_name)
            single = os.path.join(name, single_name)
            if os.path.exists(index):
                name = index
            elif os.path.exists(single):
                name = single
            else:
                raise CheckpointFileError(f"{who}: {name!r} holds neither {index_name} nor {single_name}; pass the "
                                          "checkpoint file, or the directory save_pretrained wrote.")
        if not os.path.exists(name):
            raise FileNotFoundError(f"{who}: no such file: {name!r}")
        self.path = name
        self.metadata: dict = {}
        self.infos: dict[str, TensorInfo] = {}
        if name.endswith(".json"):
            self._read_index(name)
        else:
            self._add_file(name)

    def _add_file(self, name: str, expected: Iterable[str] | None = None) -> None:
        header, _ = _header(name, self.who)
        self.metadata.update(header.pop("__metadata__", None) or {})
        for k, v in header.items():
            self.infos[k] = TensorInfo(tuple(int(s) for s in v["shape"]), st_dtype(v["dtype"]), name)

    def _read_index(self, name: str) -> None:
        who = self.who
        try:
            with open(name) as fh:
                index = json.load(fh)
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointFileError(f"{who}: wrong index {name!r}: not a Hugging Face index ({type(err).__name__}: "
                                      f"{err}); it needs {{'metadata': {{'total_size': ...}}, 'weight_map': "
                                      "{tensor: file}}.") from err
        folder = os.path.dirname(name)
        files: dict[str, list[str]] = {}
        for key, fname in weight_map.items():
            files.setdefault(str(fname), []).append(str(key))
        missing = [f for f in files if not os.path.exists(os.path.join(folder, f))]
        if missing:
            raise CheckpointFileError(f"{who}: missing shard(s) of {name!r}: {', '.join(missing)} (listed in "
                                      "weight_map, absent from the directory). Download every shard.")
        for fname, keys in files.items():
            full = os.path.join(folder, fname)
            before = set(self.infos)
            self._add_file(full)
            held = set(self.infos) - before
            absent = sorted(set(keys) - held)
            extra = sorted(held - set(keys))
            if absent or extra:
                what = (f"lists {absent[:4]} in {fname!r}, which does not hold them" if absent else
                        f"does not list {extra[:4]}, which {fname!r} holds")
                raise CheckpointFileError(f"{who}: wrong index {name!r}: it {what}. Regenerate the index (or "
                                          "re-save the checkpoint).")
        total = (index.get("metadata") or {}).get("total_size")
        actual = sum(i.nbytes for i in self.infos.values())
        if total is not None and int(total) != actual:
            raise CheckpointFileError(f"{who}: wrong index {name!r}: metadata.total_size is {total} but the shards "
                                      f"hold {actual} bytes of tensors. Regenerate the index.")

    def read(self, key: str, index: tuple | None = None) -> np.ndarray:
        """The tensor ``key`` (``index``: a tuple of slices, one per axis: only that block is read).
        The file is opened for this read only, so its mapped pages are released after it."""
        info = self.infos[key]
        st = _st()
        with st.safe_open(info.file, framework="np") as f:
            if index is None or not info.shape:
                arr = f.get_tensor(key)
            else:
                arr = f.get_slice(key)[index]
        return np.asarray(arr).view(info.dtype) if np.asarray(arr).dtype != info.dtype else np.asarray(arr)


# --------------------------------------------------------------------------- writing
class SafetensorsWriter:
    """Writes ``entries`` (``[(key, shape, dtype)]``, in order) as one ``.safetensors`` file
    (``dst`` ends in ``.safetensors``) or a Hugging Face sharded directory (any other ``dst``:
    ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``
    when the tensors exceed ``max_shard_bytes``; a tensor larger than that gets a file of its
    own, as ``save_pretrained`` does). Data arrives by :meth:`write` (whole tensors or blocks of
    leading-axis rows) or :meth:`write_block` (any block), in any order (``stem``: the file names'
    stem, ``model`` as above, ``optimizer`` for an optimizer state); :meth:`commit` checks
    that every byte was written, re-opens every file with ``safe_open`` and renames the temporary
    output into place; :meth:`abort` removes it."""

    def __init__(self, dst, entries: list[tuple[str, tuple, Any]], *, max_shard_bytes: int = 5 * 2**30,
                 metadata: Mapping[str, str] | None = None, who: str = "convert_checkpoint", stem: str = "model"):
        self.who = who
        self.index_name = f"{stem}.safetensors.index.json"
        self.dst, parent = new_destination(dst, who)
        self.single = self.dst.endswith(".safetensors")
        self.tmp = os.path.join(parent, f"{os.path.basename(self.dst)}.tmp-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.tmp)
        shards: list[list[tuple[str, tuple, np.dtype]]] = [[]]
        size = 0
        for key, shape, dtype in entries:
            dt = np.dtype(dtype)
            n = int(math.prod(shape)) * dt.itemsize
            if not self.single and shards[-1] and size + n > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append((key, tuple(shape), dt))
            size += n
        count = len(shards)
        if self.single:
            names = [os.path.basename(self.dst)]
        elif count == 1:
            names = [f"{stem}.safetensors"]
        else:
            names = [f"{stem}-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        self.where: dict[str, tuple[str, int, int, int]] = {}  # key -> (file, data start, nbytes, row bytes)
        self.shapes = {key: tuple(shape) for key, shape, _ in entries}
        self.written: dict[str, int] = {}
        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        for fname, shard in zip(names, shards):
            header: dict[str, Any] = {"__metadata__": meta} if meta else {}
            off = 0
            for key, shape, dt in shard:
                n = int(math.prod(shape)) * dt.itemsize
                header[key] = {"dtype": st_code(dt), "shape": list(shape), "data_offsets": [off, off + n]}
                off += n
            text = json.dumps(header, separators=(",", ":")).encode()
            text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
            full = os.path.join(self.tmp, fname)
            with open(full, "wb") as fh:
                fh.write(len(text).to_bytes(8, "little"))
                fh.write(text)
                fh.truncate(8 + len(text) + off)
            for key, shape, dt in shard:
                b, e = header[key]["data_offsets"]
                row = (e - b) // shape[0] if shape and shape[0] else e - b
                self.where[key] = (full, 8 + len(text) + b, e - b, row)
                self.written[key] = 0
        self.files = names
        self.total = sum(w[2] for w in self.where.values())
        self._fds: dict[str, int] = {}

    def write(self, key: str, block: np.ndarray, row0: int = 0) -> None:
        """Write ``block``: the whole tensor ``key``, or its rows ``row0 : row0 + len(block)``."""
        full, start, nbytes, row = self.where[key]
        data = np.asarray(block, order="C")
        fd = self._fds.get(full)
        if fd is None:
            fd = self._fds[full] = os.open(full, os.O_WRONLY)
        view = memoryview(data.reshape(-1).view(np.uint8).data) if data.size else memoryview(b"")
        pos = start + row0 * row
        if pos + len(view) > start + nbytes:
            raise InitError(f"{self.who}: internal error: block of {key!r} past its end")
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], pos + done)
        self.written[key] += len(view)

    def write_block(self, key: str, block: np.ndarray, index: tuple) -> None:
        """Write ``block`` at ``tensor[index]`` (``index``: one slice per axis): one positioned write
        per contiguous run of the C-order tensor."""
        full, start, nbytes, _ = self.where[key]
        shape = self.shapes[key]
        data = np.asarray(block, order="C")
        bounds = [sl.indices(n)[:2] for sl, n in zip(index, shape)]
        # the runs: axes from `k` on are contiguous in the file (axis k partial, the later ones whole)
        k = len(shape) - 1
        while k > 0 and bounds[k] == (0, shape[k]):
            k -= 1
        if not shape:
            return self.write(key, data)
        item = data.dtype.itemsize
        strides = [item * int(math.prod(shape[j + 1:])) for j in range(len(shape))]
        run = (bounds[k][1] - bounds[k][0]) * strides[k]
        fd = self._fds.get(full)
        if fd is None:
            fd = self._fds[full] = os.open(full, os.O_WRONLY)
        flat = data.reshape(-1).view(np.uint8)
        outer = [range(lo, hi) for lo, hi in bounds[:k]]
        pos0 = start + bounds[k][0] * strides[k]
        for n, idx in enumerate(np.ndindex(*[len(r) for r in outer]) if outer else [()]):
            pos = pos0 + sum((outer[j][i]) * strides[j] for j, i in enumerate(idx))
            buf = memoryview(flat[n * run:(n + 1) * run].data)
            done = 0
            while done < run:
                done += os.pwrite(fd, buf[done:], pos + done)
        self.written[key] += data.nbytes

    def commit(self) -> list[str]:
        for fd in self._fds.values():
            os.fsync(fd)
            os.close(fd)
        self._fds = {}
        short = [k for k, (_, _, n, _) in self.where.items() if self.written[k] != n]
        if short:
            raise InitError(f"{self.who}: internal error: {short[:4]} not completely written")
        st = _st()
        for name in self.files:
            with st.safe_open(os.path.join(self.tmp, name), framework="np") as f:  # the library's own check
                list(f.keys())
        if not self.single and len(self.files) > 1:
            index = {"metadata": {"total_size": self.total},
                     "weight_map": {k: os.path.basename(w[0]) for k, w in self.where.items()}}
            with open(os.path.join(self.tmp, self.index_name), "w") as fh:
                json.dump(index, fh, indent=2, sort_keys=True)
        if self.single:
            os.replace(os.path.join(self.tmp, self.files[0]), self.dst)
            shutil.rmtree(self.tmp)
        else:
            os.replace(self.tmp, self.dst)
        return self.files

    def abort(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}
        shutil.rmtree(self.tmp, ignore_errors=True)


def new_destination(dst, who: str) -> tuple[str, str]:
    """``(dst, its parent folder)`` for a conversion's output: ``dst`` must not exist (a conversion
    never overwrites); the parent folder is created."""
    path = os.fspath(dst)
    if os.path.exists(path):
        raise FileExistsError(f"{who}: {path!r} exists; remove it or choose another destination "
                              "(a conversion never overwrites).")
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return path, parent


def remove_quietly(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


def parse_size(max_shard_size, who: str) -> int:
    """Bytes from an int or a size string like ``'5GB'`` / ``'500MB'`` / ``'2GiB'`` (as ``save_pretrained``)."""
    if isinstance(max_shard_size, int) and not isinstance(max_shard_size, bool) and max_shard_size > 0:
        return max_shard_size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    text = str(max_shard_size).strip().upper()
    if text.isdigit() and int(text) > 0:  # a number of bytes, as the command line passes it
        return int(text)
    for u, f in sorted(units.items(), key=lambda x: -len(x[0])):
        if text.endswith(u):
            try:
                value = int(float(text[: -len(u)]) * f)
            except ValueError:
                break
            if value > 0:
                return value
    raise InitError(f"{who}: `max_shard_size` must be a positive number of bytes or a size like '5GB' / '500MB', "
                    f"got {max_shard_size!r}.")

