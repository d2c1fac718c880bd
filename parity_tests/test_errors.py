"""Bad input: every input torch.nn.init rejects is rejected by both packages with
an InitError (a ValueError) naming the argument; zero-size tensors behave as in
PyTorch."""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxinit
import torchinit

KEY = jax.random.key(0)

# (torch call that must fail, our factory name, args, kwargs, call shape, call dtype name, message pattern)
CASES = [
    ("fan_1d", lambda: torch.nn.init.xavier_uniform_(torch.empty(5)), "xavier_uniform", (), {}, (5,), "float32",
     "fewer than 2 dimensions"),
    ("fan_1d_kaiming", lambda: torch.nn.init.kaiming_normal_(torch.empty(5)), "kaiming_normal", (), {}, (5,), "float32",
     "fewer than 2 dimensions"),
    ("bad_mode", lambda: torch.nn.init.kaiming_uniform_(torch.empty(3, 4), mode="fan_avg"), "kaiming_uniform", (),
     {"mode": "fan_avg"}, None, "float32", r"Mode fan_avg not supported, please use one of \['fan_in', 'fan_out'\]"),
    ("bad_nonlinearity", lambda: torch.nn.init.kaiming_uniform_(torch.empty(3, 4), nonlinearity="gelu"),
     "kaiming_uniform", (), {"nonlinearity": "gelu"}, None, "float32", "Unsupported nonlinearity gelu"),
    ("bool_slope", lambda: torch.nn.init.kaiming_uniform_(torch.empty(3, 4), a=True), "kaiming_uniform", (),
     {"a": True}, None, "float32", "negative_slope True not a valid number"),
    ("int_dtype_uniform", lambda: torch.nn.init.uniform_(torch.empty(3, 4, dtype=torch.int32)), "uniform", (), {},
     (3, 4), "int32", "floating"),
    ("int_dtype_normal", lambda: torch.nn.init.normal_(torch.empty(3, 4, dtype=torch.int64)), "normal", (), {},
     (3, 4), "int64", "floating"),
    ("int_dtype_kaiming", lambda: torch.nn.init.kaiming_uniform_(torch.empty(3, 4, dtype=torch.int32)),
     "kaiming_uniform", (), {}, (3, 4), "int32", "floating"),
    ("dirac_groups", lambda: torch.nn.init.dirac_(torch.empty(6, 4, 3, 3), 4), "dirac", (4,), {}, (3, 3, 4, 6),
     "float32", "divisible by groups"),
    ("dirac_rank", lambda: torch.nn.init.dirac_(torch.empty(6, 4)), "dirac", (), {}, (6, 4), "float32",
     "Only tensors with 3, 4, or 5 dimensions"),
    ("eye_rank", lambda: torch.nn.init.eye_(torch.empty(2, 3, 4)), "eye", (), {}, (2, 3, 4), "float32",
     "Only tensors with 2 dimensions"),
    ("orthogonal_rank", lambda: torch.nn.init.orthogonal_(torch.empty(5)), "orthogonal", (), {}, (5,), "float32",
     "2 or more dimensions"),
    ("sparse_rank", lambda: torch.nn.init.sparse_(torch.empty(2, 3, 4), 0.5), "sparse", (0.5,), {}, (2, 3, 4),
     "float32", "Only tensors with 2 dimensions"),
    ("uniform_a_gt_b", lambda: torch.nn.init.uniform_(torch.empty(3), 1.0, 0.0), "uniform", (1.0, 0.0), {}, None,
     "float32", "a <= b"),
    ("normal_neg_std", lambda: torch.nn.init.normal_(torch.empty(3), 0.0, -1.0), "normal", (0.0, -1.0), {}, None,
     "float32", "`std` must be >= 0"),
    ("trunc_a_gt_b", lambda: torch.nn.init.uniform_(torch.empty(3), 2.0, 1.0) and torch.nn.init.trunc_normal_(torch.empty(3), a=2.0, b=1.0),
     "trunc_normal", (0.0, 1.0, 2.0, 1.0), {}, None, "float32", "a < b"),
    ("trunc_zero_std", lambda: torch.nn.init.trunc_normal_(torch.empty(3), std=0.0), "trunc_normal", (0.0, 0.0), {},
     None, "float32", "`std` must be > 0"),
    ("xavier_zero_fans", lambda: torch.nn.init.xavier_uniform_(torch.empty(0, 0)), "xavier_uniform", (), {}, (0, 0),
     "float32", "fan_in \\+ fan_out is 0"),
]


