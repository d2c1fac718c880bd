"""The per-layer checks of ``audit``: one function per setting a torch layer and its
Flax partner can disagree on (conv padding and settings, bias, norm eps and groups,
BatchNorm conventions, Embedding ``padding_idx``, dropout rate, default initializers,
LayerNorm's fast variance). Each takes ``(torch path, flax path, torch module, flax module,
torch input shape, flax variables)`` and returns a list of :class:`Finding`."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from _jaxinit import arrays as _arr


class Finding(NamedTuple):
    """One difference: its ``category``, the torch and Flax layer paths, what differs, the fix."""

    category: str
    torch: str
    flax: str
    problem: str
    fix: str


def class_name(m) -> str:
    return type(m).__name__


def torch_base(m, *names: str) -> str | None:
    """The first class of ``m``'s MRO defined by torch (``torch.nn``), torchinit or Hugging Face
    (``transformers``) whose name is one of ``names`` (or starts with a name given with a
    trailing '*'): a subclass of a known layer (Bart's ``BartScaledWordEmbedding``) is that
    layer, found by ``isinstance``, not by its own class name."""
    for cls in type(m).__mro__:
        if not cls.__module__.startswith(("torch.nn", "transformers", "torchinit")):
            continue
        for n in names:
            if cls.__name__ == n or (n.endswith("*") and cls.__name__.startswith(n[:-1])):
                return cls.__name__
    return None


def ntuple(v, n):
    if v is None:
        return (1,) * n
    if isinstance(v, int):
        return (v,) * n
    return tuple(v)


def _flax_pads(fm, in_spatial, k, s, d):
    import jax

    pad = fm.padding
    n = len(k)
    if isinstance(pad, str):
        if pad.upper() in ("SAME", "VALID", "SAME_LOWER"):
            if in_spatial is None:
                return None
            eff = tuple((kk - 1) * dd + 1 for kk, dd in zip(k, d))
            return tuple(tuple(p) for p in jax.lax.padtype_to_pads(in_spatial, eff, s, pad.upper()))
        return pad.upper()  # CIRCULAR, CAUSAL
    if isinstance(pad, int):
        return ((pad, pad),) * n
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in pad)


def _torch_pads(tm, k, d):
    pad = tm.padding
    if isinstance(pad, str):
        if pad == "valid":
            return ((0, 0),) * len(k)
        tot = [dd * (kk - 1) for kk, dd in zip(k, d)]
        return tuple((t // 2, t - t // 2) for t in tot)
    return tuple((p, p) for p in pad)


def _check_conv(tp, fp, tm, fm, tin, fvars):
    if not torch_base(tm, "Conv1d", "Conv2d", "Conv3d") or not hasattr(fm, "kernel_size") \
            or hasattr(fm, "transpose_kernel"):
        return []
    out = []
    n = len(tm.kernel_size)
    k = ntuple(fm.kernel_size, n)
    s, d = ntuple(fm.strides, n), ntuple(fm.kernel_dilation, n)
    groups = getattr(fm, "feature_group_count", 1)
    for what, tv, fv, fix in (("stride", tuple(tm.stride), s, f"strides={tuple(tm.stride)}"),
                              ("dilation", tuple(tm.dilation), d, f"kernel_dilation={tuple(tm.dilation)}"),
                              ("groups", tm.groups, groups, f"feature_group_count={tm.groups}"),
                              ("kernel size", tuple(tm.kernel_size), k, f"kernel_size={tuple(tm.kernel_size)}")):
        if tv != fv:
            out.append(Finding("conv settings", tp, fp, f"{what}: torch {tv}, Flax {fv}", f"Flax Conv({fix})"))
    in_spatial = tuple(tin[2:]) if tin is not None and len(tin) == n + 2 else None
    tpads = _torch_pads(tm, tuple(tm.kernel_size), tuple(tm.dilation))
    fpads = _flax_pads(fm, in_spatial, k, s, d)
    if tm.padding_mode != "zeros":
        want = "CIRCULAR" if tm.padding_mode == "circular" else None
        if fpads != want:
            out.append(Finding("conv padding", tp, fp, f"torch pads with mode {tm.padding_mode!r}, Flax with "
                               f"{fm.padding!r}", "Flax Conv(padding='CIRCULAR')" if want else
                               f"pad the Flax input with jnp.pad(mode={'reflect' if tm.padding_mode == 'reflect' else 'edge'!r}) "
                               "and use padding='VALID'"))
    elif fpads is None:
        out.append(Finding("conv padding", tp, fp, f"Flax padding {fm.padding!r} depends on the input size, which "
                           "the audit did not see", "pass inputs= to audit, or use explicit padding"))
    elif fpads != tpads:
        out.append(Finding("conv padding", tp, fp,
                           f"torch pads {list(tpads)} (padding={tm.padding}), Flax {fm.padding!r} pads {list(fpads)}"
                           + (" (asymmetric: 'SAME' with an even stride)" if isinstance(fm.padding, str) else "")
                           + f" for input size {in_spatial}", f"Flax Conv(padding={tuple(tpads)!r})"))
    out.extend(_check_bias(tp, fp, tm, fm))
    return out


def _check_bias(tp, fp, tm, fm):
    if not hasattr(fm, "use_bias") or not hasattr(tm, "bias") or \
            torch_base(tm, "LayerNorm", "BatchNorm*", "GroupNorm", "InstanceNorm*", "RMSNorm", "_NormBase"):
        return []
    has_t = getattr(tm, "bias", None) is not None
    if has_t != bool(fm.use_bias):
        return [Finding("bias", tp, fp, f"torch {'has' if has_t else 'has no'} bias, Flax use_bias={fm.use_bias}",
                        f"Flax use_bias={has_t}")]
    return []


def _check_dense(tp, fp, tm, fm, tin, fvars):
    return _check_bias(tp, fp, tm, fm) if torch_base(tm, "Linear") else []


def _check_conv_transpose(tp, fp, tm, fm, tin, fvars):
    """torch ConvTranspose vs Flax ConvTranspose: the kernel convention the weights were converted
    for (``transpose_kernel``) and the padding. Flax pads the stride-dilated input by explicit
    ``(lo, hi)`` pairs (``lax.conv_transpose``); torch's ``padding=p, output_padding=op`` is
    ``(d*(k-1) - p, d*(k-1) - p + op)`` there; Flax's ``'SAME'`` / ``'VALID'`` are
    ``lax``'s ``_conv_transpose_padding`` of the dilated kernel size."""
    if not torch_base(tm, "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d") \
            or not hasattr(fm, "transpose_kernel"):
        return []
    from _jaxinit.layer_kinds import REGISTRY
    from _jaxinit.naming import Group

    out = []
    n = len(tm.kernel_size)
    k, s = ntuple(fm.kernel_size, n), ntuple(fm.strides, n)
    d = ntuple(getattr(fm, "kernel_dilation", None), n)
    for what, tv, fv, fix in (("stride", tuple(tm.stride), s, f"strides={tuple(tm.stride)}"),
                              ("dilation", tuple(tm.dilation), d, f"kernel_dilation={tuple(tm.dilation)}"),
                              ("kernel size", tuple(tm.kernel_size), k, f"kernel_size={tuple(tm.kernel_size)}")):
        if tv != fv:
            out.append(Finding("conv settings", tp, fp, f"{what}: torch {tv}, Flax {fv}", f"Flax ConvTranspose({fix})"))
    eff = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    want = tuple((e - 1 - p, e - 1 - p + op) for e, p, op in zip(eff, tm.padding, tm.output_padding))
    pad = fm.padding
    if isinstance(pad, str) and pad.upper() in ("SAME", "VALID"):
        from jax._src.lax.convolution import _conv_transpose_padding  # what lax.conv_transpose applies

        got: Any = tuple(_conv_transpose_padding(e, ss, pad.upper()) for e, ss in zip(eff, s))
    elif isinstance(pad, str):
        got = pad.upper()
    else:
        got = tuple((p, p) if isinstance(p, int) else tuple(p) for p in ((pad,) * n if isinstance(pad, int) else pad))
    if tm.padding_mode != "zeros" or got != want:
        out.append(Finding("conv padding", tp, fp,
                           f"torch ConvTranspose(padding={tuple(tm.padding)}, output_padding={tuple(tm.output_padding)}) "
                           f"pads the dilated input by {list(want)}; Flax padding={pad!r} pads {got if isinstance(got, str) else list(got)}"
                           " (Flax's explicit pads are those of the transposed convolution itself, not torch's)",
                           f"Flax ConvTranspose(padding={want!r})"))
    w = getattr(tm, "weight", None)
    kernel = fvars.get(("params", tuple(q for q in fp.split("/") if q) + ("kernel",)))
    if w is not None and kernel is not None and hasattr(kernel, "__array__") and not _is_shape_template(kernel):
        kind: Any = REGISTRY["conv_transpose"]
        g = Group(tp, "conv_transpose", {}, {})
        tw = _arr.to_numpy(w.detach())
        kern = np.asarray(kernel)
        as_is = kind.weight_to_kernel(g, tw, _Opts(bool(fm.transpose_kernel)))
        other = kind.weight_to_kernel(g, tw, _Opts(not fm.transpose_kernel))
        if as_is.shape != kern.shape or not np.allclose(as_is, kern, rtol=1e-6, atol=0):
            if other.shape == kern.shape and np.allclose(other, kern, rtol=1e-6, atol=0):
                out.append(Finding("conv_transpose kernel", tp, fp,
                                   f"the Flax ConvTranspose has transpose_kernel={bool(fm.transpose_kernel)} but its "
                                   f"kernel was converted for transpose_kernel={not fm.transpose_kernel} "
                                   "(lax flips and swaps the kernel itself when True): the outputs differ",
                                   f"convert with from_torch_state_dict(..., transpose_kernel={bool(fm.transpose_kernel)})"))
    return out


def fast_variance(tp, fp, tm, fm, fin):
    """Flax LayerNorm's default ``use_fast_variance=True`` computes ``E[x^2] - E[x]^2``, which
    cancels in float32 when ``|mean| >> std`` (torch: ``E[(x - mean)^2]``, two passes): a
    finding when the layer computes in float32 or narrower, a note in float64."""
    if not getattr(fm, "use_fast_variance", False) or not hasattr(fm, "use_scale") or hasattr(fm, "momentum") \
            or not torch_base(tm, "LayerNorm", "GroupNorm", "InstanceNorm*"):
        return None
    dtype = getattr(fm, "dtype", None) or (fin[1] if fin else None) or getattr(fm, "param_dtype", None)
    if dtype is not None and np.dtype(dtype) == np.float64:
        return fp
    return Finding("norm variance", tp, fp, f"Flax {class_name(fm)}(use_fast_variance=True) (the default) computes the "
                   "variance as E[x^2] - E[x]^2, which loses the digits of the variance when |mean| >> std in "
                   f"float32 (torch's {class_name(tm)} computes E[(x - mean)^2])",
                   f"Flax {class_name(fm)}(use_fast_variance=False)")


def _is_shape_template(x) -> bool:
    """A ``jax.ShapeDtypeStruct`` (a leaf of a template built by ``jax.eval_shape``: no values)."""
    return type(x).__name__ == "ShapeDtypeStruct"


class _Opts(NamedTuple):
    transpose_kernel: bool


def _torch_eps(tm):
    """A torch norm's eps (``nn.RMSNorm(eps=None)`` uses the dtype's machine epsilon)."""
    for name in ("eps", "variance_epsilon", "epsilon"):
        if hasattr(tm, name):
            v = getattr(tm, name)
            if v is None:
                w = getattr(tm, "weight", None)
                import torch

                return float(torch.finfo(w.dtype if w is not None else torch.get_default_dtype()).eps)
            return float(v)
    return None


def _flax_eps(fm):
    for name in ("epsilon", "eps", "variance_epsilon"):
        v = getattr(fm, name, None)
        if isinstance(v, (int, float)):
            return float(v)
    return None


def _check_norm(tp, fp, tm, fm, tin, fvars):
    cls = torch_base(tm, "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm")
    if cls is None and "Norm" in class_name(tm) and "BatchNorm" not in class_name(tm) and _torch_eps(tm) is not None:
        cls = class_name(tm)  # a hand-written norm (Hugging Face's LlamaRMSNorm, T5LayerNorm): eps by attribute
    if cls is None:
        return []
    out = []
    te, fe = _torch_eps(tm), _flax_eps(fm)
    if te is not None and fe is not None and not np.isclose(te, fe, rtol=1e-12, atol=0):
        default = {"LayerNorm": " (Flax's default is 1e-6, torch's 1e-5)", "GroupNorm": " (Flax's default is 1e-6, "
                   "torch's 1e-5)", "RMSNorm": " (torch's eps=None is the dtype's machine epsilon, Flax's default 1e-6)"}
        default.update({f"InstanceNorm{i}d": " (Flax's default is 1e-6, torch's 1e-5)" for i in (1, 2, 3)})
        flax_name = class_name(fm)
        out.append(Finding("norm eps", tp, fp, f"{cls} eps: torch {te:g}, Flax {fe:g}{default.get(cls, '')}",
                           f"Flax {flax_name}(epsilon={te:g})"))
    if cls == "GroupNorm" and getattr(fm, "num_groups", tm.num_groups) != tm.num_groups:
        out.append(Finding("norm groups", tp, fp, f"GroupNorm groups: torch {tm.num_groups}, Flax {fm.num_groups}",
                           f"Flax GroupNorm(num_groups={tm.num_groups})"))
    return out


def _bn_convention(fm) -> dict | None:
    """torch-equivalent (momentum, unbiased running variance, eps) of a Flax BatchNorm."""
    if hasattr(fm, "momentum_style"):  # jaxinit.BatchNorm
        m = fm.momentum if fm.momentum_style == "torch" else (None if fm.momentum is None else 1 - fm.momentum)
        return {"momentum": m, "unbiased": bool(fm.unbiased_running_var), "eps": fm.eps}
    if hasattr(fm, "use_fast_variance") and hasattr(fm, "momentum"):  # flax.linen / nnx BatchNorm
        return {"momentum": 1 - fm.momentum, "unbiased": False, "eps": fm.epsilon}
    return None


def _check_batchnorm(tp, fp, tm, fm, tin, fvars):
    if not torch_base(tm, "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "BatchNorm"):
        return []
    conv = _bn_convention(fm)
    if conv is None:
        return []
    out = []
    flax_cls = "jaxinit.BatchNorm" if hasattr(fm, "momentum_style") else "flax BatchNorm"
    if tm.momentum is None or conv["momentum"] is None or not np.isclose(tm.momentum, conv["momentum"], rtol=1e-9):
        out.append(Finding("batchnorm", tp, fp, f"momentum: torch {tm.momentum} (weight of the NEW batch), "
                           f"{flax_cls} keeps {fm.momentum} of the OLD statistics"
                           f" (= torch momentum {conv['momentum']:.3g})" if conv["momentum"] is not None else "",
                           "use jaxinit.BatchNorm (torch's conventions), or flax momentum = 1 - torch momentum"))
    if tm.track_running_stats and not conv["unbiased"]:
        out.append(Finding("batchnorm", tp, fp, "running variance: torch stores the UNBIASED batch variance "
                           f"(n/(n-1)), {flax_cls} the biased one, so running statistics drift apart in training",
                           "use jaxinit.BatchNorm (unbiased_running_var=True)"))
    if not np.isclose(tm.eps, conv["eps"], rtol=1e-12):
        out.append(Finding("batchnorm", tp, fp, f"eps: torch {tm.eps:g}, Flax {conv['eps']:g}",
                           f"Flax BatchNorm epsilon / jaxinit eps = {tm.eps:g}"))
    p = tuple(p for p in fp.split("/") if p)
    stats = [v for (c, path), v in fvars.items() if c == "batch_stats" and path[:-1] == p and path[-1] in ("mean", "var")]
    params = [v for (c, path), v in fvars.items() if c == "params" and path[:-1] == p]
    if stats and params and np.dtype(stats[0].dtype) == np.float32 and np.dtype(params[0].dtype) == np.float64:
        out.append(Finding("batchnorm", tp, fp, "running statistics are float32 while the parameters are float64 "
                           "(Flax creates batch_stats in float32 whatever param_dtype; they become float64 at the "
                           "first update under x64; until then Flax normalizes with them in float32, so eval outputs carry "
                           "float32 rounding)", "nothing to change for a port: from_torch_state_dict keeps a float64 "
                           "torch model's statistics float64 (what Flax holds after one step) and "
                           "to_torch_state_dict widens them; compare Flax's own fresh statistics in float32"))
    return out


def _check_embed(tp, fp, tm, fm, tin, fvars):
    if not torch_base(tm, "Embedding") or getattr(tm, "padding_idx", None) is None:
        return []
    return [Finding("embedding padding_idx", tp, fp,
                    f"torch Embedding(padding_idx={tm.padding_idx}) gives row {tm.padding_idx} no gradient (it never "
                    f"trains); Flax's {class_name(fm)} has no padding_idx, so training updates it",
                    f"zero the gradient of row {tm.padding_idx} of {fp}/embedding before the update (e.g. "
                    f"grads['params'][...]['embedding'] = g.at[{tm.padding_idx}].set(0)); outputs are unaffected")]


def _check_dropout(tp, fp, tm, fm, tin, fvars):
    if not torch_base(tm, "Dropout*") or not hasattr(fm, "rate"):
        return []
    if not np.isclose(tm.p, fm.rate):
        return [Finding("dropout", tp, fp, f"rate: torch p={tm.p}, Flax rate={fm.rate}", f"Flax Dropout(rate={tm.p})")]
    return []



def _check_init(tp, fp, tm, fm, tin, fvars):
    import flax.linen.linear as L

    if not torch_base(tm, "Linear", "Conv1d", "Conv2d", "Conv3d") or \
            getattr(fm, "kernel_init", None) is not L.default_kernel_init:
        return []
    return [Finding("initializers", tp, fp, "Flax's default kernel_init (lecun_normal, zero bias) differs from torch's "
                    "(kaiming_uniform(a=sqrt(5)), uniform bias): two freshly initialized twins start from different "
                    "distributions (irrelevant once weights are converted)",
                    "use jaxinit.linen / jaxinit.nnx layers (torch's defaults), or convert the torch weights")]


LAYER_CHECKS = (_check_conv, _check_conv_transpose, _check_dense, _check_norm, _check_batchnorm, _check_embed,
           _check_dropout, _check_init)
