"""Exact structure checks: eye, dirac, sparse, constant, orthogonal and svd,
in both packages, against the real torch.nn.init in the matching layout."""
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
from parity_tests._figures import TORCH_DEVICE, record_figure
from parity_tests._layers import layer_layouts
from parity_tests.test_initializers import DTYPES, IMPLS, P_MIN, ours_sample, torch_sample

PKG = {"jaxinit": jaxinit, "torchinit": torchinit}


def _torch_to_flax_conv(w: np.ndarray) -> np.ndarray:
    """(out, in, *k) -> (*k, in, out)."""
    return np.moveaxis(np.moveaxis(w, 0, -1), 0, -2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (0, 3)])
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16", "float64"])
def test_eye_is_torch_eye_transposed(impl, shape, dtype_name):
    ours = ours_sample(impl, PKG[impl].eye(), shape, dtype_name)
    ref = torch.nn.init.eye_(torch.empty(shape[::-1])).numpy().T  # torch (out, in) -> flax (in, out)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("tshape,groups", [((6, 4, 5), 1), ((8, 4, 3, 3), 2), ((6, 6, 3, 4), 3),
                                           ((4, 8, 2, 3, 3), 1), ((9, 3, 4, 4), 3), ((4, 2, 3, 3), 1)])
def test_dirac_matches_torch_in_flax_layout(impl, tshape, groups):
    """Centre k//2 (JAX's delta_orthogonal uses (k-1)//2), per-group identity."""
    ref = torch.nn.init.dirac_(torch.empty(tshape), groups).numpy()
    fshape = _torch_to_flax_conv(ref).shape
    ours = ours_sample(impl, PKG[impl].dirac(groups), fshape, "float32")
    np.testing.assert_array_equal(ours, _torch_to_flax_conv(ref))
    ours_t = ours_sample(impl, PKG[impl].dirac(groups, **PKG[impl].TORCH_LAYOUT), tshape, "float32")
    np.testing.assert_array_equal(ours_t, ref)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("val,dtype_name", [(0.25, "float32"), (-3.5, "float64"), (1.5, "bfloat16")])
def test_constant_zeros_ones(impl, val, dtype_name):
    P = PKG[impl]
    for init, expected in ((P.constant(val), val), (P.zeros(), 0.0), (P.ones(), 1.0)):
        x = ours_sample(impl, init, (3, 4, 5), dtype_name)
        assert np.all(x == expected)


def test_constant_integer_dtypes_like_torch():
    ref = torch.nn.init.constant_(torch.empty(3, 4, dtype=torch.int32), 7)
    np.testing.assert_array_equal(np.asarray(jaxinit.constant(7)(jax.random.key(0), (3, 4), jnp.int32)), ref.numpy())
    np.testing.assert_array_equal(torchinit.constant(7)(0, (3, 4), torch.int32).numpy(), ref.numpy())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.99, 1.0])
def test_sparse_zero_pattern_matches_torch(impl, sparsity):
    """ceil(sparsity * rows) zeros in every column of the torch (rows=out, cols=in)
    weight, i.e. along the out axis of the Flax (in, out) kernel; the non-zeros are N(0, std^2)."""
    rows, cols, std = 200, 300, 0.05
    ref = torch.nn.init.sparse_(torch.empty(rows, cols), sparsity, std).numpy()
    ours = ours_sample(impl, PKG[impl].sparse(sparsity, std), (cols, rows), "float32").T
    np.testing.assert_array_equal((ours == 0).sum(axis=0), (ref == 0).sum(axis=0))
    assert np.all((ours == 0).sum(axis=0) == math.ceil(sparsity * rows))
    nz = ours[ours != 0]
    if nz.size > 1000:
        p = scipy.stats.ks_2samp(nz, ref[ref != 0]).pvalue
        record_figure("sparse", "ks_p", p, f"sparsity={sparsity}/{impl}")
        assert p >= P_MIN


def _check_semi_orthogonal(m: np.ndarray, gain: float, tol: float):
    rows, cols = m.shape
    g = m @ m.T if rows <= cols else m.T @ m
    err = np.abs(g - gain**2 * np.eye(min(rows, cols))).max()
    assert err <= tol * gain**2, f"max |W W^T - g^2 I| = {err}"
    return err


