"""Optimizer state on disk at scale, framework-free: read one tensor (or one slice) at a time.

A torch optimizer's state (``optimizer.state_dict()`` layout, docs/training_state.md) is opened
here without reading its tensors: :func:`open_optimizer_state` returns the state dict with a
:class:`LazyArray` in place of each tensor (its shape and dtype from the file's header or
metadata; ``read(index)`` reads that block only). Two sources:

* safetensors: jaxinit's optimizer file (``state/state/<i>/<field>`` arrays, the rest as JSON in
  the header's ``__metadata__["jaxinit"]``, docs/training_state.md) as one file, or as a Hugging
  Face-style sharded directory (``optimizer.safetensors.index.json`` + ``optimizer-0000i-of-0000n.safetensors``,
  every shard's header carrying the same JSON); read with ``safe_open(...).get_slice``;
* ``torch.distributed.checkpoint`` (DCP) directories: torch's ``optimizer.state_dict()`` saved
  under a key (``dcp.save({"optimizer": opt.state_dict(), ...})``, integer parameter ids) or
  the FQN-keyed form of ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict``
  (``state`` keyed by parameter names, ``param_groups[g]["params"]`` names). The nesting comes
  from DCP's own ``Metadata.planner_data`` (each flattened key's path), tensors are read with
  ``dcp.load`` one key at a time, and the non-tensor entries (hyperparameters, a scheduler's
  state, counters) with ``torch.load(weights_only=True)`` (DCP's ``DefaultLoadPlanner.load_bytes``
  unpickles with ``weights_only=False``; here arbitrary pickles are never loaded).

:func:`write_optimizer_safetensors` writes a state (tensors, arrays or :class:`LazyArray`) as
one file or a sharded directory, one tensor at a time (``_jaxinit.sharded.SafetensorsWriter``).
"""
from __future__ import annotations

import io
import json
import numbers
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from _jaxinit import sharded as _sh
from _jaxinit import training_state as _ts
from _jaxinit.errors import InitError

STEM = "optimizer"


class LazyArray:
    """One tensor of an optimizer state on disk: ``shape``, ``dtype``; :meth:`read` reads it (or
    the block ``index``, a tuple of slices); ``np.asarray(x)`` reads it whole."""

    __slots__ = ("shape", "dtype", "name", "_read")

    def __init__(self, shape: tuple, dtype, name: str, read: Callable[[tuple | None], np.ndarray]):
        self.shape, self.dtype, self.name, self._read = tuple(shape), np.dtype(dtype), name, read

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def read(self, index: tuple | None = None) -> np.ndarray:
        return np.asarray(self._read(index))

    def item(self):
        return self.read().item()

    def __array__(self, dtype=None, copy=None):
        a = self.read()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"LazyArray({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def is_dcp(path) -> bool:
    name = os.fspath(path)
    return os.path.isdir(name) and os.path.exists(os.path.join(name, ".metadata"))


# --------------------------------------------------------------------------- safetensors
def _safetensors_source(path, who: str) -> dict:
    reader = _sh.SafetensorsReader(path, who, stem=STEM)
    body = _ts.optimizer_file_body(reader.metadata)
    if body is None:
        raise InitError(f"{who}: {reader.path!r} is a safetensors checkpoint without jaxinit's optimizer-state "
                        "header; write it with save_optimizer_state or save_checkpoint(path, export_state(...)).")
    _ts.check_version(body, reader.path, who)

    def lazy(key: str) -> LazyArray:
        info = reader.infos[key]

        def read(index: tuple | None) -> np.ndarray:
            return reader.read(key, index)

        return LazyArray(info.shape, info.dtype, key, read)

    arrays = _KeyedLazy(reader.infos, lazy)
    body["state"] = _ts.decode(body["state"], arrays, who)
    return body


