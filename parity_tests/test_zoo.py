"""The Hugging Face zoo (``parity_tests/_hf_zoo.py``): every architecture with both a PyTorch
and a Flax implementation in transformers 4.57 that builds on the installed jax, each with a
tiny float64 config, converted by ``from_torch_state_dict`` with no hand-written line (only the
options in ``OPTIONS``) and back bit for bit, twin-checked in eval and train mode (dropout off)
and audited.

The zoo carries the ``zoo`` marker (deselected by default, ``pytest -m zoo``: 3 to 4 minutes on one
core with a warm XLA cache); the default run's Hugging Face sample is Bert in test_porting.py (a
cold model costs about 10 s).

Verdicts: ``twin_check``'s own (float64 budget 1e-9 of the largest ``|torch|``) where both
frameworks compute in float64. Where Hugging Face's own code computes part of the model in
float32, the difference is that float32 rounding, bounded here by 1e-5 relative (float32's
2^-24 ~ 6e-8 per operation, a few hundred operations deep), with the upstream line named in
``UPSTREAM``; a porting error is O(1e-2) or more.
"""
from __future__ import annotations

import importlib.util

import jax.numpy as jnp
import pytest
import torch

import jaxinit
from parity_tests._figures import record_figure

pytestmark = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                reason="transformers is not installed")

# Where Hugging Face computes in float32 inside a float64 model (transformers 4.57 sources).
UPSTREAM = {
    "llama": "FlaxLlamaRMSNorm computes the variance in float32 (modeling_flax_llama.py, FlaxLlamaRMSNorm.__call__)",
    "mistral": "FlaxMistralRMSNorm computes the variance in float32 (modeling_flax_mistral.py)",
    "gemma": "FlaxGemmaRMSNorm computes the variance in float32 (modeling_flax_gemma.py)",
    "vit": "FlaxViTPreTrainedModel.__call__ casts pixel_values to float32 (jnp.array(pixel_values, dtype=jnp.float32))",
    "beit": "FlaxBeitPreTrainedModel.__call__ casts pixel_values to float32",
    "dinov2": "FlaxDinov2PreTrainedModel.__call__ casts pixel_values to float32",
    "clip": "FlaxCLIPPreTrainedModel.__call__ casts pixel_values to float32",
    "resnet": "FlaxResNetPreTrainedModel.__call__ casts pixel_values to float32",
    "regnet": "FlaxRegNetPreTrainedModel.__call__ casts pixel_values to float32",
    "wav2vec2": "FlaxWav2Vec2PreTrainedModel.__call__ casts input_values to float32 (jnp.array(input_values, "
                "dtype='f4'))",
    "marian": "the fixed sinusoid tables are built in float32 on both sides (MarianSinusoidalPositionalEmbedding, "
              "create_sinusoidal_positions)",
    "pegasus": "the same as Marian (PegasusSinusoidalPositionalEmbedding)",
    "xglm": "XGLM's sinusoidal position table is built in float32 in torch (XGLMSinusoidalPositionalEmbedding."
            "get_embedding) and in float32 numpy in Flax (create_sinusoidal_positions)",
}
# Train mode differs upstream (not a porting difference): outputs compared in eval only.
TRAIN_UPSTREAM = {
    "regnet": "FlaxRegNetXLayer.__call__ calls self.layer(hidden_state) without deterministic=, so its "
              "BatchNorms normalize with running statistics in train mode (modeling_flax_regnet.py)",
}
# Parameters Flax trains and torch does not (a torch buffer): their gradients differ by design.
FROZEN_IN_TORCH = {"marian": ["params/final_logits_bias"], "bart": ["params/final_logits_bias"]}
# Pairs that need a hand-written line, and why.
HAND_WRITTEN = {
    "roformer": "torch keeps the fixed sinusoid table encoder.embed_positions.weight as a (frozen) parameter; "
                "Flax computes it: drop the key from the state dict (twin_check: ignore=)",
    "marian": "the same for model.encoder/decoder.embed_positions.weight",
    "pegasus": "the same for encoder/decoder.embed_positions.weight",
}
# Not in the zoo: Flax T5 / mT5 / LongT5 do not build on the installed jax (modeling_flax_t5.py calls
# jnp.clip(..., a_max=...), an argument jax removed).
NOT_BUILDING = ("t5", "mt5", "longt5")
# What audit may report on a correct twin: each is a real difference between the two implementations.
TRUE_FINDINGS = {"embedding padding_idx",  # torch's pad row gets no gradient, Flax's Embed trains it
                 "initializers",  # Flax's default kernel_init where HF Flax uses it (irrelevant once converted)
                 "batchnorm"}  # HF's Flax ResNet/RegNet use flax.linen.BatchNorm (Flax's conventions)


