"""twin_check / compare_layers under autocast (issue 23 item 4): the torch model under
``torch.autocast('cpu', dtype)``, its Flax twin under ``jaxinit.amp.Autocast('cpu', dtype)``, judged
against the per-dtype budget of ``_jaxinit.jax_and_torch._common.AUTOCAST_TWIN_BUDGET`` (ulps of the low
dtype and a share of elements). A right port passes; a planted wrong port (tanh-approximated GELU,
LayerNorm eps 1e-6 for torch's 1e-5) still fails under autocast: the budget must not hide real bugs.

The twins are those of the mixed-precision training tests (parity_tests/_amp_twins.py). Default run:
the MLP (right and wrong GELU, twin_check with jit) and the errors; the conv net with BatchNorm, the
transformer block, float16 and compare_layers naming the layer: ``-m exhaustive``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn

import jaxinit
import jaxinit.amp as ja
import torchinit
from _jaxinit.errors import InitError
from _jaxinit.jax_and_torch import _common as shared
from parity_tests import _amp_twins as amp_twins


class TanhGeluMLP(nn.Module):
    """The MLP twin ported with a planted error: GELU's tanh approximation for torch's exact (erf) GELU."""
    @nn.compact
    def __call__(self, x, train=True):
        x = nn.relu(nn.Dense(64, name="fc1")(x))
        x = ja.active().pointwise(lambda h: nn.gelu(h, approximate=True))(nn.Dense(64, name="fc2")(x))
        return nn.Dense(10, name="fc3")(x)


class EpsBlock(amp_twins.LinenBlock):
    """The transformer block with a planted error: Flax's LayerNorm default eps 1e-6 for torch's 1e-5."""
    @nn.compact
    def __call__(self, x, train=True):
        h = nn.LayerNorm(epsilon=1e-6, name="ln1")(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, deterministic=True, name="attn")(h)
        h = nn.Dense(2 * self.e, name="fc1")(nn.LayerNorm(epsilon=1e-6, name="ln2")(x))
        x = x + nn.Dense(self.e, name="fc2")(ja.active().pointwise(amp_twins.torch_gelu)(h))
        return nn.Dense(10, name="head")(x.mean(1))


def _twin(name, linen_cls=None):
    """torch twin (seeded), Flax twin with the torch weights, a float32 batch in both layouts."""
    tcls, lcls, shape, perm = amp_twins.TWINS[name]
    torch.manual_seed(0)
    tm = tcls()
    model = (linen_cls or lcls)()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    fx = x.transpose(perm) if perm else x
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(fx)))
    return tm, model, jaxinit.from_torch_state_dict(tm, template), x, fx


def test_mlp_twin_under_bf16_autocast_passes_and_a_wrong_gelu_fails():
    """Right port: outputs bitwise torch's autocast outputs, gradients within the budget. A tanh GELU
    moves 2.8% of the outputs by an ulp (budget 1%): not ok. In float32 the same bug hides under the
    float32 budget (8e-5 of the scale < 1e-4): autocast's ulp count is the sharper test here."""
    tm, model, v, x, _ = _twin("mlp")
    ok = jaxinit.twin_check(tm, model, x, variables=v, autocast=ja.Autocast("cpu", jnp.bfloat16), jit=True,
                            modes=("train",))["train"]
    budget = shared.autocast_twin_budget("bfloat16")
    assert ok["ok"], ok
    assert ok["autocast"] == {"device_type": "cpu", "dtype": "bfloat16", "ulps_budget": budget["ulps"],
                              "share_budget": {"outputs": budget["outputs"], "grads": budget["grads"],
                                               "batch_stats": budget["grads"]}}
    assert ok["dtype"] == "bfloat16" and ok["output"] == 0.0  # linear/bmm under the policy: bitwise
    assert ok["share"]["grads"] <= budget["grads"] / 10
    _, bad_model, _, _, _ = _twin("mlp", TanhGeluMLP)
    bad = jaxinit.twin_check(tm, bad_model, x, variables=v, autocast=torch.bfloat16, jit=True,
                             modes=("train",))["train"]
    assert not bad["ok"]
    assert bad["share"]["outputs"] > 2 * budget["outputs"], bad["share"]
    assert bad["outputs"]["output"]["share"] == bad["share"]["outputs"]


def test_autocast_argument_errors():
    """Bad autocast= values name the argument and the fix, before any pass runs."""
    tm, model, v, x, _ = _twin("mlp")
    with pytest.raises(InitError, match=r"autocast= must be a jaxinit.amp.Autocast.*torch.bfloat16"):
        jaxinit.twin_check(tm, model, x, variables=v, autocast="fast")
    with pytest.raises(InitError, match=r"autocast= must be"):
        torchinit.compare_layers(tm, model, x, variables=v, autocast=True)
    with pytest.raises(InitError, match=r"not a torch autocast setting.*dtype one of \['bfloat16', 'float16'\]"):
        jaxinit.twin_check(tm, model, x, variables=v, autocast=torch.float64)
    with pytest.raises(InitError, match=r"cuda autocast but the torch module is on cpu.*Autocast\('cpu'"):
        jaxinit.compare_layers(tm, model, x, variables=v, autocast=ja.Autocast("cuda", jnp.bfloat16))
    with pytest.raises(InitError, match=r"cuda autocast but the torch module is on cpu"):
        jaxinit.twin_check(tm, model, x, variables=v, autocast=ja.Autocast("cuda", jnp.float16))
    setting = shared.resolve_autocast(torch.autocast("cpu", dtype=torch.float16), tm, "twin_check")
    assert (setting.device_type, setting.dtype) == ("cpu", "float16")
    # a disabled policy is no autocast: the float32 budget
    assert shared.resolve_autocast(ja.Autocast(enabled=False), tm, "twin_check") is None
    assert shared.resolve_autocast(torch.autocast("cpu", enabled=False), tm, "twin_check") is None
    assert shared.resolve_autocast("float16", tm, "twin_check").dtype == "float16"


