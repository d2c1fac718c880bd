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
from jaxinit._src.torch_defaults_nnx import Conv as Conv
from jaxinit._src.torch_defaults_nnx import ConvTranspose as ConvTranspose
from jaxinit._src.torch_defaults_nnx import Embed as Embed
from jaxinit._src.torch_defaults_nnx import GRUCell as GRUCell
from jaxinit._src.torch_defaults_nnx import LayerNorm as LayerNorm
from jaxinit._src.torch_defaults_nnx import Linear as Linear
from jaxinit._src.torch_defaults_nnx import LSTMCell as LSTMCell
from jaxinit._src.torch_defaults_nnx import MultiHeadAttention as MultiHeadAttention

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