def _call(pkg, name, args, kwargs, shape, dtype_name):
    init = getattr(pkg, name)(*args, **kwargs)
    shape = shape or (3, 4)
    if pkg is jaxinit:
        return init(KEY, shape, getattr(jnp, dtype_name))
    return init(0, shape, getattr(torch, dtype_name))


@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rejected_like_torch(pkg, case):
    _, torch_call, name, args, kwargs, shape, dtype_name, pattern = case
    with pytest.raises(Exception):
        torch_call()  # torch rejects it too (with its own exception type)
    with pytest.raises(ValueError, match=pattern) as info:
        _call(pkg, name, args, kwargs, shape, dtype_name)
    assert isinstance(info.value, pkg.InitError)


@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
@pytest.mark.parametrize("factory,kwargs,pattern", [
    ("sparse", {"sparsity": 1.5}, r"`sparsity`.*\[0, 1\]"),
    ("sparse", {"sparsity": -0.1}, r"`sparsity`.*\[0, 1\]"),
    ("svd", {"singular_values": [1.0, -2.0]}, "`singular_values` must be finite and >= 0"),
    ("svd", {"singular_values": "big"}, "`singular_values`"),
    ("uniform", {"a": float("nan")}, "`a` must be finite"),
    ("normal", {"std": "1"}, "`std` must be a real number"),
    ("constant", {"val": "x"}, "`val` must be a number"),
    ("dirac", {"groups": 0}, "`groups` must be a positive int"),
    ("dirac", {"batch_axis": 0}, "`batch_axis` must be \\(\\)"),
    ("variance_scaling", {"scale": 1.0, "mode": "fan_sum", "distribution": "normal"}, "`mode` must be one of"),
    ("variance_scaling", {"scale": 1.0, "mode": "fan_in", "distribution": "cauchy"}, "`distribution` must be one of"),
    ("variance_scaling", {"scale": -1.0, "mode": "fan_in", "distribution": "normal"}, "`scale` must be >= 0"),
    ("kaiming_uniform", {"mode": 3}, "`mode` must be one of"),
    ("truncated_normal", {"stddev": 1.0, "lower": 2.0, "upper": -2.0}, "a < b"),
    ("xavier_uniform", {"gain": -1}, "`gain` must be >= 0"),
    ("xavier_normal", {"gain": float("inf")}, "`gain` must be finite"),
    ("xavier_uniform", {"gain": "1"}, "`gain` must be a real number"),
    ("orthogonal", {"gain": float("nan")}, "`gain` must be finite"),
    ("kaiming_normal", {"a": "0.1"}, "not a valid number"),
    ("kaiming_uniform", {"nonlinearity": "gelu"}, "Unsupported nonlinearity gelu"),
    ("he_uniform", {"batch_axis": [0.5]}, "`batch_axis` must hold ints"),
])
def test_bad_factory_arguments(pkg, factory, kwargs, pattern):
    """Rejected when the factory is built: no silent clamping (torch's sparse_ accepts 1.5)."""
    with pytest.raises(pkg.InitError, match=pattern):
        getattr(pkg, factory)(**kwargs)


@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
@pytest.mark.parametrize("kwargs,shape,pattern", [
    ({"in_axis": 5}, (3, 4), "`in_axis`=5 is out of range"),
    ({"in_axis": 0, "out_axis": 0}, (3, 4), "both as in_axis and as out_axis"),
])
def test_bad_layout_for_the_shape(pkg, kwargs, shape, pattern):
    """Axes valid in general but not for this shape: rejected when the shape is known."""
    init = pkg.kaiming_uniform(**kwargs)
    with pytest.raises(pkg.InitError, match=pattern):
        init(KEY if pkg is jaxinit else 0, shape)


