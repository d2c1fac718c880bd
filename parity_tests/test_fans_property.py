"""Property tests (hypothesis) of the fan computation against the real upstream:
torch's ``_calculate_fan_in_and_fan_out`` for PyTorch layouts and their Flax
transposes, and JAX's ``_compute_fans`` for arbitrary in/out/batch axes."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jax._src.nn.initializers import _compute_fans as jax_compute_fans

from _jaxinit import FLAX_CONV_TRANSPOSE_LAYOUT, FLAX_LAYOUT, TORCH_LAYOUT, compute_fans

dims = st.integers(min_value=1, max_value=7)


@settings(max_examples=150, deadline=None)
@given(out_ch=dims, in_ch=dims, kernel=st.lists(dims, min_size=0, max_size=3))
def test_flax_layout_gives_torch_fans(out_ch, in_ch, kernel):
    """Conv/Linear: torch (out, in, *k) and Flax (*k, in, out) give the same fans."""
    tshape = (out_ch, in_ch, *kernel)
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(tshape, device="meta"))
    assert compute_fans(tshape, **TORCH_LAYOUT) == expected
    assert compute_fans((*kernel, in_ch, out_ch), **FLAX_LAYOUT) == expected


@settings(max_examples=200, deadline=None)
@given(in_ch=dims, out_ch=dims, kernel=st.lists(dims, min_size=1, max_size=3))
def test_conv_transpose_rule(in_ch, out_ch, kernel):
    """torch ConvTranspose weight (in, out, *k): fan_in = out * prod(k) (pytorch#7865).
    Flax ConvTranspose kernel (*k, in, out) reaches it with FLAX_CONV_TRANSPOSE_LAYOUT."""
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty((in_ch, out_ch, *kernel), device="meta"))
    assert compute_fans((*kernel, in_ch, out_ch), **FLAX_CONV_TRANSPOSE_LAYOUT) == expected


@st.composite
def shape_and_axes(draw):
    ndim = draw(st.integers(min_value=2, max_value=6))
    shape = tuple(draw(st.lists(dims, min_size=ndim, max_size=ndim)))
    perm = draw(st.permutations(range(ndim)))
    n_in = draw(st.integers(1, ndim - 1))
    n_out = draw(st.integers(1, ndim - n_in))
    n_batch = draw(st.integers(0, ndim - n_in - n_out))
    ins, outs = perm[:n_in], perm[n_in:n_in + n_out]
    batch = perm[n_in + n_out:n_in + n_out + n_batch]
    neg = draw(st.booleans())
    if neg:  # negative axes mean the same
        ins = [a - ndim for a in ins]
    as_int = draw(st.booleans())
    in_axis = ins[0] if as_int and len(ins) == 1 else tuple(ins)
    return shape, in_axis, tuple(outs), tuple(batch)


@settings(max_examples=250, deadline=None)
@given(shape_and_axes())
def test_matches_jax_compute_fans(case):
    shape, in_axis, out_axis, batch_axis = case
    fi, fo = jax_compute_fans(shape, in_axis, out_axis, batch_axis)
    assert compute_fans(shape, in_axis, out_axis, batch_axis) == (int(fi), int(fo))


@settings(max_examples=200, deadline=None)
@given(st.lists(dims, min_size=2, max_size=5), st.data())
def test_fan_product_invariant(shape, data):
    """fan_in * fan_out = numel * receptive for any split of the axes."""
    ndim = len(shape)
    i, o = data.draw(st.permutations(range(ndim)))[:2]
    fi, fo = compute_fans(shape, i, o)
    receptive = int(np.prod(shape)) // (shape[i] * shape[o])
    assert fi * fo == int(np.prod(shape)) * receptive
