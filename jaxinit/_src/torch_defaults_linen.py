"""Flax Linen layers with PyTorch's default initialization (``jaxinit.linen``).

The defaults are :class:`~jaxinit._src.torch_defaults.TorchDefault` markers; each layer
makes its :class:`~jaxinit._src.torch_defaults.LayerContext` active around ``__call__``
(:class:`_TorchDefaults`), where Linen creates the parameters, its own and those of the
Flax layers it builds inside (the cells' Dense layers, the attention projections). The
classes carry the public names (``Dense``, ...) because Linen derives automatic submodule
names (``Dense_0``) from ``type(self).__name__``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as _linen
from flax.core import meta as _meta

from _jaxinit import FLAX_CONV_TRANSPOSE_LAYOUT, FLAX_LAYOUT
from _jaxinit.errors import InitError
from jaxinit._src.initializers import normal, zeros
from jaxinit._src.torch_defaults import (TORCH_BIAS, TORCH_KERNEL, TORCH_LINEAR_KERNEL, TORCH_MHA_IN, TORCH_RNN,
                                         InitFn, LayerContext, check_padding_idx, creating_parameters,
                                         stop_padding_grad, zero_row)

Array = jax.Array


class _TorchDefaults:
    """Linen mixin: the layer's context is active while its ``__call__`` creates parameters."""

    def _torch_context(self, *args: Any, **kwargs: Any) -> LayerContext:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with creating_parameters(self._torch_context(*args, **kwargs)):
            return super().__call__(*args, **kwargs)  # type: ignore[misc]


class _KernelAndBias(_TorchDefaults):
    """Layers with a ``kernel`` and a bias bounded by the kernel's fan_in (Dense, Conv, ConvTranspose)."""

    def _torch_layout(self) -> dict:
        return dict(FLAX_LAYOUT)

    def _kernel_shape(self) -> Sequence[int]:
        # Called when the bias is created, right after the kernel.
        module: Any = self
        if not module.has_variable("params", "kernel"):
            raise InitError(f"{type(self).__name__}: the PyTorch-default bias needs the layer's kernel to "
                            "exist first; pass an explicit bias_init for this layer.")
        return jnp.shape(_meta.unbox(module.get_variable("params", "kernel")))

    def _torch_context(self, *args: Any, **kwargs: Any) -> LayerContext:
        return LayerContext(type(self).__name__, layout=self._torch_layout(), kernel_shape=self._kernel_shape)


class Dense(_KernelAndBias, _linen.Dense):
    """``flax.linen.Dense`` with ``torch.nn.Linear``'s default initialization.

    kernel (in, out) ~ U(-1/sqrt(in), 1/sqrt(in)) (``kaiming_uniform_(a=sqrt(5))``),
    bias ~ U(-1/sqrt(in), 1/sqrt(in)) with the kernel's fan_in (bound 0 if in == 0).
    Flax's own defaults are lecun_normal (a TRUNCATED normal, var 1/in) and zeros.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> params = tl.Dense(4).init(jax.random.key(0), jnp.ones((1, 3)))["params"]
    >>> bool(jnp.abs(params["bias"]).max() <= 1 / 3 ** 0.5)
    True
    """

    kernel_init: InitFn = TORCH_KERNEL
    bias_init: InitFn = TORCH_BIAS


class Conv(_KernelAndBias, _linen.Conv):
    """``flax.linen.Conv`` (1-3d, ``feature_group_count``) with ``torch.nn.Conv{1,2,3}d``'s
    default initialization.

    kernel (*k, in/groups, out) ~ U(+-1/sqrt(fan_in)), fan_in = in/groups * prod(k);
    bias ~ U(+-1/sqrt(fan_in)) with the same fan_in. Flax's own defaults are
    lecun_normal and zeros.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.Conv(8, (3, 3), feature_group_count=2).init(jax.random.key(0), jnp.ones((1, 5, 5, 4)))
    """

    kernel_init: InitFn = TORCH_KERNEL
    bias_init: InitFn = TORCH_BIAS


class ConvTranspose(_KernelAndBias, _linen.ConvTranspose):
    """``flax.linen.ConvTranspose`` with ``torch.nn.ConvTranspose{1,2,3}d``'s default init.

    PyTorch's weight is (in, out/groups, *k) and its positional fan rule gives
    fan_in = out/groups * prod(k) (pytorch#7865): the OUTPUT channels. Here the
    kernel (*k, in, out) (``transpose_kernel=False``) or (*k, out, in)
    (``transpose_kernel=True``) is drawn from U(+-1/sqrt(fan_in)) with
    fan_in = out * prod(k) in both cases, and the bias from the same bound.
    Flax's ConvTranspose has no groups, so this is torch's ``groups=1``.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.ConvTranspose(6, (4,)).init(jax.random.key(0), jnp.ones((1, 7, 3)))
    """

    kernel_init: InitFn = TORCH_KERNEL
    bias_init: InitFn = TORCH_BIAS

    def _torch_layout(self) -> dict:
        return dict(FLAX_LAYOUT if self.transpose_kernel else FLAX_CONV_TRANSPOSE_LAYOUT)


