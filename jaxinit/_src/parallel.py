"""Data-parallel training with torch DDP's semantics in JAX (``jax.jit`` + ``NamedSharding``
or ``shard_map``, one process or many through ``jax.distributed``).

What ``torch.nn.parallel.DistributedDataParallel`` (``torch/nn/parallel/distributed.py``) does,
and the JAX expression of each part:

* gradients averaged over ranks (all-reduce SUM / world size): the gradient of the mean over
  ranks of each rank's loss. Under ``jax.jit`` with a batch-sharded input that is the gradient
  of :func:`rank_mean` of the per-example losses (XLA inserts the collectives); inside
  ``shard_map`` it is :func:`value_and_grad`.
* ``SyncBatchNorm``: ``jaxinit.BatchNorm(axis_name=...)`` inside ``shard_map`` (with ``mask``
  for unequal or empty per-rank batches); under ``jax.jit`` any BatchNorm over the sharded
  batch (XLA reduces over the global batch).
* plain BatchNorm with ``broadcast_buffers=True`` (the default): each rank normalizes with its
  own batch and updates its own running statistics, and rank 0's buffers overwrite the others
  at the next forward: :func:`broadcast_buffers` on the updated statistics inside ``shard_map``.
* ``DistributedSampler``: :func:`sampler_indices` / :func:`global_batches`
  (:mod:`_jaxinit.parallel`).

The trap :func:`value_and_grad` closes (jax ``shard_map``, ``check_vma=True``, the default):
a replicated parameter used inside the map is implicitly broadcast to every device, and the
transpose of that broadcast SUMS the per-device gradients; ``jax.grad`` inside the map
therefore already returns the sum over devices, and the ``lax.pmean`` a DDP port adds on top
gives ``world_size`` times DDP's gradient, silently (with ``check_vma=False`` the same code is
right, and ``jax.grad(lambda p: lax.pmean(loss(p)))`` is wrong instead). :func:`value_and_grad`
differentiates with respect to a per-device copy of the parameters (``lax.pcast(...,
to='varying')``): the local gradient of each rank's loss, carried through any collective in
the loss (SyncBatchNorm's statistics) as torch's SyncBatchNorm backward carries it, then one
``lax.pmean``: DDP's gradient whatever ``check_vma`` is, and a second ``pmean`` changes nothing.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax import lax

from _jaxinit.errors import InitError
from _jaxinit.parallel import split_batch

Array = jax.Array


def _axis_size(axis_name: str, who: str) -> int:
    try:
        return int(lax.axis_size(axis_name))
    except NameError as e:  # unbound axis name: called outside shard_map / pmap
        raise InitError(
            f"{who}(axis_name={axis_name!r}): no mapped axis of that name is bound here. Call it inside "
            f"jax.shard_map(..., mesh=mesh, in_specs=...) over a mesh axis named {axis_name!r} (or jax.pmap with "
            "axis_name); under jax.jit with NamedSharding, take the gradient of rank_mean(...) instead.") from e


def _pcast_varying(tree, axis_name: str):
    """Each leaf as a per-device ("varying") value over ``axis_name``: its gradient is the local one."""
    return jax.tree.map(lambda a: lax.pcast(a, axis_name, to="varying"), tree)


def value_and_grad(fun: Callable, axis_name: str, *, has_aux: bool = False, world_size: Optional[int] = None):
    """DDP's ``(loss, gradients)`` inside ``shard_map``: ``fun(params, *args)`` is one rank's
    loss on its shard; returns ``f(params, *args) -> (pmean(loss), pmean(grad of the local
    loss))`` (with ``has_aux``: ``((pmean(loss), aux), grads)``, ``aux`` per rank), i.e.::

        grads = (1/N) * sum_r d loss_r / d params          (DDP: all-reduce SUM / world size)

    including the paths through collectives inside ``fun`` (SyncBatchNorm). Correct with
    ``check_vma`` True or False; the 4x trap (``jax.grad`` then ``lax.pmean`` under
    ``check_vma=True``) cannot happen through it. ``world_size``: the number of ranks this
    must run on (a mesh axis of another size is an error).

    Example::

        >>> step_grads = jaxinit.parallel.value_and_grad(local_loss, "data")
        >>> from jax.sharding import PartitionSpec
        >>> f = jax.shard_map(step_grads, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec("data")),
        ...                   out_specs=PartitionSpec())
    """

    def wrapped(params, *args, **kwargs):
        n = _axis_size(axis_name, "jaxinit.parallel.value_and_grad")
        if world_size is not None and n != world_size:
            raise InitError(
                f"jaxinit.parallel.value_and_grad: the mesh axis {axis_name!r} has {n} devices but world_size="
                f"{world_size}; build the mesh with {world_size} devices (jax.make_mesh(({world_size},), "
                f"({axis_name!r},))) or pass world_size={n}.")
        out, grads = jax.value_and_grad(fun, has_aux=has_aux)(_pcast_varying(params, axis_name), *args, **kwargs)
        grads = lax.pmean(grads, axis_name)
        if has_aux:
            return (lax.pmean(out[0], axis_name), out[1]), grads
        return lax.pmean(out, axis_name), grads

    return wrapped


def broadcast_buffers(tree: Any, axis_name: str, src: int = 0) -> Any:
    """Every device's copy of ``tree`` replaced by rank ``src``'s, inside ``shard_map``:
    DDP's ``broadcast_buffers=True`` (rank 0's BatchNorm running statistics overwrite the
    other ranks' at each forward). ``psum`` of the source's values and zeros elsewhere: exact."""
    _axis_size(axis_name, "jaxinit.parallel.broadcast_buffers")
    is_src = lax.axis_index(axis_name) == src

    def one(a):
        a = jnp.asarray(a)
        return lax.psum(jnp.where(is_src, a, jnp.zeros_like(a)), axis_name)

    return jax.tree.map(one, tree)


def rank_mean(values: Array, world_size: int, mask: Optional[Array] = None) -> Array:
    """DDP's objective on a global batch laid out rank by rank (:func:`global_batches`): the
    mean over ranks of each rank's mean of ``values`` (per-example losses, leading axis the
    global batch). Equal per-rank batches: the plain mean. With ``mask`` (True for the rows
    that count; padded, unequal per-rank batches) each rank divides by its own count, as each
    DDP rank's ``loss.mean()`` does; a rank with no row contributes 0 (torch:
    ``loss.sum() / max(len(loss), 1)``; an empty ``loss.mean()`` is NaN). Its gradient under
    ``jax.jit`` is DDP's gradient.

    Example::

        >>> loss = jaxinit.parallel.rank_mean(optax.softmax_cross_entropy_with_integer_labels(logits, y), 4)
    """
    b = split_batch(values.shape[0], world_size, "values.shape[0]")
    per = values.reshape(world_size, b, *values.shape[1:])
    axes = tuple(range(1, per.ndim))
    if mask is None:
        return per.mean(axes).mean()
    m = jnp.broadcast_to(jnp.asarray(mask, bool).reshape(world_size, b, *([1] * (per.ndim - 2))), per.shape)
    return (jnp.sum(per, axes, where=m) / jnp.maximum(jnp.sum(m, axes), 1)).mean()


def shard_batch(mesh: jax.sharding.Mesh, axis_name: str, *arrays):
    """``jax.device_put`` each array with its leading (batch) axis sharded over ``axis_name``
    of ``mesh`` (device ``r``: rows ``r*b:(r+1)*b``, rank ``r``'s batch); a batch that does
    not split into equal shards is an error naming the fix. With several processes
    (``jax.distributed``) each array is this process's part of the global batch
    (``jax.make_array_from_process_local_data``)."""
    n = mesh.shape[axis_name]
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis_name))
    out = []
    for a in arrays:
        if jax.process_count() > 1:
            split_batch(a.shape[0] * jax.process_count(), n, "global batch")
            out.append(jax.make_array_from_process_local_data(sharding, a))
        else:
            split_batch(a.shape[0], n, "batch")
            out.append(jax.device_put(a, sharding))
    return out[0] if len(out) == 1 else tuple(out)