class _KeyedLazy(Mapping):
    def __init__(self, infos, make):
        self._infos, self._make = infos, make

    def __getitem__(self, key):
        if key not in self._infos:
            raise KeyError(key)
        return self._make(key)

    def __iter__(self):
        return iter(self._infos)

    def __len__(self):
        return len(self._infos)


def write_optimizer_safetensors(dst, state: Mapping, to_numpy, who: str, extra: Mapping | None = None,
                                max_shard_bytes: int = 5 * 2**30, blocks: Callable | None = None) -> list[str]:
    """``state`` (torch's ``state_dict()`` layout; tensors, arrays or :class:`LazyArray`) as
    jaxinit's optimizer file: one ``.safetensors`` (``dst`` ends in it) or a Hugging Face-style
    sharded directory (``optimizer.safetensors.index.json``), one tensor in memory at a time.
    ``blocks(value)``: ``[(index, block)]`` pieces of a value written where they land (a sharded
    ``jax.Array``'s shards: no host copy of the whole buffer), or None for the whole value."""
    refs: dict = {}
    body = {"format": _ts.OPTIMIZER_FORMAT, "version": _ts.VERSION, **(extra or {})}
    body["state"] = _ts.encode(state, refs, "state", who, lambda x: x, keep=True)
    entries = [(k, tuple(v.shape), _dtype_of(v, to_numpy)) for k, v in refs.items()]
    writer = _sh.SafetensorsWriter(dst, entries, max_shard_bytes=max_shard_bytes,
                                   metadata={"jaxinit": json.dumps(body)}, who=who, stem=STEM)
    try:
        for k, v in refs.items():
            parts = blocks(v) if blocks is not None and tuple(v.shape) else None
            if parts is None:
                writer.write(k, np.asarray(v.read() if isinstance(v, LazyArray) else to_numpy(v), order="C"))
                continue
            for index, block in parts:
                writer.write_block(k, np.asarray(block, order="C"), tuple(index))
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def _dtype_of(v, to_numpy) -> np.dtype:
    if isinstance(v, (LazyArray, np.ndarray)):
        return np.dtype(v.dtype)
    if hasattr(v, "dtype") and not hasattr(v, "__torch_function__"):
        return np.dtype(v.dtype)
    return to_numpy(v.new_empty(()) if hasattr(v, "new_empty") else v).dtype


# --------------------------------------------------------------------------- DCP
def _safe_load_planner(torch):
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    class _WeightsOnly(DefaultLoadPlanner):
        """DCP's planner, but non-tensor entries are read with ``torch.load(weights_only=True)``."""

        def load_bytes(self, read_item, value: io.BytesIO) -> None:
            self.original_state_dict[read_item.dest_index.fqn] = torch.load(value, weights_only=True)

    return _WeightsOnly(flatten_state_dict=False)


