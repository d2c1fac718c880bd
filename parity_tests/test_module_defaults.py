"""Module defaults: jaxinit.linen / jaxinit.nnx (Flax layers with PyTorch's init)
against the REAL torch.nn modules, and torchinit.nn (torch modules with Flax's
init) against the REAL flax.linen / flax.nnx layers.

Random sources differ between the frameworks, so parameters are compared in
distribution:

- shapes: every Flax parameter has the shape of its torch counterpart (up to
  the documented transpose/reshape);
- uniform bounds: max |w| <= bound and > 0.9 * bound, where the bound is taken
  from torch itself (``torch.nn.init._calculate_fan_in_and_fan_out`` on the
  torch module's weight) and torch's own samples must satisfy the same check;
- a two-sample Kolmogorov-Smirnov test between the flattened samples with
  p > P_MIN, and the sample standard deviations within STD_SIGMAS standard
  errors of each other;
- constant parameters (zeros / ones) compared exactly.

Everything is seeded, so the results are deterministic.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch
from flax import nnx

import jaxinit
import jaxinit.linen as tl
import jaxinit.nnx as tn
import torchinit.nn as fnn
from parity_tests._figures import record_figure

SEED = 0
# Under the null hypothesis (same distribution) the KS p-value is Uniform(0, 1),
# so p > 1e-3 fails a correct layer with probability 1e-3 per comparison (about
# 5% over the ~50 comparisons here, for a given seed; the seed is fixed, so the
# outcome is deterministic). A wrong fan rule or distribution (the defects these
# tests exist for) changes the scale by 25% or more and gives p < 1e-30 at these
# sample sizes.
P_MIN = 1e-3
# The standard error of the difference of two sample stds of n draws is about
# std / sqrt(n) (normal: 1/sqrt(2n) each); 6 standard errors.
STD_SIGMAS = 6.0


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64).ravel()


def _cat(*xs) -> np.ndarray:
    return np.concatenate([_np(x) for x in xs])


def _same_distribution(ours, ref, label: str) -> float:
    """KS test and std comparison; returns the KS p-value."""
    a, b = _np(ours), _np(ref)
    p = scipy.stats.ks_2samp(a, b).pvalue
    assert p > P_MIN, f"{label}: KS p={p:.2e} <= {P_MIN} (std {a.std():.5f} vs {b.std():.5f})"
    rtol = STD_SIGMAS / math.sqrt(min(a.size, b.size))
    rel_std = abs(a.std() / b.std() - 1)
    assert rel_std < rtol, f"{label}: std {a.std():.5f} vs {b.std():.5f} (rtol {rtol:.3f})"
    family = "module " + label.split(".")[0].split("-")[0] + (" bias" if "bias" in label else " weight")
    record_figure(family, "ks_p", p, label)
    record_figure(family, "rel_std_diff", rel_std, label)
    return p


def _uniform_bound(x, bound: float, label: str) -> None:
    m = np.abs(_np(x)).max()
    assert m <= bound * (1 + 1e-6), f"{label}: max |w| = {m} > bound {bound}"
    assert m > 0.9 * bound, f"{label}: max |w| = {m} <= 0.9 * bound {bound}: bound too small?"


def _torch_fan_in(w: torch.Tensor) -> int:
    return torch.nn.init._calculate_fan_in_and_fan_out(w)[0]


def _linear_bound(w: torch.Tensor) -> float:
    """torch's Linear/Conv default bound for weight and bias, from torch's fan rule."""
    return 1 / math.sqrt(_torch_fan_in(w))


def _key():
    return jax.random.key(SEED)


def _rngs():
    return nnx.Rngs(SEED)


def _torch(module_fn):
    torch.manual_seed(SEED)
    return module_fn()


def _t(w: torch.Tensor) -> np.ndarray:
    return w.detach().cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Cases: each returns {group: (torch_samples, linen_samples, nnx_samples, kind, bound)}.
# kind "uniform" checks the bound, "normal" a plain comparison, "zeros"/"ones" exact values.
def case_linear():
    m = _torch(lambda: torch.nn.Linear(256, 512))
    lp = tl.Dense(512).init(_key(), jnp.ones((1, 256)))["params"]
    n = tn.Linear(256, 512, rngs=_rngs())
    assert lp["kernel"].shape == n.kernel.shape == m.weight.T.shape
    assert lp["bias"].shape == n.bias.shape == m.bias.shape
    b = _linear_bound(m.weight)
    return {
        "weight": (m.weight, lp["kernel"], n.kernel[...], "uniform", b),
        "bias": (m.bias, lp["bias"], n.bias[...], "uniform", b),
    }


def _conv_case(dim: int, cin: int, cout: int, k: int, groups: int):
    torch_cls = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[dim]
    m = _torch(lambda: torch_cls(cin, cout, k, groups=groups))
    ks = (k,) * dim
    x = jnp.ones((1,) + (k + 2,) * dim + (cin,))
    lp = tl.Conv(cout, ks, feature_group_count=groups).init(_key(), x)["params"]
    n = tn.Conv(cin, cout, ks, feature_group_count=groups, rngs=_rngs())
    # Flax (*k, in/groups, out) <-> torch (out, in/groups, *k)
    perm = tuple(range(2, 2 + dim)) + (1, 0)
    assert lp["kernel"].shape == n.kernel.shape == tuple(m.weight.permute(perm).shape)
    # the bias bound is the weight's fan_in bound, as for Linear (torch's _ConvNd.reset_parameters)
    assert lp["bias"].shape == n.bias.shape == m.bias.shape
    b = _linear_bound(m.weight)
    return {
        "weight": (m.weight, lp["kernel"], n.kernel[...], "uniform", b),
        "bias": (m.bias, lp["bias"], n.bias[...], "uniform", b),
    }


def _conv_transpose_case(dim: int, cin: int, cout: int, k: int, transpose_kernel: bool):
    torch_cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[dim]
    # Flax's ConvTranspose has no groups, so only torch's groups=1 has a counterpart.
    m = _torch(lambda: torch_cls(cin, cout, k))
    ks = (k,) * dim
    x = jnp.ones((1,) + (3,) * dim + (cin,))
    lp = tl.ConvTranspose(cout, ks, transpose_kernel=transpose_kernel).init(_key(), x)["params"]
    n = tn.ConvTranspose(cin, cout, ks, transpose_kernel=transpose_kernel, rngs=_rngs())
    # torch (in, out, *k); Flax (*k, in, out), or (*k, out, in) with transpose_kernel
    perm = tuple(range(2, 2 + dim)) + ((1, 0) if transpose_kernel else (0, 1))
    assert lp["kernel"].shape == n.kernel.shape == tuple(m.weight.permute(perm).shape)
    assert lp["bias"].shape == n.bias.shape == m.bias.shape
    b = _linear_bound(m.weight)  # torch's fan_in = out * prod(k) (pytorch#7865)
    assert _torch_fan_in(m.weight) == cout * k**dim
    return {
        "weight": (m.weight, lp["kernel"], n.kernel[...], "uniform", b),
        "bias": (m.bias, lp["bias"], n.bias[...], "uniform", b),
    }


def case_embedding():
    pad = 3
    m = _torch(lambda: torch.nn.Embedding(1000, 128, padding_idx=pad))
    lp = tl.Embed(1000, 128, padding_idx=pad).init(_key(), jnp.array([0]))["params"]
    n = tn.Embed(1000, 128, padding_idx=pad, rngs=_rngs())
    le, ne, te = np.asarray(lp["embedding"]), np.asarray(n.embedding[...]), _t(m.weight)
    assert le.shape == ne.shape == te.shape
    keep = np.arange(1000) != pad
    return {
        "weight": (te[keep], le[keep], ne[keep], "normal", None),
        "padding row": (te[pad], le[pad], ne[pad], "zeros", None),
    }


def case_layernorm():
    m = _torch(lambda: torch.nn.LayerNorm(256))
    lp = tl.LayerNorm().init(_key(), jnp.ones((1, 256)))["params"]
    n = tn.LayerNorm(256, rngs=_rngs())
    return {
        "weight": (m.weight, lp["scale"], n.scale[...], "ones", None),
        "bias": (m.bias, lp["bias"], n.bias[...], "zeros", None),
    }


def _cell_carry(cell, x):
    return cell.initialize_carry(jax.random.key(SEED + 1), x.shape)


def case_lstm():
    hidden, inp = 256, 128
    m = _torch(lambda: torch.nn.LSTMCell(inp, hidden))
    cell = tl.LSTMCell(hidden)
    x = jnp.ones((1, inp))
    lp = cell.init(_key(), _cell_carry(cell, x), x)["params"]
    n = tn.LSTMCell(inp, hidden, rngs=_rngs())
    gates_i, gates_h = ("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho")
    n_i = [getattr(n, "if_" if g == "if" else g) for g in gates_i]
    n_h = [getattr(n, g) for g in gates_h]
    # torch weight_ih (4H, in) = gates (i, f, g, o) of (H, in) = Flax (in, H) kernels transposed
    for w_t, g in zip(m.weight_ih.chunk(4, 0), gates_i):
        assert lp[g]["kernel"].shape == tuple(w_t.T.shape)
    for w_t, g in zip(m.weight_hh.chunk(4, 0), gates_h):
        assert lp[g]["kernel"].shape == tuple(w_t.T.shape) and lp[g]["bias"].shape == (hidden,)
    b = 1 / math.sqrt(m.hidden_size)  # RNNCellBase.reset_parameters: stdv = 1 / sqrt(hidden_size)
    return {
        "weight_ih": (m.weight_ih, _cat(*(lp[g]["kernel"] for g in gates_i)),
                      _cat(*(c.kernel[...] for c in n_i)), "uniform", b),
        "weight_hh": (m.weight_hh, _cat(*(lp[g]["kernel"] for g in gates_h)),
                      _cat(*(c.kernel[...] for c in n_h)), "uniform", b),
        # Flax has one bias per gate where torch has bias_ih and bias_hh: each Flax bias is
        # distributed as one torch bias vector (documented).
        "bias_hh": (m.bias_hh, _cat(*(lp[g]["bias"] for g in gates_h)),
                    _cat(*(c.bias[...] for c in n_h)), "uniform", b),
        "bias_ih": (m.bias_ih, _cat(*(lp[g]["bias"] for g in gates_h)),
                    _cat(*(c.bias[...] for c in n_h)), "uniform", b),
    }


def case_gru():
    hidden, inp = 256, 128
    m = _torch(lambda: torch.nn.GRUCell(inp, hidden))
    cell = tl.GRUCell(hidden)
    x = jnp.ones((1, inp))
    lp = cell.init(_key(), _cell_carry(cell, x), x)["params"]
    n = tn.GRUCell(inp, hidden, rngs=_rngs())
    assert n.dense_i.kernel.shape == tuple(m.weight_ih.T.shape)
    assert n.dense_h.kernel.shape == tuple(m.weight_hh.T.shape)
    assert n.dense_i.bias.shape == m.bias_ih.shape
    for w_t, g in zip(m.weight_ih.chunk(3, 0), ("ir", "iz", "in")):
        assert lp[g]["kernel"].shape == tuple(w_t.T.shape) and lp[g]["bias"].shape == (hidden,)
    b = 1 / math.sqrt(m.hidden_size)  # RNNCellBase.reset_parameters
    return {
        "weight_ih": (m.weight_ih, _cat(*(lp[g]["kernel"] for g in ("ir", "iz", "in"))),
                      n.dense_i.kernel[...], "uniform", b),
        "weight_hh": (m.weight_hh, _cat(*(lp[g]["kernel"] for g in ("hr", "hz", "hn"))),
                      n.dense_h.kernel[...], "uniform", b),
        "bias_ih": (m.bias_ih, _cat(*(lp[g]["bias"] for g in ("ir", "iz", "in"))),
                    n.dense_i.bias[...], "uniform", b),
    }


def _mha_case(embed: int, heads: int, kvdim: int | None):
    m = _torch(lambda: torch.nn.MultiheadAttention(embed, heads, kdim=kvdim, vdim=kvdim, batch_first=True))
    kv_in = kvdim or embed
    q, kv = jnp.ones((1, 4, embed)), jnp.ones((1, 4, kv_in))
    lp = tl.MultiHeadDotProductAttention(num_heads=heads).init(_key(), q, kv, kv)["params"]
    n = tn.MultiHeadAttention(heads, embed, in_kv_features=kvdim, rngs=_rngs(), decode=False)
    hd = embed // heads
    if m._qkv_same_embed_dim:
        w_q, w_k, w_v = m.in_proj_weight.chunk(3, 0)
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.in_proj_weight)
        b_q = b_kv = math.sqrt(6.0 / (fan_in + fan_out))  # torch: xavier_uniform_(in_proj_weight)
    else:
        w_q, w_k, w_v = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
        b_q, b_kv = (math.sqrt(6.0 / sum(torch.nn.init._calculate_fan_in_and_fan_out(w)))
                     for w in (w_q, w_k))
    for w, name in ((w_q, "query"), (w_k, "key"), (w_v, "value")):
        # Flax (in, heads, head_dim) <-> torch (E, in)
        assert lp[name]["kernel"].shape == getattr(n, name).kernel.shape == (w.shape[1], heads, hd)
    assert lp["out"]["kernel"].shape == (heads, hd, embed) == tuple(m.out_proj.weight.T.reshape(heads, hd, embed).shape)
    return {
        "q_proj": (w_q, lp["query"]["kernel"], n.query.kernel[...], "uniform", b_q),
        "kv_proj": (_cat(w_k, w_v), _cat(lp["key"]["kernel"], lp["value"]["kernel"]),
                    _cat(n.key.kernel[...], n.value.kernel[...]), "uniform", b_kv),
        "in_proj_bias": (m.in_proj_bias, _cat(*(lp[k]["bias"] for k in ("query", "key", "value"))),
                         _cat(n.query.bias[...], n.key.bias[...], n.value.bias[...]), "zeros", None),
        "out_proj.weight": (m.out_proj.weight, lp["out"]["kernel"], n.out.kernel[...], "uniform",
                            _linear_bound(m.out_proj.weight)),
        "out_proj.bias": (m.out_proj.bias, lp["out"]["bias"], n.out.bias[...], "zeros", None),
    }


TORCH_CASES = {
    "Linear": case_linear,
    "Conv1d": lambda: _conv_case(1, 32, 256, 5, 1),
    "Conv2d-groups4": lambda: _conv_case(2, 64, 256, 3, 4),
    "Conv3d-groups2": lambda: _conv_case(3, 16, 256, 2, 2),
    "ConvTranspose1d": lambda: _conv_transpose_case(1, 64, 256, 4, False),
    "ConvTranspose2d-transpose_kernel": lambda: _conv_transpose_case(2, 32, 256, 3, True),
    "ConvTranspose3d": lambda: _conv_transpose_case(3, 16, 256, 2, False),
    "Embedding": case_embedding,
    "LayerNorm": case_layernorm,
    "LSTMCell": case_lstm,
    "GRUCell": case_gru,
    "MultiheadAttention": lambda: _mha_case(256, 8, None),
    "MultiheadAttention-kdim": lambda: _mha_case(256, 8, 128),
}


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_jaxinit_layers_match_torch_defaults(name):
    for group, (t, lin, nx, kind, bound) in TORCH_CASES[name]().items():
        label = f"{name}.{group}"
        t, lin, nx = _np(t), _np(lin), _np(nx)
        assert t.size == lin.size == nx.size, f"{label}: sizes {t.size}, {lin.size}, {nx.size}"
        if kind in ("zeros", "ones"):
            want = 0.0 if kind == "zeros" else 1.0
            for x, who in ((t, "torch"), (lin, "linen"), (nx, "nnx")):
                assert (x == want).all(), f"{label}: {who} is not all {kind}"
            continue
        if kind == "uniform":
            for x, who in ((t, "torch"), (lin, "linen"), (nx, "nnx")):
                _uniform_bound(x, bound, f"{label} ({who})")
        _same_distribution(lin, t, f"{label}: linen vs torch")
        _same_distribution(nx, t, f"{label}: nnx vs torch")
        _same_distribution(lin, nx, f"{label}: linen vs nnx")


# ----------------------------------------------------------------------------------------------
# torchinit.nn against the real Flax defaults.
def _truncated_like(ours, ref, label):
    """Flax's lecun_normal is truncated at 2 std: with this many draws both maxima sit at the cut."""
    a, b = np.abs(_np(ours)).max(), np.abs(_np(ref)).max()
    assert abs(a / b - 1) < 0.01, f"{label}: max |w| {a} vs flax {b}"
    _same_distribution(ours, ref, label)


