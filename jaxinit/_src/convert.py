r"""PyTorch weights in Flax and Flax weights in PyTorch: "pretrained initialization".

Mirror of :mod:`torchinit._src.convert` (same functions, arguments and meanings).
The naming rule, the layout transposes and the strictness live once in
``_jaxinit.convert``; this module only turns arrays into ``jax.Array`` s and
walks NNX modules. torch is never imported here: torch tensors are read by duck
typing (a tensor's own module), and torch tensors are returned only when the
``template`` is a torch module or state dict (torch is then already imported).

Layouts (``_jaxinit.convert.LAYOUTS``)::

    torch Linear weight (out, in)            <-> Dense kernel (in, out)
    torch Conv weight (out, in/groups, *k)   <-> Conv kernel (*k, in/groups, out)
    torch ConvTranspose weight (in, out, *k) <-> ConvTranspose kernel (*k, in, out) spatially flipped
                                                 (transpose_kernel=True: (*k, out, in), not flipped)
    torch LSTM/GRU packed gates              <-> Flax per-gate cells (one bias per gate)
    torch MHA in_proj (3E, E)                <-> query/key/value kernels (E, heads, head_dim)

BatchNorm: torch's ``running_var`` is a running average of UNBIASED batch
variances, flax.linen.BatchNorm's of BIASED ones; both normalize by the stored
value in eval, so the value is copied unchanged (eval outputs identical).
``batchnorm='torch'`` (default) targets :class:`jaxinit.BatchNorm` (which
also keeps ``num_batches_tracked`` and continues training exactly as torch);
``batchnorm='flax'`` targets ``flax.linen.BatchNorm`` / ``nnx.BatchNorm`` (no
counter: dropped on the way in, 0 on the way out; further training there
accumulates biased variances, so running statistics drift from torch's).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from _jaxinit import checkpoint as _ckpt
from _jaxinit import convert as _core
from _jaxinit import training_state as _ts
from _jaxinit.errors import InitError


def unbox(tree):
    """Linen variables with partitioning metadata (``nn.Partitioned``) -> plain arrays."""
    if isinstance(tree, Mapping):
        from flax.core import meta

        # walked by hand: jax tree maps sort dict keys, and the keys' order (Linen's creation
        # order) is what suggest_mapping pairs layers by
        return {k: unbox(v) if isinstance(v, Mapping) else (v.unbox() if isinstance(v, meta.AxisMetadata) else v)
                for k, v in tree.items()}
    return tree


def is_nnx(x) -> bool:
    from flax import nnx

    return isinstance(x, nnx.Module)


def nnx_flat(module) -> tuple[dict, dict]:
    """``{(collection, str path): value}`` and ``{same key: variable}`` of an NNX module's
    ``nnx.Param`` (params) and ``nnx.BatchStat`` (batch_stats) variables."""
    from flax import nnx

    flat, handles = {}, {}
    for path, node in nnx.iter_graph(module):
        if isinstance(node, (nnx.Param, nnx.BatchStat)):
            coll = "params" if isinstance(node, nnx.Param) else "batch_stats"
            key = (coll, tuple(str(p) for p in path))
            flat[key] = node.get_value()
            handles[key] = node
    return flat, handles


def _nnx_kinds(module) -> dict:
    """Per-path kinds an NNX module's types settle (ConvTranspose and its transpose_kernel)."""
    from flax import nnx

    kinds = {}
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.ConvTranspose):
            kinds[".".join(str(p) for p in path)] = ("conv_transpose",
                                                     {"transpose_kernel": bool(node.transpose_kernel)})
    return kinds


def _nnx_transpose_kernel(module, default: bool, who: str) -> bool:
    flags = {o["transpose_kernel"] for _, o in _nnx_kinds(module).values()}
    if len(flags) > 1:
        raise InitError(f"{who}: the NNX model mixes ConvTranspose layers with transpose_kernel True and "
                        "False; convert it in two calls, each with mapping= for its layers.")
    return flags.pop() if flags else default


