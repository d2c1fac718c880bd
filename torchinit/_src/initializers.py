"""Weight initializers for PyTorch: the mirror of :mod:`jaxinit`.

Two forms of every initializer:

- In-place drop-ins ``name_(tensor, ..., generator=None)`` on PyTorch-layout
  tensors (``TORCH_LAYOUT``: in_axis=1, out_axis=0). Under the same
  ``torch.manual_seed`` they give bitwise the tensors ``torch.nn.init``
  gives; the extras (``svd_``, the JAX/Flax names) follow the same style.
- Factories ``name(...)`` with the same names, arguments and meanings as
  jaxinit, returning ``init(key, shape, dtype=torch.float32, device=None)``;
  ``key`` is an int seed or a ``torch.Generator``. Like jaxinit they default
  to the FLAX kernel layout (in_axis=-2, out_axis=-1) and sample 16-bit
  dtypes in float32 before casting.

This package never imports jax.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Callable, Mapping, Sequence

import torch

from _initcore import spec
from _initcore.errors import InitError
from _initcore.initializer import InitializerBase
from _initcore.gain import calculate_gain
from torchinit._src import keyed as _keyed
from torchinit._src import random as _rnd

Tensor = torch.Tensor


# --------------------------------------------------------------------------- helpers
def _float_tensor(tensor, who: str) -> Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise InitError(f"{who}: `tensor` must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.dtype.is_floating_point:
        raise InitError(
            f"{who}: random initializers need a floating tensor, got {tensor.dtype}; "
            "use float32/float64/bfloat16/float16 (constant_/zeros_/ones_ accept integers)."
        )
    return tensor


def _any_tensor(tensor, who: str) -> Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise InitError(f"{who}: `tensor` must be a torch.Tensor, got {type(tensor).__name__}")
    return tensor


def _single_axis(value, name: str, ndim: int, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InitError(f"{who}: `{name}` must be a single int axis, got {value!r}")
    if not -ndim <= value < ndim:
        raise InitError(f"{who}: `{name}`={value} is out of range for a {ndim}-D tensor")
    return value % ndim


def _layout(in_axis, out_axis, batch_axis):
    return {"in_axis": in_axis, "out_axis": out_axis, "batch_axis": batch_axis}


def _keyed_inplace(tensor, key, generator, who, make, in_axis=1, out_axis=0, batch_axis=(), conv_transpose=False):
    """Fill a torch-layout ``tensor`` with jaxinit's draw for its Flax twin, from a JAX key.

    The values are drawn by ``make(**flax_layout)(key, flax_shape)`` in the Flax
    kernel layout of the parameter and permuted back: (*k, in, out) from the
    tensor's ``in_axis``/``out_axis`` (Linear (out, in) -> Dense (in, out);
    Conv (out, in, *k) -> (*k, in, out)); with ``conv_transpose=True`` a
    ConvTranspose weight (in, out, *k) -> Flax ConvTranspose (*k, in, out) drawn
    with ``FLAX_CONV_TRANSPOSE_LAYOUT``. Tensors under 2-D are drawn as they are.
    """
    if generator is not None:
        raise InitError(f"{who}: pass either `key` (a JAX-style key) or `generator` (a torch.Generator), not both")
    if not _rnd.is_key(key):
        raise InitError(
            f"{who}: `key` must be a JAX-style key (torchinit.random.key(0), a jax.random.key, or a uint32[2] "
            f"array/tensor), got {type(key).__name__}; for a torch seed use generator=torch.Generator().manual_seed(s)."
        )
    shape = tuple(tensor.shape)
    nd = len(shape)
    if nd < 2:
        init, perm, flax_shape = make(in_axis=-2, out_axis=-1, batch_axis=()), list(range(nd)), shape
    else:
        ia = _single_axis(in_axis, "in_axis", nd, who)
        oa = _single_axis(out_axis, "out_axis", nd, who)
        if ia == oa:
            raise InitError(f"{who}: `in_axis` and `out_axis` must differ, got {in_axis} and {out_axis}")
        spatial = [a for a in range(nd) if a not in (ia, oa)]
        perm = spatial + ([oa, ia] if conv_transpose else [ia, oa])
        batch = (batch_axis,) if isinstance(batch_axis, int) else tuple(batch_axis)
        try:
            fb = tuple(spatial.index(b % nd) for b in batch)
        except ValueError:
            raise InitError(f"{who}: `batch_axis` {batch_axis} must not be the in or out axis") from None
        lay = {"in_axis": -1, "out_axis": -2} if conv_transpose else {"in_axis": -2, "out_axis": -1}
        init = make(batch_axis=fb, **lay)
        flax_shape = tuple(shape[a] for a in perm)
    if tensor.is_meta:
        return tensor
    values = init(key, flax_shape, dtype=tensor.dtype, device=tensor.device)
    inverse = sorted(range(nd), key=lambda i: perm[i])
    with torch.no_grad():
        tensor.copy_(values.permute(inverse) if nd else values)
    return tensor


# --------------------------------------------------------------------------- in-place
def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None, *,
             key=None, conv_transpose: bool = False) -> Tensor:
    """U[a, b) in place; bitwise ``torch.nn.init.uniform_``. With ``key=`` (a JAX key):
    jaxinit's ``uniform(a, b)`` draw for the Flax twin, permuted (see :func:`_keyed_inplace`)."""
    spec.check_uniform(a, b, "uniform_")
    _float_tensor(tensor, "uniform_")
    if key is not None:
        return _keyed_inplace(tensor, key, generator, "uniform_", lambda **_: uniform(a, b), conv_transpose=conv_transpose)
    with torch.no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None, *,
            key=None, conv_transpose: bool = False) -> Tensor:
    """N(mean, std^2) in place; bitwise ``torch.nn.init.normal_`` (``key=``: jaxinit's draw, permuted)."""
    spec.check_normal(mean, std, "normal_")
    _float_tensor(tensor, "normal_")
    if key is not None:
        return _keyed_inplace(tensor, key, generator, "normal_", lambda **_: normal(mean, std), conv_transpose=conv_transpose)
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator)


