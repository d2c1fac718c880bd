"""Checkpoints at scale, framework-free: Hugging Face sharded safetensors, one tensor at a time.

Three parts, shared by ``jaxinit`` (Orbax) and ``torchinit`` (torch DCP):

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
- :func:`plan_views`: how each converted tensor is obtained from a source tensor. The
  existing converters (:mod:`_jaxinit.layer_kinds`) run once on *probes*: read-only,
  never-touched anonymous memory maps with each source tensor's shape and dtype, so the run
  costs no memory. An output that comes back as a numpy VIEW of one probe (Linear's
  ``weight.T``, a conv's transpose, a ConvTranspose's flip, a gate's row block) is an axis
  permutation / flip / sub-block of that source: :class:`View` records it, and any slice of
  the output is then read as the matching slice of the source. Outputs that are computed
  (LSTM/GRU biases merged, attention reshapes, casts) are rebuilt from the real tensors of
  their one layer (``Plan.rebuild``). Kinds whose converters look at VALUES (LSTM/GRU:
  a zero ``bias_hh`` is dropped, a nonzero one summed) are never planned from probes.
"""
from __future__ import annotations

import json
import math
import mmap
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Callable, NamedTuple

import numpy as np

from _jaxinit import convert as _core
from _jaxinit.arrays import bfloat16
from _jaxinit.checkpoint import _ST_DTYPES
from _jaxinit.errors import InitError
from _jaxinit.layer_kinds import REGISTRY, Options
from _jaxinit.naming import flax_index, refine_kind, resolve_paths

INDEX_NAME = "model.safetensors.index.json"
PIECE_BYTES = 16 * 2**20  # a sliced read touches at most this many bytes of whole source rows at once
SINGLE_NAME = "model.safetensors"
# Kinds whose converters use only shapes (never values): their outputs may be planned from probes.
VALUE_FREE_KINDS = frozenset({"dense", "conv", "conv_transpose", "embed", "layernorm", "groupnorm", "batchnorm",
                              "mha"})


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
    return np.dtype(bfloat16()) if code == "BF16" else np.dtype(_ST_DTYPES[code])


def st_code(dtype) -> str:
    dt = np.dtype(dtype)
    if dt == np.dtype(bfloat16()):
        return "BF16"
    for code, t in _ST_DTYPES.items():
        if np.dtype(t) == dt:
            return code
    raise InitError(f"safetensors cannot store dtype {dt} (supported: BF16, {', '.join(_ST_DTYPES)}).")


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
        if code != "BF16" and code not in _ST_DTYPES:
            raise CheckpointFileError(f"{who}: {name!r}: tensor {k!r} has dtype {code!r}, which is not supported "
                                      f"(supported: BF16, {', '.join(_ST_DTYPES)}).")
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
        self.dst = os.fspath(dst)
        self.single = self.dst.endswith(".safetensors")
        if os.path.exists(self.dst):
            raise FileExistsError(f"{who}: {self.dst!r} exists; remove it or choose another destination "
                                  "(a conversion never overwrites).")
        parent = os.path.dirname(os.path.abspath(self.dst))
        os.makedirs(parent, exist_ok=True)
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


