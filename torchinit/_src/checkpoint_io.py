r"""Checkpoints at scale, the torch side: the mirror of :mod:`jaxinit._src.checkpoint_io` (same
functions and arguments). jax is never imported: the Flax side is a Flax-named ``.safetensors``
(``params/fc/kernel``, as ``save_checkpoint`` writes Flax variables), and torch
``torch.distributed.checkpoint`` (DCP) directories are read and written by torch's own DCP:

- reading: ``FileSystemReader(path).read_metadata()`` gives every tensor's size and dtype; one
  tensor at a time is loaded with ``dcp.load({key: tensor}, storage_reader=...)`` (a subset of
  the keys loads only those; no process group is needed in one process);
- writing: ``dcp.save`` of a state dict of ``meta`` tensors (sizes and dtypes only) with a
  ``DefaultSavePlanner`` whose ``lookup_object`` produces each tensor when DCP's writer asks for
  it, and ``FileSystemWriter(single_file_per_rank=False)`` (one file per tensor), so one tensor
  is in memory at a time.

Planning and checks: :mod:`_jaxinit.sharded`, as in jaxinit.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from _jaxinit import convert as _core
from _jaxinit import sharded as _sh
from _jaxinit.errors import InitError


def is_dcp(path) -> bool:
    name = os.fspath(path)
    return os.path.isdir(name) and os.path.exists(os.path.join(name, ".metadata"))


class DCPReader:
    """A torch DCP directory: ``infos`` from its metadata, :meth:`read` one tensor (the last one
    read is kept, so the slices of one tensor cost one load)."""

    def __init__(self, path, who: str):
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.path, self.who = os.fspath(path), who
        md = _sh.read_dcp_metadata(self.path, who)
        self.infos: dict = {}
        others = []
        for k, m in md.state_dict_metadata.items():
            if isinstance(m, TensorStorageMetadata):
                dt = _core.tensor_to_numpy(torch.empty((), dtype=m.properties.dtype)).dtype
                self.infos[k] = _sh.TensorInfo(tuple(m.size), np.dtype(dt), self.path)
            else:
                others.append(k)
        if others:
            raise _sh.CheckpointFileError(f"{who}: {self.path!r} holds non-tensor entries {others[:4]} (a training "
                                          "state, not weights); convert a DCP checkpoint of a model state_dict.")
        self._last: tuple[str, np.ndarray] | None = None

    def read(self, key: str, index: tuple | None = None) -> np.ndarray:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemReader

        if self._last is None or self._last[0] != key:
            self._last = None
            info = self.infos[key]
            t = torch.empty(info.shape, dtype=_core.numpy_to_tensor(np.zeros((), info.dtype), torch).dtype)
            try:
                dcp.load({key: t}, storage_reader=FileSystemReader(self.path))
            except Exception as err:
                raise _sh.CheckpointFileError(f"{self.who}: {self.path!r}: DCP cannot load {key!r} "
                                              f"({type(err).__name__}: {err}); a data file is missing or "
                                              "truncated.") from err
            self._last = (key, _core.tensor_to_numpy(t))
        arr = self._last[1]
        return arr if index is None else arr[index]


class TorchFileReader:
    """``torch.save`` files (``.pt``/``.pth``/``.bin``), or a Hugging Face ``pytorch_model.bin.index.json``
    with its shards, opened with ``torch.load(mmap=True, weights_only=True)``: tensors stay in the
    memory-mapped file until a slice of one is read (arbitrary pickles are never loaded). The index
    is checked as :class:`_jaxinit.sharded.SafetensorsReader` checks a safetensors index."""

    def __init__(self, path, who: str):
        import json

        self.who, self.path = who, os.fspath(path)
        self.infos: dict = {}
        self._tensors: dict = {}
        if self.path.endswith(".json"):
            try:
                with open(self.path) as fh:
                    index = json.load(fh)
                weight_map = dict(index["weight_map"])
            except (ValueError, KeyError, TypeError) as err:
                raise _sh.CheckpointFileError(f"{who}: wrong index {self.path!r}: not a Hugging Face index "
                                              f"({type(err).__name__}: {err}).") from err
            folder = os.path.dirname(self.path)
            files: dict = {}
            for key, name in weight_map.items():
                files.setdefault(str(name), []).append(str(key))
            missing = [f for f in files if not os.path.exists(os.path.join(folder, f))]
            if missing:
                raise _sh.CheckpointFileError(f"{who}: missing shard(s) of {self.path!r}: {', '.join(missing)}. "
                                              "Download every shard.")
            for name, keys in files.items():
                held = self._add(os.path.join(folder, name))
                if set(held) != set(keys):
                    raise _sh.CheckpointFileError(f"{who}: wrong index {self.path!r}: {name!r} holds "
                                                  f"{sorted(set(held) ^ set(keys))[:4]} differently from its "
                                                  "weight_map. Regenerate the index.")
        else:
            self._add(self.path)

    def _add(self, name: str) -> list:
        try:
            obj = torch.load(name, map_location="cpu", weights_only=True, mmap=True)
        except Exception as err:
            raise _sh.CheckpointFileError(f"{self.who}: {name!r} cannot be read by torch.load(weights_only=True, "
                                          f"mmap=True): {type(err).__name__}: {err}. It is truncated, malformed, in "
                                          "the legacy (non-zip) format, or holds objects other than tensors; "
                                          "re-save it (preferably with safetensors).") from err
        if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise _sh.CheckpointFileError(f"{self.who}: {name!r} does not hold a flat dict of tensors; save a "
                                          "state_dict.")
        for k, t in obj.items():
            self._tensors[k] = t
            self.infos[k] = _sh.TensorInfo(tuple(t.shape), _core.tensor_to_numpy(t.new_empty(())).dtype, name)
        return list(obj)

    def read(self, key: str, index: tuple | None = None) -> np.ndarray:
        t = self._tensors[key]
        return np.array(_core.tensor_to_numpy(t if index is None else t[index]), copy=True)


class DCPWriter:
    """Writes a plan's outputs as a new DCP directory, each tensor produced when DCP asks for it."""

    def __init__(self, dst, who: str):
        self.dst, self.who = os.fspath(dst), who
        if os.path.exists(self.dst):
            raise FileExistsError(f"{who}: {self.dst!r} exists; remove it or choose another destination "
                                  "(a conversion never overwrites).")
        self.tmp = os.path.join(os.path.dirname(os.path.abspath(self.dst)),
                                f"{os.path.basename(self.dst)}.tmp-{uuid.uuid4().hex[:8]}")

    def run(self, reader, plan: _sh.Plan, bar=None) -> dict:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemWriter
        from torch.distributed.checkpoint.default_planner import DefaultSavePlanner

        owner = {k: (g, sources) for g, sources, keys in plan.groups for k in keys}
        cache: dict = {}

        def produce(key: str):
            if key in plan.views:
                view = plan.views[key]
                shape, _ = plan.outputs[key]
                arr = view.read(reader, tuple(slice(None) for _ in shape), shape, reader.infos[view.key].shape,
                                reader.infos[view.key].dtype)
            else:
                if key not in cache:
                    cache.clear()
                    g, sources = owner[key]
                    cache.update(plan.rebuild(g, {k: reader.read(k) for k in sources}))
                arr = cache.pop(key)
            if bar is not None:
                bar.update(1)
            return _core.numpy_to_tensor(np.asarray(arr, order="C"), torch)

        class _Lazy(DefaultSavePlanner):
            def lookup_object(self, index):
                return produce(index.fqn)

        meta = {k: torch.empty(s, dtype=_core.numpy_to_tensor(np.zeros((), d), torch).dtype, device="meta")
                for k, (s, d) in plan.outputs.items()}
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="torch.distributed is disabled")
                dcp.save(meta, storage_writer=FileSystemWriter(self.tmp, single_file_per_rank=False, thread_count=1),
                         planner=_Lazy())
            os.replace(self.tmp, self.dst)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        return plan.summary


