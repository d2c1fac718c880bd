"""Statistical parity: jaxinit and torchinit factories vs the real torch.nn.init
and jax.nn.initializers, for every initializer x layer layout x dtype.

Random sources differ between frameworks, so equality is statistical:

- KS: two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp) between our samples
  and upstream's, p >= P_MIN = 1e-5. Seeds are fixed, so results are
  deterministic; 1e-5 keeps the chance of a spurious failure over the ~600
  KS tests of a fresh random stream (e.g. torch's CUDA generator) near 0.6%,
  while a 3% std error at n = 4e4 gives p < 1e-8.
- std: relative difference <= 6 / sqrt(n) (6 standard errors: the relative
  standard error of a sample std is <= sqrt((kurtosis - 1) / 4n) <= 0.71/sqrt(n)
  per sample for the distributions here, and two samples add in quadrature).
- mean: |difference| <= 6 * std * sqrt(2 / n).
- bounds: every value inside the documented bounds, computed from torch's own
  ``calculate_gain`` and ``_calculate_fan_in_and_fan_out`` on the torch weight.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch

import jaxinit
import torchinit
from parity_tests._layers import layer_layouts
from parity_tests._figures import TORCH_DEVICE, record_figure

P_MIN = 1e-5
SEED = 1234

DTYPES = {
    "float32": (jnp.float32, torch.float32),
    "float64": (jnp.float64, torch.float64),
    "bfloat16": (jnp.bfloat16, torch.bfloat16),
    "float16": (jnp.float16, torch.float16),
}
IMPLS = ("jaxinit", "torchinit")
_tfans = torch.nn.init._calculate_fan_in_and_fan_out
_gain = torch.nn.init.calculate_gain


def _kaiming_bound(a, mode, nl):
    def bound(tshape):
        fi, fo = _tfans(torch.empty(tshape, device="meta"))
        return math.sqrt(3.0) * _gain(nl, a) / math.sqrt(fi if mode == "fan_in" else fo)
    return bound


def _xavier_bound(gain):
    def bound(tshape):
        fi, fo = _tfans(torch.empty(tshape, device="meta"))
        return gain * math.sqrt(6.0 / (fi + fo))
    return bound


# id -> (family, ours(pkg, layout) -> Initializer, torch reference in place, bounds(tshape) or None, fan-based)
TORCH_CASES = {
    "uniform": ("uniform", lambda P, L: P.uniform(-0.5, 1.5), lambda t: torch.nn.init.uniform_(t, -0.5, 1.5),
                lambda s: (-0.5, 1.5), False),
    "normal": ("normal", lambda P, L: P.normal(0.3, 2.0), lambda t: torch.nn.init.normal_(t, 0.3, 2.0), None, False),
    "trunc_normal": ("trunc_normal", lambda P, L: P.trunc_normal(), lambda t: torch.nn.init.trunc_normal_(t),
                     lambda s: (-2.0, 2.0), False),
    "trunc_normal_std0.02": ("trunc_normal", lambda P, L: P.trunc_normal(std=0.02),
                             lambda t: torch.nn.init.trunc_normal_(t, std=0.02), lambda s: (-2.0, 2.0), False),
    "trunc_normal_narrow": ("trunc_normal", lambda P, L: P.trunc_normal(0.0, 1.0, 0.5, 1.5),
                            lambda t: torch.nn.init.trunc_normal_(t, 0.0, 1.0, 0.5, 1.5), lambda s: (0.5, 1.5), False),
    "trunc_normal_shifted": ("trunc_normal", lambda P, L: P.trunc_normal(1.0, 0.5, -1.0, 1.2),
                             lambda t: torch.nn.init.trunc_normal_(t, 1.0, 0.5, -1.0, 1.2), lambda s: (-1.0, 1.2), False),
    "xavier_uniform_gain2": ("xavier", lambda P, L: P.xavier_uniform(2.0, **L),
                             lambda t: torch.nn.init.xavier_uniform_(t, 2.0), lambda s: (-_xavier_bound(2.0)(s), _xavier_bound(2.0)(s)), True),
    "xavier_normal": ("xavier", lambda P, L: P.xavier_normal(**L), lambda t: torch.nn.init.xavier_normal_(t), None, True),
    "kaiming_uniform": ("kaiming", lambda P, L: P.kaiming_uniform(**L), lambda t: torch.nn.init.kaiming_uniform_(t),
                        lambda s: (-_kaiming_bound(0, "fan_in", "leaky_relu")(s), _kaiming_bound(0, "fan_in", "leaky_relu")(s)), True),
    "kaiming_uniform_sqrt5": ("kaiming", lambda P, L: P.kaiming_uniform(a=math.sqrt(5), **L),
                              lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5)),
                              lambda s: (-_kaiming_bound(math.sqrt(5), "fan_in", "leaky_relu")(s),
                                         _kaiming_bound(math.sqrt(5), "fan_in", "leaky_relu")(s)), True),
    "kaiming_uniform_fan_out_relu": ("kaiming", lambda P, L: P.kaiming_uniform(mode="fan_out", nonlinearity="relu", **L),
                                     lambda t: torch.nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
                                     lambda s: (-_kaiming_bound(0, "fan_out", "relu")(s), _kaiming_bound(0, "fan_out", "relu")(s)), True),
    "kaiming_normal_fan_out_relu": ("kaiming", lambda P, L: P.kaiming_normal(mode="fan_out", nonlinearity="relu", **L),
                                    lambda t: torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"), None, True),
    "kaiming_normal_tanh": ("kaiming", lambda P, L: P.kaiming_normal(nonlinearity="tanh", **L),
                            lambda t: torch.nn.init.kaiming_normal_(t, nonlinearity="tanh"), None, True),
}
LAYOUT_FREE_LAYERS = ("linear", "conv2d")


def _sampled(i, layers, layer, dt):
    """The default run's share of the factory x layout x dtype grid (the rest is `exhaustive`).

    Compiling a sampler per (factory, shape, dtype) is most of this file's time, so by default
    factory number ``i`` runs on one layout, ``layers[i % len(layers)]`` (the fan-based factories
    rotate through all seven layouts, so each layout's fan rule meets a real torch reference; the
    fan rules of every layout x factory are also proven exactly in test_fans_property.py), in
    float32 and float64 and in one 16-bit dtype (bfloat16 and float16 alternate over factories).
    `pytest -m exhaustive` runs every combination."""
    half = ("bfloat16", "float16")[i % 2]
    return layer == layers[i % len(layers)] and dt in ("float32", "float64", half)


def _cases():
    for i, (cid, (_, _, _, _, fan_based)) in enumerate(TORCH_CASES.items()):
        layers = list(layer_layouts()) if fan_based else list(LAYOUT_FREE_LAYERS)
        for layer in layers:
            for dt in DTYPES:
                marks = () if _sampled(i, layers, layer, dt) else pytest.mark.exhaustive
                for impl in IMPLS:
                    yield pytest.param(cid, layer, dt, impl, id=f"{cid}-{layer}-{dt}-{impl}", marks=marks)


# --------------------------------------------------------------------------- JAX/Flax names
JNN = jax.nn.initializers
JAX_CASES = {
    "glorot_uniform": (lambda P, L: P.glorot_uniform(**L), lambda L: JNN.glorot_uniform(L["in_axis"], L["out_axis"])),
    "glorot_normal": (lambda P, L: P.glorot_normal(**L), lambda L: JNN.glorot_normal(L["in_axis"], L["out_axis"])),
    "lecun_uniform": (lambda P, L: P.lecun_uniform(**L), lambda L: JNN.lecun_uniform(L["in_axis"], L["out_axis"])),
    "lecun_normal": (lambda P, L: P.lecun_normal(**L), lambda L: JNN.lecun_normal(L["in_axis"], L["out_axis"])),
    "he_uniform": (lambda P, L: P.he_uniform(**L), lambda L: JNN.he_uniform(L["in_axis"], L["out_axis"])),
    "he_normal": (lambda P, L: P.he_normal(**L), lambda L: JNN.he_normal(L["in_axis"], L["out_axis"])),
    "truncated_normal": (lambda P, L: P.truncated_normal(0.05, -1.5, 2.5),
                         lambda L: JNN.truncated_normal(0.05, lower=-1.5, upper=2.5)),
    "variance_scaling_geo_avg": (lambda P, L: P.variance_scaling(0.5, "fan_geo_avg", "normal", **L),
                                 lambda L: JNN.variance_scaling(0.5, "fan_geo_avg", "normal", L["in_axis"], L["out_axis"])),
    "variance_scaling_fan_out_trunc": (lambda P, L: P.variance_scaling(3.0, "fan_out", "truncated_normal", **L),
                                       lambda L: JNN.variance_scaling(3.0, "fan_out", "truncated_normal", L["in_axis"], L["out_axis"])),
}


JAX_LAYERS = ("linear", "conv2d", "conv_transpose2d")


def _jax_cases():
    for i, cid in enumerate(JAX_CASES):
        for layer in JAX_LAYERS:
            for dt in DTYPES:
                marks = () if _sampled(i, JAX_LAYERS, layer, dt) else pytest.mark.exhaustive
                for impl in IMPLS:
                    yield pytest.param(cid, layer, dt, impl, id=f"{cid}-{layer}-{dt}-{impl}", marks=marks)


def ours_sample(impl, init, shape, dtype_name, seed=SEED):
    jdt, tdt = DTYPES[dtype_name]
    if impl == "jaxinit":
        x = init(jax.random.key(seed), shape, jdt)
        assert x.dtype == jdt and x.shape == tuple(shape)
        return np.asarray(x.astype(jnp.float64))
    x = init(torch.Generator(TORCH_DEVICE).manual_seed(seed), shape, tdt, TORCH_DEVICE)
    assert x.dtype == tdt and tuple(x.shape) == tuple(shape) and x.device.type == TORCH_DEVICE.type
    return x.double().cpu().numpy()


def torch_sample(ref, tshape, dtype_name, seed=SEED + 1):
    tdt = DTYPES[dtype_name][1]
    torch.manual_seed(seed)
    t = torch.empty(tshape, dtype=tdt, device=TORCH_DEVICE)
    ref(t)
    return t.double().cpu().numpy()


def assert_same_distribution(ours, ref, family, case, bounds=None):
    ours, ref = ours.ravel(), ref.ravel()
    n = min(ours.size, ref.size)
    assert np.all(np.isfinite(ours))
    p = scipy.stats.ks_2samp(ours, ref).pvalue
    ref_std = ref.std()
    rel_std = abs(ours.std() - ref_std) / ref_std
    mean_diff = abs(ours.mean() - ref.mean())
    record_figure(family, "ks_p", p, case)
    record_figure(family, "rel_std_diff", rel_std, case)
    assert p >= P_MIN, f"KS p={p:.3g} < {P_MIN}: distributions differ ({case})"
    assert rel_std <= 6 / math.sqrt(n), f"std {ours.std():.6g} vs torch {ref_std:.6g} ({case})"
    assert mean_diff <= 6 * ref_std * math.sqrt(2 / n), f"mean {ours.mean():.4g} vs {ref.mean():.4g} ({case})"
    if bounds is not None:
        lo, hi = bounds
        slack = 1e-6 * max(abs(lo), abs(hi))
        assert ref.min() >= lo - slack and ref.max() <= hi + slack, "test bound formula disagrees with torch"
        assert ours.min() >= lo - slack and ours.max() <= hi + slack, f"outside [{lo}, {hi}] ({case})"
        near = 0.02 * (hi - lo)  # where torch's samples come near a bound, ours must too
        if ref.min() <= lo + near:
            assert ours.min() <= lo + near, f"lower bound {lo} not approached ({case})"
        if ref.max() >= hi - near:
            assert ours.max() >= hi - near, f"upper bound {hi} not approached ({case})"


@pytest.mark.parametrize("cid,layer,dtype_name,impl", list(_cases()))
def test_matches_torch_nn_init(cid, layer, dtype_name, impl):
    family, ours_fn, ref, bounds_fn, _ = TORCH_CASES[cid]
    tshape, fshape, layout = layer_layouts()[layer]
    pkg = jaxinit if impl == "jaxinit" else torchinit
    ours = ours_sample(impl, ours_fn(pkg, layout), fshape, dtype_name)
    theirs = torch_sample(ref, tshape, dtype_name)
    bounds = None
    if bounds_fn is not None:
        lo, hi = bounds_fn(tshape)
        if dtype_name in ("bfloat16", "float16"):  # bounds rounded to the dtype, as both frameworks do
            tdt = DTYPES[dtype_name][1]
            lo, hi = (torch.tensor([lo, hi], dtype=torch.float64).to(tdt).double().tolist())
        bounds = (lo, hi)
    assert_same_distribution(ours, theirs, family, f"{cid}/{layer}/{dtype_name}/{impl}", bounds)


@pytest.mark.parametrize("layer", ["linear", "conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("impl", IMPLS)
def test_torch_layout_reachable_by_arguments(layer, impl):
    """With TORCH_LAYOUT our initializers take PyTorch-layout shapes directly."""
    tshape, _, _ = layer_layouts()[layer]
    pkg = jaxinit if impl == "jaxinit" else torchinit
    init = pkg.kaiming_uniform(mode="fan_out", nonlinearity="relu", **pkg.TORCH_LAYOUT)
    ours = ours_sample(impl, init, tshape, "float32")
    theirs = torch_sample(lambda t: torch.nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
                          tshape, "float32")
    b = _kaiming_bound(0, "fan_out", "relu")(tshape)
    assert_same_distribution(ours, theirs, "kaiming", f"torch-layout/{layer}/{impl}", (-b, b))


@pytest.mark.parametrize("cid,layer,dtype_name,impl", list(_jax_cases()))
def test_matches_jax_nn_initializers(cid, layer, dtype_name, impl):
    """The JAX/Flax names equal jax.nn.initializers in distribution. The
    reference is drawn in float32 and cast, because JAX sampling directly in
    16-bit gives ~128 distinct values (jax/_src/random.py `_uniform` keeps only the dtype's
    mantissa bits: 7 for bfloat16)."""
    ours_fn, ref_fn = JAX_CASES[cid]
    _, fshape, layout = layer_layouts()[layer]
    pkg = jaxinit if impl == "jaxinit" else torchinit
    ours = ours_sample(impl, ours_fn(pkg, layout), fshape, dtype_name)
    jdt = DTYPES[dtype_name][0]
    ref_dt = jnp.float32 if dtype_name in ("bfloat16", "float16") else jdt
    ref = np.asarray(ref_fn(layout)(jax.random.key(SEED + 7), fshape, ref_dt).astype(jdt).astype(jnp.float64))
    assert_same_distribution(ours, ref, "jax_names", f"{cid}/{layer}/{dtype_name}/{impl}")


@pytest.mark.parametrize("cid", ["glorot_uniform", "lecun_uniform", "he_uniform", "variance_scaling_geo_avg"])
@pytest.mark.parametrize("layer", ["linear", "conv_transpose2d"])
def test_jax_names_bitwise_equal_to_jax_in_float32(cid, layer):
    """Uniform and plain-normal JAX names are the very draws of jax.nn.initializers."""
    ours_fn, ref_fn = JAX_CASES[cid]
    _, fshape, layout = layer_layouts()[layer]
    key = jax.random.key(5)
    np.testing.assert_array_equal(ours_fn(jaxinit, layout)(key, fshape), ref_fn(layout)(key, fshape, jnp.float32))


def test_no_erfinv_outliers_for_wide_bounds():
    """torch's trunc_normal_(std=0.02) (bounds +-100 std) is effectively a plain
    normal; JAX's inverse-CDF sampler puts outliers at the bounds (jax#10951)."""
    x = np.asarray(jaxinit.trunc_normal(std=0.02)(jax.random.key(0), (1 << 20,), jnp.float32))
    assert np.abs(x).max() < 0.02 * 6.5
    p = scipy.stats.kstest(x, scipy.stats.norm(scale=0.02).cdf).pvalue
    record_figure("trunc_normal", "ks_p", p, "wide-bounds vs N(0,0.02) CDF")
    assert p >= P_MIN


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mean,std,a,b", [(0.0, 1.0, -2.0, 2.0), (0.0, 1.0, 0.5, 1.5), (0.0, 1.0, 2.5, 4.0),
                                          (1.0, 0.5, -1.0, 1.2), (0.0, 2.0, -0.1, 0.1)])