def _trunc_normal_impl(tensor, mean, std, a, b, generator, stacklevel=3):
    """PyTorch 2.13's two rejection samplers, op for op (pytorch#174997)."""
    method, log_peak, warn = spec.trunc_normal_plan(mean, std, a, b)
    if warn:
        warnings.warn(spec.TRUNC_NORMAL_WARNING, stacklevel=stacklevel)
    if tensor.is_meta:
        return tensor
    with torch.no_grad():
        if method == "normal":
            lo = tensor.new_tensor(a, device="cpu").item()
            hi = tensor.new_tensor(b, device="cpu").item()
            result = tensor.normal_(mean, std, generator=generator)
            while True:
                mask = (result < lo) | (result > hi)
                if not mask.any():
                    break
                result = torch.where(mask, torch.empty_like(result).normal_(mean, std, generator=generator), result)
            if tensor is not result:
                tensor.copy_(result)
            return tensor
        candidates = torch.empty_like(tensor)
        accept_buf = torch.empty_like(tensor)
        tensor.uniform_(a, b, generator=generator)
        candidates.copy_(tensor)
        candidates.sub_(mean).div_(std).pow_(2).mul_(-0.5).sub_(log_peak)
        pending = accept_buf.uniform_(generator=generator).log_().gt(candidates)
        if pending.any():
            result = tensor
            while True:
                candidates.uniform_(a, b, generator=generator)
                result = torch.where(pending, candidates, result)
                candidates.sub_(mean).div_(std).pow_(2).mul_(-0.5).sub_(log_peak)
                pending = torch.where(pending, accept_buf.uniform_(generator=generator).log_().gt(candidates), pending)
                if not pending.any():
                    break
            tensor.copy_(result)
        return tensor


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: torch.Generator | None = None, *, key=None, conv_transpose: bool = False) -> Tensor:
    """N(mean, std^2) truncated to the ABSOLUTE bounds [a, b] in place; bitwise
    ``torch.nn.init.trunc_normal_`` (2.13's rejection sampling). ``key=``: jaxinit's draw, permuted."""
    spec.check_trunc_normal(mean, std, a, b, "trunc_normal_")
    _float_tensor(tensor, "trunc_normal_")
    if key is not None:
        return _keyed_inplace(tensor, key, generator, "trunc_normal_", lambda **_: trunc_normal(mean, std, a, b),
                              conv_transpose=conv_transpose)
    return _trunc_normal_impl(tensor, mean, std, a, b, generator)


