"""Weight initializers for PyTorch: the mirror of :mod:`jaxinit`.

Two forms of every initializer:

- In-place drop-ins ``name_(tensor, ..., generator=None)`` on PyTorch-layout
  tensors (``TORCH_LAYOUT``: in_axis=1, out_axis=0). Under the same
  ``torch.manual_seed`` they give bitwise the tensors ``torch.nn.init``
  gives; the extras (``svd_``, the JAX/Flax names) follow the same style.
- Factories ``name(...)`` with the same names, arguments and meanings as
  jaxinit, returning ``init(key, shape, dtype=torch.float32, device=None)``;
  ``key`` is an int seed or a ``torch.Generator`` (then ``init(g, shape)`` is
  ``name_(torch.empty(shape), ..., generator=g)``) or a JAX-style key (then the
  values are jaxinit's draw for the Flax twin of ``shape``, permuted back).
  16-bit dtypes are sampled in float32 before casting.

The layout rule, in one sentence: torchinit reads every shape in torch's
layout, (out, in, *k), unless you pass ``in_axis``/``out_axis``, and a JAX key
gives jaxinit's draw for the Flax twin (*k, in, out) of that shape permuted
back, exactly as the in-place ``name_(tensor, key=k)``.

This package never imports jax.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Callable, Mapping, Sequence

import torch

from _jaxinit import init_params
from _jaxinit.errors import InitError
from _jaxinit.fans import single_axis
from _jaxinit.fans import compute_fans as _compute_fans
from _jaxinit.initializer import factory
from _jaxinit.gain import calculate_gain
from torchinit._src import keyed as _keyed
from torchinit._src.initializer_object import Initializer as Initializer
from torchinit._src.initializer_object import any_tensor, float_tensor, keyed_inplace, layout_args

Tensor = torch.Tensor
_factory = factory("torchinit")


def compute_fans(shape: Sequence[int], in_axis=1, out_axis=0, batch_axis=(), *, who: str = "initializer"):
    """``(fan_in, fan_out)`` of ``shape``, read in torch's layout (out, in, *k) by default:
    ``torch.nn.init._calculate_fan_in_and_fan_out``'s numbers. Other layouts by
    arguments, as :func:`jaxinit.compute_fans` (whose default is the Flax kernel layout).

    >>> compute_fans((256, 512))
    (512, 256)
    """
    return _compute_fans(shape, in_axis, out_axis, batch_axis, who=who)


# --------------------------------------------------------------------------- in-place
def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None, *,
             key=None, conv_transpose: bool = False) -> Tensor:
    """U[a, b) in place; bitwise ``torch.nn.init.uniform_``. With ``key=`` (a JAX key):
    jaxinit's ``uniform(a, b)`` draw for the Flax twin, permuted (see :func:`keyed_inplace`)."""
    init_params.check_uniform(a, b, "uniform_")
    float_tensor(tensor, "uniform_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "uniform_", uniform(a, b), conv_transpose)
    with torch.no_grad():
        return tensor.uniform_(a, b, generator=generator)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None, *,
            key=None, conv_transpose: bool = False) -> Tensor:
    """N(mean, std^2) in place; bitwise ``torch.nn.init.normal_`` (``key=``: jaxinit's draw, permuted)."""
    init_params.check_normal(mean, std, "normal_")
    float_tensor(tensor, "normal_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "normal_", normal(mean, std), conv_transpose)
    with torch.no_grad():
        return tensor.normal_(mean, std, generator=generator)


def _trunc_normal_impl(tensor, mean, std, a, b, generator, stacklevel=3):
    """PyTorch 2.13's two rejection samplers, op for op (pytorch#174997)."""
    method, log_peak, warn = init_params.trunc_normal_plan(mean, std, a, b)
    if warn:
        warnings.warn(init_params.TRUNC_NORMAL_WARNING, stacklevel=stacklevel)
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
    init_params.check_trunc_normal(mean, std, a, b, "trunc_normal_")
    float_tensor(tensor, "trunc_normal_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "trunc_normal_", trunc_normal(mean, std, a, b),
                              conv_transpose)
    return _trunc_normal_impl(tensor, mean, std, a, b, generator)


def constant_(tensor: Tensor, val) -> Tensor:
    """Fill with ``val``; as ``torch.nn.init.constant_``."""
    init_params.check_constant(val, "constant_")
    any_tensor(tensor, "constant_")
    with torch.no_grad():
        return tensor.fill_(val)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0; as ``torch.nn.init.zeros_``."""
    any_tensor(tensor, "zeros_")
    with torch.no_grad():
        return tensor.zero_()


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1; as ``torch.nn.init.ones_``."""
    any_tensor(tensor, "ones_")
    with torch.no_grad():
        return tensor.fill_(1.0)


def eye_(tensor: Tensor) -> Tensor:
    """The 2-D identity; as ``torch.nn.init.eye_``."""
    any_tensor(tensor, "eye_")
    init_params.check_eye(tuple(tensor.shape), "eye_")
    with torch.no_grad():
        torch.eye(*tensor.shape, out=tensor, requires_grad=tensor.requires_grad)
    return tensor


def dirac_(tensor: Tensor, groups: int = 1, *, in_axis=1, out_axis=0, batch_axis=()) -> Tensor:
    """Identity-preserving conv kernel (1 at the spatial centre ``k // 2``); as
    ``torch.nn.init.dirac_``. ``in_axis``/``out_axis`` name the channel axes."""
    any_tensor(tensor, "dirac_")
    init_params.check_no_batch_axis(batch_axis, "dirac_")
    index = init_params.dirac_plan(tuple(tensor.shape), groups, {"in_axis": in_axis, "out_axis": out_axis}, "dirac_")
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
    init_params.check_gain(gain, "xavier_uniform_")
    float_tensor(tensor, "xavier_uniform_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "xavier_uniform_",
                              xavier_uniform(gain, **layout_args(in_axis, out_axis, batch_axis)), conv_transpose)
    bound = init_params.xavier_uniform_bound(tuple(tensor.shape), gain, layout_args(in_axis, out_axis, batch_axis), "xavier_uniform_")
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: torch.Generator | None = None, *,
                   in_axis=1, out_axis=0, batch_axis=(), key=None, conv_transpose: bool = False) -> Tensor:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)), plain normal; bitwise
    ``torch.nn.init.xavier_normal_``."""
    init_params.check_gain(gain, "xavier_normal_")
    float_tensor(tensor, "xavier_normal_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "xavier_normal_",
                              xavier_normal(gain, **layout_args(in_axis, out_axis, batch_axis)), conv_transpose)
    std = init_params.xavier_std(tuple(tensor.shape), gain, layout_args(in_axis, out_axis, batch_axis), "xavier_normal_")
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def _kaiming(tensor, a, mode, nonlinearity, generator, layout, distribution, who, key=None, conv_transpose=False):
    init_params.check_mode(mode, who)
    calculate_gain(nonlinearity, a)
    float_tensor(tensor, who)
    if key is not None and 0 not in tensor.shape:
        factory = kaiming_uniform if distribution == "uniform" else kaiming_normal
        return keyed_inplace(tensor, key, generator, who, factory(a, mode, nonlinearity, **layout), conv_transpose)
    if 0 in tensor.shape:
        warnings.warn(init_params.ZERO_ELEMENT_WARNING, stacklevel=3)
        return tensor
    std = init_params.kaiming_std(tuple(tensor.shape), a, mode, nonlinearity, layout, who)
    with torch.no_grad():
        if distribution == "uniform":
            bound = math.sqrt(3.0) * std
            return tensor.uniform_(-bound, bound, generator=generator)
        return tensor.normal_(0, std, generator=generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None, *, in_axis=1, out_axis=0, batch_axis=(),
                     key=None, conv_transpose: bool = False) -> Tensor:
    """U(-b, b), b = gain * sqrt(3 / fan_mode); bitwise ``torch.nn.init.kaiming_uniform_``."""
    return _kaiming(tensor, a, mode, nonlinearity, generator, layout_args(in_axis, out_axis, batch_axis), "uniform",
                    "kaiming_uniform_", key, conv_transpose)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None, *, in_axis=1, out_axis=0, batch_axis=(),
                    key=None, conv_transpose: bool = False) -> Tensor:
    """N(0, std^2), std = gain / sqrt(fan_mode), plain normal; bitwise ``torch.nn.init.kaiming_normal_``."""
    return _kaiming(tensor, a, mode, nonlinearity, generator, layout_args(in_axis, out_axis, batch_axis), "normal",
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
    float_tensor(tensor, "svd_")
    init_params.check_singular_values(singular_values, "svd_")
    shape = tuple(tensor.shape)
    init_params.check_orthogonal(shape, "svd_")
    oax = single_axis(out_axis, "out_axis", len(shape), "svd_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "svd_", svd(singular_values, out_axis=out_axis), conv_transpose)
    if tensor.numel() == 0 or tensor.is_meta:
        return tensor
    rows, cols = init_params.matrix_dims(shape, oax)
    values = init_params.svd_values(singular_values, rows, cols, "svd_")
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
    float_tensor(tensor, "orthogonal_")
    init_params.check_orthogonal(tuple(tensor.shape), "orthogonal_")
    if key is not None:
        single_axis(out_axis, "out_axis", tensor.ndim, "orthogonal_")
        return keyed_inplace(tensor, key, generator, "orthogonal_", orthogonal(gain, out_axis=out_axis), conv_transpose)
    return svd_(tensor, gain, generator, out_axis=out_axis)


def sparse_(tensor: Tensor, sparsity: float, std: float = 0.01, generator: torch.Generator | None = None, *,
            out_axis=0, key=None) -> Tensor:
    """N(0, std^2) with ``ceil(sparsity * rows)`` zeros per column; as
    ``torch.nn.init.sparse_``, bitwise under the same ``torch.manual_seed``.

    Differences, on purpose: ``generator`` also drives the zero pattern
    (PyTorch draws it from the global RNG whatever ``generator`` is), and a
    ``sparsity`` outside [0, 1] is an error, not silently clamped.
    """
    float_tensor(tensor, "sparse_")
    shape = tuple(tensor.shape)
    init_params.check_sparse(shape, sparsity, std, "sparse_")
    oax = single_axis(out_axis, "out_axis", 2, "sparse_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "sparse_", sparse(sparsity, std, out_axis=out_axis))
    if tensor.is_meta:
        return tensor
    view = tensor if oax == 0 else tensor.t()
    rows, cols = view.shape
    num_zeros = init_params.check_sparse((rows, cols), sparsity, std, "sparse_")
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
    float_tensor(tensor, "variance_scaling_")
    if key is not None:
        init_params.check_vs(scale, mode, distribution, "variance_scaling_")
        return keyed_inplace(tensor, key, generator, "variance_scaling_",
                              variance_scaling(scale, mode, distribution, in_axis, out_axis, batch_axis), conv_transpose)
    variance = init_params.variance_scaling_variance(tuple(tensor.shape), scale, mode, distribution,
                                              layout_args(in_axis, out_axis, batch_axis), "variance_scaling_")
    with torch.no_grad():
        if distribution == "uniform":
            bound = math.sqrt(3 * variance)
            return tensor.uniform_(-bound, bound, generator=generator)
        if distribution == "normal":
            return tensor.normal_(0.0, math.sqrt(variance), generator=generator)
    std = math.sqrt(variance) / init_params.TRUNC_STD_2
    return _trunc_normal_impl(tensor, 0.0, std, -2.0 * std, 2.0 * std, generator)


def _vs_preset_(name):
    """``variance_scaling_`` with a JAX preset's (scale, mode, distribution) (``_jaxinit.init_params.VS_PRESETS``)."""
    (scale, mode, distribution), doc = init_params.VS_PRESETS[name]

    def inplace(tensor: Tensor, generator: torch.Generator | None = None, *, in_axis=1, out_axis=0, batch_axis=(),
                key=None, conv_transpose: bool = False) -> Tensor:
        if key is not None:
            float_tensor(tensor, name + "_")
            return keyed_inplace(tensor, key, generator, name + "_",
                                  _FACTORIES[name](in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis),
                                  conv_transpose)
        return variance_scaling_(tensor, scale, mode, distribution, generator,
                                 in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)

    inplace.__name__ = inplace.__qualname__ = name + "_"
    inplace.__doc__ = doc.replace("JAX's " + name, "JAX's " + name + " in place", 1)
    return inplace


