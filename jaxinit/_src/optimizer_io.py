r"""Optimizer state at scale, the JAX side: torch optimizer state on disk (a DCP directory, or
jaxinit's optimizer safetensors as one file or a Hugging Face-style sharded directory) into
optax state whose buffers are created directly in their parameters' shardings, one tensor (one
device's slice) at a time; and optax state back into those files, one tensor at a time.
Mirror: :mod:`torchinit._src.optimizer_io`. The files: :mod:`_jaxinit.optimizer_files`.

* :func:`load_optimizer_state` ``(src, params, tx)``: ``import_state``'s result (same matching
  rules, same checks, bitwise the same values) built as ``jax.eval_shape(tx.init, params)``
  filled buffer by buffer: each buffer is made like a parameter of
  :func:`jaxinit.load_torch_checkpoint` (each device's shard read as the matching slice of the
  file, put on its device, its host copy dropped), in the sharding of its parameter
  (``params``' leaves: ``jax.Array`` s or ``jax.ShapeDtypeStruct(..., sharding=...)``) or
  ``sharding=`` (as in :func:`jaxinit.convert_checkpoint`). Save the result with Orbax
  (``orbax.checkpoint.v1.save``) as any optax state.
* :func:`save_optimizer_state` ``(dst, opt_state, params)``: torch's ``state_dict()`` layout
  (:func:`jaxinit.optim.export_state`'s), each buffer copied to the host when it is written:
  ``format='safetensors'`` (one file, or a sharded directory above ``max_shard_size``) or
  ``format='dcp'`` (torch's DCP writer, FQN-keyed as ``get_optimizer_state_dict`` makes it, so
  ``torch.distributed.checkpoint.state_dict.set_optimizer_state_dict`` loads it; needs torch).

torch is imported only to read or write a DCP directory.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _jaxinit import optim_convert as _core
from _jaxinit import optimizer_files as _of
from _jaxinit import sharded as _sh
from _jaxinit.arrays import to_numpy
from _jaxinit.errors import InitError
from jaxinit._src import checkpoint_io as _cio
from jaxinit._src import optim_convert as _oc
from jaxinit._src import lbfgs_convert as _lbfgs_convert


def _torch_if_needed(path, who):
    if not _of.is_dcp(path):
        return None
    try:
        import torch
    except ImportError as err:
        raise InitError(f"{who}: {os.fspath(path)!r} is a torch.distributed.checkpoint (DCP) directory; reading or "
                        "writing one needs torch (pip install torch).") from err
    return torch


def load_optimizer_state(src: str | os.PathLike, params: Any, tx: optax.GradientTransformation, *,
                         sharding: Any = None, step: int | None = None, optimizer_key: str | None = None):
    r"""The optax state of ``tx`` for ``params`` from a torch optimizer state on disk, every buffer
    created directly in its sharding, one tensor at a time.

    ``src``: a ``torch.distributed.checkpoint`` directory holding ``optimizer.state_dict()`` or
    ``get_optimizer_state_dict(model, optimizer)`` (under ``optimizer_key``, default: the only
    optimizer state there), or jaxinit's optimizer safetensors (a file, or a directory with
    ``optimizer.safetensors.index.json``, written by :func:`save_optimizer_state` /
    ``torchinit.optim.save_optimizer_state``). ``params``: the params ``tx`` updates, in torch's
    layout, matched as in :func:`jaxinit.optim.import_state` (a dict keyed by torch names, or a
    list where no two same-shaped parameters could swap); leaves may be ``jax.Array`` s or
    ``jax.ShapeDtypeStruct`` s (no data needed). ``sharding``: None (each buffer in its
    parameter's ``.sharding``), ``'fsdp'``, ``'replicated'``, a ``jax.sharding.Sharding`` or a
    callable ``(name, shape) -> Sharding``. ``step``: for torch's SGD (it keeps no step count).

    Each device's shard of a buffer is read as that slice of the file (``safe_open(...).get_slice``;
    a DCP tensor is loaded whole once per buffer), put on its device and dropped from the host:
    peak host memory is about one buffer, never the state. Values are bitwise the file's;
    buffers without torch state are ``tx.init``'s.

    >>> opt_state = jaxinit.optim.load_optimizer_state("dcp_ckpt", abstract_params, tx)  # doctest: +SKIP
    """
    who = "jaxinit.optim.load_optimizer_state"
    body = _of.open_optimizer_state(src, who, _torch_if_needed(src, who), optimizer_key)
    sd = body["state"]
    if _lbfgs_convert.is_lbfgs(tx):  # its state is a history, not per-parameter buffers: read whole (small)
        return _oc.import_state(_of.numpy_state(sd), params, tx, step=step)
    tstate = _core.neutral_state(sd, lambda x: x)  # tensors stay lazy; steps are read (0-d)
    groups = sd.get("param_groups", [])
    the_step = _core.common_step(tstate, step if step is not None else sd.get("step"), groups, who)
    n = sum(len(g["params"]) for g in groups) if groups else max(tstate, default=-1) + 1
    shapes = body.get("shapes")
    shapes = [tuple(x) for x in shapes] if shapes is not None and len(shapes) == n else _oc.torch_state_shapes(tstate, n)
    tp = _core.torch_params(None, shapes, _core.state_groups(groups, n), _core.names_of(groups), None, who)
    paths, leaves, _ = _oc.path_leaves(params)
    order = _core.match(paths, [tuple(np.shape(x)) for x in leaves], tp, isinstance(params, Mapping), who)

    def source(f, k):
        return tstate.get(order[k], {}).get(f)

    def make(f, k, src, leaf):
        if src is None:
            return _Init(k)  # tx.init's value, put in parameter k's sharding by _fill_rest
        shape = tuple(leaf.shape)
        if sharding is None and tuple(np.shape(leaves[k])) != shape:
            sh = jax.sharding.SingleDeviceSharding(jax.devices()[0])  # e.g. Adafactor's row variance
        else:
            sh = _cio.sharding_for(sharding, paths[k], shape, leaves[k], who)
        if not isinstance(src, _of.LazyArray):
            return jax.device_put(np.asarray(src), sh)
        return _cio.make_array(shape, sh, lambda index: src.read(index if shape else None))

    problems: list[str] = []
    filler = _oc.state_filler(the_step, order, source, paths, problems, make)
    abstract = jax.eval_shape(tx.init, params)
    state = _oc.walk_states(abstract, filler)  # what the files do not give stays a ShapeDtypeStruct
    if problems:
        raise InitError(f"{who}: the torch state in {os.fspath(src)!r} does not fit these params:\n"
                        + "\n".join(problems) + "\nFix: pass params with the torch parameters' shapes and dtypes, "
                        "keyed by torch names.")
    return _fill_rest(state, params, tx, paths, leaves, sharding, who)


class _Init:
    """A buffer the files do not give (its parameter never stepped): ``tx.init``'s, in parameter ``k``'s sharding."""

    def __init__(self, k: int):
        self.k = k


def _fill_rest(state, params, tx, paths, leaves, sharding, who):
    """Leaves that the files do not give (counters of other transforms, hyperparameters, buffers of
    parameters that never stepped): ``tx.init``'s, computed in one jitted program that returns only
    them (XLA drops the rest), each buffer then put in its parameter's sharding."""
    flat, treedef = jax.tree_util.tree_flatten(state)
    todo = [i for i, x in enumerate(flat) if isinstance(x, (jax.ShapeDtypeStruct, _Init))]
    if not todo:
        return jax.tree_util.tree_unflatten(treedef, flat)
    concrete = all(isinstance(x, (jax.Array, np.ndarray)) for x in leaves)

    def pick():
        p = params if concrete else jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), params)
        init = jax.tree_util.tree_leaves(tx.init(p))
        return [init[i] for i in todo]

    values = jax.jit(pick)()
    for i, v in zip(todo, values):
        k = flat[i].k if isinstance(flat[i], _Init) else None
        if k is not None and tuple(v.shape) == tuple(np.shape(leaves[k])) and (
                sharding is not None or isinstance(getattr(leaves[k], "sharding", None), jax.sharding.Sharding)):
            v = jax.device_put(v, _cio.sharding_for(sharding, paths[k], tuple(v.shape), leaves[k], who))
        flat[i] = v
    return jax.tree_util.tree_unflatten(treedef, flat)