def _flax_cases():
    def linear():
        m = _torch(lambda: fnn.Linear(256, 512))
        lp = nn.Dense(512).init(_key(), jnp.ones((1, 256)))["params"]
        n = nnx.Linear(256, 512, rngs=_rngs())
        assert lp["kernel"].shape == tuple(m.weight.T.shape)
        return {"weight": (m.weight, lp["kernel"], n.kernel[...], "truncated"),
                "bias": (m.bias, lp["bias"], n.bias[...], "zeros")}

    def conv():
        m = _torch(lambda: fnn.Conv2d(64, 256, 3, groups=4))
        lp = nn.Conv(256, (3, 3), feature_group_count=4).init(_key(), jnp.ones((1, 5, 5, 64)))["params"]
        n = nnx.Conv(64, 256, (3, 3), feature_group_count=4, rngs=_rngs())
        assert lp["kernel"].shape == tuple(m.weight.permute(2, 3, 1, 0).shape)
        return {"weight": (m.weight, lp["kernel"], n.kernel[...], "truncated"),
                "bias": (m.bias, lp["bias"], n.bias[...], "zeros")}

    def conv1d():
        m = _torch(lambda: fnn.Conv1d(32, 256, 5))
        lp = nn.Conv(256, (5,)).init(_key(), jnp.ones((1, 7, 32)))["params"]
        n = nnx.Conv(32, 256, (5,), rngs=_rngs())
        return {"weight": (m.weight, lp["kernel"], n.kernel[...], "truncated")}

    def conv3d():
        m = _torch(lambda: fnn.Conv3d(16, 256, 2, groups=2))
        lp = nn.Conv(256, (2, 2, 2), feature_group_count=2).init(_key(), jnp.ones((1, 3, 3, 3, 16)))["params"]
        n = nnx.Conv(16, 256, (2, 2, 2), feature_group_count=2, rngs=_rngs())
        return {"weight": (m.weight, lp["kernel"], n.kernel[...], "truncated")}

    def conv_transpose(dim):
        cls = {1: fnn.ConvTranspose1d, 2: fnn.ConvTranspose2d, 3: fnn.ConvTranspose3d}[dim]
        # 3-d: 16 -> 128 channels, 55k draws (as many as the 1-d case; 64 -> 256 took 442k and most of
        # this file's time): a 10% std error still gives KS p ~ 1e-10 and 23 standard errors on the std.
        cin, cout = (16, 128) if dim == 3 else (64, 256)
        m = _torch(lambda: cls(cin, cout, 3))
        ks = (3,) * dim
        lp = nn.ConvTranspose(cout, ks).init(_key(), jnp.ones((1,) + (3,) * dim + (cin,)))["params"]
        n = nnx.ConvTranspose(cin, cout, ks, rngs=_rngs())
        assert lp["kernel"].shape == tuple(m.weight.permute(tuple(range(2, 2 + dim)) + (0, 1)).shape)
        return {"weight": (m.weight, lp["kernel"], n.kernel[...], "truncated"),
                "bias": (m.bias, lp["bias"], n.bias[...], "zeros")}

    def embedding():
        m = _torch(lambda: fnn.Embedding(1000, 128, padding_idx=3))
        lp = nn.Embed(1000, 128).init(_key(), jnp.array([0]))["params"]
        n = nnx.Embed(1000, 128, rngs=_rngs())
        keep = np.arange(1000) != 3
        assert (_t(m.weight)[3] == 0).all()
        return {"weight": (_t(m.weight)[keep], np.asarray(lp["embedding"])[keep],
                           np.asarray(n.embedding[...])[keep], "normal")}

    def layernorm():
        m = _torch(lambda: fnn.LayerNorm(256))
        flax_eps = nn.LayerNorm().epsilon
        assert m.eps == flax_eps == nnx.LayerNorm(256, rngs=_rngs()).epsilon
        lp = nn.LayerNorm().init(_key(), jnp.ones((1, 256)))["params"]
        n = nnx.LayerNorm(256, rngs=_rngs())
        return {"weight": (m.weight, lp["scale"], n.scale[...], "ones"),
                "bias": (m.bias, lp["bias"], n.bias[...], "zeros")}

    def lstm():
        # LSTMCell(64, 128): 33k input and 66k hidden draws (128 -> 256 took 4x as many and the
        # largest share of this file's time); a 10% std error still gives KS p < 2e-6 and >= 18
        # standard errors on the std, against P_MIN = 1e-3.
        m = _torch(lambda: fnn.LSTMCell(64, 128))
        cell = nn.LSTMCell(128)
        x = jnp.ones((1, 64))
        lp = cell.init(_key(), _cell_carry(cell, x), x)["params"]
        n = nnx.LSTMCell(64, 128, rngs=_rngs())
        for chunk in m.weight_hh.detach().chunk(4, 0):  # each gate block orthogonal, as Flax's kernels
            torch.testing.assert_close(chunk @ chunk.T, torch.eye(128), atol=1e-4, rtol=0)
        return {
            "weight_ih": (m.weight_ih, _cat(*(lp[g]["kernel"] for g in ("ii", "if", "ig", "io"))),
                          _cat(*(getattr(n, g).kernel[...] for g in ("ii", "if_", "ig", "io"))), "truncated"),
            "weight_hh": (m.weight_hh, _cat(*(lp[g]["kernel"] for g in ("hi", "hf", "hg", "ho"))),
                          _cat(*(getattr(n, g).kernel[...] for g in ("hi", "hf", "hg", "ho"))), "normal"),
            # Flax's one bias per gate <-> bias_hh; torch's extra bias_ih must be zero as well.
            "bias_hh": (m.bias_hh, _cat(*(lp[g]["bias"] for g in ("hi", "hf", "hg", "ho"))),
                        _cat(*(getattr(n, g).bias[...] for g in ("hi", "hf", "hg", "ho"))), "zeros"),
            "bias_ih": (m.bias_ih, None, None, "zeros"),
        }

    def gru_linen():
        m = _torch(lambda: fnn.GRUCell(128, 256))
        cell = nn.GRUCell(256)
        x = jnp.ones((1, 128))
        lp = cell.init(_key(), _cell_carry(cell, x), x)["params"]
        return {
            "weight_ih": (m.weight_ih, _cat(*(lp[g]["kernel"] for g in ("ir", "iz", "in"))), None, "truncated"),
            "weight_hh": (m.weight_hh, _cat(*(lp[g]["kernel"] for g in ("hr", "hz", "hn"))), None, "normal"),
            "bias_ih": (m.bias_ih, _cat(*(lp[g]["bias"] for g in ("ir", "iz", "in"))), None, "zeros"),
            "bias_hh": (m.bias_hh, None, None, "zeros"),
            "hn.bias": (m.bias_hh.chunk(3, 0)[2], lp["hn"]["bias"], None, "zeros"),
        }

    def gru_nnx():
        m = _torch(lambda: fnn.GRUCell(128, 256, flax_variant="nnx"))
        n = nnx.GRUCell(128, 256, rngs=_rngs())
        w = m.weight_hh.detach()  # one (3H, H) matrix with orthonormal columns, as NNX's (H, 3H) kernel
        torch.testing.assert_close(w.T @ w, torch.eye(256), atol=1e-4, rtol=0)
        return {
            "weight_ih": (m.weight_ih, None, n.dense_i.kernel[...], "truncated"),
            "weight_hh": (m.weight_hh, None, n.dense_h.kernel[...], "normal"),
            "bias_ih": (m.bias_ih, None, n.dense_i.bias[...], "zeros"),
            "bias_hh": (m.bias_hh, None, None, "zeros"),  # NNX's GRU has no b_hn
        }

    def mha():
        # embed 128: 49k in-projection draws (256 took 197k); power as for the LSTMCell above
        m = _torch(lambda: fnn.MultiheadAttention(128, 8, batch_first=True))
        lp = nn.MultiHeadDotProductAttention(num_heads=8).init(_key(), jnp.ones((1, 4, 128)))["params"]
        n = nnx.MultiHeadAttention(8, 128, rngs=_rngs(), decode=False)
        return {
            "in_proj_weight": (m.in_proj_weight, _cat(*(lp[k]["kernel"] for k in ("query", "key", "value"))),
                               _cat(n.query.kernel[...], n.key.kernel[...], n.value.kernel[...]), "truncated"),
            "in_proj_bias": (m.in_proj_bias, _cat(*(lp[k]["bias"] for k in ("query", "key", "value"))),
                             _cat(n.query.bias[...], n.key.bias[...], n.value.bias[...]), "zeros"),
            "out_proj.weight": (m.out_proj.weight, lp["out"]["kernel"], n.out.kernel[...], "truncated"),
            "out_proj.bias": (m.out_proj.bias, lp["out"]["bias"], n.out.bias[...], "zeros"),
        }

    def mha_kdim():
        m = _torch(lambda: fnn.MultiheadAttention(256, 8, kdim=128, vdim=128, batch_first=True))
        n = nnx.MultiHeadAttention(8, 256, in_kv_features=128, rngs=_rngs(), decode=False)
        return {
            "q_proj_weight": (m.q_proj_weight, None, n.query.kernel[...], "truncated"),
            "kv_proj_weight": (_cat(m.k_proj_weight, m.v_proj_weight), None,
                               _cat(n.key.kernel[...], n.value.kernel[...]), "truncated"),
        }

    return {"Linear": linear, "Conv1d": conv1d, "Conv2d-groups4": conv, "Conv3d-groups2": conv3d,
            "ConvTranspose1d": lambda: conv_transpose(1), "ConvTranspose2d": lambda: conv_transpose(2),
            "ConvTranspose3d": lambda: conv_transpose(3), "Embedding": embedding, "LayerNorm": layernorm,
            "LSTMCell": lstm, "GRUCell-linen": gru_linen, "GRUCell-nnx": gru_nnx,
            "MultiheadAttention": mha, "MultiheadAttention-kdim": mha_kdim}


