"""``torchinit.BatchNorm``: one torch module for PyTorch's, Flax's and the textbook BatchNorm.

The mirror of ``jaxinit.BatchNorm`` (Linen) / ``jaxinit.nnx.BatchNorm``: the same
constructor arguments with the same meanings (:mod:`_jaxinit.batchnorm` holds the
parametrization, the running update, the checks and the error texts), any channel
``axis`` (1 by default, as ``torch.nn.BatchNorm2d``; -1 for a channels-last tensor
laid out like a Flax model's), so a Flax model's BatchNorm can be reproduced in torch.

Two ways through ``forward``:

* PyTorch's convention (``momentum_style='torch'``, ``unbiased_running_var``, an
  accurate variance) without ``mask``, and evaluation with running statistics in
  every convention: ``torch.nn.BatchNorm``'s own ``forward``
  (``torch/nn/modules/batchnorm.py``, ``_BatchNorm.forward``) on the input with its
  channel axis moved to 1 (a view). It IS ``torch.nn.BatchNorm{1,2,3}d``, running
  update included; 'shifted' and 'two_pass' both mean torch's own accurate variance here.
* Every other case: the batch statistics of the chosen ``variance``
  (:func:`batch_statistics`, no gradient), the running update of
  :func:`_jaxinit.batchnorm.update_running`, then the normalization
  ``(x - mean) * rsqrt(var + eps) * weight + bias``: torch's kernels forward and
  backward (:class:`_NormalizeWithBatchStats`) for real float32/float64 inputs
  without ``mask``, otherwise the explicit formula with autograd (masks,
  half-precision, integer and complex inputs, 1-D inputs, ``eps=0``, one value per
  channel). An empty batch counts the call and changes nothing else, as torch.

state_dict: ``weight``, ``bias``, ``running_mean``, ``running_var``,
``num_batches_tracked``, as ``torch.nn.BatchNorm*d``; loading into / from a torch
BatchNorm is exact when the convention is 'torch' and ``axis=1`` (the values mean
the same thing in every convention; only the update rule differs).
Cross-process statistics: ``process_group`` (``BatchNorm.convert_sync_batchnorm``) gives
``torch.nn.SyncBatchNorm``'s statistics and backward (:class:`_SyncBatchNormFn`) over any
``torch.distributed`` backend, gloo on CPU included (torch's own refuses CPU tensors);
``jaxinit``'s ``axis_name`` is its twin.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

from _jaxinit import batchnorm as _core


def _abs_sq(x: Tensor) -> Tensor:
    return x.real.square() + x.imag.square() if x.is_complex() else x.square()


def batch_statistics(x: Tensor, ax: int, variance: str, mask: Optional[Tensor]):
    """Mean, BIASED variance and count per channel of ``x`` (already in the statistics dtype),
    as ``jaxinit``'s ``batch_statistics`` on one device: 'fast' is ``max(0, E[|x|^2] -
    |E[x]|^2)``; 'shifted' and 'two_pass' are torch's accurate ``var_mean`` (two-pass
    ``E[|x - E[x]|^2]`` with a mask). ``mask`` (broadcastable to ``x``): only True positions count."""
    dims = [i for i in range(x.ndim) if i != ax]
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    if mask is None:
        n = _core.values_per_channel(x.shape, ax)
        if not dims:  # a 1-D input (Flax's rules): every value is its own batch
            return x, torch.zeros_like(_abs_sq(x)), n
        if variance == "fast":
            mu = x.mean(dims)
            return mu, torch.clamp_min(_abs_sq(x).mean(dims) - _abs_sq(mu), 0.0), n
        var, mu = torch.var_mean(x, dims, correction=0)
        return mu, var, n
    m = torch.broadcast_to(mask.to(device=x.device, dtype=torch.bool), x.shape)
    mf = m.to(torch.promote_types(x.dtype, torch.float32) if not x.is_complex() else x.real.dtype)
    cnt = mf.sum(dims) if dims else mf
    mu = (x * mf).sum(dims) / cnt if dims else x
    if variance == "fast":
        var = torch.clamp_min((_abs_sq(x) * mf).sum(dims) / cnt - _abs_sq(mu), 0.0) if dims else _abs_sq(x) * 0
    else:
        var = (_abs_sq(x - mu.reshape(shape)) * mf).sum(dims) / cnt if dims else _abs_sq(x) * 0
    return mu, var, cnt


class _NormalizeWithBatchStats(torch.autograd.Function):
    """``(x - mean) * rsqrt(var + eps) * weight + bias`` with the given batch statistics of ``x``
    (channels on axis 1), differentiated as BatchNorm in training: torch's own kernels,
    ``F.batch_norm`` forward and ``aten.native_batch_norm_backward`` backward at these
    statistics. The derivative of every variance formula here (two-pass, shifted, one-pass) is
    that of the two-pass variance, so this is the gradient of the formula (except where the
    one-pass clamp at 0 is active, a channel with no spread, where it has no meaningful
    gradient either), at about 1.3x the cost of torch's kernel instead of the 3-4x of autograd
    through the explicit formula."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps):
        y = F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(var + eps))
        ctx.eps = eps
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            gy.contiguous() if not gy.is_contiguous() and x.is_contiguous() else gy, x, weight, None, None,
            mean, invstd, True, ctx.eps, [True, weight is not None, ctx.has_bias])
        return gx, gw, gb if ctx.has_bias else None, None, None, None


