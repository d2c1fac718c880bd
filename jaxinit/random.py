"""The jax side of :mod:`torchinit.random`: same names and signatures, calling ``jax.random``.

Thin on purpose: every sampler is ``jax.random``'s own, so ``jaxinit.random.X(k, ...)``
and ``torchinit.random.X(k, ...)`` agree wherever torchinit matches jax (README
contract table). Keys here are JAX typed keys (``jax.random.key``); :func:`as_key`
accepts typed keys, raw uint32[2] keys (``jax.random.PRNGKey``, numpy arrays,
torch uint32 tensors read through ``__array__``/``sys.modules``) and
:func:`key_to_numpy` gives the raw words. Never imports torch.

>>> import jaxinit.random as jr
>>> k1, k2 = jr.split(jr.key(0))
>>> x = jr.normal(k1, (3, 4))
"""
from jaxinit._src.random import as_key as as_key
from jaxinit._src.random import bernoulli as bernoulli
from jaxinit._src.random import bits as bits
from jaxinit._src.random import fold_in as fold_in
from jaxinit._src.random import is_key as is_key
from jaxinit._src.random import key as key
from jaxinit._src.random import key_to_numpy as key_to_numpy
from jaxinit._src.random import normal as normal
from jaxinit._src.random import permutation as permutation
from jaxinit._src.random import split as split
from jaxinit._src.random import truncated_normal as truncated_normal
from jaxinit._src.random import uniform as uniform

# Mirrors torchinit.random's __all__ name for name by design (parity_tests/test_api.py checks the two surfaces match).
__all__ = [
    "as_key",
    "bernoulli",
    "bits",
    "fold_in",
    "is_key",
    "key",
    "key_to_numpy",
    "normal",
    "permutation",
    "split",
    "truncated_normal",
    "uniform",
]
