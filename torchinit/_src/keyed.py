"""torchinit factories drawing from a JAX key: jaxinit's algorithm, op for op, in torch.

Each jaxinit factory consumes its key in a fixed way (``jaxinit/_src/initializers.py``);
this module repeats it with :mod:`torchinit._src.random`. Every random torchinit
factory is given its keyed sampler where it is defined (``torchinit/_src/initializers.py``,
built from the ``*_sampler`` functions below): a sampler is
``sampler(k, flax_shape, dtype, device, layout)`` and returns
``jaxinit.NAME(...)(k, flax_shape, dtype)`` for the Flax twin of the torch shape, with
``layout`` the twin's layout arguments.
XLA's CPU backend fuses ``x * s + m`` into one multiply-add and rewrites division by a
constant into multiplication by its reciprocal; both are reproduced here where
jaxinit's jitted samplers contain them. 16-bit dtypes are sampled in float32 and cast.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from _jaxinit import init_params
from _jaxinit.errors import InitError
from _jaxinit.fans import single_axis
from torchinit._src import random as rnd
from torchinit._src.xla_math import fma, log_f32
from torchinit._src.xla_math64 import log_f64

Tensor = torch.Tensor


def _sd(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype.itemsize < 4 else dtype


def _c(v, sd, device) -> Tensor:
    """A Python float rounded to the sample dtype (as jnp.asarray(v, sd))."""
    return torch.tensor(float(v), dtype=torch.float64).to(sd).to(device)


def _log(x: Tensor) -> Tensor:
    """XLA CPU's log: its float32 polynomial, or (float64) the C library's, as ported."""
    return log_f32(x) if x.dtype == torch.float32 else log_f64(x)


def uniform(k, shape, dtype, low: float, high: float, device) -> Tensor:
    return rnd.uniform(k, shape, _sd(dtype), low, high, device=device).to(dtype)


def normal(k, shape, dtype, mean: float, std: float, device) -> Tensor:
    return rnd.normal_affine(k, shape, _sd(dtype), std, mean, device).to(dtype)


def trunc_normal(k, shape, dtype, mean: float, std: float, a: float, b: float, device, stacklevel=4) -> Tensor:
    """jaxinit's ``_trunc_normal``: one inverse-CDF draw within +-3 std, else torch 2.13's rejection."""
    method, log_peak, warn = init_params.trunc_normal_plan(mean, std, a, b)
    if warn:
        warnings.warn(init_params.TRUNC_NORMAL_WARNING, stacklevel=stacklevel)
    sd = _sd(dtype)
    lo, hi = _c(a, sd, device), _c(b, sd, device)
    m, s = _c(mean, sd, device), _c(std, sd, device)
    za, zb = (a - mean) / std, (b - mean) / std
    if method == "normal" and -init_params.ICDF_MAX_Z <= za and zb <= init_params.ICDF_MAX_Z:
        z = rnd.truncated_normal(k, za, zb, shape, sd, device=device)
        return torch.clamp(fma(z, s, m), lo, hi).to(dtype)
    if method == "normal":
        def draw(key):
            return rnd.normal_affine(key, shape, sd, std, mean, device)

        k, sub = rnd.split(k)
        x = draw(sub)
        while True:
            rej = (x < lo) | (x > hi)
            if not bool(rej.any()):
                break
            k, sub = rnd.split(k)
            x = torch.where(rej, draw(sub), x)
        return x.to(dtype)
    inv_s = 1.0 / s
    lp = _c(log_peak, sd, device)

    def propose(key):
        k1, k2 = rnd.split(key)
        c = rnd.uniform(k1, shape, sd, a, b, device=device)
        z = (c - m) * inv_s
        log_ratio = fma(z * z, -0.5, -lp)
        return c, _log(rnd.uniform(k2, shape, sd, device=device)) > log_ratio

    k, sub = rnd.split(k)
    x, pending = propose(sub)
    while bool(pending.any()):
        k, sub = rnd.split(k)
        c, rej = propose(sub)
        x = torch.where(pending, c, x)
        pending = torch.where(pending, rej, pending)
    return x.to(dtype)


def _qr(flat: Tensor):
    """Reduced QR. On CPU with scipy installed: scipy's LAPACK geqrf/orgqr, the very
    routines jax's CPU QR calls (bitwise jax); otherwise torch.linalg.qr (a few ulp off)."""
    if flat.device.type == "cpu":
        try:
            import scipy.linalg
        except ImportError:  # pragma: no cover - scipy is optional for torchinit
            scipy = None
        if scipy is not None:
            q, r = scipy.linalg.qr(flat.numpy(), mode="economic")
            return torch.from_numpy(q), torch.from_numpy(r)
    return torch.linalg.qr(flat)


def _haar(k, n_rows: int, n_cols: int, sd, device) -> Tensor:
    flat = rnd.normal(k, (n_rows, n_cols), sd, device=device)
    q, r = _qr(flat)
    return q * torch.sign(torch.diagonal(r))


