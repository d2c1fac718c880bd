"""Argument checks and torch-exact distribution parameters for every initializer.

Each ``*_params`` function takes an initializer's arguments and the shape it is
asked for and returns the Python floats of the distribution to draw from,
computed with exactly the float operations ``torch.nn.init`` uses (so both
packages, and torch itself, round the same way). Each ``check_*`` function
raises :class:`InitError` naming the argument, the accepted values and the fix.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

from _jaxinit.errors import InitError
from _jaxinit.fans import compute_fans
from _jaxinit.gain import calculate_gain

FAN_MODES = ("fan_in", "fan_out")
VS_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
VS_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
# Standard deviation of N(0, 1) truncated to [-2, 2]; JAX's variance_scaling
# divides by it so that 'truncated_normal' keeps the requested variance.
TRUNC_STD_2 = 0.87962566103423978
# Truncated normals whose bounds lie within this many std of the mean use one
# inverse-CDF draw (float32 erf_inv is accurate there; jax#10951 is about far
# tails): rejection would redraw the whole array ~log(n)/log(1/q) times. Both
# packages read it here, so jaxinit and torchinit take the same branch.
ICDF_MAX_Z = 3.0

# JAX's one-line presets of ``variance_scaling`` (jax/_src/nn/initializers.py:
# ``glorot_uniform = partial(variance_scaling, 1.0, "fan_avg", "uniform")`` ...):
# name -> ((scale, mode, distribution), how it relates to torch.nn.init).
VS_PRESETS = {
    "glorot_uniform": ((1.0, "fan_avg", "uniform"),
                       "JAX's glorot_uniform: same distribution as PyTorch's xavier_uniform_ (gain 1)."),
    "glorot_normal": ((1.0, "fan_avg", "truncated_normal"),
                      "JAX's glorot_normal: TRUNCATED normal (+-2 std, variance kept); PyTorch's "
                      "xavier_normal_ is a plain normal."),
    "lecun_uniform": ((1.0, "fan_in", "uniform"),
                      "JAX's lecun_uniform: U(+-sqrt(3/fan_in)) = PyTorch's kaiming_uniform_(nonlinearity='linear')."),
    "lecun_normal": ((1.0, "fan_in", "truncated_normal"),
                     "JAX's lecun_normal (Flax's default kernel init): TRUNCATED normal, var 1/fan_in; "
                     "PyTorch's kaiming_normal_(nonlinearity='linear') is the plain-normal version."),
    "he_uniform": ((2.0, "fan_in", "uniform"),
                   "JAX's he_uniform: U(+-sqrt(6/fan_in)) = PyTorch's kaiming_uniform_(nonlinearity='relu')."),
    "he_normal": ((2.0, "fan_in", "truncated_normal"),
                  "JAX's he_normal: TRUNCATED normal, var 2/fan_in; PyTorch's "
                  "kaiming_normal_(nonlinearity='relu') is a plain normal."),
}


def _real(value, name: str, who: str) -> numbers.Real:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InitError(f"{who}: `{name}` must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise InitError(f"{who}: `{name}` must be finite, got {value!r}")
    return value


def check_gain(gain, who: str) -> float:
    """xavier's ``gain``: finite and >= 0 (torch's uniform_/normal_ reject the
    reversed bounds / negative std a negative gain produces)."""
    _real(gain, "gain", who)
    if gain < 0:
        raise InitError(
            f"{who}: `gain` must be >= 0, got {gain} (torch.nn.init rejects it too: the bound or std "
            "would be negative). Fix: pass abs(gain), e.g. calculate_gain('relu')."
        )
    return gain


def check_orthogonal_gain(gain, who: str) -> numbers.Real:
    """orthogonal's ``gain``: any finite real (a negative one flips the sign, as torch)."""
    return _real(gain, "gain", who)


def check_shape(shape, who: str) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise InitError(f"{who}: `shape` must be a sequence of ints, got {shape!r}") from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise InitError(
                f"{who}: `shape` must hold non-negative ints, got {shape!r}"
            )
    return tuple(int(d) for d in dims)


def check_uniform(a, b, who: str = "uniform") -> tuple[float, float]:
    _real(a, "a", who)
    _real(b, "b", who)
    if a > b:
        raise InitError(
            f"{who}: expects a <= b (samples lie in [a, b)), got a={a} > b={b}; swap them."
        )
    return a, b


def check_normal(mean, std, who: str = "normal") -> tuple[float, float]:
    _real(mean, "mean", who)
    _real(std, "std", who)
    if std < 0:
        raise InitError(f"{who}: `std` must be >= 0, got std={std}")
    return mean, std


def check_trunc_normal(mean, std, a, b, who: str = "trunc_normal"):
    """PyTorch semantics: ``a`` and ``b`` are ABSOLUTE bounds, not std units."""
    _real(mean, "mean", who)
    _real(std, "std", who)
    _real(a, "a", who)
    _real(b, "b", who)
    if std <= 0:
        raise InitError(f"{who}: `std` must be > 0, got std={std}")
    if a >= b:
        raise InitError(
            f"{who}: expects a < b (a and b are absolute bounds, as in torch.nn.init), "
            f"got a={a}, b={b}."
        )
    return mean, std, a, b