def constant_(tensor: Tensor, val) -> Tensor:
    """Fill with ``val``; as ``torch.nn.init.constant_``."""
    spec.check_constant(val, "constant_")
    _any_tensor(tensor, "constant_")
    with torch.no_grad():
        return tensor.fill_(val)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0; as ``torch.nn.init.zeros_``."""
    _any_tensor(tensor, "zeros_")
    with torch.no_grad():
        return tensor.zero_()


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1; as ``torch.nn.init.ones_``."""
    _any_tensor(tensor, "ones_")
    with torch.no_grad():
        return tensor.fill_(1.0)


def eye_(tensor: Tensor) -> Tensor:
    """The 2-D identity; as ``torch.nn.init.eye_``."""
    _any_tensor(tensor, "eye_")
    spec.check_eye(tuple(tensor.shape), "eye_")
    with torch.no_grad():
        torch.eye(*tensor.shape, out=tensor, requires_grad=tensor.requires_grad)
    return tensor


def dirac_(tensor: Tensor, groups: int = 1, *, in_axis=1, out_axis=0, batch_axis=()) -> Tensor:
    """Identity-preserving conv kernel (1 at the spatial centre ``k // 2``); as
    ``torch.nn.init.dirac_``. ``in_axis``/``out_axis`` name the channel axes."""
    _any_tensor(tensor, "dirac_")
    spec.check_no_batch_axis(batch_axis, "dirac_")
    index = spec.dirac_plan(tuple(tensor.shape), groups, {"in_axis": in_axis, "out_axis": out_axis}, "dirac_")
    if tensor.is_meta:
        return tensor
    with torch.no_grad():
        tensor.zero_()
        for idx in index:
            tensor[idx] = 1
    return tensor


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None, *,
                    in_axis=1, out_axis=0, batch_axis=(), key=None, conv_transpose: bool = False) -> Tensor:
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)); bitwise ``torch.nn.init.xavier_uniform_``."""
    _float_tensor(tensor, "xavier_uniform_")
    if key is not None:
        return _keyed_inplace(tensor, key, generator, "xavier_uniform_", lambda **l: xavier_uniform(gain, **l),
                              in_axis, out_axis, batch_axis, conv_transpose)
    bound = spec.xavier_uniform_bound(tuple(tensor.shape), gain, _layout(in_axis, out_axis, batch_axis), "xavier_uniform_")
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None, *,
                   in_axis=1, out_axis=0, batch_axis=(), key=None, conv_transpose: bool = False) -> Tensor:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)), plain normal; bitwise
    ``torch.nn.init.xavier_normal_``."""
    _float_tensor(tensor, "xavier_normal_")
    if key is not None:
        return _keyed_inplace(tensor, key, generator, "xavier_normal_", lambda **l: xavier_normal(gain, **l),
                              in_axis, out_axis, batch_axis, conv_transpose)
    std = spec.xavier_std(tuple(tensor.shape), gain, _layout(in_axis, out_axis, batch_axis), "xavier_normal_")
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def _kaiming(tensor, a, mode, nonlinearity, generator, layout, kind, who, key=None, conv_transpose=False):
    spec.check_mode(mode, who)
    calculate_gain(nonlinearity, a)
    _float_tensor(tensor, who)
    if key is not None and 0 not in tensor.shape:
        factory = kaiming_uniform if kind == "uniform" else kaiming_normal
        return _keyed_inplace(tensor, key, generator, who, lambda **l: factory(a, mode, nonlinearity, **l),
                              layout["in_axis"], layout["out_axis"], layout["batch_axis"], conv_transpose)
    if 0 in tensor.shape:
        warnings.warn(spec.ZERO_ELEMENT_WARNING, stacklevel=3)
        return tensor
    std = spec.kaiming_std(tuple(tensor.shape), a, mode, nonlinearity, layout, who)
    with torch.no_grad():
        if kind == "uniform":
            bound = math.sqrt(3.0) * std
            return tensor.uniform_(-bound, bound, generator=generator)
        return tensor.normal_(0, std, generator=generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None, *, in_axis=1, out_axis=0, batch_axis=(),
                     key=None, conv_transpose: bool = False) -> Tensor:
    """U(-b, b), b = gain * sqrt(3 / fan_mode); bitwise ``torch.nn.init.kaiming_uniform_``."""
    return _kaiming(tensor, a, mode, nonlinearity, generator, _layout(in_axis, out_axis, batch_axis), "uniform",
                    "kaiming_uniform_", key, conv_transpose)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None, *, in_axis=1, out_axis=0, batch_axis=(),
                    key=None, conv_transpose: bool = False) -> Tensor:
    """N(0, std^2), std = gain / sqrt(fan_mode), plain normal; bitwise ``torch.nn.init.kaiming_normal_``."""
    return _kaiming(tensor, a, mode, nonlinearity, generator, _layout(in_axis, out_axis, batch_axis), "normal",
                    "kaiming_normal_", key, conv_transpose)


