"""Data order on the torch side: torch samplers whose epochs are a JAX key's permutations
(mirror: jaxinit.data). Never imports jax.

``epoch_permutation(key, n, e)`` is ``jax.random.permutation(jax.random.fold_in(key, e), n)``
computed with :mod:`torchinit.random`'s threefry port (bitwise). :class:`KeyedRandomSampler`
(a ``torch.utils.data.Sampler``) and :class:`KeyedDistributedSampler` (a
``DistributedSampler`` with the same padding, ``drop_last`` and sharding) yield, epoch by
epoch, the indices ``jaxinit.data``'s samplers of the same names yield. Both work with any
``DataLoader`` (``num_workers > 0`` too: the sampler runs in the main process).
"""
from __future__ import annotations

import numbers
from typing import Any, Iterator

import torch
from torch.utils.data import DistributedSampler, Sampler

import torchinit.random as _rnd
from _jaxinit.data_order import KeyedEpochs, check_epoch, check_length, check_n, check_seed, distributed_shard



def epoch_permutation(key: Any, n: int, epoch: int = 0) -> torch.Tensor:
    """``jax.random.permutation(jax.random.fold_in(key, epoch), n)`` in torch (int64), bitwise.

    >>> import torchinit.random as tr, torchinit.data as td
    >>> order = td.epoch_permutation(tr.key(0), 10, epoch=3)
    """
    who = "torchinit.data.epoch_permutation"
    n = check_n(n, who)
    return _rnd.permutation(_rnd.fold_in(_rnd.as_key(key), check_epoch(epoch, who)), n).to(torch.int64)


class KeyedRandomSampler(KeyedEpochs, Sampler[int]):
    """A torch ``Sampler`` whose ``e``-th ``iter()`` yields ``epoch_permutation(key, n, e)`` (or the
    epoch given to :meth:`set_epoch`): the order ``jaxinit.data.KeyedRandomSampler`` yields.

    >>> import torch, torchinit.random as tr, torchinit.data as td
    >>> loader = torch.utils.data.DataLoader(range(10), batch_size=4, sampler=td.KeyedRandomSampler(10, tr.key(0)))
    """

    permutation = staticmethod(epoch_permutation)
    as_key = staticmethod(_rnd.as_key)


class KeyedDistributedSampler(DistributedSampler):
    """``torch.utils.data.DistributedSampler`` (same arguments but ``key`` for ``seed``; same padding,
    ``drop_last``, ``set_epoch`` and sharding) whose shuffled order is ``epoch_permutation(key, n,
    epoch)``: rank ``r`` gets what ``jaxinit.data.KeyedDistributedSampler(..., rank=r)`` yields."""

    def __init__(self, dataset: Any, key: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, drop_last: bool = False) -> None:
        n = check_length(dataset, "KeyedDistributedSampler")
        data: Any = range(n) if isinstance(dataset, numbers.Integral) else dataset
        super().__init__(data, num_replicas=num_replicas,
                         rank=rank, shuffle=shuffle, seed=0, drop_last=drop_last)
        self.n = n
        self.key = _rnd.as_key(key)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_epoch(epoch, "KeyedDistributedSampler.set_epoch")

    def __iter__(self) -> Iterator[int]:
        order = epoch_permutation(self.key, self.n, self.epoch).numpy() if self.shuffle else torch.arange(self.n).numpy()
        return iter(distributed_shard(order, self.num_replicas, self.rank, self.drop_last).tolist())


def torch_randperm(n: int, seed: int) -> torch.Tensor:
    """``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` (the mirror of
    ``jaxinit.data.torch_randperm``, which computes it without torch)."""
    who = "torchinit.data.torch_randperm"
    return torch.randperm(check_n(n, who), generator=torch.Generator().manual_seed(check_seed(seed, who)))
