"""BatchNorm with PyTorch's semantics for Flax (Linen and NNX), and Flax's own conventions as options.

One statistics core serves both APIs (:mod:`jaxinit._src.batchnorm_stats`):
:func:`batch_statistics` (mean and biased variance of a batch, across devices when
``axis_name`` is given), :func:`update_running` (the running-statistics update) and :func:`normalize`.
:func:`batchnorm_forward` chains them; ``BatchNorm`` (Linen) and
``NnxBatchNorm`` (NNX) only hold the variables. The parametrization of the three
conventions (PyTorch, Flax, textbook) and the argument checks live in
:mod:`_jaxinit.batchnorm`; its docstring has the exact formulas.

Where PyTorch (``torch/nn/modules/batchnorm.py``, ``torch.nn.functional.batch_norm``) and
Flax (``flax/linen/normalization.py``, ``flax/nnx/nn/normalization.py``) differ, the
default here is PyTorch:

* ``momentum=0.1`` is the weight of the NEW batch (Flax's ``momentum=0.99`` is
  the weight of the OLD value); ``momentum=None`` is the cumulative average;
* the running variance gets the UNBIASED batch variance (n/(n-1)); the output
  is normalized with the biased one (pytorch#19902; the docs once said otherwise, pytorch#77427);
* the 'shifted' variance: one pass over the input with two-pass accuracy (Flax's
  default E[x^2]-E[x]^2 loses digits for inputs with a large mean, flax#1491);
* one value per channel in training raises PyTorch's ValueError (Flax returns zeros);
* an empty batch in training leaves the running statistics unchanged and counts
  the call (Flax writes NaN into them);
* across devices (``axis_name``) the statistics are SyncBatchNorm's: count
  weighted over all devices, unbiased over the GLOBAL count; with ``mask`` the
  devices may hold different numbers of valid examples.

Variables (the names the converters build on): ``params``: ``scale``, ``bias``
(PyTorch ``weight``, ``bias``); ``batch_stats``: ``mean``, ``var``,
``num_batches_tracked`` (int32) (PyTorch ``running_mean``, ``running_var``,
``num_batches_tracked``). Statistics are computed in at least float32
(bfloat16/float16 inputs) and stored in ``promote_types(param_dtype, float32)``
(PyTorch's rules) or as Flax stores them (``momentum_style='decay'``, see
:mod:`_jaxinit.batchnorm`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from flax import linen as _linen
from flax.nnx.nn.dtypes import promote_dtype as _nnx_promote_dtype
from flax import nnx as _nnx

from _jaxinit import batchnorm as _core
from _jaxinit.public import public
from jaxinit._src.batchnorm_stats import USE_RUNNING_AVERAGE_HELP, batchnorm_forward, canonical_dtype_name, stats_dtype

Array = jax.Array


_INIT_DOC = """
    Args:
      num_features: number of channels C (Linen: optional, taken from the first input
        and then checked; NNX and torch: required).
      eps: added to the variance (PyTorch ``eps``, Flax ``epsilon``).
      momentum: weight of the NEW batch in the running statistics (PyTorch), None
        for the cumulative average; with ``momentum_style='decay'`` the weight of the
        OLD value (Flax's ``momentum``).
      affine: learn ``scale`` (PyTorch ``weight``) and ``bias``.
      track_running_stats: keep ``batch_stats``; False normalizes with the batch
        statistics in training AND evaluation, as PyTorch.
      bias: with ``affine``, learn a bias (PyTorch 2.x ``bias=``).
      axis: channel axis: -1 for channels-last (NHWC, Flax), 1 for NCHW (PyTorch).
      momentum_style: 'torch' or 'decay', see ``momentum``.
      unbiased_running_var: update the running variance with the unbiased batch
        variance (PyTorch) instead of the biased one (Flax, textbook).
      variance: 'shifted' (one pass over the input shifted by a per-channel value
        from the batch, two-pass accuracy; default), 'two_pass' (Flax's
        ``use_fast_variance=False``) or 'fast' (``E[x^2]-E[x]^2``, Flax's default
        ``use_fast_variance=True``).
      axis_name, axis_index_groups: combine statistics over a named device axis
        (``shard_map``/``pmap``), PyTorch SyncBatchNorm semantics.
      dtype: output dtype (default: promotion of input and parameters, as Flax).
      param_dtype: dtype of ``scale``/``bias``; the running statistics use
        ``promote_types(param_dtype, float32)`` (``momentum_style='decay'``: float32,
        as Flax).
      scale_init, bias_init: initializers (default ones, zeros).
"""


@public("jaxinit", "BatchNorm")
class LinenBatchNorm(_linen.Module):
    """BatchNorm for Flax Linen with PyTorch's semantics (``torch.nn.BatchNorm{1,2,3}d``).

    Training (``use_running_average=False``) normalizes with the batch mean and the
    biased batch variance and updates ``batch_stats``::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)
        num_batches_tracked += 1

    Evaluation (``use_running_average=True``) normalizes with the running
    statistics: ``y = (x - mean) * rsqrt(var + eps) * scale + bias``. Flax's and
    the textbook conventions: :meth:`from_convention` (see
    :mod:`_jaxinit.batchnorm` for the table).

    ``init`` does NOT update the running statistics: it returns the state of a
    freshly constructed ``torch.nn.BatchNorm`` (mean 0, var 1,
    ``num_batches_tracked`` 0), so ``init`` followed by one training ``apply``
    equals one torch training forward. During ``init`` the batch-of-one check
    and the cross-device collective are skipped (Flax inits with a dummy batch).

    Differs from ``flax.linen.BatchNorm``: PyTorch argument names and meanings
    (``momentum=0.1`` weight of the new batch, ``eps``, ``affine``), unbiased
    running variance, the 'shifted' variance (two-pass accuracy in one pass),
    ``num_batches_tracked``, PyTorch's input rules (Flax's with
    ``momentum_style='decay'``, see :mod:`_jaxinit.batchnorm`).

    Example::

        >>> import jax, jax.numpy as jnp, jaxinit
        >>> bn = jaxinit.BatchNorm()                      # channels-last, PyTorch semantics
        >>> x = jnp.ones((8, 4, 4, 3)) * jnp.arange(8.)[:, None, None, None]
        >>> v = bn.init(jax.random.key(0), x, use_running_average=False)
        >>> y, upd = bn.apply(v, x, use_running_average=False, mutable=['batch_stats'])
        >>> int(upd['batch_stats']['num_batches_tracked'])
        1
    """

    num_features: Optional[int] = None
    eps: float = 1e-5
    momentum: Optional[float] = 0.1
    affine: bool = True
    track_running_stats: bool = True
    bias: bool = True
    axis: int = -1
    use_running_average: Optional[bool] = None
    momentum_style: str = "torch"
    unbiased_running_var: bool = True
    variance: str = "shifted"
    axis_name: Optional[str] = None
    axis_index_groups: Any = None
    dtype: Any = None
    param_dtype: Any = jnp.float32
    scale_init: Callable = _linen.initializers.ones
    bias_init: Callable = _linen.initializers.zeros

    def __post_init__(self):
        _core.check_args(
            num_features=self.num_features, eps=self.eps, momentum=self.momentum,
            momentum_style=self.momentum_style, affine=self.affine, bias=self.bias,
            track_running_stats=self.track_running_stats, unbiased_running_var=self.unbiased_running_var,
            variance=self.variance, axis=self.axis, num_features_required=False)
        super().__post_init__()

    @classmethod
    def from_convention(cls, convention: str = "torch", **overrides):
        """``BatchNorm`` with the arguments of ``convention`` ('torch', 'flax' or 'textbook'),
        then ``overrides``. ``from_convention('flax')`` equals ``flax.linen.BatchNorm()``."""
        return cls(**_core.convention_kwargs(convention, overrides))

    @_linen.compact
    def __call__(self, x: Array, use_running_average: Optional[bool] = None, *,
                 mask: Optional[Array] = None) -> Array:
        """Normalize ``x`` (2-D to 5-D, channels at ``axis``; Flax's rules: any rank).

        Args:
          x: the input.
          use_running_average: True for evaluation (running statistics), False for
            training (batch statistics, updated ``batch_stats`` when it is mutable);
            overrides the attribute.
          mask: optional boolean array broadcastable to ``x``: only True positions
            enter the batch statistics (padding, unequal per-device batches). The
            count is dynamic, so a channel with at most one True value in training
            cannot raise PyTorch's error: it gives an inf/nan running variance.
        """
        ura = use_running_average if use_running_average is not None else self.use_running_average
        if ura is None:
            raise _core.InitError(USE_RUNNING_AVERAGE_HELP)
        training = not ura
        initializing = self.is_initializing()
        flax = _core.flax_rules(self.momentum_style)
        if not flax and not jnp.issubdtype(x.dtype, jnp.floating):
            _core.check_float_dtype(canonical_dtype_name(x.dtype), False)
        ax = _core.channel_axis(x.ndim, self.axis, flax=flax)
        c = x.shape[ax]
        expected, source = self.num_features, "num_features"
        if expected is None:
            for col, name in (("params", "scale"), ("params", "bias"), ("batch_stats", "mean")):
                if self.has_variable(col, name):
                    expected, source = self.get_variable(col, name).shape[0], f"the existing {col}/{name}"
                    break
        _core.check_channels(x.shape, ax, expected, source=source)

        scale = bias = None
        if self.affine:
            scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
            if self.bias:
                bias = self.param("bias", self.bias_init, (c,), self.param_dtype)
        running = None
        if self.track_running_stats:
            sdt = stats_dtype(self.param_dtype, self.momentum_style)
            ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), sdt)
            ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), sdt)
            ra_nbt = self.variable("batch_stats", "num_batches_tracked", jnp.zeros, (), jnp.int32)
            running = (ra_mean.value, ra_var.value, ra_nbt.value)

        y, new = batchnorm_forward(
            x, training=training, running=running, scale=scale, bias=bias, axis=self.axis, eps=self.eps,
            momentum=self.momentum, momentum_style=self.momentum_style,
            unbiased_running_var=self.unbiased_running_var, variance=self.variance,
            axis_name=None if initializing else self.axis_name,
            axis_index_groups=None if initializing else self.axis_index_groups,
            mask=mask, dtype=self.dtype, update=not initializing, check_batch=not initializing,
            cast_running=not flax)  # Flax's rules: the update keeps its dtype, as flax.linen.BatchNorm
        if new is not None:  # raises Flax's error when batch_stats is not mutable, as flax.linen.BatchNorm
            ra_mean.value, ra_var.value, ra_nbt.value = new
        return y


LinenBatchNorm.__doc__ = (LinenBatchNorm.__doc__ or "") + _INIT_DOC


@public("jaxinit.nnx", "BatchNorm")
class NnxBatchNorm(_nnx.Module):
    """BatchNorm for Flax NNX with PyTorch's semantics (``torch.nn.BatchNorm{1,2,3}d``).

    Same arguments, formulas and variables as the Linen ``jaxinit.BatchNorm``
    (``scale``/``bias`` are ``nnx.Param``; ``mean``/``var``/``num_batches_tracked``
    are ``nnx.BatchStat``). Training mode by default, as a new torch module;
    ``model.train()`` / ``model.eval()`` switch it (they set
    ``use_running_average``), or pass ``use_running_average`` to the call.
    ``rngs`` is only needed for random ``scale_init``/``bias_init``.

    Example::

        >>> import jax.numpy as jnp, jaxinit.nnx as tn
        >>> bn = tn.BatchNorm(3)
        >>> y = bn(jnp.arange(24.).reshape(8, 3))      # training: updates the statistics
        >>> bn.eval(); y = bn(jnp.ones((2, 3)))        # running statistics
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        bias: bool = True,
        axis: int = -1,
        use_running_average: Optional[bool] = False,
        momentum_style: str = "torch",
        unbiased_running_var: bool = True,
        variance: str = "shifted",
        axis_name: Optional[str] = None,
        axis_index_groups: Any = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        scale_init: Callable = _nnx.initializers.ones_init(),
        bias_init: Callable = _nnx.initializers.zeros_init(),
        rngs: Optional[_nnx.Rngs] = None,
    ):
        _core.check_args(
            num_features=num_features, eps=eps, momentum=momentum, momentum_style=momentum_style,
            affine=affine, bias=bias, track_running_stats=track_running_stats,
            unbiased_running_var=unbiased_running_var, variance=variance, axis=axis,
            num_features_required=True)
        shape = (num_features,)

        def key():
            return rngs.params() if rngs is not None else jax.random.key(0)

        self.scale = _nnx.Param(scale_init(key(), shape, param_dtype)) if affine else _nnx.data(None)
        self.bias = _nnx.Param(bias_init(key(), shape, param_dtype)) if affine and bias else _nnx.data(None)
        if track_running_stats:
            sdt = stats_dtype(param_dtype, momentum_style)
            self.mean = _nnx.BatchStat(jnp.zeros(shape, sdt))
            self.var = _nnx.BatchStat(jnp.ones(shape, sdt))
            self.num_batches_tracked = _nnx.BatchStat(jnp.zeros((), jnp.int32))
        else:
            self.mean = self.var = self.num_batches_tracked = _nnx.data(None)  # type: ignore[arg-type]  # no stats
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.use_bias = bias
        self.axis = axis
        self.use_running_average = use_running_average
        self.momentum_style = momentum_style
        self.unbiased_running_var = unbiased_running_var
        self.variance = variance
        self.axis_name = axis_name
        self.axis_index_groups = axis_index_groups
        self.dtype = dtype
        self.param_dtype = param_dtype

    @classmethod
    def from_convention(cls, convention: str, num_features: int, **overrides):
        """``BatchNorm(num_features, ...)`` with the arguments of ``convention`` ('torch',
        'flax', 'textbook'), then ``overrides``."""
        return cls(num_features, **_core.convention_kwargs(convention, overrides))

    def __call__(self, x: Array, use_running_average: Optional[bool] = None, *,
                 mask: Optional[Array] = None) -> Array:
        """Normalize ``x``; see the Linen ``jaxinit.BatchNorm.__call__``."""
        ura = use_running_average if use_running_average is not None else self.use_running_average
        if ura is None:
            raise _core.InitError(USE_RUNNING_AVERAGE_HELP)
        running = None
        if self.track_running_stats:
            running = (self.mean[...], self.var[...], self.num_batches_tracked[...])
        scale = self.scale[...] if self.scale is not None else None
        bias = self.bias[...] if self.bias is not None else None
        if _core.flax_rules(self.momentum_style):
            # flax.nnx.BatchNorm.__call__: input, statistics and parameters promoted to one dtype
            # (``dtype`` when given); the update reads the stored (float32) statistics and the
            # assignment casts back to them.
            x, mean, var, scale, bias = _nnx_promote_dtype(
                (x, *(running[:2] if running is not None else (None, None)), scale, bias), dtype=self.dtype)
            if running is not None and ura:
                running = (mean, var, running[2])
        y, new = batchnorm_forward(
            x, training=not ura, running=running, scale=scale, bias=bias,
            axis=self.axis, eps=self.eps, momentum=self.momentum, momentum_style=self.momentum_style,
            unbiased_running_var=self.unbiased_running_var, variance=self.variance,
            axis_name=self.axis_name, axis_index_groups=self.axis_index_groups, mask=mask, dtype=self.dtype,
            expected_channels=self.num_features)
        if new is not None:
            self.mean[...], self.var[...], self.num_batches_tracked[...] = new
        return y

    def set_view(self, use_running_average: Optional[bool] = None):
        """Used by ``nnx.view``."""
        if use_running_average is not None:
            self.use_running_average = use_running_average


NnxBatchNorm.__doc__ = (NnxBatchNorm.__doc__ or "") + _INIT_DOC