def _haar(rows: int, cols: int, like: Tensor, generator) -> Tensor:
    """PyTorch's orthogonal_ construction on a (rows, cols) matrix (any aspect)."""
    flattened = like.new_empty((rows, cols)).normal_(0, 1, generator=generator)
    if rows < cols:
        flattened.t_()
    q, r = torch.linalg.qr(flattened)
    q *= torch.diag(r, 0).sign()
    return q  # (max, min): transposed back by the caller


def svd_(tensor: Tensor, singular_values=1.0, generator: torch.Generator | None = None, *, out_axis=0,
         key=None, conv_transpose: bool = False) -> Tensor:
    """A random matrix with the given singular values (Saxe et al. 2014), in place.

    rows = ``tensor.size(out_axis)``, cols = the rest, as ``orthogonal_``. A
    number ``g`` gives every singular value ``g``: bitwise
    ``torch.nn.init.orthogonal_(tensor, gain=g)``. A sequence of
    ``min(rows, cols)`` values gives ``U diag(s) V^T`` with independent
    Haar-random ``U``, ``V``. 16-bit tensors are computed in float32 and cast
    (``torch.nn.init.orthogonal_`` fails there on CPU).
    """
    _float_tensor(tensor, "svd_")
    spec.check_singular_values(singular_values, "svd_")
    shape = tuple(tensor.shape)
    spec.check_orthogonal(shape, "svd_")
    oax = _single_axis(out_axis, "out_axis", len(shape), "svd_")
    if key is not None:
        in_ax = 1 if oax == 0 else 0
        return _keyed_inplace(tensor, key, generator, "svd_",
                              lambda **l: svd(singular_values, out_axis=l["out_axis"]), in_ax, oax, (), conv_transpose)
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    rows, cols = spec.matrix_dims(shape, oax)
    values = spec.svd_values(singular_values, rows, cols, "svd_")
    work = tensor if tensor.dtype.itemsize >= 4 else torch.empty(0, dtype=torch.float32, device=tensor.device)
    if isinstance(values, float):
        q = _haar(rows, cols, work, generator)
        q.mul_(values)  # orthogonal_ multiplies after the copy: the same float op for float32/64
    else:
        u = _haar(rows, cols, work, generator)
        k = min(rows, cols)
        v = _haar(k, k, work, generator)
        s = torch.tensor(values, dtype=u.dtype, device=u.device)
        q = ((u @ v) * s) @ v.T
    if rows < cols:
        q.t_()
    rest = tuple(d for i, d in enumerate(shape) if i != oax)
    q = q.reshape((rows,) + rest).movedim(0, oax)
    with torch.no_grad():
        tensor.copy_(q)
    return tensor


