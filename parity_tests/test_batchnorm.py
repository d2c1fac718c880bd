"""BatchNorm parity: jaxinit.BatchNorm (Linen), jaxinit.nnx.BatchNorm and torchinit.BatchNorm
against the REAL torch.nn.BatchNorm1d/2d/3d and flax.linen/flax.nnx.BatchNorm.

Each parity case runs STEPS training steps (a fresh batch per step, per-channel
means in [-20, 20] and scales in [0.1, 10], a fixed random cotangent ``g`` so the
loss is ``sum(y * g)``), comparing at every step the output, the gradients with
respect to the input, the scale (torch ``weight``) and the bias, and the running
mean / variance / num_batches_tracked; then one evaluation call on a new batch.
The JAX side runs the whole loop in one jitted ``lax.scan``.

Tolerances (max abs difference, relative to max(1, max|reference|) of each quantity,
since running variances reach 1e2 and scale gradients sum over the batch):
- float64: 1e-12, the claim of exactness (only summation order differs).
- float32: the frameworks reduce in different orders (torch CPU accumulates
  per-channel sums in its own blocking), so each batch statistic carries a
  relative error of a few float32 ulps (~1e-7) times the data's dynamic range;
  the input gradient of BatchNorm is ``(g - mean(g) - xhat*mean(g*xhat)) / sigma``
  which amplifies it by 1/sigma (up to 10 here), and ``x - mean`` cancels
  |mean|/sigma (up to 200 here) leading digits. So float32 is compared with
  F32_TOL = 1e-4 relative to max(1, max|reference|) of each quantity (the worst
  measured values, printed in the parity figures, are around 1e-5 relative).
"""
from __future__ import annotations

import functools
import warnings

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxinit
import jaxinit.linen
import jaxinit.nnx
import torchinit
import torchinit.nn
from _jaxinit import InitError
from _jaxinit.batchnorm import CONVENTIONS
from parity_tests._figures import TORCH_DEVICE, record_figure

STEPS = 50
F64_TOL = 1e-12
F32_TOL = 1e-4  # both relative to max(1, max|reference|), see the module docstring
C = 3
SHAPES = {2: (16, C), 3: (6, C, 5), 4: (4, C, 3, 5), 5: (2, C, 3, 2, 4)}  # NCHW (torch layout)
TORCH_BN = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}
DT = {"float64": (jnp.float64, torch.float64, np.float64), "float32": (jnp.float32, torch.float32, np.float32)}
VARIANTS = {
    "default": {},
    "momentum_none": dict(momentum=None),
    "no_running_stats": dict(track_running_stats=False),
    "affine_false": dict(affine=False),
}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: torch's intra-op thread pool only adds synchronization (50x slower on a
    loaded 2-core machine); results do not depend on the thread count for these sizes."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- data
def make_data(ndim: int, seed: int, steps: int = STEPS, c: int = C, shape=None, loc: float = 20.0):
    """Training batches, cotangents and one eval batch in NCHW, plus random weight/bias.

    Per-channel means in [-loc, loc], scales in [0.1, 10]."""
    rng = np.random.default_rng(seed)
    shape = shape or SHAPES[ndim][:1] + (c,) + SHAPES[ndim][2:]
    bshape = [1] * len(shape)
    bshape[1] = c
    mean = rng.uniform(-loc, loc, c).reshape(bshape)
    scale = (10.0 ** rng.uniform(-1, 1, c)).reshape(bshape)
    xs = rng.standard_normal((steps,) + tuple(shape)) * scale + mean
    gs = rng.standard_normal((steps,) + tuple(shape))
    x_eval = rng.standard_normal(shape) * scale + mean
    weight = rng.uniform(0.5, 2.0, c)
    bias = rng.uniform(-1, 1, c)
    return xs, gs, x_eval, weight, bias


def to_layout(a: np.ndarray, layout: str, batch_dims: int = 0) -> np.ndarray:
    """NCHW -> the layout's order (channel axis ``1 + batch_dims`` moved last for NHWC)."""
    return a if layout == "NCHW" else np.moveaxis(a, 1 + batch_dims, -1)


def from_layout(a, layout: str, batch_dims: int = 0) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a if layout == "NCHW" else np.moveaxis(a, -1, 1 + batch_dims)


# ----------------------------------------------------------------------------- runners
def run_torch(module: torch.nn.Module, xs, gs, x_eval, weight, bias, tdtype, *, mask=None):
    """STEPS training forwards/backwards of a torch module, then one eval forward.

    Returns per-step outputs, input/weight/bias grads, running stats, and the eval output."""
    module = module.to(TORCH_DEVICE)
    if getattr(module, "weight", None) is not None:
        with torch.no_grad():
            module.weight.copy_(torch.as_tensor(weight))
            if module.bias is not None:
                module.bias.copy_(torch.as_tensor(bias))
    module.train()
    out = {k: [] for k in ("y", "dx", "dscale", "dbias", "mean", "var", "nbt")}
    for x, g in zip(xs, gs):
        xt = torch.tensor(x, dtype=tdtype, device=TORCH_DEVICE, requires_grad=True)
        y = module(xt) if mask is None else module(xt, mask)
        (y * torch.tensor(g, dtype=tdtype, device=TORCH_DEVICE)).sum().backward()
        out["y"].append(y.detach().cpu().double().numpy())
        out["dx"].append(xt.grad.cpu().double().numpy())
        for name, key in (("weight", "dscale"), ("bias", "dbias")):
            p = getattr(module, name, None)
            if p is not None:
                out[key].append(p.grad.cpu().double().numpy())
                p.grad = None
        if module.running_mean is not None:
            out["mean"].append(module.running_mean.cpu().double().numpy().copy())
            out["var"].append(module.running_var.cpu().double().numpy().copy())
            out["nbt"].append(int(module.num_batches_tracked))
    module.eval()
    with torch.no_grad():
        out["eval"] = module(torch.tensor(x_eval, dtype=tdtype, device=TORCH_DEVICE)).cpu().double().numpy()
    return {k: np.asarray(v) for k, v in out.items()}


def _split_outputs(ys, dxs, dps, stats_seq, eval_y):
    out = {"y": ys, "dx": dxs, "dscale": dps.get("scale", np.zeros((0,))), "dbias": dps.get("bias", np.zeros((0,)))}
    if stats_seq:
        out["mean"], out["var"] = stats_seq["mean"], stats_seq["var"]
        out["nbt"] = stats_seq.get("num_batches_tracked", np.zeros((0,)))  # absent in flax's BatchNorm
    else:
        out["mean"] = out["var"] = out["nbt"] = np.zeros((0,))
    out["eval"] = eval_y
    return jax.tree.map(lambda a: np.asarray(a, np.float64), out)


