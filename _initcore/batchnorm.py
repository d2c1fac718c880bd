"""BatchNorm: the one parametrization of the three conventions, and the checks both packages share.

Framework-free (no jax, no torch). :mod:`jaxinit` (Linen and NNX) and
:mod:`torchinit` build their ``BatchNorm`` on this module, so both packages
accept the same arguments, give them the same meaning and raise the same errors.

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
  cumulative average ``take = 1 / num_batches_tracked`` (after the increment).
* ``momentum_style='decay'``: ``momentum`` is the decay of the OLD value (Flax):
  ``keep = momentum``, ``take = 1 - momentum``.

``fast_variance=True`` computes ``s2 = max(0, E[x**2] - E[x]**2)`` in one pass
(Flax's ``use_fast_variance``); ``False`` is the two-pass ``E[(x - E[x])**2]``
that PyTorch uses, which has no cancellation for inputs with a large mean.
Evaluation normalizes with the running statistics. The output is
``(x - mean) * (rsqrt(var + eps) * weight) + bias``.

The three conventions (:data:`CONVENTIONS`, ``BatchNorm.from_convention``):

===========  ========  ==============  =====================  =============  ====
convention   momentum  momentum_style  unbiased_running_var   fast_variance  eps
===========  ========  ==============  =====================  =============  ====
'torch'      0.1       'torch'         True                   False          1e-5
'flax'       0.99      'decay'         False                  True           1e-5
'textbook'   0.9       'decay'         False                  False          1e-5
===========  ========  ==============  =====================  =============  ====

'torch' is ``torch.nn.BatchNorm{1,2,3}d`` (and ``SyncBatchNorm`` across
devices); 'flax' is ``flax.linen.BatchNorm()`` / ``flax.nnx.BatchNorm`` with
their defaults, bit for bit on one device; 'textbook' is the from-scratch
version of courses and papers (running = 0.9 * running + 0.1 * batch, biased
variance).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from _initcore.errors import InitError

MOMENTUM_STYLES = ("torch", "decay")

CONVENTIONS: dict[str, dict[str, Any]] = {
    "torch": dict(momentum=0.1, momentum_style="torch", unbiased_running_var=True, fast_variance=False, eps=1e-5),
    "flax": dict(momentum=0.99, momentum_style="decay", unbiased_running_var=False, fast_variance=True, eps=1e-5),
    "textbook": dict(momentum=0.9, momentum_style="decay", unbiased_running_var=False, fast_variance=False, eps=1e-5),
}

MIN_NDIM, MAX_NDIM = 2, 5


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
    fast_variance,
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
    elif isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not (0.0 <= momentum <= 1.0):
        meaning = "weight of the new batch" if momentum_style == "torch" else "decay of the running value"
        raise InitError(
            f"{who}: `momentum` must be a float in [0, 1] ({meaning}) or None (cumulative average), got {momentum!r}."
        )
    for name, value in (("affine", affine), ("bias", bias), ("track_running_stats", track_running_stats),
                        ("unbiased_running_var", unbiased_running_var), ("fast_variance", fast_variance)):
        if not isinstance(value, bool):
            raise InitError(f"{who}: `{name}` must be True or False, got {value!r}.")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise InitError(
            f"{who}: `axis` must be an int, the channel axis (-1 for channels-last NHWC, 1 for NCHW), got {axis!r}."
        )


def update_coefficients(momentum, momentum_style: str) -> tuple[float, float] | None:
    """``(keep, take)`` of the running update as Python floats, or None for the cumulative
    average (``take = 1 / num_batches_tracked``, computed at run time).

    The floats are those torch and Flax compute: torch multiplies by ``momentum`` and
    ``1 - momentum``; Flax by ``momentum`` and ``1 - momentum`` with the roles swapped.
    """
    if momentum is None:
        return None
    if momentum_style == "torch":
        return 1.0 - momentum, float(momentum)
    return float(momentum), 1.0 - momentum


def channel_axis(ndim: int, axis: int, who: str = "BatchNorm") -> int:
    """The non-negative channel axis of an ``ndim``-D input; errors for bad ranks or axes."""
    if not MIN_NDIM <= ndim <= MAX_NDIM:
        raise InitError(
            f"{who}: expected 2D to 5D input (got {ndim}D input): (N, C) or (N, C, L) as BatchNorm1d, "
            f"(N, C, H, W) as BatchNorm2d, (N, C, D, H, W) as BatchNorm3d, with the channels at `axis` "
            f"(-1 for channels-last)."
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
            f"{dtype_name}; cast it first, e.g. x.astype(jnp.float32) / x.float()."
        )


def values_per_channel(shape, ax: int) -> int:
    n = 1
    for i, d in enumerate(shape):
        if i != ax:
            n *= int(d)
    return n


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
