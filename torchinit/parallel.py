"""Data-parallel training: the torch side of :mod:`jaxinit.parallel` (docs/data_parallel.md).

:func:`ddp` is ``DistributedDataParallel`` with ``torchinit.BatchNorm.convert_sync_batchnorm``
(SyncBatchNorm on gloo/CPU too); :func:`rank_mean` is DDP's objective on one process;
:func:`sampler_indices` / :func:`global_batches` / :func:`split_batch` are shared with jaxinit.
jaxinit's ``value_and_grad``, ``broadcast_buffers`` and ``shard_batch`` have no function here:
DDP itself averages the gradients, broadcasts the buffers, and each rank loads its own shard.
"""
from _jaxinit.parallel import global_batches as global_batches
from _jaxinit.parallel import sampler_indices as sampler_indices
from _jaxinit.parallel import split_batch as split_batch
from torchinit._src.parallel import ddp as ddp
from torchinit._src.parallel import rank_mean as rank_mean

__all__ = ["ddp", "global_batches", "rank_mean", "sampler_indices", "split_batch"]

# jaxinit.parallel names whose torch counterpart is DDP itself (checked by parity_tests/test_data_parallel.py).
JAX_ONLY = {"value_and_grad": "DistributedDataParallel's gradient all-reduce / world size",
            "broadcast_buffers": "DistributedDataParallel(broadcast_buffers=True)",
            "shard_batch": "each rank loads its own DistributedSampler shard"}