# The torch port of jaxinit's _svd_matrix, step for step, so both draw the same matrix from one key;
# the shared checks and sizes live in _jaxinit.init_params (duplication by design: one per framework).
def svd_matrix(k, shape, dtype, singular_values, out_axis: int, device, who: str) -> Tensor:
    init_params.check_orthogonal(shape, who)
    if math.prod(shape) == 0:
        return torch.zeros(shape, dtype=dtype, device=device)
    rows, cols = init_params.matrix_dims(shape, out_axis)
    values = init_params.svd_values(singular_values, rows, cols, who)
    sd = _sd(dtype)
    transposed = rows < cols
    big, small = (cols, rows) if transposed else (rows, cols)
    if isinstance(values, float):
        q = _haar(k, big, small, sd, device) * _c(values, sd, device)
    else:
        k_u, k_v = rnd.split(k)
        u = _haar(k_u, big, small, sd, device)
        v = _haar(k_v, small, small, sd, device)
        s = torch.tensor(values, dtype=torch.float64).to(sd).to(u.device)
        q = ((u @ v) * s) @ v.T
    if transposed:
        q = q.T
    rest = tuple(d for i, d in enumerate(shape) if i != out_axis)
    return torch.movedim(q.reshape((rows,) + rest), 0, out_axis).to(dtype)


def sparse(k, shape, dtype, sparsity, std, out_axis: int, device) -> Tensor:
    rows, cols = shape[out_axis], shape[1 - out_axis]
    num_zeros = init_params.check_sparse((rows, cols), sparsity, std)
    k_val, k_zero = rnd.split(k)
    w = normal(k_val, (rows, cols), dtype, 0.0, std, device)
    u = rnd.uniform(k_zero, (cols, rows), torch.float32, device=device)
    ranks = torch.argsort(torch.argsort(u, dim=1, stable=True), dim=1, stable=True)
    w = torch.where(ranks.T < num_zeros, torch.zeros((), dtype=dtype, device=w.device), w)
    return w if out_axis == 0 else w.T


def variance_scaling(k, shape, dtype, variance: float, distribution: str, device) -> Tensor:
    sd = _sd(dtype)
    npd = np.float32 if sd == torch.float32 else np.float64
    var = np.asarray(variance, npd)
    if distribution == "uniform":
        scale = torch.tensor(float(np.sqrt(3 * var)), dtype=sd)
        return (rnd.uniform(k, shape, sd, -1.0, device=device) * scale.to(device)).to(dtype)
    if distribution == "normal":
        # jaxinit multiplies eagerly, outside the jitted normal: no constant folding, no fusion
        scale = torch.tensor(float(np.sqrt(var)), dtype=sd)
        return (rnd.normal(k, shape, sd, device=device) * scale.to(device)).to(dtype)
    p = float(np.sqrt(var) / np.asarray(init_params.TRUNC_STD_2, npd))
    return trunc_normal(k, shape, dtype, 0.0, p, -2.0 * p, 2.0 * p, device, stacklevel=5)


def float_dtype(dtype, who):
    if not dtype.is_floating_point:
        raise InitError(
            f"{who}: random initializers need a floating dtype, got {dtype}; "
            "use float32/float64/bfloat16/float16 (constant/zeros/ones accept integers)."
        )
    return dtype


# --------------------------------------------------------------------------- samplers per factory
def uniform_sampler(a: float, b: float, who: str):
    def sample(k, shape, dtype, device, layout):
        return uniform(k, shape, float_dtype(dtype, who), a, b, device)
    return sample


def normal_sampler(mean: float, std: float, who: str):
    def sample(k, shape, dtype, device, layout):
        return normal(k, shape, float_dtype(dtype, who), mean, std, device)
    return sample


def trunc_normal_sampler(mean: float, std: float, a: float, b: float, who: str):
    def sample(k, shape, dtype, device, layout):
        return trunc_normal(k, shape, float_dtype(dtype, who), mean, std, a, b, device)
    return sample


def fan_sampler(who: str, kind: str, param):
    """jaxinit's ``_fan_family``: U(-p, p) or N(0, p^2), p = ``param(shape, layout)``;
    kaiming warns and returns zeros for a zero-element shape, as torch."""
    def sample(k, shape, dtype, device, layout):
        float_dtype(dtype, who)
        if who.startswith("kaiming") and 0 in shape:
            warnings.warn(init_params.ZERO_ELEMENT_WARNING, stacklevel=4)
            return torch.zeros(shape, dtype=dtype, device=device)
        p = param(shape, layout)
        if kind == "uniform":
            return uniform(k, shape, dtype, -p, p, device)
        return normal(k, shape, dtype, 0.0, p, device)
    return sample


def svd_sampler(singular_values, who: str):
    """jaxinit's ``svd``/``orthogonal`` (a number: every singular value equal)."""
    def sample(k, shape, dtype, device, layout):
        float_dtype(dtype, who)
        init_params.check_orthogonal(shape, who)
        oax = single_axis(layout["out_axis"], "out_axis", len(shape), who)
        return svd_matrix(k, shape, dtype, singular_values, oax, device, who)
    return sample


def sparse_sampler(sparsity: float, std: float, who: str):
    def sample(k, shape, dtype, device, layout):
        float_dtype(dtype, who)
        init_params.check_sparse(shape, sparsity, std)
        oax = single_axis(layout["out_axis"], "out_axis", 2, who)
        return sparse(k, shape, dtype, sparsity, std, oax, device)
    return sample


def variance_scaling_sampler(scale: float, mode: str, distribution: str):
    def sample(k, shape, dtype, device, layout):
        float_dtype(dtype, "variance_scaling")
        variance = init_params.variance_scaling_variance(shape, scale, mode, distribution, layout, "variance_scaling")
        return variance_scaling(k, shape, dtype, variance, distribution, device)
    return sample