class DCPTree:
    """A DCP directory's entries as a nested tree (DCP's ``planner_data`` paths): tensors as
    :class:`LazyArray` (``dcp.load`` of that key when read), other entries loaded on demand with
    ``torch.load(weights_only=True)``."""

    def __init__(self, path, torch, who: str):
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.path, self.torch, self.who = os.fspath(path), torch, who
        md = _sh.read_dcp_metadata(self.path, who)
        planner = md.planner_data if isinstance(md.planner_data, Mapping) else {}
        self.paths: dict[str, tuple] = {}
        self.tensors: dict[str, Any] = {}
        self._last: tuple[str, np.ndarray] | None = None  # the one tensor kept while its slices are read
        for fqn, m in md.state_dict_metadata.items():
            self.paths[fqn] = tuple(planner.get(fqn, (fqn,)))
            if isinstance(m, TensorStorageMetadata):
                self.tensors[fqn] = m

    def lazy(self, fqn: str) -> LazyArray:
        m = self.tensors[fqn]
        torch = self.torch
        from _jaxinit.arrays import tensor_to_numpy

        dtype = tensor_to_numpy(torch.empty((), dtype=m.properties.dtype)).dtype

        def read(index):
            # DCP loads whole tensors (resharding whatever the saving ranks wrote): one is kept while
            # its devices' slices are read, and dropped when another tensor is read
            if self._last is None or self._last[0] != fqn:
                self._last = None
                t = torch.empty(tuple(m.size), dtype=m.properties.dtype)
                self.load({fqn: t})
                self._last = (fqn, tensor_to_numpy(t))
            arr = self._last[1]
            if index is None:
                self._last = None  # a whole read is handed over, not kept
                return arr
            return np.asarray(arr[index], order="C")

        return LazyArray(tuple(m.size), dtype, fqn, read)

    def load(self, state: dict) -> dict:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader

        import warnings

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                dcp.load(state, storage_reader=FileSystemReader(self.path), planner=_safe_load_planner(self.torch))
        except Exception as err:
            raise _sh.CheckpointFileError(f"{self.who}: {self.path!r}: DCP cannot load {sorted(state)[:3]} "
                                          f"({type(err).__name__}: {err}); a data file is missing or truncated, or "
                                          "an entry is not plain data (torch.load(weights_only=True) refuses "
                                          "arbitrary pickles).") from err
        return state

    def subtree(self, prefix: tuple) -> Any:
        """The entries under ``prefix`` as nested dicts / lists (tensors lazy, the rest loaded)."""
        n = len(prefix)
        chosen = {fqn: p[n:] for fqn, p in self.paths.items() if p[:n] == prefix and len(p) > n}
        plain = self.load({fqn: None for fqn in chosen if fqn not in self.tensors}) if any(
            fqn not in self.tensors for fqn in chosen) else {}
        root: dict = {}
        for fqn, rest in chosen.items():
            node = root
            for k in rest[:-1]:
                node = node.setdefault(k, {})
            node[rest[-1]] = self.lazy(fqn) if fqn in self.tensors else plain[fqn]
        return _lists(root)

    def tops(self) -> set:
        return {p[0] for p in self.paths.values()}


def _lists(node):
    if isinstance(node, dict):
        node = {k: _lists(v) for k, v in node.items()}
        if node and all(isinstance(k, int) for k in node) and sorted(node) == list(range(len(node))):
            return [node[i] for i in range(len(node))]
    return node


def optimizer_prefixes(tree: DCPTree) -> list[tuple]:
    """Where a DCP directory holds optimizer state dicts: the paths above ``param_groups``."""
    out = set()
    for p in tree.paths.values():
        for j, k in enumerate(p):
            if k == "param_groups" and j + 1 < len(p) and isinstance(p[j + 1], int):
                out.add(p[:j])
    return sorted(out)