def _gather_stats_with_counts(mean_all: Tensor, invstd_all: Tensor, counts: Tensor, eps: float):
    """Global mean and invstd from per-rank ``(mean, invstd, count)``: the merge of torch's CUDA
    kernel ``batch_norm_reduce_statistics_kernel`` (``aten/src/ATen/native/cuda/Normalization.cuh``,
    behind ``torch.batch_norm_gather_stats_with_counts``), rank by rank in rank order::

        v = (1/invstd_j**2 - eps) * n_j;  f = 1 / (n + n_j)
        var_n += v + (avg - mean_j)**2 * n * n_j * f;  avg = n*f*avg + n_j*f*mean_j;  n += n_j

    Returns ``(mean, invstd = 1/sqrt(var_n/n + eps), var_n, n)``; ranks with no values are
    left out first, as torch does."""
    avg = torch.zeros_like(mean_all[0])
    var_n = torch.zeros_like(mean_all[0])
    n = 0
    for m, inv, c in zip(mean_all, invstd_all, counts.tolist()):
        if c < 1:
            continue
        c = int(c)
        v = ((1.0 / inv) * (1.0 / inv) - eps) * c
        factor = 1.0 / (n + c)
        var_n = var_n + v + (avg - m) * (avg - m) * n * c * factor
        avg = n * factor * avg + c * factor * m
        n += c
    invstd = 1.0 / torch.sqrt(var_n / n + eps)
    return avg, invstd, var_n, n


def _all_gather_rows(combined: Tensor, group, world_size: int) -> Tensor:
    """``(world_size, len(combined))``: ``all_gather_into_tensor`` where the backend has it
    (NCCL), a list ``all_gather`` on gloo (which lacks it), as torch's SyncBatchNorm."""
    if dist.get_backend(group) != "gloo":
        out = torch.empty(world_size * combined.numel(), dtype=combined.dtype, device=combined.device)
        dist.all_gather_into_tensor(out, combined, group)
        return out.reshape(world_size, combined.numel())
    rows = [torch.empty_like(combined) for _ in range(world_size)]
    dist.all_gather(rows, combined, group)
    return torch.stack(rows)