def orthogonal_(tensor: Tensor, gain: float = 1, generator: torch.Generator | None = None, *, out_axis=0,
                key=None, conv_transpose: bool = False) -> Tensor:
    """A (semi-)orthogonal matrix times ``gain``; bitwise ``torch.nn.init.orthogonal_``
    (and works for 16-bit tensors by computing in float32)."""
    if isinstance(gain, bool) or not isinstance(gain, numbers.Real):
        raise InitError(f"orthogonal_: `gain` must be a real number, got {gain!r}")
    _float_tensor(tensor, "orthogonal_")
    spec.check_orthogonal(tuple(tensor.shape), "orthogonal_")
    if key is not None:
        oax = _single_axis(out_axis, "out_axis", tensor.ndim, "orthogonal_")
        return _keyed_inplace(tensor, key, generator, "orthogonal_",
                              lambda **l: orthogonal(gain, out_axis=l["out_axis"]), 1 if oax == 0 else 0, oax, (),
                              conv_transpose)
    return svd_(tensor, gain, generator, out_axis=out_axis)


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator: torch.Generator | None = None, *,
            out_axis=0, key=None) -> Tensor:
    """N(0, std^2) with ``ceil(sparsity * rows)`` zeros per column; as
    ``torch.nn.init.sparse_``, bitwise under the same ``torch.manual_seed``.

    Differences, on purpose: ``generator`` also drives the zero pattern
    (PyTorch draws it from the global RNG whatever ``generator`` is), and a
    ``sparsity`` outside [0, 1] is an error, not silently clamped.
    """
    _float_tensor(tensor, "sparse_")
    shape = tuple(tensor.shape)
    spec.check_sparse(shape, sparsity, std, "sparse_")
    oax = _single_axis(out_axis, "out_axis", 2, "sparse_")
    if key is not None:
        return _keyed_inplace(tensor, key, generator, "sparse_",
                              lambda **l: sparse(sparsity, std, out_axis=l["out_axis"]), 1 - oax, oax)
    if tensor.is_meta:
        return tensor
    view = tensor if oax == 0 else tensor.t()
    rows, cols = view.shape
    num_zeros = spec.check_sparse((rows, cols), sparsity, std, "sparse_")
    with torch.no_grad():
        view.normal_(0, std, generator=generator)
        for col_idx in range(cols):
            row_indices = torch.randperm(rows, generator=generator) if generator is not None else torch.randperm(rows)
            view[row_indices[:num_zeros], col_idx] = 0
    return tensor


def variance_scaling_(tensor: Tensor, scale: float, mode: str, distribution: str,
                      generator: torch.Generator | None = None, *, in_axis=1, out_axis=0, batch_axis=(),
                      key=None, conv_transpose: bool = False) -> Tensor:
    """JAX's ``variance_scaling`` in place on a torch-layout tensor (see
    :func:`jaxinit.variance_scaling`): 'uniform' U(+-sqrt(3 var)), 'normal'
    N(0, var), 'truncated_normal' cut at +-2 std with the 0.8796 correction."""
    _float_tensor(tensor, "variance_scaling_")
    if key is not None:
        spec.check_vs(scale, mode, distribution, "variance_scaling_")
        return _keyed_inplace(tensor, key, generator, "variance_scaling_",
                              lambda **l: variance_scaling(scale, mode, distribution, **l),
                              in_axis, out_axis, batch_axis, conv_transpose)
    variance = spec.variance_scaling_variance(tuple(tensor.shape), scale, mode, distribution,
                                              _layout(in_axis, out_axis, batch_axis), "variance_scaling_")
    with torch.no_grad():
        if distribution == "uniform":
            bound = math.sqrt(3 * variance)
            return tensor.uniform_(-bound, bound, generator=generator)
        if distribution == "normal":
            return tensor.normal_(0.0, math.sqrt(variance), generator=generator)
    std = math.sqrt(variance) / spec.TRUNC_STD_2
    return _trunc_normal_impl(tensor, 0.0, std, -2.0 * std, 2.0 * std, generator)