@pytest.mark.filterwarnings("ignore:mean is more than 2 std")
def test_trunc_normal_matches_scipy_truncnorm(impl, mean, std, a, b):
    """Theoretical-CDF KS against scipy.stats.truncnorm, in float64, both branches
    of the sampler (normal rejection when the mass > 0.3, uniform proposal otherwise)."""
    pkg = jaxinit if impl == "jaxinit" else torchinit
    # n = 5e4: under the null the one-sample KS p is Uniform(0, 1), so P_MIN is the false-positive
    # rate per case. Power (scipy.stats.kstwo at 0.9x the shift, to allow for sampling noise): a
    # 10% error in the std argument moves the truncated CDF by 0.016 / 0.020 / 0.060 / 0.041 for
    # the first four cases, giving p < 3e-9 / 2e-14 / 1e-120 / 1e-58. The last case, [-0.05, 0.05]
    # std, is nearly uniform whatever std is (it exercises the uniform-proposal branch's shape).
    x = ours_sample(impl, pkg.trunc_normal(mean, std, a, b), (50_000,), "float64").ravel()
    assert x.min() >= a and x.max() <= b
    dist = scipy.stats.truncnorm((a - mean) / std, (b - mean) / std, loc=mean, scale=std)
    p = scipy.stats.kstest(x, dist.cdf).pvalue
    record_figure("trunc_normal", "ks_p", p, f"truncnorm({mean},{std},{a},{b})/{impl}")
    assert p >= P_MIN


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
@pytest.mark.parametrize("impl", IMPLS)
def test_low_precision_sampled_in_float32(dtype_name, impl):
    """16-bit samples have thousands of distinct values, like torch's, not JAX's ~128."""
    pkg = jaxinit if impl == "jaxinit" else torchinit
    x = ours_sample(impl, pkg.normal(), (100_000,), dtype_name)
    t = torch_sample(lambda t: t.normal_(), (100_000,), dtype_name)
    assert len(np.unique(x)) >= 0.8 * len(np.unique(t))
    direct = jax.random.normal(jax.random.key(0), (100_000,), DTYPES[dtype_name][0])
    assert len(np.unique(x)) > 2 * len(np.unique(np.asarray(direct.astype(jnp.float32))))


