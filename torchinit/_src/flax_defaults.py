"""Flax's default initialization for torch.nn modules: the mirror of jaxinit's torch defaults.

Each class subclasses the ``torch.nn`` module of the same name, keeps its
constructor, parameters and forward, and re-initializes in
``reset_parameters`` (``_reset_parameters`` for MultiheadAttention) the way
the matching Flax layer initializes its parameters (flax 0.12.8,
``flax/linen/linear.py``, ``recurrent.py``, ``attention.py`` and their
``flax/nnx/nn`` twins):

=====================  ==================================  ====================================
torch module           Flax layer                          Flax default, in torch's layout
=====================  ==================================  ====================================
Linear                 Dense / nnx.Linear                  weight lecun_normal (fan_in = in),
                                                           bias 0
Conv{1,2,3}d           Conv                                lecun_normal, fan_in = in/groups*prod(k);
                                                           bias 0
ConvTranspose{1,2,3}d  ConvTranspose                       lecun_normal, fan_in = in*prod(k)
                                                           (kernel (*k, in, out)); bias 0
Embedding              Embed                               N(0, 1/embedding_dim)
LayerNorm              LayerNorm                           weight 1, bias 0, eps 1e-6
LSTMCell, GRUCell      LSTMCell, GRUCell                   weight_ih lecun_normal, weight_hh
                                                           orthogonal, biases 0
MultiheadAttention     MultiHeadDotProductAttention /      q/k/v and out weights lecun_normal
                       nnx.MultiHeadAttention              (fan_in = their input width), biases 0
=====================  ==================================  ====================================

lecun_normal is a TRUNCATED normal: N(0, 1/fan_in) cut at +-2 std, with the std
divided by 0.87962566103423978 so the variance stays 1/fan_in
(``torchinit.lecun_normal_``). PyTorch's own defaults are uniform (see
:mod:`jaxinit.linen`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from _jaxinit.errors import InitError
from _jaxinit.public import public
from torchinit._src.initializers import (
    lecun_normal_,
    orthogonal_,
    variance_scaling_,
    zeros_,
)


def _flax_dense_(weight: torch.Tensor, bias: torch.Tensor | None, *, in_axis: int = 1, out_axis: int = 0) -> None:
    """Flax's Dense/Conv default: lecun_normal kernel, zero bias."""
    lecun_normal_(weight, in_axis=in_axis, out_axis=out_axis)
    if bias is not None:
        zeros_(bias)


@public("torchinit.nn", "Linear")
class FlaxLinear(nn.Linear):
    """``torch.nn.Linear`` with ``flax.linen.Dense``'s default initialization.

    weight (out, in) ~ lecun_normal: N(0, 1/in) truncated at +-2 std (std
    corrected by 1/0.8796); bias 0. PyTorch's own default is U(+-1/sqrt(in))
    for both.

    >>> import torchinit.nn as fnn
    >>> layer = fnn.Linear(3, 4)
    >>> bool((layer.bias == 0).all())
    True
    """

    def reset_parameters(self) -> None:
        _flax_dense_(self.weight, self.bias)


_CONV_DOC = """``torch.nn.{name}`` with ``flax.linen.Conv``'s default initialization.

    weight (out, in/groups, *k) ~ lecun_normal with fan_in = in/groups * prod(k)
    (Flax's kernel (*k, in/groups, out) has the same fan_in); bias 0. PyTorch's
    default is U(+-1/sqrt(fan_in)).

    >>> import torchinit.nn as fnn
    >>> conv = fnn.{name}(4, 8, 3, groups=2)
    """


class _FlaxConv:
    weight: torch.Tensor  # set by the torch.nn.Conv*d it is mixed into
    bias: torch.Tensor | None

    def reset_parameters(self) -> None:
        _flax_dense_(self.weight, self.bias)


# One public class per torch class (Conv1d/2d/3d, ConvTranspose1d/2d/3d) by design, as torch.nn has;
# their shared init is _FlaxConv.
@public("torchinit.nn", "Conv1d")
class FlaxConv1d(_FlaxConv, nn.Conv1d):
    __doc__ = _CONV_DOC.format(name="Conv1d")


