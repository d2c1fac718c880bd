r"""Checkpoints at scale: torch checkpoints (one ``.safetensors``, a Hugging Face sharded directory)
into Orbax or straight into sharded ``jax.Array`` s, and Orbax back into torch files, one tensor
at a time.

Mirror: :mod:`torchinit._src.checkpoint_io` (same functions; the Flax side there is a
Flax-named safetensors file and torch ``DCP`` directories are read and written). The planning
(names, kinds, layouts, every check) is :mod:`_jaxinit.sharded` over the converters of
:mod:`_jaxinit.convert`; here only the JAX side:

- reading: :func:`make_array` builds each array one device at a time, the device's shard read as
  the matching slice of the source tensor (``safe_open(...).get_slice``), transposed / flipped on
  the fly; a process only reads the shards of its addressable devices;
- Orbax writing: ``orbax.checkpoint.v1.partial.save`` one small batch of arrays at a time, then
  ``partial.finalize`` (Orbax's own incremental save: each call adds leaves to one checkpoint);
- Orbax reading: TensorStore (Orbax's engine) opens a leaf's zarr array in the checkpoint's OCDBT
  store and reads only the chunks of the block asked for.

Peak memory is about one tensor, not the model (docs/checkpoints.md: 1.34x the largest tensor
to build sharded arrays and to write Orbax (uncompressed: zstd made TensorStore hold every encoded
chunk of a batch until Orbax's OCDBT transaction committed, 1.96x), 0.50x from Orbax to torch files).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from _jaxinit import convert as _core
from _jaxinit import sharded as _sh
from _jaxinit.errors import InitError

_BATCH_BYTES = 16 * 2**20  # small tensors are saved to Orbax together, up to this many bytes
ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "orbax.checkpoint")


def _ocp():
    try:
        from orbax.checkpoint import v1
    except ImportError as err:
        raise InitError("Orbax is not installed: pip install orbax-checkpoint (or jaxinit[jax])") from err
    return v1


def is_orbax(path) -> bool:
    name = os.fspath(path)
    return os.path.isdir(name) and any(os.path.exists(os.path.join(name, m)) for m in ORBAX_MARKERS)


# --------------------------------------------------------------------------- shardings
def _devices_mesh(n: int):
    return jax.sharding.Mesh(np.array(jax.devices()[:n]), ("devices",))


def fsdp_sharding(shape: tuple):
    """The largest axis whose size the device count divides is split across all devices (a 1-D
    mesh named ``devices``); a tensor with no such axis is replicated."""
    n = jax.device_count()
    mesh = _devices_mesh(n)
    spec: list = [None] * len(shape)
    axes = sorted(range(len(shape)), key=lambda a: -shape[a])
    for a in axes:
        if n > 1 and shape[a] % n == 0:
            spec[a] = "devices"
            break
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def sharding_for(sharding, name: str, shape: tuple, template_leaf=None, who: str = "jaxinit"):
    """The sharding of one output: ``sharding`` is None (the template leaf's own ``.sharding``
    when it has one, else the default device), ``'fsdp'`` (:func:`fsdp_sharding`), a
    ``jax.sharding.Sharding`` (every tensor), or a callable ``(name, shape) -> Sharding``."""
    if sharding is None:
        s = getattr(template_leaf, "sharding", None)
        return s if isinstance(s, jax.sharding.Sharding) else jax.sharding.SingleDeviceSharding(jax.devices()[0])
    if isinstance(sharding, str):
        if sharding == "fsdp":
            return fsdp_sharding(shape)
        if sharding == "replicated":
            return jax.sharding.NamedSharding(_devices_mesh(jax.device_count()), jax.sharding.PartitionSpec())
        raise InitError(f"{who}: `sharding` must be None, 'fsdp', 'replicated', a jax.sharding.Sharding or a "
                        f"callable (name, shape) -> Sharding, got {sharding!r}.")
    if isinstance(sharding, jax.sharding.Sharding):
        return sharding
    if callable(sharding):
        return sharding(name, shape)
    raise InitError(f"{who}: `sharding` must be None, 'fsdp', 'replicated', a jax.sharding.Sharding or a callable "
                    f"(name, shape) -> Sharding, got {type(sharding).__name__}.")


def make_array(shape: tuple, sharding, cb: Callable) -> jax.Array:
    """``jax.make_array_from_callback(shape, sharding, cb)``, one device at a time: each shard is
    read, put on its device and its host copy dropped before the next is read
    (``make_array_from_callback`` first collects every shard's host array, then transfers them
    all, which holds the tensor twice). Devices that hold the same block share one read."""
    arrays: list = []
    last_key, host = None, None
    for device, index in sharding.addressable_devices_indices_map(shape).items():
        index = tuple(slice(None) for _ in shape) if index is None else tuple(index)
        key = tuple((s.start, s.stop, s.step) for s in index)
        if host is None or key != last_key:
            host = None  # the previous block is dropped before the next one is read
            host, last_key = cb(index), key
        arr = jax.device_put(host, device)
        arr.block_until_ready()
        arrays.append(arr)
    return jax.make_array_from_single_device_arrays(shape, sharding, arrays)


# --------------------------------------------------------------------------- Orbax
class OrbaxReader:
    """An Orbax checkpoint of Flax variables: ``infos`` ``{(collection, path): TensorInfo}`` from
    ``orbax.checkpoint.v1.metadata``; :meth:`read` reads one leaf or one block of it."""

    def __init__(self, path, who: str):
        name = os.fspath(path)
        if not os.path.isdir(name):
            raise FileNotFoundError(f"{who}: no such Orbax checkpoint directory: {name!r}")
        if not is_orbax(name):
            raise _sh.CheckpointFileError(f"{who}: {name!r} is not an Orbax checkpoint (no {ORBAX_MARKERS[0]}); "
                                          "pass the directory orbax.checkpoint.v1.save / jaxinit.convert_checkpoint "
                                          "wrote.")
        self.path, self.who = os.path.abspath(name), who  # Orbax wants absolute paths
        try:
            meta = _ocp().metadata(self.path).metadata
        except Exception as err:
            raise _sh.CheckpointFileError(f"{who}: {name!r}: Orbax cannot read its metadata ({type(err).__name__}: "
                                          f"{err}); the checkpoint is incomplete or damaged.") from err
        if not isinstance(meta, Mapping):
            raise _sh.CheckpointFileError(f"{who}: {name!r}: Orbax finds no PyTree in it; pass a checkpoint of Flax "
                                          "variables.")
        self.infos: dict = {}

        def walk(node, path):
            for k, v in node.items():
                if isinstance(v, Mapping):
                    walk(v, path + (str(k),))
                else:
                    self.infos[(path[0], path[1:] + (str(k),))] = _sh.TensorInfo(tuple(v.shape), np.dtype(v.dtype), name)

        walk(meta, ())
        self._tree_dir: str | None = None
        self._zarr = "zarr3"

    def read(self, key, index: tuple | None = None) -> np.ndarray:
        """Leaf ``key`` (or its block ``index``) as numpy, read with TensorStore, the engine under
        Orbax: ``ts.open`` of the leaf's zarr array in the checkpoint's OCDBT store, then only the
        chunks that hold ``index`` are read and decoded."""
        store = self._store(key)
        try:
            return np.asarray((store if index is None else store[index]).read().result())
        except Exception as err:
            raise _sh.CheckpointFileError(f"{self.who}: {self.path!r}: TensorStore cannot read "
                                          f"{_core.fname(key)} ({type(err).__name__}: {err}); the checkpoint is "
                                          "incomplete or damaged.") from err

    def chunks(self, key) -> tuple:
        """The leaf's storage chunk shape (TensorStore's read chunk layout)."""
        return tuple(int(c) for c in self._store(key).chunk_layout.read_chunk.shape)

    def _store(self, key):
        import tensorstore as ts

        if self._tree_dir is None:
            import json

            for name in sorted(os.listdir(self.path)):
                meta = os.path.join(self.path, name, "_METADATA")
                if os.path.exists(meta):
                    with open(meta) as fh:
                        self._zarr = "zarr3" if json.load(fh).get("use_zarr3", True) else "zarr"
                    self._tree_dir = os.path.join(self.path, name)
                    break
            else:
                raise _sh.CheckpointFileError(f"{self.who}: {self.path!r}: no PyTree item (_METADATA) in it.")
        coll, path = key
        kv = {"driver": "ocdbt", "base": "file://" + os.path.abspath(self._tree_dir), "path": ".".join((coll,) + path)}
        try:
            return ts.open({"driver": self._zarr, "kvstore": kv}, open=True).result()
        except Exception as err:
            raise _sh.CheckpointFileError(f"{self.who}: {self.path!r}: TensorStore cannot open "
                                          f"{_core.fname(key)} ({type(err).__name__}: {err}); the checkpoint is "
                                          "incomplete or damaged.") from err


def _sync(name: str) -> None:
    """A barrier across processes (``jax.experimental.multihost_utils``), when there are several."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


