"""Weight initializers for JAX/Flax with PyTorch's exact semantics.

Every public factory returns an :class:`Initializer`: a callable
``init(key, shape, dtype=jnp.float32) -> jax.Array`` usable as
``flax.linen.Dense(kernel_init=...)``, ``flax.nnx.Linear(kernel_init=...)`` and
under ``jax.jit``. Fan-based factories take ``in_axis``/``out_axis``/``batch_axis``
(default: the Flax kernel layout, see ``_jaxinit.fans``) so that the same fans
as PyTorch come out for every layer type.

Numerics shared by all factories:
- bfloat16/float16 are sampled in float32 and cast (JAX sampling directly in
  bf16 gives about 128 distinct values with clipped tails).
- Distribution parameters (bounds, stds) are computed in Python with exactly
  the float operations of ``torch.nn.init``.
- Truncated normals use PyTorch 2.13's rejection samplers (pytorch#174997), so
  there are no erfinv outliers for wide bounds (jax#10951); bounds within +-3
  std use one inverse-CDF draw (accurate there, and ~5x faster than rejection).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from _jaxinit import init_params
from _jaxinit.errors import InitError
from _jaxinit.fans import check_layout, single_axis
from _jaxinit.initializer import InitializerBase, factory
from _jaxinit.gain import calculate_gain

Array = jax.Array


class Initializer(InitializerBase):
    """A configured initializer: ``init(key, shape, dtype=jnp.float32)``.

    Attributes:
      name: the public factory name (``"kaiming_uniform"``).
      args: the factory arguments, layout included, for ``repr`` and
        :meth:`with_layout`.
    """

    __slots__ = ()
    _package = "jaxinit"

    def __call__(self, key, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        shape = init_params.check_shape(shape, self.name)
        return self._impl(key, shape, jnp.dtype(dtype))


# --------------------------------------------------------------------------- dtypes
def _float_dtype(dtype, who: str):
    if not jnp.issubdtype(dtype, jnp.floating):
        raise InitError(
            f"{who}: random initializers need a floating dtype, got {dtype}; "
            "use float32/float64/bfloat16/float16 (constant/zeros/ones accept integers)."
        )
    return dtype


def _sample_dtype(dtype):
    """float32 for 16-bit floats, else the (x64-canonicalised) dtype itself."""
    if jnp.dtype(dtype).itemsize < 4:
        return jnp.float32
    return jax.dtypes.canonicalize_dtype(dtype)


# --------------------------------------------------------------------------- samplers
# Samplers are jitted with shape and dtype static and the distribution
# parameters traced (Python floats, converted to the sample dtype inside, as a
# static constant would be): an eager ``init(key, shape)`` runs one cached
# executable per (shape, dtype, distribution), shared by every initializer and
# every gain or fan that draws from it, so a model's layers do not compile one
# program each (a bare ``lax.while_loop`` would be re-traced and re-compiled on
# every eager call); under an outer ``jax.jit`` they inline. Checks and
# warnings stay outside, in Python.
_sampler = functools.partial(jax.jit, static_argnums=(1, 2))
_factory = factory("jaxinit")


def _num(v):
    """A Python int argument as the float it stands for (a traced weak int would overflow past int64)."""
    return float(v) if isinstance(v, int) else v


def _in(dtype, x):
    """A sample drawn in ``_sample_dtype(dtype)``, returned in ``dtype`` (16-bit floats: a float32
    draw rounded once, as torch does; the cast is outside the jitted samplers, so float16,
    bfloat16 and float32 share one compiled program)."""
    return x if x.dtype == jnp.dtype(dtype) else x.astype(dtype)


def _n(shape) -> tuple[int]:
    """The flat shape every draw is made in, then reshaped: ``jax.random`` numbers element i of
    an array by its row-major index, so the values are those of the drawn shape (the tests
    check it bitwise against torchinit, which draws flat), but XLA compiles one 1-D loop
    instead of a nest of short loops that LLVM unrolls: a (3, 3, 4, 6) kernel compiled in 0.9 s
    drawn in its shape and 0.13 s drawn flat (jax 0.10, CPU)."""
    return (math.prod(shape),)


@_sampler
def _uniform_core(key, shape, sd, low: float, high: float):
    return jax.random.uniform(key, _n(shape), sd, low, high).reshape(shape)


def _uniform(key, shape, dtype, low: float, high: float):
    return _in(dtype, _uniform_core(key, tuple(shape), _sample_dtype(dtype), _num(low), _num(high)))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _std_normal(key, shape, sd):
    return jax.random.normal(key, _n(shape), sd).reshape(shape)


@_sampler
def _normal_core(key, shape, sd, mean: float, std: float):
    return _std_normal(key, shape, sd) * jnp.asarray(std, sd) + jnp.asarray(mean, sd)


def _normal(key, shape, dtype, mean: float, std: float):
    return _in(dtype, _normal_core(key, tuple(shape), _sample_dtype(dtype), _num(mean), _num(std)))


def _trunc_normal(key, shape, dtype, mean: float, std: float, a: float, b: float):
    """Plan (and warn, as torch) in Python, then sample with the jitted core."""
    method, log_peak, warn = init_params.trunc_normal_plan(mean, std, a, b)
    if warn:
        warnings.warn(init_params.TRUNC_NORMAL_WARNING, stacklevel=4)
    za, zb = (a - mean) / std, (b - mean) / std  # in Python double, as torch computes them
    if method == "normal" and -init_params.ICDF_MAX_Z <= za and zb <= init_params.ICDF_MAX_Z:
        method = "icdf"
    sd = _sample_dtype(dtype)
    nums = (_num(v) for v in (mean, std, a, b, za, zb, log_peak))
    return _in(dtype, _trunc_normal_core(key, tuple(shape), sd, method, *nums))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _trunc_normal_core(key, shape, sd, method, mean, std, a, b, za, zb, log_peak):
    """PyTorch 2.13's ``trunc_normal_`` algorithm with ``lax.while_loop``.

    If [a, b] holds more than 30% of N(mean, std) mass, draw N(mean, std) and
    redraw entries outside [a, b]; otherwise propose U[a, b) and accept with
    probability pdf(x) / pdf(mode). Both are exact rejection samplers: every
    value lies in [a, b] and there are no erfinv outliers. ``method`` (static):
    'icdf' (the normal case with both bounds within +-ICDF_MAX_Z std: one
    inverse-CDF draw, ``za``/``zb`` the bounds in std units), 'normal' or
    'uniform'; the numbers are traced, so one program serves every std and bound.
    """
    lo, hi = jnp.asarray(a, sd), jnp.asarray(b, sd)
    m, s = jnp.asarray(mean, sd), jnp.asarray(std, sd)

    if method == "icdf":
        z = jax.random.truncated_normal(key, za, zb, _n(shape), sd).reshape(shape)
        return jnp.clip(z * s + m, lo, hi)
    if method == "normal":
        def draw(k):
            return _std_normal(k, shape, sd) * s + m

        def rejected(x):
            return (x < lo) | (x > hi)

        key, sub = jax.random.split(key)
        x0 = draw(sub)

        def body(state):
            x, k = state
            k, sub = jax.random.split(k)
            return jnp.where(rejected(x), draw(sub), x), k

        x, _ = jax.lax.while_loop(lambda st: jnp.any(rejected(st[0])), body, (x0, key))
    else:
        def log_ratio(c):
            return -0.5 * ((c - m) / s) ** 2 - jnp.asarray(log_peak, sd)

        def propose(k):
            k1, k2 = jax.random.split(k)
            c = jax.random.uniform(k1, _n(shape), sd, lo, hi).reshape(shape)
            return c, jnp.log(jax.random.uniform(k2, _n(shape), sd).reshape(shape)) > log_ratio(c)

        key, sub = jax.random.split(key)
        x0, pending0 = propose(sub)

        def body(state):
            x, pending, k = state
            k, sub = jax.random.split(k)
            c, rej = propose(sub)
            return jnp.where(pending, c, x), jnp.where(pending, rej, pending), k

        x, _, _ = jax.lax.while_loop(lambda st: jnp.any(st[1]), body, (x0, pending0, key))
    return x


def _haar(key, n_rows: int, n_cols: int, sd):
    """PyTorch's orthogonal_ construction on an (n_rows >= n_cols) matrix."""
    flat = jax.random.normal(key, (n_rows * n_cols,), sd).reshape(n_rows, n_cols)
    q, r = jnp.linalg.qr(flat)
    return q * jnp.sign(jnp.diagonal(r))