@pytest.mark.parametrize("impl", IMPLS)
def test_trunc_normal_warns_like_torch(impl):
    """torch warns when the mean is more than 2 std outside [a, b]; so do we."""
    with pytest.warns(UserWarning, match="mean is more than 2 std"):
        torch.nn.init.trunc_normal_(torch.empty(10), 0.0, 1.0, 2.5, 4.0)
    pkg = jaxinit if impl == "jaxinit" else torchinit
    with pytest.warns(UserWarning, match="mean is more than 2 std"):
        ours_sample(impl, pkg.trunc_normal(0.0, 1.0, 2.5, 4.0), (10,), "float32")


def test_usable_under_jit_and_in_flax():
    """jaxinit factories work under jax.jit; flax.linen and flax.nnx accept them."""
    import flax.linen as nn
    from flax import nnx

    key = jax.random.key(0)
    inits = (jaxinit.kaiming_uniform(), jaxinit.trunc_normal(std=0.02), jaxinit.orthogonal(),
             jaxinit.svd([3.0, 2.0, 1.0]), jaxinit.sparse(0.5), jaxinit.glorot_normal())
    # one jitted program draws all six (one compile instead of six); each against its eager draw
    jitted = jax.jit(lambda k: [init(k, (4, 3), jnp.float32) for init in inits])(key)
    for init, got in zip(inits, jitted):
        eager = init(key, (4, 3), jnp.float32)
        np.testing.assert_allclose(np.asarray(got), np.asarray(eager), rtol=2e-6, atol=1e-7, err_msg=repr(init))
    dense = nn.Dense(8, kernel_init=jaxinit.xavier_uniform(), bias_init=jaxinit.zeros())
    params = dense.init(key, jnp.ones((1, 16)))["params"]
    assert params["kernel"].shape == (16, 8) and not params["bias"].any()
    lin = nnx.Linear(16, 8, kernel_init=jaxinit.kaiming_normal(nonlinearity="relu"), rngs=nnx.Rngs(0))
    assert lin.kernel[...].shape == (16, 8)


