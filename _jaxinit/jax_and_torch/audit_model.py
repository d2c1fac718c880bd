"""The model-wide checks of ``audit``: the run order of same-shape paired layers, dropouts
whose masks cannot be bound to the Flax twin's keys, activation functions (a note) and
pooling (a function in Flax)."""
from __future__ import annotations

import numpy as np

from _jaxinit.jax_and_torch import audit_trace as trace
from _jaxinit.jax_and_torch.audit_layers import Finding, class_name, ntuple


_FOREIGN_STOCHASTIC = ("DropPath", "StochasticDepth", "DropBlock2d", "DropBlock")
_HF_ATTN_DROPOUT = ("attention_probs_dropout_prob", "attn_pdrop", "attention_dropout")


def dropout_findings(root, tmods, torder, fmods, forder, found) -> list:
    """Dropouts whose masks cannot agree with the Flax twin's in train mode, even bound to its keys
    (``torchinit.rngs.bind_rngs``; twin_check's ``rngs=``): masks drawn where no binding reaches
    (a foreign stochastic-depth module's ``bernoulli_``, alpha dropout, attention dropout inside the
    fused ``scaled_dot_product_attention`` kernel), and torch rates no Flax dropout has."""
    out: list[Finding] = []
    done = {f.torch for f in found if f.category == "dropout"}
    for path, m in tmods.items():
        cls, p = class_name(m), float(getattr(m, "p", getattr(m, "drop_prob", 0.0)) or 0.0)
        if cls in _FOREIGN_STOCHASTIC and not type(m).__module__.startswith("torchinit"):
            out.append(Finding("dropout", path, "", f"{type(m).__module__}.{cls} draws its mask with torch's "
                               "bernoulli_: it cannot be bound to the Flax twin's keys",
                               f"replace it with torchinit.nn.{'StochasticDepth' if 'Stochastic' in cls else 'DropPath'}"
                               " (same arguments, Flax's mask)"))
        elif cls in ("AlphaDropout", "FeatureAlphaDropout") and p > 0:
            out.append(Finding("dropout", path, "", f"{cls}(p={p}) has no Flax counterpart and cannot be bound",
                               "remove it, or compare in eval mode (modes=('eval',))"))
        elif cls == "MultiheadAttention" and float(getattr(m, "dropout", 0.0)) > 0:
            out.append(Finding("dropout", path, "", f"attention dropout {m.dropout} inside the fused "
                               "scaled_dot_product_attention kernel (need_weights=False): its mask cannot be bound",
                               "call it with need_weights=True (the eager path, whose dropout bind_rngs binds)"))
    cfg = getattr(root, "config", None)
    impl = getattr(cfg, "_attn_implementation", None)
    if cfg is not None and impl not in (None, "eager") and any(float(getattr(cfg, a, 0.0) or 0.0) > 0
                                                              for a in _HF_ATTN_DROPOUT):
        out.append(Finding("dropout", "<model>", "", f"attn_implementation={impl!r} draws the attention dropout "
                           "mask inside the fused kernel: it cannot be bound to the Flax twin's keys",
                           "build the torch model with attn_implementation='eager' (same weights and outputs)"))
    flax_rates = sorted({float(getattr(fm, "rate", 0.0) or 0.0) for fm in fmods.values()
                         if class_name(fm) == "Dropout"} | {float(getattr(fm, "dropout_rate", 0.0) or 0.0)
                                                      for fm in fmods.values()} - {0.0})
    for path in torder:
        m = tmods.get(path)
        if m is None or path in done or not class_name(m).startswith("Dropout"):
            continue
        p = float(getattr(m, "p", 0.0))
        if p > 0 and fmods and not any(abs(p - r) < 1e-12 for r in flax_rates):
            out.append(Finding("dropout", path, "", f"torch p={p}, but no Flax Dropout has that rate (Flax rates: "
                               f"{', '.join(f'{r:g}' for r in flax_rates) or 'none'}): the masks cannot agree",
                               f"give the Flax twin's dropout rate={p} (or torch's p the Flax rate)"))
    return out