@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
@pytest.mark.parametrize("factory,kwargs,pattern", [
    ("kaiming_uniform", {"batch_axis": "x"}, "`batch_axis` must hold ints"),
    ("kaiming_normal", {"out_axis": 1.5}, "`out_axis` must be an int"),
    ("xavier_uniform", {"in_axis": ()}, "must each name at least one axis"),
    ("glorot_normal", {"in_axis": None}, "`in_axis` must be an int"),
    ("variance_scaling", {"scale": 1.0, "mode": "fan_in", "distribution": "normal", "in_axis": "0"}, "`in_axis`"),
    ("orthogonal", {"out_axis": (0,)}, "`out_axis` must be a single int axis"),
    ("svd", {"out_axis": 0.0}, "`out_axis` must be a single int axis"),
    ("sparse", {"sparsity": 0.5, "out_axis": 2}, "`out_axis`=2 is out of range"),
    ("dirac", {"in_axis": "1"}, "`in_axis`"),
])
def test_bad_layout_rejected_when_built(pkg, factory, kwargs, pattern):
    with pytest.raises(pkg.InitError, match=pattern):
        getattr(pkg, factory)(**kwargs)


@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
def test_svd_spectrum_length_checked_per_shape(pkg):
    with pytest.raises(pkg.InitError, match=r"min\(rows, cols\) = 3 entries"):
        pkg.svd([1.0, 2.0])(KEY if pkg is jaxinit else 0, (5, 3))


def test_negative_gain_rejected_by_torch_too():
    """xavier with gain < 0: torch fails on the reversed bound / negative std; ours names `gain` at build time."""
    with pytest.raises(RuntimeError):
        torch.nn.init.xavier_uniform_(torch.empty(3, 4), gain=-1)
    with pytest.raises(RuntimeError):
        torch.nn.init.xavier_normal_(torch.empty(3, 4), gain=-1)
    for fn in (torchinit.xavier_uniform_, torchinit.xavier_normal_):
        with pytest.raises(torchinit.InitError, match="`gain` must be >= 0"):
            fn(torch.empty(3, 4), gain=-1)


# torch 2.13's deprecated un-suffixed aliases (torch/nn/init.py: `xavier_uniform = _make_deprecate(xavier_uniform_)` ...)
TORCH_DEPRECATED = [name for name in dir(torch.nn.init) if not name.startswith("_") and not name.endswith("_")
                    and hasattr(torch.nn.init, name + "_") and callable(getattr(torch.nn.init, name))]


def test_torch_has_eleven_deprecated_aliases():
    assert sorted(TORCH_DEPRECATED) == sorted(["uniform", "normal", "constant", "eye", "dirac", "xavier_uniform",
                                               "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
                                               "sparse"])


@pytest.mark.parametrize("name", TORCH_DEPRECATED)
def test_deprecated_alias_on_a_tensor_says_did_you_mean(name):
    """torch.nn.init.NAME(w) fills w (deprecated); torchinit.NAME(w) must not silently build an
    initializer and leave w unchanged: it names the in-place form."""
    w = torch.zeros(6, 4, 3, 3)
    with pytest.raises(torchinit.InitError, match=rf"Did you mean `torchinit\.{name}_\(tensor\)`\?"):
        getattr(torchinit, name)(w)
    with pytest.raises(torchinit.InitError, match=rf"`torchinit\.{name}_\(tensor\)`"):
        getattr(torchinit, name)(0.5, w) if name not in ("eye",) else getattr(torchinit, name)(w, 0.5)
    assert not w.any()  # untouched
    x = jnp.zeros((6, 4, 3, 3))
    with pytest.raises(jaxinit.InitError, match=rf"jaxinit\.{name}\(\)\(key, x\.shape, x\.dtype\)"):
        getattr(jaxinit, name)(x)


