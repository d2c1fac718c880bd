"""Tracing for ``audit``: each model's modules, the order they run in and their input
shapes (torch under ``no_grad``, Flax under ``jax.eval_shape``, no computation). jax, flax
and torch are imported inside the functions."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from _jaxinit import arrays as _arr
from _jaxinit.errors import InitError
from _jaxinit.jax_and_torch import _common as shared


def flax_call_order(flax_module, flax_inputs, variables=None, train_kwarg="train", flax_call=None) -> list:
    """Paths (tuples) of a Linen / Hugging Face Flax model's modules in the order they run,
    traced under ``jax.eval_shape`` (no computation); an NNX model's in graph order."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    if flax_call is None and shared.is_hf_flax(flax_module):
        flax_call = shared.hf_call
    fxs = None if flax_inputs is None else [_arr.to_numpy(x) for x in shared.as_tuple(flax_inputs)]
    return flax_modules(flax_module, variables, fxs, train_kwarg, flax_call, jax, jnp, nnx)[1]


def template_call_order(flax_module, flax_inputs, template):
    """The Flax modules' run order when the model is given (None without it); ``template`` is
    used as the variables when it holds ``params`` (needs jax at call time)."""
    if flax_module is None:
        return None
    variables = template if isinstance(template, Mapping) and "params" in template else None
    return flax_call_order(flax_module, flax_inputs, variables)


TORCH_INPUT: dict = {}  # during one audit: each torch module's first input (the object itself)
FLAX_INPUT: dict = {}  # the same for the Flax modules (tracers)


def torch_modules(tm, xs):
    """{path: module}, [paths in execution order], {path: input shape} (torch traced when xs)."""
    import torch

    mods = dict(tm.named_modules())
    order, shapes = [], {}
    if xs is not None:
        handles = []
        for name, mod in mods.items():
            def pre(module, args, name=name):
                if name not in shapes and args and isinstance(args[0], torch.Tensor):
                    shapes[name] = tuple(args[0].shape)
                    TORCH_INPUT[name] = args[0]  # kept alive until the audit ends: identity = same input
                order.append(name)
            handles.append(mod.register_forward_pre_hook(pre))
        device = next((p.device for p in tm.parameters()), torch.device("cpu"))
        was = tm.training
        try:
            tm.eval()
            with torch.no_grad():
                tm(*[_arr.numpy_to_tensor(x, torch, device) for x in xs])
        finally:
            tm.train(was)
            for h in handles:
                h.remove()
    return mods, list(dict.fromkeys(order)), shapes


def flax_modules(model, variables, fxs, train_kwarg, flax_call, jax, jnp, nnx):
    """{path tuple: module}, [paths in call order], {path: input shape}, {(coll, path): spec}."""
    if isinstance(model, nnx.Module):
        mods: dict[tuple, Any] = {tuple(str(p) for p in path): node for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}
        from _jaxinit.jax_and_torch.twin import nnx_vars

        stats, params = nnx_vars(model, nnx)
        return mods, list(mods), {}, {**params, **stats}
    if fxs is None:
        raise InitError("audit: a Linen (or Hugging Face Flax) model's layers exist only while it runs: pass "
                        "`inputs` (torch layout; `flax_inputs` when Flax's layout differs).")
    import flax.linen as nn

    mods = {}
    order: list[tuple] = []
    shapes: dict[tuple, tuple] = {}

    def icpt(next_fun, args, kwargs, ctx):
        if ctx.method_name == "__call__":
            path = tuple(str(p) for p in ctx.module.path)
            mods.setdefault(path, ctx.module)
            order.append(path)
            if args and hasattr(args[0], "shape"):
                shapes.setdefault(path, (tuple(args[0].shape), np.dtype(args[0].dtype)))
                FLAX_INPUT.setdefault(path, args[0])
        return next_fun(*args, **kwargs)

    xf = [jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) for x in fxs]
    kw = shared.train_kwargs(model, train_kwarg, False)
    with nn.intercept_methods(icpt):
        if flax_call is not None:
            # the variables are an argument (not closed over): a template of ShapeDtypeStructs
            # (jax.eval_shape output) is then traced like arrays
            jax.eval_shape(lambda v, *x: shared.call_flax(flax_call, model, v, x, False)[0], variables, *xf)
            fvars = variables
        elif variables is not None:
            jax.eval_shape(lambda v, *x: model.apply(v, *x, **kw), variables, *xf)
            fvars = variables
        else:
            fvars = jax.eval_shape(lambda *x: model.init(jax.random.key(0), *x, **kw), *xf)
    flat = _arr.flatten_flax(fvars, "audit")
    return mods, list(dict.fromkeys(order)), shapes, flat