ORTHO_TOL = {"float32": 1e-5, "float64": 1e-13, "bfloat16": 3e-2, "float16": 4e-3}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("layer", ["linear", "conv2d", "conv3d", "conv_transpose2d"])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal(impl, dtype_name, layer, gain):
    """Semi-orthogonal in PyTorch's view (rows = out axis, cols = the rest), to
    float-precision tolerances; entries distributed as torch.nn.init.orthogonal_'s
    (torch fails in 16-bit on CPU: the reference is drawn in float32 and cast)."""
    tshape, fshape, layout = layer_layouts()[layer]
    oax = layout["out_axis"]
    ours = ours_sample(impl, PKG[impl].orthogonal(gain, out_axis=oax), fshape, dtype_name)
    mat = np.moveaxis(ours, oax, 0).reshape(fshape[oax], -1)
    err = _check_semi_orthogonal(mat, gain, ORTHO_TOL[dtype_name])
    record_figure("orthogonal", "max_gram_err", err / gain**2, f"{layer}/{dtype_name}/{impl}")
    ref_dtype = "float32" if dtype_name in ("bfloat16", "float16") and TORCH_DEVICE.type == "cpu" else dtype_name
    ref = torch_sample(lambda t: torch.nn.init.orthogonal_(t, gain), tshape, ref_dtype)
    if ref_dtype != dtype_name:
        ref = torch.tensor(ref).to(DTYPES[dtype_name][1]).double().numpy()
    p = scipy.stats.ks_2samp(ours.ravel(), ref.ravel()).pvalue
    record_figure("orthogonal", "ks_p", p, f"{layer}/{dtype_name}/{impl}")
    assert p >= P_MIN


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fshape", [(64, 32), (32, 64), (3, 3, 16, 8), (3, 3, 4, 64)])
@pytest.mark.parametrize("dtype_name", ["float32", "float64", "bfloat16"])
def test_svd_spectrum(impl, fshape, dtype_name):
    rows = fshape[-1]
    cols = math.prod(fshape) // rows
    k = min(rows, cols)
    spectrum = np.linspace(3.0, 0.5, k)
    ours = ours_sample(impl, PKG[impl].svd(spectrum.tolist()), fshape, dtype_name)
    s = np.linalg.svd(np.moveaxis(ours, -1, 0).reshape(rows, cols), compute_uv=False)
    tol = {"float32": 1e-5, "float64": 1e-12, "bfloat16": 2e-2}[dtype_name]
    err = np.abs(s - spectrum).max() / spectrum.max()
    record_figure("svd", "max_rel_sv_err", err, f"{fshape}/{dtype_name}/{impl}")
    assert err <= tol


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fshape", [(40, 30), (3, 3, 8, 16)])
def test_svd_scalar_is_orthogonal_same_draw(impl, fshape):
    """svd(g) is orthogonal(g): the same draw, bit for bit."""
    P = PKG[impl]
    a = ours_sample(impl, P.svd(1.7), fshape, "float32")
    b = ours_sample(impl, P.orthogonal(1.7), fshape, "float32")
    np.testing.assert_array_equal(a, b)


def test_svd_spectrum_singular_vectors_are_haar():
    """With a spectrum, W = U diag(s) V^T with Haar U, V: the right singular
    vectors' entries are distributed like those of torch's orthogonal_ matrix."""
    spectrum = np.linspace(2.0, 1.0, 64)
    ws = np.asarray(jaxinit.svd(spectrum.tolist())(jax.random.key(3), (64, 64), jnp.float64))
    _, _, vt = np.linalg.svd(ws)
    ref = torch.nn.init.orthogonal_(torch.empty(64, 64, dtype=torch.float64)).numpy()
    p = scipy.stats.ks_2samp(np.abs(vt).ravel(), np.abs(ref).ravel()).pvalue
    record_figure("svd", "ks_p", p, "right singular vectors vs orthogonal_")
    assert p >= P_MIN