def torch_reader(src, who: str):
    """A reader of a torch checkpoint: DCP directory, ``.pt``/``.bin`` (or ``pytorch_model.bin.index.json``
    or a directory holding it), else safetensors (a file or a Hugging Face sharded directory)."""
    if hasattr(src, "infos") and hasattr(src, "read"):
        return src
    name = os.fspath(src)
    if is_dcp(name):
        return DCPReader(name, who)
    if os.path.isdir(name) and os.path.exists(os.path.join(name, "pytorch_model.bin.index.json")) and not (
            os.path.exists(os.path.join(name, _sh.INDEX_NAME)) or os.path.exists(os.path.join(name, _sh.SINGLE_NAME))):
        name = os.path.join(name, "pytorch_model.bin.index.json")
    if name.endswith((".pt", ".pth", ".bin", ".bin.index.json")):
        if not os.path.exists(name):
            raise FileNotFoundError(f"{who}: no such file: {name!r}")
        return TorchFileReader(name, who)
    return _sh.SafetensorsReader(name, who)


def _torch_template(template, who):
    if template is None:
        return None
    if isinstance(template, torch.nn.Module):
        return template
    if isinstance(template, Mapping):
        return template
    raise InitError(f"{who}: `template` for to='torch' must be a torch module or state dict, got "
                    f"{type(template).__name__}.")


