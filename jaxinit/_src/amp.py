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

NNX modules: :meth:`Autocast.nnx` applies the same rules to the modules of an NNX graph for the
duration of a ``with`` block (``jaxinit._src.amp_nnx``: each instance's class swapped for a subclass
whose ``__call__`` runs the rule, restored on exit; no module is copied).
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from _jaxinit import autocast_table as _table
from _jaxinit.errors import InitError
from jaxinit._src.amp_flash import flash_attention
from jaxinit._src.amp_round import round_low

_LOW_FLOATS = ("bfloat16", "float16", "float32")  # eligible for a cast (torch: floating and not float64)
#: per-thread autocast state: the entered policies and context managers, and the flags a Linen rule
#: sets for the module call it applies (``skip_next``, ``round_product``)
STATE = threading.local()


def _dtype_name(dtype: Any) -> str:
    try:
        return jnp.dtype(dtype).name
    except TypeError:
        return str(dtype)


def eligible(x: Any) -> bool:
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
            to = jnp.dtype(jnp.float32) if any(eligible(a) and a.dtype == jnp.float32 for a in args) else self.dtype
        else:
            to = jnp.dtype(jnp.float32)
        return tuple(round_low(a, to) if eligible(a) else a for a in args)

    # ------------------------------------------------------------------ ops computed as torch's kernels

    def _round(self, y):
        return round_low(y, self.dtype)

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
        one rounding of ``o / l`` at the end; the backward is torch's too (``jaxinit._src.amp_flash``).
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
        return flash_attention(query, key, value, add.astype(jnp.float32), sc)

    def softmax(self, x, axis: int = -1):
        """torch's ``softmax`` under autocast: float32 output on CUDA (``fp32_set_opt_dtype``); on CPU
        (no policy) computed in float32 and rounded once to the input's dtype, as torch's CPU kernel."""
        (x,) = self.cast("softmax", x)
        return round_low(jax.nn.softmax(x.astype(jnp.float32), axis=axis), x.dtype)

    def log_softmax(self, x, axis: int = -1):
        """torch's ``log_softmax`` under autocast (as :meth:`softmax`)."""
        (x,) = self.cast("log_softmax", x)
        return round_low(jax.nn.log_softmax(x.astype(jnp.float32), axis=axis), x.dtype)

    def pointwise(self, fn: Callable) -> Callable:
        """``fn`` (an elementwise function: gelu, silu, tanh, ...) as torch's elementwise kernels compute
        it on a float16/bfloat16 tensor: in float32 (torch's ``opmath_type``), rounded once to the
        input's dtype. JAX evaluates ``jax.nn.gelu`` on bf16 op by op, rounding after each: up to a few
        bf16 ulps apart. Float32 inputs, or autocast disabled: ``fn`` itself."""
        def wrapped(x, *args, **kwargs):
            if not self.enabled or not eligible(x) or x.dtype == jnp.float32:
                return fn(x, *args, **kwargs)
            return round_low(fn(x.astype(jnp.float32), *args, **kwargs), x.dtype)
        return wrapped

    # ------------------------------------------------------------------ Flax

    def promote_dtype(self, *args, dtype=None, inexact=True):
        """Flax's ``promote_dtype`` hook for a ``lower_precision_fp`` module: every array (kernel and
        bias included) to the low dtype."""
        del dtype, inexact
        return tuple(None if a is None else round_low(jnp.asarray(a), self.dtype) for a in args)

    def __enter__(self) -> "Autocast":
        import flax.linen as nn

        stack = STATE.__dict__.setdefault("stack", [])
        cm = nn.intercept_methods(self._linen_interceptor) if self.enabled else contextlib.nullcontext()
        cm.__enter__()
        stack.append(cm)
        STATE.__dict__.setdefault("policies", []).append(self)
        return self

    def __exit__(self, *exc) -> None:
        STATE.policies.pop()
        STATE.stack.pop().__exit__(*exc)

    def _linen_interceptor(self, next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if getattr(STATE, "skip_next", False):  # the clone a rule applies: its own call runs as it is
            STATE.skip_next = False
            return next_fun(*args, **kwargs)
        from jaxinit._src.amp_rules import find_rule

        rule = find_rule(type(context.module))
        if rule is None:
            return next_fun(*args, **kwargs)
        return rule(self, context.module, next_fun, args, kwargs)

    @contextlib.contextmanager
    def nnx(self, model: Any) -> Iterator[Any]:
        """Within the block, the NNX modules of ``model`` run under this policy, eagerly and under
        ``nnx.jit`` / ``nnx.grad`` / ``nnx.value_and_grad`` called inside the block::

            with ac.nnx(model):
                loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)

        Each module of a registered kind (the Linen rules' NNX twins, ``jaxinit._src.amp_nnx``) has its
        class swapped for a subclass whose ``__call__`` applies the rule to the instance; restored on
        exit (no module is copied or forked). Inside the block :func:`active` returns this policy.
        Call ``nnx.jit`` / ``nnx.split`` inside the block: a module split there and merged after it
        keeps the autocast class."""
        from flax import nnx as _nnx

        from jaxinit._src.amp_nnx import autocast_class

        saved: list[tuple[Any, type]] = []
        STATE.__dict__.setdefault("policies", []).append(self)  # ``active()`` for the model's functions
        try:
            for _, node in _nnx.iter_graph(model):
                sub = autocast_class(self, type(node)) if isinstance(node, _nnx.Module) else None
                if sub is not None and type(node) is not sub:
                    saved.append((node, type(node)))
                    object.__setattr__(node, "__class__", sub)
            yield model
        finally:
            STATE.policies.pop()
            for node, cls in reversed(saved):
                object.__setattr__(node, "__class__", cls)


def active() -> Autocast:
    """The innermost :class:`Autocast` entered with ``with`` in this thread (a disabled one if none):
    model code reads it to run functions under the caller's policy, e.g.
    ``jaxinit.amp.active().pointwise(nn.gelu)(h)``."""
    stack = getattr(STATE, "policies", [])
    return stack[-1] if stack else _DISABLED


def autocast(device_type: str = "cpu", dtype: Any = None, enabled: bool = True) -> Autocast:
    """``torch.autocast(device_type, dtype, enabled)``'s policy for Flax: an :class:`Autocast`
    (a context manager for Linen, :meth:`Autocast.nnx` for NNX)."""
    return Autocast(device_type, dtype, enabled)


_DISABLED = Autocast(enabled=False)
