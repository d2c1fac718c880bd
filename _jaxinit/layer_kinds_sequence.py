"""Layer kinds of the sequence family: LSTM, GRU (torch packs layers and directions in one
module) and multi-head attention (registered in :mod:`_jaxinit.layer_kinds`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from _jaxinit.layer_kind_base import PARAMS, LayerKind, leaf_name, merge_bias, pop_leaf, rnn_bias_out

_LSTM_GATES = {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}
_LSTM_GATES_NNX = {"ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"}
_GRU_GATES = {"ir", "iz", "in", "hr", "hz", "hn"}


class _RNNKind(LayerKind):
    torch_leaves = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    required = ("weight_ih", "weight_hh")
    rnn = owns_children = True
    gates = 0

    def module_error(self, module):
        if getattr(module, "proj_size", 0):
            return "nn.LSTM with proj_size > 0 has no Flax counterpart (weight_hr)"
        return None

    def torch_guess(self, leaves, shapes):
        hh = [k for k in leaves if k.startswith("weight_hh")]
        if not hh:
            return False
        h4, h = shapes[leaves[hh[0]]][:2]
        return h and h4 // h == self.gates


class LSTM(_RNNKind):
    name, flax_class, torch_classes, gates = "lstm", "LSTMCell", ("LSTM", "LSTMCell"), 4
    layout = ("lstm            weight_ih (4H, in), weight_hh (4H, H),   ii/if/ig/io kernel (in, H); hi/hf/hg/ho kernel (H, H)\n"
              "                bias_ih, bias_hh (gates i, f, g, o)      and bias = bias_ih + bias_hh (NNX: if_)")

    def flax_match(self, kids, leaves):
        return kids in (_LSTM_GATES, _LSTM_GATES_NNX)

    def to_flax(self, g, t, problems, opts):
        out = {}
        nnx = opts.has is not None and opts.has(("if_",))
        names_i = ("ii", "if_" if nnx else "if", "ig", "io")
        names_h = ("hi", "hf", "hg", "ho")
        wi, wh = np.split(t["weight_ih"], 4, 0), np.split(t["weight_hh"], 4, 0)
        bi = np.split(t["bias_ih"], 4) if "bias_ih" in t else [None] * 4
        bh = np.split(t["bias_hh"], 4) if "bias_hh" in t else [None] * 4
        for j in range(4):
            out[(PARAMS, (names_i[j], "kernel"))] = wi[j].T
            out[(PARAMS, (names_h[j], "kernel"))] = wh[j].T
            b = merge_bias(bi[j], bh[j], leaf_name(g, "bias_ih") + f"[gate {'ifgo'[j]}]",
                            leaf_name(g, "bias_hh") + f"[gate {'ifgo'[j]}]", opts.merge_rnn_biases, problems,
                            opts.gradients)
            out[(PARAMS, (names_h[j], "bias"))] = b if b is not None else np.zeros(wh[j].shape[0], wh[j].dtype)
        return out

    def to_torch(self, g, f, problems, opts):
        out: dict[str, Any] = {}
        fi = "if_" if ((PARAMS, ("if_", "kernel")) in f) else "if"
        names_i, names_h = ("ii", fi, "ig", "io"), ("hi", "hf", "hg", "ho")
        wi = [pop_leaf(f, n, "kernel") for n in names_i]
        wh = [pop_leaf(f, n, "kernel") for n in names_h]
        bh = [pop_leaf(f, n, "bias") for n in names_h]
        if any(x is None for x in wi + wh):
            return out  # the missing leaves are reported by the caller
        out["weight_ih"] = np.concatenate([w.T for w in wi], 0)
        out["weight_hh"] = np.concatenate([w.T for w in wh], 0)
        if all(b is not None for b in bh):
            rnn_bias_out(out, np.concatenate(bh), g, problems, opts)
        return out


class GRU(_RNNKind):
    name, flax_class, torch_classes, gates = "gru", "GRUCell", ("GRU", "GRUCell"), 3
    layout = ("gru             weight_ih (3H, in), weight_hh (3H, H),   Linen: ir/iz/in kernel+bias, hr/hz kernel, hn\n"
              "                bias_ih, bias_hh (gates r, z, n)         kernel+bias (= b_hn); NNX: dense_i (in, 3H)+bias,\n"
              "                                                         dense_h (H, 3H) without bias (b_hn must be 0)\n"
              "                Both Flax GRUCells apply the reset gate as torch does, after the hidden projection:\n"
              "                n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), so the conversion is exact.")

    def flax_match(self, kids, leaves):
        return kids == _GRU_GATES or kids == {"dense_i", "dense_h"}

    def to_flax(self, g, t, problems, opts):
        out = {}
        wi, wh = np.split(t["weight_ih"], 3, 0), np.split(t["weight_hh"], 3, 0)
        zero = np.zeros(wh[0].shape[0], t["weight_hh"].dtype)
        bi = np.split(t["bias_ih"], 3) if "bias_ih" in t else [zero] * 3
        bh = np.split(t["bias_hh"], 3) if "bias_hh" in t else [zero] * 3
        br, bz = (merge_bias(bi[j], bh[j], leaf_name(g, "bias_ih") + f"[gate {gate}]", leaf_name(g, "bias_hh") + f"[gate {gate}]",
                              opts.merge_rnn_biases, problems, opts.gradients) for j, gate in ((0, "r"), (1, "z")))
        if opts.has is not None and opts.has(("dense_i",)):
            if np.any(bh[2]) and not opts.gradients:  # (a gradient of b_hn is not a value of it)
                problems.add("values Flax cannot hold exactly",
                             f"{leaf_name(g, 'bias_hh')}[gate n] (b_hn) is nonzero, but flax.nnx.GRUCell has no bias "
                             "inside r * (W_hn h): use flax.linen.GRUCell (it has hn/bias), or a torch GRU "
                             "whose b_hn is 0.")
            out[(PARAMS, ("dense_i", "kernel"))] = t["weight_ih"].T
            out[(PARAMS, ("dense_i", "bias"))] = np.concatenate([br, bz, bi[2]])
            out[(PARAMS, ("dense_h", "kernel"))] = t["weight_hh"].T
            return out
        for j, (gi, gh) in enumerate((("ir", "hr"), ("iz", "hz"), ("in", "hn"))):
            out[(PARAMS, (gi, "kernel"))] = wi[j].T
            out[(PARAMS, (gh, "kernel"))] = wh[j].T
        out[(PARAMS, ("ir", "bias"))], out[(PARAMS, ("iz", "bias"))] = br, bz
        out[(PARAMS, ("in", "bias"))], out[(PARAMS, ("hn", "bias"))] = bi[2], bh[2]
        return out

    def to_torch(self, g, f, problems, opts):
        out: dict[str, Any] = {}
        if (PARAMS, ("dense_i", "kernel")) in f:
            wi, bi, wh = pop_leaf(f, "dense_i", "kernel"), pop_leaf(f, "dense_i", "bias"), pop_leaf(f, "dense_h", "kernel")
            if wi is None or wh is None:
                return out
            out["weight_ih"], out["weight_hh"] = wi.T, wh.T
            if bi is not None:
                rnn_bias_out(out, bi, g, problems, opts)
            return out
        wi = [pop_leaf(f, n, "kernel") for n in ("ir", "iz", "in")]
        wh = [pop_leaf(f, n, "kernel") for n in ("hr", "hz", "hn")]
        bi = [pop_leaf(f, n, "bias") for n in ("ir", "iz", "in")]
        bhn = pop_leaf(f, "hn", "bias")
        if any(x is None for x in wi + wh + bi) or bhn is None:
            return out
        out["weight_ih"] = np.concatenate([w.T for w in wi], 0)
        out["weight_hh"] = np.concatenate([w.T for w in wh], 0)
        b_ih = np.concatenate(bi)
        b_hh = np.concatenate([np.zeros_like(bhn), np.zeros_like(bhn), bhn])
        if opts.torch_expects is None or "bias_ih" in opts.torch_expects or np.any(b_ih) or np.any(b_hh):
            out["bias_ih"], out["bias_hh"] = b_ih, b_hh
        return out


class MultiHeadAttention(LayerKind):
    name, flax_class, torch_classes = "mha", "MultiHeadDotProductAttention", ("MultiheadAttention",)
    torch_leaves = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
    extra_leaves = ("q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k", "bias_v")
    required = (("in_proj_weight", "q_proj_weight"), "out_proj.weight")
    owns_children = True
    layout = ("mha             in_proj_weight (3E, E) (or q/k/v_proj_   query/key/value kernel (E_in, heads, head_dim),\n"
              "                weight), in_proj_bias, out_proj.weight,  bias (heads, head_dim); out kernel\n"
              "                out_proj.bias                            (heads, head_dim, E), bias (E,)")

    def module_options(self, module):
        return {"num_heads": getattr(module, "num_heads", None)}

    def flax_match(self, kids, leaves):
        return kids >= {"query", "key", "value", "out"}

    def torch_guess(self, leaves, shapes):
        return "in_proj_weight" in leaves or "q_proj_weight" in leaves

    def to_flax(self, g, t, problems, opts):
        out: dict[tuple, Any] = {}
        for leaf in ("bias_k", "bias_v"):
            if leaf in t:
                problems.add("unsupported layers", f"{g.id}: MultiheadAttention(add_bias_kv=True) ({leaf}) "
                             "has no Flax counterpart.")
                return out
        wo = t["out_proj.weight"]
        E = wo.shape[0]
        heads = g.opts.get("num_heads")
        if heads is None and opts.has is not None:
            heads = opts.has(("query", "kernel"), shape_dim=1)
        if not heads:
            problems.add("unsupported layers", f"{g.id}: MultiheadAttention needs num_heads: pass the torch "
                         f"module, a Flax template, or kinds={{{g.id!r}: ('mha', {{'num_heads': H}})}}.")
            return out
        D = wo.shape[1] // heads
        if "in_proj_weight" in t:
            ws = np.split(t["in_proj_weight"], 3, 0)
        else:
            ws = [t["q_proj_weight"], t["k_proj_weight"], t["v_proj_weight"]]
        bs = np.split(t["in_proj_bias"], 3) if "in_proj_bias" in t else [None] * 3
        for nm, w, b in zip(("query", "key", "value"), ws, bs):
            out[(PARAMS, (nm, "kernel"))] = w.T.reshape(w.shape[1], heads, D)
            if b is not None:
                out[(PARAMS, (nm, "bias"))] = b.reshape(heads, D)
        out[(PARAMS, ("out", "kernel"))] = wo.T.reshape(heads, D, E)
        if "out_proj.bias" in t:
            out[(PARAMS, ("out", "bias"))] = t["out_proj.bias"]
        return out

    def to_torch(self, g, f, problems, opts):
        out: dict[str, Any] = {}
        ws = [pop_leaf(f, n, "kernel") for n in ("query", "key", "value")]
        bs = [pop_leaf(f, n, "bias") for n in ("query", "key", "value")]
        wo, bo = pop_leaf(f, "out", "kernel"), pop_leaf(f, "out", "bias")
        if any(w is None for w in ws) or wo is None:
            return out
        mats = [w.reshape(w.shape[0], -1).T for w in ws]
        separate = (opts.torch_expects is not None and "q_proj_weight" in opts.torch_expects) or \
            len({m.shape for m in mats}) > 1
        if separate:
            out["q_proj_weight"], out["k_proj_weight"], out["v_proj_weight"] = mats
        else:
            out["in_proj_weight"] = np.concatenate(mats, 0)
        if all(b is not None for b in bs):
            out["in_proj_bias"] = np.concatenate([b.reshape(-1) for b in bs])
        out["out_proj.weight"] = wo.reshape(-1, wo.shape[-1]).T
        if bo is not None:
            out["out_proj.bias"] = bo
        return out
