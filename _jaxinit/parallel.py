"""Data-parallel bookkeeping shared by :mod:`jaxinit.parallel` and :mod:`torchinit.parallel`.

Framework-free (numpy only): which examples each rank trains on, as
``torch.utils.data.DistributedSampler`` assigns them (``torch/utils/data/distributed.py``,
``DistributedSampler.__iter__``), and how a global batch is laid out so that the
contiguous shards of a batch-sharded JAX array (``NamedSharding(mesh, P("data"))`` gives
device ``r`` rows ``r*b:(r+1)*b``) are exactly the ranks' batches.

DistributedSampler, for an epoch order ``order`` of ``n`` examples and ``N`` ranks::

    drop_last=False: order padded by its own head to ceil(n/N)*N examples
    drop_last=True:  order cut to floor(n/N)*N examples
    rank r:          order[r::N]                    (strided, not contiguous)

so at step ``s`` with ``b`` examples per rank, rank ``r`` trains on
``order_r[s*b:(s+1)*b]`` and the ranks together on ``order[s*N*b:(s+1)*N*b]``: the
global batch of a single process with batch ``N*b``, in another order.
"""
from __future__ import annotations

import numbers
from typing import Optional

import numpy as np

from _jaxinit.errors import InitError


def check_world_size(world_size, who: str = "world_size") -> int:
    if isinstance(world_size, bool) or not isinstance(world_size, numbers.Integral) or world_size < 1:
        raise InitError(f"`{who}` must be a positive int (the number of ranks / devices), got {world_size!r}.")
    return int(world_size)


def sampler_indices(n: int, world_size: int, rank: int, *, order: Optional[np.ndarray] = None,
                    drop_last: bool = False) -> np.ndarray:
    """The example indices ``torch.utils.data.DistributedSampler(dataset_of_n, world_size, rank,
    shuffle=False, drop_last=drop_last)`` gives ``rank``, over the epoch order ``order``
    (default ``arange(n)``; pass the same permutation to every rank for a shuffled epoch,
    e.g. ``np.random.default_rng(seed + epoch).permutation(n)``).

    Example::

        >>> sampler_indices(10, 4, 1)           # padded by the head: 12 = 3 per rank
        array([1, 5, 9])
    """
    world_size = check_world_size(world_size)
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < world_size:
        raise InitError(f"`rank` must be an int in [0, {world_size - 1}] for world_size={world_size}, got {rank!r}.")
    order = np.arange(n) if order is None else np.asarray(order)
    if order.shape != (n,):
        raise InitError(f"`order` must hold the {n} example indices of the epoch, got shape {order.shape}.")
    if drop_last:
        order = order[: (n // world_size) * world_size]
    else:
        total = -(-n // world_size) * world_size
        pad = total - n
        if pad:
            order = np.concatenate([order, np.tile(order, -(-pad // max(n, 1)))[:pad]])
    return order[rank::world_size]


def global_batches(order: np.ndarray, world_size: int, per_rank_batch: int) -> np.ndarray:
    """``(steps, world_size * per_rank_batch)`` index array of an epoch as DDP with
    DistributedSampler(drop_last=True) and a DataLoader(batch_size=per_rank_batch,
    drop_last=True) trains it, laid out rank by rank: row ``s``, columns
    ``r*b:(r+1)*b`` are rank ``r``'s batch at step ``s``. Sharding the rows' examples over a
    ``world_size``-device mesh axis puts each rank's batch on its device.

    Example::

        >>> global_batches(np.arange(8), 2, 2)      # rank 0: 0,2 | 4,6; rank 1: 1,3 | 5,7
        array([[0, 2, 1, 3],
               [4, 6, 5, 7]])
    """
    world_size = check_world_size(world_size)
    if isinstance(per_rank_batch, bool) or not isinstance(per_rank_batch, numbers.Integral) or per_rank_batch < 1:
        raise InitError(f"`per_rank_batch` must be a positive int, got {per_rank_batch!r}.")
    order = np.asarray(order)
    ranks = [sampler_indices(len(order), world_size, r, order=order, drop_last=True) for r in range(world_size)]
    steps = len(ranks[0]) // per_rank_batch
    if steps == 0:
        raise InitError(
            f"{len(order)} examples over {world_size} ranks give {len(ranks[0])} per rank, fewer than "
            f"per_rank_batch={per_rank_batch}; use a smaller batch or fewer ranks.")
    per = np.stack([r[: steps * per_rank_batch].reshape(steps, per_rank_batch) for r in ranks], axis=1)
    return per.reshape(steps, world_size * per_rank_batch)


def split_batch(batch_size: int, world_size: int, who: str = "batch_size") -> int:
    """``batch_size // world_size``, or a clear error when the global batch does not split
    evenly (DDP trains ``world_size`` equal per-rank batches; a sharded JAX array needs
    equal shards)."""
    world_size = check_world_size(world_size)
    if batch_size % world_size:
        lo, hi = (batch_size // world_size) * world_size, -(-batch_size // world_size) * world_size
        raise InitError(
            f"`{who}`={batch_size} does not split into {world_size} equal per-rank batches; use a multiple of "
            f"{world_size} (e.g. {lo or world_size} or {hi}), or pad each rank's batch and pass a mask.")
    return batch_size // world_size