def test_ulp_counts_against_numpy_spacing():
    """One ulp of the low dtype at |v| (the unit the autocast budget counts in) is numpy's spacing of that
    dtype (ml_dtypes' bfloat16, numpy's float16), normal and subnormal; near-zero elements are judged
    at 1/256 of the scale."""
    import ml_dtypes

    v = np.array([1.0, 1.5, 3.0, -0.3, 1e-3, 7e-6, 2.0 ** -130], np.float64)
    for low, dt in (("bfloat16", ml_dtypes.bfloat16), ("float16", np.float16)):
        expect = np.abs(np.spacing(v.astype(dt))).astype(np.float64)
        normal = np.abs(v) >= (2.0 ** -126 if low == "bfloat16" else 2.0 ** -14)
        np.testing.assert_array_equal(shared.spacing(v, low)[normal], expect[normal])
    assert shared.ulp_counts(np.array([4.0]), np.array([4.0 + 2 * 2.0 ** -5]), "bfloat16", 4.0)[0] == 2.0
    assert shared.ulp_counts(np.array([0.0]), np.array([2.0 ** -13]), "bfloat16", 4.0)[0] == 1.0  # floor 4/256


@pytest.mark.exhaustive
@pytest.mark.parametrize("name", ["mlp", "conv_bn", "transformer_block"])
@pytest.mark.parametrize("low", ["bfloat16", "float16"])
def test_twins_pass_under_autocast(name, low):
    """The three twins pass twin_check (eval and train: running statistics too) under CPU autocast."""
    tm, model, v, x, fx = _twin(name)
    report = jaxinit.twin_check(tm, model, x, variables=v, flax_inputs=fx, autocast=getattr(torch, low), jit=True)
    for mode in ("eval", "train"):
        assert report[mode]["ok"], (mode, report[mode]["share"], report[mode]["output"])


@pytest.mark.exhaustive
@pytest.mark.parametrize("low", ["bfloat16", "float16"])
def test_compare_layers_under_autocast_names_the_wrong_layernorm(low):
    """LayerNorm eps 1e-6 for 1e-5: compare_layers under autocast passes the right block and flags the
    wrong one. On CPU torch leaves layer_norm in float32, so ln1's own output moves by 7e-6 of its scale
    (below one ulp of the low dtype); the first low-precision layer that reads it (attn) is the first
    output divergence, and ln1's gradient is flagged."""
    tm, model, v, x, _ = _twin("transformer_block")
    right = jaxinit.compare_layers(tm, model, x, variables=v, autocast=getattr(torch, low), gradients=True)
    assert right.first_divergence is None and right.first_grad_divergence is None, str(right)
    assert [r["torch"] for r in right.rows] == ["ln1", "attn", "ln2", "fc1", "fc2", "head", ""]
    assert right.autocast["dtype"] == low and "autocast" in str(right)
    _, bad_model, _, _, _ = _twin("transformer_block", EpsBlock)
    bad = jaxinit.compare_layers(tm, bad_model, x, variables=v, autocast=getattr(torch, low), gradients=True)
    assert bad.first_divergence is not None and bad.first_divergence["torch"] == "attn", str(bad)
    assert any(r["torch"] in ("ln1", "ln2") and r["grad_ok"] is False for r in bad.rows), str(bad)


@pytest.mark.exhaustive
def test_compare_layers_under_autocast_wrong_gelu_nnx_and_conv():
    """The tanh GELU: compare_layers under bf16 autocast names fc3 (the first layer after the GELU); the
    conv net with BatchNorm passes layer by layer in train mode (running statistics compared)."""
    tm, _, v, x, _ = _twin("mlp")
    _, bad_model, _, _, _ = _twin("mlp", TanhGeluMLP)
    bad = jaxinit.compare_layers(tm, bad_model, x, variables=v, autocast=torch.bfloat16)
    assert bad.first_divergence["torch"] == "fc3", str(bad)
    tm, model, v, x, fx = _twin("conv_bn")
    rep = jaxinit.compare_layers(tm, model, x, variables=v, flax_inputs=fx, autocast=torch.bfloat16,
                                 mode="train", gradients=True)
    assert rep.first_divergence is None and rep.first_grad_divergence is None, str(rep)
    assert any("state_diff" in r for r in rep.rows)


@pytest.mark.exhaustive
def test_nnx_twin_under_bf16_autocast():
    """An NNX twin (nnx.Sequential of nnx.Linear) under the policy's NNX hooks: twin_check and
    compare_layers pass, outputs bitwise torch's autocast outputs."""
    from flax import nnx

    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.ReLU(), torch.nn.Linear(32, 5))
    r = nnx.Rngs(0)
    nm = jaxinit.from_torch_state_dict(tm, nnx.Sequential(nnx.Linear(12, 32, rngs=r), nnx.relu,
                                                          nnx.Linear(32, 5, rngs=r)))
    x = np.random.default_rng(1).standard_normal((16, 12)).astype(np.float32)
    rep = jaxinit.twin_check(tm, nm, x, autocast=torch.bfloat16)
    assert rep["eval"]["ok"] and rep["train"]["ok"] and rep["train"]["output"] == 0.0, rep["train"]["share"]
    layers = jaxinit.compare_layers(tm, nm, x, autocast=torch.bfloat16, gradients=True)
    assert layers.first_divergence is None and [r["diff"] for r in layers.rows] == [0.0, 0.0, 0.0], str(layers)
