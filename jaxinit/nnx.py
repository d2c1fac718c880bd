"""Flax NNX layers with PyTorch's default initialization: ``import jaxinit.nnx as tn``.

Each layer is the ``flax.nnx`` layer of the same name (same arguments, call,
parameter names and shapes) whose default initializers are those of the
matching ``torch.nn`` module, including the bias bound 1/sqrt(fan_in) of the
layer's kernel. Passing an initializer overrides the default, as in Flax.
Mirror: :mod:`torchinit.nn` (torch modules with Flax's defaults).

>>> import jaxinit.nnx as tn
>>> from flax import nnx
>>> layer = tn.Linear(3, 4, rngs=nnx.Rngs(0))
"""
from jaxinit._src.batchnorm import NnxBatchNorm as BatchNorm
from jaxinit._src.torch_defaults import NnxConv as Conv
from jaxinit._src.torch_defaults import NnxConvTranspose as ConvTranspose
from jaxinit._src.torch_defaults import NnxEmbed as Embed
from jaxinit._src.torch_defaults import NnxGRUCell as GRUCell
from jaxinit._src.torch_defaults import NnxLayerNorm as LayerNorm
from jaxinit._src.torch_defaults import NnxLinear as Linear
from jaxinit._src.torch_defaults import NnxLSTMCell as LSTMCell
from jaxinit._src.torch_defaults import NnxMultiHeadAttention as MultiHeadAttention

__all__ = [
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "Embed",
    "GRUCell",
    "LSTMCell",
    "LayerNorm",
    "Linear",
    "MultiHeadAttention",
]