FLAX_CASES = _flax_cases()


@pytest.mark.parametrize("name", list(FLAX_CASES))
def test_torchinit_nn_matches_flax_defaults(name):
    for group, (t, lin, nx, kind) in FLAX_CASES[name]().items():
        if kind in ("zeros", "ones"):
            want = 0.0 if kind == "zeros" else 1.0
            assert (_np(t) == want).all(), f"{name}.{group}: torchinit.nn is not all {kind}"
        for ref, who in ((lin, "flax.linen"), (nx, "flax.nnx")):
            if ref is None:
                continue
            label = f"{name}.{group} vs {who}"
            ours, ref = _np(t), _np(ref)
            assert ours.size == ref.size, f"{label}: sizes {ours.size} vs {ref.size}"
            if kind in ("zeros", "ones"):
                want = 0.0 if kind == "zeros" else 1.0
                assert (ours == want).all() and (ref == want).all(), f"{label}: not all {kind}"
            elif kind == "truncated":
                _truncated_like(ours, ref, label)
            else:
                _same_distribution(ours, ref, label)


# ----------------------------------------------------------------------------------------------
# Mechanism checks.
def test_linen_overrides_are_kept():
    x = jnp.ones((2, 64))
    p = tl.Dense(32, bias_init=nn.initializers.ones, kernel_init=nn.initializers.zeros).init(_key(), x)["params"]
    assert (p["bias"] == 1).all() and (p["kernel"] == 0).all()
    # A custom kernel_init keeps the fan_in-aware default bias (torch's bias uses the weight's fan_in).
    p = tl.Dense(512, kernel_init=nn.initializers.zeros).init(_key(), jnp.ones((1, 256)))["params"]
    _uniform_bound(p["bias"], 1 / 16, "Dense bias with custom kernel_init")
    n = tn.Linear(64, 32, bias_init=nnx.initializers.ones, rngs=_rngs())
    assert (n.bias[...] == 1).all()


