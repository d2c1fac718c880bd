"""twin_check / compare_layers / audit in training mode with dropout on (issue 22 item 3).

``rngs={'dropout': key}`` feeds the Flax apply and binds the torch model (the check's copy) to the
same masks with ``torchinit.rngs.bind_rngs``; outputs, gradients and running statistics then agree
at the eval-mode budget (float64: 1e-9 of the scale; measured at rounding, 1e-16). Without keys a
clear error names dropout and the fix; ``audit`` flags dropout pairs whose masks cannot agree.
Default run: a small Linen twin (dropout + BatchNorm); Hugging Face Bert and GPT-2: ``-m exhaustive``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn

import jaxinit
import torchinit
from _jaxinit.errors import InitError


class FlaxNet(nn.Module):
    """Dense -> BatchNorm -> ReLU -> Dropout -> Dense -> Dropout(broadcast over the batch)."""
    rate: float = 0.2

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dense(8, name="fc1")(x)
        x = jaxinit.BatchNorm(use_running_average=not train, name="bn")(x)
        x = nn.Dropout(self.rate)(nn.relu(x), deterministic=not train)
        return nn.Dropout(0.5)(nn.Dense(3, name="fc2")(x), deterministic=not train)


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.fc2 = torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
        self.drop = torch.nn.Dropout(0.2)

    def forward(self, x):
        return torch.nn.functional.dropout(self.fc2(self.drop(torch.relu(self.bn(self.fc1(x))))), 0.5, self.training)


def _twin(rate=0.2):
    torch.manual_seed(0)
    tm = TorchNet().double()
    x = np.random.RandomState(0).randn(6, 4)
    template = jax.eval_shape(lambda: FlaxNet(rate).init(jax.random.key(0), jnp.asarray(x)))
    return tm, FlaxNet(rate), jaxinit.from_torch_state_dict(tm, template, dtype=np.float64), x


def test_train_mode_with_dropout_bound_keys():
    """rngs= : the train-mode verdict holds at the float64 budget (outputs, gradients, running statistics)."""
    tm, fm, v, x = _twin()
    key = jax.random.key(7)
    train = torchinit.twin_check(tm, fm, x, variables=v, rngs={"dropout": key}, modes=("train",), jit=True)["train"]
    assert train["ok"], train
    assert train["output"] <= 1e-15 * train["output_scale"] and train["grad"] <= 1e-15 * train["grad_scale"]
    assert train["batch_stats"] <= 1e-15 and "dropout_note" not in train



@pytest.mark.exhaustive  # eager Flax passes with per-layer gradients: ~5 s
def test_compare_layers_train_mode_with_dropout_bound_keys():
    """compare_layers in train mode with rngs=: every layer (the dropouts too) and its output gradient agree."""
    tm, fm, v, x = _twin()
    train = jaxinit.twin_check(tm, fm, x, variables=v, rngs={"dropout": jax.random.key(7)}, modes=("train",),
                               jit=True)["train"]
    # another key, other masks: compare_layers binds the torch copy to that one
    layers = jaxinit.compare_layers(tm, fm, x, variables=v, mode="train", gradients=True,
                                    rngs={"dropout": jax.random.key(8)})
    assert layers.first_divergence is None and layers.first_grad_divergence is None, str(layers)
    assert {r["flax"] for r in layers.rows} >= {"fc1", "bn", "fc2", "Dropout_0"}
    assert layers.rows[-1]["scale"] != train["outputs"]["output"]["scale"]  # other masks, other outputs
    # a Flax twin whose dropout is off (deterministic) against torch's: ok=False, with the note that says why
    class NoDropout(FlaxNet):
        @nn.compact
        def __call__(self, x, train: bool = False):
            return super().__call__(x, False)

    plain = jaxinit.twin_check(tm, NoDropout(), x, variables=v, modes=("train",), jit=True)["train"]
    assert not plain["ok"] and "rngs={'dropout': key}" in plain["dropout_note"] and "drop" in plain["dropout_note"]


def test_train_mode_with_dropout_errors():
    """No keys: an error naming dropout and rngs= (not Flax's raw InvalidRngError), in both checks; a rate
    that differs between the twins: bind_rngs' error (the masks cannot agree); a bad rngs= value."""
    tm, fm, v, x = _twin()
    with pytest.raises(InitError, match=r"twin_check: in train mode the Flax model draws random numbers \(dropout\).*"
                                        r"rngs=\{'dropout': jax.random.key\(0\)\}.*bind_rngs.*modes=\('eval',\)"):
        jaxinit.twin_check(tm, fm, x, variables=v, modes=("train",), jit=True)
    with pytest.raises(InitError, match=r"compare_layers: in train mode the Flax model draws random numbers \(dropout\)"):
        jaxinit.compare_layers(tm, fm, x, variables=v, mode="train")
    with pytest.raises(InitError, match=r"rngs= must be a dict \{stream: key\}"):
        jaxinit.twin_check(tm, fm, x, variables=v, rngs=jax.random.key(0))
    with pytest.raises(InitError, match=r"rngs\['dropout'\] must be a JAX key.*jax.random.key\(seed\)"):
        jaxinit.twin_check(tm, fm, x, variables=v, rngs={"dropout": 3})
    with pytest.raises(InitError, match=r"the Flax twin's dropout draws from the 'dropout' stream.*rngs=\{'dropout'"):
        jaxinit.twin_check(tm, fm, x, variables=v, rngs={"params": jax.random.key(0)})
    _, fm_other, _, _ = _twin(rate=0.3)
    with pytest.raises(InitError, match=r"p=0.2 but the paired Flax call \(Dropout_0, count 1\) has rate=0.3"):
        jaxinit.twin_check(tm, fm_other, x, variables=v, rngs={"dropout": jax.random.key(0)}, modes=("train",),
                           jit=True)


def test_audit_flags_dropout_that_cannot_be_bound():
    """audit: a torch dropout whose mask cannot be Flax's (a foreign stochastic-depth module, alpha dropout,
    attention dropout inside the fused kernel) and a rate that differs, each with what to do."""
    class Foreign(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            return x

    Foreign.__name__ = "DropPath"  # timm's class name: drawn with bernoulli_, not bindable

    class TorchOdd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)
            self.path, self.alpha = Foreign(0.1), torch.nn.AlphaDropout(0.1)
            self.attn = torch.nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True)

        def forward(self, x):
            h = self.alpha(self.path(self.fc1(x)))
            return self.fc2(h)

    class FlaxOdd(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            return nn.Dense(3, name="fc2")(nn.Dense(8, name="fc1")(x))

    tm = TorchOdd()
    x = np.random.RandomState(0).randn(2, 4).astype(np.float32)
    report = jaxinit.audit(tm, FlaxOdd(), x)
    found = {f.torch: f for f in report.findings if f.category == "dropout"}
    assert "torchinit.nn.DropPath" in found["path"].fix
    assert "AlphaDropout" in found["alpha"].problem and "eval" in found["alpha"].fix
    assert "fused" in found["attn"].problem and "need_weights=True" in found["attn"].fix
    # the rate: a paired pair whose rates differ
    tm2, fm2, v2, x2 = _twin(rate=0.3)
    rates = [f for f in jaxinit.audit(tm2, fm2, x2, variables=v2).findings if f.category == "dropout"]
    assert rates and "0.2" in rates[0].problem and "0.3" in rates[0].problem, rates


# --------------------------------------------------------------------------- Hugging Face
HF = {
    "bert": ("BertConfig", "BertModel", "FlaxBertModel",
             dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                  max_position_embeddings=16)),
    "gpt2": ("GPT2Config", "GPT2Model", "FlaxGPT2Model",
             dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16, use_cache=False)),
}