def run_linen(module: fnn.Module, xs, gs, x_eval, weight, bias, jdtype, *, masks=None):
    """The same loop for a Linen module (``jaxinit.BatchNorm`` or ``flax.linen.BatchNorm``)."""
    xs, gs, x_eval = (jnp.asarray(a, jdtype) for a in (xs, gs, x_eval))
    # init jitted: one program, where an eager init compiles each of its operations on its own
    variables = jax.jit(functools.partial(module.init, use_running_average=False))(jax.random.key(0), xs[0])
    params = dict(variables.get("params", {}))
    if "scale" in params:
        params["scale"] = jnp.asarray(weight, params["scale"].dtype)
    if "bias" in params:
        params["bias"] = jnp.asarray(bias, params["bias"].dtype)
    stats = dict(variables.get("batch_stats", {}))  # as created: Flax's float32 statistics stay float32 here

    def step(params, stats, inp):
        x, g, m = inp

        def loss(x, params):
            kw = {} if m is None else {"mask": m}
            y, upd = module.apply({"params": params, "batch_stats": stats}, x, use_running_average=False,
                                  mutable=["batch_stats"], **kw)
            return jnp.sum(y * g), (y, upd.get("batch_stats", {}))

        (_, (y, new)), (dx, dp) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, params)
        return new, (y, dx, dp, new)

    # The first step runs on its own: flax.linen.BatchNorm's float32 statistics take the dtype of
    # the update (float64 with float64 inputs), which a lax.scan carry cannot; from then on the
    # dtypes are stable and the other steps run in one jitted scan.
    first = jax.jit(step)
    @jax.jit
    def loop(params, stats, xs, gs, x_eval, masks):
        stats, outs = jax.lax.scan(functools.partial(step, params), stats, (xs, gs, masks))
        y_eval = module.apply({"params": params, "batch_stats": stats}, x_eval, use_running_average=True)
        return outs, y_eval

    stats, out0 = first(params, stats, (xs[0], gs[0], None if masks is None else masks[0]))
    outs, y_eval = loop(params, stats, xs[1:], gs[1:], x_eval, None if masks is None else masks[1:])
    ys, dxs, dps, seq = jax.tree.map(lambda a, b: np.concatenate([np.asarray(a)[None], np.asarray(b)]), out0, outs)
    return _split_outputs(ys, dxs, dps, seq, y_eval)


def run_nnx(module: nnx.Module, xs, gs, x_eval, weight, bias, jdtype):
    """The same loop for an NNX module (``jaxinit.nnx.BatchNorm`` or ``flax.nnx.BatchNorm``)."""
    xs, gs, x_eval = (jnp.asarray(a, jdtype) for a in (xs, gs, x_eval))
    if getattr(module, "scale", None) is not None:
        module.scale[...] = jnp.asarray(weight, module.scale[...].dtype)
    if getattr(module, "bias", None) is not None:
        module.bias[...] = jnp.asarray(bias, module.bias[...].dtype)
    graphdef, params, stats = nnx.split(module, nnx.Param, nnx.BatchStat)

    @jax.jit
    def loop(params, stats, xs, gs, x_eval):
        def step(stats, inp):
            x, g = inp

            def loss(x, params):
                m = nnx.merge(graphdef, params, stats, copy=True)
                y = m(x, use_running_average=False)
                return jnp.sum(y * g), (y, nnx.state(m, nnx.BatchStat))

            (_, (y, new)), (dx, dp) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, params)
            return new, (y, dx, dp, new)

        stats, (ys, dxs, dps, seq) = jax.lax.scan(step, stats, (xs, gs))
        y_eval = nnx.merge(graphdef, params, stats, copy=True)(x_eval, use_running_average=True)
        return ys, dxs, dps, seq, y_eval

    ys, dxs, dps, seq, y_eval = loop(params, stats, xs, gs, x_eval)
    return _split_outputs(ys, dxs, nnx.to_pure_dict(dps), nnx.to_pure_dict(seq), y_eval)


def limit(dtype: str, ref: np.ndarray) -> float:
    """F64_TOL / F32_TOL times max(1, max|ref|)."""
    tol = F64_TOL if dtype == "float64" else F32_TOL
    return tol * max(1.0, float(np.max(np.abs(ref)))) if ref.size else tol


def nchw(out: dict, layout: str) -> dict:
    """A runner's results with the per-step (y, dx) and eval outputs moved back to NCHW."""
    out = dict(out)
    out["y"], out["dx"] = from_layout(out["y"], layout, 1), from_layout(out["dx"], layout, 1)
    out["eval"] = from_layout(out["eval"], layout)
    return out


def compare(ours: dict, ref: dict, dtype: str, family: str, case: str, keys=None, exact: bool = False) -> None:
    """Assert every recorded quantity agrees within its limit (0 if ``exact``); record the worst differences."""
    for key in keys or ("y", "dx", "dscale", "dbias", "mean", "var", "nbt", "eval"):
        a, b = ours[key], ref[key]
        assert a.shape == b.shape, (key, a.shape, b.shape)
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        lim = 0.0 if exact or key == "nbt" else limit(dtype, b)
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        record_figure(family, f"rel|d {key}|", diff / scale, case)
        assert diff <= lim, f"{case}: {key} differs by {diff:.3g} > {lim:.3g}"


# ----------------------------------------------------------------------------- jaxinit vs torch
# float64 (the 1e-12 claim) in every rank and layout; float32 in each rank once, layouts alternating
# (the same program at the float32 tolerance), every rank x layout with -m exhaustive
CASES = [(nd, lay, dt, "default") if dt == "float64" or (nd % 2 == 0) == (lay == "NCHW")
         else pytest.param(nd, lay, dt, "default", marks=pytest.mark.exhaustive)
         for nd in SHAPES for lay in ("NCHW", "NHWC") for dt in DT] + [
    (nd, lay, dt, var) for var in ("momentum_none", "no_running_stats", "affine_false")
    for nd, lay, dt in ((2, "NHWC", "float64"), (4, "NCHW", "float32"), (5, "NHWC", "float64"))]


@pytest.mark.parametrize("ndim,layout,dtype,variant", CASES)
def test_linen_matches_torch(ndim, layout, dtype, variant):
    jdt, tdt, _ = DT[dtype]
    kw = VARIANTS[variant]
    xs, gs, x_eval, weight, bias = make_data(ndim, seed=ndim * 10 + len(variant))
    ref = run_torch(TORCH_BN[ndim](C, dtype=tdt, **kw), xs, gs, x_eval, weight, bias, tdt)
    axis = 1 if layout == "NCHW" else -1
    ours = run_linen(jaxinit.BatchNorm(axis=axis, param_dtype=jdt, **kw), to_layout(xs, layout, 1),
                     to_layout(gs, layout, 1), to_layout(x_eval, layout), weight, bias, jdt)
    compare(nchw(ours, layout), ref, dtype, f"bn linen~torch {dtype}",
            f"{ndim}D {layout} {variant}")


NNX_CASES = [(4, "NHWC", "float64", "default"), (3, "NCHW", "float64", "momentum_none"),
             (2, "NCHW", "float64", "no_running_stats"), (5, "NCHW", "float32", "affine_false")]


