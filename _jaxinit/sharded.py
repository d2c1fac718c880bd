"""Converting checkpoints at scale, framework-free: which source tensor each converted tensor
comes from, and writing the converted checkpoint one tensor (or one block) at a time.

Shared by ``jaxinit`` (Orbax) and ``torchinit`` (torch DCP); the files themselves are read and
written by :mod:`_jaxinit.safetensors_files` (:class:`SafetensorsReader`,
:class:`SafetensorsWriter`, re-exported here).

:func:`plan_torch_to_flax` / :func:`plan_flax_to_torch`: how each converted tensor is obtained
from a source tensor. The
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

import math
import mmap
import os
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import numpy as np

from _jaxinit import convert as _core
from _jaxinit.errors import InitError
from _jaxinit.layer_kinds import REGISTRY, Options
from _jaxinit.arrays import fname
from _jaxinit.naming import flax_index, join, refine_kind, resolve_paths
from _jaxinit.safetensors_files import INDEX_NAME as INDEX_NAME
from _jaxinit.safetensors_files import SINGLE_NAME as SINGLE_NAME
from _jaxinit.safetensors_files import CheckpointFileError as CheckpointFileError
from _jaxinit.safetensors_files import SafetensorsReader as SafetensorsReader
from _jaxinit.safetensors_files import SafetensorsWriter as SafetensorsWriter
from _jaxinit.safetensors_files import TensorInfo as TensorInfo
from _jaxinit.safetensors_files import new_destination as new_destination
from _jaxinit.safetensors_files import parse_size as parse_size
from _jaxinit.safetensors_files import remove_quietly as remove_quietly

PIECE_BYTES = 16 * 2**20  # a sliced read touches at most this many bytes of whole source rows at once
# Kinds whose converters use only shapes (never values): their outputs may be planned from probes.
VALUE_FREE_KINDS = frozenset({"dense", "conv", "conv_transpose", "embed", "layernorm", "groupnorm", "batchnorm",
                              "mha"})


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
        return np.asarray(self._placed(block, out_block_shape), order="C")

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
        first, stop = src_index[js].start, src_index[js].stop
        step = max(1, piece_bytes // max(row, 1))
        for a in range(first, stop, step):
            b = min(a + step, stop)
            piece = list(src_index)
            piece[js] = slice(a, b)
            lo, hi = (stop - b, stop - a) if flipped else (a - first, b - first)
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
        """A source block (source axis order) -> the output block as a view (transposed,
        reshaped, flipped; no copy: assigned into a larger block, or copied by :meth:`arrange`)."""
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
                       None if template is None or index is None else _core.template_probe(template, index, fpath))
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
    or a torch ``{name: ShapeDtype}``."""
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
        return {g.keys.get(leaf, join(g.id, leaf)): arr for leaf, arr in conv.items()}

    by_torch = {}
    for g in groups:
        if g.kind != "unknown":
            for leaf in set(g.keys) | set(REGISTRY[g.kind].consumed()):
                by_torch[g.keys.get(leaf, join(g.id, leaf))] = g
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
    return fname(key) if isinstance(key, tuple) else str(key)


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


def progress_bar(total: int, enabled: bool):
    """A tqdm bar over ``total`` tensors when ``enabled`` and tqdm is installed, else None (no bar)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="tensors", unit="tensor")


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
    writer = SafetensorsWriter(dst, [(fname(k), s, d) for k, (s, d) in plan.outputs.items()], who=who)
    return write_plan(reader, plan, writer, fname, bar)



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


def read_dcp_metadata(path: str, who: str) -> Any:
    """The ``.metadata`` of a torch.distributed.checkpoint directory (torch's ``FileSystemReader``;
    torch is imported here, on use), or a :class:`CheckpointFileError` naming an incomplete or damaged one."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        return FileSystemReader(path).read_metadata()
    except Exception as err:
        raise CheckpointFileError(f"{who}: {path!r}: torch.distributed.checkpoint cannot read its .metadata "
                                  f"({type(err).__name__}: {err}); the checkpoint is incomplete or damaged.") from err

