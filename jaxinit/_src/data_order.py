"""Data order on the JAX side: epochs from a JAX key, and torch's shuffles replayed (mirror:
torchinit.data).

- :func:`epoch_permutation`: the convention both packages share for "the order of epoch ``e``
  from ``key``": ``jax.random.permutation(jax.random.fold_in(key, e), n)``;
  :class:`KeyedRandomSampler` / :class:`KeyedDistributedSampler` iterate it (one epoch per
  ``iter()``; ``set_epoch`` as torch's DistributedSampler), and ``torchinit.data``'s torch
  samplers of the same names yield the same indices, bitwise.
- :func:`torch_randperm`, :class:`TorchRandomSampler`, :class:`TorchDistributedSampler`: the
  order a torch run gets from a seed (``torch.randperm`` with a seeded generator,
  ``RandomSampler``/``DataLoader(shuffle=True)``, ``DistributedSampler``), computed with numpy's
  MT19937 (``_jaxinit.data_order`` has the algorithm): a JAX run replays a torch run's batches.

Indices are numpy int64 arrays (data loading is host-side). Never imports torch.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterator

import jax
import numpy as np

from _jaxinit.data_order import KeyedEpochs, MT19937Words, check_epoch, check_length, check_n, check_replicas, check_seed, distributed_shard
from _jaxinit.errors import InitError
from jaxinit._src import random as _rnd



def epoch_permutation(key: Any, n: int, epoch: int = 0) -> np.ndarray:
    """``jax.random.permutation(jax.random.fold_in(key, epoch), n)`` as numpy int64.

    >>> import jaxinit.random as jr, jaxinit.data as jd
    >>> order = jd.epoch_permutation(jr.key(0), 10, epoch=3)
    """
    who = "jaxinit.data.epoch_permutation"
    n = check_n(n, who)
    k = jax.random.fold_in(_rnd.as_key(key), np.uint32(check_epoch(epoch, who)))
    return np.asarray(jax.random.permutation(k, n)).astype(np.int64)


class KeyedRandomSampler(KeyedEpochs):
    """Epoch orders from a JAX key: the ``e``-th ``iter()`` yields :func:`epoch_permutation`
    ``(key, n, e)`` (or the epoch given to :meth:`set_epoch`); ``torchinit.data.KeyedRandomSampler``
    (a torch Sampler) yields the same indices."""

    permutation = staticmethod(epoch_permutation)
    as_key = staticmethod(_rnd.as_key)


class KeyedDistributedSampler:
    """``torch.utils.data.DistributedSampler``'s sharding (padding by repeating the head, or
    ``drop_last``; ``indices[rank::num_replicas]``) over :func:`epoch_permutation` (``shuffle=True``)
    or ``range(n)``; the epoch is set with :meth:`set_epoch`, as torch's."""

    def __init__(self, dataset: Any, key: Any, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 drop_last: bool = False) -> None:
        who = "KeyedDistributedSampler"
        self.n = check_length(dataset, who)
        self.key = _rnd.as_key(key)
        self.num_replicas, self.rank = check_replicas(num_replicas, rank, who)
        self.shuffle, self.drop_last, self.epoch = bool(shuffle), bool(drop_last), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_epoch(epoch, "KeyedDistributedSampler.set_epoch")

    def indices(self) -> np.ndarray:
        order = epoch_permutation(self.key, self.n, self.epoch) if self.shuffle else np.arange(self.n)
        return distributed_shard(order, self.num_replicas, self.rank, self.drop_last)

    def __len__(self) -> int:
        return len(distributed_shard(np.arange(self.n), self.num_replicas, self.rank, self.drop_last))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


def torch_randperm(n: int, seed: int) -> np.ndarray:
    """``torch.randperm(n, generator=torch.Generator().manual_seed(seed))``, bitwise, as numpy int64.

    >>> import jaxinit.data as jd
    >>> jd.torch_randperm(5, 0).tolist()
    [4, 0, 1, 3, 2]
    """
    who = "jaxinit.data.torch_randperm"
    return MT19937Words(check_seed(seed, who)).randperm(check_n(n, who))


class TorchRandomSampler:
    """The index order of a torch run, epoch after epoch (each ``iter()`` is one epoch):

    - ``TorchRandomSampler(n, s)``: ``RandomSampler(data, generator=torch.Generator().manual_seed(s))``;
    - ``dataloader=True``: ``DataLoader(data, shuffle=True, generator=...manual_seed(s))``
      (the iterator's ``_base_seed`` is drawn first; ``persistent_workers=True``: first epoch only);
    - ``global_seed=True``: no generator, ``torch.manual_seed(s)`` before the loop (the sampler
      draws its own seed from the global generator each epoch); with ``dataloader=True`` the loader's
      draws come from the global generator too (nothing else may draw from it in between).
    ``num_samples`` as ``RandomSampler``'s (several passes, the last one cut). ``replacement=True``
    (``randint``) is not reproduced.
    """

    def __init__(self, data_source: Any, seed: int, *, dataloader: bool = False, global_seed: bool = False,
                 persistent_workers: bool = False, num_samples: int | None = None) -> None:
        who = "TorchRandomSampler"
        self.n = check_length(data_source, who)
        self.num_samples = self.n if num_samples is None else int(num_samples)
        if self.num_samples <= 0 or self.n == 0:
            raise InitError(f"{who}: num_samples should be a positive integer value, but got num_samples="
                            f"{self.num_samples} (torch's RandomSampler refuses it too)")
        self._gen = MT19937Words(check_seed(seed, who))
        self.dataloader, self.global_seed, self.persistent = bool(dataloader), bool(global_seed), bool(persistent_workers)
        self._epochs = 0

    def __len__(self) -> int:
        return self.num_samples

    def epoch(self) -> np.ndarray:
        """The next epoch's indices."""
        if self.dataloader and not (self.persistent and self._epochs > 0):
            self._gen.random64()  # _BaseDataLoaderIter._base_seed
        self._epochs += 1
        gen = MT19937Words(self._gen.int64()) if self.global_seed else self._gen
        full, rest = divmod(self.num_samples, self.n)
        parts = [gen.randperm(self.n) for _ in range(full)]
        parts.append(gen.randperm(self.n)[:rest])
        return np.concatenate(parts)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch().tolist())


class TorchDistributedSampler(KeyedDistributedSampler):
    """``torch.utils.data.DistributedSampler(dataset, num_replicas, rank, shuffle, seed, drop_last)``'s
    indices (``randperm`` from ``manual_seed(seed + epoch)``), epoch set with :meth:`set_epoch`."""

    def __init__(self, dataset: Any, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        who = "TorchDistributedSampler"
        self.n = check_length(dataset, who)
        self.num_replicas, self.rank = check_replicas(num_replicas, rank, who)
        self.seed = check_seed(seed, who)
        self.shuffle, self.drop_last, self.epoch = bool(shuffle), bool(drop_last), 0

    def set_epoch(self, epoch: int) -> None:
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise InitError(f"TorchDistributedSampler.set_epoch: `epoch` must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        order = MT19937Words(self.seed + self.epoch).randperm(self.n) if self.shuffle else np.arange(self.n)
        return distributed_shard(order, self.num_replicas, self.rank, self.drop_last)