# --------------------------------------------------------------------------- jit and pickle
def _all_factories(pkg):
    """One configured initializer per public factory (the required arguments filled in)."""
    from jaxinit._src.initializers import _FACTORIES as names

    required = {"constant": (0.5,), "sparse": (0.3,), "variance_scaling": (2.0, "fan_in", "normal")}
    return [getattr(pkg, name)(*required.get(name, ())) for name in sorted(names)]


def test_every_jaxinit_initializer_jittable_with_static_shape():
    """``jax.jit(init, static_argnums=1)`` works for every jaxinit initializer, as for
    jax.nn.initializers functions: each one traces and lowers (no XLA compile: that is the
    slow part and proves nothing more); orthogonal, the reported case, also runs and gives
    the eager values (test_usable_under_jit_and_in_flax compares six more)."""
    key = jax.random.key(0)
    for init in _all_factories(jaxinit):
        shape = (3, 3, 2, 4) if init.name == "dirac" else (4, 5)
        lowered = jax.jit(init, static_argnums=1).lower(key, shape)
        assert "stablehlo" in lowered.as_text() or "func" in lowered.as_text(), repr(init)
    init = jaxinit.orthogonal()
    np.testing.assert_allclose(np.asarray(jax.jit(init, static_argnums=1)(key, (4, 5))),
                               np.asarray(init(key, (4, 5))), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("impl", IMPLS)
def test_every_initializer_pickles(impl):
    """Pickling keeps the factory and its arguments; the copy draws the same values."""
    import pickle

    pkg = jaxinit if impl == "jaxinit" else torchinit
    for init in _all_factories(pkg):
        copy = pickle.loads(pickle.dumps(init))
        assert copy == init and repr(copy) == repr(init) and type(copy) is type(init)
        shape = (3, 3, 2, 4) if init.name == "dirac" else (4, 5)
        if impl == "jaxinit" and init.name in ("orthogonal", "lecun_normal"):  # compiles are slow: two suffice
            assert np.array_equal(np.asarray(copy(jax.random.key(1), shape)), np.asarray(init(jax.random.key(1), shape)))
        elif impl == "torchinit":
            assert torch.equal(copy(1, shape), init(1, shape))
    for factory in (pkg.xavier_uniform, pkg.glorot_normal, pkg.svd):  # the factories themselves too
        assert pickle.loads(pickle.dumps(factory)) is factory
