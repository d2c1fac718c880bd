"""Data order in JAX: epoch orders from a JAX key, and torch runs' shuffles replayed bitwise.

``import jaxinit.data as jd``. Mirror: :mod:`torchinit.data` (same names), except
``TorchRandomSampler`` / ``TorchDistributedSampler``, which reproduce torch's own samplers
(torch has the originals). Never imports torch.

>>> import jaxinit.data as jd
>>> order = jd.torch_randperm(10, seed=0)   # == torch.randperm(10, generator=torch.Generator().manual_seed(0))
"""
from jaxinit._src.data_order import KeyedDistributedSampler as KeyedDistributedSampler
from jaxinit._src.data_order import KeyedRandomSampler as KeyedRandomSampler
from jaxinit._src.data_order import TorchDistributedSampler as TorchDistributedSampler
from jaxinit._src.data_order import TorchRandomSampler as TorchRandomSampler
from jaxinit._src.data_order import epoch_permutation as epoch_permutation
from jaxinit._src.data_order import torch_randperm as torch_randperm

__all__ = [
    "KeyedDistributedSampler",
    "KeyedRandomSampler",
    "TorchDistributedSampler",
    "TorchRandomSampler",
    "epoch_permutation",
    "torch_randperm",
]