def _svd_matrix(key, shape, dtype, singular_values, out_axis: int, who: str):
    init_params.check_orthogonal(shape, who)
    if math.prod(shape) == 0:
        return jnp.zeros(shape, dtype)
    rows, cols = init_params.matrix_dims(shape, out_axis)
    values = init_params.svd_values(singular_values, rows, cols, who)
    sd = _sample_dtype(dtype)
    # the values converted on the host, as a constant would be; traced, so one program per shape
    return _in(dtype, _svd_core(key, tuple(shape), sd, out_axis, np.asarray(values, sd)))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _svd_core(key, shape, sd, oax: int, values):
    """One compiled program per (shape, dtype, out axis): QR, signs, the spectrum's two matmuls
    and the reshape (eager, each of them compiled on its own for every new shape)."""
    rows, cols = init_params.matrix_dims(shape, oax)
    transposed = rows < cols
    big, small = (cols, rows) if transposed else (rows, cols)
    if values.ndim == 0:
        q = _haar(key, big, small, sd) * values
    else:
        k_u, k_v = jax.random.split(key)
        u = _haar(k_u, big, small, sd)
        v = _haar(k_v, small, small, sd)
        hi = jax.lax.Precision.HIGHEST
        q = jnp.matmul(jnp.matmul(u, v, precision=hi) * values, v.T, precision=hi)
    if transposed:
        q = q.T
    rest = tuple(d for i, d in enumerate(shape) if i != oax)
    return jnp.moveaxis(q.reshape((rows,) + rest), 0, oax)


