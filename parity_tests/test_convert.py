"""Weight conversion torch <-> Flax: layouts proven by forward passes against the REAL
torch.nn and flax layers, bitwise round trips per layer kind and dtype, strictness,
and checkpoint files (safetensors, .pt with weights_only, malformed and truncated)."""
from __future__ import annotations

import os
import pickle

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from flax import linen as nn
from flax import nnx

import jaxinit
import torchinit
from parity_tests._figures import record_figure

RNG = np.random.default_rng(0)
DTYPES = {  # torch dtype, jax dtype, numpy dtype
    "float32": (torch.float32, jnp.float32, np.dtype(np.float32)),
    "float64": (torch.float64, jnp.float64, np.dtype(np.float64)),
    "float16": (torch.float16, jnp.float16, np.dtype(np.float16)),
    "bfloat16": (torch.bfloat16, jnp.bfloat16, np.dtype(ml_dtypes.bfloat16)),
}


def _randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Every parameter and float buffer random (so a transpose mistake cannot hide
    behind ones and zeros); RNN bias_hh zero so the torch -> Flax -> torch round trip
    is exact (Flax keeps one bias per gate: see test_rnn_bias_merge)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g).abs() + 0.5 if "running_var" in name
                        else torch.randn(t.shape, generator=g))
                if "bias_hh" in name:
                    t.zero_()
            elif "num_batches_tracked" in name:
                t.fill_(7)
    return module


# name: (torch module, Linen module, Linen init args as shapes). Linen templates are
# shape-only (jax.eval_shape): no Flax init runs.
LAYERS = {
    "dense": (lambda: torch.nn.Linear(3, 4), lambda: nn.Dense(4), [(1, 3)]),
    "dense_nobias": (lambda: torch.nn.Linear(3, 4, bias=False), lambda: nn.Dense(4, use_bias=False), [(1, 3)]),
    "conv1d_groups_dilation": (lambda: torch.nn.Conv1d(4, 6, 3, groups=2, dilation=2),
                               lambda: nn.Conv(6, (3,), feature_group_count=2, kernel_dilation=2, padding="VALID"),
                               [(1, 9, 4)]),
    "conv2d": (lambda: torch.nn.Conv2d(2, 4, (3, 2)), lambda: nn.Conv(4, (3, 2), padding="VALID"), [(1, 5, 5, 2)]),
    "conv3d": (lambda: torch.nn.Conv3d(3, 2, 2), lambda: nn.Conv(2, (2, 2, 2), padding="VALID"), [(1, 3, 3, 3, 3)]),
    "conv_transpose2d": (lambda: torch.nn.ConvTranspose2d(3, 4, (3, 2), stride=2),
                         lambda: nn.ConvTranspose(4, (3, 2), strides=(2, 2), padding="VALID"), [(1, 4, 4, 3)]),
    "batchnorm": (lambda: torch.nn.BatchNorm1d(3), lambda: jaxinit.BatchNorm(use_running_average=True), [(2, 3)]),
    "layernorm": (lambda: torch.nn.LayerNorm(5), lambda: nn.LayerNorm(epsilon=1e-5), [(1, 5)]),
    "groupnorm": (lambda: torch.nn.GroupNorm(2, 6), lambda: nn.GroupNorm(num_groups=2, epsilon=1e-5), [(1, 6)]),
    "embed": (lambda: torch.nn.Embedding(10, 4), lambda: nn.Embed(10, 4), ["int:(1, 2)"]),
    "lstm": (lambda: torch.nn.LSTMCell(3, 5), lambda: nn.LSTMCell(5), ["carry_lstm", (1, 3)]),
    "gru": (lambda: torch.nn.GRUCell(3, 5), lambda: nn.GRUCell(5), ["carry_gru", (1, 3)]),
    "mha": (lambda: torch.nn.MultiheadAttention(8, 2, batch_first=True),
            lambda: nn.MultiHeadDotProductAttention(num_heads=2), [(1, 4, 8)]),
}