def torch_source(source, kinds, who):
    """(numpy arrays by torch name, groups, container types) of a torch module or state dict."""
    if hasattr(source, "state_dict") and hasattr(source, "named_modules"):
        sd = source.state_dict()
        arrays = {k: _core.to_numpy(v) for k, v in sd.items()}
        groups, containers = _core.groups_from_module(source, sd.keys(), kinds)
        return arrays, groups, containers
    if not isinstance(source, Mapping):
        raise InitError(f"{who}: `source` must be a torch nn.Module or a state dict {{name: tensor or array}}, "
                        f"got {type(source).__name__}.")
    arrays = {str(k): _core.to_numpy(v) for k, v in source.items()}
    return arrays, _core.groups_from_torch_names({k: v.shape for k, v in arrays.items()}, kinds), {}


def _check_x64(flat: Mapping, who: str) -> None:
    # jax's Config defines its flags as dynamic attributes (`_HAS_DYNAMIC_ATTRIBUTES`, a pytype
    # hint) that its type annotations do not declare; `config.read` refuses context-manager flags.
    if jax.config.jax_enable_x64:  # type: ignore[attr-defined]
        return
    wide = [_core.fname(k) for k, v in flat.items() if np.dtype(v.dtype).itemsize == 8 and
            np.dtype(v.dtype).kind in "fc"]
    if wide:
        raise InitError(f"{who}: {len(wide)} float64 array(s) ({', '.join(wide[:4])}{', ...' if len(wide) > 4 else ''}) "
                        "but JAX's x64 mode is off, so they would silently become float32. Fix: "
                        "jax.config.update('jax_enable_x64', True), or pass dtype=jnp.float32 to cast on purpose.")


def from_torch_state_dict(source: Any, template: Any = None, *, mapping: Mapping[str, str] | None = None,
                          kinds: Mapping[str, Any] | None = None, batchnorm: str = "torch",
                          merge_rnn_biases: bool = False, transpose_kernel: bool = False, dtype: Any = None):
    r"""Flax variables from a PyTorch module or ``state_dict`` (pretrained initialization).

    Args:
      source: a ``torch.nn.Module`` (its types decide each layer's kind) or a
        state dict ``{name: torch.Tensor or array}`` (e.g. from
        :func:`load_checkpoint`; kinds are inferred from names and shapes).
      template: the Flax variables to fill, for names, shapes and dtypes:
        ``model.init(...)`` or ``jax.eval_shape(model.init, ...)`` output, or an
        ``nnx.Module`` (updated IN PLACE and returned). With a template every
        template entry must be produced, nothing else, with the same shapes;
        without one, Flax names follow the torch names literally.
      mapping: ``{'torch.prefix': 'flax/path'}`` for names the default rule
        does not find (the longest matching prefix wins; the rest of the
        name follows the rule). Default rule: torch ``a.b.0.weight`` ->
        ``params/a/b/<x>/kernel`` with ``<x>`` the first of ``0``,
        ``layers_0``, ``layers/0``, ``<FlaxClass>_<k>`` (Linen auto name of
        the k-th sibling of that class) that the template holds.
      kinds: ``{'torch.prefix': kind}`` or ``(kind, options)`` where names
        are ambiguous (a state dict's >=3-D weight is a ``conv`` unless
        ``'conv_transpose'``). Kinds: ``_jaxinit.convert.KINDS``.
      batchnorm: ``'torch'`` (:class:`jaxinit.BatchNorm`: batch_stats mean,
        var, num_batches_tracked) or ``'flax'`` (``flax.linen.BatchNorm``:
        num_batches_tracked is dropped, on request). Values are copied
        unchanged: see the module docstring for the unbiased/biased variance.
      merge_rnn_biases: Flax's LSTM/GRU cells hold one bias where torch holds
        ``bias_ih + bias_hh``; when both are nonzero the Flax bias is their sum
        (not invertible): allowed only when True.
      transpose_kernel: the Flax ConvTranspose's ``transpose_kernel`` (NNX
        templates say it per layer).
      dtype: None keeps every dtype (a template dtype that differs is an
        error, except a float64 layer's float32 running statistics, which
        Flax creates whatever ``param_dtype`` and promotes at the first
        update: they are filled in float64); ``'template'`` casts to the
        template's; a dtype casts all floating arrays.

    Returns:
      ``{'params': ..., 'batch_stats': ...}`` of ``jax.Array`` (or the updated
      ``nnx.Module``). Raises :class:`~_jaxinit.convert.ConversionError`
      (an :class:`InitError`) listing EVERY missing / unexpected key, shape,
      dtype and value problem at once.

    >>> import torch, jax, jax.numpy as jnp, flax.linen as nn, jaxinit  # doctest: +SKIP
    >>> variables = jaxinit.from_torch_state_dict(torch.nn.Linear(3, 4), nn.Dense(4).init(jax.random.key(0), jnp.ones((1, 3))))  # doctest: +SKIP
    """
    who = "jaxinit.from_torch_state_dict"
    arrays, groups, containers = torch_source(source, kinds, who)
    nnx_target = template is not None and is_nnx(template)
    handles: dict = {}  # {key: nnx variable}, for an NNX target
    if nnx_target:
        tflat, handles = nnx_flat(template)
        transpose_kernel = _nnx_transpose_kernel(template, transpose_kernel, who)
    elif template is not None:
        tflat = _core.flatten_flax(unbox(template), who)
    else:
        tflat = None
    spec = None if tflat is None else _core.shape_dtypes(tflat)
    flat = _core.torch_to_flax(arrays, groups, template=spec, mapping=mapping, containers=containers,
                               batchnorm=batchnorm, merge_rnn_biases=merge_rnn_biases,
                               transpose_kernel=transpose_kernel, dtype=dtype, who=who)
    _check_x64(flat, who)
    if nnx_target:
        for key, arr in flat.items():
            handles[key].set_value(jnp.asarray(arr))
        return template
    return _core.unflatten_flax({k: jnp.asarray(v) for k, v in flat.items()})


