"""The Hugging Face zoo for the porting tools: architectures with both a PyTorch and a Flax
implementation in transformers 4.57 (the last line that ships the Flax ones), each with a tiny
config (dropout off, ``use_cache=False``) and inputs in both layouts.

``ZOO[name]`` is ``(torch class, Flax class, config class, config kwargs, inputs)``:
``inputs(config)`` returns the positional inputs (numpy), the same for both frameworks
(Hugging Face's Flax models take torch's layouts, e.g. NCHW images, and transpose inside),
or ``(torch inputs, Flax inputs)`` where the positional orders differ (Whisper).
``OPTIONS[name]``: converter options the pair needs (allowed in "zero hand-written lines").
``build(name)`` returns the float64 torch model, the Flax model and the converted variables.
"""
from __future__ import annotations

import numpy as np



def _rng():  # each model's inputs are the same whichever models ran before
    return np.random.default_rng(0)
IDS = np.array([[3, 4, 5, 6, 2], [7, 8, 9, 10, 2]])  # ends with eos (2), no pad: every row is a full sequence
MASK = np.ones_like(IDS)
DEC = np.array([[2, 5, 6], [2, 7, 8]])


def _text(cfg):
    return (IDS,)


def _text_mask(cfg):
    return (IDS, MASK)


def _text_mask_types(cfg):  # Flax Electra's token_type_ids default to ones (torch's: zeros): given here
    return (IDS, MASK, np.zeros_like(IDS))


def _seq2seq(cfg):
    return (IDS, MASK, DEC)


def _image(cfg):
    return (_rng().standard_normal((2, cfg.num_channels, cfg.image_size, cfg.image_size)),)


def _image_resnet(cfg):
    return (_rng().standard_normal((2, cfg.num_channels, 32, 32)),)


def _audio(cfg):
    return (_rng().standard_normal((2, 400)),)


def _whisper(cfg):  # torch: (input_features, attention_mask, decoder_input_ids); Flax: (features, decoder ids)
    feats = _rng().standard_normal((2, cfg.num_mel_bins, 2 * cfg.max_source_positions))
    return (feats, np.ones(feats.shape[::2], np.int64), DEC), (feats, DEC)


def _clip(cfg):
    v = cfg.vision_config
    return (IDS, _rng().standard_normal((2, v.num_channels, v.image_size, v.image_size)))