@public("torchinit.nn", "Conv2d")
class FlaxConv2d(_FlaxConv, nn.Conv2d):
    __doc__ = _CONV_DOC.format(name="Conv2d")


@public("torchinit.nn", "Conv3d")
class FlaxConv3d(_FlaxConv, nn.Conv3d):
    __doc__ = _CONV_DOC.format(name="Conv3d")


_CONV_T_DOC = """``torch.nn.{name}`` with ``flax.linen.ConvTranspose``'s default initialization.

    Flax's kernel is (*k, in, out) and lecun_normal takes fan_in = in * prod(k);
    torch's weight is (in, out/groups, *k), so this draws lecun_normal with
    in_axis=0, out_axis=1: fan_in = in * prod(k). (PyTorch's own default uses
    fan_in = out/groups * prod(k), pytorch#7865. Flax's ``transpose_kernel=True``
    kernel (*k, out, in) would give fan_in = out * prod(k): not this class.)
    Flax's ConvTranspose has no groups; with groups > 1 the same rule applies.
    bias 0.

    >>> import torchinit.nn as fnn
    >>> deconv = fnn.{name}(3, 6, 4)
    """


class _FlaxConvTranspose:
    weight: torch.Tensor  # set by the torch.nn.ConvTranspose*d it is mixed into
    bias: torch.Tensor | None

    def reset_parameters(self) -> None:
        _flax_dense_(self.weight, self.bias, in_axis=0, out_axis=1)


@public("torchinit.nn", "ConvTranspose1d")
class FlaxConvTranspose1d(_FlaxConvTranspose, nn.ConvTranspose1d):
    __doc__ = _CONV_T_DOC.format(name="ConvTranspose1d")


@public("torchinit.nn", "ConvTranspose2d")
class FlaxConvTranspose2d(_FlaxConvTranspose, nn.ConvTranspose2d):
    __doc__ = _CONV_T_DOC.format(name="ConvTranspose2d")


@public("torchinit.nn", "ConvTranspose3d")
class FlaxConvTranspose3d(_FlaxConvTranspose, nn.ConvTranspose3d):
    __doc__ = _CONV_T_DOC.format(name="ConvTranspose3d")


@public("torchinit.nn", "Embedding")
class FlaxEmbedding(nn.Embedding):
    """``torch.nn.Embedding`` with ``flax.linen.Embed``'s default initialization.

    weight (num_embeddings, embedding_dim) ~ N(0, 1/embedding_dim): Flax's
    ``variance_scaling(1.0, 'fan_in', 'normal', out_axis=0)`` on its
    (num_embeddings, features) table, a PLAIN normal. PyTorch's default is
    N(0, 1). The ``padding_idx`` row is still zeroed, as in PyTorch (Flax has
    no padding_idx).

    >>> import torchinit.nn as fnn
    >>> emb = fnn.Embedding(10, 4, padding_idx=0)
    """

    def reset_parameters(self) -> None:
        variance_scaling_(self.weight, 1.0, "fan_in", "normal", in_axis=1, out_axis=0)
        self._fill_padding_idx_with_zero()


@public("torchinit.nn", "LayerNorm")
class FlaxLayerNorm(nn.LayerNorm):
    """``torch.nn.LayerNorm`` with ``flax.linen.LayerNorm``'s defaults.

    weight 1 and bias 0 (the same in both frameworks); ``eps`` defaults to
    Flax's 1e-6 instead of torch's 1e-5. Flax also computes the variance as
    E[x^2] - E[x]^2 by default (``use_fast_variance=True``); torch's two-pass
    variance is kept here.

    >>> import torchinit.nn as fnn
    >>> ln = fnn.LayerNorm(8)
    >>> ln.eps
    1e-06
    """

    def __init__(self, normalized_shape: Any, eps: float = 1e-6, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine, bias=bias,
                         device=device, dtype=dtype)


def _flax_cell_(cell: nn.RNNCellBase, gates: int, per_gate: bool) -> None:
    """Flax cell defaults: lecun_normal input kernels (fan_in = input_size),
    orthogonal recurrent kernels, zero biases."""
    lecun_normal_(cell.weight_ih)
    if per_gate:
        with torch.no_grad():
            for chunk in cell.weight_hh.chunk(gates, 0):
                orthogonal_(chunk)
    else:
        orthogonal_(cell.weight_hh)
    if cell.bias:
        zeros_(cell.bias_ih)
        zeros_(cell.bias_hh)