# --------------------------------------------------------------------------- probes and views
class View(NamedTuple):
    """Output = a permuted / flipped sub-block of source tensor ``key``. ``axes[k]``: the
    source axis of output axis k (None for a size-1 output axis), ``flips[k]``: reversed;
    ``start``: the source index of output element 0."""

    key: str
    axes: tuple
    flips: tuple
    start: tuple

    def source_index(self, out_index: tuple, out_shape: tuple, src_shape: tuple) -> tuple:
        """The source slices (one per source axis) holding ``out[out_index]``."""
        idx = [slice(s, s + 1) for s in self.start]
        for k, sl in enumerate(out_index):
            j = self.axes[k]
            if j is None:
                continue
            lo, hi, _ = sl.indices(out_shape[k])
            s = self.start[j]
            idx[j] = slice(s - hi + 1, s - lo + 1) if self.flips[k] else slice(s + lo, s + hi)
        return tuple(idx)

    def arrange(self, block: np.ndarray, out_block_shape: tuple) -> np.ndarray:
        """A source block (source axis order) -> the output block (contiguous)."""
        mapped = [j for j in self.axes if j is not None]
        rest = [j for j in range(block.ndim) if j not in mapped]
        out = np.transpose(block, mapped + rest).reshape(out_block_shape)
        flips = tuple(k for k, f in enumerate(self.flips) if f)
        return np.asarray(np.flip(out, axis=flips) if flips else out, order="C")

    def identity(self, src_shape: tuple) -> bool:
        return (all(not f for f in self.flips) and all(s == 0 for s in self.start)
                and [j for j in self.axes if j is not None] == [j for j, n in enumerate(src_shape) if n > 1])

    def read(self, source, out_index: tuple, out_shape: tuple, src_shape: tuple, dtype=None,
             piece_bytes: int = PIECE_BYTES) -> np.ndarray:
        """``out[out_index]`` read from ``source`` (``source.read(key, index)``) as a contiguous array.

        The source block is read in pieces along its outermost non-trivial axis, each piece
        spanning at most ``piece_bytes`` of whole source rows (what a memory-mapped read touches),
        and each piece is placed straight into the output block: memory is the output block
        plus one piece, whatever the transpose."""
        src_index = self.source_index(out_index, out_shape, src_shape)
        shape = tuple(len(range(*sl.indices(n))) for sl, n in zip(out_index, out_shape))
        extents = [sl.stop - sl.start for sl in src_index]
        js = next((j for j, e in enumerate(extents) if e > 1), None)
        item = np.dtype(dtype).itemsize if dtype is not None else 1
        row = item * int(math.prod(src_shape[js + 1:])) if js is not None else 0
        if js is None or dtype is None or extents[js] * row <= piece_bytes:
            return self.arrange(source.read(self.key, src_index), shape)
        k = self.axes.index(js)
        flipped = self.flips[k]
        out = np.empty(shape, np.dtype(dtype))
        S, E = src_index[js].start, src_index[js].stop
        step = max(1, piece_bytes // max(row, 1))
        for a in range(S, E, step):
            b = min(a + step, E)
            piece = list(src_index)
            piece[js] = slice(a, b)
            lo, hi = (E - b, E - a) if flipped else (a - S, b - S)
            sub = [slice(None)] * len(shape)
            sub[k] = slice(lo, hi)
            pshape = list(shape)
            pshape[k] = hi - lo
            out[tuple(sub)] = self._placed(source.read(self.key, tuple(piece)), tuple(pshape))
        return out

    def region(self, out_shape: tuple, src_shape: tuple) -> tuple:
        """The source slices the whole output covers."""
        return self.source_index(tuple(slice(None) for _ in out_shape), out_shape, src_shape)

    def out_index(self, src_block: tuple, out_shape: tuple) -> tuple:
        """The output slices that a source block (inside :meth:`region`) lands on."""
        out = []
        for k, n in enumerate(out_shape):
            j = self.axes[k]
            if j is None:
                out.append(slice(0, n))
                continue
            a, b, s = src_block[j].start, src_block[j].stop, self.start[j]
            out.append(slice(s - b + 1, s - a + 1) if self.flips[k] else slice(a - s, b - s))
        return tuple(out)

    def _placed(self, block: np.ndarray, out_block_shape: tuple) -> np.ndarray:
        """:meth:`arrange` without the final copy (a view, for assignment)."""
        mapped = [j for j in self.axes if j is not None]
        rest = [j for j in range(block.ndim) if j not in mapped]
        out = np.transpose(block, mapped + rest).reshape(out_block_shape)
        flips = tuple(k for k, f in enumerate(self.flips) if f)
        return np.flip(out, axis=flips) if flips else out


def probe(shape: tuple, dtype) -> np.ndarray:
    """A read-only array of ``shape``/``dtype`` on an anonymous private memory map that is never
    written: it costs address space, not memory (reads see the kernel's zero page)."""
    dt = np.dtype(dtype)
    n = int(math.prod(shape)) * dt.itemsize
    if n == 0:
        return np.zeros(shape, dt)
    buf = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ)
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def _root(a: np.ndarray):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a.base


