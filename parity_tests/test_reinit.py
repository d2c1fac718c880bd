"""Model-level re-initialization (``reinit``) in both packages, checked against the REAL
upstream: torch.nn.init on real torch.nn modules, and Flax Linen / NNX models whose
kernels must come out with torch's bound (or std) for the corresponding torch layer.

Twin models (same parameter shapes, each in its framework's layout):
  Linen/NNX Conv(3->16, 3x3) | ConvTranspose(16->8, 3x3) | Dense(512->10)
  torch    Conv2d(3, 16, 3)  | ConvTranspose2d(16, 8, 3) | Linear(512, 10)
Distribution checks: hard bounds (uniform: max |w| <= bound, and > 0.9 bound), and a
two-sample KS test against torch.nn.init applied to a tensor of the torch shape,
p >= P_MIN (1e-5, fixed seeds: as in test_initializers).
"""
from __future__ import annotations

import functools
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
import torchinit
from parity_tests._figures import record_figure
from parity_tests.test_initializers import P_MIN

FLAX_CT = jaxinit.FLAX_CONV_TRANSPOSE_LAYOUT
X = jnp.zeros((1, 8, 8, 3), jnp.float32)


# --------------------------------------------------------------------------- twin models
class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3), padding="VALID")(x))  # Conv_0: (3, 3, 3, 16)
        x = nn.relu(nn.ConvTranspose(8, (3, 3), padding="VALID")(x))  # ConvTranspose_0: (3, 3, 16, 8)
        x = nn.BatchNorm(use_running_average=True)(x)  # BatchNorm_0: scale/bias (8,)
        return nn.Dense(10, name="head")(x.reshape(x.shape[0], -1))  # head: (512, 10)


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for width in (256, 128):
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(10)(x)


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 16, (3, 3), padding="VALID", rngs=rngs)
        self.up = nnx.ConvTranspose(16, 8, (3, 3), padding="VALID", rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.head = nnx.Linear(512, 10, rngs=rngs)


def torch_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3), torch.nn.ReLU(), torch.nn.ConvTranspose2d(16, 8, 3), torch.nn.ReLU(),
        torch.nn.BatchNorm2d(8), torch.nn.Flatten(), torch.nn.Linear(512, 10))


def torch_mlp():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(100, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                               torch.nn.ReLU(), torch.nn.Linear(128, 10))


# (flax path of the kernel, torch name of the weight) for the twins
CNN_PAIRS = [("Conv_0", "0"), ("ConvTranspose_0", "2"), ("head", "6")]
NNX_PAIRS = [("conv", "0"), ("up", "2"), ("head", "6")]
MLP_PAIRS = [("Dense_0", "0"), ("Dense_1", "2"), ("Dense_2", "4")]


def linen_variables(module=LinenCNN(), x=X):
    return module.init(jax.random.key(0), x)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(jnp.asarray(x, jnp.float64))


def _torch_fans(shape):
    return torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta"))


def _check_against_torch(sample, torch_shape, torch_init, case, bound=None):
    """KS test of ``sample`` against ``torch_init`` applied to a tensor of the torch shape."""
    ref = torch_init(torch.empty(torch_shape, dtype=torch.float64), generator=torch.Generator().manual_seed(7))
    sample = _np(sample).ravel()
    if bound is not None:
        assert np.abs(sample).max() <= bound, case
        assert np.abs(sample).max() > 0.9 * bound, case
        assert np.abs(_np(ref)).max() <= bound
    p = scipy.stats.ks_2samp(sample, _np(ref).ravel()).pvalue
    record_figure("reinit", "ks_p", p, case)
    assert p >= P_MIN, f"KS p={p:.3g} < {P_MIN} ({case})"


XAVIER = {"jax": [(r"(kernel|weight)$", jaxinit.xavier_uniform()), (r"bias$", jaxinit.zeros())],
          "torch": [(r"(kernel|weight)$", torchinit.xavier_uniform()), (r"bias$", torchinit.zeros())]}


