"""``torchinit.BatchNorm``: one torch module for PyTorch's, Flax's and the textbook BatchNorm.

The mirror of ``jaxinit.BatchNorm`` (Linen) / ``jaxinit.nnx.BatchNorm``: the same
constructor arguments with the same meanings (:mod:`_initcore.batchnorm` holds the
parametrization, the checks and the error texts), any channel ``axis`` (1 by
default, as ``torch.nn.BatchNorm2d``; -1 for a channels-last tensor laid out like
a Flax model's), so a Flax model's BatchNorm can be reproduced in torch.

With the PyTorch convention (the defaults) and no ``mask`` the forward is
``torch.nn.functional.batch_norm`` itself (the channel axis moved to 1 as a
view), so it IS ``torch.nn.BatchNorm{1,2,3}d``; so is evaluation with running
statistics in every convention. Training with another two-pass convention
(textbook, ``fast_variance=False``) normalizes with torch's kernel and updates the
running statistics from a no-grad ``var_mean`` by :meth:`BatchNorm._update`.
``fast_variance=True`` (Flax's one-pass variance, reproduced with its
cancellation) computes the statistics itself and uses torch's kernels to normalize
and differentiate (:class:`_OnePassBatchNorm`). ``mask`` (and one-pass variance on
half-precision or mixed-dtype inputs) go through one explicit formula
(:func:`_batch_statistics`, Flax's normalization expression), 3-4x slower than the
kernel on CPU.

state_dict: ``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``, as ``torch.nn.BatchNorm*d``; loading into / from a torch
BatchNorm is exact when the convention is 'torch' and ``axis=1`` (the values mean
the same thing in every convention; only the update rule differs).
Cross-device statistics: use ``torch.nn.SyncBatchNorm`` (PyTorch convention);
``jaxinit``'s ``axis_name`` follows its semantics.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _NormBase

from _initcore import batchnorm as _core


def _batch_statistics(x: Tensor, ax: int, fast_variance: bool, mask: Optional[Tensor]):
    """Mean, biased variance and count per channel (as ``jaxinit``'s ``batch_statistics``, one device)."""
    dims = [i for i in range(x.ndim) if i != ax]
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    if mask is None:
        mu = x.mean(dims)
        if fast_variance:
            var = torch.clamp_min((x * x).mean(dims) - mu * mu, 0.0)
        else:
            var = (x - mu.reshape(shape)).square().mean(dims)
        return mu, var, _core.values_per_channel(x.shape, ax)
    m = torch.broadcast_to(mask.to(device=x.device, dtype=torch.bool), x.shape)
    mf = m.to(x.dtype)
    cnt = mf.sum(dims)
    mu = (x * mf).sum(dims) / cnt
    if fast_variance:
        var = torch.clamp_min((x * x * mf).sum(dims) / cnt - mu * mu, 0.0)
    else:
        var = ((x - mu.reshape(shape)).square() * mf).sum(dims) / cnt
    return mu, var, cnt


class _OnePassBatchNorm(torch.autograd.Function):
    """Training BatchNorm with Flax's one-pass variance ``max(0, E[x^2] - E[x]^2)`` on an
    input whose channels are on axis 1; returns ``(y, mean, biased_var)``.

    The backward is torch's own BatchNorm backward (``aten.native_batch_norm_backward``) at the
    one-pass statistics: the derivative of ``E[x^2] - E[x]^2`` is that of the two-pass variance,
    so this is the gradient of the one-pass formula (except where the clamp at 0 is active, a
    channel with no spread, where the formula has no meaningful gradient either), at about 1.3x
    the cost of torch's kernel instead of the 3-4x of autograd through the explicit formula.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = [i for i in range(x.ndim) if i != 1]
        n = _core.values_per_channel(x.shape, 1)
        letters = "abcdefgh"[:x.ndim]
        mean = x.sum(dims) / n
        var = torch.clamp_min(torch.einsum(f"{letters},{letters}->b", x, x) / n - mean * mean, 0.0)
        invstd = torch.rsqrt(var + eps)
        y = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.has_bias = bias is not None
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, gy, _gmean, _gvar):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gy.contiguous() if not gy.is_contiguous() and x.is_contiguous() else gy, x, weight, None, None,
            mean, invstd, True, ctx.eps, [True, weight is not None, ctx.has_bias])
        return gx, gw, gb if ctx.has_bias else None, None


class BatchNorm(_NormBase):
    r"""BatchNorm over any channel axis with PyTorch's (default), Flax's or the textbook convention.

    Training normalizes with the batch mean and biased variance and updates::

        running = keep * running + take * batch     (var: * n/(n-1) if unbiased_running_var)
        num_batches_tracked += 1

    ``momentum_style='torch'``: ``take = momentum`` (None: ``1/num_batches_tracked``);
    ``'decay'``: ``keep = momentum`` (Flax). Output
    ``(x - mean) * rsqrt(var + eps) * weight + bias``, in the input's dtype;
    statistics in at least float32. ``BatchNorm.from_convention('flax', C, axis=-1)``
    reproduces ``flax.linen.BatchNorm()`` on channels-last tensors.

    Differs from ``jaxinit.BatchNorm`` only where the frameworks do: ``axis``
    defaults to 1 (NCHW, torch's layout; jaxinit: -1), train/eval are
    ``.train()``/``.eval()``, the output keeps the input dtype (torch's rule), and
    there is no ``axis_name`` (use ``torch.nn.SyncBatchNorm``).

    Args:
      num_features: number of channels C.
      eps, momentum, affine, track_running_stats, device, dtype, bias: as
        ``torch.nn.BatchNorm2d``; ``momentum`` read per ``momentum_style``.
      axis: channel axis (1: NCHW; -1: channels-last).
      momentum_style: 'torch' (weight of the new batch) or 'decay' (weight of the old value).
      unbiased_running_var: running variance from the unbiased batch variance (PyTorch).
      fast_variance: one-pass ``E[x^2]-E[x]^2`` as Flax's ``use_fast_variance``.

    Example::

        >>> import torch, torchinit
        >>> bn = torchinit.BatchNorm(3, axis=-1)                     # NHWC, PyTorch semantics
        >>> y = bn(torch.randn(8, 4, 4, 3))
        >>> flax_bn = torchinit.BatchNorm.from_convention("flax", 3, axis=-1)
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: Optional[float] = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
        *,
        bias: bool = True,
        axis: int = 1,
        momentum_style: str = "torch",
        unbiased_running_var: bool = True,
        fast_variance: bool = False,
    ) -> None:
        _core.check_args(
            num_features=num_features, eps=eps, momentum=momentum, momentum_style=momentum_style,
            affine=affine, bias=bias, track_running_stats=track_running_stats,
            unbiased_running_var=unbiased_running_var, fast_variance=fast_variance, axis=axis,
            num_features_required=True)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.axis = axis
        self.momentum_style = momentum_style
        self.unbiased_running_var = unbiased_running_var
        self.fast_variance = fast_variance

    @classmethod
    def from_convention(cls, convention: str, num_features: int, **overrides) -> "BatchNorm":
        """``BatchNorm(num_features, ...)`` with the arguments of ``convention`` ('torch',
        'flax', 'textbook'), then ``overrides``."""
        return cls(num_features, **_core.convention_kwargs(convention, overrides))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", axis={self.axis}, momentum_style={self.momentum_style!r}, "
                f"unbiased_running_var={self.unbiased_running_var}, fast_variance={self.fast_variance}")

    def _is_torch_native(self) -> bool:
        return self.momentum_style == "torch" and self.unbiased_running_var and not self.fast_variance

    def _update(self, mean: Tensor, var: Tensor, n) -> None:
        """The running update of :mod:`_initcore.batchnorm` (``var`` biased, ``n`` values per channel)."""
        self.num_batches_tracked.add_(1)
        coeffs = _core.update_coefficients(self.momentum, self.momentum_style)
        if coeffs is None:
            take = 1.0 / float(self.num_batches_tracked)
            keep = 1.0 - take
        else:
            keep, take = coeffs
        v = var * (n / (n - 1)) if self.unbiased_running_var else var
        self.running_mean.copy_(keep * self.running_mean + take * mean)
        self.running_var.copy_(keep * self.running_var + take * v)

    def forward(self, input: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Normalize ``input`` (2-D to 5-D, channels at ``axis``).

        ``mask`` (optional, broadcastable to ``input``): only True positions enter
        the batch statistics (padding); the count per channel is the number of True.
        """
        _core.check_float_dtype(str(input.dtype).replace("torch.", ""), input.is_floating_point())
        ax = _core.channel_axis(input.ndim, self.axis)
        _core.check_channels(input.shape, ax, self.num_features)
        use_batch = self.training or self.running_mean is None
        if use_batch:
            if mask is None:
                _core.check_batch_size(input.shape, ax, shape_repr=input.shape)
            _core.check_eps_training(self.eps)
        update = self.training and self.track_running_stats

        if mask is None and (not use_batch or self._is_torch_native()):
            # PyTorch's convention, or evaluation with running statistics (the same in every
            # convention): torch's own kernel, running update included.
            factor = 0.0 if self.momentum is None else self.momentum
            if update:
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            x = input if ax == 1 else input.movedim(ax, 1)
            y = F.batch_norm(
                x,
                self.running_mean if not self.training or self.track_running_stats else None,
                self.running_var if not self.training or self.track_running_stats else None,
                self.weight, self.bias, use_batch, factor, self.eps)
            return y if ax == 1 else y.movedim(1, ax)
        if mask is None and not self.fast_variance:
            # Two-pass variance with another update rule (decay momentum, biased running variance):
            # torch's kernel normalizes (and differentiates) with the batch statistics; the running
            # statistics are updated from a separate no-grad var_mean with our rule.
            x = input if ax == 1 else input.movedim(ax, 1)
            y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
            if update:
                with torch.no_grad():
                    cdtype = torch.promote_types(input.dtype, torch.float32)
                    dims = [i for i in range(input.ndim) if i != ax]
                    var, mean = torch.var_mean(input.detach().to(cdtype), dims, correction=0)
                    self._update(mean, var, _core.values_per_channel(input.shape, ax))
            return y if ax == 1 else y.movedim(1, ax)

        params_match = all(p is None or p.dtype == input.dtype for p in (self.weight, self.bias))
        if mask is None and input.dtype in (torch.float32, torch.float64) and params_match:
            # Flax's one-pass variance: our statistics, torch's normalization and backward.
            x = input if ax == 1 else input.movedim(ax, 1)
            y, mean, var = _OnePassBatchNorm.apply(x, self.weight, self.bias, self.eps)
            if update:
                with torch.no_grad():
                    self._update(mean, var, _core.values_per_channel(input.shape, ax))
            return y if ax == 1 else y.movedim(1, ax)

        # The explicit formula: a mask, or one-pass variance with half-precision / mixed dtypes.
        shape = [1] * input.ndim
        shape[ax] = input.shape[ax]
        if use_batch:
            cdtype = torch.promote_types(input.dtype, torch.float32)
            mean, var, n = _batch_statistics(input.to(cdtype), ax, self.fast_variance, mask)
            if update:
                with torch.no_grad():
                    self._update(mean, var, n)
        else:
            mean, var = self.running_mean, self.running_var
        mul = torch.rsqrt(var.reshape(shape) + self.eps)
        if self.weight is not None:
            mul = mul * self.weight.reshape(shape)
        y = (input - mean.reshape(shape)) * mul
        if self.bias is not None:
            y = y + self.bias.reshape(shape)
        return y.to(input.dtype)
