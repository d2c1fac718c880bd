"""Same data order in both frameworks, both directions, bitwise.

- torch -> JAX: ``jaxinit.data`` (numpy's MT19937, no torch) reproduces ``torch.randperm`` with a
  seeded generator, ``RandomSampler``, ``DataLoader(shuffle=True, ...)`` (its ``_base_seed`` draw
  first; the global-generator and persistent-worker variants) and ``DistributedSampler``;
  compared with the real torch objects.
- JAX -> torch: ``torchinit.data``'s torch samplers yield ``jax.random.permutation(fold_in(key,
  epoch), n)`` (jax's own call), sharded as ``DistributedSampler`` shards, also through a
  ``DataLoader`` with worker processes.

The default run samples sizes, seeds, epochs and world sizes 1-8; the ``exhaustive`` marker
sweeps n up to 1e6.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

import jaxinit.data as jd
import torchinit.data as td
import torchinit.random as tr
from _jaxinit.errors import InitError

SEEDS = (0, 1, 2 ** 32 + 5, 2 ** 63 + 7)  # manual_seed keeps the low 32 bits


def _torch_perm(n, seed):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 100, 4097])
def test_torch_randperm_replayed(n):
    for s in SEEDS:
        assert np.array_equal(jd.torch_randperm(n, s), _torch_perm(n, s)), (n, s)
        assert torch.equal(td.torch_randperm(n, s), torch.from_numpy(_torch_perm(n, s)))


@pytest.mark.exhaustive
@pytest.mark.parametrize("n", [65_537, 999_983, 1_000_000])
def test_torch_randperm_replayed_large(n):
    for s in (0, 12345, 2 ** 40 + 3):
        assert np.array_equal(jd.torch_randperm(n, s), _torch_perm(n, s)), (n, s)


def _epochs(loader_or_sampler, k):
    out = []
    for _ in range(k):
        out.append(np.concatenate([np.asarray(b).reshape(-1) for b in loader_or_sampler])
                   if isinstance(loader_or_sampler, DataLoader) else np.asarray(list(loader_or_sampler)))
    return out


@pytest.mark.parametrize("n,seed", [(10, 0), (97, 2 ** 32 + 5), (1000, 7)])
def test_random_sampler_and_dataloader_orders(n, seed):
    data = list(range(n))
    for num_samples in (None, 2 * n + 3):
        ref = _epochs(RandomSampler(data, num_samples=num_samples, generator=torch.Generator().manual_seed(seed)), 3)
        ours = jd.TorchRandomSampler(n, seed, num_samples=num_samples)
        assert all(np.array_equal(a, b) for a, b in zip(ref, _epochs(ours, 3)))
    loader = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))
    ours = jd.TorchRandomSampler(n, seed, dataloader=True)
    assert all(np.array_equal(a, b) for a, b in zip(_epochs(loader, 3), _epochs(ours, 3)))
    # no generator: torch.manual_seed(seed) and the global generator (sampler draws its own seed)
    torch.manual_seed(seed)
    ref = _epochs(DataLoader(data, batch_size=8, shuffle=True), 3)
    assert all(np.array_equal(a, b) for a, b in zip(ref, _epochs(jd.TorchRandomSampler(n, seed, dataloader=True,
                                                                                         global_seed=True), 3)))
    torch.manual_seed(seed)
    ref = _epochs(RandomSampler(data), 2)
    assert all(np.array_equal(a, b) for a, b in zip(ref, _epochs(jd.TorchRandomSampler(n, seed, global_seed=True), 2)))


def test_dataloader_workers_persistent_order():
    """num_workers > 0 and persistent_workers: the sampler runs in the main process; a persistent
    iterator draws its _base_seed once."""
    data = list(range(40))
    loader = DataLoader(data, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(3),
                        num_workers=2, persistent_workers=True)
    ref = _epochs(loader, 3)
    ours = jd.TorchRandomSampler(40, 3, dataloader=True, persistent_workers=True)
    assert all(np.array_equal(a, b) for a, b in zip(ref, _epochs(ours, 3)))
    # and from a JAX key through the same kind of loader
    sampler = td.KeyedRandomSampler(40, tr.key(5))
    keyed = DataLoader(data, batch_size=5, sampler=sampler, num_workers=2)
    got = _epochs(keyed, 2)
    for e in range(2):
        assert np.array_equal(got[e], np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.key(5), e), 40)))


@pytest.mark.parametrize("world", range(1, 9))
def test_distributed_sampler_replayed(world):
    for n, drop_last, seed in ((0 if world == 1 else 13, False, 0), (23, True, 5), (world * 3, False, 2 ** 33)):
        if n == 0:
            continue
        for rank in range(world):
            ref_s = DistributedSampler(list(range(n)), num_replicas=world, rank=rank, seed=seed, drop_last=drop_last)
            ours = jd.TorchDistributedSampler(n, world, rank, seed=seed, drop_last=drop_last)
            assert len(ours) == len(ref_s)
            for epoch in (0, 3):
                ref_s.set_epoch(epoch)
                ours.set_epoch(epoch)
                assert list(ref_s) == list(ours), (n, world, rank, epoch)


@pytest.mark.parametrize("n", [0, 1, 10, 1000])
def test_keyed_samplers_are_jax_permutation(n):
    key = jax.random.key(42)
    js, ts = jd.KeyedRandomSampler(n, key), td.KeyedRandomSampler(list(range(n)), np.asarray(jax.random.key_data(key)))
    for e in range(2):
        ref = np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n))
        assert np.array_equal(list(js), ref) and np.array_equal(list(ts), ref), (n, e)
        assert np.array_equal(jd.epoch_permutation(key, n, e), ref)
    ts.set_epoch(7)
    assert np.array_equal(list(ts), np.asarray(jax.random.permutation(jax.random.fold_in(key, 7), n)))


@pytest.mark.exhaustive
@pytest.mark.parametrize("n", [65_537, 1_000_000])
def test_keyed_samplers_large(n):
    key = jax.random.key(3)
    for e in (0, 5):
        ref = np.asarray(jax.random.permutation(jax.random.fold_in(key, e), n))
        assert np.array_equal(td.epoch_permutation(tr.key(3), n, e).numpy(), ref)


def test_keyed_distributed_sampler_shards():
    """World sizes 1-8, every rank, padding and drop_last as torch's DistributedSampler (same length,
    same sharding of the order); torch and jax sides equal."""
    n, key = 29, jax.random.key(9)
    for world in range(1, 9):
        for drop_last in (False, True):
            shards = []
            for rank in range(world):
                ts = td.KeyedDistributedSampler(n, np.asarray(jax.random.key_data(key)), num_replicas=world, rank=rank,
                                                drop_last=drop_last)
                js = jd.KeyedDistributedSampler(n, key, world, rank, drop_last=drop_last)
                ref_len = len(DistributedSampler(list(range(n)), num_replicas=world, rank=rank, drop_last=drop_last))
                assert len(ts) == len(js) == ref_len
                ts.set_epoch(2)
                js.set_epoch(2)
                got = list(ts)
                assert got == list(js)
                shards.append(got)
            order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 2), n)).tolist()
            interleaved = [shards[r][i] for i in range(len(shards[0])) for r in range(world)]
            total = len(interleaved)
            assert interleaved == (order + order)[:total] if not drop_last else interleaved == order[:total]


def test_errors():
    with pytest.raises(InitError, match="`n`"):
        jd.torch_randperm(-1, 0)
    with pytest.raises(InitError, match="64-bit inside-out"):
        jd.torch_randperm(2 ** 32 // 20 + 1, 0)
    with pytest.raises(InitError, match="`seed`"):
        jd.torch_randperm(3, -1)
    with pytest.raises(InitError, match="rank should be in the interval"):
        jd.TorchDistributedSampler(10, 2, 2)
    with pytest.raises(InitError, match="`epoch`"):
        td.KeyedRandomSampler(3, tr.key(0)).set_epoch(-1)
    with pytest.raises(InitError, match="for an int seed"):
        td.KeyedRandomSampler(3, 0)
    with pytest.raises(InitError, match="num_samples"):
        jd.TorchRandomSampler(0, 0)


def test_mirror_surface():
    # TorchRandomSampler / TorchDistributedSampler replay torch's own samplers: torch has the originals
    assert set(td.__all__) == set(jd.__all__) - {"TorchRandomSampler", "TorchDistributedSampler"}