@pytest.mark.parametrize("ndim,layout,dtype,variant", NNX_CASES)
def test_nnx_matches_torch(ndim, layout, dtype, variant):
    jdt, tdt, _ = DT[dtype]
    kw = VARIANTS[variant]
    xs, gs, x_eval, weight, bias = make_data(ndim, seed=ndim * 10 + len(variant) + 1)
    ref = run_torch(TORCH_BN[ndim](C, dtype=tdt, **kw), xs, gs, x_eval, weight, bias, tdt)
    axis = 1 if layout == "NCHW" else -1
    ours = run_nnx(jaxinit.nnx.BatchNorm(C, axis=axis, param_dtype=jdt, **kw), to_layout(xs, layout, 1),
                   to_layout(gs, layout, 1), to_layout(x_eval, layout), weight, bias, jdt)
    compare(nchw(ours, layout), ref, dtype, f"bn nnx~torch {dtype}",
            f"{ndim}D {layout} {variant}")


# ----------------------------------------------------------------------------- Flax conventions, exactly
FLAX_CASES = [
    # (convention, overrides, flax.linen.BatchNorm kwargs)
    ("flax", {}, {}),
    ("textbook", {}, dict(momentum=0.9, use_fast_variance=False)),
    ("flax", dict(momentum=0.9, eps=1e-3), dict(momentum=0.9, epsilon=1e-3)),
]


@pytest.mark.parametrize("dtype", list(DT))
@pytest.mark.parametrize("convention,overrides,flax_kw", FLAX_CASES)
def test_linen_conventions_equal_flax_bitwise(convention, overrides, flax_kw, dtype):
    jdt = DT[dtype][0]
    xs, gs, x_eval, weight, bias = make_data(4, seed=7)
    xs, gs, x_eval = to_layout(xs, "NHWC", 1), to_layout(gs, "NHWC", 1), to_layout(x_eval, "NHWC")
    ours = run_linen(jaxinit.BatchNorm.from_convention(convention, param_dtype=jdt, **overrides),
                     xs, gs, x_eval, weight, bias, jdt)
    ref = run_linen(fnn.BatchNorm(param_dtype=jdt, **flax_kw), xs, gs, x_eval, weight, bias, jdt)
    compare(ours, ref, dtype, "bn conv~flax.linen", f"{convention} {overrides} {dtype}",
            keys=("y", "dx", "dscale", "dbias", "mean", "var", "eval"), exact=True)
    assert ours["nbt"][-1] == STEPS


@pytest.mark.parametrize("hdtype", ["bfloat16", "float16"])
def test_flax_convention_half_precision_is_flax_bitwise(hdtype):
    """bf16/fp16 inputs: float32 statistics and float32 output, bit for bit Flax's."""
    xs, _, x_eval, _, _ = make_data(4, seed=12, steps=3)
    ours, theirs = jaxinit.BatchNorm.from_convention("flax", axis=1), fnn.BatchNorm(axis=1)
    v_o = ours.init(jax.random.key(0), jnp.asarray(xs[0], hdtype), use_running_average=False)
    v_t = theirs.init(jax.random.key(0), jnp.asarray(xs[0], hdtype), use_running_average=False)
    for x in xs:
        x = jnp.asarray(x, hdtype)
        y_o, u_o = ours.apply(v_o, x, use_running_average=False, mutable=["batch_stats"])
        y_t, u_t = theirs.apply(v_t, x, use_running_average=False, mutable=["batch_stats"])
        v_o, v_t = {**v_o, **u_o}, {**v_t, **u_t}
        assert y_o.dtype == y_t.dtype and (y_o == y_t).all()
    for k in ("mean", "var"):
        assert v_o["batch_stats"][k].dtype == jnp.float32 and (v_o["batch_stats"][k] == v_t["batch_stats"][k]).all()
    x = jnp.asarray(x_eval, hdtype)
    assert (ours.apply(v_o, x, use_running_average=True) == theirs.apply(v_t, x, use_running_average=True)).all()


@pytest.mark.parametrize("convention,overrides,flax_kw", FLAX_CASES[:2])
def test_nnx_conventions_equal_flax_nnx_bitwise(convention, overrides, flax_kw):
    # float32 only: flax.nnx.BatchNorm keeps float32 statistics for any input.
    xs, gs, x_eval, weight, bias = make_data(2, seed=8)
    ours = run_nnx(jaxinit.nnx.BatchNorm.from_convention(convention, C, **overrides), xs, gs, x_eval,
                   weight, bias, jnp.float32)
    ref = run_nnx(nnx.BatchNorm(C, rngs=nnx.Rngs(0), **flax_kw), xs, gs, x_eval, weight, bias, jnp.float32)
    compare(ours, ref, "float32", "bn conv~flax.nnx", f"{convention} {overrides}",
            keys=("y", "dx", "dscale", "dbias", "mean", "var", "eval"), exact=True)


# ----------------------------------------------------------------------------- torchinit
TORCHINIT_CASES = [
    (2, "NCHW", "float32", {}), (4, "NCHW", "float32", {}), (5, "NCHW", "float64", {}),
    (4, "NHWC", "float64", {}), (3, "NHWC", "float32", {}),
    (4, "NHWC", "float64", dict(momentum=None)), (2, "NCHW", "float64", dict(track_running_stats=False)),
    (5, "NHWC", "float64", dict(affine=False)), (4, "NCHW", "float64", dict(bias=False)),
]


@pytest.mark.parametrize("ndim,layout,dtype,kw", TORCHINIT_CASES)
def test_torchinit_matches_torch(ndim, layout, dtype, kw):
    """PyTorch convention: the same kernel as torch.nn.BatchNorm*d, so bitwise equal with axis=1."""
    _, tdt, _ = DT[dtype]
    xs, gs, x_eval, weight, bias = make_data(ndim, seed=ndim + 3)
    ref = run_torch(TORCH_BN[ndim](C, dtype=tdt, **kw), xs, gs, x_eval, weight, bias, tdt)
    axis = 1 if layout == "NCHW" else -1
    ours = run_torch(torchinit.BatchNorm(C, dtype=tdt, axis=axis, **kw), to_layout(xs, layout, 1),
                     to_layout(gs, layout, 1), to_layout(x_eval, layout), weight, bias, tdt)
    compare(nchw(ours, layout), ref, dtype, f"bn torchinit~torch {dtype}", f"{ndim}D {layout} {kw}",
            exact=layout == "NCHW")


def test_torchinit_general_path_matches_torch():
    """The explicit-formula path (taken with a mask or a non-torch convention) also is PyTorch's."""
    xs, gs, x_eval, weight, bias = make_data(4, seed=21)
    ref = run_torch(torch.nn.BatchNorm2d(C, dtype=torch.float64), xs, gs, x_eval, weight, bias, torch.float64)
    ours = run_torch(torchinit.BatchNorm(C, dtype=torch.float64), xs, gs, x_eval, weight, bias, torch.float64,
                     mask=torch.ones(1, dtype=torch.bool))
    compare(ours, ref, "float64", "bn torchinit(mask)~torch float64", "4D NCHW all-true mask")