# --------------------------------------------------------------------------- factories
def _layout(in_axis, out_axis, batch_axis, who):
    """The layout arguments, checked when the factory is built."""
    check_layout(in_axis, out_axis, batch_axis, who)
    return {"in_axis": in_axis, "out_axis": out_axis, "batch_axis": batch_axis}


@_factory
def uniform(a: float = 0.0, b: float = 1.0) -> Initializer:
    """U[a, b), as ``torch.nn.init.uniform_``.

    Differs from ``jax.nn.initializers.uniform(scale)``, which samples [0, scale).

    >>> w = uniform(-0.1, 0.1)(jax.random.key(0), (3, 4))
    """
    init_params.check_uniform(a, b)

    def fn(key, shape, dtype):
        return _uniform(key, shape, _float_dtype(dtype, "uniform"), a, b)

    return Initializer("uniform", {"a": a, "b": b}, fn)


@_factory
def normal(mean: float = 0.0, std: float = 1.0) -> Initializer:
    """N(mean, std^2), as ``torch.nn.init.normal_`` (JAX's ``normal`` has stddev 1e-2 by default)."""
    init_params.check_normal(mean, std)

    def fn(key, shape, dtype):
        return _normal(key, shape, _float_dtype(dtype, "normal"), mean, std)

    return Initializer("normal", {"mean": mean, "std": std}, fn)


@_factory
def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Initializer:
    """N(mean, std^2) truncated to the ABSOLUTE bounds [a, b], as ``torch.nn.init.trunc_normal_``.

    With ``std=0.02`` and the default bounds the distribution is, as in
    PyTorch, effectively untruncated. ``jax.nn.initializers.truncated_normal``
    takes bounds in std units instead: see :func:`truncated_normal`.
    """
    init_params.check_trunc_normal(mean, std, a, b)

    def fn(key, shape, dtype):
        return _trunc_normal(key, shape, _float_dtype(dtype, "trunc_normal"), mean, std, a, b)

    return Initializer("trunc_normal", {"mean": mean, "std": std, "a": a, "b": b}, fn)


@_factory
def constant(val) -> Initializer:
    """Fill with ``val`` (any dtype, integers included), as ``torch.nn.init.constant_``."""
    init_params.check_constant(val)
    return Initializer("constant", {"val": val}, lambda key, shape, dtype: jnp.full(shape, val, dtype))


@_factory
def zeros() -> Initializer:
    """Fill with 0, as ``torch.nn.init.zeros_``."""
    return Initializer("zeros", {}, lambda key, shape, dtype: jnp.zeros(shape, dtype))


@_factory
def ones() -> Initializer:
    """Fill with 1, as ``torch.nn.init.ones_``."""
    return Initializer("ones", {}, lambda key, shape, dtype: jnp.ones(shape, dtype))