def _vs_preset_(name, scale, mode, distribution, doc):
    def inplace(tensor: Tensor, generator: torch.Generator | None = None, *, in_axis=1, out_axis=0, batch_axis=(),
                key=None, conv_transpose: bool = False) -> Tensor:
        if key is not None:
            _float_tensor(tensor, name + "_")
            return _keyed_inplace(tensor, key, generator, name + "_", lambda **l: _FACTORIES[name](**l),
                                  in_axis, out_axis, batch_axis, conv_transpose)
        return variance_scaling_(tensor, scale, mode, distribution, generator,
                                 in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)

    inplace.__name__ = inplace.__qualname__ = name + "_"
    inplace.__doc__ = doc
    return inplace


glorot_uniform_ = _vs_preset_("glorot_uniform", 1.0, "fan_avg", "uniform", "JAX's glorot_uniform in place (= xavier_uniform_ in distribution).")
glorot_normal_ = _vs_preset_("glorot_normal", 1.0, "fan_avg", "truncated_normal", "JAX's glorot_normal in place: TRUNCATED, unlike xavier_normal_.")
lecun_uniform_ = _vs_preset_("lecun_uniform", 1.0, "fan_in", "uniform", "JAX's lecun_uniform in place.")
lecun_normal_ = _vs_preset_("lecun_normal", 1.0, "fan_in", "truncated_normal", "JAX's lecun_normal (Flax's default kernel init) in place: TRUNCATED.")
he_uniform_ = _vs_preset_("he_uniform", 2.0, "fan_in", "uniform", "JAX's he_uniform in place (= kaiming_uniform_(nonlinearity='relu') in distribution).")
he_normal_ = _vs_preset_("he_normal", 2.0, "fan_in", "truncated_normal", "JAX's he_normal in place: TRUNCATED, unlike kaiming_normal_.")


def truncated_normal_(tensor: Tensor, stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0,
                      generator: torch.Generator | None = None, *, key=None, conv_transpose: bool = False) -> Tensor:
    """JAX's ``truncated_normal`` in place: bounds in STD units (``trunc_normal_`` takes absolute ones)."""
    spec.check_trunc_normal(0.0, stddev, lower, upper, "truncated_normal_")
    _float_tensor(tensor, "truncated_normal_")
    if key is not None:
        return _keyed_inplace(tensor, key, generator, "truncated_normal_",
                              lambda **_: truncated_normal(stddev, lower, upper), conv_transpose=conv_transpose)
    return _trunc_normal_impl(tensor, 0.0, stddev, lower * stddev, upper * stddev, generator)