@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
def test_array_where_a_number_belongs_names_the_argument(pkg):
    arr = torch.ones(3) if pkg is torchinit else jnp.ones(3)
    with pytest.raises(pkg.InitError, match="for `gain`"):
        pkg.xavier_normal(gain=arr)
    with pytest.raises(pkg.InitError, match="for `std`"):
        pkg.trunc_normal(0.0, arr)
    with pytest.raises(pkg.InitError, match="for `singular_values`"):
        pkg.svd(arr.reshape(1, 3))
    # a 1-D spectrum is an accepted svd argument, and numpy scalars are numbers
    assert pkg.svd(arr).args["singular_values"] is arr
    assert pkg.normal(np.float32(0.5)).args["mean"] == 0.5


def test_torch_key_and_dtype_errors():
    with pytest.raises(torchinit.InitError, match="`key` must be an int seed or a torch.Generator"):
        torchinit.normal()("seed", (3,))
    with pytest.raises(torchinit.InitError, match="`dtype` must be a torch.dtype"):
        torchinit.normal()(0, (3,), "float32")
    with pytest.raises(torchinit.InitError, match="`shape` must hold non-negative ints"):
        torchinit.normal()(0, (3, -1))
    with pytest.raises(torchinit.InitError, match="`tensor` must be a torch.Tensor"):
        torchinit.kaiming_uniform_([[1.0]])


# --------------------------------------------------------------------------- zero-size
@pytest.mark.parametrize("shape", [(0, 5), (4, 0), (0, 3, 3, 3)])
@pytest.mark.parametrize("name", ["kaiming_uniform", "kaiming_normal"])
def test_kaiming_zero_element_warns_noop(shape, name):
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        getattr(torch.nn.init, name + "_")(torch.empty(shape))
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        assert jaxinit.__dict__[name]()(KEY, shape).shape == shape
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        assert tuple(torchinit.__dict__[name]()(0, shape).shape) == shape
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        torchinit.__dict__[name + "_"](torch.empty(shape))


def test_kaiming_zero_element_before_dim_check():
    """torch checks zero-size before the rank: a (0,) tensor warns, no error."""
    with pytest.warns(UserWarning):
        torch.nn.init.kaiming_uniform_(torch.empty(0))
    with pytest.warns(UserWarning):
        assert jaxinit.kaiming_uniform()(KEY, (0,)).shape == (0,)
    with pytest.warns(UserWarning):
        assert torchinit.kaiming_uniform()(0, (0,)).shape == (0,)


@pytest.mark.parametrize("name,args", [("orthogonal", ()), ("uniform", ()), ("normal", ()), ("trunc_normal", ()),
                                       ("xavier_uniform", ()), ("xavier_normal", ()), ("sparse", (0.5,))])
@pytest.mark.parametrize("shape", [(0, 4), (4, 0)])
def test_zero_size_ok_like_torch(name, args, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # jax's own notice when the suite's persistent compilation cache could not be written
        # (concurrent runs sharing .jax_cache/): about the cache, not the initializer
        warnings.filterwarnings("ignore", "Error (writing|reading) persistent compilation cache")
        ref = getattr(torch.nn.init, name + "_")(torch.empty(shape), *args)
        assert jaxinit.__dict__[name](*args)(KEY, shape).shape == tuple(ref.shape)
        assert tuple(torchinit.__dict__[name](*args)(0, shape).shape) == tuple(ref.shape)
        assert tuple(torchinit.__dict__[name + "_"](torch.empty(shape), *args).shape) == tuple(ref.shape)


def test_calculate_gain_identical_to_torch():
    for nl in ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
               "sigmoid", "tanh", "relu", "selu", "leaky_relu"]:
        for param in (None, 0.2, 3):
            expected = torch.nn.init.calculate_gain(nl, param)
            for pkg in (jaxinit, torchinit):
                got = pkg.calculate_gain(nl, param)
                assert got == expected and type(got) is type(expected)
    assert math.isclose(jaxinit.calculate_gain("leaky_relu"), math.sqrt(2 / (1 + 0.01**2)))