class Embed(_linen.Embed):
    """``flax.linen.Embed`` with ``torch.nn.Embedding``'s default init and ``padding_idx``.

    embedding (num_embeddings, features) ~ N(0, 1); Flax's own default is
    N(0, 1/features). ``padding_idx`` (``-num_embeddings <= padding_idx <
    num_embeddings`` or None) zeroes that row at init, whatever
    ``embedding_init`` is, and, as in PyTorch, lookups of that index pass no
    gradient to it (``attend`` is not affected).

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.Embed(10, 4, padding_idx=0).init(jax.random.key(0), jnp.array([0, 3]))
    >>> bool((v["params"]["embedding"][0] == 0).all())
    True
    """

    embedding_init: InitFn = normal(0.0, 1.0)
    padding_idx: int | None = None

    def __post_init__(self) -> None:
        check_padding_idx(self.padding_idx, self.num_embeddings, type(self).__name__)
        super().__post_init__()

    def param(self, name: str, init_fn: Any, *init_args: Any, **init_kwargs: Any) -> Any:
        # Linen's Embed creates its table in setup(): the padding row is zeroed where it is drawn.
        row = check_padding_idx(self.padding_idx, self.num_embeddings, type(self).__name__)
        if name == "embedding" and row is not None:
            init_fn = zero_row(init_fn, row)
        return super().param(name, init_fn, *init_args, **init_kwargs)

    def __call__(self, inputs: Array) -> Array:
        y = super().__call__(inputs)
        row = check_padding_idx(self.padding_idx, self.num_embeddings, type(self).__name__)
        return y if row is None else stop_padding_grad(y, inputs, self.num_embeddings, row)


class LayerNorm(_linen.LayerNorm):
    """``flax.linen.LayerNorm`` with ``torch.nn.LayerNorm``'s defaults.

    scale 1 and bias 0 (the same as Flax). Differences from Flax's defaults,
    on purpose: ``epsilon=1e-5`` (torch's eps; Flax uses 1e-6) and
    ``use_fast_variance=False`` (torch computes the two-pass variance; Flax's
    E[x^2] - E[x]^2 loses precision for large means). Pass ``epsilon=1e-6`` to
    get Flax's.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.LayerNorm().init(jax.random.key(0), jnp.ones((2, 8)))
    """

    epsilon: float = 1e-5
    use_fast_variance: bool = False


_CELL_DOC = """``flax.linen.{name}`` with ``torch.nn.{name}``'s default initialization.

    Every kernel and bias ~ U(-1/sqrt(H), 1/sqrt(H)), H = ``features`` (torch:
    ``stdv = 1 / sqrt(hidden_size)`` for weight_ih, weight_hh, bias_ih and
    bias_hh). Flax's defaults are lecun_normal input kernels, orthogonal
    recurrent kernels and zero biases.

    Parameter correspondence: Flax keeps ONE bias per gate where torch has
    two ({biases}); each Flax bias has the distribution of one torch bias
    vector, so the effective gate bias (torch's b_ih + b_hh, variance 2/(3H))
    has half torch's variance there.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> cell = tl.{name}(features=4)
    >>> x = jnp.ones((2, 3))
    >>> v = cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(1), x.shape), x)
    """


class _Cell(_TorchDefaults):
    def _torch_context(self, *args: Any, **kwargs: Any) -> LayerContext:
        return LayerContext(type(self).__name__, hidden=int(getattr(self, "features")))


class LSTMCell(_Cell, _linen.LSTMCell):
    __doc__ = _CELL_DOC.format(name="LSTMCell", biases="all four gates: b_i* + b_h*")

    kernel_init: InitFn = TORCH_RNN
    recurrent_kernel_init: InitFn = TORCH_RNN
    bias_init: InitFn = TORCH_RNN


class GRUCell(_Cell, _linen.GRUCell):
    __doc__ = _CELL_DOC.format(
        name="GRUCell", biases="the r and z gates: b_ir + b_hr, b_iz + b_hz; b_in and b_hn are separate in both")

    kernel_init: InitFn = TORCH_RNN
    recurrent_kernel_init: InitFn = TORCH_RNN
    bias_init: InitFn = TORCH_RNN


class MultiHeadDotProductAttention(_TorchDefaults, _linen.MultiHeadDotProductAttention):
    """``flax.linen.MultiHeadDotProductAttention`` with ``torch.nn.MultiheadAttention``'s
    default initialization.

    - query/key/value kernels: torch's ``xavier_uniform_`` of the stacked
      (3E, E) ``in_proj_weight``, i.e. U(+-sqrt(6 / (E + 3E))) for each, when
      the q, k and v inputs all have width E = ``qkv_features`` (torch's
      default); otherwise U(+-sqrt(6 / (in_x + E))) per projection, as torch's
      separate ``q/k/v_proj_weight`` with ``kdim``/``vdim``.
    - out kernel (E, out) ~ U(+-1/sqrt(E)) (torch's out_proj Linear default).
    - every bias 0 (torch zeroes in_proj_bias and out_proj.bias).

    Flax's own defaults are lecun_normal for all four kernels and zero biases.
    The stacking rule needs the input widths, which Linen learns at call time:
    the layer's context records them for the kernel initializers of that call.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> x = jnp.ones((2, 5, 16))
    >>> v = tl.MultiHeadDotProductAttention(num_heads=4).init(jax.random.key(0), x)
    """

    kernel_init: InitFn = TORCH_MHA_IN
    out_kernel_init: InitFn | None = TORCH_LINEAR_KERNEL
    bias_init: InitFn = zeros()
    out_bias_init: InitFn | None = zeros()

    def _torch_context(self, inputs_q: Array, inputs_k: Array | None = None, inputs_v: Array | None = None,
                       *, inputs_kv: Array | None = None, **kwargs: Any) -> LayerContext:
        k = inputs_kv if inputs_kv is not None else (inputs_k if inputs_k is not None else inputs_q)
        v = inputs_kv if inputs_kv is not None else (inputs_v if inputs_v is not None else k)
        width = self.qkv_features or inputs_q.shape[-1]
        stacked = inputs_q.shape[-1] == k.shape[-1] == v.shape[-1] == width
        return LayerContext(type(self).__name__, mha_stacked=bool(stacked))