class OrbaxWriter:
    """Writes Flax variables to a new Orbax checkpoint at ``dst`` in batches
    (``orbax.checkpoint.v1.partial.save``), finalized and renamed into place by :meth:`commit`;
    :meth:`abort` removes everything written. With several processes (``jax.distributed``) every
    process runs the same conversion and writes the shards of its own devices; process 0 renames."""

    def __init__(self, dst, who: str):
        self.dst, parent = _sh.new_destination(dst, who)
        # one name on every process (Orbax saves collectively to one path); a leftover from a killed
        # run is named, never reused
        self.tmp = os.path.join(parent, f"{os.path.basename(self.dst)}.jaxinit-tmp")
        if any(n.startswith(os.path.basename(self.tmp)) for n in os.listdir(parent)):
            raise FileExistsError(f"{who}: {self.tmp!r} (or its Orbax partial save) exists: a conversion to "
                                  f"{self.dst!r} is running or was killed; remove it and retry.")
        _sync("jaxinit_convert_start")  # every process checked before any writes
        self.pending: dict = {}
        self.pending_bytes = 0
        self.any = False

    def add(self, key, arr) -> None:
        self.pending[key] = arr
        self.pending_bytes += arr.nbytes
        if self.pending_bytes >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        tree: dict = {}
        for (coll, path), arr in self.pending.items():
            node = tree.setdefault(coll, {})
            for p in path[:-1]:
                node = node.setdefault(p, {})
            node[path[-1]] = arr
        ocp = _ocp()
        # no zstd: with compression TensorStore holds each batch's encoded chunks in Orbax's atomic OCDBT
        # transaction until it commits (+0.95x of a 256 MiB array, measured); without it the CPU shards are
        # written from their own buffers (+0.0x). docs/checkpoints.md, "Orbax's share".
        saving = ocp.options.ArrayOptions.Saving(use_compression=False)
        with ocp.Context(array_options=ocp.options.ArrayOptions(saving=saving)):
            ocp.partial.save(self.tmp, tree)
        self.pending, self.pending_bytes, self.any = {}, 0, True

    def commit(self) -> None:
        self.flush()
        if not self.any:
            _ocp().save_pytree(self.tmp, {})
        else:
            _ocp().partial.finalize(self.tmp)
        if jax.process_index() == 0:
            os.replace(self.tmp, self.dst)
        _sync("jaxinit_convert_commit")

    def abort(self) -> None:
        parent = os.path.dirname(self.tmp)
        base = os.path.basename(self.tmp)
        for name in os.listdir(parent):
            if name.startswith(base):
                _sh.remove_quietly(os.path.join(parent, name))