@_factory
def eye() -> Initializer:
    """The 2-D identity (rectangular allowed), as ``torch.nn.init.eye_``.

    ``eye`` of the Flax (in, out) kernel is the transpose of PyTorch's
    (out, in) identity, so the layer computes the same map.
    """

    def fn(key, shape, dtype):
        init_params.check_eye(shape)
        return jnp.eye(shape[0], shape[1], dtype=dtype)

    return Initializer("eye", {}, fn)


@_factory
def dirac(groups: int = 1, *, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """Identity-preserving conv kernel, as ``torch.nn.init.dirac_``: a 1 at the
    spatial centre ``k // 2`` (JAX's ``delta_orthogonal`` uses ``(k-1)//2``)
    for each in-group channel pair. Flax conv layout (*k, in/groups, out) by default.
    """
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise InitError(f"dirac: `groups` must be a positive int, got {groups!r}")
    init_params.check_no_batch_axis(batch_axis, "dirac")
    layout = _layout(in_axis, out_axis, (), "dirac")

    def fn(key, shape, dtype):
        index = init_params.dirac_plan(shape, groups, layout)
        out = np.zeros(shape, dtype=np.float64)
        for idx in index:
            out[idx] = 1
        return jnp.asarray(out, dtype)

    return Initializer("dirac", {"groups": groups, "in_axis": in_axis, "out_axis": out_axis}, fn)


def _fan_family(name, args, params_fn, distribution):
    """Build a fan-based initializer drawing U(-p, p) or N(0, p^2)."""
    layout = _layout(args["in_axis"], args["out_axis"], args["batch_axis"], name)

    def fn(key, shape, dtype):
        dtype = _float_dtype(dtype, name)
        if name.startswith("kaiming") and 0 in shape:
            warnings.warn(init_params.ZERO_ELEMENT_WARNING, stacklevel=3)
            return jnp.zeros(shape, dtype)
        p = params_fn(shape, layout)
        if distribution == "uniform":
            return _uniform(key, shape, dtype, -p, p)
        return _normal(key, shape, dtype, 0.0, p)

    return Initializer(name, args, fn)


@_factory
def xavier_uniform(gain: float = 1.0, *, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)), as ``torch.nn.init.xavier_uniform_``.
    Equal in distribution to ``jax.nn.initializers.glorot_uniform`` when gain=1."""
    init_params.check_gain(gain, "xavier_uniform")
    args = {"gain": gain, **_layout(in_axis, out_axis, batch_axis, "xavier_uniform")}
    return _fan_family("xavier_uniform", args, lambda s, l: init_params.xavier_uniform_bound(s, gain, l, "xavier_uniform"), "uniform")


@_factory
def xavier_normal(gain: float = 1.0, *, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)): a PLAIN normal, as
    ``torch.nn.init.xavier_normal_``. ``glorot_normal`` in JAX is truncated."""
    init_params.check_gain(gain, "xavier_normal")
    args = {"gain": gain, **_layout(in_axis, out_axis, batch_axis, "xavier_normal")}
    return _fan_family("xavier_normal", args, lambda s, l: init_params.xavier_std(s, gain, l, "xavier_normal"), "normal")


@_factory
def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                    in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """U(-b, b), b = gain * sqrt(3 / fan_mode), as ``torch.nn.init.kaiming_uniform_``.

    ``kaiming_uniform(a=math.sqrt(5))`` is PyTorch's Linear/Conv default
    (U(+-1/sqrt(fan_in))). A zero-element shape warns and returns zeros, as PyTorch.
    """
    init_params.check_mode(mode, "kaiming_uniform")
    calculate_gain(nonlinearity, a)
    args = {"a": a, "mode": mode, "nonlinearity": nonlinearity,
            **_layout(in_axis, out_axis, batch_axis, "kaiming_uniform")}
    return _fan_family("kaiming_uniform", args,
                       lambda s, l: init_params.kaiming_uniform_bound(s, a, mode, nonlinearity, l, "kaiming_uniform"), "uniform")


