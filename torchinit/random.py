"""JAX-compatible random keys for PyTorch: ``jax.random``'s threefry2x32, ported to torch.

Same key, same numbers: ``torchinit.random.uniform(k, shape)`` equals
``jax.random.uniform(k, shape)`` bit for bit (see the README's contract table).
Keys are ``torch.uint32`` tensors of shape (2,) (the ``key_data`` of a JAX key);
:func:`as_key` / :func:`key_to_numpy` convert from and to JAX keys losslessly.
Mirror: :mod:`jaxinit.random` (same names, calling ``jax.random``), except
:func:`set_compile` (opt-in ``torch.compile`` of the hash; jax.random is always compiled
by XLA, so jaxinit has nothing to switch). Never imports jax.

>>> import torchinit.random as tr
>>> k1, k2 = tr.split(tr.key(0))
>>> x = tr.normal(k1, (3, 4))
"""
from torchinit._src.random import as_key as as_key
from torchinit._src.random import bernoulli as bernoulli
from torchinit._src.random import bits as bits
from torchinit._src.random import fold_in as fold_in
from torchinit._src.random import is_key as is_key
from torchinit._src.random import key as key
from torchinit._src.random import key_to_numpy as key_to_numpy
from torchinit._src.random import normal as normal
from torchinit._src.random import permutation as permutation
from torchinit._src.random import set_compile as set_compile
from torchinit._src.random import split as split
from torchinit._src.random import truncated_normal as truncated_normal
from torchinit._src.random import uniform as uniform

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
    "set_compile",
    "split",
    "truncated_normal",
    "uniform",
]