@pytest.mark.parametrize("dtype", list(DT))
@pytest.mark.parametrize("convention,overrides,flax_kw", FLAX_CASES)
def test_torchinit_conventions_match_flax(convention, overrides, flax_kw, dtype):
    """Against Flax's one-pass variance E[x^2]-E[x]^2: both sides carry its cancellation error,
    about eps * (mean/std)^2 relative, in different summation orders, so the data keep
    |mean|/std <= 20 (loc=2) to compare at the float64 limit (with loc=20, 1e-11).

    float64: a float64 torch module has float64 statistics from the start; the Flax module with
    the same is ``flax.linen.BatchNorm(force_float32_reductions=False, param_dtype=float64)``
    (Flax's default creates them in float32, so its first update multiplies var=1 by 0.99 in
    float32: 1e-8 apart, see test_linen_flax_statistics_dtypes)."""
    jdt, tdt, _ = DT[dtype]
    if dtype == "float64":
        flax_kw = dict(flax_kw, force_float32_reductions=False)
    xs, gs, x_eval, weight, bias = make_data(4, seed=9, loc=2.0)
    xs, gs, x_eval = to_layout(xs, "NHWC", 1), to_layout(gs, "NHWC", 1), to_layout(x_eval, "NHWC")
    ours = run_torch(torchinit.BatchNorm.from_convention(convention, C, axis=-1, dtype=tdt, **overrides),
                     xs, gs, x_eval, weight, bias, tdt)
    ref = run_linen(fnn.BatchNorm(param_dtype=jdt, **flax_kw), xs, gs, x_eval, weight, bias, jdt)
    compare(ours, ref, dtype, f"bn torchinit~flax {dtype}", f"{convention} {overrides}",
            keys=("y", "dx", "dscale", "dbias", "mean", "var", "eval"))


@pytest.mark.parametrize("ours_kw,flax_kw", [(dict(affine=False), dict(use_scale=False, use_bias=False)),
                                             (dict(bias=False), dict(use_bias=False))])
def test_torchinit_flax_convention_without_affine(ours_kw, flax_kw):
    xs, gs, x_eval, weight, bias = make_data(3, seed=10, loc=2.0)  # see test_torchinit_conventions_match_flax
    xs, gs, x_eval = to_layout(xs, "NHWC", 1), to_layout(gs, "NHWC", 1), to_layout(x_eval, "NHWC")
    ours = run_torch(torchinit.BatchNorm.from_convention("flax", C, axis=-1, dtype=torch.float64, **ours_kw),
                     xs, gs, x_eval, weight, bias, torch.float64)
    ref = run_linen(fnn.BatchNorm(param_dtype=jnp.float64, force_float32_reductions=False, **flax_kw),
                    xs, gs, x_eval, weight, bias, jnp.float64)  # float64 statistics from the start, as torch's
    compare(ours, ref, "float64", "bn torchinit~flax float64", f"flax {ours_kw}",
            keys=("y", "dx", "dscale", "dbias", "mean", "var", "eval"))


# ----------------------------------------------------------------------------- masks (one device)
@pytest.mark.parametrize("pkg", ["linen", "torchinit"])
def test_mask_equals_torch_on_valid_rows(pkg):
    """A mask drops padding rows from the statistics: torch on the valid rows only."""
    xs, gs, x_eval, weight, bias = make_data(4, seed=31, steps=5)
    n_valid = [3, 2, 4, 3, 2]
    masks = np.zeros((5, 4, 1, 1, 1), bool)
    for i, k in enumerate(n_valid):
        masks[i, :k] = True
    tb = torch.nn.BatchNorm2d(C, dtype=torch.float64)
    ref_y = [tb(torch.tensor(x[:k])).detach().numpy() for x, k in zip(xs, n_valid)]
    if pkg == "linen":
        bn = jaxinit.BatchNorm(axis=1, param_dtype=jnp.float64)
        v = bn.init(jax.random.key(0), xs[0], use_running_average=False)
        for x, m, k, ry in zip(xs, masks, n_valid, ref_y):
            y, upd = bn.apply(v, x, use_running_average=False, mask=m, mutable=["batch_stats"])
            v = {**v, **upd}
            np.testing.assert_allclose(np.asarray(y)[:k], ry, rtol=0, atol=F64_TOL)
        stats = {k: np.asarray(a) for k, a in v["batch_stats"].items()}
    else:
        bn = torchinit.BatchNorm(C, dtype=torch.float64)
        for x, m, k, ry in zip(xs, masks, n_valid, ref_y):
            y = bn(torch.tensor(x), torch.tensor(m))
            np.testing.assert_allclose(y.detach().numpy()[:k], ry, rtol=0, atol=F64_TOL)
        stats = {"mean": bn.running_mean.numpy(), "var": bn.running_var.numpy(),
                 "num_batches_tracked": bn.num_batches_tracked.numpy()}
    d = max(np.abs(stats["mean"] - tb.running_mean.numpy()).max(), np.abs(stats["var"] - tb.running_var.numpy()).max())
    record_figure("bn mask~torch float64", "max|d stats|", d, pkg)
    assert d <= F64_TOL and int(stats["num_batches_tracked"]) == 5


# ----------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("hdtype", ["bfloat16", "float16"])
def test_half_precision_statistics_in_float32(hdtype):
    """bf16/fp16 inputs: statistics computed and stored in float32, equal to the float32 run on
    the same (rounded) values; torch.nn.BatchNorm2d on the same half tensor agrees to float32
    reduction-order precision."""
    xs, _, _, _, _ = make_data(4, seed=41, steps=3)
    xh = jnp.asarray(xs, hdtype)
    bn = jaxinit.BatchNorm(axis=1)
    v = bn.init(jax.random.key(0), xh[0], use_running_average=False)
    v32 = bn.init(jax.random.key(0), xh[0].astype(jnp.float32), use_running_average=False)
    tb = torch.nn.BatchNorm2d(C)
    for x in xh:
        y, upd = bn.apply(v, x, use_running_average=False, mutable=["batch_stats"])
        y32, upd32 = bn.apply(v32, x.astype(jnp.float32), use_running_average=False, mutable=["batch_stats"])
        v, v32 = {**v, **upd}, {**v32, **upd32}
        ty = tb(torch.tensor(np.asarray(x.astype(jnp.float32))).to(getattr(torch, hdtype)))
        assert ty.dtype == getattr(torch, hdtype)
    for k in ("mean", "var"):
        assert v["batch_stats"][k].dtype == jnp.float32
        assert (v["batch_stats"][k] == v32["batch_stats"][k]).all()
        ref = getattr(tb, "running_" + k).numpy()
        d = np.abs(np.asarray(v["batch_stats"][k]) - ref).max()
        record_figure(f"bn {hdtype} stats~torch", f"max|d {k}|", d)
        assert d <= 1e-4 * max(1.0, np.abs(ref).max())
    # the output is the float32 computation (Flax's dtype rule: promotion of input and float32 params)
    assert y.dtype == jnp.float32 and (y == y32).all()