# --------------------------------------------------------------------------- readers of torch checkpoints
def torch_reader(src, who: str):
    """A reader of a torch checkpoint: ``.safetensors`` or a Hugging Face sharded directory
    (:class:`_jaxinit.sharded.SafetensorsReader`), or any object with ``infos`` and
    ``read(key, index)`` (e.g. :class:`torchinit._src.checkpoint_io.DCPReader`)."""
    if hasattr(src, "infos") and hasattr(src, "read"):
        return src
    name = os.fspath(src)
    if os.path.isdir(name) and os.path.exists(os.path.join(name, ".metadata")):
        raise InitError(f"{who}: {name!r} is a torch.distributed.checkpoint (DCP) directory; reading it needs torch: "
                        "use `python -m jaxinit.convert` (it uses torch's DCP reader) or "
                        "torchinit.convert_checkpoint(..., to='torch') into safetensors first.")
    if name.endswith((".pt", ".pth", ".bin", ".bin.index.json")):
        raise InitError(f"{who}: {name!r} is a torch.save file; reading it needs torch: use `python -m jaxinit.convert` "
                        "(it reads it with torch.load(mmap=True, weights_only=True)) or torchinit.convert_checkpoint.")
    return _sh.SafetensorsReader(name, who)


def _template_spec(template, who):
    if template is None:
        return None, {}
    flat = _core.flatten_flax(template, who)
    return _core.shape_dtypes(flat), flat


