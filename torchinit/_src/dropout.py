r"""Keyed dropout for torch: the masks Flax draws from the same JAX key, bit for bit.

``torch.nn.Dropout`` draws its mask from torch's generator; ``flax.linen.Dropout`` from a
JAX key. Given the key Flax's layer receives, the functions and modules here draw Flax's
mask with the threefry port of :mod:`torchinit.random` and apply Flax's scaling, so a torch
model and its Flax twin drop the same units and scale them by the same float.

What Flax computes (flax/linen/stochastic.py ``Dropout.__call__``; flax/nnx/nn/stochastic.py
is the same), with ``keep_prob = 1.0 - rate`` a Python float:

.. math:: m = \text{bernoulli}(k,\ keep\_prob,\ \text{shape with broadcast\_dims} = 1),\qquad
          y = \text{select}(m,\ x / keep\_prob,\ 0)

- the uniform behind ``bernoulli`` is float32, or float64 when JAX runs with
  ``jax_enable_x64`` (the Python float ``keep_prob`` takes JAX's default float type):
  ``mask_dtype`` here;
- ``x / keep_prob`` divides by a constant, which XLA rewrites as a multiplication by its
  reciprocal (eager and jitted alike, as ``jnp.true_divide`` is itself jitted): in
  float32/float64/float16 ``x * (1 / dt(keep_prob))`` with the reciprocal rounded to the
  input dtype; bfloat16 is computed in float32, ``bf16(f32(x) * (1 / f32(bf16(keep_prob))))``.
  Measured against flax 0.12.8 on CPU, bitwise; a true division differs in 1 ulp on ~20% of
  the elements (a NumPy array given to Flax's layer eagerly is divided by NumPy, truly: the
  product here is what any JAX array, jitted or not, gets);
- ``rate == 0`` or deterministic returns the input; ``rate == 1`` returns zeros (no key drawn).

Flax's attention dropout (``flax.linen.dot_product_attention_weights``, also what Hugging
Face's Flax models call) is another formula: ``w * (keep.astype(dt) / dt(keep_prob))``
(:func:`attention_dropout`), with the mask broadcast over batch and heads by default.

Where torch and Flax differ (torch/nn/functional.py, torchvision/ops/stochastic_depth.py,
timm/layers/drop.py): torch draws ``bernoulli_(1 - p)`` from its generator and multiplies
by ``1 / (1 - p)`` computed in float (opmath) for 16-bit inputs; torchvision and timm build
``noise = bernoulli / keep`` in the input dtype and multiply. The modules here keep torch's
constructor, ``train()``/``eval()`` and the layer's other behaviour, and take Flax's numbers.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import torch

import torchinit.random as _rnd
from _jaxinit.errors import InitError
from torchinit._src.nnx_rngs import Rngs, RngStream

Tensor = torch.Tensor

_MASK_DTYPES = (torch.float32, torch.float64)


def check_rate(p: Any, who: str, name: str = "p") -> float:
    """``p`` as a float in [0, 1], or an InitError naming it (torch raises ValueError here too)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise InitError(f"{who}: `{name}` must be a float in [0, 1], got {type(p).__name__} {p!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise InitError(f"{who}: dropout probability `{name}` must be in [0, 1], got {p}; "
                        f"`{name}` is the probability of dropping a unit (Flax's `rate`, not the keep rate)")
    return p


def check_mask_dtype(mask_dtype: Any, who: str) -> torch.dtype:
    if mask_dtype not in _MASK_DTYPES:
        raise InitError(
            f"{who}: `mask_dtype` must be torch.float32 (JAX's default) or torch.float64 (JAX with "
            f"jax_enable_x64), the dtype of the uniform behind Flax's bernoulli mask; got {mask_dtype!r}")
    return mask_dtype


