"""The torch side of :mod:`jaxinit.parallel`: DDP with SyncBatchNorm on every backend, and the
single-process twin of DDP's objective.

``torch.nn.parallel.DistributedDataParallel`` (``torch/nn/parallel/distributed.py``) does the
data-parallel work itself: gradients all-reduced and divided by the world size,
``broadcast_buffers`` (rank 0's buffers to every rank at each forward), ``no_sync()``. What
this module adds: :func:`ddp` (DDP with ``torchinit.BatchNorm.convert_sync_batchnorm``, so
SyncBatchNorm runs on gloo/CPU too) and :func:`rank_mean` (DDP's objective on a global batch
laid out rank by rank, for a single-process reference). The sampler bookkeeping is shared
with jaxinit (:mod:`_jaxinit.parallel`).
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import Tensor

from _jaxinit.errors import InitError
from _jaxinit.parallel import split_batch
from torchinit._src.batchnorm import BatchNorm


def ddp(model: torch.nn.Module, *, sync_batchnorm: bool = True, process_group: Any = None,
        **ddp_kwargs) -> torch.nn.parallel.DistributedDataParallel:
    """``DistributedDataParallel(model)`` after ``torchinit.BatchNorm.convert_sync_batchnorm``
    (``sync_batchnorm=True``): torch's SyncBatchNorm statistics on gloo (CPU) as on NCCL.
    ``ddp_kwargs`` go to DDP (``broadcast_buffers``, ``device_ids``, ...). Needs
    ``torch.distributed.init_process_group`` first.

    Example::

        >>> torch.distributed.init_process_group("gloo")      # torchrun sets rank and world size
        >>> model = torchinit.parallel.ddp(model)             # SyncBatchNorm + DDP
    """
    if not dist.is_available() or not dist.is_initialized():
        raise InitError(
            "torchinit.parallel.ddp: torch.distributed is not initialized in this process; call "
            "torch.distributed.init_process_group('gloo' on CPU, 'nccl' on GPU) in every rank first (torchrun sets "
            "RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT).")
    if sync_batchnorm:
        model = BatchNorm.convert_sync_batchnorm(model, process_group)
    return torch.nn.parallel.DistributedDataParallel(model, process_group=process_group, **ddp_kwargs)


def rank_mean(values: Tensor, world_size: int, mask: Optional[Tensor] = None) -> Tensor:
    """The mean over ranks of each rank's mean of ``values`` (leading axis: a global batch laid
    out rank by rank, :func:`global_batches`); with ``mask`` each rank divides by its own
    count. Its gradient on one process equals DDP's averaged gradient. Twin of
    ``jaxinit.parallel.rank_mean``."""
    b = split_batch(values.shape[0], world_size, "values.shape[0]")
    per = values.reshape(world_size, b, *values.shape[1:])
    dims = tuple(range(1, per.ndim))
    if mask is None:
        return per.mean(dims).mean()
    m = mask.to(torch.bool).reshape(world_size, b, *([1] * (per.ndim - 2))).expand(per.shape)
    return (torch.where(m, per, torch.zeros((), dtype=per.dtype)).sum(dims) / m.sum(dims).clamp_min(1)).mean()