def stream_torch_to_flax(reader, sink: Callable[[Any, Any], None], *, template=None, sharding=None, mapping=None,
                         kinds=None, batchnorm="torch", merge_rnn_biases=False, transpose_kernel=False,
                         progress=False, who: str) -> dict:
    """Convert every tensor of ``reader`` and hand each ``jax.Array`` (already in its sharding) to
    ``sink(key, array)`` one at a time. Returns the summary (renamed/transposed/kept/rebuilt/dropped)."""
    spec, tflat = _template_spec(template, who)
    plan = _sh.plan_torch_to_flax(reader.infos, template=spec, mapping=mapping, kinds=kinds, batchnorm=batchnorm,
                                  merge_rnn_biases=merge_rnn_biases, transpose_kernel=transpose_kernel, who=who)
    bar = _sh.progress_bar(len(plan.outputs), progress)
    for key, view in plan.views.items():
        shape, _ = plan.outputs[key]
        sh = sharding_for(sharding, _core.fname(key), shape, tflat.get(key), who)
        src_shape = reader.infos[view.key].shape

        def cb(index, view=view, shape=shape, src_shape=src_shape, dtype=reader.infos[view.key].dtype):
            return view.read(reader, tuple(index), shape, src_shape, dtype)

        sink(key, make_array(shape, sh, cb))
        if bar is not None:
            bar.update(1)
    for g, sources, keys in plan.groups:
        arrays = {k: reader.read(k) for k in sources}
        for key, arr in plan.rebuild(g, arrays).items():
            sh = sharding_for(sharding, _core.fname(key), arr.shape, tflat.get(key), who)
            sink(key, jax.device_put(arr, sh))
            if bar is not None:
                bar.update(1)
        del arrays
    if bar is not None:
        bar.close()
    return plan.summary


def flax_leaf_reader(src, who: str):
    if hasattr(src, "infos") and (hasattr(src, "read") or hasattr(src, "load")):
        return src
    name = os.fspath(src)
    if is_orbax(name):
        return OrbaxReader(name, who)
    reader = _sh.SafetensorsReader(name, who)
    return _sh.FlaxNamedReader(reader, who)


def stream_flax_to_torch(reader, writer_factory: Callable, *, template=None, mapping=None, kinds=None,
                         batchnorm="torch", transpose_kernel=False, progress=False, who: str) -> dict:
    """Convert every leaf of ``reader`` (:class:`OrbaxReader` or a Flax-named safetensors reader)
    into a torch writer made by ``writer_factory([(name, shape, dtype)])``, one block of output
    rows at a time (each read as the matching slice of the leaf)."""
    plan = _sh.plan_flax_to_torch(reader.infos, template=template, mapping=mapping, kinds=kinds,
                                  batchnorm=batchnorm, transpose_kernel=transpose_kernel, who=who)
    writer = writer_factory([(k, s, d) for k, (s, d) in plan.outputs.items()])
    return _sh.write_plan(reader, plan, writer, str, _sh.progress_bar(len(plan.outputs), progress))


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, to: str, template: Any = None,
                       mapping: Mapping[str, str] | None = None, kinds: Mapping[str, Any] | None = None,
                       sharding: Any = None, batchnorm: str = "torch", merge_rnn_biases: bool = False,
                       format: str | None = None, max_shard_size: int | str = "5GB", progress: bool = False) -> dict:
    r"""Convert a checkpoint on disk between PyTorch and Flax, one tensor at a time.

    ``to='flax'``: ``src`` is a torch checkpoint: a ``.safetensors`` file or a Hugging Face
    sharded directory (``model.safetensors.index.json`` + shards); ``dst`` is a new Orbax
    checkpoint directory (``orbax.checkpoint.v1.load(dst, abstract_variables)`` reads it) or a
    ``.safetensors`` file with Flax names (``params/fc/kernel``). ``to='torch'``: ``src`` is an
    Orbax checkpoint of Flax variables (or a Flax-named ``.safetensors``); ``dst`` is a
    ``.safetensors`` file, or a directory that receives a Hugging Face sharded checkpoint
    (``max_shard_size`` per file). Names, layouts and checks are those of
    :func:`from_torch_state_dict` / :func:`to_torch_state_dict`.

    Each tensor is read as the slices its devices hold (``safe_open(...).get_slice``),
    transposed on the fly, written, and freed: peak memory is about the largest tensor, not the
    model (measured: 1.34x the largest tensor to Orbax, 0.50x from Orbax; figures in the
    "Checkpoints at scale" guide). Everything is checked on the
    shapes before the first byte is written; output goes to a temporary sibling renamed into
    place at the end, so a failure leaves no partial ``dst``. Bad files raise
    :class:`CheckpointFileError` naming the problem (truncated file, wrong index, missing shard,
    dtype mismatch).

    Args:
      src, dst: paths (``dst`` must not exist).
      to: ``'flax'`` or ``'torch'``.
      template: torch -> Flax: Flax variables or ``jax.eval_shape`` of the init (names, shapes,
        dtypes; a leaf's ``.sharding`` is used when ``sharding`` is None). Flax -> torch: a
        torch ``{name: ShapeDtype or array}``; None: names from the rule.
      mapping, kinds, batchnorm, merge_rnn_biases: as in :func:`from_torch_state_dict`. Dtypes are kept
        (a template dtype that differs is an error).
      sharding: the arrays' sharding in JAX: None, ``'fsdp'`` (each tensor's largest axis the
        device count divides, across all devices), ``'replicated'``, a
        ``jax.sharding.Sharding``, or a callable ``(name, shape) -> Sharding``.
      format: the torch output's format: None (from ``dst``), ``'safetensors'``; ``'dcp'`` (torch's
        DCP) needs torch: :func:`torchinit.convert_checkpoint` or ``python -m jaxinit.convert``.
      max_shard_size: bytes per file of a sharded torch output (``'5GB'``, as ``save_pretrained``).
      progress: a tqdm progress bar over tensors.

    Returns:
      ``{'transposed': [(source, target)], 'renamed': [...], 'kept': [...], 'rebuilt': [...],
      'dropped': [...]}``: what happened to each source tensor.

    >>> summary = jaxinit.convert_checkpoint("model.safetensors", "ckpt_orbax", to="flax", sharding="fsdp")  # doctest: +SKIP
    """
    who = "jaxinit.convert_checkpoint"
    _sh.check_common(to, format, sharding, dst, who)
    if format == "dcp":
        raise InitError(f"{who}: format='dcp' writes with torch's DCP, which jaxinit does not import: use "
                        "torchinit.convert_checkpoint, or `python -m jaxinit.convert ... --format dcp`.")
    dst = os.fspath(dst)
    if to == "flax":
        reader = torch_reader(src, who)
        if dst.endswith(".safetensors"):
            return _to_flax_safetensors(reader, dst, template, mapping, kinds, batchnorm, merge_rnn_biases,
                                        progress, who)
        writer = OrbaxWriter(dst, who)
        try:
            summary = stream_torch_to_flax(reader, writer.add, template=template, sharding=sharding, mapping=mapping,
                                           kinds=kinds, batchnorm=batchnorm, merge_rnn_biases=merge_rnn_biases,
                                           progress=progress, who=who)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        return summary
    reader = flax_leaf_reader(src, who)
    limit = _sh.parse_size(max_shard_size, who)
    return stream_flax_to_torch(reader, lambda entries: _sh.SafetensorsWriter(dst, entries, max_shard_bytes=limit,
                                                                               who=who),
                                template=template, mapping=mapping, kinds=kinds, batchnorm=batchnorm,
                                progress=progress, who=who)