glorot_uniform_ = _vs_preset_("glorot_uniform")
glorot_normal_ = _vs_preset_("glorot_normal")
lecun_uniform_ = _vs_preset_("lecun_uniform")
lecun_normal_ = _vs_preset_("lecun_normal")
he_uniform_ = _vs_preset_("he_uniform")
he_normal_ = _vs_preset_("he_normal")

def truncated_normal_(tensor: Tensor, stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0,
                      generator: torch.Generator | None = None, *, key=None, conv_transpose: bool = False) -> Tensor:
    """JAX's ``truncated_normal`` in place: bounds in STD units (``trunc_normal_`` takes absolute ones)."""
    init_params.check_trunc_normal(0.0, stddev, lower, upper, "truncated_normal_")
    float_tensor(tensor, "truncated_normal_")
    if key is not None:
        return keyed_inplace(tensor, key, generator, "truncated_normal_", truncated_normal(stddev, lower, upper),
                              conv_transpose)
    return _trunc_normal_impl(tensor, 0.0, stddev, lower * stddev, upper * stddev, generator)


_DETERMINISTIC = (constant_, zeros_, ones_, eye_, dirac_)


def _make(name: str, args: Mapping[str, Any], inplace: Callable[..., Tensor], *,
          keyed: Callable[..., Tensor] | None, **fixed) -> Initializer:
    """Factory plumbing: bind ``fixed`` (the factory's arguments) to an in-place function.

    ``keyed`` is the factory's JAX-key sampler (``torchinit._src.keyed``); every
    factory states it, ``None`` only for the deterministic ones.
    """
    if inplace in _DETERMINISTIC:
        if keyed is not None:
            raise AssertionError(f"{name}: a deterministic initializer has no keyed sampler")
        return Initializer(name, args, lambda t, g: inplace(t, **fixed), None)
    if keyed is None:
        raise AssertionError(f"{name}: a random initializer needs its keyed sampler")
    return Initializer(name, args, lambda t, g: inplace(t, generator=g, **fixed), keyed)


