"""Data order in torch: samplers whose epochs are a JAX key's permutations, bitwise.

``import torchinit.data as td``. Mirror: :mod:`jaxinit.data` (same names; jaxinit also
replays torch's own ``RandomSampler``/``DataLoader``/``DistributedSampler`` orders). Never imports jax.

>>> import torch, torchinit.random as tr, torchinit.data as td
>>> sampler = td.KeyedRandomSampler(10, tr.key(0))   # epoch e: jax.random.permutation(fold_in(key, e), 10)
"""
from torchinit._src.data_order import KeyedDistributedSampler as KeyedDistributedSampler
from torchinit._src.data_order import KeyedRandomSampler as KeyedRandomSampler
from torchinit._src.data_order import epoch_permutation as epoch_permutation
from torchinit._src.data_order import torch_randperm as torch_randperm

__all__ = [
    "KeyedDistributedSampler",
    "KeyedRandomSampler",
    "epoch_permutation",
    "torch_randperm",
]