def _to_flax_safetensors(reader, dst, template, mapping, kinds, batchnorm, merge_rnn_biases, progress, who) -> dict:
    spec, _ = _template_spec(template, who)
    plan = _sh.plan_torch_to_flax(reader.infos, template=spec, mapping=mapping, kinds=kinds, batchnorm=batchnorm,
                                  merge_rnn_biases=merge_rnn_biases, who=who)
    return _sh.write_flax_safetensors(reader, plan, dst, who, _sh.progress_bar(len(plan.outputs), progress))


def load_torch_checkpoint(path: str | os.PathLike, template: Any = None, *, mapping: Mapping[str, str] | None = None,
                          kinds: Mapping[str, Any] | None = None, sharding: Any = None, batchnorm: str = "torch",
                          merge_rnn_biases: bool = False):
    r"""Flax variables from a torch checkpoint on disk, each array created directly in its sharding.

    ``path``: a ``.safetensors`` file or a Hugging Face sharded directory. Every array is built
    one device at a time: each device's shard is read as the matching slice of the file
    (``safe_open(...).get_slice``) and transposed on the fly, so a process reads only the slices
    of its addressable devices and no host copy of the whole tensor is made (the Flax layout
    differs from torch's only by views: Linear/Conv transposes, ConvTranspose flips; LSTM/GRU
    and attention layers are rebuilt from their tensors, as :func:`from_torch_state_dict` does).
    ``template`` / ``mapping`` / ``kinds`` / ``batchnorm`` / ``merge_rnn_biases`` / ``sharding``: as in
    :func:`convert_checkpoint` (``sharding=None`` takes each template leaf's ``.sharding``,
    e.g. from ``jax.eval_shape`` under a mesh, else the default device).

    Returns ``{'params': ..., 'batch_stats': ...}`` of ``jax.Array``.

    >>> variables = jaxinit.load_torch_checkpoint("bert/", abstract, sharding="fsdp")  # doctest: +SKIP
    """
    who = "jaxinit.load_torch_checkpoint"
    reader = torch_reader(path, who)
    out: dict = {}
    stream_torch_to_flax(reader, out.__setitem__, template=template, sharding=sharding, mapping=mapping, kinds=kinds,
                         batchnorm=batchnorm, merge_rnn_biases=merge_rnn_biases, who=who)
    return _core.unflatten_flax(out)