def check_key(key: Any, who: str) -> Tensor:
    if key is None:
        raise InitError(
            f"{who}: training-mode dropout needs a JAX key (`key`): pass the key Flax's layer receives "
            "(torchinit.rngs.linen_key / nnx_key derive it), bind the model with torchinit.rngs.bind_rngs, "
            "or switch dropout off with eval() / training=False")
    if isinstance(key, torch.Generator):
        raise InitError(f"{who}: `key` must be a JAX key (uint32[2] or a jax.random.key), got a torch.Generator; "
                        "for torch's own masks use torch.nn.functional.dropout")
    try:
        return _rnd.as_key(key)
    except InitError as err:
        raise InitError(f"{who}: `key` is not a JAX key: {err}") from err


def _mask_shape(shape: Sequence[int], broadcast_dims: Sequence[int], who: str) -> tuple[int, ...]:
    out = list(shape)
    for d in broadcast_dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not -len(out) <= d < len(out):
            raise InitError(f"{who}: `broadcast_dims` entries must be axes of the input (ndim {len(out)}), got {d!r}")
        out[d] = 1
    return tuple(out)


# mask dtype -> (random bits dtype, the signed view, mantissa bits): jax's uniform is m / 2**mant exactly
_MASK_BITS = {torch.float32: (torch.uint32, torch.int32, 23), torch.float64: (torch.uint64, torch.int64, 52)}


def keep_mask(key: Tensor, keep_prob: float, shape: Sequence[int], mask_dtype: torch.dtype,
              device=None) -> Tensor:
    """``jax.random.bernoulli(key, keep_prob, shape)`` with ``keep_prob`` a Python float: the
    uniform in ``mask_dtype`` (float32 without x64, float64 with), ``keep_prob`` rounded to it.

    jax's uniform is ``u = m / 2**mant`` exactly (``m`` the top ``mant`` bits of the random word,
    float32: 23, float64: 52), so ``u < p`` is the integer test ``m < ceil(p * 2**mant)``
    (``p * 2**mant`` is exact in float64): the same mask without building the floats."""
    bits_dtype, signed, mant = _MASK_BITS[mask_dtype]
    p = float(torch.tensor(keep_prob, dtype=torch.float64).to(mask_dtype))
    threshold = math.ceil(p * 2.0 ** mant)
    words = _rnd.bits(key, tuple(shape), bits_dtype, device=device).view(signed)
    width = 32 if signed == torch.int32 else 64
    return ((words >> (width - mant)) & ((1 << mant) - 1)) < threshold


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # XLA's CPU backend computes bfloat16 arithmetic in float32; float16 is native (measured).
    return torch.float32 if dtype == torch.bfloat16 else dtype


def _recip(keep_prob: float, dtype: torch.dtype, device) -> Tensor:
    """``1 / keep_prob`` as XLA folds it: ``keep_prob`` rounded to ``dtype``, the reciprocal computed
    in the compute dtype (bfloat16: float32)."""
    cd = _compute_dtype(dtype)
    kp = torch.tensor(keep_prob, dtype=torch.float64).to(dtype).to(cd)
    return (torch.ones((), dtype=cd) / kp).to(device)


def _select_scale(x: Tensor, mask: Tensor, recip: Tensor) -> Tensor:
    y = (x.to(recip.dtype) * recip).to(x.dtype)
    return torch.where(mask, y, torch.zeros((), dtype=x.dtype, device=x.device))