def dcp_optimizer_state(tree: DCPTree, key: str | None, who: str) -> dict:
    """torch's ``state_dict()`` layout (integer ids, ``param_names`` when the file is FQN-keyed),
    tensors lazy, from a DCP directory; ``key``: the top-level key it was saved under (None: the
    only optimizer state there)."""
    found = optimizer_prefixes(tree)
    if key is not None:
        prefix = (key,)
        if prefix not in found:
            raise InitError(f"{who}: {tree.path!r} holds no optimizer state under {key!r} (optimizer states found "
                            f"under {[_dotted(p) for p in found]}); pass the key it was saved under.")
    elif len(found) == 1:
        prefix = found[0]
    else:
        raise InitError(f"{who}: {tree.path!r} holds " + ("no optimizer state dict (no 'param_groups' entries); save "
                                                          "optimizer.state_dict() or get_optimizer_state_dict(...)"
                                                          if not found else
                                                          f"several optimizer states {[_dotted(p) for p in found]}; "
                                                          "pass which one (optimizer_key=...)") + ".")
    sd = tree.subtree(prefix)
    groups = sd.get("param_groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g for g in groups):
        raise InitError(f"{who}: {tree.path!r}: {_dotted(prefix)}.param_groups is not torch's list of groups.")
    state = sd.get("state") or {}
    flat = [p for g in groups for p in g["params"]]
    if all(isinstance(p, numbers.Integral) for p in flat):
        new_state = {int(k): v for k, v in state.items()}
        new_groups = [dict(g) for g in groups]
    else:  # get_optimizer_state_dict's form: names
        index = {nm: i for i, nm in enumerate(flat)}
        unknown = sorted(set(state) - set(index))
        if unknown:
            raise InitError(f"{who}: {tree.path!r}: state for {unknown[:4]}, which no param group lists.")
        new_state = {index[k]: v for k, v in state.items()}
        new_groups, i = [], 0
        for g in groups:
            ng = dict(g)
            ng["param_names"] = list(g["params"])
            ng["params"] = list(range(i, i + len(g["params"])))
            i += len(g["params"])
            new_groups.append(ng)
    return {"state": new_state, "param_groups": new_groups}


def _dotted(p: tuple) -> str:
    return ".".join(str(x) for x in p) or "<top level>"


def open_optimizer_state(path, who: str, torch=None, key: str | None = None) -> dict:
    """The optimizer-file body (``state``: torch's ``state_dict()`` with :class:`LazyArray`
    tensors; ``class``, ``defaults``, ``shapes``, ``dtypes``, ``schedules`` when recorded) of a
    safetensors optimizer file / sharded directory or a DCP directory (``torch``: the module,
    needed for DCP; ``key``: DCP's top-level key of the optimizer state)."""
    name = os.fspath(path)
    if is_dcp(name):
        if torch is None:
            raise InitError(f"{who}: {name!r} is a torch.distributed.checkpoint (DCP) directory; reading it needs "
                            "torch (pip install torch).")
        tree = DCPTree(name, torch, who)
        extra = _dcp_json(name)
        sd = dcp_optimizer_state(tree, key if key is not None else extra.get("optimizer_key"), who)
        body = {"format": _ts.OPTIMIZER_FORMAT, "version": _ts.VERSION, **(extra.get("optimizer") or {})}
        body["state"] = sd
        return body
    if not os.path.exists(name):
        raise FileNotFoundError(f"{who}: no such optimizer state: {name!r}")
    return _safetensors_source(name, who)


def _dcp_json(path: str) -> dict:
    """The ``training_state.json`` jaxinit writes beside a DCP checkpoint (classes etc.), if any."""
    f = os.path.join(path, _ts.JSON_FILE)
    if not os.path.exists(f):
        return {}
    return _ts.read_json(f, "jaxinit")


def numpy_state(sd: Mapping) -> dict:
    """``sd`` with every :class:`LazyArray` read (a small state, e.g. for ``import_state``)."""
    def conv(x):
        if isinstance(x, LazyArray):
            return x.read()
        if isinstance(x, Mapping):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, list):
            return [conv(v) for v in x]
        return x

    return conv(sd)


def dcp_form(sd: Mapping) -> dict:
    """torch's ``state_dict()`` layout -> ``get_optimizer_state_dict``'s FQN-keyed form when the
    groups carry ``param_names`` (else unchanged: integer ids, as ``optimizer.state_dict()``)."""
    groups = sd.get("param_groups") or []
    names = [nm for g in groups for nm in g.get("param_names", [])]
    flat = [i for g in groups for i in g["params"]]
    state = {i: {k: (np.asarray(v, dtype=np.float32) if k == "step" and isinstance(v, numbers.Real) else v)
                 for k, v in entry.items()} for i, entry in sd["state"].items()}  # torch keeps a tensor step
    if not groups or len(names) != len(flat):
        return {"state": {str(i): v for i, v in state.items()}, "param_groups": [dict(g) for g in groups]}
    by_index = dict(zip(flat, names))
    out_groups = []
    for g in groups:
        ng = {k: v for k, v in g.items() if k != "params"}
        ng["params"] = [by_index[i] for i in g["params"]]
        ng["param_names"] = list(ng["params"])  # torch >= 2.6 keeps them; a loader that does not ignores them
        out_groups.append(ng)
    return {"state": {by_index[int(i)]: v for i, v in state.items()}, "param_groups": out_groups}