@_factory
def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                   in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
    """N(0, std^2), std = gain / sqrt(fan_mode): a PLAIN normal, as
    ``torch.nn.init.kaiming_normal_``. ``he_normal`` in JAX is truncated."""
    init_params.check_mode(mode, "kaiming_normal")
    calculate_gain(nonlinearity, a)
    args = {"a": a, "mode": mode, "nonlinearity": nonlinearity,
            **_layout(in_axis, out_axis, batch_axis, "kaiming_normal")}
    return _fan_family("kaiming_normal", args,
                       lambda s, l: init_params.kaiming_std(s, a, mode, nonlinearity, l, "kaiming_normal"), "normal")


@factory("jaxinit", min_ndim=2)
def svd(singular_values=1.0, *, out_axis=-1) -> Initializer:
    """A random matrix with the singular values you set (Saxe et al. 2014).

    The kernel is viewed as PyTorch views it for ``orthogonal_``: rows = the
    ``out_axis`` size, cols = the product of the other axes. ``singular_values``
    is either a number ``g`` (every singular value is ``g``: this is exactly
    :func:`orthogonal` with ``gain=g``, same draw) or a sequence of
    ``min(rows, cols)`` non-negative values: ``W = U diag(s) V^T`` with ``U``
    and ``V`` independent Haar-random partial isometries (QR of a Gaussian
    with the sign fix of Mezzadri 2007, as PyTorch). Computed in float32 (or
    float64) and cast.
    """
    init_params.check_singular_values(singular_values)
    single_axis(out_axis, "out_axis", None, "svd")

    def fn(key, shape, dtype):
        dtype = _float_dtype(dtype, "svd")
        init_params.check_orthogonal(shape, "svd")
        oax = single_axis(out_axis, "out_axis", len(shape), "svd")
        return _svd_matrix(key, shape, dtype, singular_values, oax, "svd")

    return Initializer("svd", {"singular_values": singular_values, "out_axis": out_axis}, fn)


@_factory
def orthogonal(gain: float = 1.0, *, out_axis=-1) -> Initializer:
    """A (semi-)orthogonal matrix times ``gain``, as ``torch.nn.init.orthogonal_``.

    Rows = the ``out_axis`` size (PyTorch's dim 0), cols = the rest. Computed in
    float32 and cast for 16-bit dtypes (PyTorch's fails there on CPU). JAX's
    ``orthogonal(scale, column_axis=-1)`` gives the same distribution.
    """
    init_params.check_orthogonal_gain(gain, "orthogonal")
    inner = svd(float(gain), out_axis=out_axis)
    return Initializer("orthogonal", {"gain": gain, "out_axis": out_axis}, inner._impl)


@_factory
def sparse(sparsity: float, std: float = 0.01, *, out_axis=-1) -> Initializer:
    """N(0, std^2) with ``ceil(sparsity * rows)`` zeros in every column, as
    ``torch.nn.init.sparse_`` (Martens 2010). PyTorch's rows are the outputs:
    with the Flax (in, out) layout each input's outgoing weights get the zeros.
    """
    init_params.check_sparse((1, 1), sparsity, std)
    single_axis(out_axis, "out_axis", 2, "sparse")

    def fn(key, shape, dtype):
        dtype = _float_dtype(dtype, "sparse")
        init_params.check_sparse(shape, sparsity, std)
        oax = single_axis(out_axis, "out_axis", 2, "sparse")
        rows, cols = shape[oax], shape[1 - oax]
        num_zeros = init_params.check_sparse((rows, cols), sparsity, std)
        k_val, k_zero = jax.random.split(key)
        w = _normal(k_val, (rows, cols), dtype, 0.0, std)
        # float32 whatever jax_enable_x64 says, so the zero pattern is one function of the key
        u = _uniform_core(k_zero, (cols, rows), jnp.dtype(jnp.float32), 0.0, 1.0)
        ranks = jnp.argsort(jnp.argsort(u, axis=1), axis=1)
        w = jnp.where(ranks.T < num_zeros, jnp.zeros((), dtype), w)
        return w if oax == 0 else w.T

    return Initializer("sparse", {"sparsity": sparsity, "std": std, "out_axis": out_axis}, fn)