@public("torchinit.nn", "LSTMCell")
class FlaxLSTMCell(nn.LSTMCell):
    """``torch.nn.LSTMCell`` with ``flax.linen.LSTMCell`` / ``flax.nnx.LSTMCell``'s defaults.

    weight_ih (4H, in) ~ lecun_normal (fan_in = input_size, as each Flax
    (in, H) gate kernel); each (H, H) gate block of weight_hh (i, f, g, o) is an
    independent orthogonal matrix (Flax: one orthogonal kernel per gate);
    bias_ih = bias_hh = 0. PyTorch's default is U(+-1/sqrt(H)) everywhere.

    >>> import torchinit.nn as fnn
    >>> cell = fnn.LSTMCell(3, 4)
    """

    def reset_parameters(self) -> None:
        _flax_cell_(self, 4, per_gate=True)


_GRU_VARIANTS = ("linen", "nnx")


@public("torchinit.nn", "GRUCell")
class FlaxGRUCell(nn.GRUCell):
    """``torch.nn.GRUCell`` with Flax's GRUCell defaults.

    weight_ih (3H, in) ~ lecun_normal (fan_in = input_size); biases 0;
    weight_hh (3H, H) orthogonal, and here the two Flax APIs differ:

    - ``flax_variant='linen'`` (default): ``flax.linen.GRUCell`` has one (H, H)
      kernel per gate, so each (H, H) block (r, z, n) is an independent
      orthogonal matrix;
    - ``flax_variant='nnx'``: ``flax.nnx.GRUCell`` has ONE (H, 3H) recurrent
      kernel, so the whole (3H, H) weight_hh has orthonormal columns (entries
      of variance 1/(3H) instead of 1/H).

    PyTorch's default is U(+-1/sqrt(H)) everywhere.

    >>> import torchinit.nn as fnn
    >>> cell = fnn.GRUCell(3, 4, flax_variant="nnx")
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device: Any = None,
                 dtype: Any = None, *, flax_variant: str = "linen") -> None:
        if flax_variant not in _GRU_VARIANTS:
            raise InitError(
                f"GRUCell: `flax_variant` must be one of {list(_GRU_VARIANTS)}, got {flax_variant!r}; "
                "'linen' for flax.linen.GRUCell (orthogonal per gate), 'nnx' for flax.nnx.GRUCell "
                "(one stacked orthogonal recurrent kernel)."
            )
        self.flax_variant = flax_variant
        super().__init__(input_size, hidden_size, bias=bias, device=device, dtype=dtype)

    def reset_parameters(self) -> None:
        _flax_cell_(self, 3, per_gate=self.flax_variant == "linen")


@public("torchinit.nn", "MultiheadAttention")
class FlaxMultiheadAttention(nn.MultiheadAttention):
    """``torch.nn.MultiheadAttention`` with Flax's attention defaults.

    Flax's q/k/v kernels (in_x, E) and out kernel (E, out) are each
    lecun_normal with fan_in = their input width and zero biases. Here:
    ``in_proj_weight`` (3E, E) ~ lecun_normal with fan_in = E (or, with
    ``kdim``/``vdim``, each of q/k/v_proj_weight with fan_in = its input width),
    ``out_proj.weight`` ~ lecun_normal (fan_in = E), ``in_proj_bias`` =
    ``out_proj.bias`` = 0. ``bias_k``/``bias_v`` (``add_bias_kv``, no Flax
    counterpart) keep torch's ``xavier_normal_``. PyTorch's default is
    ``xavier_uniform_`` of the stacked in_proj and U(+-1/sqrt(E)) for out_proj.

    >>> import torchinit.nn as fnn
    >>> mha = fnn.MultiheadAttention(16, 4, batch_first=True)
    """

    def _reset_parameters(self) -> None:
        super()._reset_parameters()  # bias_k / bias_v as torch
        if self._qkv_same_embed_dim:
            lecun_normal_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                lecun_normal_(w)
        if self.in_proj_bias is not None:
            zeros_(self.in_proj_bias)
        _flax_dense_(self.out_proj.weight, self.out_proj.bias)
