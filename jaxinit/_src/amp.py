r"""torch's autocast for JAX/Flax: the same ops in the same precision, cast at the op.

``torch.autocast(device_type, dtype)`` decides per ATen op (the table in
``_jaxinit/autocast_table.py``, torch 2.13's aten/src/ATen/autocast_mode.cpp): matmuls and
convolutions (``lower_precision_fp``) cast their floating inputs (the float32 weights included) to
the low dtype; on CUDA softmax, norms, exp/log, sums and losses are forced to float32; a few ops
run in the widest input dtype; everything else runs in its inputs' dtype. The weights stay float32:
the cast happens inside the op.

:class:`Autocast` is that policy for Flax. As a context manager it intercepts Linen modules
(``flax.linen.intercept_methods``) and runs each registered module kind as torch runs its twin:

* ``Dense``/``DenseGeneral``/``Conv``/``ConvTranspose`` (torch ``linear``/``convNd``/
  ``conv_transposeNd``, ``lower_precision_fp``): input, kernel and bias cast to the low dtype, the
  product accumulated in float32 with the bias added in float32, ONE rounding to the low dtype
  at the end, as torch's CPU kernels (oneDNN) do. Flax's own ``dtype=bfloat16`` rounds twice
  (after the product and after the bias): that alone moves 28% of a bf16 linear's outputs;
* ``MultiHeadDotProductAttention``: its projections as ``DenseGeneral`` above and the attention as
  torch's ``scaled_dot_product_attention`` (:meth:`Autocast.scaled_dot_product_attention`);
* ``LayerNorm``/``GroupNorm``/``RMSNorm``/``BatchNorm`` (and ``jaxinit.BatchNorm``): float32
  inputs on CUDA for the ops torch forces to float32 (``layer_norm``, ``group_norm``,
  ``rms_norm``); otherwise they compute in float32 as Flax does and the result is rounded once to
  the input's dtype, which is what torch's mixed-dtype CPU kernels return (bf16 in, bf16 out).

Functions called directly (softmax, losses, ``jnp.matmul`` in an attention written by hand) are not
modules: run them through the policy (:meth:`Autocast.cast`, :meth:`Autocast.matmul`,
:meth:`Autocast.softmax`, ...). The module rules are a registry (:func:`register_linen_rule`); the
policies come from the table, never from the rule.

NNX modules: :meth:`Autocast.nnx` sets the same hooks on the modules of an NNX graph for the
duration of a ``with`` block (Flax's ``promote_dtype``/``dot_general``/``conv_general_dilated``/
``dtype`` attributes; no module is copied).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from _jaxinit import autocast_table as _table
from _jaxinit.errors import InitError

_LOW_FLOATS = ("bfloat16", "float16", "float32")  # eligible for a cast (torch: floating and not float64)


def _dtype_name(dtype: Any) -> str:
    try:
        return jnp.dtype(dtype).name
    except TypeError:
        return str(dtype)


def _eligible(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray)) and jnp.dtype(x.dtype).name in _LOW_FLOATS


@dataclasses.dataclass(frozen=True)
class Autocast:
    r"""torch's ``autocast(device_type, dtype, enabled)`` as a policy for JAX/Flax.

    Args:
      device_type: ``"cpu"`` or ``"cuda"``: whose op lists apply (they differ: on CPU softmax and
        layer_norm are not forced to float32). It says which torch run to reproduce, not where JAX
        computes.
      dtype: the low-precision dtype, ``bfloat16`` or ``float16`` (torch's only two);
        default torch's per device (CPU ``bfloat16``, CUDA ``float16``).
      enabled: ``False`` makes every method the identity, as torch's ``enabled=False``.

    Example::

        ac = jaxinit.amp.Autocast("cpu", jnp.bfloat16)
        with ac:                          # Linen modules under torch's CPU bf16 autocast
            logits = model.apply(params, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(*ac.cast("cross_entropy_loss", logits), y)

    Differs from ``flax.linen.Dense(dtype=jnp.bfloat16, param_dtype=jnp.float32)``: one rounding per
    op instead of two, float32 where torch forces it, and no change to the module definitions.

    Enter the ``with`` block INSIDE the function given to ``jax.jit`` (the policy acts while JAX
    traces; a ``jit`` cache entry traced outside the block is reused as it is).
    """
    device_type: str = "cpu"
    dtype: Any = None
    enabled: bool = True

    def __post_init__(self):
        if self.device_type not in _table.DEVICES:
            raise InitError(f"Autocast: device_type must be one of {list(_table.DEVICES)} (the torch autocast "
                            f"whose op lists to follow), got {self.device_type!r}.")
        if not isinstance(self.enabled, bool):
            raise InitError(f"Autocast: enabled must be True or False, got {self.enabled!r}.")
        name = _table.DEFAULT_DTYPE[self.device_type] if self.dtype is None else _dtype_name(self.dtype)
        allowed = _table.SUPPORTED_DTYPES[self.device_type]
        if name not in allowed:
            raise InitError(f"Autocast: dtype {name!r} is not allowed by torch's {self.device_type} autocast "
                            f"(torch {_table.TORCH_VERSION} accepts {list(allowed)} and otherwise disables itself "
                            f"with a warning); pass dtype=jnp.bfloat16 or jnp.float16, or enabled=False.")
        object.__setattr__(self, "dtype", jnp.dtype(name))

    # ------------------------------------------------------------------ the policy

    def policy(self, op: str) -> str | None:
        """torch's cast policy for the ATen op ``op`` on this device (``None``: autocast leaves it alone)."""
        return _table.policy(op, self.device_type)

    def cast(self, op: str, *args: Any) -> tuple:
        """``args`` cast as torch's autocast casts the inputs of ``op`` (arrays that are not float16/
        bfloat16/float32 are left alone, as torch leaves float64 and integer tensors).

        ``lower_precision_fp``: to the low dtype; ``fp32``/``fp32_set_opt_dtype``/``fp32_append_dtype``:
        to float32; ``promote``: to float32 if any input is float32, else the low dtype; no policy:
        unchanged. ``banned`` raises torch's error.
        """
        pol = self.policy(op) if self.enabled else None
        if pol == _table.BANNED:
            raise InitError(f"{op} is unsafe to autocast (torch raises for it under {self.device_type} autocast): "
                            "combine the sigmoid with the loss, torch's binary_cross_entropy_with_logits.")
        if pol is None:
            return args
        if pol == _table.LOW:
            to = self.dtype
        elif pol == _table.PROMOTE:
            to = jnp.dtype(jnp.float32) if any(_eligible(a) and a.dtype == jnp.float32 for a in args) else self.dtype
        else:
            to = jnp.dtype(jnp.float32)
        return tuple(a.astype(to) if _eligible(a) else a for a in args)

    # ------------------------------------------------------------------ ops computed as torch's kernels

    def _round(self, y):
        return y.astype(self.dtype)

    def dot_general(self, lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kw):
        """``lax.dot_general`` as torch's autocast ``mm``/``bmm``/``linear``: both operands in the low
        dtype, float32 accumulation, the result left in float32 (the caller rounds once, after the
        bias). With autocast disabled: plain ``lax.dot_general``."""
        if not self.enabled:
            return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                   preferred_element_type=preferred_element_type, **kw)
        lhs, rhs = self.cast("mm", lhs, rhs)
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=jnp.float32, **kw)

    def conv_general_dilated(self, lhs, rhs, *args, **kwargs):
        """``lax.conv_general_dilated`` as torch's autocast ``convNd``: low-dtype operands, float32
        accumulation, the result left in float32 (rounded once by the caller, after the bias)."""
        if not self.enabled:
            return lax.conv_general_dilated(lhs, rhs, *args, **kwargs)
        lhs, rhs = self.cast("conv2d", lhs, rhs)
        kwargs["preferred_element_type"] = jnp.float32
        return lax.conv_general_dilated(lhs, rhs, *args, **kwargs)

    def matmul(self, a, b):
        """torch's ``matmul`` under autocast: ``a @ b`` with low-dtype operands, float32 accumulation,
        one rounding to the low dtype (bitwise torch's CPU bf16 ``mm``/``bmm``)."""
        if not self.enabled:
            return jnp.matmul(a, b)
        a, b = self.cast("matmul", a, b)
        return self._round(jnp.matmul(a, b, preferred_element_type=jnp.float32))

    def linear(self, x, weight, bias=None):
        """torch's ``F.linear(x, weight, bias)`` under autocast (``weight`` in torch's (out, in) layout):
        ``round(x @ weight.T + bias)`` with low-dtype operands and bias, float32 accumulation."""
        if not self.enabled:
            y = jnp.matmul(x, weight.T)
            return y if bias is None else y + bias
        y = self.dot_general(x, weight, (((x.ndim - 1,), (1,)), ((), ())))
        if bias is not None:
            y = y + self.cast("linear", bias)[0].astype(jnp.float32)
        return self._round(y)

    def scaled_dot_product_attention(self, query, key, value, attn_mask=None, scale=None, is_causal=False):
        r"""torch's ``F.scaled_dot_product_attention`` under autocast (torch layout ``(..., L, E)``).

        As torch's CPU flash-attention kernel (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp) for a
        low dtype: the keys in blocks of 512; per block ``s = (q k^T)\cdot\text{scale}`` accumulated in
        float32, running max ``m``, ``e = \exp(s - m)`` rounded to the low dtype,
        ``o \leftarrow o\,e^{m_{old}-m} + e\,v`` and ``l \leftarrow l\,e^{m_{old}-m} + \sum e`` in float32;
        one rounding of ``o / l`` at the end; the backward is torch's too (``_flash_attention_bwd``).
        ``attn_mask``: boolean (True attends) or additive. Outside autocast the same formulas in float32.
        """
        if self.enabled:
            query, key, value = self.cast("scaled_dot_product_attention", query, key, value)
        d = query.shape[-1]
        sc = float(np.float32(1.0 / np.sqrt(d))) if scale is None else float(np.float32(scale))
        lq, lk = query.shape[-2], key.shape[-2]
        add = jnp.zeros((lq, lk), jnp.float32)
        if is_causal:
            add = jnp.where(jnp.tril(jnp.ones((lq, lk), bool)), add, -jnp.inf)
        if attn_mask is not None:
            add = add + (jnp.where(attn_mask, 0.0, -jnp.inf) if attn_mask.dtype == jnp.bool_ else attn_mask)
        return _flash_attention(query, key, value, add.astype(jnp.float32), sc)

    def softmax(self, x, axis: int = -1):
        """torch's ``softmax`` under autocast: float32 output on CUDA (``fp32_set_opt_dtype``); on CPU
        (no policy) computed in float32 and rounded once to the input's dtype, as torch's CPU kernel."""
        (x,) = self.cast("softmax", x)
        return jax.nn.softmax(x.astype(jnp.float32), axis=axis).astype(x.dtype)

    def log_softmax(self, x, axis: int = -1):
        """torch's ``log_softmax`` under autocast (as :meth:`softmax`)."""
        (x,) = self.cast("log_softmax", x)
        return jax.nn.log_softmax(x.astype(jnp.float32), axis=axis).astype(x.dtype)

    def pointwise(self, fn: Callable) -> Callable:
        """``fn`` (an elementwise function: gelu, silu, tanh, ...) as torch's elementwise kernels compute
        it on a float16/bfloat16 tensor: in float32 (torch's ``opmath_type``), rounded once to the
        input's dtype. JAX evaluates ``jax.nn.gelu`` on bf16 op by op, rounding after each: up to a few
        bf16 ulps apart. Float32 inputs, or autocast disabled: ``fn`` itself."""
        def wrapped(x, *args, **kwargs):
            if not self.enabled or not _eligible(x) or x.dtype == jnp.float32:
                return fn(x, *args, **kwargs)
            return fn(x.astype(jnp.float32), *args, **kwargs).astype(x.dtype)
        return wrapped

    # ------------------------------------------------------------------ Flax

    def promote_dtype(self, *args, dtype=None, inexact=True):
        """Flax's ``promote_dtype`` hook for a ``lower_precision_fp`` module: every array (kernel and
        bias included) to the low dtype."""
        del dtype, inexact
        return tuple(None if a is None else jnp.asarray(a).astype(self.dtype) for a in args)

    def __enter__(self) -> "Autocast":
        import flax.linen as nn

        stack = _ACTIVE.__dict__.setdefault("stack", [])
        cm = nn.intercept_methods(self._linen_interceptor) if self.enabled else contextlib.nullcontext()
        cm.__enter__()
        stack.append(cm)
        _ACTIVE.__dict__.setdefault("policies", []).append(self)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.policies.pop()
        _ACTIVE.stack.pop().__exit__(*exc)

    def _linen_interceptor(self, next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if getattr(_ACTIVE, "skip_next", False):  # the clone a rule applies: its own call runs as it is
            _ACTIVE.skip_next = False
            return next_fun(*args, **kwargs)
        rule = _find_rule(type(context.module))
        if rule is None:
            return next_fun(*args, **kwargs)
        return rule(self, context.module, next_fun, args, kwargs)

    @contextlib.contextmanager
    def nnx(self, model: Any) -> Iterator[Any]:
        """Within the block, the NNX modules of ``model`` run under this policy (hooks set on the
        instances, restored on exit)::

            with ac.nnx(model):
                loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        """
        from flax import nnx as _nnx

        saved = []
        try:
            for _, node in _nnx.iter_graph(model):
                hooks = _nnx_hooks(self, node)
                if hooks:
                    saved.append((node, {k: getattr(node, k) for k in hooks}))
                    for k, v in hooks.items():
                        object.__setattr__(node, k, v)
            yield model
        finally:
            for node, old in saved:
                for k, v in old.items():
                    object.__setattr__(node, k, v)


_ACTIVE = threading.local()
_FLASH_KV_SPLIT = 512  # torch's CPU flash attention: kvSplitSize


def _flash_forward(q, k, v, add, sc):
    """torch's CPU flash-attention forward (online softmax over key blocks of 512); returns the
    output (in ``v``'s dtype) and the float32 log-sum-exp torch saves for the backward."""
    f32, low = jnp.float32, v.dtype

    def block(start):
        stop = min(start + _FLASH_KV_SPLIT, k.shape[-2])
        s = jnp.matmul(q, jnp.swapaxes(k[..., start:stop, :], -1, -2), preferred_element_type=f32) * f32(sc)
        return s + add[..., start:stop], v[..., start:stop, :]

    def step(s, vb, m_old):
        new_m = jnp.max(s, axis=-1, keepdims=True)
        if m_old is not None:
            new_m = jnp.maximum(m_old, new_m)
        safe_m = jnp.where(jnp.isneginf(new_m), 0.0, new_m)
        e = jnp.exp(s - safe_m)
        return new_m, safe_m, jnp.sum(e, axis=-1, keepdims=True), jnp.matmul(e.astype(low), vb, preferred_element_type=f32)

    s0, v0 = block(0)
    m, _, ssum, o = step(s0, v0, None)
    for start in range(_FLASH_KV_SPLIT, k.shape[-2], _FLASH_KV_SPLIT):
        sb, vb = block(start)
        new_m, safe_m, esum, ev = step(sb, vb, m)
        corr = jnp.exp(m - safe_m)
        o, ssum, m = o * corr + ev, ssum * corr + esum, new_m
    return (o / ssum).astype(low), m + jnp.log(ssum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _flash_attention(q, k, v, add, sc):
    return _flash_forward(q, k, v, add, sc)[0]


def _flash_attention_fwd(q, k, v, add, sc):
    o, lse = _flash_forward(q, k, v, add, sc)
    return o, (q, k, v, add, o, lse)


def _flash_attention_bwd(sc, res, do):
    """torch's CPU flash-attention backward: ``p = exp(s - lse)`` in float32, ``dv = p_low^T do``,
    ``dp = do v^T``, ``delta = rowsum(do * o)``, ``ds = p (dp - delta)`` rounded to the low dtype,
    ``dq = (ds k) * scale``, ``dk = (ds^T q) * scale``, float32 accumulation, one rounding each
    (bitwise torch 2.13's bf16 gradients on CPU for one key block)."""
    q, k, v, add, o, lse = res
    f32, low = jnp.float32, v.dtype
    s = jnp.matmul(q, jnp.swapaxes(k, -1, -2), preferred_element_type=f32) * f32(sc) + add
    p = jnp.exp(s - jnp.where(jnp.isneginf(lse), 0.0, lse))
    do = do.astype(low)
    dv = jnp.matmul(jnp.swapaxes(p.astype(low), -1, -2), do, preferred_element_type=f32)
    dp = jnp.matmul(do, jnp.swapaxes(v, -1, -2), preferred_element_type=f32)
    delta = jnp.sum(do.astype(f32) * o.astype(f32), axis=-1, keepdims=True)
    ds = (p * (dp - delta)).astype(low)
    dq = jnp.matmul(ds, k, preferred_element_type=f32) * f32(sc)
    dk = jnp.matmul(jnp.swapaxes(ds, -1, -2), q, preferred_element_type=f32) * f32(sc)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), jnp.zeros_like(add)


_flash_attention.defvjp(_flash_attention_fwd, _flash_attention_bwd)

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


def _find_rule(cls) -> LinenRule | None:
    _load_default_rules()
    for klass in cls.__mro__:
        if klass in _LINEN_RULES:
            return _LINEN_RULES[klass]
    return None


def _apply_clone(module, updates, variables, args, kwargs):
    """``module`` with ``updates`` applied to ``variables`` (read-only), its own call not re-intercepted."""
    _ACTIVE.skip_next = True
    try:
        return module.clone(parent=None, **updates).apply(variables, *args, **kwargs)
    finally:
        _ACTIVE.skip_next = False


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
        if getattr(_ACTIVE, "round_product", False) and "dot_general" in updates:
            # an attention in-projection torch computes as matmul + add_ (see attention_rule): the
            # product rounded on its own, then the bias added and rounded again
            updates["dot_general"] = _rounded_product(policy)
        out = _apply_clone(module, updates, variables, args, kwargs)
        return jax.tree.map(lambda y: y.astype(policy.dtype) if _eligible(y) else y, out)
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
        if not (_eligible(x) and x.dtype != jnp.float32):
            return next_fun(*args, **kwargs)
        # one cast of the input to float32: its transpose rounds the input gradient ONCE (torch's
        # backward kernel computes it in float32 and rounds once); letting the module read the bf16
        # input in several places would round each path's gradient and add them in bf16
        args = (x.astype(jnp.float32),) + tuple(args[1:]) if args else args
        return next_fun(*args, **kwargs).astype(x.dtype)
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
    mask = kwargs.get("mask")
    if (policy.policy("layer_norm") is None and policy.device_type == "cpu" and _eligible(x)
            and x.dtype == jnp.float32 and x.ndim >= 1 and mask is None and module.axis_name is None
            and module.dtype in (None, jnp.float32) and jnp.dtype(module.param_dtype) == jnp.float32):
        axes = _trailing_axes(module.reduction_axes, x.ndim)
        if axes is not None and axes == _trailing_axes(module.feature_axes, x.ndim):
            from jaxinit._src.aten_layer_norm import layer_norm

            params = _variables(module, next_fun, args, kwargs).get("params", {})
            feat = x.shape[axes[0]:]
            rows = x.reshape(x.shape[:axes[0]] + (int(np.prod(feat)),))
            scale, bias = params.get("scale"), params.get("bias")
            y = layer_norm(rows, None if scale is None else scale.reshape(-1),
                           None if bias is None else bias.reshape(-1), module.epsilon)
            return y.reshape(x.shape)
    return _NORM_LAYER_NORM(policy, module, next_fun, args, kwargs)


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
    ura = module.use_running_average if ura is None else ura
    low = _eligible(x) and x.dtype in (jnp.bfloat16, jnp.float16)
    if (low and ura is False and policy.device_type == "cpu" and policy.policy("batch_norm") is None
            and not module.is_initializing() and x.ndim >= 3 and module.axis in (-1, x.ndim - 1)
            and getattr(module, "momentum_style", None) == "torch" and module.affine and module.bias
            and module.track_running_stats and module.unbiased_running_var and module.momentum is not None
            and module.axis_name is None and kwargs.get("mask") is None and module.dtype is None
            and jnp.dtype(module.param_dtype) == jnp.float32):
        from jaxinit._src.aten_batch_norm import batch_norm_train

        params, stats = module.variables["params"], module.variables["batch_stats"]
        y, mean, var = batch_norm_train(x, params["scale"], params["bias"], stats["mean"], stats["var"],
                                        float(module.momentum), float(module.eps))
        module.put_variable("batch_stats", "mean", mean)
        module.put_variable("batch_stats", "var", var)
        module.put_variable("batch_stats", "num_batches_tracked", stats["num_batches_tracked"] + 1)
        return y
    return _NORM_BATCH_NORM(policy, module, next_fun, args, kwargs)


def _rounded_product(policy: Autocast) -> Callable:
    def dot_general(*args, **kwargs):
        return policy.dot_general(*args, **kwargs).astype(policy.dtype).astype(jnp.float32)
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
            return _fused_self_attention(policy, variables["params"], inputs_q, twice)

        def attention_fn(query, key, value, bias=None, mask=None, **_):
            _ACTIVE.round_product = False  # the output projection (after the attention) rounds once
            # Flax layout [..., length, heads, depth] -> torch's [..., heads, length, depth] and back
            q, k, v = (jnp.swapaxes(t, -3, -2) for t in (query, key, value))
            m = mask
            if bias is not None:
                m = bias if m is None else jnp.where(m, bias, -jnp.inf)
            o = policy.scaled_dot_product_attention(q, k, v, attn_mask=m)
            return jnp.swapaxes(o, -3, -2)

        _ACTIVE.round_product = twice
        try:
            return _apply_clone(module, {"attention_fn": attention_fn}, variables, args, kwargs)
        finally:
            _ACTIVE.round_product = False

    return rule


def _fused_self_attention(policy: Autocast, params, x, twice: bool):
    low, f32 = policy.dtype, jnp.float32
    kernel = jnp.stack([params[n]["kernel"] for n in ("query", "key", "value")], axis=1)  # (E, 3, H, D)
    bias = jnp.stack([params[n]["bias"] for n in ("query", "key", "value")], axis=0)  # (3, H, D)
    e, _, h, d = kernel.shape
    y = policy.dot_general(x, kernel.reshape(e, 3 * h * d), (((x.ndim - 1,), (0,)), ((), ())))
    if twice:  # torch: matmul, then add_(bias), each rounded to the low dtype
        y = y.astype(low).astype(f32)
    y = (y + bias.reshape(-1).astype(low).astype(f32)).astype(low)
    y = y.reshape(y.shape[:-1] + (3, h, d))  # [..., L, 3, H, D]
    q, k, v = (jnp.swapaxes(y[..., i, :, :], -3, -2) for i in range(3))  # [..., H, L, D]
    o = jnp.swapaxes(policy.scaled_dot_product_attention(q, k, v), -3, -2)  # [..., L, H, D]
    out_k, out_b = params["out"]["kernel"], params["out"]["bias"]
    y = policy.dot_general(o, out_k, (((o.ndim - 2, o.ndim - 1), (0, 1)), ((), ())))
    return (y + out_b.astype(low).astype(f32)).astype(low)


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


# ---------------------------------------------------------------------------- NNX hooks

def _nnx_hooks(policy: Autocast, node: Any) -> dict[str, Any]:
    """Per-instance hooks for an NNX module: ``promote_dtype`` casts input and kernel to the low dtype
    and hands the module a zero bias; the product hook adds the module's real bias (read when it is
    called) in float32 and rounds once, so the module's own ``y += bias`` adds an exact zero."""
    from flax import nnx

    if not policy.enabled:
        return {}
    if isinstance(node, (nnx.Linear, nnx.LinearGeneral)):
        op, hook, base = "linear", "dot_general", policy.dot_general
    elif isinstance(node, (nnx.Conv, nnx.ConvTranspose)):
        op, hook, base = "conv2d", "conv_general_dilated", policy.conv_general_dilated
    else:
        return {}
    if policy.policy(op) != _table.LOW:
        return {}

    def promote(args, dtype=None, inexact=True):
        x, k, b = args
        low = policy.dtype
        return x.astype(low), k.astype(low), None if b is None else jnp.zeros(b.shape, low)

    def product(*args, **kwargs):
        kwargs.pop("preferred_element_type", None)
        kwargs.pop("out_sharding", None)
        y = base(*args, **kwargs)
        if node.bias is not None:
            b = node.bias[...].astype(policy.dtype).astype(jnp.float32)
            y = y + jnp.reshape(b, (1,) * (y.ndim - b.ndim) + b.shape)
        return y.astype(policy.dtype)

    return {"promote_dtype": promote, hook: product}


def active() -> Autocast:
    """The innermost :class:`Autocast` entered with ``with`` in this thread (a disabled one if none):
    model code reads it to run functions under the caller's policy, e.g.
    ``jaxinit.amp.active().pointwise(nn.gelu)(h)``."""
    stack = getattr(_ACTIVE, "policies", [])
    return stack[-1] if stack else _DISABLED


def autocast(device_type: str = "cpu", dtype: Any = None, enabled: bool = True) -> Autocast:
    """``torch.autocast(device_type, dtype, enabled)``'s policy for Flax: an :class:`Autocast`
    (a context manager for Linen, :meth:`Autocast.nnx` for NNX)."""
    return Autocast(device_type, dtype, enabled)


_DISABLED = Autocast(enabled=False)
