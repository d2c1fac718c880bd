r"""The Linen rules and NNX hooks through which :class:`jaxinit.amp.Autocast` runs Flax modules as
torch runs their twins under autocast (a registry: :func:`register_linen_rule`)."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from _jaxinit import autocast_table as _table
from _jaxinit.errors import InitError
from jaxinit._src.amp import STATE, Autocast, eligible
from jaxinit._src.amp_round import round_low

# ---------------------------------------------------------------------------- Linen rules (a registry)

LinenRule = Callable[[Autocast, Any, Callable, tuple, dict], Any]
_LINEN_RULES: dict[Any, LinenRule] = {}
_DEFAULT_RULES_LOADED = False


def register_linen_rule(module_cls: Any, rule: LinenRule) -> None:
    """Run ``module_cls.__call__`` (and its subclasses') under an :class:`Autocast` through
    ``rule(policy, module, next_fun, args, kwargs)``. The built-in rules cover Flax's Dense,
    DenseGeneral, Conv, ConvTranspose, MultiHeadDotProductAttention, LayerNorm, GroupNorm, RMSNorm,
    BatchNorm and ``jaxinit.BatchNorm``; :func:`low_precision_rule` and :func:`normalization_rule`
    are the two shapes a rule takes."""
    _LINEN_RULES[module_cls] = rule


def find_rule(cls) -> LinenRule | None:
    _load_default_rules()
    for klass in cls.__mro__:
        if klass in _LINEN_RULES:
            return _LINEN_RULES[klass]
    return None


def _apply_clone(module, updates, variables, args, kwargs):
    """``module`` with ``updates`` applied to ``variables`` (read-only), its own call not re-intercepted."""
    STATE.skip_next = True
    try:
        return module.clone(parent=None, **updates).apply(variables, *args, **kwargs)
    finally:
        STATE.skip_next = False


def _variables(module, next_fun, args, kwargs):
    if module.is_initializing():
        next_fun(*args, **kwargs)  # creates the parameters; the autocast result is computed below
    return {k: v for k, v in module.variables.items()}


def low_precision_rule(op: str, hooks: tuple[str, ...]) -> LinenRule:
    """A ``lower_precision_fp`` module (torch ``op``): clone it with Flax's hooks ``hooks``
    (``promote_dtype`` and ``dot_general``/``conv_general_dilated``) set to the policy's, apply it to
    the module's own variables, round the float32 result once."""
    def rule(policy: Autocast, module, next_fun, args, kwargs):
        if policy.policy(op) != _table.LOW:
            return next_fun(*args, **kwargs)
        variables = _variables(module, next_fun, args, kwargs)
        updates: dict[str, Any] = {"promote_dtype": policy.promote_dtype}
        for h in hooks:
            updates[h] = jnp.float32 if h == "preferred_element_type" else getattr(policy, h)
        if getattr(STATE, "round_product", False) and "dot_general" in updates:
            # an attention in-projection torch computes as matmul + add_ (see attention_rule): the
            # product rounded on its own, then the bias added and rounded again
            updates["dot_general"] = _rounded_product(policy)
        out = _apply_clone(module, updates, variables, args, kwargs)
        return jax.tree.map(lambda y: round_low(y, policy.dtype) if eligible(y) else y, out)
    return rule


def normalization_rule(op: str) -> LinenRule:
    """A normalization (torch ``op``): float32 inputs where torch forces the op to float32 (CUDA
    ``layer_norm``/``group_norm``/``rms_norm``); otherwise Flax's float32 computation rounded once
    to the input's dtype (torch's mixed-dtype kernels: a bf16 input gives a bf16 output)."""
    def rule(policy: Autocast, module, next_fun, args, kwargs):
        pol = policy.policy(op)
        if pol in (_table.FP32, _table.FP32_OPT, _table.FP32_APPEND):
            args = policy.cast(op, *args)
            return next_fun(*args, **kwargs)
        x = args[0] if args else next(iter(kwargs.values()))
        if not (eligible(x) and x.dtype != jnp.float32):
            return next_fun(*args, **kwargs)
        # one cast of the input to float32: its transpose rounds the input gradient ONCE (torch's
        # backward kernel computes it in float32 and rounds once); letting the module read the bf16
        # input in several places would round each path's gradient and add them in bf16
        args = (x.astype(jnp.float32),) + tuple(args[1:]) if args else args
        return round_low(next_fun(*args, **kwargs), x.dtype)
    return rule


_NORM_LAYER_NORM = normalization_rule("layer_norm")
_NORM_BATCH_NORM = normalization_rule("batch_norm")


def _trailing_axes(axes: Any, ndim: int) -> tuple[int, ...] | None:
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    norm = tuple(sorted(a % ndim for a in axes))
    return norm if norm and norm == tuple(range(ndim - len(norm), ndim)) else None


def layer_norm_rule(policy: Autocast, module, next_fun, args, kwargs):
    """``flax.linen.LayerNorm`` as torch's ``layer_norm`` under autocast.

    On CPU torch's autocast leaves ``layer_norm`` alone: a float32 input (the residual stream of a
    pre-norm transformer) runs ATen's float32 kernel, whose Welford moments sum in another order
    than Flax's ``E[x^2] - E[x]^2``; the next matmul rounds that output to the low dtype, so the
    last-bit differences flip roundings (measured: a transformer block's 20-step bf16 training run
    drifts to 0.8x its own bf16-vs-float32 gap; with this rule it stays 1354x below it). Here such
    a LayerNorm (float32 input, normalising and scaling the same trailing axes, no ``axis_name``
    or mask) runs ``jaxinit._src.aten_layer_norm.layer_norm``: bit for bit torch's CPU kernel,
    forward. Every other case: :func:`normalization_rule` (``'layer_norm'``)."""
    x = args[0] if args else kwargs.get("x")
    axes = aten_layer_norm_axes(policy, module, x, kwargs.get("mask"))
    if axes is not None:
        params = _variables(module, next_fun, args, kwargs).get("params", {})
        return aten_layer_norm(module, x, axes, params.get("scale"), params.get("bias"))
    return _NORM_LAYER_NORM(policy, module, next_fun, args, kwargs)


def aten_layer_norm_axes(policy: Autocast, module, x, mask) -> tuple[int, ...] | None:
    """The trailing axes a Linen or NNX ``LayerNorm`` normalises when it runs ATen's float32 CPU
    kernel under ``policy`` (CPU, no policy for ``layer_norm``, a float32 input, float32 module and
    parameters, the same trailing reduction and feature axes, no mask or ``axis_name``), else None."""
    if not (policy.policy("layer_norm") is None and policy.device_type == "cpu" and eligible(x)
            and x.dtype == jnp.float32 and x.ndim >= 1 and mask is None and module.axis_name is None
            and module.dtype in (None, jnp.float32) and jnp.dtype(module.param_dtype) == jnp.float32):
        return None
    axes = _trailing_axes(module.reduction_axes, x.ndim)
    return axes if axes is not None and axes == _trailing_axes(module.feature_axes, x.ndim) else None


def aten_layer_norm(module, x, axes: tuple[int, ...], scale, bias):
    """``jaxinit._src.aten_layer_norm.layer_norm`` over the trailing ``axes`` of ``x`` with the
    module's ``epsilon`` (``scale``/``bias``: the module's parameters or None)."""
    from jaxinit._src.aten_layer_norm import layer_norm

    feat = x.shape[axes[0]:]
    rows = x.reshape(x.shape[:axes[0]] + (int(np.prod(feat)),))
    y = layer_norm(rows, None if scale is None else scale.reshape(-1),
                   None if bias is None else bias.reshape(-1), module.epsilon)
    return y.reshape(x.shape)


def batch_norm_rule(policy: Autocast, module, next_fun, args, kwargs):
    """``jaxinit.BatchNorm`` (torch's conventions) as torch's ``batch_norm`` under CPU autocast.

    torch's CPU autocast leaves ``batch_norm`` alone: a convolution's bf16/float16 output with float32
    parameters runs ATen's mixed-dtype kernel, whose batch statistics are summed in a fixed order
    (8-lane float32 vectors over 16-wide blocks, a scalar tail, lanes added one by one) that XLA's
    reductions do not follow; the normalised output is rounded to the low dtype, so the last-bit
    differences flip roundings (a conv net's 20-step bf16 run: 5x below its bf16-vs-float32 gap).
    In training, for an input with spatial dimensions (torch's NCHW-contiguous tensor), channels
    last, torch's momentum, affine, running statistics, no mask or ``axis_name``, this runs
    ``jaxinit._src.aten_batch_norm.batch_norm_train``: the output and the running statistics bit for
    bit torch's. Every other case: :func:`normalization_rule` (``'batch_norm'``)."""
    x = args[0] if args else kwargs.get("x")
    ura = kwargs.get("use_running_average", args[1] if len(args) > 1 else None)
    if aten_batch_norm_applies(policy, module, x, ura, kwargs.get("mask"), bool(module.bias)):
        from jaxinit._src.aten_batch_norm import batch_norm_train

        params, stats = module.variables["params"], module.variables["batch_stats"]
        y, mean, var = batch_norm_train(x, params["scale"], params["bias"], stats["mean"], stats["var"],
                                        float(module.momentum), float(module.eps))
        module.put_variable("batch_stats", "mean", mean)
        module.put_variable("batch_stats", "var", var)
        module.put_variable("batch_stats", "num_batches_tracked", stats["num_batches_tracked"] + 1)
        return y
    return _NORM_BATCH_NORM(policy, module, next_fun, args, kwargs)


def aten_batch_norm_applies(policy: Autocast, module, x, ura, mask, use_bias: bool) -> bool:
    """Whether a Linen or NNX ``jaxinit.BatchNorm`` call runs ATen's mixed-dtype training kernel under
    ``policy`` (the conditions of :func:`batch_norm_rule`; ``ura``: the call's ``use_running_average``)."""
    ura = module.use_running_average if ura is None else ura
    low = eligible(x) and x.dtype in (jnp.bfloat16, jnp.float16)
    initializing = getattr(module, "is_initializing", lambda: False)()
    return bool(low and ura is False and policy.device_type == "cpu" and policy.policy("batch_norm") is None
                and not initializing and x.ndim >= 3 and module.axis in (-1, x.ndim - 1)
                and getattr(module, "momentum_style", None) == "torch" and module.affine and use_bias
                and module.track_running_stats and module.unbiased_running_var and module.momentum is not None
                and module.axis_name is None and mask is None and module.dtype is None
                and jnp.dtype(module.param_dtype) == jnp.float32)


def _rounded_product(policy: Autocast) -> Callable:
    def dot_general(*args, **kwargs):
        return round_low(policy.dot_general(*args, **kwargs), policy.dtype).astype(jnp.float32)
    return dot_general


def attention_rule(batch_first: bool = True) -> LinenRule:
    """The rule for ``MultiHeadDotProductAttention``: torch's ``nn.MultiheadAttention(batch_first=...)``
    under autocast.

    For self-attention (``inputs_k``/``inputs_v`` absent or the same array) the three projections
    are ONE product over the stacked kernels, as torch's ``in_proj`` (so the input gradient is one
    float32 accumulation over 3E outputs, rounded once); the attention is torch's
    ``scaled_dot_product_attention``; the output projection a ``lower_precision_fp`` product
    rounded once (torch applies it to a contiguous 2-D reshape: ``addmm``, bias in float32).

    ``batch_first=True`` (the default: Flax's layout ``[batch..., length, features]``, so a Flax
    port pairs with torch's ``batch_first=True``): torch's ``multi_head_attention_forward``
    transposes a batched input to ``(L, N, E)`` before the in-projection, and ``F.linear`` of a
    non-contiguous input of 3 or more dimensions is ``matmul`` followed by ``add_(bias)``
    (aten/src/ATen/native/Linear.cpp, ``linear``), in the low dtype: the product is rounded, then
    the bias added and rounded again. A contiguous input (``batch_first=False``, or an unbatched
    ``(L, E)`` input) takes the fused ``addmm``: one rounding. Measured: the two differ in 29% of
    a bf16 in-projection's outputs once the bias is non-zero.

    Other calls (cross-attention, decode, normalize_qk, a mask) keep Flax's projections (with the
    same rounding rule) and swap in the attention only. Register ``attention_rule(False)`` for a
    torch model built with ``batch_first=False``::

        jaxinit.amp.register_linen_rule(nn.MultiHeadDotProductAttention, jaxinit.amp.attention_rule(False))
    """
    if not isinstance(batch_first, bool):
        raise InitError(f"attention_rule: batch_first must be True or False (torch's nn.MultiheadAttention "
                        f"argument of the model the Flax module pairs with), got {batch_first!r}.")

    def rule(policy: Autocast, module, next_fun, args, kwargs):
        if policy.policy("scaled_dot_product_attention") != _table.LOW:
            return next_fun(*args, **kwargs)
        deterministic = kwargs.get("deterministic", module.deterministic)
        if module.dropout_rate > 0.0 and not deterministic:
            raise InitError("Autocast: attention dropout under autocast is not supported yet: run the "
                            "MultiHeadDotProductAttention with deterministic=True or dropout_rate=0.")
        variables = _variables(module, next_fun, args, kwargs)
        inputs_q = args[0] if args else kwargs["inputs_q"]
        rest = list(args[1:3]) + [kwargs.get("inputs_k"), kwargs.get("inputs_v")]
        others = [a for a in rest if a is not None]
        # torch's in-projection rounds twice for a batched input it transposed (see above)
        twice = batch_first and jnp.ndim(inputs_q) >= 3
        fused = (all(a is inputs_q for a in others) and kwargs.get("mask") is None and not module.decode
                 and not module.normalize_qk and module.use_bias and not kwargs.get("sow_weights", False)
                 and set(kwargs) <= {"inputs_k", "inputs_v", "deterministic", "mask", "sow_weights"})
        if fused:
            return fused_self_attention(policy, variables["params"], inputs_q, twice)

        attention_fn = sdpa_attention_fn(policy)

        STATE.round_product = twice
        try:
            return _apply_clone(module, {"attention_fn": attention_fn}, variables, args, kwargs)
        finally:
            STATE.round_product = False

    return rule


def sdpa_attention_fn(policy: Autocast) -> Callable:
    """A Flax ``attention_fn`` (Linen's and NNX's signature) computing torch's
    ``scaled_dot_product_attention`` under ``policy``; the output projection after it rounds once."""
    def attention_fn(query, key, value, bias=None, mask=None, is_causal=False, **_):
        STATE.round_product = False  # the output projection (after the attention) rounds once
        # Flax layout [..., length, heads, depth] -> torch's [..., heads, length, depth] and back
        q, k, v = (jnp.swapaxes(t, -3, -2) for t in (query, key, value))
        m = mask
        if bias is not None:
            m = bias if m is None else jnp.where(m, bias, -jnp.inf)
        o = policy.scaled_dot_product_attention(q, k, v, attn_mask=m, is_causal=is_causal)
        return jnp.swapaxes(o, -3, -2)
    return attention_fn


def fused_self_attention(policy: Autocast, params, x, twice: bool):
    """Self-attention as torch's ``nn.MultiheadAttention`` under autocast (:func:`attention_rule`):
    ``params`` the Flax tree ``{query, key, value, out: {kernel, bias}}``."""
    low, f32 = policy.dtype, jnp.float32
    kernel = jnp.stack([params[n]["kernel"] for n in ("query", "key", "value")], axis=1)  # (E, 3, H, D)
    bias = jnp.stack([params[n]["bias"] for n in ("query", "key", "value")], axis=0)  # (3, H, D)
    e, _, h, d = kernel.shape
    y = policy.dot_general(x, kernel.reshape(e, 3 * h * d), (((x.ndim - 1,), (0,)), ((), ())))
    if twice:  # torch: matmul, then add_(bias), each rounded to the low dtype
        y = round_low(y, low).astype(f32)
    y = round_low(y + round_low(bias.reshape(-1), low).astype(f32), low)
    y = y.reshape(y.shape[:-1] + (3, h, d))  # [..., L, 3, H, D]
    q, k, v = (jnp.swapaxes(y[..., i, :, :], -3, -2) for i in range(3))  # [..., H, L, D]
    o = jnp.swapaxes(policy.scaled_dot_product_attention(q, k, v), -3, -2)  # [..., L, H, D]
    out_k, out_b = params["out"]["kernel"], params["out"]["bias"]
    y = policy.dot_general(o, out_k, (((o.ndim - 2, o.ndim - 1), (0, 1)), ((), ())))
    return round_low(y + round_low(out_b, low).astype(f32), low)


def _load_default_rules() -> None:
    global _DEFAULT_RULES_LOADED
    if _DEFAULT_RULES_LOADED:
        return
    import flax.linen as nn

    from jaxinit._src.batchnorm import LinenBatchNorm

    _DEFAULT_RULES_LOADED = True
    cls: Any
    for cls, op in ((nn.Dense, "linear"), (nn.DenseGeneral, "linear")):
        _LINEN_RULES.setdefault(cls, low_precision_rule(op, ("dot_general",)))
    _LINEN_RULES.setdefault(nn.Conv, low_precision_rule("conv2d", ("conv_general_dilated",)))
    _LINEN_RULES.setdefault(nn.ConvTranspose, low_precision_rule("conv_transpose2d.input", ("preferred_element_type",)))
    _LINEN_RULES.setdefault(nn.MultiHeadDotProductAttention, attention_rule(True))
    _LINEN_RULES.setdefault(nn.LayerNorm, layer_norm_rule)
    _LINEN_RULES.setdefault(LinenBatchNorm, batch_norm_rule)
    for cls, op in ((nn.GroupNorm, "group_norm"), (nn.RMSNorm, "rms_norm"), (nn.BatchNorm, "batch_norm")):
        _LINEN_RULES.setdefault(cls, normalization_rule(op))
