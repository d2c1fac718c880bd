r"""NNX under :class:`jaxinit.amp.Autocast`: the rules of ``jaxinit._src.amp_rules`` applied to the
module instances of an NNX graph (``Autocast.nnx``).

NNX modules are objects, not interceptable calls: for the duration of ``with ac.nnx(model):`` each
instance of a registered kind has its class swapped for a subclass whose ``__call__`` runs the rule
with the instance ITSELF (``rule(policy, module, next_fun, args, kwargs)``, ``next_fun`` the
original ``__call__``); the classes are restored on exit. The subclass is part of NNX's
``GraphDef``, so ``nnx.jit`` / ``nnx.grad`` / ``nnx.value_and_grad`` rebuild the module inside the
trace with it and the rule reads the traced parameters (the gradients flow through them); one
subclass per (class, policy) keeps the ``nnx.jit`` cache: a second ``with`` block reuses the trace,
and the plain model after the block has its own. The rules are the Linen ones' (shared code):

* ``Linear``/``LinearGeneral``/``Conv``/``ConvTranspose``: Flax's ``promote_dtype`` and product
  hooks set on the instance during its call (one rounding, the bias added in float32);
* ``LayerNorm``: ATen's float32 CPU kernel for a float32 input (:func:`amp_rules.aten_layer_norm`),
  else :func:`amp_rules.normalization_rule`; ``GroupNorm``/``RMSNorm``/``flax.nnx.BatchNorm``: the
  normalization rule; ``jaxinit.nnx.BatchNorm``: ATen's mixed-dtype training kernel where
  :func:`amp_rules.aten_batch_norm_applies`, else the normalization rule;
* ``MultiHeadAttention``: torch's ``nn.MultiheadAttention(batch_first=True)`` as
  :func:`amp_rules.attention_rule` (one stacked in-projection, rounded twice for a batched input,
  torch's flash attention).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax.numpy as jnp

from _jaxinit import autocast_table as _table
from _jaxinit.errors import InitError
from jaxinit._src import amp_rules as R
from jaxinit._src.amp import STATE, Autocast
from jaxinit._src.amp_round import round_low

NnxRule = Callable[[Autocast, Any, Callable, tuple, dict], Any]
_NNX_RULES: dict[Any, NnxRule] = {}
_SUBCLASSES: dict[tuple[type, Autocast], type] = {}
_LOADED = False


def register_nnx_rule(module_cls: type, rule: NnxRule) -> None:
    """Run ``module_cls.__call__`` (and its subclasses') inside ``Autocast.nnx`` through
    ``rule(policy, module, next_fun, args, kwargs)`` (the Linen rules' signature)."""
    _load_default_rules()
    _NNX_RULES[module_cls] = rule
    _SUBCLASSES.clear()  # the cached subclasses call the rules they were made with


def find_nnx_rule(cls: type) -> NnxRule | None:
    _load_default_rules()
    for klass in cls.__mro__:
        if klass in _NNX_RULES:
            return _NNX_RULES[klass]
    return None


def base_class(cls: type) -> type:
    """The module class an autocast subclass stands for (``cls`` itself otherwise)."""
    return getattr(cls, "_autocast_base", cls)


def autocast_class(policy: Autocast, cls: type) -> type | None:
    """The subclass of ``cls`` whose ``__call__`` runs the NNX rule under ``policy`` (cached per
    class and policy); the plain class under a disabled policy; None when no rule applies."""
    cls = base_class(cls)
    rule = find_nnx_rule(cls)
    if rule is None:
        return None
    if not policy.enabled:
        return cls
    key = (cls, policy)
    if key not in _SUBCLASSES:
        def __call__(self, *args, **kwargs):
            return rule(policy, self, functools.partial(cls.__call__, self), args, kwargs)

        _SUBCLASSES[key] = type(cls.__name__, (cls,), {
            "__call__": __call__, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "_autocast_base": cls, "__doc__": cls.__doc__})
    return _SUBCLASSES[key]


def _with_attributes(module, attrs: dict[str, Any], fn: Callable) -> Any:
    """``fn()`` with ``attrs`` set on the instance ``module``, restored afterwards."""
    old = {k: module.__dict__[k] for k in attrs if k in module.__dict__}
    for k, v in attrs.items():
        object.__setattr__(module, k, v)
    try:
        return fn()
    finally:
        for k in attrs:
            if k in old:
                object.__setattr__(module, k, old[k])
            else:
                object.__delattr__(module, k)


def product_hooks(policy: Autocast, module) -> dict[str, Any]:
    """Hooks for an NNX product module: ``promote_dtype`` casts input and kernel to the low dtype
    and hands the module a zero bias; the product hook adds the module's real bias (the instance's
    own, traced under ``nnx.grad``) in float32 and rounds once, so the module's own ``y += bias``
    adds an exact zero (``ConvTranspose``, whose ``lax.conv_transpose`` takes no product hook:
    low-dtype operands and bias, ``preferred_element_type=float32``, the rule rounds once). Inside an attention whose in-projection torch rounds twice
    (``STATE.round_product``) the product is rounded before the bias is added."""
    from flax import nnx

    low, f32 = policy.dtype, jnp.float32
    if isinstance(module, nnx.ConvTranspose):  # lax.conv_transpose: float32 result, rounded by the rule
        if policy.policy("conv_transpose2d.input") != _table.LOW:
            return {}
        return {"promote_dtype": lambda args, dtype=None, inexact=True: policy.promote_dtype(*args),
                "preferred_element_type": f32}
    if isinstance(module, (nnx.Linear, nnx.LinearGeneral)):
        op, hook, base = "linear", "dot_general", policy.dot_general
    else:
        op, hook, base = "conv2d", "conv_general_dilated", policy.conv_general_dilated
    if policy.policy(op) != _table.LOW:
        return {}

    def promote(args, dtype=None, inexact=True):
        x, k, b = args
        return round_low(x, low), round_low(k, low), None if b is None else jnp.zeros(b.shape, low)

    def product(*args, **kwargs):
        kwargs.pop("preferred_element_type", None)
        kwargs.pop("out_sharding", None)
        y = base(*args, **kwargs)
        if getattr(STATE, "round_product", False):
            y = round_low(y, low).astype(f32)
        if module.bias is not None:
            b = round_low(module.bias[...], low).astype(f32)
            y = y + jnp.reshape(b, (1,) * (y.ndim - b.ndim) + b.shape)
        return round_low(y, low)

    return {"promote_dtype": promote, hook: product}


def product_rule(policy: Autocast, module, next_fun, args, kwargs):
    """NNX ``Linear``/``LinearGeneral``/``Conv``/``ConvTranspose`` (:func:`product_hooks`)."""
    hooks = product_hooks(policy, module)
    if not hooks:
        return next_fun(*args, **kwargs)
    return round_low(_with_attributes(module, hooks, lambda: next_fun(*args, **kwargs)), policy.dtype)


def _value(v):
    return None if v is None else v[...]


def layer_norm_rule(policy: Autocast, module, next_fun, args, kwargs):
    """``flax.nnx.LayerNorm`` as :func:`amp_rules.layer_norm_rule` runs the Linen one."""
    x = args[0] if args else kwargs.get("x")
    axes = R.aten_layer_norm_axes(policy, module, x, kwargs.get("mask"))
    if axes is not None:
        return R.aten_layer_norm(module, x, axes, _value(module.scale), _value(module.bias))
    return _NORM["layer_norm"](policy, module, next_fun, args, kwargs)


def batch_norm_rule(policy: Autocast, module, next_fun, args, kwargs):
    """``jaxinit.nnx.BatchNorm`` as :func:`amp_rules.batch_norm_rule` runs the Linen one: training
    on a bf16/fp16 input in ATen's mixed-dtype kernel order (output and running statistics)."""
    x = args[0] if args else kwargs.get("x")
    ura = kwargs.get("use_running_average", args[1] if len(args) > 1 else None)
    if R.aten_batch_norm_applies(policy, module, x, ura, kwargs.get("mask"), module.use_bias):
        from jaxinit._src.aten_batch_norm import batch_norm_train

        y, mean, var = batch_norm_train(x, module.scale[...], module.bias[...], module.mean[...], module.var[...],
                                        float(module.momentum), float(module.eps))
        module.mean[...], module.var[...] = mean, var
        module.num_batches_tracked[...] = module.num_batches_tracked[...] + 1
        return y
    return _NORM["batch_norm"](policy, module, next_fun, args, kwargs)


def attention_rule(policy: Autocast, module, next_fun, args, kwargs):
    """``flax.nnx.MultiHeadAttention`` as :func:`amp_rules.attention_rule` (``batch_first=True``)
    runs the Linen one: self-attention with biases (no mask, decode, normalize_qk, sow_weights or
    causal flag) as ONE stacked in-projection, torch's attention and output projection; any other
    call keeps Flax's projections (rounded as torch's) around torch's attention."""
    if policy.policy("scaled_dot_product_attention") != _table.LOW:
        return next_fun(*args, **kwargs)
    deterministic = kwargs.get("deterministic")
    deterministic = module.deterministic if deterministic is None else deterministic
    if module.dropout_rate > 0.0 and not deterministic:
        raise InitError("Autocast: attention dropout under autocast is not supported yet: run the "
                        "MultiHeadAttention with deterministic=True or dropout_rate=0.")
    inputs_q = args[0] if args else kwargs["inputs_q"]
    others = [a for a in list(args[1:3]) + [kwargs.get("inputs_k"), kwargs.get("inputs_v")] if a is not None]
    twice = jnp.ndim(inputs_q) >= 3  # torch's batch_first module transposes a batched input
    decode = kwargs.get("decode")
    decode = module.decode if decode is None else decode
    extra = {k for k, v in kwargs.items() if v is not None and v is not False} - {"inputs_k", "inputs_v", "deterministic", "rngs"}
    if all(a is inputs_q for a in others) and not decode and not module.normalize_qk and module.use_bias and not extra:
        params = {n: {"kernel": getattr(module, n).kernel[...], "bias": getattr(module, n).bias[...]}
                  for n in ("query", "key", "value", "out")}
        return R.fused_self_attention(policy, params, inputs_q, twice)
    STATE.round_product = twice
    try:
        return _with_attributes(module, {"attention_fn": R.sdpa_attention_fn(policy)},
                                lambda: next_fun(*args, **kwargs))
    finally:
        STATE.round_product = False


_NORM = {op: R.normalization_rule(op) for op in ("layer_norm", "batch_norm", "group_norm", "rms_norm")}


def _load_default_rules() -> None:
    global _LOADED
    if _LOADED:
        return
    from flax import nnx

    from jaxinit._src.batchnorm import NnxBatchNorm

    _LOADED = True
    defaults: dict[Any, NnxRule] = {
        nnx.Linear: product_rule, nnx.LinearGeneral: product_rule, nnx.Conv: product_rule,
        nnx.ConvTranspose: product_rule, nnx.LayerNorm: layer_norm_rule, NnxBatchNorm: batch_norm_rule,
        nnx.BatchNorm: _NORM["batch_norm"], nnx.GroupNorm: _NORM["group_norm"], nnx.RMSNorm: _NORM["rms_norm"],
        nnx.MultiHeadAttention: attention_rule,
    }
    for cls, rule in defaults.items():
        _NNX_RULES.setdefault(cls, rule)
