"""BatchNorm: the one parametrization of the three conventions, the running update and the checks.

Framework-free (no jax, no torch). :mod:`jaxinit` (Linen and NNX) and
:mod:`torchinit` build their ``BatchNorm`` on this module, so both packages
accept the same arguments, give them the same meaning, update the running
statistics with the same function (:func:`update_running`, written with array
operators only, so it runs on jax arrays and torch tensors alike) and raise the
same errors.

The parametrization
-------------------
Training normalizes with the batch mean ``mu`` and the BIASED batch variance
``s2 = sum((x - mu)**2) / n`` (``n`` values per channel, over all devices of
``axis_name``), then updates the running statistics::

    running_mean = keep * running_mean + take * mu
    running_var  = keep * running_var  + take * (s2 * n / (n - 1) if unbiased_running_var else s2)
    num_batches_tracked += 1

with ``(keep, take)`` given by ``momentum`` and ``momentum_style``:

* ``momentum_style='torch'``: ``momentum`` is the weight of the NEW batch:
  ``take = momentum``, ``keep = 1 - momentum``; ``momentum=None`` is the
  cumulative average ``take = 1 / num_batches_tracked`` (after the increment)
  (``torch/nn/modules/batchnorm.py``, ``_BatchNorm.forward``).
* ``momentum_style='decay'``: ``momentum`` is the decay of the OLD value (Flax):
  ``keep = momentum``, ``take = 1 - momentum`` (``flax/linen/normalization.py``,
  ``BatchNorm.__call__``).

``variance`` chooses how ``s2`` is computed (:data:`VARIANCES`):

* ``'shifted'``: one pass over the input shifted by a per-channel value ``k``
  taken from the batch (the mean of its first few values per channel):
  ``a = E[x - k]``, ``s2 = max(0, E[(x - k)**2] - a**2)``, ``mu = k + a``, both
  sums in one fused reduction. ``|a|`` is of the order of the standard deviation
  whatever the mean, so the subtraction loses no more digits than the two-pass
  formula: two-pass accuracy at one-pass cost (the classic shifted-data
  algorithm, Chan, Golub and LeVeque 1983). The output is computed as
  ``(x - k) * m + (bias - a * m)`` with ``m = rsqrt(s2 + eps) * weight``.
* ``'two_pass'``: ``E[(x - E[x])**2]``, two reads of the input
  (``flax.linen.BatchNorm(use_fast_variance=False)``, bit for bit).
* ``'fast'``: ``max(0, E[x**2] - E[x]**2)`` (Flax's default
  ``use_fast_variance=True``, bit for bit), which cancels for inputs with a large
  mean (flax#1491: about ``eps * (mean/std)**2`` relative error).

Evaluation normalizes with the running statistics. The output is
``(x - mean) * (rsqrt(var + eps) * weight) + bias``.

The three conventions (:data:`CONVENTIONS`, ``BatchNorm.from_convention``):

===========  ========  ==============  =====================  ==========  ====
convention   momentum  momentum_style  unbiased_running_var   variance    eps
===========  ========  ==============  =====================  ==========  ====
'torch'      0.1       'torch'         True                   'shifted'   1e-5
'flax'       0.99      'decay'         False                  'fast'      1e-5
'textbook'   0.9       'decay'         False                  'two_pass'  1e-5
===========  ========  ==============  =====================  ==========  ====

'torch' is ``torch.nn.BatchNorm{1,2,3}d`` (and ``SyncBatchNorm`` across
devices); 'flax' is ``flax.linen.BatchNorm()`` / ``flax.nnx.BatchNorm`` with
their defaults, bit for bit on one device; 'textbook' is the from-scratch
version of courses and papers (running = 0.9 * running + 0.1 * batch, biased
variance), bit for bit ``flax.linen.BatchNorm(momentum=0.9, use_fast_variance=False)``.

Input rules
-----------
The input rules follow ``momentum_style`` (:func:`flax_rules`):

* ``'torch'``: ``torch.nn.BatchNorm*d``'s: 2-D to 5-D floating-point inputs,
  PyTorch's ValueError for one value per channel in training, ``eps > 0`` in
  training (``torch/nn/functional.py``, ``_verify_batch_size``; ``batch_norm``).
* ``'decay'``: Flax's: any rank >= 1 (a 1-D input has nothing to reduce: its
  variance is 0), integer inputs (statistics in float32) and complex inputs
  (``var = E[|x - E[x]|**2]``), one value per channel in training (the output is
  the bias), ``eps = 0``; the running statistics take Flax's dtypes (Linen:
  created float32 whatever ``param_dtype``, then the dtype of the update, e.g.
  float64 after the first update with float64 inputs in x64 mode; NNX: float32).

An empty batch (no value per channel) in training is PyTorch's case in every
convention: the output is empty, the running mean and variance are unchanged and
``num_batches_tracked`` still counts the call (Flax would write NaN into its
running statistics).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from _jaxinit.errors import InitError

MOMENTUM_STYLES = ("torch", "decay")
VARIANCES = ("shifted", "two_pass", "fast")

CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": dict(momentum=0.1, momentum_style="torch", unbiased_running_var=True, variance="shifted", eps=1e-5),
    "flax": dict(momentum=0.99, momentum_style="decay", unbiased_running_var=False, variance="fast", eps=1e-5),
    "textbook": dict(momentum=0.9, momentum_style="decay", unbiased_running_var=False, variance="two_pass", eps=1e-5),
}

MIN_NDIM, MAX_NDIM = 2, 5

# Number of values per channel the 'shifted' variance averages into its shift k: the first
# SHIFT_SAMPLES along the last reduced axis, at index 0 of the other reduced axes.
SHIFT_SAMPLES = 16


def convention_kwargs(name: str, overrides: dict[str, Any], who: str = "BatchNorm") -> dict[str, Any]:
    """Constructor arguments of convention ``name``, updated with ``overrides``."""
    if name not in CONVENTIONS:
        raise InitError(
            f"{who}.from_convention: unknown convention {name!r}; accepted: "
            f"{', '.join(repr(c) for c in CONVENTIONS)}."
        )
    kwargs = dict(CONVENTIONS[name])
    kwargs.update(overrides)
    return kwargs


def flax_rules(momentum_style: str) -> bool:
    """True when the input rules are Flax's (``momentum_style='decay'``), False for PyTorch's."""
    return momentum_style == "decay"


def check_args(
    *,
    num_features,
    eps,
    momentum,
    momentum_style,
    affine,
    bias,
    track_running_stats,
    unbiased_running_var,
    variance,
    axis,
    num_features_required: bool,
    who: str = "BatchNorm",
) -> None:
    """Validate the constructor arguments; raise :class:`InitError` naming the argument and the fix."""
    if num_features is None:
        if num_features_required:
            raise InitError(f"{who}: `num_features` (the number of channels) is required, e.g. {who}(64).")
    elif isinstance(num_features, bool) or not isinstance(num_features, numbers.Integral) or num_features < 1:
        raise InitError(f"{who}: `num_features` must be a positive int (the number of channels), got {num_features!r}.")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise InitError(f"{who}: `eps` must be a finite float >= 0 (added to the variance), got {eps!r}; PyTorch and Flax use 1e-5.")
    if momentum_style not in MOMENTUM_STYLES:
        raise InitError(
            f"{who}: `momentum_style` must be 'torch' (momentum = weight of the new batch, PyTorch) or "
            f"'decay' (momentum = weight of the old value, Flax), got {momentum_style!r}."
        )
    if momentum is None:
        if momentum_style == "decay":
            raise InitError(
                f"{who}: `momentum=None` (cumulative average) needs momentum_style='torch'; with "
                f"momentum_style='decay' pass a decay in [0, 1], e.g. momentum=0.99 as flax.linen.BatchNorm."
            )
    elif isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not (0.0 <= float(momentum) <= 1.0):
        meaning = "weight of the new batch" if momentum_style == "torch" else "decay of the running value"
        raise InitError(
            f"{who}: `momentum` must be a float in [0, 1] ({meaning}) or None (cumulative average), got {momentum!r}."
        )
    for name, value in (("affine", affine), ("bias", bias), ("track_running_stats", track_running_stats),
                        ("unbiased_running_var", unbiased_running_var)):
        if not isinstance(value, bool):
            raise InitError(f"{who}: `{name}` must be True or False, got {value!r}.")
    if not isinstance(variance, str) or variance not in VARIANCES:
        raise InitError(
            f"{who}: `variance` must be 'shifted' (one pass, two-pass accuracy; PyTorch convention), "
            f"'two_pass' (flax use_fast_variance=False) or 'fast' (E[x^2]-E[x]^2, flax use_fast_variance=True), "
            f"got {variance!r}."
        )
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise InitError(
            f"{who}: `axis` must be an int, the channel axis (-1 for channels-last NHWC, 1 for NCHW), got {axis!r}."
        )


def update_coefficients(momentum, momentum_style: str, count=None) -> tuple[Any, Any]:
    """``(keep, take)`` of the running update.

    Python floats for a fixed ``momentum``: torch multiplies by ``1 - momentum``
    and ``momentum``; Flax by ``momentum`` and ``1 - momentum``. For
    ``momentum=None`` (cumulative average) ``take = 1 / count`` with ``count`` the
    updated ``num_batches_tracked`` (a Python number or an array).
    """
    if momentum is None:
        take = 1.0 / count
        return 1.0 - take, take
    if momentum_style == "torch":
        return 1.0 - momentum, float(momentum)
    return float(momentum), 1.0 - momentum


def update_running(running_mean, running_var, mean, var, n, *, keep, take, unbiased_running_var: bool):
    """New ``(running_mean, running_var)``: ``keep * running + take * batch``.

    ``var`` is the BIASED batch variance; with ``unbiased_running_var`` it is
    multiplied by ``n / (n - 1)`` first (``n``: values per channel, a Python int
    or a per-channel array). Written with array operators only: the same
    expression, in the same order, for jax arrays and torch tensors. The caller
    casts, stops gradients and stores (``jaxinit``: new values; ``torchinit``:
    ``copy_`` under ``no_grad``).
    """
    if unbiased_running_var:
        var = var * (n / (n - 1)) if isinstance(n, numbers.Integral) else var * n / (n - 1)
    return keep * running_mean + take * mean, keep * running_var + take * var


def channel_axis(ndim: int, axis: int, who: str = "BatchNorm", flax: bool = False) -> int:
    """The non-negative channel axis of an ``ndim``-D input; errors for bad ranks or axes.

    PyTorch's rules accept 2-D to 5-D inputs; Flax's (``flax=True``) any rank >= 1."""
    if flax:
        if ndim < 1:
            raise InitError(f"{who}: expected an input with at least 1 dimension (the channels), got a scalar.")
    elif not MIN_NDIM <= ndim <= MAX_NDIM:
        raise InitError(
            f"{who}: expected 2D to 5D input (got {ndim}D input): (N, C) or (N, C, L) as BatchNorm1d, "
            f"(N, C, H, W) as BatchNorm2d, (N, C, D, H, W) as BatchNorm3d, with the channels at `axis` "
            f"(-1 for channels-last). Flax's rules (any rank) come with momentum_style='decay'."
        )
    if not -ndim <= axis < ndim:
        raise InitError(f"{who}: `axis`={axis} is out of range for a {ndim}D input; use -1 (channels-last) or 1 (NCHW).")
    return axis % ndim


def check_channels(shape, ax: int, expected, who: str = "BatchNorm", source: str = "num_features") -> None:
    if expected is not None and shape[ax] != expected:
        raise InitError(
            f"{who}: input has {shape[ax]} channels at axis {ax} (shape {tuple(shape)}) but {source} is "
            f"{expected}; pass an input with {expected} channels on that axis, or set `axis` to the channel axis "
            f"(-1 for NHWC, 1 for NCHW)."
        )


def check_float_dtype(dtype_name: str, is_float: bool, who: str = "BatchNorm") -> None:
    if not is_float:
        raise InitError(
            f"{who}: input must be a floating-point array (float16, bfloat16, float32 or float64), got "
            f"{dtype_name}; cast it first, e.g. x.astype(jnp.float32) / x.float(), or use Flax's rules "
            f"(momentum_style='decay', e.g. BatchNorm.from_convention('flax')), which accept integer and complex inputs."
        )


def values_per_channel(shape, ax: int) -> int:
    n = 1
    for i, d in enumerate(shape):
        if i != ax:
            n *= int(d)
    return n


def shift_sample_index(shape, ax: int) -> tuple:
    """Index of the values per channel the 'shifted' variance averages into its shift ``k``:
    0 on every reduced axis but the last, ``:SHIFT_SAMPLES`` on the last (a contiguous run in
    both NHWC and NCHW layouts). Needs a non-empty batch."""
    reduced = [i for i in range(len(shape)) if i != ax]
    idx: list[Any] = [slice(None)] * len(shape)
    for i in reduced[:-1]:
        idx[i] = slice(0, 1)
    if reduced:
        idx[reduced[-1]] = slice(0, min(SHIFT_SAMPLES, int(shape[reduced[-1]])))
    return tuple(idx)


def check_batch_size(shape, ax: int, n_devices: int = 1, shape_repr=None) -> None:
    """PyTorch's error for one value per channel in training (its message, its ValueError)."""
    if values_per_channel(shape, ax) * n_devices == 1:
        raise InitError(
            f"Expected more than 1 value per channel when training, got input size "
            f"{shape_repr if shape_repr is not None else tuple(shape)}"
        )


def check_eps_training(eps, who: str = "BatchNorm") -> None:
    if eps <= 0.0:
        raise InitError(f"{who}: batch_norm eps must be positive during training, but got {eps}")