class _SelectScaled(torch.autograd.Function):
    """``select(mask, x * recip, 0)`` with its gradient ``select(mask, g, 0) * recip`` (Flax's, as
    XLA evaluates it) computed in one step: only the mask and the constant are saved."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, mask: Tensor, recip: Tensor) -> Tensor:
        ctx.save_for_backward(mask, recip)
        return _select_scale(x, mask, recip)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, None, None]:
        mask, recip = ctx.saved_tensors
        return _select_scale(g, mask, recip), None, None


def select_scaled(x: Tensor, mask: Tensor, keep_prob: float) -> Tensor:
    """Flax's ``lax.select(mask, x / keep_prob, 0)`` as XLA evaluates it, ``x * (1 / keep_prob)``
    with the constant and its reciprocal rounded as XLA does (see the module docstring), and its
    gradient."""
    return _SelectScaled.apply(x, mask, _recip(keep_prob, x.dtype, x.device))


def _check_input(x: Any, who: str) -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise InitError(f"{who}: `input` must be a torch.Tensor, got {type(x).__name__}")
    return x


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
            key: Any = None, broadcast_dims: Sequence[int] = (), mask_dtype: torch.dtype = torch.float32,
            channels_last: bool = False) -> Tensor:
    r"""``torch.nn.functional.dropout`` with ``flax.linen.Dropout``'s mask and scaling for ``key``.

    .. math:: y = \text{select}(\text{bernoulli}(key,\ 1 - p,\ s),\ x \cdot \tfrac{1}{1-p},\ 0)

    ``s`` is the input's shape with ``broadcast_dims`` set to 1 (Flax's ``broadcast_dims``).
    ``channels_last=True`` is for a channels-first torch input whose Flax twin holds the same
    values channels-last (NCHW here, NHWC there): the mask is drawn in Flax's layout and moved.
    ``mask_dtype``: torch.float64 when the Flax twin runs with ``jax_enable_x64``.
    ``p == 0`` or ``training=False`` returns ``input``; ``p == 1`` returns zeros.

    >>> import torch, torchinit.random as tr
    >>> y = dropout(torch.ones(2, 4), 0.5, key=tr.key(1))   # == flax.linen.Dropout(0.5) with rngs={'dropout': key(1)}
    """
    who = "torchinit.rngs.dropout"
    _check_input(input, who)
    p = check_rate(p, who)
    if p == 0.0 or not training:
        return input
    if p == 1.0:
        return input.zero_() if inplace else torch.zeros_like(input)
    k = check_key(key, who)
    check_mask_dtype(mask_dtype, who)
    shape = tuple(input.shape)
    if channels_last and input.ndim >= 3:
        flax_shape = (shape[0],) + shape[2:] + (shape[1],)
        dims = [d % input.ndim for d in broadcast_dims]
        m = keep_mask(k, 1.0 - p, _mask_shape(flax_shape, dims, who), mask_dtype, input.device)
        mask = torch.movedim(m, -1, 1)
    else:
        mask = keep_mask(k, 1.0 - p, _mask_shape(shape, broadcast_dims, who), mask_dtype, input.device)
    out = select_scaled(input, mask, 1.0 - p)
    return input.copy_(out) if inplace else out


def _channel_dims(input: Tensor, batched_ndim: int, who: str) -> tuple[int, ...]:
    """The broadcast dims that make a per-channel mask for torch's Dropout1d/2d/3d layout
    (N, C, *spatial) or unbatched (C, *spatial): every spatial axis."""
    nd = input.ndim
    if nd not in (batched_ndim, batched_ndim - 1):
        raise InitError(f"{who}: expected a {batched_ndim - 1}-D (unbatched) or {batched_ndim}-D (batched) input, "
                        f"got {nd}-D (torch's rule for this layer)")
    first_spatial = 2 if nd == batched_ndim else 1
    return tuple(range(first_spatial, nd))


def channel_dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False, *,
                    key: Any = None, mask_dtype: torch.dtype = torch.float32, spatial_dims: int = 2) -> Tensor:
    r"""``torch.nn.functional.dropout1d/2d/3d`` (``spatial_dims`` 1/2/3) with Flax's mask.

    torch zeros whole channels: input (N, C, *spatial) or (C, *spatial), mask (N, C, 1, ...).
    The Flax twin is ``Dropout(rate, broadcast_dims=spatial axes)`` on the channels-last input
    (NHWC: ``broadcast_dims=(1, 2)``): its mask (N, 1, 1, C) has the same flat order as
    torch's (N, C, 1, 1), so the units dropped are the same.
    """
    who = f"torchinit.rngs.dropout{spatial_dims}d"
    _check_input(input, who)
    return dropout(input, p, training, inplace, key=key, mask_dtype=mask_dtype,
                   broadcast_dims=_channel_dims(input, spatial_dims + 2, who))


def stochastic_depth(input: Tensor, p: float, mode: str = "row", training: bool = True, *,
                     key: Any = None, mask_dtype: torch.dtype = torch.float32) -> Tensor:
    r"""``torchvision.ops.stochastic_depth`` with the mask of ``flax.linen.Dropout(p,
    broadcast_dims=...)`` for ``key``.

    ``mode='row'``: one draw per sample (Flax ``broadcast_dims=range(1, ndim)``);
    ``'batch'``: one draw for the batch (``broadcast_dims=range(ndim)``). Kept rows are
    scaled by ``1 / (1 - p)`` (torchvision divides the noise by the survival rate, timm's
    ``scale_by_keep``); with Flax's rounding (see the module docstring). ``p == 1`` gives zeros.
    """
    who = "torchinit.rngs.stochastic_depth"
    if mode not in ("row", "batch"):
        raise InitError(f"{who}: `mode` must be 'row' or 'batch' (torchvision's), got {mode!r}")
    _check_input(input, who)
    dims = tuple(range(1 if mode == "row" else 0, input.ndim))
    return dropout(input, p, training, key=key, mask_dtype=mask_dtype, broadcast_dims=dims)


def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True, *,
              key: Any = None, mask_dtype: torch.dtype = torch.float32) -> Tensor:
    r"""timm's ``drop_path`` (same arguments and defaults) with Flax's per-sample mask for ``key``.

    ``scale_by_keep=True`` is :func:`stochastic_depth` in row mode; ``False`` keeps rows unscaled.
    """
    who = "torchinit.rngs.drop_path"
    _check_input(x, who)
    if scale_by_keep:
        return stochastic_depth(x, drop_prob, "row", training, key=key, mask_dtype=mask_dtype)
    p = check_rate(drop_prob, who, "drop_prob")
    if p == 0.0 or not training:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    mask = keep_mask(check_key(key, who), 1.0 - p, (x.shape[0],) + (1,) * (x.ndim - 1),
                     check_mask_dtype(mask_dtype, who), x.device)
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))


def attention_dropout(weights: Tensor, p: float, training: bool = True, *, key: Any = None,
                      broadcast_dropout: bool = True, mask_dtype: torch.dtype = torch.float32) -> Tensor:
    r"""Dropout on attention weights as ``flax.linen.dot_product_attention_weights`` applies it.

    .. math:: w \cdot \frac{\text{keep}}{\text{dt}(1 - p)},\qquad
              \text{keep} = \text{bernoulli}(key,\ 1 - p,\ (1, \dots, 1, q, k))

    (``broadcast_dropout=False``: the mask has the weights' shape). Weights are
    (..., heads, q, k) in both frameworks. This is what Hugging Face's Flax attention uses
    (``broadcast_dropout=True``); its torch attention calls ``torch.nn.functional.dropout``
    on the same weights, which :func:`torchinit.rngs.bind_rngs` routes here.
    """
    who = "torchinit.rngs.attention_dropout"
    _check_input(weights, who)
    p = check_rate(p, who)
    if p == 0.0 or not training:
        return weights
    k = check_key(key, who)
    check_mask_dtype(mask_dtype, who)
    shape = tuple(weights.shape)
    if weights.ndim < 2:
        raise InitError(f"{who}: attention weights are (..., q, k), got shape {shape}")
    mshape = (1,) * (weights.ndim - 2) + shape[-2:] if broadcast_dropout else shape
    keep = keep_mask(k, 1.0 - p, mshape, mask_dtype, weights.device)
    dt = weights.dtype
    multiplier = keep.to(dt) / torch.tensor(1.0 - p, dtype=torch.float64).to(dt).to(weights.device)
    return weights * multiplier


# --------------------------------------------------------------------------- modules
class Keyed:
    """Mixin: where a keyed module gets its key when ``forward`` is not given one.

    ``self.rng_source`` is a callable ``(module, input) -> output`` set by
    :func:`torchinit.rngs.bind_rngs`: a bound layer called without a key does what its paired
    Flax call does (that call's key, mask shape, mask dtype and formula); ``None`` (unbound)
    means the key must be passed to ``forward``.
    """

    rng_source: Callable[[torch.nn.Module, Tensor], Tensor] | None = None
    rngs: RngStream | None = None
    mask_dtype: torch.dtype

    def _set_rngs(self, rngs: Any, rng_collection: str) -> None:
        """``nnx.Dropout(rngs=...)``: fork the ``rng_collection`` stream at construction."""
        if rngs is None:
            return
        if isinstance(rngs, Rngs):
            self.rngs = rngs[rng_collection].fork()
        elif isinstance(rngs, RngStream):
            self.rngs = rngs.fork()
        else:
            raise InitError(f"{type(self).__name__}: `rngs` must be a torchinit.rngs.Rngs or RngStream (as "
                            f"flax.nnx.Dropout's), got {type(rngs).__name__}; or pass `key=` to each call")

    def _bound(self, input: Tensor, key: Any, p: float) -> tuple[Tensor | None, Any]:
        """(output, None) when a binding computes this call; else (None, the key to use): the given
        key, or the layer's own stream's next key (as nnx.Dropout draws it), or None."""
        if key is not None or not (self.training and 0.0 < p < 1.0):  # type: ignore[attr-defined]
            return None, key
        if self.rng_source is not None:
            return self.rng_source(self, input), None  # type: ignore[arg-type]
        return None, (self.rngs() if self.rngs is not None else None)


class Dropout(Keyed, torch.nn.Dropout):
    """``torch.nn.Dropout`` whose mask is ``flax.linen.Dropout``'s for the same key.

    Same constructor (plus keyword-only ``broadcast_dims``, ``mask_dtype``, ``channels_last``,
    see :func:`torchinit.rngs.dropout`, and ``rngs``), same ``train()``/``eval()``.
    ``forward(x, key=None)``: the key is the one Flax's layer receives (``make_rng('dropout')``);
    without it, a model bound by :func:`torchinit.rngs.bind_rngs` does what the paired Flax call
    does, and a layer built with ``rngs=torchinit.rngs.Rngs(dropout=...)`` draws its keys as
    ``flax.nnx.Dropout(rngs=nnx.Rngs(dropout=...))`` does (the stream forked at construction,
    one key per call). In eval mode no key is needed.

    >>> import torch, torchinit.nn as fnn, torchinit.random as tr
    >>> layer = fnn.Dropout(0.1)
    >>> y = layer(torch.ones(2, 3), key=tr.key(0))
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, broadcast_dims: Sequence[int] = (),
                 mask_dtype: torch.dtype = torch.float32, channels_last: bool = False, rngs: Any = None,
                 rng_collection: str = "dropout") -> None:
        super().__init__(check_rate(p, type(self).__name__), inplace)
        self._set_rngs(rngs, rng_collection)
        self.broadcast_dims = tuple(broadcast_dims)
        self.mask_dtype = check_mask_dtype(mask_dtype, type(self).__name__)
        self.channels_last = bool(channels_last)

    def forward(self, input: Tensor, key: Any = None) -> Tensor:
        out, key = self._bound(input, key, self.p)
        if out is not None:
            return out
        return dropout(input, self.p, self.training, self.inplace, key=key, broadcast_dims=self.broadcast_dims,
                       mask_dtype=self.mask_dtype, channels_last=self.channels_last)


class _ChannelKeyed(Keyed):
    """``__init__``/``forward`` of the keyed Dropout1d/2d/3d (``_spatial`` spatial axes)."""

    _spatial = 2
    p: float
    inplace: bool
    training: bool

    def __init__(self, p: float = 0.5, inplace: bool = False, *, mask_dtype: torch.dtype = torch.float32,
                 rngs: Any = None, rng_collection: str = "dropout") -> None:
        name = type(self).__name__
        super().__init__(check_rate(p, name), inplace)  # type: ignore[call-arg]  # torch's _DropoutNd
        self._set_rngs(rngs, rng_collection)
        self.mask_dtype = check_mask_dtype(mask_dtype, name)

    def forward(self, input: Tensor, key: Any = None) -> Tensor:
        _channel_dims(input, self._spatial + 2, f"{type(self).__name__}")  # torch's rank rule, bound or not
        out, key = self._bound(input, key, self.p)
        if out is not None:
            return out
        return channel_dropout(input, self.p, self.training, self.inplace, key=key, mask_dtype=self.mask_dtype,
                               spatial_dims=self._spatial)


class Dropout1d(_ChannelKeyed, torch.nn.Dropout1d):
    """``torch.nn.Dropout1d`` (whole channels of (N, C, L) zeroed) whose mask is
    ``flax.linen.Dropout(broadcast_dims=(1,))``'s on the (N, L, C) twin input for the same key;
    ``forward(x, key=None)`` and ``mask_dtype`` as :class:`Dropout`."""

    _spatial = 1


class Dropout2d(_ChannelKeyed, torch.nn.Dropout2d):
    """``torch.nn.Dropout2d`` (whole channels of (N, C, H, W) zeroed) whose mask is
    ``flax.linen.Dropout(broadcast_dims=(1, 2))``'s on the NHWC twin input for the same key;
    ``forward(x, key=None)`` and ``mask_dtype`` as :class:`Dropout`."""

    _spatial = 2


class Dropout3d(_ChannelKeyed, torch.nn.Dropout3d):
    """``torch.nn.Dropout3d`` (whole channels of (N, C, D, H, W) zeroed) whose mask is
    ``flax.linen.Dropout(broadcast_dims=(1, 2, 3))``'s on the NDHWC twin input for the same key;
    ``forward(x, key=None)`` and ``mask_dtype`` as :class:`Dropout`."""

    _spatial = 3


class StochasticDepth(Keyed, torch.nn.Module):
    """``torchvision.ops.StochasticDepth(p, mode)`` with the keyed mask of
    :func:`torchinit.rngs.stochastic_depth`; ``forward(x, key=None)`` as :class:`Dropout`."""

    def __init__(self, p: float, mode: str, *, mask_dtype: torch.dtype = torch.float32, rngs: Any = None,
                 rng_collection: str = "dropout") -> None:
        super().__init__()
        self._set_rngs(rngs, rng_collection)
        if mode not in ("row", "batch"):
            raise InitError(f"StochasticDepth: `mode` must be 'row' or 'batch', got {mode!r}")
        self.p = check_rate(p, "StochasticDepth")
        self.mode = mode
        self.mask_dtype = check_mask_dtype(mask_dtype, "StochasticDepth")

    def forward(self, input: Tensor, key: Any = None) -> Tensor:
        out, key = self._bound(input, key, self.p)
        if out is not None:
            return out
        return stochastic_depth(input, self.p, self.mode, self.training, key=key, mask_dtype=self.mask_dtype)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class DropPath(Keyed, torch.nn.Module):
    """timm's ``DropPath(drop_prob=0.0, scale_by_keep=True)`` with the keyed per-sample mask of
    :func:`torchinit.rngs.drop_path`; ``forward(x, key=None)`` as :class:`Dropout`.
    The Flax twin: ``flax.linen.Dropout(drop_prob, broadcast_dims=range(1, x.ndim))``."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True, *,
                 mask_dtype: torch.dtype = torch.float32, rngs: Any = None, rng_collection: str = "dropout") -> None:
        super().__init__()
        self._set_rngs(rngs, rng_collection)
        self.drop_prob = check_rate(drop_prob, "DropPath", "drop_prob")
        self.scale_by_keep = bool(scale_by_keep)
        self.mask_dtype = check_mask_dtype(mask_dtype, "DropPath")

    def forward(self, x: Tensor, key: Any = None) -> Tensor:
        out, key = self._bound(x, key, self.drop_prob)
        if out is not None:
            return out
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep, key=key, mask_dtype=self.mask_dtype)

    def extra_repr(self) -> str:
        return f"drop_prob={round(self.drop_prob, 3):0.3f}"
