"""Flax NNX layers with PyTorch's default initialization (``jaxinit.nnx``).

NNX creates the parameters in ``__init__``, where the layer's arguments give its
:class:`~jaxinit._src.torch_defaults.LayerContext`: each layer makes it active around
Flax's ``__init__`` (:func:`~jaxinit._src.torch_defaults.creating_parameters`), the same
mechanism as the Linen layers, so the :class:`~jaxinit._src.torch_defaults.TorchDefault`
markers resolve by the same formulas.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
from flax import nnx as _nnx

from _jaxinit import FLAX_CONV_TRANSPOSE_LAYOUT, FLAX_LAYOUT
from jaxinit._src.initializers import normal, zeros
from jaxinit._src.torch_defaults import (TORCH_BIAS, TORCH_KERNEL, TORCH_LINEAR_KERNEL, TORCH_MHA_IN, TORCH_RNN,
                                         InitFn, LayerContext, check_padding_idx, creating_parameters,
                                         stop_padding_grad, zero_row)

Array = jax.Array


def _kernel_size(kernel_size: int | Sequence[int]) -> tuple[int, ...]:
    return (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)


def _kernel_context(who: str, shape: tuple[int, ...], layout: dict = FLAX_LAYOUT) -> LayerContext:
    return LayerContext(who, layout=dict(layout), kernel_shape=lambda: shape)


class Linear(_nnx.Linear):
    """``flax.nnx.Linear`` with ``torch.nn.Linear``'s default initialization.

    kernel (in, out) ~ U(+-1/sqrt(in)); bias ~ U(+-1/sqrt(in)) (bound 0 if
    in == 0). Flax's defaults are lecun_normal (truncated normal, var 1/in) and
    zeros. All other arguments are ``flax.nnx.Linear``'s.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> layer = tn.Linear(3, 4, rngs=nnx.Rngs(0))
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_init: InitFn = TORCH_KERNEL,
                 bias_init: InitFn = TORCH_BIAS, **kwargs: Any):
        with creating_parameters(_kernel_context("Linear", (in_features, out_features))):
            super().__init__(in_features, out_features, kernel_init=kernel_init, bias_init=bias_init, **kwargs)


class Conv(_nnx.Conv):
    """``flax.nnx.Conv`` with ``torch.nn.Conv{1,2,3}d``'s default initialization.

    kernel (*k, in/groups, out) ~ U(+-1/sqrt(fan_in)), fan_in = in/groups * prod(k);
    bias ~ U(+-1/sqrt(fan_in)). All other arguments are ``flax.nnx.Conv``'s.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> conv = tn.Conv(4, 8, (3, 3), feature_group_count=2, rngs=nnx.Rngs(0))
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] | None = 1, *, feature_group_count: int = 1,
                 kernel_init: InitFn = TORCH_KERNEL, bias_init: InitFn = TORCH_BIAS, **kwargs: Any):
        shape = _kernel_size(kernel_size) + (in_features // feature_group_count, out_features)
        with creating_parameters(_kernel_context("Conv", shape)):
            super().__init__(in_features, out_features, kernel_size, strides,
                             feature_group_count=feature_group_count, kernel_init=kernel_init,
                             bias_init=bias_init, **kwargs)


class ConvTranspose(_nnx.ConvTranspose):
    """``flax.nnx.ConvTranspose`` with ``torch.nn.ConvTranspose{1,2,3}d``'s default init.

    fan_in = out * prod(k) (torch's weight is (in, out/groups, *k), pytorch#7865);
    kernel (*k, in, out), or (*k, out, in) with ``transpose_kernel=True``,
    ~ U(+-1/sqrt(fan_in)); bias the same bound. Flax has no groups: torch's groups=1.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> deconv = tn.ConvTranspose(3, 6, (4,), rngs=nnx.Rngs(0))
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] | None = None, *, transpose_kernel: bool = False,
                 kernel_init: InitFn = TORCH_KERNEL, bias_init: InitFn = TORCH_BIAS, **kwargs: Any):
        k = _kernel_size(kernel_size)
        if transpose_kernel:
            context = _kernel_context("ConvTranspose", k + (out_features, in_features), FLAX_LAYOUT)
        else:
            context = _kernel_context("ConvTranspose", k + (in_features, out_features), FLAX_CONV_TRANSPOSE_LAYOUT)
        with creating_parameters(context):
            super().__init__(in_features, out_features, kernel_size, strides, transpose_kernel=transpose_kernel,
                             kernel_init=kernel_init, bias_init=bias_init, **kwargs)


class Embed(_nnx.Embed):
    """``flax.nnx.Embed`` with ``torch.nn.Embedding``'s default init and ``padding_idx``.

    embedding ~ N(0, 1) (Flax: N(0, 1/features)); row ``padding_idx`` is zero at
    init and lookups of it pass no gradient, as in PyTorch.

    >>> import jax.numpy as jnp, jaxinit.nnx as tn
    >>> from flax import nnx
    >>> emb = tn.Embed(10, 4, padding_idx=0, rngs=nnx.Rngs(0))
    >>> bool((emb(jnp.array([0])) == 0).all())
    True
    """

    def __init__(self, num_embeddings: int, features: int, *, padding_idx: int | None = None,
                 embedding_init: InitFn = normal(0.0, 1.0), **kwargs: Any):
        row = check_padding_idx(padding_idx, num_embeddings, "Embed")
        if row is not None:
            embedding_init = zero_row(embedding_init, row)
        super().__init__(num_embeddings, features, embedding_init=embedding_init, **kwargs)
        self.padding_idx = row

    def __call__(self, inputs: Array, *args: Any, **kwargs: Any) -> Array:
        y = super().__call__(inputs, *args, **kwargs)
        if self.padding_idx is None:
            return y
        return stop_padding_grad(y, inputs, self.num_embeddings, self.padding_idx)


