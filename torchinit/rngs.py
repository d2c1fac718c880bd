"""Flax's dropout keys and masks in torch: ``import torchinit.rngs as trn``. Never imports jax.

- :func:`linen_key` / :func:`nnx_key`: the key a Flax Linen scope's ``make_rng`` / an NNX
  ``RngStream`` returns, derived here bit for bit;
- :func:`dropout`, :func:`attention_dropout`, :func:`stochastic_depth`, :func:`drop_path`:
  torch's functional dropouts drawing Flax's masks from a JAX key (the layers are in
  :mod:`torchinit.nn`: ``Dropout``, ``Dropout1d/2d/3d``, ``DropPath``, ``StochasticDepth``);
- :func:`bind_rngs`: a whole torch model (``nn.Dropout`` modules, ``functional.dropout`` inside
  ``forward`` as Hugging Face attention does, and the keyed layers) bound to the keys its Flax
  twin's dropouts get; :func:`rng_calls` (jax needed at call time) lists the twin's calls.

- :class:`Rngs` / :class:`RngStream`: ``flax.nnx.Rngs`` / ``RngStream`` in torch, for the keyed
  layers' ``rngs=`` (an NNX twin's keys, call after call).

Mirror: :mod:`jaxinit.rngs` (same names, Flax's own code), except :func:`bind_rngs` and
:class:`RngBinding` (a Flax model takes its keys natively, ``rngs={'dropout': key}``) and
:class:`Rngs` / :class:`RngStream` (``flax.nnx``'s own).

>>> import torch, torchinit.random as tr, torchinit.rngs as trn
>>> y = trn.dropout(torch.ones(2, 3), 0.1, key=trn.linen_key(tr.key(0), "Dropout_0"))
"""
from _jaxinit.rng_calls import RngCall as RngCall
from torchinit._src.dropout import attention_dropout as attention_dropout
from torchinit._src.dropout import drop_path as drop_path
from torchinit._src.dropout import dropout as dropout
from torchinit._src.dropout import stochastic_depth as stochastic_depth
from torchinit._src.nnx_rngs import Rngs as Rngs
from torchinit._src.nnx_rngs import RngStream as RngStream
from torchinit._src.rngs import RngBinding as RngBinding
from torchinit._src.rngs import bind_rngs as bind_rngs
from torchinit._src.rngs import linen_key as linen_key
from torchinit._src.rngs import nnx_key as nnx_key
from torchinit._src.rngs import rng_calls as rng_calls

__all__ = [
    "RngBinding",
    "RngCall",
    "RngStream",
    "Rngs",
    "attention_dropout",
    "bind_rngs",
    "drop_path",
    "dropout",
    "linen_key",
    "nnx_key",
    "rng_calls",
    "stochastic_depth",
]