def _template(linen_factory, arg_specs, jdtype):
    module = linen_factory()
    if hasattr(module, "param_dtype"):
        module = module.clone(param_dtype=jdtype)
    args = []
    for spec in arg_specs:
        if spec == "carry_lstm":
            args.append((jax.ShapeDtypeStruct((1, 5), jdtype), jax.ShapeDtypeStruct((1, 5), jdtype)))
        elif spec == "carry_gru":
            args.append(jax.ShapeDtypeStruct((1, 5), jdtype))
        elif isinstance(spec, str):
            args.append(jax.ShapeDtypeStruct((1, 2), jnp.int32))
        else:
            args.append(jax.ShapeDtypeStruct(spec, jdtype))
    return jax.eval_shape(module.init, jax.random.key(0), *args)


def _torch_equal(a: dict, b: dict):
    assert set(a) == set(b), set(a) ^ set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        # bitwise: compare the bytes (NaN-safe, -0.0 distinguished)
        assert torch.equal(a[k].cpu().view(torch.uint8) if a[k].dim() else a[k].cpu().reshape(1).view(torch.uint8),
                           b[k].cpu().view(torch.uint8) if b[k].dim() else b[k].cpu().reshape(1).view(torch.uint8)), k


def _flax_equal(a, b):
    fa = jax.tree_util.tree_leaves_with_path(a)
    fb = dict(jax.tree_util.tree_leaves_with_path(b))
    assert len(fa) == len(fb)
    for path, x in fa:
        y = fb[path]
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert x.tobytes() == y.tobytes(), path


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_round_trip_bitwise(layer, dtype, torch_device):
    """torch -> Flax -> torch and Flax -> torch -> Flax are bitwise identities, in both
    packages, and jaxinit and torchinit produce the same bytes."""
    tdt, jdt, ndt = DTYPES[dtype]
    tfac, lfac, specs = LAYERS[layer]
    tm = _randomize(tfac()).to(device=torch_device, dtype=tdt)
    template = _template(lfac, specs, jdt)
    if layer == "batchnorm":  # jaxinit.BatchNorm keeps statistics in float32 at least
        dtype_arg = "template"
        tm = tm.float() if dtype in ("float16", "bfloat16") else tm
    else:
        dtype_arg = None
    v = jaxinit.from_torch_state_dict(tm, template, dtype=dtype_arg)
    assert all(np.asarray(x).dtype == np.dtype(t.dtype) for x, t in
               zip(jax.tree_util.tree_leaves(v), jax.tree_util.tree_leaves(template)))
    back = jaxinit.to_torch_state_dict(v, tm, dtype=dtype_arg)
    _torch_equal(back, tm.state_dict())
    # Flax -> torch -> Flax (the Flax values here are the converted ones: any values)
    kinds = {"": "conv_transpose"} if layer.startswith("conv_transpose") else None  # a bare state dict
    again = jaxinit.from_torch_state_dict(back, template, dtype=dtype_arg, kinds=kinds)
    _flax_equal(again, v)
    # torchinit: the same bytes, numpy on the Flax side
    vt = torchinit.from_torch_state_dict(tm, template, dtype=dtype_arg)
    _flax_equal(vt, v)
    _torch_equal(torchinit.to_torch_state_dict(vt, tm, dtype=dtype_arg), tm.state_dict())


def test_round_trip_without_templates():
    """No template: literal names both ways (a torch-only or Flax-only user)."""
    tm = _randomize(torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Flatten(),
                                        torch.nn.Linear(12, 2), torch.nn.LSTM(2, 4, num_layers=2)))
    for pkg in (jaxinit, torchinit):
        v = pkg.from_torch_state_dict(tm)
        assert set(v["params"]) == {"0", "1", "3", "4"} and set(v["params"]["4"]) == {"l0", "l1"}
        assert set(v["batch_stats"]["1"]) == {"mean", "var", "num_batches_tracked"}
        _torch_equal(pkg.to_torch_state_dict(v, tm), tm.state_dict())
        # Flax names only (no torch template): torch names are the Flax paths
        sd = pkg.to_torch_state_dict({"params": v["params"]["3"]})
        assert set(sd) == {"weight", "bias"}  # jaxinit: numpy (no torch needed); torchinit: tensors
        np.testing.assert_array_equal(np.asarray(sd["weight"]), tm[3].weight.detach().numpy())


# --------------------------------------------------------------------------- layouts vs real layers
def _t(x):
    return torch.from_numpy(np.asarray(x))


def _linen_attention(q, k, v, *args, is_causal=False, **kwargs):
    assert not is_causal
    return nn.dot_product_attention(q, k, v, *args, **kwargs)