def write_dcp(dst, tree: Mapping, torch, who: str, to_numpy, json_body: Mapping | None = None) -> None:
    """``tree`` (nested dicts; tensors, arrays or :class:`LazyArray` leaves, plain data) as a new DCP
    directory with torch's ``dcp.save``: the planner sees ``meta`` tensors (sizes and dtypes) and
    each tensor is produced when DCP's writer asks for it (``lookup_object``), one at a time.
    ``json_body``: jaxinit's ``training_state.json`` written beside DCP's files. Output goes to a
    temporary sibling renamed into place (nothing partial)."""
    import shutil
    import uuid
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemWriter
    from torch.distributed.checkpoint.default_planner import DefaultSavePlanner

    from _jaxinit.arrays import numpy_to_tensor

    name = os.fspath(dst)
    if os.path.exists(name):
        raise FileExistsError(f"{who}: {name!r} exists; remove it or choose another destination.")
    producers: dict = {}

    def meta(node, path):
        if isinstance(node, Mapping):
            return {k: meta(v, path + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [meta(v, path + (i,)) for i, v in enumerate(node)]
        if isinstance(node, torch.Tensor):
            producers[path] = node
            return torch.empty(node.shape, dtype=node.dtype, device="meta")
        if isinstance(node, LazyArray) or (hasattr(node, "shape") and hasattr(node, "dtype")):
            producers[path] = node
            dt = numpy_to_tensor(np.zeros((), _dtype_of(node, to_numpy)), torch).dtype
            return torch.empty(tuple(node.shape), dtype=dt, device="meta")
        return node

    state = meta(tree, ())

    def produce(obj):
        if isinstance(obj, torch.Tensor):
            return obj.detach().cpu().contiguous()
        arr = obj.read() if isinstance(obj, LazyArray) else to_numpy(obj)
        return numpy_to_tensor(np.asarray(arr, order="C"), torch)  # (ascontiguousarray makes 0-d 1-d)

    class _Lazy(DefaultSavePlanner):
        def lookup_object(self, index):
            path = tuple(self.mappings.get(index.fqn, (index.fqn,)))
            if path in producers:
                return produce(producers[path])
            return super().lookup_object(index)

    tmp = os.path.join(os.path.dirname(os.path.abspath(name)), f"{os.path.basename(name)}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.save(state, storage_writer=FileSystemWriter(tmp, single_file_per_rank=False, thread_count=1),
                     planner=_Lazy())
        if json_body is not None:
            _ts.write_json(os.path.join(tmp, _ts.JSON_FILE), json_body, who)
        os.replace(tmp, name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_optimizer_dcp(dst, sd: Mapping, torch, who: str, extra: Mapping | None = None, to_numpy=None,
                        key: str = "optimizer") -> None:
    """An optimizer state (torch's ``state_dict()`` layout) as a DCP directory under ``key``, in
    ``get_optimizer_state_dict``'s FQN-keyed form when names are known; ``extra`` (class, defaults,
    shapes, dtypes) in ``training_state.json`` beside it."""
    from _jaxinit.arrays import to_numpy as _to_numpy

    body = {"format": _ts.FORMAT, "version": _ts.VERSION, "written_by": "jaxinit", "step": sd.get("step"),
            "counters": {}, "files": {"dcp": True}, "optimizer": dict(extra or {}), "optimizer_key": key}
    write_dcp(dst, {key: dcp_form(sd)}, torch, who, to_numpy or _to_numpy, body)


# --------------------------------------------------------------------------- training states in DCP
def write_training_dcp(path, *, weights, optimizer, optimizer_extra, scheduler, grad_scaler, rng, rng_meta, step,
                       counters, written_by: str, who: str, to_numpy, torch) -> None:
    """A training state as a DCP directory (``dcp.save`` of ``{"model": weights, "optimizer":
    get_optimizer_state_dict's form, "rng": ...}``, one tensor at a time) with jaxinit's
    ``training_state.json`` beside it (scheduler, GradScaler, step, counters, optimizer class)."""
    tree: dict = {}
    if weights is not None:
        tree["model"] = dict(weights)
    if optimizer is not None:
        tree["optimizer"] = dcp_form(optimizer)
    if rng:
        tree["rng"] = dict(rng)
    body = {"format": _ts.FORMAT, "version": _ts.VERSION, "written_by": written_by, "step": step,
            "counters": counters, "files": {"dcp": True, "model": weights is not None,
                                            "optimizer": optimizer is not None, "rng": bool(rng)},
            "scheduler": scheduler, "grad_scaler": grad_scaler, "rng": rng_meta,
            "optimizer": dict(optimizer_extra or {}), "optimizer_key": "optimizer"}
    arrays: dict = {}
    if scheduler is not None:
        body["scheduler"] = _ts.encode(scheduler, arrays, "scheduler", who, to_numpy)
    if arrays:
        raise InitError(f"{who}: the scheduler state holds arrays {sorted(arrays)[:4]} (a Tensor lr?); store the "
                        "scheduler with Python-float lrs.")
    write_dcp(path, tree, torch, who, to_numpy, body)


def read_training_dcp(path, who: str, torch) -> dict:
    """:func:`_jaxinit.training_state.read`'s dict from a DCP directory: one written by
    :func:`write_training_dcp`, or a training loop's own ``dcp.save({"model": ..., "optimizer":
    optimizer.state_dict() or get_optimizer_state_dict(...), "scheduler": ..., "step": ...})``
    (classes then come from the caller, as for a training loop's ``torch.save``)."""
    name = os.fspath(path)
    if torch is None:
        raise InitError(f"{who}: {name!r} is a torch.distributed.checkpoint (DCP) directory; reading it needs "
                        "torch (pip install torch).")
    tree = DCPTree(name, torch, who)
    body = _dcp_json(name)
    tops = tree.tops()
    opt_prefixes = optimizer_prefixes(tree)
    optimizer = None
    if opt_prefixes:
        key = body.get("optimizer_key")
        if key is None and len(opt_prefixes) == 1 and len(opt_prefixes[0]) == 1:
            key = opt_prefixes[0][0]
        sd = numpy_state(dcp_optimizer_state(tree, key, who))
        extra = body.get("optimizer") or {}
        optimizer = {"format": _ts.OPTIMIZER_FORMAT, "version": _ts.VERSION, "state": sd, "class": extra.get("class"),
                     "defaults": extra.get("defaults"), "shapes": extra.get("shapes"), "dtypes": extra.get("dtypes"),
                     "schedules": extra.get("schedules")}
    opt_tops = {p[0] for p in opt_prefixes if p}

    def top(*names):
        for n in names:
            if n in tops and n not in opt_tops:
                return numpy_state(tree.subtree((n,))) if any(p[0] == n and len(p) > 1 for p in tree.paths.values()) \
                    else tree.load({n: None})[n]
        return None

    if body:
        scheduler = body.get("scheduler")
        if scheduler is not None:
            scheduler = _ts.decode(scheduler, {}, who)
        return {"model": top("model"), "optimizer": optimizer, "scheduler": scheduler,
                "grad_scaler": body.get("grad_scaler"), "rng": top("rng") or {}, "rng_meta": body.get("rng") or {},
                "step": body.get("step"), "counters": body.get("counters") or {}}
    sched = top("scheduler", "lr_scheduler")
    return {"model": top("model"), "optimizer": optimizer,
            "scheduler": None if sched is None else {"classes": None, "state": sched},
            "grad_scaler": top("grad_scaler", "scaler"), "rng": {}, "rng_meta": {}, "step": top("step"),
            "counters": {}}