# --------------------------------------------------------------------------- factories
class Initializer(InitializerBase):
    """A configured initializer: ``init(key, shape, dtype=torch.float32, device=None)``.

    ``key`` is an int seed (a fresh ``torch.Generator`` seeded with it on
    ``device``), a ``torch.Generator``, or a JAX-style key
    (``torchinit.random.key(0)``, a ``jax.random.key``, a uint32[2] array or
    tensor): then the result is jaxinit's draw from that key, bit for bit (see
    ``torchinit._src.keyed`` and the README contract). An int is always a
    torch seed. 16-bit dtypes are sampled in float32 and cast, as in jaxinit.
    """

    __slots__ = ()
    _package = "torchinit"

    def __call__(self, key, shape: Sequence[int], dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        shape = spec.check_shape(shape, self.name)
        if not isinstance(dtype, torch.dtype):
            raise InitError(f"{self.name}: `dtype` must be a torch.dtype, got {dtype!r}")
        if self.name not in _DETERMINISTIC_NAMES and _rnd.is_key(key):
            # A JAX key: jaxinit's draw, bit for bit (see torchinit._src.keyed).
            return _keyed.keyed_init(self.name, self.args, _rnd.as_key(key), shape, dtype, device)
        generator = _generator(key, device, self.name)
        work = torch.float32 if dtype.is_floating_point and dtype.itemsize < 4 else dtype
        tensor = torch.empty(shape, dtype=work, device=device)
        return self._impl(tensor, generator).to(dtype)


def _generator(key, device, who: str) -> torch.Generator:
    if isinstance(key, torch.Generator):
        return key
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return torch.Generator(device=device if device is not None else "cpu").manual_seed(int(key))
    if _rnd.is_key(key):  # deterministic initializers ignore the key
        return None
    raise InitError(
        f"{who}: `key` must be an int seed or a torch.Generator (torch's RNG), or a JAX-style key "
        f"(torchinit.random.key(0), a jax.random.key, or a uint32[2] array/tensor), got {type(key).__name__}; "
        "e.g. init(0, shape), init(torch.Generator().manual_seed(0), shape) or init(torchinit.random.key(0), shape)."
    )


_DETERMINISTIC = (constant_, zeros_, ones_, eye_, dirac_)
_DETERMINISTIC_NAMES = ("constant", "zeros", "ones", "eye", "dirac")


def _make(name: str, args: Mapping[str, Any], inplace: Callable[..., Tensor], **fixed) -> Initializer:
    """Factory plumbing: bind ``fixed`` (the factory's arguments) to an in-place function."""
    if inplace in _DETERMINISTIC:
        return Initializer(name, args, lambda t, g: inplace(t, **fixed))
    return Initializer(name, args, lambda t, g: inplace(t, generator=g, **fixed))


def uniform(a: float = 0.0, b: float = 1.0) -> Initializer:
    """U[a, b) (see :func:`jaxinit.uniform`)."""
    spec.check_uniform(a, b)
    return _make("uniform", {"a": a, "b": b}, uniform_, a=a, b=b)


def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """N(mean, std^2) (see :func:`jaxinit.normal`)."""
    spec.check_normal(mean, std)
    return _make("normal", {"mean": mean, "std": std}, normal_, mean=mean, std=std)


def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Initializer:
    """N(mean, std^2) truncated to the absolute bounds [a, b] (see :func:`jaxinit.trunc_normal`)."""
    spec.check_trunc_normal(mean, std, a, b)
    return _make("trunc_normal", {"mean": mean, "std": std, "a": a, "b": b}, trunc_normal_, mean=mean, std=std, a=a, b=b)


def constant(val) -> Initializer:
    """Fill with ``val`` (see :func:`jaxinit.constant`)."""
    spec.check_constant(val)
    return _make("constant", {"val": val}, constant_, val=val)


def zeros() -> Initializer:
    """Fill with 0."""
    return _make("zeros", {}, zeros_)


def ones() -> Initializer:
    """Fill with 1."""
    return _make("ones", {}, ones_)


def eye() -> Initializer:
    """The 2-D identity."""
    return _make("eye", {}, eye_)


def dirac(groups: int = 1, *, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """Identity conv kernel, Flax conv layout (*k, in/groups, out) by default (see :func:`jaxinit.dirac`)."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise InitError(f"dirac: `groups` must be a positive int, got {groups!r}")
    spec.check_no_batch_axis(batch_axis, "dirac")
    return _make("dirac", {"groups": groups, "in_axis": in_axis, "out_axis": out_axis}, dirac_,
                 groups=groups, in_axis=in_axis, out_axis=out_axis)


def xavier_uniform(gain: float = 1.0, *, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.xavier_uniform` (Flax layout by default)."""
    lay = _layout(in_axis, out_axis, batch_axis)
    return _make("xavier_uniform", {"gain": gain, **lay}, xavier_uniform_, gain=gain, **lay)


def xavier_normal(gain: float = 1.0, *, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.xavier_normal` (Flax layout by default)."""
    lay = _layout(in_axis, out_axis, batch_axis)
    return _make("xavier_normal", {"gain": gain, **lay}, xavier_normal_, gain=gain, **lay)


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                    in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.kaiming_uniform` (Flax layout by default)."""
    spec.check_mode(mode, "kaiming_uniform")
    calculate_gain(nonlinearity, a)
    lay = _layout(in_axis, out_axis, batch_axis)
    return _make("kaiming_uniform", {"a": a, "mode": mode, "nonlinearity": nonlinearity, **lay}, kaiming_uniform_,
                 a=a, mode=mode, nonlinearity=nonlinearity, **lay)


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                   in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.kaiming_normal` (Flax layout by default)."""
    spec.check_mode(mode, "kaiming_normal")
    calculate_gain(nonlinearity, a)
    lay = _layout(in_axis, out_axis, batch_axis)
    return _make("kaiming_normal", {"a": a, "mode": mode, "nonlinearity": nonlinearity, **lay}, kaiming_normal_,
                 a=a, mode=mode, nonlinearity=nonlinearity, **lay)


def svd(singular_values=1.0, *, out_axis=-1) -> Initializer:
    """See :func:`jaxinit.svd` (out axis last by default, as Flax)."""
    spec.check_singular_values(singular_values)
    return _make("svd", {"singular_values": singular_values, "out_axis": out_axis}, svd_,
                 singular_values=singular_values, out_axis=out_axis)


def orthogonal(gain: float = 1.0, *, out_axis=-1) -> Initializer:
    """See :func:`jaxinit.orthogonal` (out axis last by default, as Flax)."""
    if isinstance(gain, bool) or not isinstance(gain, numbers.Real):
        raise InitError(f"orthogonal: `gain` must be a real number, got {gain!r}")
    return _make("orthogonal", {"gain": gain, "out_axis": out_axis}, orthogonal_, gain=gain, out_axis=out_axis)


def sparse(sparsity: float, std: float = 0.01, *, out_axis=-1) -> Initializer:
    """See :func:`jaxinit.sparse` (out axis last by default, as Flax)."""
    spec.check_sparse((1, 1), sparsity, std)
    return _make("sparse", {"sparsity": sparsity, "std": std, "out_axis": out_axis}, sparse_,
                 sparsity=sparsity, std=std, out_axis=out_axis)


def variance_scaling(scale: float, mode: str, distribution: str, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.variance_scaling` (Flax layout by default)."""
    spec.check_vs(scale, mode, distribution)
    lay = _layout(in_axis, out_axis, batch_axis)
    return _make("variance_scaling", {"scale": scale, "mode": mode, "distribution": distribution, **lay},
                 variance_scaling_, scale=scale, mode=mode, distribution=distribution, **lay)


def _vs_preset(name, inplace):
    def factory(*, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
        lay = _layout(in_axis, out_axis, batch_axis)
        return _make(name, lay, inplace, **lay)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"See :func:`jaxinit.{name}` (Flax layout by default). " + (inplace.__doc__ or "")
    return factory


glorot_uniform = _vs_preset("glorot_uniform", glorot_uniform_)
glorot_normal = _vs_preset("glorot_normal", glorot_normal_)
lecun_uniform = _vs_preset("lecun_uniform", lecun_uniform_)
lecun_normal = _vs_preset("lecun_normal", lecun_normal_)
he_uniform = _vs_preset("he_uniform", he_uniform_)
he_normal = _vs_preset("he_normal", he_normal_)


def truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> Initializer:
    """See :func:`jaxinit.truncated_normal` (bounds in std units)."""
    spec.check_trunc_normal(0.0, stddev, lower, upper, "truncated_normal")
    return _make("truncated_normal", {"stddev": stddev, "lower": lower, "upper": upper}, truncated_normal_,
                 stddev=stddev, lower=lower, upper=upper)


_FACTORIES = {
    f.__name__: f
    for f in (uniform, normal, trunc_normal, constant, zeros, ones, eye, dirac, xavier_uniform,
              xavier_normal, kaiming_uniform, kaiming_normal, orthogonal, sparse, svd,
              variance_scaling, glorot_uniform, glorot_normal, lecun_uniform, lecun_normal,
              he_uniform, he_normal, truncated_normal)
}
Initializer._factories = _FACTORIES