# ----------------------------------------------------------------------------- init, modes
def test_linen_init_is_a_fresh_torch_module():
    """``init`` leaves the statistics as a new torch.nn.BatchNorm has them, even for a batch of one."""
    bn = jaxinit.BatchNorm()
    tb = torch.nn.BatchNorm1d(C)
    for x in (jnp.ones((1, C)), jnp.arange(4.0 * C).reshape(4, C)):
        v = bn.init(jax.random.key(0), x, use_running_average=False)
        np.testing.assert_array_equal(v["batch_stats"]["mean"], tb.running_mean.numpy())
        np.testing.assert_array_equal(v["batch_stats"]["var"], tb.running_var.numpy())
        assert int(v["batch_stats"]["num_batches_tracked"]) == 0
        np.testing.assert_array_equal(v["params"]["scale"], tb.weight.detach().numpy())
        np.testing.assert_array_equal(v["params"]["bias"], tb.bias.detach().numpy())


def test_use_running_average_attribute_and_nnx_modes():
    x = jnp.asarray(make_data(2, seed=51, steps=1)[0][0])
    bn_train = jaxinit.BatchNorm(use_running_average=False)
    v = bn_train.init(jax.random.key(0), x)
    _, upd = bn_train.apply(v, x, mutable=["batch_stats"])
    assert int(upd["batch_stats"]["num_batches_tracked"]) == 1
    y_eval = jaxinit.BatchNorm(use_running_average=True).apply({**v, **upd}, x)
    assert (y_eval == bn_train.apply({**v, **upd}, x, use_running_average=True)).all()
    with pytest.raises(InitError, match="use_running_average"):
        jaxinit.BatchNorm().init(jax.random.key(0), x)
    m = jaxinit.nnx.BatchNorm(C)
    m(x)
    m.eval()
    assert m.use_running_average is True
    m(x)
    assert int(m.num_batches_tracked[...]) == 1
    m.train()
    m(x)
    assert int(m.num_batches_tracked[...]) == 2


# ----------------------------------------------------------------------------- errors
def _linen_call(training=True, **kw):
    def call(x):
        bn = jaxinit.BatchNorm(**kw)
        if x.shape[0] == 1 and training:  # init accepts a batch of one (Flax habit); the apply must not
            v = bn.init(jax.random.key(0), jnp.concatenate([x, x]), use_running_average=False)
        else:
            v = bn.init(jax.random.key(0), x, use_running_average=not training)
        return bn.apply(v, x, use_running_average=not training, mutable=["batch_stats"])
    return call


def _nnx_call(training=True, c=C, **kw):
    def call(x):
        return jaxinit.nnx.BatchNorm(c, use_running_average=not training, **kw)(x)
    return call


def _torch_call(training=True, c=C, **kw):
    def call(x):
        m = torchinit.BatchNorm(c, **kw)
        m.train(training)
        return m(torch.as_tensor(np.asarray(x)))
    return call


CALLERS = {"linen": _linen_call, "nnx": _nnx_call, "torchinit": _torch_call}


@pytest.mark.parametrize("pkg", list(CALLERS))
def test_input_errors(pkg):
    call = CALLERS[pkg]
    axis = {} if pkg == "torchinit" else {"axis": 1}
    wrong_c = {"num_features": 4} if pkg == "linen" else {"c": 4}
    with pytest.raises(InitError, match=r"input has 3 channels at axis 1 .* is 4"):
        call(**wrong_c, **axis)(np.ones((4, C, 2), np.float32))
    for shape in ((C,), (2, C, 1, 1, 1, 1)):
        with pytest.raises(InitError, match=rf"expected 2D to 5D input \(got {len(shape)}D input\)"):
            call(**axis)(np.ones(shape, np.float32))
    with pytest.raises(InitError, match="Expected more than 1 value per channel when training"):
        call(**axis)(np.ones((1, C), np.float32))
    with pytest.raises(InitError, match="Expected more than 1 value per channel when training"):
        call(**axis, track_running_stats=False)(np.ones((1, C, 1), np.float32))
    call(training=False, **axis)(np.ones((1, C), np.float32))  # evaluation: fine, as torch
    with pytest.raises(InitError, match="must be a floating-point array .* got int32"):
        call(**axis)(np.ones((4, C), np.int32))


def test_batch_of_one_message_is_torchs():
    x = torch.ones(1, C)
    with pytest.raises(ValueError) as theirs:
        torch.nn.BatchNorm1d(C)(x)
    with pytest.raises(ValueError) as ours:
        torchinit.BatchNorm(C)(x)
    assert str(ours.value) == str(theirs.value)


def test_linen_channel_change_after_init_and_immutable_stats():
    bn = jaxinit.BatchNorm()
    v = bn.init(jax.random.key(0), jnp.ones((4, 3)), use_running_average=False)
    with pytest.raises(InitError, match="existing params/scale"):
        bn.apply(v, jnp.ones((4, 5)), use_running_average=True)
    with pytest.raises(Exception, match="batch_stats"):  # Flax's own error: the collection is not mutable
        bn.apply(v, jnp.ones((4, 3)), use_running_average=False)


BAD_ARGS = [
    (dict(momentum=1.5), "`momentum` must be a float in \\[0, 1\\]"),
    (dict(momentum=-0.1), "`momentum` must be a float in \\[0, 1\\]"),
    (dict(momentum_style="keras"), "`momentum_style` must be 'torch'"),
    (dict(momentum=None, momentum_style="decay"), "momentum=None` \\(cumulative average\\) needs"),
    (dict(eps=-1e-5), "`eps` must be a finite float >= 0"),
    (dict(affine="yes"), "`affine` must be True or False"),
    (dict(axis=1.0), "`axis` must be an int"),
    (dict(num_features=0), "`num_features` must be a positive int"),
    (dict(variance="welford"), "`variance` must be 'shifted' .*, 'two_pass' .* or 'fast'"),
]


@pytest.mark.parametrize("kw,msg", BAD_ARGS)
def test_constructor_errors(kw, msg):
    kw = dict(kw)
    c = kw.pop("num_features", C)
    with pytest.raises(InitError, match=msg):
        jaxinit.BatchNorm(num_features=c, **kw)
    with pytest.raises(InitError, match=msg):
        jaxinit.nnx.BatchNorm(c, **kw)
    with pytest.raises(InitError, match=msg):
        torchinit.BatchNorm(c, **kw)


def test_unknown_convention():
    for make in (lambda: jaxinit.BatchNorm.from_convention("keras"),
                 lambda: jaxinit.nnx.BatchNorm.from_convention("keras", C),
                 lambda: torchinit.BatchNorm.from_convention("keras", C)):
        with pytest.raises(InitError, match="unknown convention 'keras'; accepted: 'torch', 'flax', 'textbook'"):
            make()