def _forward_cases():
    """(name, torch module, Flax module, torch call, Flax call (module, variables or None)).
    float64 throughout: equality up to summation order (tolerance 1e-12)."""
    x2 = RNG.standard_normal((3, 8))
    img = RNG.standard_normal((2, 4, 9, 7))
    seq = RNG.standard_normal((2, 5, 8))
    h5, c5, x3 = RNG.standard_normal((2, 5)), RNG.standard_normal((2, 5)), RNG.standard_normal((2, 3))
    nhwc = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1))  # noqa: E731
    cases = [
        ("dense", torch.nn.Linear(8, 4), nn.Dense(4), lambda m: m(_t(x2)), lambda m, v: m.apply(v, jnp.asarray(x2))),
        ("conv2d_groups_dilation_stride", torch.nn.Conv2d(4, 6, 3, groups=2, dilation=2, stride=2, padding=1),
         nn.Conv(6, (3, 3), feature_group_count=2, kernel_dilation=2, strides=2, padding=1),
         lambda m: m(_t(img)).permute(0, 2, 3, 1), lambda m, v: m.apply(v, nhwc(img))),
        ("conv_transpose", torch.nn.ConvTranspose2d(4, 3, (3, 2), stride=2),
         nn.ConvTranspose(3, (3, 2), strides=(2, 2), padding="VALID"),
         lambda m: m(_t(img)).permute(0, 2, 3, 1), lambda m, v: m.apply(v, nhwc(img))),
        ("conv_transpose_transpose_kernel", torch.nn.ConvTranspose2d(4, 3, (3, 2), stride=2),
         nn.ConvTranspose(3, (3, 2), strides=(2, 2), padding="VALID", transpose_kernel=True),
         lambda m: m(_t(img)).permute(0, 2, 3, 1), lambda m, v: m.apply(v, nhwc(img))),
        ("batchnorm_eval", torch.nn.BatchNorm2d(4).eval(), jaxinit.BatchNorm(use_running_average=True),
         lambda m: m(_t(img)).permute(0, 2, 3, 1), lambda m, v: m.apply(v, nhwc(img))),
        ("flax_batchnorm_eval", torch.nn.BatchNorm2d(4).eval(), nn.BatchNorm(use_running_average=True),
         lambda m: m(_t(img)).permute(0, 2, 3, 1), lambda m, v: m.apply(v, nhwc(img))),
        ("layernorm", torch.nn.LayerNorm(8), nn.LayerNorm(epsilon=1e-5, use_fast_variance=False),
         lambda m: m(_t(x2)), lambda m, v: m.apply(v, jnp.asarray(x2))),
        ("groupnorm", torch.nn.GroupNorm(2, 4), nn.GroupNorm(num_groups=2, epsilon=1e-5, use_fast_variance=False),
         lambda m: m(_t(img)).permute(0, 2, 3, 1), lambda m, v: m.apply(v, nhwc(img))),
        ("embed", torch.nn.Embedding(10, 4), nn.Embed(10, 4),
         lambda m: m(torch.tensor([[1, 7, 3]])), lambda m, v: m.apply(v, jnp.array([[1, 7, 3]]))),
        ("lstm_cell", torch.nn.LSTMCell(3, 5), nn.LSTMCell(5),
         lambda m: torch.cat(m(_t(x3), (_t(h5), _t(c5))), -1),
         lambda m, v: jnp.concatenate(m.apply(v, (jnp.asarray(c5), jnp.asarray(h5)), jnp.asarray(x3))[0][::-1], -1)),
        ("gru_cell", torch.nn.GRUCell(3, 5), nn.GRUCell(5),
         lambda m: m(_t(x3), _t(h5)), lambda m, v: m.apply(v, jnp.asarray(h5), jnp.asarray(x3))[0]),
        ("lstm_sequence", torch.nn.LSTM(3, 5, batch_first=True), nn.RNN(nn.LSTMCell(5)),
         lambda m: m(_t(RNG_SEQ3))[0], lambda m, v: m.apply(v, jnp.asarray(RNG_SEQ3))),
        ("mha", torch.nn.MultiheadAttention(8, 2, batch_first=True), nn.MultiHeadDotProductAttention(num_heads=2),
         lambda m: m(_t(seq), _t(seq), _t(seq), need_weights=False)[0], lambda m, v: m.apply(v, jnp.asarray(seq))),
        ("mha_kdim", torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True),
         nn.MultiHeadDotProductAttention(num_heads=2),
         lambda m: m(_t(seq), _t(SEQ6), _t(SEQ6), need_weights=False)[0],
         lambda m, v: m.apply(v, jnp.asarray(seq), jnp.asarray(SEQ6))),
    ]
    nnx_cases = [
        ("nnx_lstm_cell", torch.nn.LSTMCell(3, 5), lambda: nnx.LSTMCell(3, 5, rngs=nnx.Rngs(0), param_dtype=jnp.float64),
         lambda m: torch.cat(m(_t(x3), (_t(h5), _t(c5))), -1),
         lambda m, v: jnp.concatenate(m((jnp.asarray(c5), jnp.asarray(h5)), jnp.asarray(x3))[0][::-1], -1)),
        ("nnx_gru_cell", "gru_bhn0", lambda: nnx.GRUCell(3, 5, rngs=nnx.Rngs(0), param_dtype=jnp.float64),
         lambda m: m(_t(x3), _t(h5)), lambda m, v: m(jnp.asarray(h5), jnp.asarray(x3))[0]),
        ("nnx_mha", torch.nn.MultiheadAttention(8, 2, batch_first=True),
         # NNX's default attention_fn hands float64 to jax.nn.dot_product_attention, whose softmax
         # runs in float32 (1e-7 off); Linen's function keeps float64, so the layout is tested at 1e-12.
         lambda: nnx.MultiHeadAttention(2, 8, rngs=nnx.Rngs(0), decode=False, param_dtype=jnp.float64,
                                        attention_fn=_linen_attention),
         lambda m: m(_t(seq), _t(seq), _t(seq), need_weights=False)[0], lambda m, v: m(jnp.asarray(seq))),
        ("nnx_conv_transpose", torch.nn.ConvTranspose2d(4, 3, (3, 2), stride=2),
         lambda: nnx.ConvTranspose(4, 3, (3, 2), strides=(2, 2), padding="VALID", rngs=nnx.Rngs(0),
                                   param_dtype=jnp.float64),
         lambda m: m(_t(img)).permute(0, 2, 3, 1), lambda m, v: m(nhwc(img))),
    ]
    return cases, nnx_cases