def to_torch_state_dict(variables: Any, template: Any = None, *, mapping: Mapping[str, str] | None = None,
                        kinds: Mapping[str, Any] | None = None, batchnorm: str = "torch",
                        transpose_kernel: bool = False, dtype: Any = None):
    r"""A PyTorch ``state_dict`` from Flax variables: the inverse of :func:`from_torch_state_dict`.

    Args:
      variables: ``{'params': ..., 'batch_stats': ...}`` (Linen) or an ``nnx.Module``.
      template: the torch module (or its ``state_dict``) to load into: names,
        shapes, dtypes and layer kinds. Without it, torch names are the Flax
        paths joined by ``.`` (``Dense_0.weight``) and kinds come from Flax
        names (a >=3-D kernel is a ``conv`` unless ``kinds`` or the NNX type
        says ConvTranspose).
      mapping, kinds, batchnorm, transpose_kernel, dtype: as in
        :func:`from_torch_state_dict` (``mapping`` keys are torch prefixes).

    Returns:
      ``{name: array}``: torch tensors on the template's devices when the
      template holds torch tensors (then ``template.load_state_dict(result)``
      works), else numpy arrays (bfloat16 as ml_dtypes), ready for
      :func:`save_checkpoint`. Strict as :func:`from_torch_state_dict`.

    >>> sd = jaxinit.to_torch_state_dict(variables, torch_model)  # doctest: +SKIP
    >>> torch_model.load_state_dict(sd)  # doctest: +SKIP
    """
    who = "jaxinit.to_torch_state_dict"
    kinds = dict(kinds or {})
    if is_nnx(variables):
        flat, _ = nnx_flat(variables)
        transpose_kernel = _nnx_transpose_kernel(variables, transpose_kernel, who)
        if template is None:
            for path, spec in _nnx_kinds(variables).items():
                kinds.setdefault(path, spec)
    else:
        flat = _core.flatten_flax(unbox(variables), who)
    flat = {k: np.asarray(v) for k, v in flat.items()}
    tspec, groups, containers, devices, torch_mod = _core.torch_target(template, flat, kinds, who)
    out = _core.flax_to_torch(flat, groups, template=tspec, mapping=mapping, containers=containers,
                              batchnorm=batchnorm, transpose_kernel=transpose_kernel, dtype=dtype, who=who)
    if torch_mod is not None:
        return {k: _core.numpy_to_tensor(v, torch_mod, devices.get(k)) for k, v in out.items()}
    return {k: np.array(v, order="C", copy=True) for k, v in out.items()}