def _flax_spec(template, who):
    if template is None:
        return None
    flat = _core.flatten_flax(template, who)
    return _core.shape_dtypes(flat)


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, to: str, template: Any = None,
                       mapping: Mapping[str, str] | None = None, kinds: Mapping[str, Any] | None = None,
                       sharding: Any = None, batchnorm: str = "torch", merge_rnn_biases: bool = False,
                       format: str | None = None, max_shard_size: int | str = "5GB", progress: bool = False) -> dict:
    r"""Convert a checkpoint on disk between PyTorch and Flax, one tensor at a time (mirror of
    :func:`jaxinit.convert_checkpoint`).

    ``to='flax'``: ``src`` is a ``.safetensors`` file, a Hugging Face sharded directory, a torch
    DCP directory, or ``torch.save`` files (``.pt``/``.bin``, or ``pytorch_model.bin.index.json`` and
    its shards; read with ``torch.load(mmap=True, weights_only=True)``); ``dst`` a Flax-named ``.safetensors`` file (``params/fc/kernel``; Orbax needs
    jax: use :func:`jaxinit.convert_checkpoint`). ``to='torch'``: ``src`` is a Flax-named
    ``.safetensors``; ``dst`` a ``.safetensors`` file, a Hugging Face sharded directory, or, with
    ``format='dcp'``, a DCP directory (``dcp.load`` reads it). ``sharding`` must be None here
    (it is a JAX sharding). Same checks, summary and no-partial-output rule as in jaxinit.

    >>> summary = torchinit.convert_checkpoint("dcp_dir", "flax.safetensors", to="flax")  # doctest: +SKIP
    """
    who = "torchinit.convert_checkpoint"
    _sh.check_common(to, format, sharding, dst, who)
    dst = os.fspath(dst)
    if to == "flax":
        reader = torch_reader(src, who)
        plan = _sh.plan_torch_to_flax(reader.infos, template=_flax_spec(template, who), mapping=mapping, kinds=kinds,
                                      batchnorm=batchnorm, merge_rnn_biases=merge_rnn_biases, who=who)
        if not dst.endswith(".safetensors"):
            raise InitError(f"{who}: to='flax' writes a Flax-named .safetensors file here (Orbax needs jax: "
                            f"jaxinit.convert_checkpoint), got dst={dst!r}.")
        return _sh.write_flax_safetensors(reader, plan, dst, who, _sh.progress_bar(len(plan.outputs), progress))
    reader = _sh.FlaxNamedReader(_sh.SafetensorsReader(src, who), who)
    tmpl = _torch_template(template, who)
    tspec = None if tmpl is None else (tmpl if isinstance(tmpl, torch.nn.Module) else dict(tmpl))
    plan = _sh.plan_flax_to_torch(reader.infos, template=tspec, mapping=mapping, kinds=kinds, batchnorm=batchnorm,
                                  who=who)
    bar = _sh.progress_bar(len(plan.outputs), progress)
    if format == "dcp":
        return DCPWriter(dst, who).run(reader, plan, bar)
    writer = _sh.SafetensorsWriter(dst, [(k, s, d) for k, (s, d) in plan.outputs.items()],
                                   max_shard_bytes=_sh.parse_size(max_shard_size, who), who=who)
    return _sh.write_plan(reader, plan, writer, str, bar)


def load_torch_checkpoint(path: str | os.PathLike, template: Any = None, *, mapping: Mapping[str, str] | None = None,
                          kinds: Mapping[str, Any] | None = None, sharding: Any = None, batchnorm: str = "torch",
                          merge_rnn_biases: bool = False):
    r"""Flax variables (nested dicts of numpy arrays) from a torch checkpoint on disk: a
    ``.safetensors`` file, a Hugging Face sharded directory or a DCP directory, read one tensor at
    a time (mirror of :func:`jaxinit.load_torch_checkpoint`; ``sharding`` must be None here).

    >>> variables = torchinit.load_torch_checkpoint("model.safetensors")  # doctest: +SKIP
    """
    who = "torchinit.load_torch_checkpoint"
    if sharding is not None:
        raise InitError(f"{who}: `sharding` is a JAX sharding; torchinit returns numpy arrays (pass None, or use "
                        "jaxinit.load_torch_checkpoint).")
    reader = torch_reader(path, who)
    plan = _sh.plan_torch_to_flax(reader.infos, template=_flax_spec(template, who), mapping=mapping, kinds=kinds,
                                  batchnorm=batchnorm, merge_rnn_biases=merge_rnn_biases, who=who)
    out: dict = {}
    for key, view in plan.views.items():
        shape, _ = plan.outputs[key]
        out[key] = view.read(reader, tuple(slice(None) for _ in shape), shape, reader.infos[view.key].shape,
                             reader.infos[view.key].dtype)
    for g, sources, _ in plan.groups:
        out.update(plan.rebuild(g, {k: reader.read(k) for k in sources}))
    return _core.unflatten_flax(out)