@_factory
def uniform(a: float = 0.0, b: float = 1.0) -> Initializer:
    """U[a, b) (see :func:`jaxinit.uniform`)."""
    init_params.check_uniform(a, b)
    return _make("uniform", {"a": a, "b": b}, uniform_, a=a, b=b, keyed=_keyed.uniform_sampler(a, b, "uniform"))


@_factory
def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """N(mean, std^2) (see :func:`jaxinit.normal`)."""
    init_params.check_normal(mean, std)
    return _make("normal", {"mean": mean, "std": std}, normal_, mean=mean, std=std,
                 keyed=_keyed.normal_sampler(mean, std, "normal"))


@_factory
def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Initializer:
    """N(mean, std^2) truncated to the absolute bounds [a, b] (see :func:`jaxinit.trunc_normal`)."""
    init_params.check_trunc_normal(mean, std, a, b)
    return _make("trunc_normal", {"mean": mean, "std": std, "a": a, "b": b}, trunc_normal_, mean=mean, std=std, a=a,
                 b=b, keyed=_keyed.trunc_normal_sampler(mean, std, a, b, "trunc_normal"))


@_factory
def constant(val) -> Initializer:
    """Fill with ``val`` (see :func:`jaxinit.constant`)."""
    init_params.check_constant(val)
    return _make("constant", {"val": val}, constant_, val=val, keyed=None)


