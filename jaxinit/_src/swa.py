r"""``torch.optim.swa_utils`` for JAX/Flax: weight averaging (SWA, EMA) and ``update_bn``.

:func:`averaged_model` is ``AveragedModel`` as a pair of pure functions over a params (or
Flax variables) pytree: ``init(variables)`` copies them (torch deep-copies the model),
``update(state, variables)`` is ``update_parameters(model)``: the FIRST update copies the
current weights, later ones average them with ``multi_avg_fn`` (default: SWA's running mean).
The EMA of weights is ``averaged_model(get_ema_multi_avg_fn(decay))``, done the way torch
does it: copy, then ``lerp(avg, current, 1 - decay)`` with torch's ``lerp`` formula.
The SWA learning rate is the schedule :func:`jaxinit.optim.swalr`.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from _jaxinit.errors import InitError


def _torch_lerp(start, end, weight):
    """``torch.lerp`` with torch's formula: ``start + w (end - start)`` for ``|w| < 0.5``,
    else ``end - (end - start)(1 - w)`` (aten's lerp kernel)."""
    if isinstance(weight, (int, float)):
        return start + weight * (end - start) if abs(weight) < 0.5 else end - (end - start) * (1 - weight)
    w = jnp.asarray(weight, start.dtype)
    return jnp.where(jnp.abs(w) < 0.5, start + w * (end - start), end - (end - start) * (1 - w))


def _floating(x) -> bool:
    return jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable:
    """torch's ``get_ema_multi_avg_fn``: ``avg = lerp(avg, current, 1 - decay)`` (floating leaves);
    ``avg * decay + current * (1 - decay)`` truncated for integer leaves (e.g. ``num_batches_tracked``)."""
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
        raise InitError(f"get_ema_multi_avg_fn: Invalid decay value {decay!r} provided. Please provide a value in "
                        "[0,1] range (as torch says); e.g. decay=0.999.")

    def ema_update(averaged: Sequence[Any], current: Sequence[Any], n_averaged) -> list:
        del n_averaged
        # integer leaves: torch computes int * float in its default dtype (float32), then truncates
        return [_torch_lerp(a, c, 1 - decay) if _floating(a) else
                (a.astype(jnp.float32) * jnp.float32(decay) + c.astype(jnp.float32) * jnp.float32(1 - decay)
                 ).astype(a.dtype) for a, c in zip(averaged, current)]

    return ema_update


def get_swa_multi_avg_fn() -> Callable:
    """torch's ``get_swa_multi_avg_fn`` (what ``AveragedModel`` uses on CUDA): ``lerp(avg, current,
    1 / (n + 1))``; integer leaves ``avg + (current - avg) / (n + 1)`` truncated."""

    def swa_update(averaged: Sequence[Any], current: Sequence[Any], n_averaged) -> list:
        if not all(_floating(a) for a in averaged):
            raise InitError("get_swa_multi_avg_fn: integer leaves (e.g. num_batches_tracked with use_buffers=True) "
                            "make torch's version fail ('Integer division with addcdiv is no longer supported'); "
                            "use the default averaging (multi_avg_fn=None) for them.")
        w = 1 / (n_averaged + 1)
        return [_torch_lerp(a, c, w) for a, c in zip(averaged, current)]

    return swa_update


def _swa_cpu(averaged, current, n_averaged):
    """torch's AveragedModel default on CPU (``get_swa_avg_fn``): ``avg + (current - avg) / (n + 1)``.

    Integer leaves: torch's true division of integer tensors is in its default dtype (float32),
    then truncated. XLA on CPU divides by the (broadcast) ``n + 1`` through its reciprocal: one
    rounding more than torch per update (float leaves agree to a few ulps, not bitwise).
    """
    out = []
    for a, c in zip(averaged, current):
        if _floating(a):
            out.append(a + (c - a) / (n_averaged + 1).astype(a.dtype))
        else:
            f = jnp.float32
            out.append((a.astype(f) + (c - a).astype(f) / (n_averaged + 1).astype(f)).astype(a.dtype))
    return out


class AveragedModelState(NamedTuple):
    """``average``: the averaged variables (torch's ``AveragedModel.module``); ``n_averaged``: updates seen."""
    average: Any
    n_averaged: jax.Array


class AveragedModel(NamedTuple):
    """``init(variables) -> state`` and ``update(state, variables) -> state`` (torch's ``update_parameters``)."""
    init: Callable[[Any], AveragedModelState]
    update: Callable[[AveragedModelState, Any], AveragedModelState]


def _split(variables, use_buffers):
    """(averaged part, kept part): Flax variables average ``params`` (and the other collections with
    ``use_buffers``, like torch's buffers); any other pytree is all parameters."""
    if isinstance(variables, Mapping) and "params" in variables and not use_buffers:
        return {"params": variables["params"]}, {k: v for k, v in variables.items() if k != "params"}
    return variables, None


def averaged_model(multi_avg_fn: Callable | None = None, use_buffers: bool = False) -> AveragedModel:
    r"""torch's ``AveragedModel(model, multi_avg_fn=..., use_buffers=...)`` as pure functions.

    ``update``: ``n_averaged == 0``: copy the variables; else
    ``average = multi_avg_fn(average, variables, n_averaged)`` leaf by leaf, where the default
    is torch's CPU SWA mean ``avg + (current - avg) / (n + 1)``; then ``n_averaged += 1``.
    For Flax variables (a dict with ``"params"``) only ``params`` are averaged and the other
    collections (``batch_stats``: torch's buffers) copied, unless ``use_buffers=True`` (then
    averaged too, as torch does with ``use_buffers=True``).

    Example (EMA of the weights, torch's ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))``)::

        ema = jaxinit.optim.averaged_model(jaxinit.optim.get_ema_multi_avg_fn(0.999))
        ema_state = ema.init(params)
        ...  # after each optimizer step:
        ema_state = ema.update(ema_state, params)   # ema_state.average: the EMA weights

    On CUDA torch's default SWA mean is ``get_swa_multi_avg_fn()`` (``lerp``, other rounding):
    pass it to match a CUDA run.
    """
    if not isinstance(use_buffers, bool):
        raise InitError(f"averaged_model: use_buffers must be True or False, got {use_buffers!r}.")
    if multi_avg_fn is not None and not callable(multi_avg_fn):
        raise InitError(f"averaged_model: multi_avg_fn must be a function (averaged, current, n_averaged) -> "
                        f"averaged, e.g. get_ema_multi_avg_fn(0.999), got {multi_avg_fn!r}.")
    avg_fn = multi_avg_fn or _swa_cpu

    def init(variables):
        return AveragedModelState(jax.tree.map(jnp.array, variables), jnp.zeros((), jnp.int32))

    def update(state, variables):
        avg_part, _ = _split(state.average, use_buffers)
        cur_part, kept = _split(variables, use_buffers)
        a_leaves, treedef = jax.tree.flatten(avg_part)
        c_leaves = treedef.flatten_up_to(cur_part)  # type: ignore[attr-defined]  # PyTreeDef method missing from jax's stubs
        n = state.n_averaged
        averaged = avg_fn(a_leaves, c_leaves, n)
        new = [jnp.where(n == 0, c, a).astype(c.dtype) for a, c in zip(averaged, c_leaves)]  # first: copy
        out = jax.tree.unflatten(treedef, new)
        if kept is not None:
            out = {**out, **jax.tree.map(jnp.array, kept)}
        return AveragedModelState(out, n + 1)

    return AveragedModel(init, update)


def update_bn(loader: Iterable[Any], model: Any, variables: Mapping, **apply_kwargs) -> dict:
    r"""torch's ``update_bn(loader, model)`` for a Flax Linen model: the BatchNorm statistics recomputed.

    Every ``batch_stats`` entry of a :class:`jaxinit.linen.BatchNorm` is reset (mean 0, var 1,
    ``num_batches_tracked`` 0), then ``model.apply(variables, x, **apply_kwargs,
    mutable=["batch_stats"])`` runs over the batches (the first element of a tuple/list batch,
    as torch) with ``momentum=None``: the running statistics become the cumulative average of
    the batch statistics, as torch's. Pass what puts the model in training mode (e.g.
    ``train=True``). ``flax.linen.BatchNorm`` has no cumulative average: refused. Returns the
    new variables.
    """
    import flax.linen as nn

    from jaxinit._src.batchnorm import LinenBatchNorm

    def reset(tree):
        if isinstance(tree, Mapping):
            if {"mean", "var", "num_batches_tracked"} <= set(tree):
                return {**tree, "mean": jnp.zeros_like(tree["mean"]), "var": jnp.ones_like(tree["var"]),
                        "num_batches_tracked": jnp.zeros_like(tree["num_batches_tracked"])}
            return {k: reset(v) for k, v in tree.items()}
        return tree

    def cumulative(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__":
            if isinstance(module, LinenBatchNorm):
                object.__setattr__(module, "momentum", None)  # this apply's clone only
            elif isinstance(module, nn.BatchNorm):
                raise InitError("update_bn: flax.linen.BatchNorm has no cumulative average (torch's momentum=None); "
                                "use jaxinit.linen.BatchNorm (torch's semantics) in the model.")
        return next_fun(*args, **kwargs)

    variables = {**variables, "batch_stats": reset(variables.get("batch_stats", {}))}
    if not jax.tree.leaves(variables["batch_stats"]):
        return variables  # no BatchNorm: torch returns at once
    with nn.intercept_methods(cumulative):
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            _, upd = model.apply(variables, x, **apply_kwargs, mutable=["batch_stats"])
            variables = {**variables, **upd}
    return variables