def trunc_normal_plan(mean: float, std: float, a: float, b: float) -> tuple[str, float, bool]:
    """Which of PyTorch 2.13's two rejection samplers ``trunc_normal_`` uses.

    Returns ``(method, log_peak, warn)``: ``'normal'`` (redraw N(mean, std)
    outside [a, b]) when the mass p of [a, b] exceeds 0.3, else ``'uniform'``
    (U[a, b) proposals accepted with probability pdf(x)/pdf(mode)); ``warn``
    is PyTorch's "mean is more than 2 std from [a, b]" condition.
    """

    def norm_cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    warn = (mean < a - 2 * std) or (mean > b + 2 * std)
    p = norm_cdf((b - mean) / std) - norm_cdf((a - mean) / std)
    mode = max(a, min(mean, b))
    log_peak = -0.5 * ((mode - mean) / std) ** 2
    return ("normal" if p > 0.3 else "uniform"), log_peak, warn


TRUNC_NORMAL_WARNING = (
    "mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
    "The distribution of values may be incorrect."
)
ZERO_ELEMENT_WARNING = "Initializing zero-element tensors is a no-op"


def check_mode(mode, who: str) -> str:
    if not isinstance(mode, str):
        raise InitError(f"{who}: `mode` must be one of {list(FAN_MODES)}, got {mode!r}")
    lowered = mode.lower()
    if lowered not in FAN_MODES:
        raise InitError(
            f"{who}: Mode {lowered} not supported, please use one of {list(FAN_MODES)}"
        )
    return lowered


def kaiming_std(shape, a, mode, nonlinearity, layout: dict, who: str) -> float:
    """``gain / sqrt(fan)`` with PyTorch's exact float operations."""
    mode = check_mode(mode, who)
    fan_in, fan_out = compute_fans(shape, **layout, who=who)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = calculate_gain(nonlinearity, a)
    if fan == 0:
        raise InitError(f"{who}: the {mode} of shape {tuple(shape)} is 0; nothing to scale by")
    return gain / math.sqrt(fan)


def kaiming_uniform_bound(shape, a, mode, nonlinearity, layout: dict, who: str) -> float:
    return math.sqrt(3.0) * kaiming_std(shape, a, mode, nonlinearity, layout, who)


def xavier_std(shape, gain, layout: dict, who: str) -> float:
    """``gain * sqrt(2 / (fan_in + fan_out))`` with PyTorch's exact float operations."""
    _real(gain, "gain", who)
    fan_in, fan_out = compute_fans(shape, **layout, who=who)
    if fan_in + fan_out == 0:
        raise InitError(
            f"{who}: fan_in + fan_out is 0 for shape {tuple(shape)} (PyTorch raises "
            "ZeroDivisionError here); give the kernel at least one input or output."
        )
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_bound(shape, gain, layout: dict, who: str) -> float:
    return math.sqrt(3.0) * xavier_std(shape, gain, layout, who)


def check_vs(scale, mode, distribution, who: str = "variance_scaling"):
    _real(scale, "scale", who)
    if scale < 0:
        raise InitError(f"{who}: `scale` must be >= 0, got {scale}")
    if mode not in VS_MODES:
        raise InitError(f"{who}: `mode` must be one of {list(VS_MODES)}, got {mode!r}")
    if distribution not in VS_DISTRIBUTIONS:
        raise InitError(
            f"{who}: `distribution` must be one of {list(VS_DISTRIBUTIONS)}, got {distribution!r}"
            " (PyTorch's kaiming_normal_/xavier_normal_ are 'normal', not 'truncated_normal')"
        )
    return scale, mode, distribution


def variance_scaling_variance(shape, scale, mode, distribution, layout: dict, who: str) -> float:
    """JAX's ``variance_scaling`` variance ``scale / n`` (n = fan_in, fan_out,
    fan_avg or fan_geo_avg), with JAX's own float operations. The samplers are
    'uniform': U[-1, 1) * sqrt(3 var); 'normal': N(0, 1) * sqrt(var);
    'truncated_normal': N(0, 1) cut at +-2, times sqrt(var) / :data:`TRUNC_STD_2`."""
    check_vs(scale, mode, distribution, who)
    fan_in, fan_out = compute_fans(shape, **layout, who=who)
    n = {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "fan_avg": (fan_in + fan_out) / 2,
        "fan_geo_avg": (fan_in * fan_out) ** 0.5,
    }[mode]
    if n == 0:
        raise InitError(f"{who}: {mode} of shape {tuple(shape)} is 0; nothing to scale by")
    return scale / n


def check_constant(val, who: str = "constant"):
    if isinstance(val, bool) or not isinstance(val, numbers.Number):
        raise InitError(f"{who}: `val` must be a number, got {val!r}")
    return val