@_factory
def zeros() -> Initializer:
    """Fill with 0."""
    return _make("zeros", {}, zeros_, keyed=None)


@_factory
def ones() -> Initializer:
    """Fill with 1."""
    return _make("ones", {}, ones_, keyed=None)


@_factory
def eye() -> Initializer:
    """The 2-D identity of the (out, in) shape, as ``torch.nn.init.eye_`` (jaxinit's
    ``eye`` of the Flax (in, out) kernel is its transpose)."""
    return _make("eye", {}, eye_, keyed=None)


@_factory
def dirac(groups: int = 1, *, in_axis=1, out_axis=0, batch_axis=()) -> Initializer:
    """Identity conv kernel, torch layout (out, in/groups, *k) by default (see :func:`jaxinit.dirac`)."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise InitError(f"dirac: `groups` must be a positive int, got {groups!r}")
    init_params.check_no_batch_axis(batch_axis, "dirac")
    layout_args(in_axis, out_axis, (), "dirac")
    return _make("dirac", {"groups": groups, "in_axis": in_axis, "out_axis": out_axis}, dirac_,
                 groups=groups, in_axis=in_axis, out_axis=out_axis, keyed=None)


# The presets below share one shape (check, layout, _make with a keyed sampler) by design: each is a
# named public factory with its own signature and docstring, as torch.nn.init's are; the maths is in _jaxinit.init_params.
@_factory
def xavier_uniform(gain: float = 1.0, *, in_axis=1, out_axis=0, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.xavier_uniform` (torch layout by default)."""
    init_params.check_gain(gain, "xavier_uniform")
    lay = layout_args(in_axis, out_axis, batch_axis, "xavier_uniform")
    return _make("xavier_uniform", {"gain": gain, **lay}, xavier_uniform_, gain=gain, **lay,
                 keyed=_keyed.fan_sampler("xavier_uniform", "uniform",
                                          lambda s, l: init_params.xavier_uniform_bound(s, gain, l, "xavier_uniform")))