RNG_SEQ3 = RNG.standard_normal((2, 6, 3))
SEQ6 = RNG.standard_normal((2, 5, 6))
CASES, NNX_CASES = _forward_cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_layout_matches_real_layers(case):
    """Converted weights make the real Flax layer compute what the real torch layer computes."""
    name, tm, fm, tcall, fcall = case
    tm = _randomize(tm).double()
    if name.startswith(("lstm", "gru")):
        with torch.no_grad():  # nonzero bias_hh too: merged on request
            for k, t in tm.named_parameters():
                if "bias_hh" in k:
                    t.copy_(torch.randn(t.shape, dtype=t.dtype))
    fm = fm.clone(param_dtype=jnp.float64) if hasattr(fm, "param_dtype") else fm
    if name == "lstm_sequence":
        fm = nn.RNN(nn.LSTMCell(5, param_dtype=jnp.float64))
    init = jax.eval_shape(lambda: fm.init(jax.random.key(0), *_init_args(name)))
    bn = "flax" if name == "flax_batchnorm_eval" else "torch"
    v = jaxinit.from_torch_state_dict(tm, init, merge_rnn_biases=True, batchnorm=bn, dtype="template",
                                      transpose_kernel=name.endswith("transpose_kernel"))
    ref = tcall(tm).detach().numpy()
    out = np.asarray(fcall(fm, v))
    diff = float(np.max(np.abs(out - ref)))
    record_figure("convert/layout", "max_abs_f32_stats" if name == "flax_batchnorm_eval" else "max_abs_f64",
                  diff, name)
    # float64: only the summation order differs (1e-12). flax.linen.BatchNorm keeps batch_stats in
    # float32 whatever param_dtype is, so there the running stats are rounded to float32 (2^-24 relative).
    assert diff < (1e-6 if name == "flax_batchnorm_eval" else 1e-12), diff