_ENC = dict(vocab_size=32, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=16)
_BART = dict(vocab_size=32, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
             decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=16,
             pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
_T5 = dict(vocab_size=32, d_model=16, d_kv=8, d_ff=24, num_layers=1, num_decoder_layers=1, num_heads=2,
           relative_attention_num_buckets=8, decoder_start_token_id=0)
_LLAMA = dict(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
              num_key_value_heads=2, max_position_embeddings=16)
_VIT = dict(image_size=8, patch_size=4, num_channels=3, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=24)

ZOO = {
    "bert": ("BertModel", "FlaxBertModel", "BertConfig", _ENC, _text_mask),
    "roberta": ("RobertaModel", "FlaxRobertaModel", "RobertaConfig", dict(_ENC, max_position_embeddings=20), _text_mask),
    "xlm_roberta": ("XLMRobertaModel", "FlaxXLMRobertaModel", "XLMRobertaConfig",
                    dict(_ENC, max_position_embeddings=20), _text_mask),
    "roberta_prelayernorm": ("RobertaPreLayerNormModel", "FlaxRobertaPreLayerNormModel", "RobertaPreLayerNormConfig",
                             dict(_ENC, max_position_embeddings=20), _text_mask),
    "electra": ("ElectraModel", "FlaxElectraModel", "ElectraConfig", dict(_ENC, embedding_size=8), _text_mask_types),
    "albert": ("AlbertModel", "FlaxAlbertModel", "AlbertConfig", dict(_ENC, embedding_size=8), _text_mask),
    "distilbert": ("DistilBertModel", "FlaxDistilBertModel", "DistilBertConfig",
                   dict(vocab_size=32, dim=16, n_layers=2, n_heads=2, hidden_dim=24, max_position_embeddings=16),
                   _text_mask),
    "roformer": ("RoFormerModel", "FlaxRoFormerModel", "RoFormerConfig", _ENC, _text_mask),
    "big_bird": ("BigBirdModel", "FlaxBigBirdModel", "BigBirdConfig", dict(_ENC, attention_type="original_full"),
                 _text_mask),
    "gpt2": ("GPT2LMHeadModel", "FlaxGPT2LMHeadModel", "GPT2Config",
             dict(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2), _text),
    "gpt_neo": ("GPTNeoModel", "FlaxGPTNeoModel", "GPTNeoConfig",
                dict(vocab_size=32, max_position_embeddings=16, hidden_size=16, num_layers=2, num_heads=2,
                     attention_types=[[["global", "local"], 1]], window_size=4), _text),
    "gptj": ("GPTJModel", "FlaxGPTJModel", "GPTJConfig",
             dict(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2, rotary_dim=4), _text),
    "opt": ("OPTModel", "FlaxOPTModel", "OPTConfig",
            dict(vocab_size=32, hidden_size=16, num_hidden_layers=2, ffn_dim=24, num_attention_heads=2,
                 max_position_embeddings=16, word_embed_proj_dim=16, pad_token_id=1), _text),
    "xglm": ("XGLMModel", "FlaxXGLMModel", "XGLMConfig",
             dict(vocab_size=32, d_model=16, num_layers=2, attention_heads=2, ffn_dim=24, max_position_embeddings=16),
             _text),
    "bloom": ("BloomModel", "FlaxBloomModel", "BloomConfig", dict(vocab_size=32, hidden_size=16, n_layer=2, n_head=2),
              _text),
    "llama": ("LlamaModel", "FlaxLlamaModel", "LlamaConfig", _LLAMA, _text),
    "mistral": ("MistralModel", "FlaxMistralModel", "MistralConfig", dict(_LLAMA, sliding_window=16), _text),
    "gemma": ("GemmaModel", "FlaxGemmaModel", "GemmaConfig", dict(_LLAMA, head_dim=8), _text),
    "bart": ("BartForConditionalGeneration", "FlaxBartForConditionalGeneration", "BartConfig", _BART, _seq2seq),
    "mbart": ("MBartModel", "FlaxMBartModel", "MBartConfig", _BART, _seq2seq),
    "blenderbot": ("BlenderbotModel", "FlaxBlenderbotModel", "BlenderbotConfig", _BART, _seq2seq),
    "blenderbot_small": ("BlenderbotSmallModel", "FlaxBlenderbotSmallModel", "BlenderbotSmallConfig", _BART, _seq2seq),
    "marian": ("MarianMTModel", "FlaxMarianMTModel", "MarianConfig", dict(_BART, decoder_start_token_id=1), _seq2seq),
    "pegasus": ("PegasusModel", "FlaxPegasusModel", "PegasusConfig", _BART, _seq2seq),
    "t5": ("T5ForConditionalGeneration", "FlaxT5ForConditionalGeneration", "T5Config", _T5, _seq2seq),
    "mt5": ("MT5Model", "FlaxMT5Model", "MT5Config", _T5, _seq2seq),
    "longt5": ("LongT5Model", "FlaxLongT5Model", "LongT5Config", dict(_T5, encoder_attention_type="local",
                                                                      local_radius=2), _seq2seq),
    "vit": ("ViTModel", "FlaxViTModel", "ViTConfig", _VIT, _image),
    "beit": ("BeitModel", "FlaxBeitModel", "BeitConfig", dict(_VIT, use_mask_token=False), _image),
    "dinov2": ("Dinov2Model", "FlaxDinov2Model", "Dinov2Config", _VIT, _image),
    "clip": ("CLIPModel", "FlaxCLIPModel", "CLIPConfig",
             dict(text_config=dict(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                   num_attention_heads=2, max_position_embeddings=16),
                  vision_config=dict(image_size=8, patch_size=4, hidden_size=16, intermediate_size=24,
                                     num_hidden_layers=1, num_attention_heads=2), projection_dim=8), _clip),
    "resnet": ("ResNetModel", "FlaxResNetModel", "ResNetConfig",
               dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"), _image_resnet),
    "regnet": ("RegNetModel", "FlaxRegNetModel", "RegNetConfig",
               dict(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=4), _image_resnet),
    "wav2vec2": ("Wav2Vec2Model", "FlaxWav2Vec2Model", "Wav2Vec2Config",
                 dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
                      conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4,
                      num_conv_pos_embedding_groups=2, mask_time_prob=0.05, apply_spec_augment=False, do_stable_layer_norm=True,
                      feat_extract_norm="layer"), _audio),
    "whisper": ("WhisperModel", "FlaxWhisperModel", "WhisperConfig",
                dict(vocab_size=32, num_mel_bins=8, d_model=16, encoder_layers=1, decoder_layers=1,
                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24,
                     max_source_positions=8, max_target_positions=16, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                     decoder_start_token_id=2, begin_suppress_tokens=None, suppress_tokens=None), _whisper),
}


OPTIONS = {"resnet": dict(batchnorm="flax"), "regnet": dict(batchnorm="flax")}  # flax.linen.BatchNorm inside


def config(name):
    import transformers

    _, _, cfg_cls, kw, _ = ZOO[name]
    cfg = getattr(transformers, cfg_cls)(**kw)
    _no_dropout(cfg)
    return cfg


def _no_dropout(cfg):
    """Dropout off everywhere (train mode compares without it), no key/value cache."""
    for k, v in list(vars(cfg).items()):
        if isinstance(v, float) and ("dropout" in k or "pdrop" in k or k in ("layerdrop", "drop_path_rate")):
            setattr(cfg, k, 0.0)
        elif hasattr(v, "to_dict") and k.endswith("_config"):
            _no_dropout(v)
    if hasattr(cfg, "use_cache"):
        cfg.use_cache = False


def build(name, seed=0):
    """(torch model float64, Flax model float64, Flax template shapes, inputs, config)."""
    import jax
    import jax.numpy as jnp
    import torch
    import transformers

    t_cls, f_cls, _, _, inputs = ZOO[name]
    cfg = config(name)
    torch.manual_seed(seed)
    tm = getattr(transformers, t_cls)(cfg).double()
    with torch.no_grad():  # weights that float32 cannot hold, so float64 is really exercised
        for p in tm.parameters():
            if p.requires_grad:  # (not the frozen sinusoid tables of RoFormer, Marian, Pegasus, Whisper)
                p.add_(1e-3 * torch.randn_like(p))
    xs = inputs(cfg)
    fm = getattr(transformers, f_cls)(cfg, dtype=jnp.float64, _do_init=False)
    shapes = jax.eval_shape(lambda key: fm.init_weights(key, fm.input_shape), jax.random.key(0))
    return tm, fm, shapes, xs, cfg
