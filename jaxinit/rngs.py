"""Flax's dropout keys and masks under torch's names: ``import jaxinit.rngs as jrn``.

- :func:`linen_key` / :func:`nnx_key`: the key a Linen scope's ``make_rng`` / an NNX
  ``RngStream`` returns (Flax's own ``LazyRng``; ``jax.random.fold_in``);
- :func:`rng_calls`: every ``make_rng`` call of one Linen apply, with the mask it drew (what
  ``torchinit.rngs.bind_rngs`` binds a torch twin to);
- :func:`dropout`, :func:`attention_dropout`, :func:`stochastic_depth`, :func:`drop_path`:
  torch's functional names computing what ``flax.linen.Dropout`` /
  ``dot_product_attention_weights`` compute for a key.

Mirror: :mod:`torchinit.rngs` (same names), which also has ``bind_rngs`` / ``RngBinding``.
Never imports torch; flax is imported when a function needs it.
"""
from _jaxinit.rng_calls import RngCall as RngCall
from jaxinit._src.rngs import attention_dropout as attention_dropout
from jaxinit._src.rngs import drop_path as drop_path
from jaxinit._src.rngs import dropout as dropout
from jaxinit._src.rngs import linen_key as linen_key
from jaxinit._src.rngs import nnx_key as nnx_key
from jaxinit._src.rngs import rng_calls as rng_calls
from jaxinit._src.rngs import stochastic_depth as stochastic_depth

__all__ = [
    "RngCall",
    "attention_dropout",
    "drop_path",
    "dropout",
    "linen_key",
    "nnx_key",
    "rng_calls",
    "stochastic_depth",
]