def _init_args(name):
    f = jnp.float64
    shapes = {
        "dense": [jnp.ones((1, 8), f)], "layernorm": [jnp.ones((1, 8), f)],
        "embed": [jnp.array([[0]])], "lstm_cell": [(jnp.ones((1, 5), f), jnp.ones((1, 5), f)), jnp.ones((1, 3), f)],
        "gru_cell": [jnp.ones((1, 5), f), jnp.ones((1, 3), f)], "lstm_sequence": [jnp.ones((1, 6, 3), f)],
        "mha": [jnp.ones((1, 5, 8), f)], "mha_kdim": [jnp.ones((1, 5, 8), f), jnp.ones((1, 5, 6), f)],
    }
    return shapes.get(name, [jnp.ones((1, 9, 7, 4), f)])


@pytest.mark.parametrize("case", NNX_CASES, ids=[c[0] for c in NNX_CASES])
def test_layout_matches_real_nnx_layers(case):
    """NNX targets are filled in place: LSTMCell (if_), the stacked GRUCell, MHA, ConvTranspose."""
    name, tm, make, tcall, fcall = case
    if tm == "gru_bhn0":
        tm = torch.nn.GRUCell(3, 5)
    tm = _randomize(tm).double()
    with torch.no_grad():
        for k, t in tm.named_parameters():
            if "bias_hh" in k:  # NNX's GRU has no b_hn: only the r and z parts can be nonzero
                t.copy_(torch.randn(t.shape, dtype=t.dtype))
                if name == "nnx_gru_cell":
                    t[10:] = 0
    model = nnx.eval_shape(make)  # abstract: no init computation; the converter fills every variable
    assert jaxinit.from_torch_state_dict(tm, model, merge_rnn_biases=True) is model
    diff = float(np.max(np.abs(np.asarray(fcall(model, None)) - tcall(tm).detach().numpy())))
    record_figure("convert/layout", "max_abs_f64", diff, name)
    assert diff < 1e-12, diff
    # and back: NNX -> torch -> equal to the source (bias_hh summed into bias_ih)
    sd = jaxinit.to_torch_state_dict(model, tm)
    for k, t in tm.state_dict().items():
        if "bias" not in k:
            assert torch.equal(sd[k], t), k


# --------------------------------------------------------------------------- whole models by name
class _LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), padding="VALID", name="stem")(x)
        x = jaxinit.BatchNorm(use_running_average=not train)(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.Dense(6)(x)
        return nn.Dense(2)(x)


class _TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(2, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc1 = torch.nn.Linear(16, 6)
        self.fc2 = torch.nn.Linear(6, 2)


def test_default_naming_rule_auto_names_and_mapping():
    """``stem`` keeps its name, ``bn``/``fc1``/``fc2`` find Linen's BatchNorm_0/Dense_0/Dense_1
    (k-th sibling of that class); an explicit mapping overrides."""
    tm = _randomize(_TorchNet())
    template = jax.eval_shape(_LinenNet().init, jax.random.key(0), jnp.ones((1, 4, 4, 2)))
    v = jaxinit.from_torch_state_dict(tm, template)
    assert np.array_equal(np.asarray(v["params"]["Dense_1"]["kernel"]), tm.fc2.weight.detach().numpy().T)
    assert int(v["batch_stats"]["BatchNorm_0"]["num_batches_tracked"]) == 7
    _torch_equal(jaxinit.to_torch_state_dict(v, tm), tm.state_dict())
    # Swap the two Dense layers by mapping: shapes then disagree, reported together.
    with pytest.raises(jaxinit.ConversionError) as err:
        jaxinit.from_torch_state_dict(tm, template, mapping={"fc1": "Dense_1", "fc2": "Dense_0"})
    msg = str(err.value)
    assert "params/Dense_1/kernel: (16, 6) vs target (6, 2)" in msg and "params/Dense_0/kernel" in msg
    # Linen Sequential: torch "0", "2" -> "layers_0", "layers_2"
    tseq = _randomize(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    lseq = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(2)])
    v = jaxinit.from_torch_state_dict(tseq, jax.eval_shape(lseq.init, jax.random.key(0), jnp.ones((1, 3))))
    assert set(v["params"]) == {"layers_0", "layers_2"}
    # a torch key a layer kind needs but the source lacks: named
    with pytest.raises(jaxinit.ConversionError, match=r"missing keys \(in the source\).*\n.*0.weight"):
        jaxinit.from_torch_state_dict({"0.bias": torch.ones(4)}, kinds={"0": "dense"})
    # NNX Sequential: torch "0" -> nnx "layers/0"
    tseq = _randomize(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)))
    mseq = nnx.eval_shape(lambda: nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.relu,
                                                 nnx.Linear(4, 2, rngs=nnx.Rngs(0))))
    jaxinit.from_torch_state_dict(tseq, mseq)  # nnx.relu holds index 1 in both: same indices
    assert np.array_equal(np.asarray(mseq.layers[2].kernel[...]), tseq[2].weight.detach().numpy().T)
    mseq = nnx.eval_shape(lambda: nnx.Sequential(nnx.Linear(3, 4, rngs=nnx.Rngs(0)),
                                                 nnx.Linear(4, 2, rngs=nnx.Rngs(0))))
    jaxinit.from_torch_state_dict(tseq, mseq, mapping={"2": "layers/1"})
    assert np.array_equal(np.asarray(mseq.layers[1].kernel[...]), tseq[2].weight.detach().numpy().T)


