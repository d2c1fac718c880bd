"""``audit``: every known semantic difference between paired torch and Flax layers, with
the fix. Conversion checks names and shapes, not meaning; the audit reads the layers'
settings (padding, eps, BatchNorm conventions, padding_idx, dropout rates, biases,
initializers) and the order in which the paired layers run. Needs jax, flax and torch,
imported inside the functions.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from _jaxinit import arrays as _arr
from _jaxinit import naming as _naming
from _jaxinit.errors import InitError
from _jaxinit.jax_and_torch import _common as C
from _jaxinit.jax_and_torch.layers import _pair
from _jaxinit.jax_and_torch.twin import _normalize_call


class Finding(NamedTuple):
    """One difference: its ``category``, the torch and Flax layer paths, what differs, the fix."""

    category: str
    torch: str
    flax: str
    problem: str
    fix: str


class AuditReport:
    """``findings`` (list of :class:`Finding`), ``notes`` (what the audit cannot check and
    where to look), ``pairs`` ({torch path: flax path}); ``str(report)`` lists them."""

    def __init__(self, findings, notes, pairs):
        self.findings, self.notes, self.pairs = findings, notes, pairs

    def categories(self) -> set:
        return {f.category for f in self.findings}

    def __len__(self):
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    def __str__(self):
        lines = [f"audit: {len(self.findings)} finding(s) over {len(self.pairs)} paired layers"]
        for f in self.findings:
            lines.append(f"- [{f.category}] torch {f.torch or '(model)'!r} <-> Flax {f.flax or '(model)'!r}: "
                         f"{f.problem}\n    fix: {f.fix}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def audit(torch_module: Any, flax_module: Any, inputs: Any = None, *, variables: Any = None,
          flax_inputs: Any = None, train_kwarg: str | None = "train", flax_call: Any = None,
          mapping=None, kinds=None) -> AuditReport:
    r"""List every known semantic difference between the paired layers of a torch module and
    its Flax twin, each with the fix.

    Layers are paired by the converter's naming rule (``mapping=``, ``kinds=``
    respected). A Linen model's submodules exist only while it runs, so Linen
    (and Hugging Face Flax) models need ``inputs`` (torch layout; ``flax_inputs``
    in Flax's, default the same): both models are traced once (Flax under
    ``jax.eval_shape``, no computation; torch under ``no_grad``), which also
    gives each convolution's input size and the order the layers run in.

    Checked: conv padding (``'SAME'`` vs explicit, asymmetric for even strides),
    strides / dilation / groups, bias presence, pooling (``ceil_mode``,
    ``count_include_pad``, padding: pooling is a function in Flax, so the
    audit states the Flax call that matches), LayerNorm / GroupNorm eps and
    groups, BatchNorm conventions (momentum direction, biased running variance,
    eps, float32 statistics under x64), Embedding ``padding_idx`` (torch gives
    the pad row no gradient; Flax's Embed does), Dropout rates, default
    initializers (matter when both models start fresh), and the execution
    order of paired layers (a ``mapping=`` that swaps two same-shape layers).
    Activation functions are not modules in Flax: they are listed as a note;
    :func:`compare_layers` checks them.

    Returns:
      an :class:`AuditReport` (``.findings``, ``.notes``; ``print`` it).

    >>> print(jaxinit.audit(torch_bert, flax_bert, input_ids))  # doctest: +SKIP
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    flax_module, variables, flax_call = _normalize_call(flax_module, variables, flax_call, ("eval",)) \
        if (variables is not None or C.is_hf_flax(flax_module) or isinstance(flax_module, nnx.Module)) \
        else (flax_module, None, flax_call)
    xs = None if inputs is None else [_arr.to_numpy(x) for x in C.as_tuple(inputs)]
    fxs = xs if flax_inputs is None else [_arr.to_numpy(x) for x in C.as_tuple(flax_inputs)]
    _TORCH_INPUT.clear()
    _FLAX_INPUT.clear()
    try:
        return _audit(torch_module, flax_module, xs, fxs, variables, train_kwarg, flax_call, mapping, kinds,
                      jax, jnp, nnx)
    finally:
        _TORCH_INPUT.clear()
        _FLAX_INPUT.clear()


def _audit(torch_module, flax_module, xs, fxs, variables, train_kwarg, flax_call, mapping, kinds, jax, jnp, nnx):
    tmods, torder, tin = _torch_modules(torch_module, xs)
    fmods, forder, fin, fvars = _flax_modules(flax_module, variables, fxs, train_kwarg, flax_call, jax, jnp, nnx)
    state_keys = torch_module.state_dict().keys()
    groups, containers = _naming.groups_from_module(torch_module, state_keys, kinds)
    pairs = _pair(torch_module, groups, containers, fvars, mapping, list(fmods))
    findings: list[Finding] = []
    fast_notes: list[str] = []
    for tpath, fpath in pairs.items():
        tm, fm = tmods.get(tpath), fmods.get(tuple(p for p in fpath.split("/") if p))
        if tm is None or fm is None:
            continue
        for check in _CHECKS:
            findings.extend(check(tpath, fpath, tm, fm, tin.get(tpath), fvars))
        fast = _fast_variance(tpath, fpath, tm, fm, fin.get(tuple(p for p in fpath.split("/") if p)))
        if isinstance(fast, Finding):
            findings.append(fast)
        elif fast:
            fast_notes.append(fast)
    inits = [f for f in findings if f.category == "initializers"]
    if inits:  # one finding for the model, not one per layer
        findings = [f for f in findings if f.category != "initializers"]
        findings.append(inits[0]._replace(torch=f"{inits[0].torch} and {len(inits) - 1} more" if len(inits) > 1
                                          else inits[0].torch, flax=", ".join(f.flax for f in inits[:3])
                                          + (" ..." if len(inits) > 3 else "")))
    findings.extend(_order_findings(pairs, groups, torder, forder, fvars))
    findings.extend(_dropout_findings(torch_module, tmods, torder, fmods, forder, findings))
    notes = _notes(tmods, pairs, findings)
    if fast_notes:
        notes.append(f"Flax LayerNorm(use_fast_variance=True) at {', '.join(fast_notes[:4])}"
                     f"{' ...' if len(fast_notes) > 4 else ''}: var = E[x^2] - E[x]^2 where torch computes "
                     "E[(x - mean)^2]; harmless in float64 (these layers see float64), a difference in float32 "
                     "(use_fast_variance=False)")
    pool_findings, pool_notes = _pooling(tmods, pairs)
    findings.extend(pool_findings)
    notes.extend(pool_notes)
    return AuditReport(findings, notes, pairs)


# --------------------------------------------------------------------------- discovery
def flax_call_order(flax_module, flax_inputs, variables=None, train_kwarg="train", flax_call=None) -> list:
    """Paths (tuples) of a Linen / Hugging Face Flax model's modules in the order they run,
    traced under ``jax.eval_shape`` (no computation); an NNX model's in graph order."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    if flax_call is None and C.is_hf_flax(flax_module):
        flax_call = C.hf_call
    fxs = None if flax_inputs is None else [_arr.to_numpy(x) for x in C.as_tuple(flax_inputs)]
    return _flax_modules(flax_module, variables, fxs, train_kwarg, flax_call, jax, jnp, nnx)[1]


def template_call_order(flax_module, flax_inputs, template):
    """The Flax modules' run order when the model is given (None without it); ``template`` is
    used as the variables when it holds ``params`` (needs jax at call time)."""
    if flax_module is None:
        return None
    variables = template if isinstance(template, Mapping) and "params" in template else None
    return flax_call_order(flax_module, flax_inputs, variables)


_TORCH_INPUT: dict = {}  # during one audit: each torch module's first input (the object itself)
_FLAX_INPUT: dict = {}  # the same for the Flax modules (tracers)


def _torch_modules(tm, xs):
    """{path: module}, [paths in execution order], {path: input shape} (torch traced when xs)."""
    import torch

    mods = dict(tm.named_modules())
    order, shapes = [], {}
    if xs is not None:
        handles = []
        for name, mod in mods.items():
            def pre(module, args, name=name):
                if name not in shapes and args and isinstance(args[0], torch.Tensor):
                    shapes[name] = tuple(args[0].shape)
                    _TORCH_INPUT[name] = args[0]  # kept alive until the audit ends: identity = same input
                order.append(name)
            handles.append(mod.register_forward_pre_hook(pre))
        device = next((p.device for p in tm.parameters()), torch.device("cpu"))
        was = tm.training
        try:
            tm.eval()
            with torch.no_grad():
                tm(*[_arr.numpy_to_tensor(x, torch, device) for x in xs])
        finally:
            tm.train(was)
            for h in handles:
                h.remove()
    return mods, list(dict.fromkeys(order)), shapes


def _flax_modules(model, variables, fxs, train_kwarg, flax_call, jax, jnp, nnx):
    """{path tuple: module}, [paths in call order], {path: input shape}, {(coll, path): spec}."""
    if isinstance(model, nnx.Module):
        mods: dict[tuple, Any] = {tuple(str(p) for p in path): node for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}
        from _jaxinit.jax_and_torch.twin import _nnx_vars

        stats, params = _nnx_vars(model, nnx)
        return mods, list(mods), {}, {**params, **stats}
    if fxs is None:
        raise InitError("audit: a Linen (or Hugging Face Flax) model's layers exist only while it runs: pass "
                        "`inputs` (torch layout; `flax_inputs` when Flax's layout differs).")
    import flax.linen as nn

    mods = {}
    order: list[tuple] = []
    shapes: dict[tuple, tuple] = {}

    def icpt(next_fun, args, kwargs, ctx):
        if ctx.method_name == "__call__":
            path = tuple(str(p) for p in ctx.module.path)
            mods.setdefault(path, ctx.module)
            order.append(path)
            if args and hasattr(args[0], "shape"):
                shapes.setdefault(path, (tuple(args[0].shape), np.dtype(args[0].dtype)))
                _FLAX_INPUT.setdefault(path, args[0])
        return next_fun(*args, **kwargs)

    xf = [jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype) for x in fxs]
    kw = C.train_kwargs(model, train_kwarg, False)
    with nn.intercept_methods(icpt):
        if flax_call is not None:
            # the variables are an argument (not closed over): a template of ShapeDtypeStructs
            # (jax.eval_shape output) is then traced like arrays
            jax.eval_shape(lambda v, *x: C.call_flax(flax_call, model, v, x, False)[0], variables, *xf)
            fvars = variables
        elif variables is not None:
            jax.eval_shape(lambda v, *x: model.apply(v, *x, **kw), variables, *xf)
            fvars = variables
        else:
            fvars = jax.eval_shape(lambda *x: model.init(jax.random.key(0), *x, **kw), *xf)
    flat = _arr.flatten_flax(fvars, "audit")
    return mods, list(dict.fromkeys(order)), shapes, flat


# --------------------------------------------------------------------------- checks
def _cls(m) -> str:
    return type(m).__name__


def _torch_base(m, *names: str) -> str | None:
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


def _tuple(v, n):
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
    if not _torch_base(tm, "Conv1d", "Conv2d", "Conv3d") or not hasattr(fm, "kernel_size") \
            or hasattr(fm, "transpose_kernel"):
        return []
    out = []
    n = len(tm.kernel_size)
    k = _tuple(fm.kernel_size, n)
    s, d = _tuple(fm.strides, n), _tuple(fm.kernel_dilation, n)
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
            _torch_base(tm, "LayerNorm", "BatchNorm*", "GroupNorm", "InstanceNorm*", "RMSNorm", "_NormBase"):
        return []
    has_t = getattr(tm, "bias", None) is not None
    if has_t != bool(fm.use_bias):
        return [Finding("bias", tp, fp, f"torch {'has' if has_t else 'has no'} bias, Flax use_bias={fm.use_bias}",
                        f"Flax use_bias={has_t}")]
    return []


def _check_dense(tp, fp, tm, fm, tin, fvars):
    return _check_bias(tp, fp, tm, fm) if _torch_base(tm, "Linear") else []


def _check_conv_transpose(tp, fp, tm, fm, tin, fvars):
    """torch ConvTranspose vs Flax ConvTranspose: the kernel convention the weights were converted
    for (``transpose_kernel``) and the padding. Flax pads the stride-dilated input by explicit
    ``(lo, hi)`` pairs (``lax.conv_transpose``); torch's ``padding=p, output_padding=op`` is
    ``(d*(k-1) - p, d*(k-1) - p + op)`` there; Flax's ``'SAME'`` / ``'VALID'`` are
    ``lax``'s ``_conv_transpose_padding`` of the dilated kernel size."""
    if not _torch_base(tm, "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d") \
            or not hasattr(fm, "transpose_kernel"):
        return []
    from _jaxinit.layer_kinds import REGISTRY
    from _jaxinit.naming import Group

    out = []
    n = len(tm.kernel_size)
    k, s = _tuple(fm.kernel_size, n), _tuple(fm.strides, n)
    d = _tuple(getattr(fm, "kernel_dilation", None), n)
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
    if w is not None and kernel is not None and hasattr(kernel, "__array__") and not _is_spec(kernel):
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


def _fast_variance(tp, fp, tm, fm, fin):
    """Flax LayerNorm's default ``use_fast_variance=True`` computes ``E[x^2] - E[x]^2``, which
    cancels in float32 when ``|mean| >> std`` (torch: ``E[(x - mean)^2]``, two passes): a
    finding when the layer computes in float32 or narrower, a note in float64."""
    if not getattr(fm, "use_fast_variance", False) or not hasattr(fm, "use_scale") or hasattr(fm, "momentum") \
            or not _torch_base(tm, "LayerNorm", "GroupNorm", "InstanceNorm*"):
        return None
    dtype = getattr(fm, "dtype", None) or (fin[1] if fin else None) or getattr(fm, "param_dtype", None)
    if dtype is not None and np.dtype(dtype) == np.float64:
        return fp
    return Finding("norm variance", tp, fp, f"Flax {_cls(fm)}(use_fast_variance=True) (the default) computes the "
                   "variance as E[x^2] - E[x]^2, which loses the digits of the variance when |mean| >> std in "
                   f"float32 (torch's {_cls(tm)} computes E[(x - mean)^2])",
                   f"Flax {_cls(fm)}(use_fast_variance=False)")


def _is_spec(x) -> bool:
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
    cls = _torch_base(tm, "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "RMSNorm")
    if cls is None and "Norm" in _cls(tm) and "BatchNorm" not in _cls(tm) and _torch_eps(tm) is not None:
        cls = _cls(tm)  # a hand-written norm (Hugging Face's LlamaRMSNorm, T5LayerNorm): eps by attribute
    if cls is None:
        return []
    out = []
    te, fe = _torch_eps(tm), _flax_eps(fm)
    if te is not None and fe is not None and not np.isclose(te, fe, rtol=1e-12, atol=0):
        default = {"LayerNorm": " (Flax's default is 1e-6, torch's 1e-5)", "GroupNorm": " (Flax's default is 1e-6, "
                   "torch's 1e-5)", "RMSNorm": " (torch's eps=None is the dtype's machine epsilon, Flax's default 1e-6)"}
        default.update({f"InstanceNorm{i}d": " (Flax's default is 1e-6, torch's 1e-5)" for i in (1, 2, 3)})
        flax_name = _cls(fm)
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
    if not _torch_base(tm, "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "BatchNorm"):
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
    if not _torch_base(tm, "Embedding") or getattr(tm, "padding_idx", None) is None:
        return []
    return [Finding("embedding padding_idx", tp, fp,
                    f"torch Embedding(padding_idx={tm.padding_idx}) gives row {tm.padding_idx} no gradient (it never "
                    f"trains); Flax's {_cls(fm)} has no padding_idx, so training updates it",
                    f"zero the gradient of row {tm.padding_idx} of {fp}/embedding before the update (e.g. "
                    f"grads['params'][...]['embedding'] = g.at[{tm.padding_idx}].set(0)); outputs are unaffected")]


def _check_dropout(tp, fp, tm, fm, tin, fvars):
    if not _torch_base(tm, "Dropout*") or not hasattr(fm, "rate"):
        return []
    if not np.isclose(tm.p, fm.rate):
        return [Finding("dropout", tp, fp, f"rate: torch p={tm.p}, Flax rate={fm.rate}", f"Flax Dropout(rate={tm.p})")]
    return []


_FOREIGN_STOCHASTIC = ("DropPath", "StochasticDepth", "DropBlock2d", "DropBlock")
_HF_ATTN_DROPOUT = ("attention_probs_dropout_prob", "attn_pdrop", "attention_dropout")


def _dropout_findings(root, tmods, torder, fmods, forder, found) -> list:
    """Dropouts whose masks cannot agree with the Flax twin's in train mode, even bound to its keys
    (``torchinit.rngs.bind_rngs``; twin_check's ``rngs=``): masks drawn where no binding reaches
    (a foreign stochastic-depth module's ``bernoulli_``, alpha dropout, attention dropout inside the
    fused ``scaled_dot_product_attention`` kernel), and torch rates no Flax dropout has."""
    out: list[Finding] = []
    done = {f.torch for f in found if f.category == "dropout"}
    for path, m in tmods.items():
        cls, p = _cls(m), float(getattr(m, "p", getattr(m, "drop_prob", 0.0)) or 0.0)
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
                         if _cls(fm) == "Dropout"} | {float(getattr(fm, "dropout_rate", 0.0) or 0.0)
                                                      for fm in fmods.values()} - {0.0})
    for path in torder:
        m = tmods.get(path)
        if m is None or path in done or not _cls(m).startswith("Dropout"):
            continue
        p = float(getattr(m, "p", 0.0))
        if p > 0 and fmods and not any(abs(p - r) < 1e-12 for r in flax_rates):
            out.append(Finding("dropout", path, "", f"torch p={p}, but no Flax Dropout has that rate (Flax rates: "
                               f"{', '.join(f'{r:g}' for r in flax_rates) or 'none'}): the masks cannot agree",
                               f"give the Flax twin's dropout rate={p} (or torch's p the Flax rate)"))
    return out


def _check_init(tp, fp, tm, fm, tin, fvars):
    import flax.linen.linear as L

    if not _torch_base(tm, "Linear", "Conv1d", "Conv2d", "Conv3d") or \
            getattr(fm, "kernel_init", None) is not L.default_kernel_init:
        return []
    return [Finding("initializers", tp, fp, "Flax's default kernel_init (lecun_normal, zero bias) differs from torch's "
                    "(kaiming_uniform(a=sqrt(5)), uniform bias): two freshly initialized twins start from different "
                    "distributions (irrelevant once weights are converted)",
                    "use jaxinit.linen / jaxinit.nnx layers (torch's defaults), or convert the torch weights")]


_CHECKS = (_check_conv, _check_conv_transpose, _check_dense, _check_norm, _check_batchnorm, _check_embed,
           _check_dropout, _check_init)


def _order_findings(pairs, groups, torder, forder, fvars):
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

    return same(_TORCH_INPUT, ta, tb) or same(_FLAX_INPUT, fkey(fa), fkey(fb))


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


def _notes(tmods, pairs, findings):
    acts = [(p, m) for p, m in tmods.items() if _cls(m) in _ACTIVATIONS]
    notes = []
    if acts:
        desc = ", ".join(f"{p} ({_cls(m)}" + (f", approximate={m.approximate!r}" if hasattr(m, "approximate") else "")
                         + ")" for p, m in acts[:8])
        notes.append("activation functions are functions, not modules, in Flax, so the audit cannot see the Flax "
                     f"side of: {desc}{' ...' if len(acts) > 8 else ''}. Flax's nn.gelu defaults to approximate=True "
                     "(tanh), torch's GELU to 'none' (exact). compare_layers shows the first layer whose output differs.")
    return notes


def _pooling(tmods, pairs):
    """Pooling is a function in Flax: state the matching Flax call (a note), and flag torch
    settings Flax's pools cannot express (findings)."""
    findings, calls = [], []
    for p, m in tmods.items():
        cls = _cls(m)
        if p in pairs or not (cls.startswith("MaxPool") or cls.startswith("AvgPool")):
            continue
        n = int(cls[-2]) if cls[-2].isdigit() else 2
        kk, ss, pp = _tuple(m.kernel_size, n), _tuple(m.stride, n), _tuple(m.padding, n)
        call = "nn.max_pool" if cls.startswith("Max") else "nn.avg_pool"
        extra = ", count_include_pad=False" if cls.startswith("Avg") and not m.count_include_pad else ""
        flax_call = f"{call}(x, {kk}, strides={ss}, padding={tuple((q, q) for q in pp)}{extra})"
        calls.append(f"{p}: {flax_call}")
        if getattr(m, "ceil_mode", False):
            findings.append(Finding("pooling", p, "", f"{cls}(ceil_mode=True): Flax pools round the output size down",
                                    f"pad the high side by stride - 1 more: {flax_call} with the high pads increased"))
        if cls.startswith("Max") and _tuple(getattr(m, "dilation", 1), n) != (1,) * n:
            findings.append(Finding("pooling", p, "", f"{cls}(dilation={m.dilation}): Flax's max_pool has no dilation",
                                    "use jax.lax.reduce_window with window_dilation"))
    notes = []
    if calls:
        notes.append("pooling is a function in Flax (the audit cannot see its arguments); the calls that match "
                     "torch (Flax's padding='SAME' is asymmetric for even strides, torch's is symmetric): "
                     + "; ".join(calls))
    return findings, notes
