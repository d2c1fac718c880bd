"""Flax Linen layers with PyTorch's default initialization: ``import jaxinit.linen as tl``.

Each layer is the ``flax.linen`` layer of the same name (same fields, call,
parameter names and shapes) whose default initializers are those of the
matching ``torch.nn`` module, including the bias bound 1/sqrt(fan_in) computed
from the layer's kernel, which a plain Flax ``bias_init`` cannot see. Passing an
initializer overrides the default, as in Flax. Mirror: :mod:`torchinit.nn`
(torch modules with Flax's defaults).

>>> import jax, jax.numpy as jnp, jaxinit.linen as tl
>>> params = tl.Dense(4).init(jax.random.key(0), jnp.ones((1, 3)))["params"]
"""
from jaxinit._src.batchnorm import LinenBatchNorm as BatchNorm
from jaxinit._src.torch_defaults_linen import Conv as Conv
from jaxinit._src.torch_defaults_linen import ConvTranspose as ConvTranspose
from jaxinit._src.torch_defaults_linen import Dense as Dense
from jaxinit._src.torch_defaults_linen import Embed as Embed
from jaxinit._src.torch_defaults_linen import GRUCell as GRUCell
from jaxinit._src.torch_defaults_linen import LayerNorm as LayerNorm
from jaxinit._src.torch_defaults_linen import LSTMCell as LSTMCell
from jaxinit._src.torch_defaults_linen import MultiHeadDotProductAttention as MultiHeadDotProductAttention

__all__ = [
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "Dense",
    "Embed",
    "GRUCell",
    "LSTMCell",
    "LayerNorm",
    "MultiHeadDotProductAttention",
]