# --------------------------------------------------------------------------- JAX/Flax names
@_factory
def variance_scaling(scale: float, mode: str, distribution: str, in_axis=-2, out_axis=-1,
                     batch_axis=()) -> Initializer:
    """JAX's ``variance_scaling``: var = scale / n, n = fan_in, fan_out, fan_avg or fan_geo_avg.

    'uniform' is U[-1, 1) * sqrt(3 var) and 'normal' is N(0, 1) * sqrt(var),
    bit-identical to ``jax.nn.initializers.variance_scaling`` in float32;
    'truncated_normal' is N(0, 1) cut at +-2 std, scaled by sqrt(var)/0.8796,
    equal in distribution to JAX's but drawn by rejection (no erfinv
    outliers). PyTorch equivalents: kaiming_uniform_ = (gain^2, mode, 'uniform'),
    kaiming_normal_ = (gain^2, mode, 'normal'), xavier_normal_ = (gain^2,
    'fan_avg', 'normal'): PyTorch's normals are NOT truncated.
    """
    init_params.check_vs(scale, mode, distribution)
    layout = _layout(in_axis, out_axis, batch_axis, "variance_scaling")

    def fn(key, shape, dtype):
        dtype = _float_dtype(dtype, "variance_scaling")
        variance = init_params.variance_scaling_variance(shape, scale, mode, distribution, layout, "variance_scaling")
        sd = _sample_dtype(dtype)
        # JAX's float ops in the sample dtype (correctly rounded in numpy as in
        # XLA), so 'uniform'/'normal' are JAX's very draws; constants stay
        # concrete under jit.
        var = np.asarray(variance, sd)
        if distribution == "uniform":
            return _in(dtype, _uniform_core(key, tuple(shape), sd, -1.0, 1.0) * np.sqrt(3 * var))
        if distribution == "normal":
            return _in(dtype, _std_normal(key, tuple(shape), sd) * np.sqrt(var))
        p = float(np.sqrt(var) / np.asarray(init_params.TRUNC_STD_2, sd))
        return _trunc_normal(key, shape, dtype, 0.0, p, -2.0 * p, 2.0 * p)

    args = {"scale": scale, "mode": mode, "distribution": distribution, **layout}
    return Initializer("variance_scaling", args, fn)


def _vs_preset(name):
    """JAX's one-line preset ``partial(variance_scaling, scale, mode, distribution)``
    (the table is ``_jaxinit.init_params.VS_PRESETS``), named after the preset."""
    (scale, mode, distribution), doc = init_params.VS_PRESETS[name]

    def preset(*, in_axis=-2, out_axis=-1, batch_axis=()) -> Initializer:
        inner = variance_scaling(scale, mode, distribution, in_axis, out_axis, batch_axis)
        return Initializer(name, _layout(in_axis, out_axis, batch_axis, name), inner._impl)

    preset.__name__ = preset.__qualname__ = name
    preset.__doc__ = doc
    return _factory(preset)


# one assignment per public name (IDEs and help() see each); the values come from init_params.VS_PRESETS
glorot_uniform = _vs_preset("glorot_uniform")
glorot_normal = _vs_preset("glorot_normal")
lecun_uniform = _vs_preset("lecun_uniform")
lecun_normal = _vs_preset("lecun_normal")
he_uniform = _vs_preset("he_uniform")
he_normal = _vs_preset("he_normal")

@_factory
def truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> Initializer:
    """JAX's ``truncated_normal``: N(0, stddev^2) cut at ``lower``/``upper`` IN STD
    UNITS (PyTorch's :func:`trunc_normal` takes absolute bounds). No variance
    correction, as JAX. Drawn by rejection, so no erfinv outliers (jax#10951)."""
    init_params.check_trunc_normal(0.0, stddev, lower, upper, "truncated_normal")

    def fn(key, shape, dtype):
        dtype = _float_dtype(dtype, "truncated_normal")
        return _trunc_normal(key, shape, dtype, 0.0, stddev, lower * stddev, upper * stddev)

    return Initializer("truncated_normal", {"stddev": stddev, "lower": lower, "upper": upper}, fn)


# The same names as torchinit's _FACTORIES by design: each package maps them to its own factories.
_FACTORIES = {
    f.__name__: f
    for f in (uniform, normal, trunc_normal, constant, zeros, ones, eye, dirac, xavier_uniform,
              xavier_normal, kaiming_uniform, kaiming_normal, orthogonal, sparse, svd,
              variance_scaling, glorot_uniform, glorot_normal, lecun_uniform, lecun_normal,
              he_uniform, he_normal, truncated_normal)
}
Initializer._factories = _FACTORIES