# --------------------------------------------------------------------------- strictness
def test_one_error_lists_every_problem():
    tm = _randomize(_TorchNet())
    template = jax.eval_shape(_LinenNet().init, jax.random.key(0), jnp.ones((1, 4, 4, 2)))
    sd = dict(tm.state_dict())
    del sd["fc2.bias"]  # missing
    sd["extra.weight"] = torch.ones(3, 3, 3)  # unexpected (a conv nobody wants)
    sd["junk"] = torch.ones(2)  # unexpected, no converter
    sd["fc1.weight"] = torch.ones(6, 15)  # shape mismatch
    for pkg in (jaxinit, torchinit):
        with pytest.raises(pkg.ConversionError) as err:
            pkg.from_torch_state_dict(sd, template)
        msg = str(err.value)
        assert "missing keys" in msg and "params/Dense_1/bias" in msg
        assert "params/extra/kernel" in msg and "junk" in msg
        assert "params/Dense_0/kernel: (15, 6) vs target (16, 6)" in msg
        assert isinstance(err.value, ValueError) and isinstance(err.value, pkg.InitError)
    # the reverse direction: Flax variables with an extra and a missing leaf
    v = jaxinit.from_torch_state_dict(tm, template)
    v["params"]["Dense_9"] = {"kernel": jnp.ones((2, 2))}
    del v["params"]["stem"]["bias"]
    with pytest.raises(jaxinit.ConversionError) as err:
        jaxinit.to_torch_state_dict(v, tm)
    assert "params/Dense_9/kernel" in str(err.value) and "stem.bias" in str(err.value)


def test_dtype_changes_only_when_asked():
    tm = _randomize(torch.nn.Linear(3, 4)).double()
    template = jax.eval_shape(nn.Dense(4).init, jax.random.key(0), jnp.ones((1, 3)))  # float32
    with pytest.raises(jaxinit.ConversionError, match="dtype mismatches.*\n.*params/kernel: float64 vs target float32"):
        jaxinit.from_torch_state_dict(tm, template)
    v = jaxinit.from_torch_state_dict(tm, template, dtype="template")
    assert v["params"]["kernel"].dtype == jnp.float32
    v = jaxinit.from_torch_state_dict(tm, None, dtype=jnp.bfloat16)
    assert v["params"]["kernel"].dtype == jnp.bfloat16
    # keeps float64 without a template
    assert jaxinit.from_torch_state_dict(tm)["params"]["kernel"].dtype == jnp.float64
    half = torch.nn.Linear(3, 4, bias=False).half()
    v32 = {"params": {"kernel": np.ones((3, 4), np.float32)}}
    with pytest.raises(torchinit.ConversionError, match="weight: float32 vs target float16"):
        torchinit.to_torch_state_dict(v32, half)
    assert torchinit.to_torch_state_dict(v32, half, dtype="template")["weight"].dtype == torch.float16


