"""Data-parallel training with ``torch.nn.parallel.DistributedDataParallel``'s semantics in JAX.

The mapping (docs/data_parallel.md): DDP's gradient averaging is :func:`value_and_grad`
inside ``shard_map`` or the gradient of :func:`rank_mean` under ``jax.jit`` with a
batch-sharded input; ``SyncBatchNorm`` is ``jaxinit.BatchNorm(axis_name=...)``;
``broadcast_buffers=True`` is :func:`broadcast_buffers`; ``DistributedSampler`` is
:func:`sampler_indices` / :func:`global_batches`. Mirror: :mod:`torchinit.parallel`
(the sampler bookkeeping and the process-group set-up; torch's DDP does the rest).
"""
from _jaxinit.parallel import global_batches as global_batches
from _jaxinit.parallel import sampler_indices as sampler_indices
from _jaxinit.parallel import split_batch as split_batch
from jaxinit._src.parallel import broadcast_buffers as broadcast_buffers
from jaxinit._src.parallel import rank_mean as rank_mean
from jaxinit._src.parallel import shard_batch as shard_batch
from jaxinit._src.parallel import value_and_grad as value_and_grad

__all__ = ["broadcast_buffers", "global_batches", "rank_mean", "sampler_indices", "shard_batch", "split_batch",
           "value_and_grad"]