# ----------------------------------------------------------------------------- mirror
def test_constructor_mirror():
    """The shared arguments have the same names and defaults in all three modules (axis: -1 in
    Flax, 1 in torch, each framework's layout)."""
    import dataclasses
    import inspect

    shared = ("num_features", "eps", "momentum", "affine", "track_running_stats", "bias", "axis",
              "momentum_style", "unbiased_running_var", "variance")
    tsig = inspect.signature(torchinit.BatchNorm.__init__).parameters
    nsig = inspect.signature(jaxinit.nnx.BatchNorm.__init__).parameters
    lfields = {f.name: f.default for f in dataclasses.fields(jaxinit.BatchNorm)}
    for name in shared[1:]:
        expect = tsig[name].default if name != "axis" else -1
        assert nsig[name].default == expect and lfields[name] == expect, name
    assert jaxinit.linen.BatchNorm is jaxinit.BatchNorm and torchinit.nn.BatchNorm is torchinit.BatchNorm
    torch_bn = torch.nn.BatchNorm2d(C)
    assert set(torchinit.BatchNorm(C).state_dict()) == set(torch_bn.state_dict())
    torchinit.BatchNorm(C).load_state_dict(torch_bn.state_dict())


# ----------------------------------------------------------------------------- Linen / NNX sweep
SWEEP_VARIANTS = [{}, dict(momentum=None), dict(track_running_stats=False), dict(affine=False), dict(bias=False),
                  dict(axis=1), dict(momentum_style="decay", momentum=0.8, unbiased_running_var=False)]