def test_rnn_bias_merge_and_unrepresentable_values():
    tm = _randomize(torch.nn.LSTMCell(3, 4))
    with torch.no_grad():
        tm.bias_hh.copy_(torch.randn(16))
    template = jax.eval_shape(nn.LSTMCell(4).init, jax.random.key(0), (jnp.ones((1, 4)), jnp.ones((1, 4))),
                              jnp.ones((1, 3)))
    with pytest.raises(jaxinit.ConversionError, match="merge_rnn_biases=True"):
        jaxinit.from_torch_state_dict(tm, template)
    v = jaxinit.from_torch_state_dict(tm, template, merge_rnn_biases=True)
    np.testing.assert_array_equal(np.asarray(v["params"]["hf"]["bias"]),
                                  (tm.bias_ih + tm.bias_hh).detach().numpy()[4:8])
    # NNX GRU has no b_hn
    g = _randomize(torch.nn.GRUCell(3, 4))
    with torch.no_grad():
        g.bias_hh.copy_(torch.randn(12))
    with pytest.raises(jaxinit.ConversionError, match="flax.nnx.GRUCell has no bias"):
        jaxinit.from_torch_state_dict(g, nnx.eval_shape(lambda: nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))),
                                      merge_rnn_biases=True)
    # ConvTranspose with groups, MHA with add_bias_kv, proj_size: named, not dropped
    bad = torch.nn.ModuleDict({"up": torch.nn.ConvTranspose2d(4, 4, 2, groups=2),
                               "attn": torch.nn.MultiheadAttention(4, 2, add_bias_kv=True),
                               "rnn": torch.nn.LSTM(3, 4, proj_size=2)})
    with pytest.raises(jaxinit.ConversionError) as err:
        jaxinit.from_torch_state_dict(bad)
    msg = str(err.value)
    assert "up: ConvTranspose with groups=2" in msg and "add_bias_kv" in msg and "proj_size" in msg


def test_bad_options_and_inputs():
    with pytest.raises(jaxinit.InitError, match="`batchnorm` must be 'torch'.*or 'flax'"):
        jaxinit.from_torch_state_dict(torch.nn.Linear(2, 2), batchnorm="pytorch")
    with pytest.raises(torchinit.InitError, match="unknown layer kind 'linear'"):
        torchinit.from_torch_state_dict({"a.weight": torch.ones(2, 2)}, kinds={"a": "linear"})
    with pytest.raises(jaxinit.InitError, match="pass the whole variables dict"):
        jaxinit.to_torch_state_dict({"params": {"kernel": np.ones((2, 2))}, "x": np.ones(2)})
    with pytest.raises(torchinit.InitError, match="must be a torch nn.Module or a state dict"):
        torchinit.from_torch_state_dict([1, 2])


def test_batchnorm_conventions():
    """'torch' keeps num_batches_tracked (int64 <-> int32); 'flax' drops it on request and
    restores 0; the running var is copied unchanged either way."""
    bn = _randomize(torch.nn.BatchNorm1d(3))
    v = jaxinit.from_torch_state_dict(bn, batchnorm="flax")
    assert set(v["batch_stats"]) == {"mean", "var"}
    np.testing.assert_array_equal(np.asarray(v["batch_stats"]["var"]), bn.running_var.numpy())
    sd = jaxinit.to_torch_state_dict(v, bn, batchnorm="flax")
    assert int(sd["num_batches_tracked"]) == 0 and sd["num_batches_tracked"].dtype == torch.int64
    with pytest.raises(jaxinit.ConversionError, match="num_batches_tracked"):
        jaxinit.to_torch_state_dict(v, bn)  # 'torch' convention wants the counter
    vt = jaxinit.from_torch_state_dict(bn)
    assert vt["batch_stats"]["num_batches_tracked"].dtype == jnp.int32


def test_torchinit_batchnorm_is_a_batchnorm_layer():
    """torchinit.BatchNorm (not a torch.nn.BatchNorm*d subclass) converts like one, both ways,
    into jaxinit.BatchNorm variables, bitwise, in both packages."""
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), _randomize(torchinit.BatchNorm(3)))
    model[1].num_batches_tracked.fill_(7)
    for pkg in (jaxinit, torchinit):
        v = pkg.from_torch_state_dict(model)
        bs = v["batch_stats"]["1"] if "1" in v["batch_stats"] else v["batch_stats"]["layers_1"]
        np.testing.assert_array_equal(np.asarray(bs["var"]), model[1].running_var.numpy())
        assert int(bs["num_batches_tracked"]) == 7
        back = pkg.to_torch_state_dict(v, model)
        for k, t in model.state_dict().items():
            torch.testing.assert_close(back[k].cpu(), t, rtol=0, atol=0)