class _SyncBatchNormFn(torch.autograd.Function):
    """``torch.nn.modules._functions.SyncBatchNorm`` on every backend (channels on axis 1).

    Forward: per rank ``mean``, ``invstd = 1/sqrt(var + eps)`` (biased) and the count, all
    gathered (an empty rank sends zeros and still takes part), merged count-weighted by
    :func:`_gather_stats_with_counts`; the running statistics get the global mean and the
    UNBIASED global variance ``var_n / (n - 1)`` (n: the global count); the output is
    ``(x - mean) * invstd * weight + bias``. Backward: ``sum_dy = sum(dy)`` and
    ``sum_dy_xmu = sum(dy * (x - mean))`` all-reduced (SUM), then
    ``dx = (dy - sum_dy/n - (x - mean) * invstd**2 * sum_dy_xmu/n) * invstd * weight``; the
    weight and bias gradients stay local (``sum_dy_xmu * invstd``, ``sum_dy``): DDP averages
    them with the other gradients, as with torch's SyncBatchNorm."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group, world_size):
        c = x.shape[1]
        acc = torch.promote_types(x.dtype, torch.float32)
        dims = [0, *range(2, x.ndim)]
        n_local = x.numel() // c if c else 0
        if n_local > 0:
            var, mean = torch.var_mean(x.to(acc), dims, correction=0)
            invstd = 1.0 / torch.sqrt(var + eps)
            combined = torch.cat([mean, invstd, torch.full((1,), n_local, dtype=acc, device=x.device)])
        else:
            combined = torch.zeros(2 * c + 1, dtype=acc, device=x.device)
        rows = _all_gather_rows(combined, group, world_size)
        counts = rows[:, 2 * c]
        mean, invstd, var_n, n = _gather_stats_with_counts(rows[:, :c], rows[:, c:2 * c], counts, eps)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.copy_((1 - momentum) * running_mean + momentum * mean)
                running_var.copy_((1 - momentum) * running_var + momentum * (var_n / (n - 1)))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.group, ctx.n, ctx.has_bias = group, n, bias is not None
        if n_local == 0:
            return torch.empty_like(x)
        shape = [1, c] + [1] * (x.ndim - 2)
        y = (x.to(acc) - mean.reshape(shape)) * invstd.reshape(shape)
        if weight is not None:
            y = y * weight.reshape(shape)
        if bias is not None:
            y = y + bias.reshape(shape)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        c = x.shape[1]
        acc = mean.dtype
        dims = [0, *range(2, x.ndim)]
        shape = [1, c] + [1] * (x.ndim - 2)
        if x.numel() > 0:
            g, xmu = gy.to(acc), x.to(acc) - mean.reshape(shape)
            sum_dy, sum_dy_xmu = g.sum(dims), (g * xmu).sum(dims)
        else:
            g = xmu = None
            sum_dy = sum_dy_xmu = torch.zeros(c, dtype=acc, device=x.device)
        gw = sum_dy_xmu * invstd if weight is not None and ctx.needs_input_grad[1] and g is not None else None
        gb = sum_dy.clone() if ctx.has_bias and ctx.needs_input_grad[2] and g is not None else None
        gx = None
        if ctx.needs_input_grad[0]:
            combined = torch.cat([sum_dy, sum_dy_xmu])
            dist.all_reduce(combined, dist.ReduceOp.SUM, ctx.group)  # every rank takes part, empty or not
            if g is not None:
                sum_dy, sum_dy_xmu = combined[:c], combined[c:]
                f1 = (invstd * invstd * sum_dy_xmu / ctx.n).reshape(shape)
                f2 = invstd if weight is None else invstd * weight.to(acc)
                gx = ((g - (sum_dy / ctx.n).reshape(shape) - xmu * f1) * f2.reshape(shape)).to(x.dtype)
        if gw is not None:
            gw = gw.to(weight.dtype)
        if gb is not None:
            gb = gb.to(weight.dtype if weight is not None else gb.dtype)
        return gx, gw, gb, None, None, None, None, None, None


def _resolve_group(process_group):
    """The ``torch.distributed`` group of ``process_group`` ('world': the default group),
    or a clear error when no process group has been initialized."""
    if not dist.is_available() or not dist.is_initialized():
        raise _core.InitError(
            f"BatchNorm(process_group={process_group!r}): torch.distributed is not initialized in this process. "
            "Call torch.distributed.init_process_group('gloo' on CPU, 'nccl' on GPU, ...) in every rank first "
            "(torchrun sets the rank and world size), or pass process_group=None for one process.")
    return dist.group.WORLD if isinstance(process_group, str) else process_group


class BatchNorm(_NormBase):
    r"""BatchNorm over any channel axis with PyTorch's (default), Flax's or the textbook convention.

    Training normalizes with the batch mean and biased variance and updates::

        running = keep * running + take * batch     (var: * n/(n-1) if unbiased_running_var)
        num_batches_tracked += 1

    ``momentum_style='torch'``: ``take = momentum`` (None: ``1/num_batches_tracked``);
    ``'decay'``: ``keep = momentum`` (Flax). Output
    ``(x - mean) * rsqrt(var + eps) * weight + bias``, in the input's dtype (float32
    for integer inputs); statistics in at least float32. ``BatchNorm.from_convention('flax',
    C, axis=-1)`` reproduces ``flax.linen.BatchNorm()`` on channels-last tensors. Input rules:
    PyTorch's with ``momentum_style='torch'``, Flax's with ``'decay'`` (any rank >= 1, integer
    and complex inputs, one value per channel, ``eps=0``; see :mod:`_jaxinit.batchnorm`).
    An empty batch in training leaves the running statistics unchanged and counts the call.

    Differs from ``jaxinit.BatchNorm`` only where the frameworks do: ``axis``
    defaults to 1 (NCHW, torch's layout; jaxinit: -1), train/eval are
    ``.train()``/``.eval()``, the output keeps the input dtype (torch's rule), the
    running statistics keep the module's dtype, and ``process_group`` (torch.distributed)
    stands for ``axis_name`` (a named JAX device axis).

    Args:
      num_features: number of channels C.
      eps, momentum, affine, track_running_stats, device, dtype, bias: as
        ``torch.nn.BatchNorm2d``; ``momentum`` read per ``momentum_style``.
      axis: channel axis (1: NCHW; -1: channels-last).
      momentum_style: 'torch' (weight of the new batch) or 'decay' (weight of the old value).
      unbiased_running_var: running variance from the unbiased batch variance (PyTorch).
      variance: 'shifted' (default) or 'two_pass': an accurate variance (torch's own);
        'fast': one-pass ``E[x^2]-E[x]^2`` as Flax's ``use_fast_variance``.
      process_group: None (statistics of this process's batch), 'world' (the default
        ``torch.distributed`` group) or a process group: in training, the statistics of the
        batches of every rank of the group, as ``torch.nn.SyncBatchNorm`` (count-weighted over
        unequal and empty per-rank batches, running variance unbiased over the global count,
        ``sum_dy``/``sum_dy_xmu`` all-reduced in backward), on any backend (gloo on CPU, NCCL);
        PyTorch's convention only. The twin of ``jaxinit.BatchNorm(axis_name=...)``.
        :meth:`convert_sync_batchnorm` converts a model's BatchNorm layers.

    Example::

        >>> import torch, torchinit
        >>> bn = torchinit.BatchNorm(3, axis=-1)                     # NHWC, PyTorch semantics
        >>> y = bn(torch.randn(8, 4, 4, 3))
        >>> flax_bn = torchinit.BatchNorm.from_convention("flax", 3, axis=-1)
    """

    # torch.nn.BatchNorm*d's signature, as jaxinit's NNX BatchNorm has it (the mirror, by design).
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
        variance: str = "shifted",
        process_group: Any = None,
    ) -> None:
        _core.check_args(
            num_features=num_features, eps=eps, momentum=momentum, momentum_style=momentum_style,
            affine=affine, bias=bias, track_running_stats=track_running_stats,
            unbiased_running_var=unbiased_running_var, variance=variance, axis=axis,
            num_features_required=True)
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.axis = axis
        self.momentum_style = momentum_style
        self.unbiased_running_var = unbiased_running_var
        self.variance = variance
        if process_group is not None:
            if isinstance(process_group, str) and process_group != "world":
                raise _core.InitError(
                    f"BatchNorm: `process_group` must be None (one process), 'world' (the default "
                    f"torch.distributed group) or a torch.distributed ProcessGroup, got {process_group!r}.")
            if not self._is_torch_native():
                raise _core.InitError(
                    "BatchNorm: `process_group` (torch.nn.SyncBatchNorm's statistics) needs PyTorch's convention "
                    "(momentum_style='torch', unbiased_running_var=True, variance 'shifted' or 'two_pass'), got "
                    f"momentum_style={momentum_style!r}, unbiased_running_var={unbiased_running_var}, "
                    f"variance={variance!r}; for Flax's conventions across devices use jaxinit.BatchNorm(axis_name=...).")
        self.process_group = process_group

    @classmethod
    def convert_sync_batchnorm(cls, module: torch.nn.Module, process_group: Any = None) -> torch.nn.Module:
        """``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` for every backend: each
        ``torch.nn.BatchNorm{1,2,3}d``, ``torch.nn.SyncBatchNorm`` or PyTorch-convention
        ``torchinit.BatchNorm`` in ``module`` becomes a ``torchinit.BatchNorm`` with
        ``process_group`` (None: 'world', torch's default group), sharing the parameters and
        buffers of the layer it replaces (as torch's, which also keeps ``training``).

        Example::

            >>> model = torchinit.BatchNorm.convert_sync_batchnorm(model)   # after init_process_group
            >>> ddp = torch.nn.parallel.DistributedDataParallel(model)      # gloo on CPU works
        """
        group = "world" if process_group is None else process_group
        out = module
        if isinstance(module, _BatchNorm) or (isinstance(module, BatchNorm) and module._is_torch_native()):
            ref = module.weight if module.weight is not None else module.running_mean
            out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      device=ref.device if ref is not None else None, dtype=ref.dtype if ref is not None else None,
                      bias=module.bias is not None, axis=getattr(module, "axis", 1),
                      variance=getattr(module, "variance", "shifted"), process_group=group)
            if module.affine:
                with torch.no_grad():
                    out.weight = module.weight
                    out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        elif isinstance(module, BatchNorm):
            raise _core.InitError(
                f"BatchNorm.convert_sync_batchnorm: {module!r} uses momentum_style={module.momentum_style!r}, "
                f"unbiased_running_var={module.unbiased_running_var}, variance={module.variance!r}; SyncBatchNorm's "
                "statistics are PyTorch's convention only (use jaxinit.BatchNorm(axis_name=...) for Flax's).")
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out

    @classmethod
    def from_convention(cls, convention: str, num_features: int, **overrides) -> "BatchNorm":
        """``BatchNorm(num_features, ...)`` with the arguments of ``convention`` ('torch',
        'flax', 'textbook'), then ``overrides``."""
        return cls(num_features, **_core.convention_kwargs(convention, overrides))

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", axis={self.axis}, momentum_style={self.momentum_style!r}, "
                f"unbiased_running_var={self.unbiased_running_var}, variance={self.variance!r}"
                + ("" if self.process_group is None else f", process_group={self.process_group!r}"))

    def _check_input_dim(self, input: Tensor) -> None:
        """Checked in :meth:`forward` (any channel axis, PyTorch's or Flax's rules)."""

    def _is_torch_native(self) -> bool:
        return self.momentum_style == "torch" and self.unbiased_running_var and self.variance != "fast"

    def forward(self, input: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Normalize ``input`` (2-D to 5-D, channels at ``axis``; Flax's rules: any rank).

        ``mask`` (optional, broadcastable to ``input``): only True positions enter
        the batch statistics (padding); the count per channel is the number of True.
        """
        flax = _core.flax_rules(self.momentum_style)
        if not flax:
            _core.check_float_dtype(str(input.dtype).replace("torch.", ""), input.is_floating_point())
        ax = _core.channel_axis(input.ndim, self.axis, flax=flax)
        _core.check_channels(input.shape, ax, self.num_features)
        use_batch = self.training or self.running_mean is None
        if self.process_group is not None and self.training:  # one value per rank is fine across ranks
            _core.check_eps_training(self.eps)
            y = self._synced(input, ax, mask)
            if y is not None:
                return y
        if use_batch and not flax:
            if mask is None:
                _core.check_batch_size(input.shape, ax, shape_repr=input.shape)
            _core.check_eps_training(self.eps)
        real_float = input.is_floating_point()
        # torch's kernels: real floating inputs of 2+ dimensions, eps > 0, no mask, and more than one
        # value per channel in training (with one, x == mean and Flax's output is exactly the bias,
        # which the kernel's fused x * a + (bias - mean * a) only approximates).
        kernel_ok = (real_float and input.ndim >= 2 and self.eps > 0 and mask is None
                     and (not use_batch or _core.values_per_channel(input.shape, ax) != 1))

        if kernel_ok and (not use_batch or self._is_torch_native()):
            # torch.nn.BatchNorm's own forward (running update included), channels moved to axis 1.
            x = input if ax == 1 else input.movedim(ax, 1)
            y = _BatchNorm.forward(self, x)  # type: ignore[arg-type]  # torch's forward on our _NormBase
            return y if ax == 1 else y.movedim(1, ax)

        shape = [1] * input.ndim
        shape[ax] = input.shape[ax]
        if not use_batch:
            mean, var = self.running_mean, self.running_var
        elif _core.values_per_channel(input.shape, ax) == 0:
            # PyTorch: an empty output, the running statistics unchanged, the call counted.
            self._update(None, None, 0)
            y = input * 0 if real_float else (input * 0).to(torch.float32)
            for p in (self.weight, self.bias):  # in the graph, for their (zero) gradients, as torch
                y = y if p is None else y + (p * 0).reshape(shape)
            return y.to(input.dtype) if real_float else y
        else:
            params_match = all(p is None or p.dtype == input.dtype for p in (self.weight, self.bias))
            kernel = kernel_ok and input.dtype in (torch.float32, torch.float64) and params_match
            # torch's kernels differentiate the normalization themselves; the explicit formula
            # differentiates through the statistics.
            with torch.set_grad_enabled(torch.is_grad_enabled() and not kernel):
                mean, var, count = batch_statistics(input.to(torch.promote_types(input.dtype, torch.float32)), ax,
                                                    self.variance, mask)
            self._update(mean.detach(), var.detach(), count)
            if kernel:
                x = input if ax == 1 else input.movedim(ax, 1)
                y = _NormalizeWithBatchStats.apply(x, self.weight, self.bias, mean, var, self.eps)
                return y if ax == 1 else y.movedim(1, ax)
        assert mean is not None and var is not None  # use_batch, or running statistics kept (use_batch else)
        mul = torch.rsqrt(var.reshape(shape) + self.eps)
        if self.weight is not None:
            mul = mul * self.weight.reshape(shape)
        y = (input - mean.reshape(shape)) * mul
        if self.bias is not None:
            y = y + self.bias.reshape(shape)
        return y.to(input.dtype) if real_float else y

    def _synced(self, input: Tensor, ax: int, mask: Optional[Tensor]) -> Optional[Tensor]:
        """Training forward with the statistics of every rank of ``process_group``
        (:class:`_SyncBatchNormFn`); None when the group has one rank (torch then runs plain
        BatchNorm too)."""
        group = _resolve_group(self.process_group)
        world_size = dist.get_world_size(group)
        if world_size < 2:
            return None
        if mask is not None:
            raise _core.InitError(
                "BatchNorm(process_group=...): `mask` is not supported across processes (torch's SyncBatchNorm "
                "has none); give each rank only its valid rows (unequal and empty per-rank batches are handled).")
        factor = 0.0
        if self.track_running_stats:
            assert self.num_batches_tracked is not None  # a buffer when track_running_stats
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        x = input if ax == 1 else input.movedim(ax, 1)
        y = _SyncBatchNormFn.apply(x.contiguous(), self.weight, self.bias, *running, self.eps, factor, group,
                                   world_size)
        return y if ax == 1 else y.movedim(1, ax)

    @torch.no_grad()
    def _update(self, mean: Optional[Tensor], var: Optional[Tensor], count) -> None:
        """Count the training call and update the running statistics with
        :func:`_jaxinit.batchnorm.update_running` (``mean=None``: an empty batch, count only).
        Complex statistics (Flax's rules) keep their real part, as ``flax.nnx.BatchNorm``."""
        if not (self.training and self.track_running_stats):
            return
        assert self.num_batches_tracked is not None and self.running_mean is not None \
            and self.running_var is not None  # buffers when track_running_stats
        self.num_batches_tracked.add_(1)
        if mean is None:
            return
        keep, take = _core.update_coefficients(self.momentum, self.momentum_style, float(self.num_batches_tracked))
        new_mean, new_var = _core.update_running(self.running_mean, self.running_var, mean, var, count, keep=keep,
                                                 take=take, unbiased_running_var=self.unbiased_running_var)
        self.running_mean.copy_(new_mean.real if new_mean.is_complex() else new_mean)
        self.running_var.copy_(new_var.real if new_var.is_complex() else new_var)
