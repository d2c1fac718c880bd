"""torch.nn modules with Flax's default initialization: ``import torchinit.nn as fnn``.

Each module is the ``torch.nn`` module of the same name (same constructor,
parameters and forward) re-initialized in ``reset_parameters`` the way the
matching Flax layer initializes its parameters, so a PyTorch user can
reproduce a Flax model's initialization. The stochastic layers (``Dropout``,
``Dropout1d/2d/3d``, ``DropPath``, ``StochasticDepth``) are the torch layers of the
same name drawing ``flax.linen.Dropout``'s masks from a JAX key (:mod:`torchinit.rngs`). Mirror: :mod:`jaxinit.linen` and
:mod:`jaxinit.nnx` (Flax layers with PyTorch's defaults).

>>> import torchinit.nn as fnn
>>> layer = fnn.Linear(3, 4)  # weight lecun_normal, bias 0, as flax.linen.Dense
"""
from torchinit._src.batchnorm import BatchNorm as BatchNorm
from torchinit._src.dropout import Dropout as Dropout
from torchinit._src.dropout import Dropout1d as Dropout1d
from torchinit._src.dropout import Dropout2d as Dropout2d
from torchinit._src.dropout import Dropout3d as Dropout3d
from torchinit._src.dropout import DropPath as DropPath
from torchinit._src.dropout import StochasticDepth as StochasticDepth
from torchinit._src.flax_defaults import FlaxConv1d as Conv1d
from torchinit._src.flax_defaults import FlaxConv2d as Conv2d
from torchinit._src.flax_defaults import FlaxConv3d as Conv3d
from torchinit._src.flax_defaults import FlaxConvTranspose1d as ConvTranspose1d
from torchinit._src.flax_defaults import FlaxConvTranspose2d as ConvTranspose2d
from torchinit._src.flax_defaults import FlaxConvTranspose3d as ConvTranspose3d
from torchinit._src.flax_defaults import FlaxEmbedding as Embedding
from torchinit._src.flax_defaults import FlaxGRUCell as GRUCell
from torchinit._src.flax_defaults import FlaxLayerNorm as LayerNorm
from torchinit._src.flax_defaults import FlaxLinear as Linear
from torchinit._src.flax_defaults import FlaxLSTMCell as LSTMCell
from torchinit._src.flax_defaults import FlaxMultiheadAttention as MultiheadAttention

__all__ = [
    "BatchNorm",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "DropPath",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "Embedding",
    "GRUCell",
    "LSTMCell",
    "LayerNorm",
    "Linear",
    "MultiheadAttention",
    "StochasticDepth",
]