def test_linen_bias_under_jit_and_apply():
    layer = tl.Conv(256, (3, 3), feature_group_count=4)
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 64))
    eager = layer.init(_key(), x)
    jitted = jax.jit(layer.init)(_key(), x)
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(np.asarray(eager["params"][name]), np.asarray(jitted["params"][name]))
    _uniform_bound(jitted["params"]["bias"], 1 / math.sqrt(16 * 9), "jitted Conv bias")
    # apply reuses the parameters and never re-runs the initializers
    y = jax.jit(layer.apply)(jitted, x)
    y_ref = nn.Conv(256, (3, 3), feature_group_count=4).apply(jitted, x)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-6, atol=1e-6)


def test_linen_layers_inside_a_model():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = tl.Dense(512)(x)
            return tl.Dense(256)(nn.relu(x))

    p = jax.jit(Model().init)(_key(), jnp.ones((1, 1024)))["params"]
    assert set(p) == {"Dense_0", "Dense_1"}  # Flax's auto names: the classes are called Dense
    _uniform_bound(p["Dense_0"]["bias"], 1 / 32, "Dense_0 bias")
    _uniform_bound(p["Dense_1"]["bias"], 1 / math.sqrt(512), "Dense_1 bias")


def test_torch_default_marker_outside_its_layer_raises():
    with pytest.raises(jaxinit.InitError, match="outside a jaxinit.linen"):
        tl.Dense(4).bias_init(_key(), (4,))
    with pytest.raises(jaxinit.InitError, match="outside a jaxinit.linen"):
        nn.Dense(4, bias_init=tl.Dense.bias_init).init(_key(), jnp.ones((1, 3)))