def test_kinds_resolve_state_dict_ambiguity():
    """A bare state dict's 4-D weight is a Conv unless kinds says ConvTranspose."""
    up = _randomize(torch.nn.ConvTranspose2d(3, 5, 2))
    sd = {f"up.{k}": v for k, v in up.state_dict().items()}
    template = jax.eval_shape(nn.ConvTranspose(5, (2, 2)).init, jax.random.key(0), jnp.ones((1, 4, 4, 3)))
    template = {"params": {"up": template["params"]}}
    with pytest.raises(jaxinit.ConversionError, match="shape mismatches"):
        jaxinit.from_torch_state_dict(sd, template)
    v = jaxinit.from_torch_state_dict(sd, template, kinds={"up": "conv_transpose"})
    v2 = jaxinit.from_torch_state_dict(up, {"params": template["params"]["up"]})
    _flax_equal(v["params"]["up"], v2["params"])
    emb = {"e.weight": torch.randn(7, 3)}
    t_emb = {"params": {"e": {"embedding": jax.ShapeDtypeStruct((7, 3), jnp.float32)}}}
    v = jaxinit.from_torch_state_dict(emb, t_emb)  # the template's name says Embed
    np.testing.assert_array_equal(np.asarray(v["params"]["e"]["embedding"]), emb["e.weight"].numpy())


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_checkpoint_round_trip(tmp_path, dtype):
    """safetensors and .pt keep values and dtypes bitwise (bfloat16 included), across packages."""
    tdt, jdt, ndt = DTYPES[dtype]
    tm = _randomize(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))).to(tdt)
    sd = tm.state_dict()
    for suffix in (".safetensors", ".pt"):
        path = tmp_path / f"m{suffix}"
        torchinit.save_checkpoint(path, sd, **({"metadata": {"framework": "torch"}} if suffix == ".safetensors" else {}))
        _torch_equal(torchinit.load_checkpoint(path), sd)
        arrays = jaxinit.load_checkpoint(path)
        assert arrays["0.weight"].dtype == ndt
        v = jaxinit.from_torch_state_dict(arrays)
        _torch_equal(jaxinit.to_torch_state_dict(v, tm), sd)
        # Flax variables saved by jaxinit, read by torchinit, converted into the torch model
        fpath = tmp_path / f"flax{suffix}"
        jaxinit.save_checkpoint(fpath, v)
        loaded = torchinit.load_checkpoint(fpath)
        _flax_equal(loaded, v)
        _torch_equal(torchinit.to_torch_state_dict(loaded, tm), sd)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malformed_and_truncated_files(tmp_path):
    sd = {"w": torch.randn(64, 64)}
    good = tmp_path / "good.safetensors"
    torchinit.save_checkpoint(good, sd)
    data = good.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "header_only.safetensors": data[:20],
        "garbage.safetensors": b"not a checkpoint at all" * 3,
        "empty.safetensors": b"",
    }
    torch.save(sd, tmp_path / "good.pt")
    pt = (tmp_path / "good.pt").read_bytes()
    cases["truncated.pt"] = pt[: len(pt) // 2]
    cases["garbage.pt"] = b"\x80\x04garbage"
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        for pkg in (jaxinit, torchinit):
            with pytest.raises(pkg.InitError) as err:
                pkg.load_checkpoint(tmp_path / name)
            assert name in str(err.value), str(err.value)
            assert ("malformed" in str(err.value)) or ("truncated" in str(err.value))
    with pytest.raises(jaxinit.InitError, match="accepted: .safetensors"):
        jaxinit.load_checkpoint(tmp_path / "model.ckpt")
    with pytest.raises(FileNotFoundError):
        torchinit.load_checkpoint(tmp_path / "absent.safetensors")


class _Boom:
    """Unpickling this would run code (writes a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pt_files_are_never_unpickled(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        torch.save({"w": torch.ones(2), "payload": _Boom(str(marker))}, fh, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    for pkg in (jaxinit, torchinit):
        with pytest.raises(pkg.InitError, match="weights_only=True"):
            pkg.load_checkpoint(path)
    assert not marker.exists()
    # a .pt that is a tensor, not a dict of tensors
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(torchinit.InitError, match="does not hold a dict of tensors"):
        torchinit.load_checkpoint(tmp_path / "tensor.pt")
    assert os.path.exists(path)
