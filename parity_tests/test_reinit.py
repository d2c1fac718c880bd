"""Model-level re-initialization (``reinit``) in both packages, checked against the
real torch.nn.init on real torch.nn modules and on Flax Linen / NNX models."""
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
import torchinit
from parity_tests._figures import record_figure
from parity_tests.test_initializers import P_MIN


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(64, (3, 3), padding="VALID")(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(256)(x))  # Dense_0 (Linen names layers when constructed)
        return nn.Dense(10)(x)  # Dense_1


def torch_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(64 * 6 * 6, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))


RULES = lambda P: [(r"(kernel|weight)$", P.xavier_uniform()), (r"bias$", P.zeros())]  # noqa: E731


def _linen_params():
    return LinenCNN().init(jax.random.key(0), jnp.ones((1, 8, 8, 32)))["params"]


def test_linen_and_torch_xavier_everywhere():
    params = jaxinit.reinit(_linen_params(), RULES(jaxinit), jax.random.key(1))
    model = torchinit.reinit(torch_cnn(), RULES(torchinit), 1)
    pairs = [("Conv_0", "0"), ("Dense_0", "3"), ("Dense_1", "5")]
    for flax_name, torch_name in pairs:
        k = np.asarray(params[flax_name]["kernel"], np.float64)
        w = getattr(model, torch_name).weight.detach().double().numpy()
        ref = torch.nn.init.xavier_uniform_(torch.empty(w.shape, dtype=torch.float64)).numpy()
        fi, fo = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(w.shape, device="meta"))
        bound = math.sqrt(6.0 / (fi + fo))
        for x in (k, w):
            assert np.abs(x).max() <= bound * (1 + 1e-6) and np.abs(x).max() > 0.95 * bound
            p = scipy.stats.ks_2samp(x.ravel(), ref.ravel()).pvalue
            record_figure("reinit", "ks_p", p, flax_name)
            assert p >= P_MIN
        assert not np.asarray(params[flax_name]["bias"]).any()
        assert not getattr(model, torch_name).bias.detach().any()


def test_first_match_wins_and_unmatched_untouched():
    before = _linen_params()
    rules = [(r"Dense_1/kernel$", jaxinit.zeros()), (r"kernel$", jaxinit.ones())]
    after = jaxinit.reinit(before, rules, jax.random.key(0))
    assert not np.asarray(after["Dense_1"]["kernel"]).any()
    assert np.all(np.asarray(after["Dense_0"]["kernel"]) == 1)
    np.testing.assert_array_equal(np.asarray(after["Dense_0"]["bias"]), np.asarray(before["Dense_0"]["bias"]))
    m = torch_cnn()
    b0 = m[3].bias.detach().clone()
    torchinit.reinit(m, {r"5\.weight$": torch.nn.init.zeros_, r"weight$": torchinit.ones()}, 0)
    assert not m[5].weight.any() and bool((m[3].weight == 1).all()) and torch.equal(m[3].bias, b0)


def test_deterministic_per_path_and_jittable():
    p = _linen_params()
    rules = [(r"kernel$", jaxinit.kaiming_normal())]
    a = jaxinit.reinit(p, rules, jax.random.key(3))
    b = jax.jit(lambda params, k: jaxinit.reinit(params, rules, k))(p, jax.random.key(3))
    for name in ("Conv_0", "Dense_0", "Dense_1"):
        np.testing.assert_allclose(np.asarray(a[name]["kernel"]), np.asarray(b[name]["kernel"]), rtol=1e-6, atol=1e-7)
        assert a[name]["kernel"].dtype == p[name]["kernel"].dtype
    assert not np.array_equal(np.asarray(a["Dense_0"]["kernel"][:10, :10]), np.asarray(a["Dense_1"]["kernel"][:10, :10]))
    m1, m2 = torchinit.reinit(torch_cnn(), rules_t := [(r"weight$", torchinit.kaiming_normal())], 3), \
        torchinit.reinit(torch_cnn(), rules_t, torch.Generator().manual_seed(3))
    assert all(torch.equal(m1[i].weight, m2[i].weight) for i in (0, 3, 5))


def test_torch_layout_fans_applied():
    """kaiming_uniform on a torch Linear weight uses torch's fan_in (in_features)."""
    m = torchinit.reinit(torch.nn.Linear(400, 20), [(r"weight$", torchinit.kaiming_uniform())], 0)
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(400)  # torch.nn.init.kaiming_uniform_ default gain
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.95 * bound


def test_nnx_class_selector():
    model = nnx.Sequential(nnx.Linear(16, 32, rngs=nnx.Rngs(0)), nnx.Conv(4, 8, (3,), rngs=nnx.Rngs(1)))
    jaxinit.reinit(model, [(nnx.Linear, jaxinit.constant(0.5))], jax.random.key(0))
    assert np.all(np.asarray(model.layers[0].kernel[...]) == 0.5) and np.all(np.asarray(model.layers[0].bias[...]) == 0.5)
    assert not np.all(np.asarray(model.layers[1].kernel[...]) == 0.5)
    m = torchinit.reinit(torch_cnn(), [(torch.nn.Conv2d, torch.nn.init.ones_)], 0)
    assert bool((m[0].weight == 1).all()) and not bool((m[3].weight == 1).all())


@pytest.mark.parametrize("pkg", [jaxinit, torchinit], ids=["jaxinit", "torchinit"])
def test_errors(pkg):
    target = _linen_params() if pkg is jaxinit else torch_cnn()
    key = jax.random.key(0) if pkg is jaxinit else 0
    with pytest.raises(pkg.InitError, match="not a valid regex"):
        pkg.reinit(target, [("(", pkg.zeros())], key)
    with pytest.raises(pkg.InitError, match="selector must be a regex string"):
        pkg.reinit(target, [(3, pkg.zeros())], key)
    with pytest.raises(pkg.InitError, match="must be callable"):
        pkg.reinit(target, [("bias", 0.0)], key)
    with pytest.raises(pkg.InitError, match="matched no parameter: 'nothing'"):
        pkg.reinit(target, [("nothing", pkg.zeros())], key, strict=True)
    with pytest.raises(pkg.InitError, match="sequence of \\(selector, initializer\\) pairs"):
        pkg.reinit(target, 5, key)


def test_linen_class_selector_error():
    with pytest.raises(jaxinit.InitError, match="use a regex on the path"):
        jaxinit.reinit(_linen_params(), [(nn.Dense, jaxinit.zeros())], jax.random.key(0))
