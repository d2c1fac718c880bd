"""BatchNorm's statistics core for JAX, shared by the Linen and NNX modules of
:mod:`jaxinit._src.batchnorm` (whose docstring lists where PyTorch and Flax differ).

:func:`batch_statistics` (mean and biased variance of a batch, across devices when
``axis_name`` is given), :func:`update_running` (the running-statistics update) and
:func:`normalize`; :func:`batchnorm_forward` chains them. The parametrization of the three
conventions and the argument checks live in :mod:`_jaxinit.batchnorm`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax.linen import dtypes as _fdtypes
from jax import lax

from _jaxinit import batchnorm as _core

Array = jax.Array

USE_RUNNING_AVERAGE_HELP = (
    "No `use_running_average` was given to jaxinit BatchNorm. Either\n"
    "  1. pass it to the constructor: BatchNorm(..., use_running_average=False) for training,\n"
    "  2. pass it to the call: bn(x, use_running_average=not train), or\n"
    "  3. (NNX) call model.train() / model.eval()."
)


def canonical_dtype_name(dtype) -> str:
    return jnp.dtype(dtype).name


def stats_dtype(param_dtype, momentum_style: str = "torch") -> Any:
    """Dtype the running statistics are created in: PyTorch's rules ``promote_types(param_dtype,
    float32)`` (float64 stays float64, as a float64 torch module); Flax's rules float32 whatever
    ``param_dtype`` (``flax.linen.BatchNorm``, ``flax.nnx.BatchNorm``)."""
    if _core.flax_rules(momentum_style):
        return jnp.float32
    return jnp.promote_types(param_dtype, jnp.float32)


def check_input(x, axis: int, expected_channels, training: bool, *, momentum_style: str = "torch",
                n_devices: int = 1, check_batch: bool = True, source: str = "num_features") -> int:
    """Shape/dtype checks shared by Linen and NNX (PyTorch's or Flax's rules, see
    :mod:`_jaxinit.batchnorm`); returns the non-negative channel axis."""
    flax = _core.flax_rules(momentum_style)
    if not flax and not jnp.issubdtype(x.dtype, jnp.floating):
        _core.check_float_dtype(canonical_dtype_name(x.dtype), False)
    ax = _core.channel_axis(x.ndim, axis, flax=flax)
    _core.check_channels(x.shape, ax, expected_channels, source=source)
    if training and check_batch and not flax:
        _core.check_batch_size(x.shape, ax, n_devices)
    return ax


def _group_size(axis_name, axis_index_groups) -> int:
    if axis_name is None:
        return 1
    if axis_index_groups is not None:
        return len(axis_index_groups[0])
    return int(lax.axis_size(axis_name))


def _abs_sq(x: Array) -> Array:
    """``|x|**2`` elementwise (``flax/linen/normalization.py``, ``_abs_sq``)."""
    if jnp.iscomplexobj(x):
        return lax.square(lax.real(x)) + lax.square(lax.imag(x))
    return lax.square(x)


class BatchStats(NamedTuple):
    """Per-channel statistics of a batch: ``mean``, BIASED ``var``, ``count`` (values per
    channel: a Python int, or an array with a mask), and for the 'shifted' variance the shift
    ``shift`` (k) and ``offset = mean - k`` (None otherwise)."""

    mean: Array
    var: Array
    count: Any
    shift: Optional[Array] = None
    offset: Optional[Array] = None


def batch_statistics(
    x: Array,
    channel_axis: int,
    *,
    variance: str = "shifted",
    momentum_style: str = "torch",
    axis_name: Optional[str] = None,
    axis_index_groups: Any = None,
    mask: Optional[Array] = None,
    dtype: Any = None,
) -> BatchStats:
    """Batch mean, BIASED batch variance and the number of values per channel.

    Computed in ``promote_types(dtype or x.dtype, float32)`` (float32 for integer inputs,
    complex stays complex). ``variance``: 'shifted' (one pass over ``x - k``, ``k`` the mean
    of the first :data:`_jaxinit.batchnorm.SHIFT_SAMPLES` values per channel; two-pass
    accuracy), 'two_pass' (``E[|x - E[x]|**2]``) or 'fast' (``max(0, E[|x|**2] - |E[x]|**2)``,
    Flax's default). With ``axis_name`` the statistics cover every device of the named axis
    (or of its ``axis_index_groups`` group): without ``mask`` each device holds the same
    number of values and the per-device moments are averaged with one ``lax.pmean`` as
    ``flax.linen.BatchNorm`` does (the 'shifted' shift is averaged first, so every device
    shifts by the same k). With ``mask`` (broadcastable to ``x``, True for the values that
    count): PyTorch's rules add sums and counts with ``lax.psum`` (SyncBatchNorm's count
    weighting; devices may hold different numbers of valid values; 'shifted' computes the
    two-pass variance there, since the first values may be padding); Flax's rules
    (``momentum_style='decay'``, 'two_pass' or 'fast') compute what Flax computes:
    ``mean(where=mask)`` with the mask as given, per-device means averaged with ``pmean``.
    """
    cdtype = jnp.promote_types(dtype if dtype is not None else jnp.result_type(x), jnp.float32)
    x = x.astype(cdtype)
    axes = tuple(i for i in range(x.ndim) if i != channel_axis)
    group = _group_size(axis_name, axis_index_groups)

    def pmean(*vals):  # one collective for all moments, as Flax
        if axis_name is None:
            return vals
        if len(vals) > 1:
            red = lax.pmean(jnp.stack(vals, axis=0), axis_name, axis_index_groups=axis_index_groups)
            return tuple(red[i] for i in range(len(vals)))
        return (lax.pmean(vals[0], axis_name, axis_index_groups=axis_index_groups),)

    def psum(*vals):
        if axis_name is None:
            return vals
        red = lax.psum(jnp.stack(vals, axis=0), axis_name, axis_index_groups=axis_index_groups)
        return tuple(red[i] for i in range(len(vals)))

    if mask is not None and _core.flax_rules(momentum_style) and variance != "shifted":
        # flax/linen/normalization.py, _compute_stats: the mask goes to mean(where=) as given.
        where = jnp.asarray(mask, dtype=bool)
        if variance == "fast":
            x2 = _abs_sq(x)  # evaluated first, as the arguments of Flax's maybe_distributed_mean(x, _abs_sq(x))
            mu, mu2 = pmean(x.mean(axes, where=where), x2.mean(axes, where=where))
            var = jnp.maximum(0.0, mu2 - _abs_sq(mu))
        else:
            (mu,) = pmean(x.mean(axes, where=where))
            (var,) = pmean(_abs_sq(x - jnp.expand_dims(mu, axes)).mean(axes, where=where))
        (cnt,) = psum(jnp.sum(jnp.broadcast_to(where, x.shape), axes).astype(var.dtype))
        return BatchStats(mu, var, cnt)

    if mask is not None:
        m = jnp.broadcast_to(jnp.asarray(mask, dtype=bool), x.shape)
        ones = jnp.broadcast_to(jnp.ones((), cdtype), x.shape)
        if variance == "fast":
            cnt, s1, s2 = psum(jnp.sum(ones, axes, where=m), jnp.sum(x, axes, where=m),
                               jnp.sum(_abs_sq(x), axes, where=m))
            mu = s1 / cnt
            var = jnp.maximum(0.0, s2 / cnt - _abs_sq(mu))
        else:
            cnt, s1 = psum(jnp.sum(ones, axes, where=m), jnp.sum(x, axes, where=m))
            mu = s1 / cnt
            (ss,) = psum(jnp.sum(_abs_sq(x - jnp.expand_dims(mu, axes)), axes, where=m))
            var = ss / cnt
        return BatchStats(mu, var, cnt)

    n = _core.values_per_channel(x.shape, channel_axis) * group
    if variance == "fast":
        x2 = _abs_sq(x)  # evaluated first, as in Flax: the trace order fixes autodiff's order of sums
        mu, mu2 = pmean(x.mean(axes), x2.mean(axes))
        return BatchStats(mu, jnp.maximum(0.0, mu2 - _abs_sq(mu)), n)
    if variance == "two_pass":
        (mu,) = pmean(x.mean(axes))
        (var,) = pmean(_abs_sq(x - jnp.expand_dims(mu, axes)).mean(axes))
        return BatchStats(mu, var, n)
    # 'shifted': for any constant k, mean = k + E[x - k] and var = E[|x - k|^2] - |E[x - k]|^2
    # hold exactly, so k carries no gradient. k is a reduction of a few values (XLA keeps it a
    # separate per-channel array and fuses x - k into the two reductions of one read of x).
    k = lax.stop_gradient(x[_core.shift_sample_index(x.shape, channel_axis)].mean(axes))
    (k,) = pmean(k)
    d = x - jnp.expand_dims(k, axes)
    a, s2 = pmean(d.mean(axes), _abs_sq(d).mean(axes))
    return BatchStats(k + a, jnp.maximum(0.0, s2 - _abs_sq(a)), n, k, a)


def update_running(
    running_mean: Array,
    running_var: Array,
    num_batches_tracked: Array,
    mean: Array,
    var: Array,
    n,
    *,
    momentum: Optional[float],
    momentum_style: str = "torch",
    unbiased_running_var: bool = True,
    update_statistics: bool = True,
    cast: bool = True,
) -> tuple[Array, Array, Array]:
    """New ``(running_mean, running_var, num_batches_tracked)``: the update of
    :func:`_jaxinit.batchnorm.update_running` (``momentum=None``: ``take = 1 /
    num_batches_tracked`` after the increment), without gradient. ``cast``: results keep the
    dtypes of the running statistics (PyTorch's rules, NNX); False leaves the dtype of the
    update (``flax.linen.BatchNorm``: float32 statistics become float64 with float64 inputs).
    ``update_statistics=False`` (an empty batch) only counts the call, as PyTorch.
    """
    nbt = num_batches_tracked + 1
    if not update_statistics:
        return running_mean, running_var, nbt
    keep, take = _core.update_coefficients(
        momentum, momentum_style, None if momentum is not None
        else nbt.astype(jnp.promote_types(running_mean.dtype, jnp.result_type(mean))))
    new_mean, new_var = _core.update_running(running_mean, running_var, mean, var, n, keep=keep, take=take,
                                             unbiased_running_var=unbiased_running_var)
    new_mean, new_var = lax.stop_gradient(new_mean), lax.stop_gradient(new_var)
    if cast:
        new_mean, new_var = new_mean.astype(running_mean.dtype), new_var.astype(running_var.dtype)
    return new_mean, new_var, nbt


def normalize(x: Array, mean: Array, var: Array, scale: Optional[Array], bias: Optional[Array],
              channel_axis: int, eps: float, dtype: Any = None, *, shift: Optional[Array] = None,
              offset: Optional[Array] = None) -> Array:
    """``(x - mean) * (rsqrt(var + eps) * scale) + bias``, Flax's expression (bit for bit).

    With ``shift`` (k) and ``offset`` (mean - k) of the 'shifted' statistics:
    ``(x - k) * m - offset * m + bias``, ``m = rsqrt(var + eps) * scale``, the same
    function of ``x`` with only per-channel values broadcast against it. The output dtype is
    ``dtype`` or, when None, Flax's rule (``flax.linen.dtypes.canonicalize_dtype`` of the
    input and the parameters: their promotion, float32 at least for integer inputs).
    """
    shape = [1] * x.ndim
    shape[channel_axis] = x.shape[channel_axis]
    # Operations in flax/linen/normalization.py's order (_normalize): the order of the traced
    # operations fixes the order in which autodiff adds cotangents, so it matters bit for bit.
    red = tuple(i for i in range(x.ndim) if i != channel_axis)
    center = jnp.expand_dims(mean if shift is None else shift, red)
    var = jnp.expand_dims(var, red)
    y = x - center
    mul = lax.rsqrt(var + eps)
    args = [x]
    if scale is not None:
        s = scale.reshape(shape)
        mul = mul * s
        args.append(s)
    y = y * mul
    if shift is not None:
        assert offset is not None  # batch_statistics returns them together
        y = y - offset.reshape(shape) * mul
    if bias is not None:
        b = bias.reshape(shape)
        y = y + b
        args.append(b)
    return jnp.asarray(y, _fdtypes.canonicalize_dtype(*args, dtype=dtype))


def batchnorm_forward(
    x: Array,
    *,
    training: bool,
    running: Optional[tuple[Array, Array, Array]],
    scale: Optional[Array],
    bias: Optional[Array],
    axis: int,
    eps: float,
    momentum: Optional[float],
    momentum_style: str,
    unbiased_running_var: bool,
    variance: str,
    axis_name: Optional[str] = None,
    axis_index_groups: Any = None,
    mask: Optional[Array] = None,
    dtype: Any = None,
    expected_channels: Optional[int] = None,
    update: bool = True,
    check_batch: bool = True,
    cast_running: bool = True,
) -> tuple[Array, Optional[tuple[Array, Array, Array]]]:
    """One BatchNorm call: ``(y, new_running)``; ``new_running`` is None when nothing is updated.

    ``running`` is ``(mean, var, num_batches_tracked)`` or None
    (``track_running_stats=False``: batch statistics in training AND evaluation,
    as PyTorch). ``update=False`` computes the training output without touching
    the running statistics (Linen ``init``). ``cast_running``: see :func:`update_running`.
    """
    use_batch = training or running is None
    n_dev = 1
    if use_batch and axis_name is not None and mask is None:
        n_dev = _group_size(axis_name, axis_index_groups)
    ax = check_input(x, axis, expected_channels, use_batch, momentum_style=momentum_style, n_devices=n_dev,
                     check_batch=check_batch and mask is None)
    if not use_batch:
        assert running is not None  # use_batch is True when running is None
        return normalize(x, running[0], running[1], scale, bias, ax, eps, dtype), None
    if not _core.flax_rules(momentum_style):
        _core.check_eps_training(eps)
    empty = _core.values_per_channel(x.shape, ax) == 0
    if empty:  # PyTorch: empty output, statistics unchanged, the call counted
        c = x.shape[ax]
        cdtype = jnp.promote_types(dtype if dtype is not None else jnp.result_type(x), jnp.float32)
        stats = BatchStats(jnp.zeros((c,), cdtype), jnp.ones((c,), cdtype), 0)
    else:
        stats = batch_statistics(x, ax, variance=variance, momentum_style=momentum_style, axis_name=axis_name,
                                 axis_index_groups=axis_index_groups, mask=mask, dtype=dtype)
    new_running = None
    if running is not None and training and update:
        new_running = update_running(*running, stats.mean, stats.var, stats.count, momentum=momentum,
                                     momentum_style=momentum_style, unbiased_running_var=unbiased_running_var,
                                     update_statistics=not empty, cast=cast_running)
    y = normalize(x, stats.mean, stats.var, scale, bias, ax, eps, dtype, shift=stats.shift, offset=stats.offset)
    return y, new_running
