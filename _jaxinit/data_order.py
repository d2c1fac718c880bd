"""Data order shared by both packages (numpy only): torch's CPU ``randperm`` reproduced, and the
epoch/shard arithmetic of ``torch.utils.data.DistributedSampler``.

torch's CPU generator is MT19937 (``at::mt19937``; ``manual_seed(s)`` is the reference
``init_genrand(s mod 2**32)``); numpy's ``RandomState(seed)`` is the same engine with the same
seeding, so its raw 32-bit words (``randint(0, 2**32, dtype=uint32)``, the full range: no
rejection) are torch's ``generator->random()`` words.

``randperm_cpu`` (aten/src/ATen/native/TensorFactories.cpp, torch 2.13), for
``n < 2**32 / 20`` (= 214,748,364): ``r = arange(n)``; for ``i`` in ``0 .. n-2``:
``z = random() % (n - i)``; swap ``r[i]`` and ``r[i + z]``: ``n - 1`` words. Larger ``n`` use
an inside-out shuffle over ``random64()``: refused here (not verified).

Word use per epoch (torch/utils/data/sampler.py ``RandomSampler.__iter__``,
torch/utils/data/dataloader.py ``_BaseDataLoaderIter.__init__``):

- ``RandomSampler(generator=g)``: ``randperm(n, g)`` per full pass (``num_samples // n`` of
  them, then one cut to ``num_samples % n``);
- ``RandomSampler()`` (no generator): first ``seed = random_()`` on the global generator (an
  int64: ``random64() % 2**63``, ``random64 = word1 << 32 | word2``), then ``randperm`` from a
  fresh ``Generator().manual_seed(seed)``;
- ``DataLoader(shuffle=True, generator=g)`` (and without: the global generator): each
  iterator draws ``_base_seed`` (one ``random64``: 2 words) from it *before* the sampler runs
  (the sampler is a Python generator: it runs at the first batch); with
  ``persistent_workers=True`` only the first epoch's iterator is created.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Iterator

import numpy as np

from _jaxinit.errors import InitError

RANDPERM_SMALL_N = (2 ** 32 - 1) // 20


def check_n(n, who: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 0:
        raise InitError(f"{who}: `n` (the dataset length) must be an int >= 0, got {n!r}")
    n = int(n)
    if n >= RANDPERM_SMALL_N:
        raise InitError(f"{who}: n={n} >= {RANDPERM_SMALL_N} makes torch's randperm switch to its 64-bit inside-out "
                        "shuffle, which is not reproduced here; shard the dataset below that size")
    return n



def check_length(data_source, who: str) -> int:
    """The number of samples of ``data_source``: an int (the length) or a sized dataset."""
    if isinstance(data_source, numbers.Integral) and not isinstance(data_source, bool):
        return check_n(int(data_source), who)
    try:
        return check_n(len(data_source), who)
    except TypeError as err:
        raise InitError(f"{who}: `data_source` must be an int (the length) or a sized dataset, "
                        f"got {type(data_source).__name__}") from err


def check_epoch(epoch, who: str) -> int:
    """An epoch number folded into a key: an int in [0, 2**32)."""
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or not 0 <= int(epoch) < 2 ** 32:
        raise InitError(f"{who}: `epoch` must be an int in [0, 2**32), got {epoch!r}")
    return int(epoch)

def check_seed(seed, who: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2 ** 64:
        raise InitError(f"{who}: `seed` must be an int in [0, 2**64) (torch.Generator.manual_seed's), got {seed!r}")
    return int(seed)


class MT19937Words:
    """torch's CPU generator as a stream of raw 32-bit words (numpy's MT19937, legacy seeding)."""

    def __init__(self, seed: int):
        self._rs = np.random.RandomState(int(seed) & 0xFFFFFFFF)

    def words(self, k: int) -> np.ndarray:
        if k <= 0:
            return np.zeros(0, np.uint64)
        return self._rs.randint(0, 2 ** 32, size=k, dtype=np.uint32).astype(np.uint64)

    def random64(self) -> int:
        hi, lo = (int(w) for w in self.words(2))
        return (hi << 32) | lo

    def int64(self) -> int:
        """``torch.empty((), dtype=torch.int64).random_(generator=g).item()``."""
        return self.random64() % (2 ** 63)

    def randperm(self, n: int) -> np.ndarray:
        """``torch.randperm(n, generator=g)`` (n < 2**32 / 20), consuming n - 1 words."""
        r = list(range(n))
        if n > 1:
            z = (self.words(n - 1) % np.arange(n, 1, -1, dtype=np.uint64)).tolist()
            for i, zi in enumerate(z):
                j = i + zi
                r[i], r[j] = r[j], r[i]
        return np.asarray(r, dtype=np.int64)


def distributed_shard(indices: np.ndarray, num_replicas: int, rank: int, drop_last: bool) -> np.ndarray:
    """``DistributedSampler.__iter__`` after the order is drawn: pad by repeating the head (or drop
    the tail) to a multiple of ``num_replicas``, then ``indices[rank::num_replicas]``."""
    n = len(indices)
    if drop_last and n % num_replicas != 0:
        num_samples = math.ceil((n - num_replicas) / num_replicas)
    else:
        num_samples = math.ceil(n / num_replicas)
    total = num_samples * num_replicas
    if not drop_last:
        pad = total - n
        if pad > 0:
            if n == 0:
                raise InitError("DistributedSampler: cannot pad an empty dataset")
            reps = indices if pad <= n else np.tile(indices, math.ceil(pad / n))
            indices = np.concatenate([indices, reps[:pad]])
    else:
        indices = indices[:total]
    return indices[rank:total:num_replicas]


def check_replicas(num_replicas, rank, who: str) -> tuple[int, int]:
    for name, v in (("num_replicas", num_replicas), ("rank", rank)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise InitError(f"{who}: `{name}` must be an int, got {v!r}")
    if num_replicas < 1:
        raise InitError(f"{who}: `num_replicas` must be >= 1, got {num_replicas}")
    if not 0 <= rank < num_replicas:
        raise InitError(f"{who}: invalid `rank` {rank}, rank should be in the interval [0, {num_replicas - 1}] (torch's rule)")
    return int(num_replicas), int(rank)


class KeyedEpochs:
    """What both packages' ``KeyedRandomSampler`` are: the ``e``-th ``iter()`` yields
    ``permutation(key, n, e)`` (or from the epoch given to :meth:`set_epoch`), ``len()`` is
    ``n``. A package's class sets ``permutation`` (its ``epoch_permutation``) and ``as_key``
    (its key check); torchinit's also derives from ``torch.utils.data.Sampler``."""

    permutation: Callable[[Any, int, int], Any]  # (key, n, epoch) -> indices with .tolist()
    as_key: Callable[[Any], Any]

    def __init__(self, data_source: Any, key: Any) -> None:
        self.n = check_length(data_source, "KeyedRandomSampler")
        self.key = self.as_key(key)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_epoch(epoch, "KeyedRandomSampler.set_epoch")

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        order = self.permutation(self.key, self.n, self.epoch)
        self.epoch += 1
        return iter(order.tolist())