def _check(name, modes=("eval", "train"), audit=True):
    from parity_tests._hf_zoo import OPTIONS, build

    tm, fm, shapes, xs, _ = build(name)
    txs, fxs = xs if isinstance(xs[0], tuple) else (xs, xs)
    opts = OPTIONS.get(name, {})
    template = shapes if "params" in shapes else {"params": shapes}
    ignore = []
    if name in HAND_WRITTEN:  # the one hand-written line
        sd = {k: v for k, v in tm.state_dict().items() if "embed_positions" not in k}
        ignore = [k for k in tm.state_dict() if "embed_positions" in k]
        v = jaxinit.from_torch_state_dict(sd, template, dtype=jnp.float64, **opts)
    else:
        v = jaxinit.from_torch_state_dict(tm, template, dtype=jnp.float64, **opts)
    if name not in HAND_WRITTEN:  # and back: every torch key (tied ones filled from their partner), bit for bit
        back = jaxinit.to_torch_state_dict(v, tm, **opts)
        assert all(torch.equal(back[k], t) for k, t in tm.state_dict().items()), name
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # XGLM and CLIP build their causal masks in the default dtype
    try:
        report = jaxinit.twin_check(tm, fm, txs, flax_inputs=fxs, variables=v, jit=True, modes=modes,
                                    ignore=ignore, **opts)
        rep = jaxinit.audit(tm, fm, txs, flax_inputs=fxs, variables=v) if audit else None
    finally:
        torch.set_default_dtype(default)
    for mode, r in report.items():
        rel_out = r["output"] / r["output_scale"]
        rel_grad = r["grad"] / r["grad_scale"]
        frozen = FROZEN_IN_TORCH.get(name, [])
        assert r["buffer_in_torch"] == frozen, r["buffer_in_torch"]
        if frozen:  # the rest of the gradients are compared
            rel_grad = max(g["diff"] for k, g in r["grads"].items() if k not in frozen) / r["grad_scale"]
        if mode == "train" and name in TRAIN_UPSTREAM:
            record_figure(f"zoo/{name}", "train_output_rel_f64", rel_out, mode)
            continue
        record_figure(f"zoo/{name}", "output_rel_f64", rel_out, mode)
        record_figure(f"zoo/{name}", "grad_rel_f64", rel_grad, mode)
        if name in UPSTREAM:
            assert rel_out < 1e-5 and rel_grad < 1e-5, (name, mode, rel_out, rel_grad, UPSTREAM[name])
        else:
            assert r["ok"], (name, mode, r["output"], r["worst_grad"], r["grad"])
    if rep is not None:
        assert rep.categories() <= TRUE_FINDINGS, str(rep)
        assert "batchnorm" not in rep.categories() or name in ("resnet", "regnet"), str(rep)
    return report


def _zoo_names():
    from parity_tests._hf_zoo import ZOO

    return [n for n in ZOO if n not in NOT_BUILDING]


@pytest.mark.zoo
@pytest.mark.parametrize("name", _zoo_names())
def test_zoo(name):
    report = _check(name)
    if name in ("gpt2", "bart"):  # tied output embeddings found from the shared tensor
        assert "lm_head.weight" in report["eval"]["tied"]