@pytest.mark.parametrize("padding_idx", [10, -11, 2.0])
def test_padding_idx_validation(padding_idx):
    with pytest.raises(jaxinit.InitError, match="padding_idx"):
        tl.Embed(10, 4, padding_idx=padding_idx)
    with pytest.raises(jaxinit.InitError, match="padding_idx"):
        tn.Embed(10, 4, padding_idx=padding_idx, rngs=_rngs())


def test_padding_row_gets_no_gradient():
    ids = jnp.array([[0, 7, 9, 7], [9, 1, 2, -1]])  # -1 is row 9, the padding row
    layer = tl.Embed(10, 4, padding_idx=-1, embedding_init=nn.initializers.ones)
    v = layer.init(_key(), ids)
    assert (v["params"]["embedding"][9] == 0).all() and (v["params"]["embedding"][0] == 1).all()
    g = jax.grad(lambda p: layer.apply({"params": p}, ids).sum())(v["params"])["embedding"]
    assert (g[9] == 0).all() and (g[7] == 2).all()

    emb = tn.Embed(10, 4, padding_idx=9, rngs=_rngs())
    g = nnx.grad(lambda m: m(ids).sum())(emb).embedding[...]
    assert (g[9] == 0).all() and (g[7] == 2).all()
    # torch, for reference: the padding row has zero gradient too
    te = torch.nn.Embedding(10, 4, padding_idx=9)
    te(torch.tensor(np.asarray(ids) % 10)).sum().backward()
    assert (te.weight.grad[9] == 0).all() and (te.weight.grad[7] == 2).all()


def test_layernorm_output_matches_torch():
    # torch's eps 1e-5 and two-pass variance: inputs with a large mean separate them from Flax's defaults.
    x = np.random.default_rng(SEED).normal(1e3, 1.0, (4, 256)).astype(np.float32)
    want = torch.nn.LayerNorm(256)(torch.from_numpy(x)).detach().numpy()
    lin = tl.LayerNorm()
    got_linen = lin.apply(lin.init(_key(), x), x)
    got_nnx = tn.LayerNorm(256, rngs=_rngs())(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got_linen), want, atol=2e-4)
    np.testing.assert_allclose(np.asarray(got_nnx), want, atol=2e-4)
    assert tl.LayerNorm().epsilon == torch.nn.LayerNorm(1).eps == tn.LayerNorm(2, rngs=_rngs()).epsilon


def test_gru_flax_variant_validation():
    with pytest.raises(jaxinit.InitError, match="flax_variant"):
        fnn.GRUCell(3, 4, flax_variant="haiku")
