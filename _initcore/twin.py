"""The twin check: one implementation behind ``jaxinit.twin_check`` and ``torchinit.twin_check``.

It is the one place that needs BOTH frameworks, so it imports jax, flax and torch
inside the function, never at import time (``_initcore`` stays framework-free).
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np

from _initcore import convert as _core
from _initcore.errors import InitError

MODES = ("eval", "train")


@contextlib.contextmanager
def _exact_precision(torch):
    """JAX matmuls/convs at "highest" precision and torch's TF32 off, restored afterwards."""
    import jax

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _maxdiff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InitError(f"twin_check: output shapes differ: torch {a.shape} vs Flax {b.shape}; pass "
                        "output_transform= to bring the Flax output into torch's layout.")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def twin_check(torch_module: Any, flax_module: Any, inputs: Any, *, variables: Any = None,
               flax_inputs: Any = None, output_transform: Any = None, modes: tuple = MODES,
               train_kwarg: str | None = "train", seed: int = 0, mapping=None, kinds=None,
               batchnorm: str = "torch", transpose_kernel: bool = False) -> dict:
    r"""Run a torch module and its Flax twin on the same inputs; report the largest differences.

    Both models must already hold the same weights (e.g. via
    ``from_torch_state_dict``). For each mode in ``modes`` ('eval', 'train'):
    the torch module (a deep copy: the caller's module is not touched) runs
    ``module(*inputs)`` after ``.train()``/``.eval()``; the Flax model runs
    ``flax_module.apply(variables, *flax_inputs, **{train_kwarg: train})``
    (Linen, ``mutable=['batch_stats']`` in train) or ``model(*flax_inputs)``
    after ``.train()``/``.eval()`` on a clone (NNX). The loss is
    ``sum(output * c)`` with a fixed random cotangent ``c`` (seeded by
    ``seed``), so the gradients are those of a generic scalar loss; torch's
    gradients are converted to the Flax layout by the same converter.
    JAX runs at matmul precision "highest" and torch with TF32 off.

    Args:
      inputs: an array (or tuple) in torch's layout (numpy or torch tensors).
      flax_inputs: the same inputs in Flax's layout (default: ``inputs``).
      output_transform: a jnp function bringing the Flax output into torch's
        layout (default identity), e.g. ``lambda y: y.transpose(0, 3, 1, 2)``.
      mapping, kinds, batchnorm, transpose_kernel: passed to the converter.

    Returns:
      ``{mode: {'output': max |torch - flax|, 'output_scale': max |torch|,
      'grad': max over params of max |diff|, 'worst_grad': its Flax path,
      'batch_stats': max |diff| of running statistics after the pass
      (train only)}}``.
    """
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise InitError(f"twin_check: `modes` must be a non-empty subset of {MODES}, got {modes!r}.")
    is_nnx = isinstance(flax_module, nnx.Module)
    if not is_nnx and variables is None:
        raise InitError("twin_check: a Linen module needs its `variables` (model.init(...) or converted "
                        "with from_torch_state_dict); an NNX module carries its own.")
    xs_np = [_core.to_numpy(x) for x in _as_tuple(inputs)]
    fx_np = xs_np if flax_inputs is None else [_core.to_numpy(x) for x in _as_tuple(flax_inputs)]
    transform = output_transform or (lambda y: y)
    device = next((p.device for p in torch_module.parameters()), torch.device("cpu"))
    report = {}
    with _exact_precision(torch):
        for mode in modes:
            train = mode == "train"
            # ---- torch
            tm = copy.deepcopy(torch_module)
            tm.train(train)
            for p in tm.parameters():
                p.grad = None
            xt = [_core.numpy_to_tensor(x, torch, device) for x in xs_np]
            yt = tm(*xt)
            yt_np = _core.to_numpy(yt)
            cot = np.random.default_rng(seed).standard_normal(yt_np.shape).astype(yt_np.dtype)
            (yt * _core.numpy_to_tensor(cot, torch, device)).sum().backward()
            sd = {k: v.detach() for k, v in tm.state_dict().items()}
            named = dict(tm.named_parameters())
            grad_sd = {k: (named[k].grad if k in named and named[k].grad is not None else v) for k, v in sd.items()}
            # ---- Flax
            xf = [jnp.asarray(x) for x in fx_np]
            c = jnp.asarray(cot)
            if is_nnx:
                model = nnx.clone(flax_module)
                model.train() if train else model.eval()

                def loss_nnx(m):
                    y = transform(m(*xf))
                    return jnp.sum(y * c), y

                (_, yf), g = nnx.value_and_grad(loss_nnx, has_aux=True)(model)
                flat_g = {("params", tuple(str(p) for p in path)): v
                          for path, v in _nnx_leaves(g, nnx)}
                stats, _ = _nnx_stats(model, nnx)
                fparams = {k: v for k, v in _nnx_stats(model, nnx)[1].items()}
            else:
                kw = {train_kwarg: train} if train_kwarg else {}
                rest = {k: v for k, v in variables.items() if k != "params"}

                def loss_linen(params):
                    if train and "batch_stats" in variables:
                        y, upd = flax_module.apply({"params": params, **rest}, *xf, mutable=["batch_stats"], **kw)
                    else:
                        y, upd = flax_module.apply({"params": params, **rest}, *xf, **kw), {}
                    y = transform(y)
                    return jnp.sum(y * c), (y, upd)

                # eager on purpose: a jit of these fresh closures would recompile on every call, while
                # eager primitives are compiled once per shape and reused by later checks
                (_, (yf, upd)), g = jax.value_and_grad(loss_linen, has_aux=True)(variables["params"])
                flat_g = _core.flatten_flax({"params": g}, "twin_check")
                new_vars = dict(variables)
                new_vars.update(upd)
                stats = {k: v for k, v in _core.flatten_flax(new_vars, "twin_check").items() if k[0] != "params"}
                fparams = _core.flatten_flax({"params": variables["params"]}, "twin_check")
            template = {**{k: _core.Spec(tuple(np.shape(v)), np.asarray(v).dtype) for k, v in fparams.items()},
                        **{k: _core.Spec(tuple(np.shape(v)), np.asarray(v).dtype) for k, v in stats.items()}}
            arrays = {k: _core.to_numpy(v) for k, v in grad_sd.items()}
            groups, containers = _core.groups_from_module(tm, arrays.keys(), kinds)
            conv = _core.torch_to_flax(arrays, groups, template=template, mapping=mapping, containers=containers,
                                       batchnorm=batchnorm, transpose_kernel=transpose_kernel, dtype="template",
                                       merge_rnn_biases=True, who="twin_check")
            entry = {"output": _maxdiff(yt_np, np.asarray(yf)),
                     "output_scale": float(np.max(np.abs(yt_np.astype(np.float64)))) if yt_np.size else 0.0}
            worst, worst_key = 0.0, None
            for key, gv in flat_g.items():
                d = _maxdiff(conv[key], np.asarray(gv))
                if worst_key is None or d > worst:
                    worst, worst_key = d, key
            entry["grad"] = worst
            entry["worst_grad"] = _core._fname(worst_key) if worst_key else None
            if train and stats:
                entry["batch_stats"] = max(_maxdiff(conv[k], np.asarray(v)) for k, v in stats.items())
            report[mode] = entry
    return report


def _nnx_leaves(state, nnx):
    for path, v in nnx.to_flat_state(state):
        yield path, (v.get_value() if hasattr(v, "get_value") else v)


def _nnx_stats(model, nnx):
    stats, params = {}, {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchStat):
            stats[("batch_stats", tuple(str(p) for p in path))] = node.get_value()
        elif isinstance(node, nnx.Param):
            params[("params", tuple(str(p) for p in path))] = node.get_value()
    return stats, params