@_factory
def xavier_normal(gain: float = 1.0, *, in_axis=1, out_axis=0, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.xavier_normal` (torch layout by default)."""
    init_params.check_gain(gain, "xavier_normal")
    lay = layout_args(in_axis, out_axis, batch_axis, "xavier_normal")
    return _make("xavier_normal", {"gain": gain, **lay}, xavier_normal_, gain=gain, **lay,
                 keyed=_keyed.fan_sampler("xavier_normal", "normal",
                                          lambda s, l: init_params.xavier_std(s, gain, l, "xavier_normal")))


@_factory
def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                    in_axis=1, out_axis=0, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.kaiming_uniform` (torch layout by default)."""
    init_params.check_mode(mode, "kaiming_uniform")
    calculate_gain(nonlinearity, a)
    lay = layout_args(in_axis, out_axis, batch_axis, "kaiming_uniform")
    return _make("kaiming_uniform", {"a": a, "mode": mode, "nonlinearity": nonlinearity, **lay}, kaiming_uniform_,
                 a=a, mode=mode, nonlinearity=nonlinearity, **lay,
                 keyed=_keyed.fan_sampler("kaiming_uniform", "uniform", lambda s, l: init_params.kaiming_uniform_bound(
                     s, a, mode, nonlinearity, l, "kaiming_uniform")))


@_factory
def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                   in_axis=1, out_axis=0, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.kaiming_normal` (torch layout by default)."""
    init_params.check_mode(mode, "kaiming_normal")
    calculate_gain(nonlinearity, a)
    lay = layout_args(in_axis, out_axis, batch_axis, "kaiming_normal")
    return _make("kaiming_normal", {"a": a, "mode": mode, "nonlinearity": nonlinearity, **lay}, kaiming_normal_,
                 a=a, mode=mode, nonlinearity=nonlinearity, **lay,
                 keyed=_keyed.fan_sampler("kaiming_normal", "normal", lambda s, l: init_params.kaiming_std(
                     s, a, mode, nonlinearity, l, "kaiming_normal")))


@factory("torchinit", min_ndim=2)
def svd(singular_values=1.0, *, out_axis=0) -> Initializer:
    """See :func:`jaxinit.svd` (torch layout: out axis first by default)."""
    init_params.check_singular_values(singular_values)
    single_axis(out_axis, "out_axis", None, "svd")
    return _make("svd", {"singular_values": singular_values, "out_axis": out_axis}, svd_,
                 singular_values=singular_values, out_axis=out_axis,
                 keyed=_keyed.svd_sampler(singular_values, "svd"))


@_factory
def orthogonal(gain: float = 1.0, *, out_axis=0) -> Initializer:
    """See :func:`jaxinit.orthogonal` (torch layout: out axis first by default)."""
    init_params.check_orthogonal_gain(gain, "orthogonal")
    single_axis(out_axis, "out_axis", None, "orthogonal")
    return _make("orthogonal", {"gain": gain, "out_axis": out_axis}, orthogonal_, gain=gain, out_axis=out_axis,
                 keyed=_keyed.svd_sampler(float(gain), "orthogonal"))


@_factory
def sparse(sparsity: float, std: float = 0.01, *, out_axis=0) -> Initializer:
    """See :func:`jaxinit.sparse` (torch layout (out, in) by default)."""
    init_params.check_sparse((1, 1), sparsity, std)
    single_axis(out_axis, "out_axis", 2, "sparse")
    return _make("sparse", {"sparsity": sparsity, "std": std, "out_axis": out_axis}, sparse_,
                 sparsity=sparsity, std=std, out_axis=out_axis, keyed=_keyed.sparse_sampler(sparsity, std, "sparse"))


@_factory
def variance_scaling(scale: float, mode: str, distribution: str, in_axis=1, out_axis=0, batch_axis=()) -> Initializer:
    """See :func:`jaxinit.variance_scaling` (torch layout by default)."""
    init_params.check_vs(scale, mode, distribution)
    lay = layout_args(in_axis, out_axis, batch_axis, "variance_scaling")
    return _make("variance_scaling", {"scale": scale, "mode": mode, "distribution": distribution, **lay},
                 variance_scaling_, scale=scale, mode=mode, distribution=distribution, **lay,
                 keyed=_keyed.variance_scaling_sampler(scale, mode, distribution))


def _vs_preset(name, inplace):
    """JAX's preset ``partial(variance_scaling, scale, mode, distribution)`` (``_jaxinit.init_params.VS_PRESETS``)."""
    (scale, mode, distribution), doc = init_params.VS_PRESETS[name]

    def preset(*, in_axis=1, out_axis=0, batch_axis=()) -> Initializer:
        lay = layout_args(in_axis, out_axis, batch_axis, name)
        return _make(name, lay, inplace, **lay, keyed=_keyed.variance_scaling_sampler(scale, mode, distribution))

    preset.__name__ = preset.__qualname__ = name
    preset.__doc__ = f"See :func:`jaxinit.{name}` (torch layout by default). " + doc
    return _factory(preset)


# one assignment per public name (IDEs and help() see each); the values come from init_params.VS_PRESETS
glorot_uniform = _vs_preset("glorot_uniform", glorot_uniform_)
glorot_normal = _vs_preset("glorot_normal", glorot_normal_)
lecun_uniform = _vs_preset("lecun_uniform", lecun_uniform_)
lecun_normal = _vs_preset("lecun_normal", lecun_normal_)
he_uniform = _vs_preset("he_uniform", he_uniform_)
he_normal = _vs_preset("he_normal", he_normal_)


@_factory
def truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> Initializer:
    """See :func:`jaxinit.truncated_normal` (bounds in std units)."""
    init_params.check_trunc_normal(0.0, stddev, lower, upper, "truncated_normal")
    return _make("truncated_normal", {"stddev": stddev, "lower": lower, "upper": upper}, truncated_normal_,
                 stddev=stddev, lower=lower, upper=upper,
                 keyed=_keyed.trunc_normal_sampler(0.0, stddev, lower * stddev, upper * stddev, "truncated_normal"))


_FACTORIES = {
    f.__name__: f
    for f in (uniform, normal, trunc_normal, constant, zeros, ones, eye, dirac, xavier_uniform,
              xavier_normal, kaiming_uniform, kaiming_normal, orthogonal, sparse, svd,
              variance_scaling, glorot_uniform, glorot_normal, lecun_uniform, lecun_normal,
              he_uniform, he_normal, truncated_normal)
}
Initializer._factories = _FACTORIES