class LayerNorm(_nnx.LayerNorm):
    """``flax.nnx.LayerNorm`` with ``torch.nn.LayerNorm``'s defaults: scale 1, bias 0,
    ``epsilon=1e-5`` (Flax: 1e-6) and ``use_fast_variance=False`` (two-pass
    variance, as torch).

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> ln = tn.LayerNorm(8, rngs=nnx.Rngs(0))
    """

    def __init__(self, num_features: int, *, epsilon: float = 1e-5, use_fast_variance: bool = False,
                 **kwargs: Any):
        super().__init__(num_features, epsilon=epsilon, use_fast_variance=use_fast_variance, **kwargs)


# The NNX cells below share one shape by design: each keeps its flax.nnx base's signature with torch's
# initializers as defaults; the layout text differs per cell.
_CELL_DOC = """``flax.nnx.{name}`` with ``torch.nn.{name}``'s default initialization.

    Every kernel and bias ~ U(-1/sqrt(H), 1/sqrt(H)), H = ``hidden_features``.
    {layout}
    As in :class:`jaxinit.linen.{name}`, Flax keeps one bias where torch sums
    two ({biases}), so those effective gate biases have half torch's variance.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> cell = tn.{name}(3, 4, rngs=nnx.Rngs(0))
    """


class LSTMCell(_nnx.LSTMCell):
    __doc__ = _CELL_DOC.format(
        name="LSTMCell", layout="Kernels per gate: ii/if_/ig/io (in, H), hi/hf/hg/ho (H, H).",
        biases="all gates")

    def __init__(self, in_features: int, hidden_features: int, *, kernel_init: InitFn = TORCH_RNN,
                 recurrent_kernel_init: InitFn = TORCH_RNN, bias_init: InitFn = TORCH_RNN, **kwargs: Any):
        with creating_parameters(LayerContext("LSTMCell", hidden=hidden_features)):
            super().__init__(in_features, hidden_features, kernel_init=kernel_init,
                             recurrent_kernel_init=recurrent_kernel_init, bias_init=bias_init, **kwargs)


class GRUCell(_nnx.GRUCell):
    __doc__ = _CELL_DOC.format(
        name="GRUCell",
        layout="Stacked kernels: dense_i (in, 3H) with bias (3H,), dense_h (H, 3H) without bias; NNX's "
               "GRU has no b_hn at all (Linen's has).",
        biases="r and z gates")

    def __init__(self, in_features: int, hidden_features: int, *, kernel_init: InitFn = TORCH_RNN,
                 recurrent_kernel_init: InitFn = TORCH_RNN, bias_init: InitFn = TORCH_RNN, **kwargs: Any):
        with creating_parameters(LayerContext("GRUCell", hidden=hidden_features)):
            super().__init__(in_features, hidden_features, kernel_init=kernel_init,
                             recurrent_kernel_init=recurrent_kernel_init, bias_init=bias_init, **kwargs)


class MultiHeadAttention(_nnx.MultiHeadAttention):
    """``flax.nnx.MultiHeadAttention`` with ``torch.nn.MultiheadAttention``'s default init.

    query/key/value kernels ~ U(+-sqrt(6 / (E + 3E))) (torch's stacked (3E, E)
    ``in_proj_weight`` drawn by ``xavier_uniform_`` as one matrix) when
    in_features == in_kv_features == qkv_features = E and num_kv_heads ==
    num_heads; otherwise each projection (in_x, width) ~ U(+-sqrt(6 / (in_x +
    width))), as torch's separate q/k/v_proj_weight. The out kernel
    ~ U(+-1/sqrt(qkv_features)); all biases 0. Flax: lecun_normal and zeros.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> mha = tn.MultiHeadAttention(num_heads=4, in_features=16, rngs=nnx.Rngs(0), decode=False)
    """

    def __init__(self, num_heads: int, in_features: int, qkv_features: int | None = None,
                 out_features: int | None = None, num_kv_heads: int | None = None,
                 in_kv_features: int | None = None, *, kernel_init: InitFn = TORCH_MHA_IN,
                 out_kernel_init: InitFn | None = TORCH_LINEAR_KERNEL, bias_init: InitFn = zeros(),
                 out_bias_init: InitFn | None = zeros(), **kwargs: Any):
        width = qkv_features if qkv_features is not None else in_features
        kv_in = in_kv_features if in_kv_features is not None else in_features
        kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
        stacked = in_features == kv_in == width and kv_heads == num_heads
        with creating_parameters(LayerContext("MultiHeadAttention", mha_stacked=stacked)):
            super().__init__(num_heads, in_features, qkv_features, out_features, num_kv_heads, in_kv_features,
                             kernel_init=kernel_init, out_kernel_init=out_kernel_init, bias_init=bias_init,
                             out_bias_init=out_bias_init, **kwargs)