def save_optimizer_state(dst: str | os.PathLike, opt_state: Any, params: Mapping, *, optimizer: Any = None,
                         param_names: Sequence[str] | None = None, format: str = "safetensors",
                         max_shard_size: int | str = "5GB") -> None:
    r"""Write an optax state of :mod:`jaxinit.optim` in torch's ``state_dict()`` layout, one buffer
    at a time (each copied to the host only when it is written).

    ``params``: a dict keyed by torch names (torch layout); ``param_names``: the torch order
    (default: ``params``' keys); ``optimizer``: a stored optimizer (``TrainingState.optimizer``)
    whose class, param groups and hyperparameters are written with the state (so
    ``jaxinit.optim.from_torch`` rebuilds the transformation from the files). ``format``:
    ``'safetensors'`` (``dst`` ending in ``.safetensors``: one file; else a directory with
    ``optimizer.safetensors`` or, above ``max_shard_size``, ``optimizer-0000i-of-0000n.safetensors``
    + ``optimizer.safetensors.index.json``) or ``'dcp'`` (a DCP directory in
    ``get_optimizer_state_dict``'s FQN-keyed form; torch's ``set_optimizer_state_dict`` loads it).
    ``dst`` must not exist; a failure leaves nothing there.

    >>> jaxinit.optim.save_optimizer_state("opt_ckpt", opt_state, params, max_shard_size="2GB")  # doctest: +SKIP
    """
    who = "jaxinit.optim.save_optimizer_state"
    if format not in ("safetensors", "dcp"):
        raise InitError(f"{who}: format must be 'safetensors' or 'dcp', got {format!r}.")
    if os.path.exists(os.fspath(dst)):
        raise FileExistsError(f"{who}: {os.fspath(dst)!r} exists; remove it or choose another destination.")
    if not isinstance(params, Mapping):
        raise InitError(f"{who}: params must be a dict keyed by torch names (torch layout), got "
                        f"{type(params).__name__}.")
    from _jaxinit import training_state as _ts

    names = list(param_names) if param_names is not None else list(params)
    extra: dict = {}
    if optimizer is not None:
        if not isinstance(optimizer, _ts.StoredOptimizer):
            raise InitError(f"{who}: optimizer must be the optimizer of a TrainingState read by load_training_state, "
                            f"got {type(optimizer).__name__}.")
        sd = _oc.export_state_with(opt_state, dict(params), None, "torch", optimizer, lambda leaf: leaf)
        for group, stored in zip(sd["param_groups"], optimizer.state_dict()["param_groups"]):
            group.update({k: v for k, v in stored.items() if k not in ("params", "param_names")})
        cls = type(optimizer).__name__
        extra = {"class": None if cls == "StoredOptimizer" else cls, "defaults": dict(optimizer.defaults),
                 "shapes": [list(p.shape) for g in optimizer.param_groups for p in g["params"]],
                 "dtypes": [str(p.dtype) for g in optimizer.param_groups for p in g["params"]]}
    else:
        sd = _oc.export_state_with(opt_state, dict(params), names, "torch", None, lambda leaf: leaf)
    if format == "safetensors":
        _of.write_optimizer_safetensors(dst, sd, to_numpy, who, extra, _sh.parse_size(max_shard_size, who),
                                        blocks=_shard_blocks)
        return
    try:
        import torch
    except ImportError as err:
        raise InitError(f"{who}: format='dcp' writes with torch's DCP writer: pip install torch.") from err
    _of.write_optimizer_dcp(dst, sd, torch, who, extra, host_copy)


def _shard_blocks(x):
    """A ``jax.Array``'s distinct addressable shards as ``(index, host block)``, one at a time
    (``np.asarray`` of the whole array would gather it, and jax keeps that copy on the array)."""
    if not isinstance(x, jax.Array):
        return None
    seen = set()
    out = []
    for s in x.addressable_shards:
        key = tuple((sl.start, sl.stop) for sl in s.index)
        if key not in seen:
            seen.add(key)
            out.append(s)
    return ((tuple(s.index), np.asarray(s.data)) for s in out)


def host_copy(x):
    """A whole buffer on the host, gathered shard by shard (not cached on the array)."""
    parts = _shard_blocks(x) if isinstance(x, jax.Array) and x.ndim else None
    if parts is None:
        return to_numpy(x)
    host = np.empty(x.shape, x.dtype)
    for index, block in parts:
        host[index] = block
    return host