def order_findings(pairs, groups, torder, forder, fvars):
    """Paired layers of the same kind and shapes must run in the same order in both models:
    a ``mapping=`` that swaps two same-shape layers converts silently and runs them in the
    wrong places. (Layers with different shapes cannot be swapped by a mapping that converts;
    independent ones, such as two embeddings that are summed, may run in either order.)"""
    if not torder or not forder:
        return []
    fidx = {"/".join(p): i for i, p in enumerate(forder)}
    tidx = {p: i for i, p in enumerate(torder)}

    def sig(fp):
        path = tuple(q for q in fp.split("/") if q)
        return tuple(sorted((p[len(path):], tuple(np.shape(v))) for (c, p), v in fvars.items()
                            if c == "params" and p[:len(path)] == path))

    layers = sorted((tidx[g.id], g.id, pairs[g.id]) for g in groups if g.id in tidx and pairs.get(g.id) in fidx)
    by_sig: dict = {}
    for item in layers:
        by_sig.setdefault(sig(item[2]), []).append(item)
    out = []
    for same in by_sig.values():
        out.extend(_inversions(same, fidx))
    return out


def _independent(ta, tb, fa, fb) -> bool:
    """Two layers that read the same input (the query, key and value projections of one
    attention) may run in either order: same input object in torch or in Flax."""
    def same(d, a, b):
        return a in d and b in d and d[a] is d[b]

    def fkey(p):
        return tuple(q for q in p.split("/") if q)

    return same(trace.TORCH_INPUT, ta, tb) or same(trace.FLAX_INPUT, fkey(fa), fkey(fb))


def _inversions(layers, fidx):
    out = []
    for (_, ta, fa), (_, tb, fb) in zip(layers, layers[1:]):
        if fidx[fa] > fidx[fb] and not _independent(ta, tb, fa, fb):
            out.append(Finding("order", ta, fa, f"torch runs {ta!r} before {tb!r}, but their Flax partners run in the "
                               f"opposite order ({fa!r} after {fb!r}), and they have the same shapes: unless they sit on "
                               "independent branches, the pairing (mapping=) swaps them",
                               "fix mapping= so each torch layer maps to the Flax layer in the same place "
                               "(compare_layers shows whether the outputs agree)"))
    return out


_ACTIVATIONS = ("ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "LeakyReLU", "ELU", "Mish", "Hardswish",
                "GELUActivation", "NewGELUActivation", "FastGELUActivation", "QuickGELUActivation")


def activation_notes(tmods, pairs, findings):
    acts = [(p, m) for p, m in tmods.items() if class_name(m) in _ACTIVATIONS]
    notes = []
    if acts:
        desc = ", ".join(f"{p} ({class_name(m)}" + (f", approximate={m.approximate!r}" if hasattr(m, "approximate") else "")
                         + ")" for p, m in acts[:8])
        notes.append("activation functions are functions, not modules, in Flax, so the audit cannot see the Flax "
                     f"side of: {desc}{' ...' if len(acts) > 8 else ''}. Flax's nn.gelu defaults to approximate=True "
                     "(tanh), torch's GELU to 'none' (exact). compare_layers shows the first layer whose output differs.")
    return notes


def pooling_findings(tmods, pairs):
    """Pooling is a function in Flax: state the matching Flax call (a note), and flag torch
    settings Flax's pools cannot express (findings)."""
    findings, calls = [], []
    for p, m in tmods.items():
        cls = class_name(m)
        if p in pairs or not (cls.startswith("MaxPool") or cls.startswith("AvgPool")):
            continue
        n = int(cls[-2]) if cls[-2].isdigit() else 2
        kk, ss, pp = ntuple(m.kernel_size, n), ntuple(m.stride, n), ntuple(m.padding, n)
        call = "nn.max_pool" if cls.startswith("Max") else "nn.avg_pool"
        extra = ", count_include_pad=False" if cls.startswith("Avg") and not m.count_include_pad else ""
        flax_call = f"{call}(x, {kk}, strides={ss}, padding={tuple((q, q) for q in pp)}{extra})"
        calls.append(f"{p}: {flax_call}")
        if getattr(m, "ceil_mode", False):
            findings.append(Finding("pooling", p, "", f"{cls}(ceil_mode=True): Flax pools round the output size down",
                                    f"pad the high side by stride - 1 more: {flax_call} with the high pads increased"))
        if cls.startswith("Max") and ntuple(getattr(m, "dilation", 1), n) != (1,) * n:
            findings.append(Finding("pooling", p, "", f"{cls}(dilation={m.dilation}): Flax's max_pool has no dilation",
                                    "use jax.lax.reduce_window with window_dilation"))
    notes = []
    if calls:
        notes.append("pooling is a function in Flax (the audit cannot see its arguments); the calls that match "
                     "torch (Flax's padding='SAME' is asymmetric for even strides, torch's is symmetric): "
                     + "; ".join(calls))
    return findings, notes
