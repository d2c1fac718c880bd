r"""Flax weights in PyTorch and PyTorch weights as Flax variables: the mirror of
:mod:`jaxinit._src.convert` (same functions, arguments and meanings).

jax is never imported: Flax variables are nested dicts ``{'params': {...},
'batch_stats': {...}}`` of numpy arrays or any array-likes (``np.asarray`` is
applied; bfloat16 comes as ml_dtypes.bfloat16). The naming rule, the layout
transposes and the strictness live once in ``_jaxinit.convert``; see
``_jaxinit.convert.LAYOUTS`` and the :mod:`jaxinit._src.convert` docstring for
the BatchNorm variance note (values are copied unchanged; ``batchnorm='torch'``
keeps ``num_batches_tracked``, ``'flax'`` has none).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from _jaxinit import checkpoint as _ckpt
from _jaxinit import training_state as _ts
from _jaxinit import convert as _core
from _jaxinit.errors import InitError


def torch_source(source, kinds, who):
    if isinstance(source, torch.nn.Module):
        sd = source.state_dict()
        groups, containers = _core.groups_from_module(source, sd.keys(), kinds)
        return {k: _core.tensor_to_numpy(v) for k, v in sd.items()}, groups, containers
    if not isinstance(source, Mapping):
        raise InitError(f"{who}: `source` must be a torch nn.Module or a state dict {{name: tensor}}, "
                        f"got {type(source).__name__}.")
    arrays = {str(k): _core.to_numpy(v) for k, v in source.items()}
    return arrays, _core.groups_from_torch_names({k: v.shape for k, v in arrays.items()}, kinds), {}


def template_spec(template, who):
    flat = _core.flatten_flax(template, who)
    return _core.shape_dtypes(flat)


def from_torch_state_dict(source: Any, template: Any = None, *, mapping: Mapping[str, str] | None = None,
                          kinds: Mapping[str, Any] | None = None, batchnorm: str = "torch",
                          merge_rnn_biases: bool = False, transpose_kernel: bool = False, dtype: Any = None):
    r"""Flax variables (nested dicts of numpy arrays) from a torch module or ``state_dict``.

    The mirror of :func:`jaxinit.from_torch_state_dict`: same arguments and
    rules (template for names/shapes/dtypes, ``mapping``, ``kinds``,
    ``batchnorm``, ``merge_rnn_biases``, ``transpose_kernel``, ``dtype``);
    the result holds numpy arrays (bfloat16 as ml_dtypes) instead of
    ``jax.Array`` s, e.g. to save with :func:`save_checkpoint` for a Flax user.
    ``template`` is Flax variables as nested dicts of array-likes (anything
    with ``shape`` and ``dtype``). Raises one ``ConversionError`` (an
    :class:`InitError`) listing every problem.

    >>> import torch, torchinit
    >>> variables = torchinit.from_torch_state_dict(torch.nn.Linear(3, 4))
    >>> variables["params"]["kernel"].shape
    (3, 4)
    """
    who = "torchinit.from_torch_state_dict"
    arrays, groups, containers = torch_source(source, kinds, who)
    spec = None if template is None else template_spec(template, who)
    flat = _core.torch_to_flax(arrays, groups, template=spec, mapping=mapping, containers=containers,
                               batchnorm=batchnorm, merge_rnn_biases=merge_rnn_biases,
                               transpose_kernel=transpose_kernel, dtype=dtype, who=who)
    return _core.unflatten_flax({k: np.array(v, copy=True) for k, v in flat.items()})


def to_torch_state_dict(variables: Any, template: Any = None, *, mapping: Mapping[str, str] | None = None,
                        kinds: Mapping[str, Any] | None = None, batchnorm: str = "torch",
                        transpose_kernel: bool = False, dtype: Any = None):
    r"""A torch ``state_dict`` from Flax variables (nested dicts of array-likes).

    The mirror of :func:`jaxinit.to_torch_state_dict`. ``template`` is the torch
    module (or state dict) to load into: names, shapes, dtypes, devices and layer
    kinds; the result holds torch tensors on the template's devices, so
    ``template.load_state_dict(result)`` works. Without a template, torch names
    are the Flax paths joined by ``.`` and tensors are on the CPU.

    >>> import numpy as np, torch, torchinit
    >>> linear = torch.nn.Linear(3, 4)
    >>> v = {"params": {"kernel": np.ones((3, 4), np.float32), "bias": np.zeros(4, np.float32)}}
    >>> linear.load_state_dict(torchinit.to_torch_state_dict(v, linear))
    <All keys matched successfully>
    """
    who = "torchinit.to_torch_state_dict"
    flat = {k: _core.to_numpy(v) for k, v in _core.flatten_flax(variables, who).items()}
    tspec, groups, containers, devices, _ = _core.torch_target(template, flat, kinds or {}, who)
    out = _core.flax_to_torch(flat, groups, template=tspec, mapping=mapping, containers=containers,
                              batchnorm=batchnorm, transpose_kernel=transpose_kernel, dtype=dtype, who=who)
    return {k: _core.numpy_to_tensor(v, torch, devices.get(k)) for k, v in out.items()}


def load_checkpoint(path: str | os.PathLike):
    """Tensors of a ``.safetensors`` or ``.pt``/``.pth``/``.bin`` file (mirror of
    :func:`jaxinit.load_checkpoint`, which returns numpy arrays).

    ``.pt`` files are read with ``torch.load(weights_only=True)``: arbitrary
    pickled objects are never loaded. Keys that are all Flax paths
    (``params/Dense_0/kernel``) come back as nested Flax variables of numpy
    arrays (ready for :func:`to_torch_state_dict`); a flat state dict comes back
    as CPU tensors. A malformed or truncated file raises :class:`InitError`
    naming the file and the problem.
    """
    who = "torchinit.load_checkpoint"
    if _ckpt.file_format(path, who) == "safetensors":
        import safetensors.torch

        name = os.fspath(path)
        if not os.path.exists(name):
            raise FileNotFoundError(f"{who}: no such file: {name!r}")
        try:
            with safetensors.safe_open(name, framework="pt") as fh:
                body = _ts.optimizer_file_body(fh.metadata() or {})
            tensors = safetensors.torch.load_file(name) if body is None else None
        except Exception as err:  # SafetensorError, or a header the library rejects
            raise _ckpt.bad_file_error(name, os.path.getsize(name), err, who) from err
        if tensors is None:  # an optimizer state (save_checkpoint wrote it whole): tensors, torch's layout
            return _to_tensors(_ts.read_optimizer_file(name, who)["state"])
        nested = _ckpt.nest_if_flax(tensors)
        if nested is not tensors:
            return _ckpt.nest_if_flax({k: _core.tensor_to_numpy(v) for k, v in tensors.items()})
        return tensors
    obj = _ckpt.torch_load(torch, path, who)
    if _ts.is_optimizer_state(obj):  # torch.save(optimizer.state_dict())
        return obj
    flat = _ckpt.flatten_for_file(obj, who) if isinstance(obj, Mapping) else None
    if flat is None or not all(isinstance(v, torch.Tensor) for v in flat.values()):
        raise InitError(f"{who}: {os.fspath(path)!r} does not hold a dict of tensors "
                        f"(got {type(obj).__name__}); save a state_dict.")
    nested = _ckpt.nest_if_flax(flat)
    if nested is not flat:
        return _ckpt.nest_if_flax({k: _core.tensor_to_numpy(v).copy() for k, v in flat.items()})
    return flat


def _to_tensors(obj):
    """numpy arrays -> tensors through dicts, lists and tuples (what torch.load(weights_only=True) reads)."""
    if isinstance(obj, Mapping):
        return {k: _to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_tensors(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return _core.numpy_to_tensor(obj, torch)
    return obj


def save_checkpoint(path: str | os.PathLike, state: Mapping, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write a torch state dict or Flax variables to ``.safetensors`` (or ``.pt``): mirror of
    :func:`jaxinit.save_checkpoint` (Flax variables are stored with ``/``-joined keys;
    dtypes kept, bfloat16 included)."""
    who = "torchinit.save_checkpoint"
    fmt = _ckpt.file_format(path, who)
    if _ts.is_optimizer_state(state):  # state_dict() / export_state's dict: arrays + JSON (training_state.md)
        if fmt == "safetensors":
            _ts.write_optimizer_file(path, state, _core.to_numpy, who)
        else:
            torch.save(_to_tensors(state), os.fspath(path))
        return
    flat = _ckpt.flatten_for_file(state, who)
    if fmt == "safetensors":
        _ckpt.write_safetensors(path, {k: np.array(_core.to_numpy(v), order="C", copy=True) for k, v in flat.items()},
                                metadata, who)
        return
    torch.save({k: (v.detach().cpu().contiguous() if isinstance(v, torch.Tensor)
                    else _core.numpy_to_tensor(np.asarray(v), torch)) for k, v in flat.items()}, os.fspath(path))