def as_view(out: np.ndarray, probes: Mapping[str, np.ndarray], roots: Mapping[int, str]) -> View | None:
    """The :class:`View` that ``out`` is of one probe, or None (a computed array)."""
    if not isinstance(out, np.ndarray) or out.size == 0:
        return None
    key = roots.get(id(_root(out)))
    if key is None:
        return None
    src = probes[key]
    if src.dtype != out.dtype:
        return None
    item = src.dtype.itemsize
    off = out.__array_interface__["data"][0] - src.__array_interface__["data"][0]
    if off % item:
        return None
    cstrides = [item * int(math.prod(src.shape[j + 1:])) for j in range(src.ndim)]
    start = [int(s) for s in np.unravel_index(off // item, src.shape)] if src.ndim else []
    axes: list = []
    flips: list = []
    used: set[int] = set()
    for n, st in zip(out.shape, out.strides):
        if n == 1:
            axes.append(None)
            flips.append(False)
            continue
        js = [j for j in range(src.ndim) if src.shape[j] > 1 and cstrides[j] == abs(st) and j not in used]
        if len(js) != 1:
            return None
        j = js[0]
        lo, hi = (start[j], start[j] + n - 1) if st > 0 else (start[j] - n + 1, start[j])
        if lo < 0 or hi >= src.shape[j]:
            return None
        used.add(j)
        axes.append(j)
        flips.append(st < 0)
    return View(key, tuple(axes), tuple(flips), tuple(start))


# --------------------------------------------------------------------------- one layer at a time
class Plan(NamedTuple):
    """A checked conversion: ``outputs`` ``{out key: (shape, dtype)}`` in write order, with
    ``views`` (outputs read as source slices), ``groups`` (``[(layer, source keys, computed out
    keys)]``: layers whose computed outputs are rebuilt from their real tensors), ``rebuild``
    (``rebuild(layer, {source key: real array}) -> {out key: array}``) and ``summary``."""

    outputs: dict
    views: dict
    groups: list
    rebuild: Callable
    summary: dict


def _owner(path: tuple, by_path: Mapping[tuple, Any]):
    for n in range(len(path), -1, -1):
        if path[:n] in by_path:
            return by_path[path[:n]]
    return None


def plan_torch_to_flax(infos: Mapping[str, TensorInfo], *, template, mapping, kinds, batchnorm="torch",
                       merge_rnn_biases=False, transpose_kernel=False, who: str) -> Plan:
    """Plan torch (flat names) -> Flax (``(collection, path)`` keys). The whole conversion is first
    run and CHECKED on probes by :func:`_jaxinit.convert.torch_to_flax` (every naming, shape and
    dtype problem raised at once, before anything is written)."""
    probes = {k: probe(i.shape, i.dtype) for k, i in infos.items()}
    groups = _core.groups_from_torch_names({k: i.shape for k, i in infos.items()}, kinds)
    produced = _core.torch_to_flax(probes, groups, template=template, mapping=mapping, batchnorm=batchnorm,
                                   merge_rnn_biases=merge_rnn_biases, transpose_kernel=transpose_kernel,
                                   dtype=None, who=who)
    index = flax_index(template)
    paths = resolve_paths(groups, index, mapping, None)

    def one_group(g, arrays: Mapping[str, np.ndarray]) -> dict:
        fpath = paths[g.id]
        g = refine_kind(g, fpath, index)
        spec = REGISTRY[g.kind]
        t = {leaf: arrays[full] for leaf, full in g.keys.items() if leaf in spec.consumed() and full in arrays}
        opts = Options(batchnorm, merge_rnn_biases, transpose_kernel, None, fpath,
                       None if template is None or index is None else _core._template_probe(template, index, fpath))
        problems = _core.Problems(who)
        conv = spec.to_flax(g, t, problems, opts)
        problems.raise_if_any()
        return {(coll, fpath + rel): arr for (coll, rel), arr in conv.items()}

    owner = {paths[g.id]: g for g in groups if g.kind != "unknown"}
    return _finish(produced, probes, infos, groups, lambda key: _owner(key[1], owner), one_group,
                   lambda g: refine_kind(g, paths[g.id], index).kind)


def plan_flax_to_torch(infos: Mapping[Any, TensorInfo], *, template, mapping, kinds, batchnorm="torch",
                       transpose_kernel=False, who: str) -> Plan:
    """Plan Flax (``(collection, path)`` keys) -> torch (flat names); checked on probes by
    :func:`_jaxinit.convert.flax_to_torch`. ``template``: None (torch names from the Flax paths)
    or a torch ``{name: Spec}``."""
    probes = {k: probe(i.shape, i.dtype) for k, i in infos.items()}
    tspec, groups, containers, _, _ = _core.torch_target(template, probes, dict(kinds or {}), who)
    produced = _core.flax_to_torch(probes, groups, template=tspec, mapping=mapping, containers=containers,
                                   batchnorm=batchnorm, transpose_kernel=transpose_kernel, dtype=None, who=who)
    index = flax_index(probes)
    paths = resolve_paths(groups, index, mapping, containers)

    def one_group(g, arrays: Mapping) -> dict:
        fpath = paths[g.id]
        g = refine_kind(g, fpath, index)
        n = len(fpath)
        f = {(c, p[n:]): v for (c, p), v in arrays.items() if p[:n] == fpath and len(p) > n}
        opts = Options(batchnorm, False, transpose_kernel, set(g.keys) if tspec is not None else None, fpath)
        problems = _core.Problems(who)
        conv = REGISTRY[g.kind].to_torch(g, f, problems, opts)
        problems.raise_if_any()
        return {g.keys.get(leaf, _core._join(g.id, leaf)): arr for leaf, arr in conv.items()}

    by_torch = {}
    for g in groups:
        if g.kind != "unknown":
            for leaf in set(g.keys) | set(REGISTRY[g.kind].consumed()):
                by_torch[g.keys.get(leaf, _core._join(g.id, leaf))] = g
    sources: dict = {}
    for g in groups:
        if g.kind != "unknown":
            fpath = paths[g.id]
            sources[g.id] = [k for k in infos if k[1][:len(fpath)] == fpath and len(k[1]) > len(fpath)]
    return _finish(produced, probes, infos, groups, lambda key: by_torch.get(key), one_group,
                   lambda g: refine_kind(g, paths[g.id], index).kind, sources)


def _finish(produced, probes, infos, groups, group_of, one_group, kind_of, sources=None) -> Plan:
    roots = {id(_root(p)): k for k, p in probes.items() if p.size}
    views: dict = {}
    computed: dict = {}
    source_of = {}  # group id -> its source keys
    for g in groups:
        source_of[g.id] = sources[g.id] if sources is not None else [k for k in g.keys.values() if k in infos]
    for key, arr in produced.items():
        g = group_of(key)
        v = as_view(arr, probes, roots) if g is not None and kind_of(g) in VALUE_FREE_KINDS else None
        if v is not None and v.key in source_of.get(g.id, ()):
            views[key] = v
        else:
            if g is None:
                raise InitError(f"internal error: no layer produced {_display(key)}")
            computed.setdefault(g.id, (g, []))[1].append(key)
    outputs = {k: (tuple(np.shape(a)), np.dtype(a.dtype)) for k, a in produced.items()}
    dtypes = {k: d for k, (_, d) in outputs.items()}
    plan_groups = [(g, source_of[gid], keys) for gid, (g, keys) in computed.items()]

    def rebuild(g, arrays):
        keys = computed[g.id][1]
        out = one_group(g, arrays)
        return {k: np.asarray(out[k]).astype(dtypes[k], copy=False) for k in keys}

    summary: dict = {"transposed": [], "renamed": [], "kept": [], "rebuilt": [], "dropped": []}
    viewed: dict = {}
    for key, v in views.items():
        viewed.setdefault(v.key, []).append((key, v))
    rebuilt = {s for _, srcs, _ in plan_groups for s in srcs}
    for src in infos:
        name = _display(src)
        if src in viewed:
            for key, v in viewed[src]:
                if not v.identity(infos[src].shape) or tuple(outputs[key][0]) != tuple(infos[src].shape):
                    cat = "transposed"
                else:
                    cat = "kept" if _canonical(name) == _canonical(_display(key)) else "renamed"
                summary[cat].append((name, _display(key)))
        else:
            summary["rebuilt" if src in rebuilt else "dropped"].append((name, ""))
    return Plan(outputs, views, plan_groups, rebuild, summary)


def _display(key) -> str:
    return _core._fname(key) if isinstance(key, tuple) else str(key)


def _canonical(name: str) -> str:
    """``params/fc/bias`` and ``fc.bias`` alike: the collection dropped, ``.``-joined."""
    return name.split("/", 1)[1].replace("/", ".") if "/" in name else name


def summary_lines(summary: Mapping[str, list]) -> list[str]:
    """``renamed 3, transposed 2, kept 1, rebuilt 0, dropped 1`` and the dropped names."""
    line = ", ".join(f"{k} {len(v)}" for k, v in summary.items())
    out = [line]
    if summary.get("dropped"):
        out.append("dropped: " + ", ".join(n for n, _ in summary["dropped"][:20]))
    return out


def remove_quietly(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


class FlaxNamedReader:
    """A safetensors reader whose keys are Flax paths (``params/fc/kernel``, as
    ``save_checkpoint`` writes Flax variables), keyed ``(collection, path)``."""

    def __init__(self, reader: SafetensorsReader, who: str):
        bad = [k for k in reader.infos if "/" not in k]
        if bad:
            raise CheckpointFileError(f"{who}: {reader.path!r} is not a Flax checkpoint: {bad[:3]} are not Flax paths "
                                      "('params/layer/kernel'); for a torch checkpoint pass to='flax'.")
        self.reader = reader
        self.path = reader.path
        self.infos = {}
        self._names = {}
        for k, info in reader.infos.items():
            coll, *path = k.split("/")
            self.infos[(coll, tuple(path))] = info
            self._names[(coll, tuple(path))] = k

    def read(self, key, index: tuple | None = None) -> np.ndarray:
        return self.reader.read(self._names[key], index)


def source_blocks(region: tuple, src_shape: tuple, chunks: tuple | None, blocks: int = 8) -> list[tuple]:
    """Blocks of a source ``region`` along one axis: the axis the storage is chunked along
    (``chunks``: the chunk shape, e.g. an Orbax leaf's), each block whole chunks; else the
    outermost axis (whole rows of a safetensors tensor), in about ``blocks`` pieces."""
    extents = [sl.stop - sl.start for sl in region]
    axis = None
    if chunks is not None:
        axis = next((j for j, (c, n) in enumerate(zip(chunks, src_shape)) if c < n and extents[j] > 1), None)
    if axis is None:
        axis = next((j for j, e in enumerate(extents) if e > 1), None)
    if axis is None:
        return [region]
    step = -(-extents[axis] // blocks)
    if chunks is not None and chunks[axis] < src_shape[axis]:
        step = max(chunks[axis], step - step % chunks[axis])
    lo, hi = region[axis].start, region[axis].stop
    out = []
    first = lo
    while first < hi:  # block edges on multiples of `step` (chunk edges) in source coordinates
        last = min(hi, (first // step + 1) * step)
        block = list(region)
        block[axis] = slice(first, last)
        out.append(tuple(block))
        first = last
    return out


def write_view_blocks(writer, out_name: str, view: View, reader, shape: tuple, src_shape: tuple) -> None:
    """Write one viewed output block by block, each block a run of whole storage chunks (or rows)
    of the source, read once, arranged and written where it lands in the output."""
    if not shape or not hasattr(writer, "write_block"):
        writer.write(out_name, view.read(reader, tuple(slice(None) for _ in shape), shape, src_shape,
                                         reader.infos[view.key].dtype))
        return
    chunks = reader.chunks(view.key) if hasattr(reader, "chunks") else None
    for block in source_blocks(view.region(shape, src_shape), src_shape, chunks):
        index = view.out_index(block, shape)
        data = view.arrange(reader.read(view.key, block), tuple(sl.stop - sl.start for sl in index))
        writer.write_block(out_name, data, index)
        del data


def write_plan(reader, plan: Plan, writer, name_of: Callable = str, bar=None) -> dict:
    """Write every output of ``plan`` (read from ``reader``) with ``writer`` (``write(name, block,
    row0)``, ``commit()``, ``abort()``), one tensor at a time; abort on any failure."""
    try:
        for key, view in plan.views.items():
            shape, _ = plan.outputs[key]
            write_view_blocks(writer, name_of(key), view, reader, shape, reader.infos[view.key].shape)
            if bar is not None:
                bar.update(1)
        for g, sources, _ in plan.groups:
            arrays = {k: reader.read(k) for k in sources}
            for key, arr in plan.rebuild(g, arrays).items():
                writer.write(name_of(key), arr)
                if bar is not None:
                    bar.update(1)
            del arrays
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    return plan.summary


def write_flax_safetensors(reader, plan: Plan, dst, who: str, bar=None) -> dict:
    """A Flax-named ``.safetensors`` (``params/fc/kernel``) from a torch reader and its plan."""
    writer = SafetensorsWriter(dst, [(_core._fname(k), s, d) for k, (s, d) in plan.outputs.items()], who=who)
    return write_plan(reader, plan, writer, _core._fname, bar)


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


def check_common(to, format, sharding, dst, who: str) -> None:
    """The argument checks both packages' ``convert_checkpoint`` share."""
    if to not in ("flax", "torch"):
        raise InitError(f"{who}: `to` must be 'flax' (torch checkpoint -> Flax) or 'torch' (Flax checkpoint -> "
                        f"torch), got {to!r}.")
    if format not in (None, "safetensors", "dcp"):
        raise InitError(f"{who}: `format` (of a torch output) must be None (from dst: a .safetensors file, else a "
                        f"Hugging Face sharded directory), 'safetensors' or 'dcp', got {format!r}.")
    if format is not None and to != "torch":
        raise InitError(f"{who}: `format` chooses the torch output's format; with to='flax' leave it None.")
    if sharding is not None and who.startswith("torchinit"):
        raise InitError(f"{who}: `sharding` is a JAX sharding; torchinit writes files without one (pass None, or "
                        "use jaxinit.convert_checkpoint).")
    if os.path.exists(os.fspath(dst)):
        raise FileExistsError(f"{who}: {os.fspath(dst)!r} exists; remove it or choose another destination "
                              "(a conversion never overwrites).")