def load_checkpoint(path: str | os.PathLike):
    """Arrays of a ``.safetensors`` (or ``.pt``/``.pth``/``.bin``) file.

    Returns numpy arrays (bfloat16 as ml_dtypes) keyed as stored: a flat torch
    state dict, or, when every key is a Flax path (``params/Dense_0/kernel``,
    as :func:`save_checkpoint` writes Flax variables), nested Flax variables.
    ``.pt`` files need torch and are read with ``torch.load(weights_only=True)``:
    arbitrary pickled objects are never loaded. A malformed or truncated file
    raises :class:`InitError` naming the file and the problem.
    """
    who = "jaxinit.load_checkpoint"
    if _ckpt.file_format(path, who) == "safetensors":
        arrays, metadata = _ckpt.read_safetensors(path, who)
        if _ts.optimizer_file_body(metadata) is not None:  # an optimizer state (save_checkpoint wrote it whole)
            return _ts.read_optimizer_file(path, who)["state"]
    else:
        obj = _torch_load(path, who, optimizer_ok=True)
        if _ts.is_optimizer_state(obj):
            return _numpy_tree(obj)
        arrays = {k: _core.to_numpy(v) for k, v in obj.items()}
    return _ckpt.nest_if_flax(arrays)


def _torch_load(path, who, optimizer_ok: bool = False):
    try:
        import torch
    except ImportError as err:
        raise InitError(f"{who}: {os.fspath(path)!r} is a torch file; reading it needs torch. Save it as "
                        ".safetensors instead, or pip install torch.") from err
    obj = _ckpt.torch_load(torch, path, who)
    if optimizer_ok and _ts.is_optimizer_state(obj):  # torch.save(optimizer.state_dict()), weights_only=True
        return obj
    return _check_tensor_dict(obj, path, who)


def _numpy_tree(obj):
    if isinstance(obj, Mapping):
        return {k: _numpy_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_numpy_tree(v) for v in obj)
    return _core.to_numpy(obj) if _core.is_torch_tensor(obj) else obj


def _to_tensors(obj, torch):
    if isinstance(obj, Mapping):
        return {k: _to_tensors(v, torch) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_tensors(v, torch) for v in obj)
    if isinstance(obj, np.ndarray) or (hasattr(obj, "shape") and hasattr(obj, "dtype") and not _core.is_torch_tensor(obj)):
        return _core.numpy_to_tensor(np.asarray(obj), torch)
    return obj


def _check_tensor_dict(obj, path, who) -> dict:
    flat = _ckpt.flatten_for_file(obj, who) if isinstance(obj, Mapping) else None
    if flat is None or not all(_core.is_torch_tensor(v) for v in flat.values()):
        raise InitError(f"{who}: {os.fspath(path)!r} does not hold a dict of tensors "
                        f"(got {type(obj).__name__}); save a state_dict.")
    return flat


def save_checkpoint(path: str | os.PathLike, state: Mapping, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write a torch state dict or Flax variables to ``.safetensors`` (or ``.pt``).

    Flax variables are stored flat with ``/``-joined keys (``params/Dense_0/kernel``);
    dtypes are kept (bfloat16 included). ``.pt`` needs torch (``torch.save`` of a
    dict of tensors). ``metadata`` (str -> str) goes into the safetensors header.
    """
    who = "jaxinit.save_checkpoint"
    fmt = _ckpt.file_format(path, who)
    if _ts.is_optimizer_state(state):  # export_state's dict / a state_dict(): arrays + JSON (training_state.md)
        if fmt == "safetensors":
            _ts.write_optimizer_file(path, state, _core.to_numpy, who)
            return
        import torch

        torch.save(_to_tensors(state, torch), os.fspath(path))
        return
    flat = {k: _core.to_numpy(v) for k, v in _ckpt.flatten_for_file(state, who).items()}
    if fmt == "safetensors":
        _ckpt.write_safetensors(path, flat, metadata, who)
        return
    import torch

    torch.save({k: _core.numpy_to_tensor(v, torch) for k, v in flat.items()}, os.fspath(path))