# --------------------------------------------------------------------------- xavier everywhere
def test_torch_xavier_equals_upstream(torch_device):
    """Real torch modules: bounds exactly torch's, KS vs torch.nn.init.xavier_uniform_, biases 0,
    and bitwise equal to running torch.nn.init.xavier_uniform_ itself under reinit."""
    model = torch_cnn().to(torch_device)
    bn_before = [p.clone() for p in model[4].parameters()]
    rules = [(r"^[026]\.weight$", torchinit.xavier_uniform()), (r"^[026]\.bias$", torchinit.zeros())]
    torchinit.reinit(model, rules, 3)
    for name in ("0", "2", "6"):
        w = getattr(model, name).weight
        fan_in, fan_out = _torch_fans(w.shape)
        bound = 1.0 * math.sqrt(6.0 / float(fan_in + fan_out))  # torch.nn.init.xavier_uniform_
        _check_against_torch(w, w.shape, torch.nn.init.xavier_uniform_, f"torch xavier {name}", bound)
        assert not getattr(model, name).bias.any()
    for before, after in zip(bn_before, model[4].parameters()):  # BatchNorm: no rule matched
        assert torch.equal(before, after)
    upstream = torchinit.reinit(torch_cnn().to(torch_device),
                                [(r"^[026]\.weight$", torch.nn.init.xavier_uniform_),
                                 (r"^[026]\.bias$", torch.nn.init.zeros_)], 3)
    for a, b in zip(model.parameters(), upstream.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("which", ["cnn", "mlp"])
def test_linen_xavier_bounds_are_torch_bounds(which):
    module, x, pairs, tmodel = {
        "cnn": (LinenCNN(), X, CNN_PAIRS, torch_cnn),
        "mlp": (LinenMLP(), jnp.zeros((1, 100)), MLP_PAIRS, torch_mlp),
    }[which]
    variables = linen_variables(module, x)
    params = jaxinit.reinit(variables["params"], XAVIER["jax"], jax.random.key(1))
    tm = tmodel()
    for flax_name, torch_name in pairs:
        tshape = getattr(tm, torch_name).weight.shape
        fan_in, fan_out = _torch_fans(tshape)
        bound = math.sqrt(6.0 / float(fan_in + fan_out))
        kernel = params[flax_name]["kernel"]
        assert kernel.size == math.prod(tshape)
        _check_against_torch(kernel, tshape, torch.nn.init.xavier_uniform_, f"linen {which} {flax_name}", bound)
        assert not np.asarray(params[flax_name]["bias"]).any()
    if which == "cnn":  # BatchNorm scale is not a kernel: untouched (the same object)
        assert params["BatchNorm_0"]["scale"] is variables["params"]["BatchNorm_0"]["scale"]


# --------------------------------------------------------------------------- rules by layer kind
def _kind_rules(pkg, conv, conv_t, dense):
    """torchvision-style: conv kaiming_normal(fan_out, relu), dense N(0, 0.01), biases 0.
    ConvTranspose gets the Flax ConvTranspose layout: torch relayouts it to TORCH_LAYOUT."""
    kn = pkg.kaiming_normal(mode="fan_out", nonlinearity="relu")
    return [(r"bias$", pkg.zeros()), (conv, kn), (conv_t, kn.with_layout(**FLAX_CT)),
            (dense, pkg.normal(0.0, 0.01))]


def _check_kind_result(kernels: dict, pairs, label):
    """kernels: name -> array; pairs map them to the torch twin's weights."""
    tm = torch_cnn()
    kaiming = functools.partial(torch.nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu")
    for (name, torch_name), upstream in zip(pairs, (kaiming, kaiming, None)):
        tshape = getattr(tm, torch_name).weight.shape
        w = _np(kernels[name])
        if upstream is None:
            _check_against_torch(w, tshape, functools.partial(torch.nn.init.normal_, mean=0.0, std=0.01),
                                 f"{label} {name} normal")
            continue
        std = math.sqrt(2.0) / math.sqrt(_torch_fans(tshape)[1])  # gain(relu) / sqrt(fan_out)
        rel = abs(w.std() / std - 1)
        record_figure("reinit", "rel_std_diff", rel, f"{label} {name}")
        assert rel < 0.15, (label, name, w.std(), std)  # 4 sigma for 432 samples
        _check_against_torch(w, tshape, kaiming, f"{label} {name} kaiming")


def test_torch_rules_by_module_class():
    model = torch_cnn()
    torchinit.reinit(model, _kind_rules(torchinit, torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear),
                     0, strict=True)
    _check_kind_result({n: getattr(model, n).weight for _, n in CNN_PAIRS}, [(n, n) for _, n in CNN_PAIRS], "torch")
    assert all(not getattr(model, n).bias.any() for _, n in CNN_PAIRS)
    # in-place upstream functions as initializers give the same tensors as torchinit factories
    same = torchinit.reinit(torch_cnn(), [
        (r"bias$", torch.nn.init.zeros_),
        ((torch.nn.Conv2d, torch.nn.ConvTranspose2d),
         functools.partial(torch.nn.init.kaiming_normal_, mode="fan_out", nonlinearity="relu")),
        (torch.nn.Linear, lambda t: torch.nn.init.normal_(t, 0.0, 0.01)),  # no generator=: seeded default RNG
    ], 0)
    for a, b in zip(model.parameters(), same.parameters()):
        assert torch.equal(a, b)


def test_linen_rules_by_layer_path():
    """Linen pytrees record no module classes: layer kinds by path (Linen auto-names ClassName_i)."""
    variables = linen_variables()
    rules = _kind_rules(jaxinit, r"Conv_\d+/kernel$", r"ConvTranspose_\d+/kernel$", r"head/kernel$")
    params = jaxinit.reinit(variables["params"], rules, jax.random.key(0), strict=True)
    _check_kind_result({n: params[n]["kernel"] for n, _ in CNN_PAIRS}, CNN_PAIRS, "linen")
    assert params["BatchNorm_0"]["scale"] is variables["params"]["BatchNorm_0"]["scale"]
    # the whole variables dict works too: batch_stats untouched (no rule selects them)
    full = jaxinit.reinit(variables, rules, jax.random.key(0))
    assert all(a is b for a, b in zip(jax.tree.leaves(full["batch_stats"]), jax.tree.leaves(variables["batch_stats"])))
    _check_kind_result({n: full["params"][n]["kernel"] for n, _ in CNN_PAIRS}, CNN_PAIRS, "linen variables")
    # the layout matters: without the ConvTranspose layout Flax's fan_out is 8*9, torch's 16*9
    plain = jaxinit.reinit(variables["params"], [(r"ConvTranspose_0/kernel", jaxinit.kaiming_normal(
        mode="fan_out", nonlinearity="relu"))], jax.random.key(0))
    assert np.std(_np(plain["ConvTranspose_0"]["kernel"])) / np.std(_np(params["ConvTranspose_0"]["kernel"])) > 1.25


def test_nnx_rules_by_module_class():
    model = NNXNet(nnx.Rngs(0))
    bn_scale = model.bn.scale[...]
    out = jaxinit.reinit(model, _kind_rules(jaxinit, nnx.Conv, nnx.ConvTranspose, nnx.Linear),
                         jax.random.key(0), strict=True)
    assert out is model
    _check_kind_result({n: getattr(model, n).kernel[...] for n, _ in NNX_PAIRS}, NNX_PAIRS, "nnx")
    assert all(not np.asarray(getattr(model, n).bias[...]).any() for n, _ in NNX_PAIRS)
    np.testing.assert_array_equal(np.asarray(model.bn.scale[...]), np.asarray(bn_scale))


def test_nnx_regex_paths_and_linen_paths_give_the_same_draw():
    """Same key, same path, same initializer -> the same array in Linen and NNX."""
    model = NNXNet(nnx.Rngs(0))
    jaxinit.reinit(model, [(r"^head/kernel$", jaxinit.xavier_uniform())], jax.random.key(5))
    params = jaxinit.reinit(linen_variables()["params"], [(r"^head/kernel$", jaxinit.xavier_uniform())],
                            jax.random.key(5))
    np.testing.assert_array_equal(np.asarray(model.head.kernel[...]), np.asarray(params["head"]["kernel"]))


# --------------------------------------------------------------------------- rule semantics
def test_first_match_wins_none_excludes_and_unmatched_untouched():
    before = linen_variables()["params"]
    rules = [(r"head/kernel$", jaxinit.zeros()), (r"^Conv_0/", None), (r"kernel$", jaxinit.ones()),
             (r"head/kernel$", jaxinit.constant(7.0))]
    after = jaxinit.reinit(before, rules, jax.random.key(0))
    assert not np.asarray(after["head"]["kernel"]).any()
    assert np.all(np.asarray(after["ConvTranspose_0"]["kernel"]) == 1)
    for name in ("kernel", "bias"):  # excluded by None: the same objects
        assert after["Conv_0"][name] is before["Conv_0"][name]
    assert after["head"]["bias"] is before["head"]["bias"]
    model = torch_cnn()
    bias0 = model[6].bias.clone()
    torchinit.reinit(model, {r"^6\.weight$": torch.nn.init.zeros_, r"^0\.": None, r"weight$": torchinit.ones()}, 0)
    assert not model[6].weight.any() and bool((model[2].weight == 1).all()) and bool((model[4].weight == 1).all())
    assert not bool((model[0].weight == 1).all()) and torch.equal(model[6].bias, bias0)


def test_predicate_selector():
    params = jaxinit.reinit(linen_variables()["params"],
                            [(lambda path, v: v.ndim == 4, jaxinit.zeros())], jax.random.key(0))
    assert not np.asarray(params["Conv_0"]["kernel"]).any() and np.asarray(params["head"]["kernel"]).any()
    model = torchinit.reinit(torch_cnn(), [(lambda path, p: p.dim() == 4, torchinit.zeros())], 0)
    assert not model[0].weight.any() and not model[2].weight.any() and model[6].weight.any()


def test_determinism_and_per_path_keys():
    p = linen_variables()["params"]
    rules = [(r"kernel$", jaxinit.xavier_uniform())]
    a = jaxinit.reinit(p, rules, jax.random.key(3))
    b = jaxinit.reinit(p, rules, jax.random.key(3))
    c = jaxinit.reinit(p, rules, jax.random.key(4))
    reordered = jaxinit.reinit(dict(reversed(list(p.items()))), rules, jax.random.key(3))
    for name in ("Conv_0", "ConvTranspose_0", "head"):
        np.testing.assert_array_equal(np.asarray(a[name]["kernel"]), np.asarray(b[name]["kernel"]))
        np.testing.assert_array_equal(np.asarray(a[name]["kernel"]), np.asarray(reordered[name]["kernel"]))
        assert not np.array_equal(np.asarray(a[name]["kernel"]), np.asarray(c[name]["kernel"]))
    # same shape, different paths -> different values
    twins = {"a": {"kernel": jnp.zeros((64, 64), jnp.float32)}, "b": {"kernel": jnp.zeros((64, 64), jnp.float32)}}
    out = jaxinit.reinit(twins, [(r"kernel$", jaxinit.normal())], jax.random.key(0))
    assert not np.array_equal(np.asarray(out["a"]["kernel"]), np.asarray(out["b"]["kernel"]))
    key = jax.random.key(0)
    crc = __import__("zlib").crc32(b"a/kernel")
    np.testing.assert_array_equal(np.asarray(out["a"]["kernel"]),
                                  np.asarray(jaxinit.normal()(jax.random.fold_in(key, crc), (64, 64))))


def test_torch_determinism_order_and_global_rng():
    rules = [(r"^[026]\.weight$", torchinit.kaiming_normal())]
    m1 = torchinit.reinit(torch_cnn(), rules, 3)
    m2 = torchinit.reinit(torch_cnn(), rules, torch.Generator().manual_seed(3))
    m3 = torchinit.reinit(torch_cnn(), rules, 4)
    for i in (0, 2, 6):
        assert torch.equal(m1[i].weight, m2[i].weight) and not torch.equal(m1[i].weight, m3[i].weight)
    # registration order does not matter, only names
    lin = lambda: torch.nn.Linear(32, 32)  # noqa: E731
    d1 = torch.nn.ModuleDict({"a": lin(), "b": lin()})
    d2 = torch.nn.ModuleDict({"b": lin(), "a": lin()})
    for d in (d1, d2):
        torchinit.reinit(d, [(r"weight$", torchinit.normal()), (r"bias$", torch.nn.init.uniform_)], 0)
    for n in ("a", "b"):
        assert torch.equal(d1[n].weight, d2[n].weight) and torch.equal(d1[n].bias, d2[n].bias)
    assert not torch.equal(d1["a"].weight, d1["b"].weight)
    # in-place functions without generator= run on the seeded default RNG, restored afterwards
    m4, m5 = torch_cnn(), torch_cnn()
    state = torch.random.get_rng_state()
    torchinit.reinit(m4, [(r"bias$", lambda t: t.uniform_())], 0)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)
    torchinit.reinit(m5, [(r"bias$", lambda t: t.uniform_())], 0)
    assert all(torch.equal(m4[i].bias, m5[i].bias) for i in (0, 2, 6))


def test_linen_under_jit_structure_and_dtypes():
    p = linen_variables()["params"]
    p = jax.tree.map(lambda x: x, p)
    p["Conv_0"]["kernel"] = p["Conv_0"]["kernel"].astype(jnp.bfloat16)
    p["head"]["kernel"] = p["head"]["kernel"].astype(jnp.float64)
    rules = XAVIER["jax"]
    eager = jaxinit.reinit(p, rules, jax.random.key(2))
    jitted = jax.jit(lambda params, k: jaxinit.reinit(params, rules, k))(p, jax.random.key(2))
    assert jax.tree.structure(eager) == jax.tree.structure(p) == jax.tree.structure(jitted)
    for x, y, z in zip(jax.tree.leaves(p), jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        assert x.dtype == y.dtype == z.dtype and x.shape == y.shape == z.shape
        np.testing.assert_allclose(_np(y), _np(z), rtol=1e-7, atol=0)
    # boxed (partitioned) leaves stay boxed
    boxed = {"k": nn.Partitioned(jnp.zeros((16, 8)), names=("a", "b"))}
    out = jaxinit.reinit(boxed, [(r"k$", jaxinit.ones())], jax.random.key(0))
    assert isinstance(out["k"], nn.Partitioned) and out["k"].names == ("a", "b")
    assert np.all(np.asarray(out["k"].value) == 1)


def test_torch_dtype_device_and_identity_preserved(torch_device):
    model = torch_cnn().to(torch_device)
    model[0].double()
    model[6].to(torch.bfloat16)
    params_before = list(model.parameters())
    torchinit.reinit(model, [(r"^[026]\.weight$", torchinit.xavier_uniform())], 0)
    assert all(a is b for a, b in zip(params_before, model.parameters()))
    assert model[0].weight.dtype == torch.float64 and model[6].weight.dtype == torch.bfloat16
    assert all(p.device.type == torch.device(torch_device).type for p in model.parameters())
    assert len(torch.unique(model[6].weight.float())) > 1000  # bf16 sampled in float32, cast


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
def test_errors_name_argument_and_fix(pkg):
    target = linen_variables()["params"] if pkg is jaxinit else torch_cnn()
    key = jax.random.key(0) if pkg is jaxinit else 0
    cases = [
        ([("(", pkg.zeros())], r"rules\[0\], '\(', is not a valid regex"),
        ([(3, pkg.zeros())], r"selector of rules\[0\] must be a regex string"),
        ([("bias", 0.0)], r"initializer of rules\[0\] \('bias'\) must be"),
        ([("bias", pkg.zeros)], r"looks like a factory\. Fix: call it, e.g\. zeros\(\)"),
        ([(int, pkg.zeros())], r"not a module class this package can match"),
        ("bias", r"`rules` must be a sequence of \(selector, initializer\) pairs"),
        ([("bias",)], r"rules\[0\] must be a \(selector, initializer\) pair"),
    ]
    for rules, match in cases:
        with pytest.raises(pkg.InitError, match=match):
            pkg.reinit(target, rules, key)
    with pytest.raises(pkg.InitError, match=r"strict=True and rules\[0\] \('nothing'\) selects no parameter"):
        pkg.reinit(target, [("nothing", pkg.zeros())], key, strict=True)
    pkg.reinit(target, [("nothing", pkg.zeros())], key)  # not strict: fine
    shadowed = r"^Conv_0/bias$" if pkg is jaxinit else r"^0\.bias$"
    with pytest.raises(pkg.InitError, match=r"rules\[1\] .* applies to no parameter.*taken first by rules\[0\]"):
        pkg.reinit(target, [(r"bias$", pkg.zeros()), (shadowed, pkg.ones())], key, strict=True)
    with pytest.raises(pkg.InitError, match="`key` must be"):
        pkg.reinit(target, [("bias", pkg.zeros())], "seed")
    with pytest.raises(pkg.InitError, match=r"failed on parameter .*bias.* fewer than 2 dimensions.*Fix"):
        pkg.reinit(target, [("bias", pkg.xavier_uniform())], key)


def test_torch_error_leaves_model_unchanged():
    model = torch_cnn()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(torchinit.InitError, match=r"\(Conv2d\) failed on parameter '0\.bias'.*bias included"):
        torchinit.reinit(model, [(torch.nn.Linear, torchinit.zeros()),
                                 (torch.nn.Conv2d, torchinit.kaiming_normal())], 0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(torchinit.InitError, match=r"needs more than the tensor \(also: sparsity\).*partial"):
        torchinit.reinit(model, [(r"6\.weight", torch.nn.init.sparse_)], 0)
    with pytest.raises(torchinit.InitError, match="`target` must be a torch.nn.Module"):
        torchinit.reinit(model[0].weight, [], 0)


def test_linen_class_selector_errors():
    params = linen_variables()["params"]
    with pytest.raises(jaxinit.InitError, match=r"rules\[0\] \(Dense\) selects by module class.*use a regex on the path"):
        jaxinit.reinit(params, [(nn.Dense, jaxinit.zeros())], jax.random.key(0))
    with pytest.raises(jaxinit.InitError, match=r"rules\[0\] \(Linear\) names a module class.*flax.linen"):
        jaxinit.reinit(params, [(nnx.Linear, jaxinit.zeros())], jax.random.key(0))
    model = NNXNet(nnx.Rngs(0))
    before = model.head.kernel[...]
    with pytest.raises(jaxinit.InitError, match=r"rules\[0\] \(Dense\) names a module class.*nnx"):
        jaxinit.reinit(model, [(nn.Dense, jaxinit.zeros())], jax.random.key(0))
    with pytest.raises(jaxinit.InitError, match="failed on parameter 'conv/bias'"):
        jaxinit.reinit(model, [(r"head", jaxinit.zeros()), (nnx.Conv, jaxinit.kaiming_normal())],
                       jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(model.head.kernel[...]), np.asarray(before))  # nothing written


def test_public_surface():
    assert "reinit" in jaxinit.__all__ and "reinit" in torchinit.__all__
    import inspect
    js, ts = inspect.signature(jaxinit.reinit), inspect.signature(torchinit.reinit)
    assert [(p.name, p.default, p.kind) for p in js.parameters.values()] == \
           [(p.name, p.default, p.kind) for p in ts.parameters.values()]
    assert list(js.parameters) == ["target", "rules", "key", "strict"]