def check_eye(shape, who: str = "eye"):
    if len(shape) != 2:
        raise InitError(
            f"{who}: Only tensors with 2 dimensions are supported (got shape {tuple(shape)}); "
            "use dirac for convolution kernels."
        )


def dirac_plan(shape, groups, layout: dict, who: str = "dirac"):
    """Index tuples (in the given layout) set to 1 by PyTorch's ``dirac_``.

    Each output channel ``g * out_per_group + d`` sees input ``d`` at the
    spatial centre ``k // 2`` of every spatial axis (JAX's delta_orthogonal
    uses ``(k - 1) // 2``; we follow PyTorch).
    """
    from _jaxinit.fans import normalize_layout

    if len(shape) not in (3, 4, 5):
        raise InitError(
            f"{who}: Only tensors with 3, 4, or 5 dimensions are supported, got shape {tuple(shape)}"
        )
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise InitError(f"{who}: `groups` must be a positive int, got {groups!r}")
    ins, outs, batch = normalize_layout(len(shape), layout["in_axis"], layout["out_axis"], (), who)
    if len(ins) != 1 or len(outs) != 1:
        raise InitError(f"{who}: in_axis and out_axis must each be a single axis")
    in_ax, out_ax = ins[0], outs[0]
    n_out, n_in = shape[out_ax], shape[in_ax]
    if n_out % groups != 0:
        raise InitError(
            f"{who}: dim 0 must be divisible by groups: the output-channel axis has "
            f"{n_out} channels, not divisible by groups={groups}."
        )
    per_group = n_out // groups
    min_dim = min(per_group, n_in)
    index = []
    for g in range(groups):
        for d in range(min_dim):
            idx = [s // 2 for s in shape]
            idx[out_ax] = g * per_group + d
            idx[in_ax] = d
            index.append(tuple(idx))
    return index


def check_no_batch_axis(batch_axis, who: str):
    """dirac accepts ``batch_axis`` only so that ``**TORCH_LAYOUT`` works; it must be empty."""
    if batch_axis not in ((), [], None):
        raise InitError(f"{who}: `batch_axis` must be () (a dirac kernel has no batch axes), got {batch_axis!r}")


def check_orthogonal(shape, who: str = "orthogonal"):
    if len(shape) < 2:
        raise InitError(
            f"{who}: Only tensors with 2 or more dimensions are supported (got shape {tuple(shape)})"
        )


def svd_values(singular_values, rows: int, cols: int, who: str = "svd"):
    """Validate ``singular_values``: a real scale (all equal: the orthogonal
    case) or a sequence of length ``min(rows, cols)``. Returns a float or a tuple."""
    if isinstance(singular_values, numbers.Real) and not isinstance(singular_values, bool):
        return float(_real(singular_values, "singular_values", who))
    try:
        values = tuple(float(v) for v in singular_values)
    except (TypeError, ValueError):
        raise InitError(
            f"{who}: `singular_values` must be a number or a 1-D sequence of numbers, "
            f"got {singular_values!r}"
        ) from None
    k = min(rows, cols)
    if len(values) != k:
        raise InitError(
            f"{who}: `singular_values` must have min(rows, cols) = {k} entries for a "
            f"{rows} x {cols} matrix (rows = out_axis size, cols = the rest), got {len(values)}."
        )
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise InitError(f"{who}: `singular_values` must be finite and >= 0, got {values}")
    return values


def check_singular_values(singular_values, who: str = "svd"):
    """Factory-time check of ``singular_values`` (its length is checked per shape)."""
    if isinstance(singular_values, numbers.Real) and not isinstance(singular_values, bool):
        _real(singular_values, "singular_values", who)
        return
    try:
        n = len(singular_values)
    except TypeError:
        raise InitError(
            f"{who}: `singular_values` must be a number or a 1-D sequence of numbers, "
            f"got {singular_values!r}"
        ) from None
    svd_values(singular_values, n, n, who)


def check_sparse(shape, sparsity, std, who: str = "sparse") -> int:
    """Return PyTorch's number of zeros per column, ``ceil(sparsity * rows)``."""
    if len(shape) != 2:
        raise InitError(f"{who}: Only tensors with 2 dimensions are supported, got shape {tuple(shape)}")
    _real(sparsity, "sparsity", who)
    if not 0 <= sparsity <= 1:
        raise InitError(
            f"{who}: `sparsity` is the fraction of each column set to zero and must lie in "
            f"[0, 1], got {sparsity}."
        )
    check_normal(0.0, std, who)
    return math.ceil(sparsity * shape[0])


def matrix_dims(shape: Sequence[int], out_axis: int) -> tuple[int, int]:
    """PyTorch's flattening for orthogonal/svd: rows = out axis, cols = the rest."""
    rows = shape[out_axis]
    cols = math.prod(shape) // rows if rows else 0
    return rows, cols