@pytest.mark.exhaustive  # transformers' import and two models per case: 10-20 s each
@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_hugging_face_train_mode_with_dropout(name):
    """Tiny Bert / GPT-2 with their default dropout (0.1 everywhere), eager attention, float64:
    twin_check and compare_layers (every layer: 42 / 26) in train mode with rngs= pass at the float64
    budget; without it, the error."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    cfg_name, tname, fname, cfg = HF[name]
    config = getattr(transformers, cfg_name)(**cfg, attn_implementation="eager")
    torch.manual_seed(0)
    tm = getattr(transformers, tname)(config).double()
    fm = getattr(transformers, fname)(config, dtype=jnp.float64)
    fm.params = jaxinit.from_torch_state_dict(tm, {"params": fm.params}, dtype="template")["params"]
    ids = np.random.RandomState(0).randint(1, 50, (2, 7))  # no pad id: torch's padding_idx row has no gradient

    def keep_t(y):
        return y.last_hidden_state  # the pooler is unused by GPT-2 and randomly initialized in both Berts

    keep_f = keep_t
    rep = jaxinit.twin_check(tm, fm, ids, rngs={"dropout": jax.random.key(3)}, modes=("train",), jit=True,
                             torch_output_transform=keep_t, output_transform=keep_f)["train"]
    assert rep["ok"], (rep["output"], rep["worst_grad"], rep["grad"])
    assert rep["output"] <= 1e-13 * rep["output_scale"] and rep["grad"] <= 1e-12 * rep["grad_scale"]
    sdpa = getattr(transformers, tname)(getattr(transformers, cfg_name)(**cfg, attn_implementation="sdpa")).double()
    flagged = [f for f in jaxinit.audit(sdpa, fm, ids).findings if f.category == "dropout"]
    assert flagged and "attn_implementation='eager'" in flagged[0].fix, flagged
    assert not [f for f in jaxinit.audit(tm, fm, ids).findings if f.category == "dropout"]
    layers = jaxinit.compare_layers(tm, fm, ids, mode="train", rngs={"dropout": jax.random.key(3)})
    assert layers.first_divergence is None and len(layers.rows) > 20, str(layers)
    assert max(r["rel"] for r in layers.rows) <= 1e-13
    with pytest.raises(InitError, match=r"draws random numbers \(dropout\).*attn_implementation='eager'"):
        jaxinit.twin_check(tm, fm, ids, modes=("train",), jit=True, torch_output_transform=keep_t,
                           output_transform=keep_f)