@pytest.mark.parametrize("dtype", ["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("convention", ["torch", "flax", "textbook"])
def test_linen_nnx_consistency(convention, dtype):
    """Same inputs, same arguments: Linen and NNX give identical outputs and statistics.

    Except where Flax's own Linen and NNX modules differ, which Flax's rules
    (momentum_style='decay') reproduce: NNX promotes the input, statistics and parameters to one
    dtype first (bf16 input, float32 parameters: float32 output; Linen: bf16 without affine), and
    with float64 inputs flax.linen.BatchNorm's statistics become float64 at the first update while
    flax.nnx.BatchNorm's stay float32. Those cases are compared with Flax's own modules in
    test_flax_rules_equal_flax_linen_and_nnx instead."""
    xs, _, x_eval, _, _ = make_data(4, seed=61, steps=3)
    for kw in SWEEP_VARIANTS:
        if kw.get("momentum", 0) is None and convention != "torch":
            continue
        kw = {**kw, "param_dtype": jnp.float64 if dtype == "float64" else jnp.float32}
        if dtype != "float32" and kw.get("momentum_style", CONVENTIONS[convention]["momentum_style"]) == "decay":
            continue
        lay = "NCHW" if kw.get("axis") == 1 else "NHWC"
        data = [jnp.asarray(to_layout(x, lay), dtype) for x in xs]
        x_ev = jnp.asarray(to_layout(x_eval, lay), dtype)
        lin = jaxinit.BatchNorm.from_convention(convention, **kw)
        v = lin.init(jax.random.key(0), data[0], use_running_average=False)
        mod = jaxinit.nnx.BatchNorm.from_convention(convention, C, **kw)
        for x in data:
            y_l, upd = lin.apply(v, x, use_running_average=False, mutable=["batch_stats"])
            v = {**v, **upd}
            y_n = mod(x)
            assert y_l.dtype == y_n.dtype and (y_l == y_n).all(), (convention, dtype, kw)
        mod.eval()
        assert (lin.apply(v, x_ev, use_running_average=True) == mod(x_ev)).all(), (convention, dtype, kw)
        for name in ("mean", "var", "num_batches_tracked"):
            if "batch_stats" in v and v["batch_stats"]:
                ref = v["batch_stats"][name]
                assert ref.dtype == getattr(mod, name)[...].dtype and (ref == getattr(mod, name)[...]).all()


# ----------------------------------------------------------------------------- Flax's rules, unmodified Flax
def _flax_kind_inputs(kind: str):
    """(inputs of 3 training steps + 1 eval, ours overrides, Flax kwargs, mask) for one input kind
    Flax accepts; channels last (C=3)."""
    rng = np.random.default_rng(sum(map(ord, kind)))  # deterministic (str hashes are salted per process)
    shape, dtype, ours_kw, flax_kw, mask = (6, 4, C), "float32", {}, {}, None
    if kind == "float64 inputs, float32 params":  # Flax: float32 statistics, float64 after the first update
        dtype = "float64"
    elif kind == "float64 inputs, float64 params":
        dtype, ours_kw, flax_kw = "float64", dict(param_dtype=jnp.float64), dict(param_dtype=jnp.float64)
    elif kind == "bfloat16, no affine":
        dtype, ours_kw, flax_kw = "bfloat16", dict(affine=False), dict(use_scale=False, use_bias=False)
    elif kind == "int32":
        dtype = "int32"
    elif kind == "complex64":
        dtype = "complex64"
    elif kind == "1-D":
        shape = (C,)
    elif kind == "6-D":
        shape = (2, 2, 1, 2, 3, C)
    elif kind == "one value per channel":
        shape = (1, C)
    elif kind == "eps=0, one value per channel":  # Flax: 0 * rsqrt(0) = NaN
        shape, ours_kw, flax_kw = (1, C), dict(eps=0.0), dict(epsilon=0.0)
    elif kind == "mask, fast variance":
        # Flax passes the mask to mean(where=) unbroadcast: for these shapes a broadcast mask gives
        # other float32 bits in these shapes (checked in test_flax_mask_broadcast_changes_bits).
        shape, mask = (128, C), rng.random((128, 1)) < 0.7
    elif kind == "mask, two-pass variance":
        shape, mask = (128, C), rng.random((128, 1)) < 0.7
        ours_kw, flax_kw = dict(variance="two_pass"), dict(use_fast_variance=False)
    xs = rng.standard_normal((4,) + shape) * 3 + 20
    if dtype == "int32":
        xs = np.round(xs)
    if dtype == "complex64":
        xs = xs + 1j * (rng.standard_normal((4,) + shape) - 5)
    return jnp.asarray(xs, dtype), ours_kw, flax_kw, mask


FLAX_KINDS = ["float64 inputs, float32 params", "float64 inputs, float64 params", "bfloat16, no affine", "int32",
              "complex64", "1-D", "6-D", "one value per channel", "eps=0, one value per channel",
              "mask, fast variance", "mask, two-pass variance"]


def _same(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    np.testing.assert_array_equal(a, b, err_msg=what)  # NaN == NaN here: Flax's NaN must be ours too


@pytest.mark.parametrize("kind", FLAX_KINDS)
def test_flax_rules_equal_flax_linen_and_nnx(kind):
    """The 'flax' convention accepts what flax.linen.BatchNorm / flax.nnx.BatchNorm accept and
    computes what they compute, bit for bit, dtypes included: outputs of 3 training steps, the
    input gradient (real inputs), the running statistics after each step, then evaluation.
    The Flax modules are used as constructed, their variables never adjusted."""
    xs, ours_kw, flax_kw, mask = _flax_kind_inputs(kind)
    grad = jnp.issubdtype(xs.dtype, jnp.floating)
    kw = {} if mask is None else {"mask": mask}

    # Linen
    ours, theirs = jaxinit.BatchNorm.from_convention("flax", **ours_kw), fnn.BatchNorm(**flax_kw)
    v_o = ours.init(jax.random.key(0), xs[0], use_running_average=False)
    v_t = theirs.init(jax.random.key(0), xs[0], use_running_average=False)

    def step(module, v, x):
        def f(x):
            y, upd = module.apply(v, x, use_running_average=False, mutable=["batch_stats"], **kw)
            return jnp.sum(y.astype(jnp.float32) * jnp.arange(y.size, dtype=jnp.float32).reshape(y.shape)), (y, upd)
        if grad:
            (_, (y, upd)), dx = jax.value_and_grad(f, has_aux=True)(x)
        else:
            (_, (y, upd)), dx = f(x), None
        return y, {**v, **upd}, dx

    for i, x in enumerate(xs[:3]):
        y_o, v_o, dx_o = step(ours, v_o, x)
        y_t, v_t, dx_t = step(theirs, v_t, x)
        _same(y_o, y_t, f"linen y step {i}")
        if grad:
            _same(dx_o, dx_t, f"linen dx step {i}")
        for k in ("mean", "var"):
            _same(v_o["batch_stats"][k], v_t["batch_stats"][k], f"linen {k} step {i}")
    _same(ours.apply(v_o, xs[3], use_running_average=True), theirs.apply(v_t, xs[3], use_running_average=True),
          "linen eval")

    # NNX (its float32 statistics, its dtype promotion of input, statistics and parameters)
    ours = jaxinit.nnx.BatchNorm.from_convention("flax", C, **ours_kw)
    theirs = nnx.BatchNorm(C, rngs=nnx.Rngs(0), **flax_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)  # both cast complex statistics to float32
        for i, x in enumerate(xs[:3]):
            _same(ours(x, **kw), theirs(x, **kw), f"nnx y step {i}")
            for k in ("mean", "var"):
                _same(getattr(ours, k)[...], getattr(theirs, k)[...], f"nnx {k} step {i}")
    ours.eval()
    theirs.eval()
    _same(ours(xs[3]), theirs(xs[3]), "nnx eval")


# ----------------------------------------------------------------------------- large |mean|/std
def _exact_training_step(x, g, w, b, n_dev=1):
    """One training step of BatchNorm in 80-bit long double from the same inputs (NCHW): output,
    input/scale/bias gradients of sum(y * g), running mean/var of a fresh torch module
    (momentum 0.1, unbiased). The textbook formulas, written independently of both frameworks."""
    X, G = x.astype(np.longdouble), g.astype(np.longdouble)
    ax, shape = (0, 2, 3), (1, -1, 1, 1)
    n = X.size // X.shape[1]
    mu = X.mean(ax, keepdims=True)
    var = ((X - mu) ** 2).mean(ax, keepdims=True)
    inv = 1 / np.sqrt(var + np.longdouble(1e-5))
    xhat = (X - mu) * inv
    W = np.asarray(w, np.longdouble).reshape(shape)
    sg, sgx = G.sum(ax, keepdims=True), (G * xhat).sum(ax, keepdims=True)
    return {"y": xhat * W + np.asarray(b, np.longdouble).reshape(shape),
            "dx": W * inv / n * (n * G - sg - xhat * sgx), "dscale": sgx.ravel(), "dbias": sg.ravel(),
            "mean": 0.1 * mu.ravel(), "var": 0.9 + 0.1 * var.ravel() * n / (n - 1)}


@pytest.mark.parametrize("dtype", list(DT))
@pytest.mark.parametrize("ratio", [1e2, 1e3, 1e4])
def test_shifted_variance_large_mean(ratio, dtype):
    """Inputs with |mean|/std = ratio (std in [0.1, 10]): one training step of jaxinit.BatchNorm
    (the 'shifted' one-pass variance, the default) against torch.nn.BatchNorm2d and an exact
    (long double) computation from the same inputs.

    Any implementation that rounds the mean before subtracting it (torch's CPU kernel) carries
    an error of up to about eps * |mean| / std in the output: measured for torch against the
    exact values at ratio 1e4, 1.7e-12 (float64) and 2.7e-5 (float32) relative in y, beyond the
    1e-12 claim in float64. The shifted formula subtracts k (a value of the batch, exactly) and
    the small offset mean - k separately: 1.8e-16 / 3.4e-7 from the exact values there. So: ours
    within the stated limit (1e-12 / 1e-4 relative to max(1, |exact|)) of the EXACT values, and
    within that limit plus torch's own measured error of torch."""
    jdt, tdt, _ = DT[dtype]
    rng = np.random.default_rng(int(np.log10(ratio)))
    std = 10.0 ** rng.uniform(-1, 1, (1, C, 1, 1))
    x = rng.standard_normal((8, C, 6, 6)) * std + np.array([1.0, -1.0, 1.0]).reshape(1, C, 1, 1) * ratio * std
    x = x.astype(DT[dtype][2]).astype(np.float64)  # the values both frameworks see
    g = rng.standard_normal(x.shape)
    w, b = rng.uniform(0.5, 2.0, C), rng.uniform(-1, 1, C)
    exact = {k: np.asarray(v, np.float64) for k, v in _exact_training_step(x, g, w, b).items()}
    ref = run_torch(torch.nn.BatchNorm2d(C, dtype=tdt), x[None], g[None], x, w, b, tdt)
    ours = run_linen(jaxinit.BatchNorm(axis=1, param_dtype=jdt), x[None], g[None], x, w, b, jdt)
    tol = F64_TOL if dtype == "float64" else F32_TOL
    for key in ("y", "dx", "dscale", "dbias", "mean", "var"):
        e = exact[key]
        scale = max(1.0, float(np.abs(e).max()))
        d_exact = float(np.abs(ours[key][0] - e).max()) / scale
        d_torch_exact = float(np.abs(ref[key][0] - e).max()) / scale
        d_torch = float(np.abs(ours[key][0] - ref[key][0]).max()) / scale
        record_figure(f"bn shifted |mean|/std=1e{int(np.log10(ratio))} {dtype}", f"rel|d {key}| ours~exact",
                      d_exact)
        record_figure(f"bn shifted |mean|/std=1e{int(np.log10(ratio))} {dtype}", f"rel|d {key}| torch~exact",
                      d_torch_exact)
        assert d_exact <= tol, (key, d_exact)
        assert d_torch <= tol + d_torch_exact, (key, d_torch, d_torch_exact)


# ----------------------------------------------------------------------------- empty batch
def _steps_with_empty_batch(pkg, ndim, kw):
    """Training steps on a batch, an EMPTY batch (0 examples), a batch, then evaluation, with a
    loss sum(y * g); returns per step (y shape, scale/bias gradients, running mean/var/count)
    and the eval output. NCHW for torch/torchinit, NHWC for Linen/NNX (moved back to NCHW)."""
    xs, gs, x_eval, weight, bias = make_data(ndim, seed=70 + ndim, steps=3)
    xs, gs = list(xs), list(gs)
    xs[1], gs[1] = xs[1][:0], gs[1][:0]
    out = []
    if pkg in ("torch", "torchinit"):
        m = TORCH_BN[ndim](C, dtype=torch.float64, **kw) if pkg == "torch" else torchinit.BatchNorm(
            C, dtype=torch.float64, **kw)
        with torch.no_grad():
            m.weight.copy_(torch.as_tensor(weight))
            m.bias.copy_(torch.as_tensor(bias))
        for x, g in zip(xs, gs):
            xt = torch.tensor(x, requires_grad=True)
            y = m(xt)
            (y * torch.tensor(g)).sum().backward()
            out.append((tuple(y.shape), m.weight.grad.numpy().copy(), m.bias.grad.numpy().copy(),
                        m.running_mean.numpy().copy(), m.running_var.numpy().copy(), int(m.num_batches_tracked)))
            m.weight.grad = m.bias.grad = None
        m.eval()
        return out, m(torch.tensor(x_eval)).detach().numpy()
    xs, gs = [jnp.asarray(to_layout(a, "NHWC")) for a in xs], [jnp.asarray(to_layout(a, "NHWC")) for a in gs]
    x_eval = jnp.asarray(to_layout(x_eval, "NHWC"))
    if pkg == "linen":
        bn = jaxinit.BatchNorm(param_dtype=jnp.float64, **kw)
        v = bn.init(jax.random.key(0), xs[0], use_running_average=False)
        params = {"scale": jnp.asarray(weight), "bias": jnp.asarray(bias)}
        for x, g in zip(xs, gs):
            def loss(p, x=x, g=g):
                y, upd = bn.apply({**v, "params": p}, x, use_running_average=False, mutable=["batch_stats"])
                return jnp.sum(y * g), (y, upd)
            (_, (y, upd)), dp = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
            v = {**v, **upd}
            s = v["batch_stats"]
            out.append((tuple(from_layout(y, "NHWC").shape), np.asarray(dp["scale"]), np.asarray(dp["bias"]),
                        np.asarray(s["mean"]), np.asarray(s["var"]), int(s["num_batches_tracked"])))
        y_eval = bn.apply({**v, "params": params}, x_eval, use_running_average=True)
    else:
        m = jaxinit.nnx.BatchNorm(C, param_dtype=jnp.float64, **kw)
        m.scale[...], m.bias[...] = jnp.asarray(weight), jnp.asarray(bias)
        for x, g in zip(xs, gs):
            def loss(m, x=x, g=g):
                y = m(x)
                return jnp.sum(y * g), y
            (_, y), grads = nnx.value_and_grad(loss, has_aux=True)(m)
            out.append((tuple(from_layout(y, "NHWC").shape), np.asarray(grads.scale[...]), np.asarray(grads.bias[...]),
                        np.asarray(m.mean[...]), np.asarray(m.var[...]), int(m.num_batches_tracked[...])))
        m.eval()
        y_eval = m(x_eval)
    return out, from_layout(y_eval, "NHWC")


@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
@pytest.mark.parametrize("pkg", ["linen", "nnx", "torchinit"])
def test_empty_batch_is_torchs(pkg, ndim):
    """torch.nn.BatchNorm1d/2d/3d on a (0, C, ...) batch in training: an empty output, zero
    scale/bias gradients, running statistics unchanged, num_batches_tracked counted (which the
    cumulative average of momentum=None then uses). Limits: float64, 1e-12 (module docstring)."""
    kw = dict(momentum=None) if ndim % 2 else {}
    ref, ref_eval = _steps_with_empty_batch("torch", ndim, kw)
    ours, ours_eval = _steps_with_empty_batch(pkg, ndim, kw)
    for i, (o, r) in enumerate(zip(ours, ref)):
        assert o[0] == r[0] and o[5] == r[5] == i + 1, (i, o[0], r[0], o[5], r[5])
        for a, b_ in zip(o[1:5], r[1:5]):
            np.testing.assert_allclose(a, b_, rtol=0, atol=limit("float64", b_))
    np.testing.assert_array_equal(ours[1][1], 0.0)
    np.testing.assert_array_equal(ours[1][3], ours[0][3])  # unchanged by the empty batch
    np.testing.assert_allclose(ours_eval, ref_eval, rtol=0, atol=limit("float64", ref_eval))
    assert np.isfinite(ours_eval).all()


TORCHINIT_FLAX_KINDS = ["int32", "complex64", "1-D", "6-D", "one value per channel", "eps=0, one value per channel",
                        "mask, fast variance"]


@pytest.mark.parametrize("kind", TORCHINIT_FLAX_KINDS)
def test_torchinit_flax_rules_accept_what_flax_accepts(kind):
    """torchinit's 'flax' convention on the inputs Flax accepts and PyTorch's rules refuse,
    against flax.nnx.BatchNorm (float32 statistics, as torch's float32 buffers; complex
    statistics keep their real part in both): outputs of 3 training steps, the running
    statistics, evaluation. float32 on both sides, different summation orders: F32_TOL relative
    to max(1, |reference|); NaN where Flax gives NaN (eps=0 with one value per channel)."""
    xs, ours_kw, flax_kw, mask = _flax_kind_inputs(kind)
    ours = torchinit.BatchNorm.from_convention("flax", C, axis=-1, **ours_kw)
    theirs = nnx.BatchNorm(C, rngs=nnx.Rngs(0), **flax_kw)
    kw = {} if mask is None else {"mask": mask}

    def check(a, b, what):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and (np.iscomplexobj(a) == np.iscomplexobj(b)), (what, a.shape, b.shape)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
        ok = ~np.isnan(b)
        if ok.any():
            np.testing.assert_allclose(a[ok], b[ok], rtol=0, atol=F32_TOL * max(1.0, float(np.abs(b[ok]).max())),
                                       err_msg=what)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        for i, x in enumerate(xs[:3]):
            xt = torch.from_numpy(np.asarray(x))
            y = ours(xt, torch.from_numpy(mask)) if mask is not None else ours(xt)
            check(y.detach().numpy(), theirs(x, **kw), f"y step {i}")
            check(ours.running_mean.numpy(), theirs.mean[...], f"mean step {i}")
            check(ours.running_var.numpy(), theirs.var[...], f"var step {i}")
    ours.eval()
    theirs.eval()
    check(ours(torch.from_numpy(np.asarray(xs[3]))).detach().numpy(), theirs(xs[3]), "eval")


def test_flax_mask_broadcast_changes_bits():
    """The mask cases above can tell Flax's unbroadcast mask from a broadcast one: with these
    inputs flax.linen.BatchNorm itself gives other float32 bits for the broadcast mask."""
    for kind in ("mask, fast variance", "mask, two-pass variance"):
        xs, _, flax_kw, mask = _flax_kind_inputs(kind)
        bn = fnn.BatchNorm(**flax_kw)
        v = bn.init(jax.random.key(0), xs[0], use_running_average=False)
        diffs = []
        for x in xs[:3]:
            y1, _ = bn.apply(v, x, use_running_average=False, mask=mask, mutable=["batch_stats"])
            y2, _ = bn.apply(v, x, use_running_average=False, mask=np.broadcast_to(mask, x.shape),
                             mutable=["batch_stats"])
            diffs.append(float(jnp.abs(y1 - y2).max()))
        record_figure("bn flax mask broadcast vs not", "max|d y|", max(diffs), kind)
        assert max(diffs) > 0, kind
