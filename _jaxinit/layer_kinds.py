"""One weight converter per layer kind, in one registry.

A kind is a class: its torch classes, its Flax class (for Linen auto names), the torch
leaves it reads, how Flax names reveal it, its layout transposes (``layout``) and the two
directions ``to_flax`` / ``to_torch``. Adding a layer kind is one class here, decorated
with :func:`register`; the discovery (:mod:`_jaxinit.naming`) and the two conversion
directions (:mod:`_jaxinit.convert`) never name a kind.

Arrays are numpy arrays. ``to_flax`` returns ``{(collection, relpath): array}``;
``to_torch`` pops the Flax leaves it reads from ``f`` and returns ``{torch leaf: array}``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import numpy as np

P = "params"


class Options(NamedTuple):
    """Options of one conversion call, read by the kinds."""

    batchnorm: str = "torch"
    merge_rnn_biases: bool = False
    transpose_kernel: bool = False
    torch_expects: Any = None  # set of torch leaves the torch template holds (None: no template)
    fpath: tuple = ()  # the Flax path of the layer being converted (for messages)
    has: Callable | None = None  # has(relpath[, shape_dim]) probe of the Flax template (None: no template)
    gradients: bool = False  # the arrays are gradients (twin_check): a merged RNN bias takes ONE of torch's two
    shared: Any = None  # per-conversion facts the kinds settle across layers ({kind: value}, e.g. conv1d's layout)


class LayerKind:
    """Base class: the description of one layer kind (see the module docstring)."""

    name: str = ""
    flax_class: str = ""  # Linen auto name prefix: ``Dense`` -> ``Dense_0``
    torch_classes: tuple = ()  # torch.nn class names (anywhere in the MRO)
    torch_leaves: tuple = ()  # canonical torch leaves, in state_dict order
    extra_leaves: tuple = ()  # further torch leaves the kind reads (alternatives, refused extras)
    required: tuple = ()  # leaves without which the layer cannot convert (any one of each tuple entry)
    rnn: bool = False  # torch packs several layers (``_l0``, ``_l1_reverse``) in one module
    owns_children: bool = False  # the Flax layer is a module with sub-modules (cells, attention)
    layout: str = ""  # one LAYOUTS row

    def consumed(self) -> set[str]:
        return set(self.torch_leaves) | set(self.extra_leaves)

    def missing(self, t: dict) -> list[str]:
        """Required leaves absent from ``t`` (for each alternative group, its first name)."""
        out = []
        for req in self.required:
            alts = (req,) if isinstance(req, str) else req
            if not any(a in t for a in alts):
                out.append(alts[0])
        return out

    def module_options(self, module) -> dict:
        """Options read from the torch module (duck-typed)."""
        return {}

    def module_error(self, module) -> str | None:
        return None

    def module_match(self, module) -> bool:
        """Whether a torch module that no registered class names is this kind (duck-typed)."""
        return False

    def flax_match(self, kids: set, leaves: dict) -> bool:
        """Whether a Flax module with sub-module names ``kids`` and leaves ``{name: ndim}`` is this kind."""
        return False

    def torch_guess(self, leaves: Mapping[str, str], shapes: Mapping[str, tuple]) -> bool:
        """Whether state-dict leaves ``{leaf: full key}`` (shapes by full key) are this kind by default."""
        return False

    def to_flax(self, g, t: dict, problems, opts: Options) -> dict:
        raise NotImplementedError

    def to_torch(self, g, f: dict, problems, opts: Options) -> dict:
        raise NotImplementedError


REGISTRY: dict[str, LayerKind] = {}


def register(cls):
    """Class decorator: add one instance of a :class:`LayerKind` subclass to the registry."""
    kind = cls()
    if kind.name in REGISTRY:
        raise ValueError(f"layer kind {kind.name!r} registered twice")
    REGISTRY[kind.name] = kind
    return cls


def get(name: str) -> LayerKind:
    return REGISTRY[name]


# --------------------------------------------------------------------------- helpers
def _name(g, leaf: str) -> str:
    return g.keys.get(leaf) or (f"{g.id}.{leaf}" if g.id else leaf)


def _spatial(nd: int) -> tuple[int, ...]:
    return tuple(range(2, nd))


def _pop(f: dict, *rel, coll=P):
    return f.pop((coll, rel), None)


def _affine_to_flax(t: dict) -> dict:
    out = {}
    if "weight" in t:
        out[(P, ("scale",))] = t["weight"]
    if "bias" in t:
        out[(P, ("bias",))] = t["bias"]
    return out


def _affine_to_torch(f: dict) -> dict:
    out = {}
    s, b = _pop(f, "scale"), _pop(f, "bias")
    if s is not None:
        out["weight"] = s
    if b is not None:
        out["bias"] = b
    return out


def _merge_bias(a, b, name_a: str, name_b: str, merge: bool, problems, gradients: bool = False):
    """Flax keeps one bias where torch has two: exact when one is zero, else a sum (asked for).

    Gradients (``gradients=True``): torch's ``bias_ih`` and ``bias_hh`` of one gate enter the
    same pre-activation, so each has the gradient of Flax's single bias; it is ``bias_ih``'s
    (their sum would be twice the value)."""
    if a is None and b is None:
        return None
    if gradients:
        return a if a is not None else b
    if b is None or not np.any(b):
        return a if a is not None else np.zeros(b.shape, b.dtype)
    if a is None or not np.any(a):
        return b
    if not merge:
        problems.add("values Flax cannot hold exactly",
                     f"{name_a} and {name_b} are both nonzero: Flax's cell has one bias there, so it "
                     "would be their sum (the reverse conversion puts the sum in bias_ih and zeros in "
                     "bias_hh). Pass merge_rnn_biases=True to accept the sum.")
        return a
    return (a.astype(np.float64) + b.astype(np.float64)).astype(a.dtype) if a.dtype.itemsize < 8 else a + b


def _rnn_bias_out(out: dict, b: np.ndarray, g, problems, opts: Options) -> None:
    """Flax's single gate bias -> torch's bias_ih (bias_hh zeros); a torch layer built with
    bias=False takes it only when it is zero."""
    if opts.torch_expects is None or "bias_ih" in opts.torch_expects:
        out["bias_ih"], out["bias_hh"] = b, np.zeros_like(b)
    elif np.any(b):
        problems.add("values torch cannot hold exactly",
                     f"{g.id}: the Flax cell's gate biases are nonzero but the torch layer has bias=False")


# --------------------------------------------------------------------------- the kinds
_WN = ("parametrizations.weight.original0", "parametrizations.weight.original1")  # torch.nn.utils.parametrize
_WN_OLD = ("weight_g", "weight_v")  # torch.nn.utils.weight_norm (deprecated)


def _direct_params(module) -> dict:
    return dict(module.named_parameters(recurse=False)) if hasattr(module, "named_parameters") else {}


def _weight_norm(t: dict):
    """``(g, v)`` of a weight-normalized layer (either torch API), or None."""
    for g, v in (_WN, _WN_OLD):
        if g in t and v in t:
            return t[g], t[v]
    return None


def _norm_except(v: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``||v||`` over the axes where ``g`` has size 1 (torch's ``_weight_norm``: every axis but
    ``dim``), kept for broadcasting."""
    axes = tuple(i for i in range(v.ndim) if g.ndim != v.ndim or g.shape[i] == 1)
    return np.sqrt(np.sum(v.astype(np.float64) ** 2, axis=axes, keepdims=True)).astype(v.dtype)


class _KernelKind(LayerKind):
    """Layers with ``weight`` (and ``bias``); a weight-normalized one (``torch.nn.utils.
    parametrizations.weight_norm``: ``parametrizations.weight.original0/1``, or the old
    ``weight_norm``: ``weight_g``/``weight_v``) converts to Flax ``weight_g``/``weight_v``
    unchanged (Hugging Face's Flax Wav2Vec2 keeps torch's layout) when the template has them,
    else to the kernel of ``w = g * v / ||v||`` (its inverse: ``g = ||w||``, ``v = w``)."""

    torch_leaves = ("weight", "bias")
    extra_leaves = _WN + _WN_OLD
    required = (("weight",) + _WN[1:] + _WN_OLD[1:],)

    def weight_norm_to_flax(self, g, t, problems, opts: Options):
        gv = _weight_norm(t)
        if gv is None:
            return None
        wg, wv = gv
        out = {}
        if opts.has is not None and opts.has(("weight_g",)) and opts.has(("weight_v",)):
            out = {(P, ("weight_g",)): wg, (P, ("weight_v",)): wv}
        elif "weight" in t:
            return None  # twin_check's gradient of the normalized weight itself: the plain path
        elif opts.gradients:
            problems.add("unsupported layers", f"{g.id}: torch's gradients of a weight-normalized layer are those of "
                         "g and v, the Flax kernel's is of w = g * v / ||v||: they cannot be compared; pass "
                         f"ignore=[{_name(g, _WN[0] if _WN[0] in t else 'weight_g')!r}, ...] (or hold weight_g/weight_v "
                         "in Flax)")
            return {}
        else:
            w = wg * (wv / _norm_except(wv, wg))
            out = {(P, ("kernel",)): self.weight_to_kernel(g, w, opts)}
        if "bias" in t:
            out[(P, ("bias",))] = t["bias"]
        return out

    def weight_norm_to_torch(self, g, f, opts: Options, w):
        """Flax ``weight_g``/``weight_v`` (or a plain kernel's weight ``w``) -> the torch names the
        template expects."""
        want = opts.torch_expects or set()
        names = _WN if _WN[0] in want else _WN_OLD if _WN_OLD[0] in want else None
        fg, fv = _pop(f, "weight_g"), _pop(f, "weight_v")
        if fg is not None and fv is not None:
            return dict(zip(names or _WN_OLD, (fg, fv)))
        if names is None or w is None:
            return None
        return {names[0]: np.sqrt(np.sum(w.astype(np.float64) ** 2, axis=tuple(range(1, w.ndim)),
                                         keepdims=True)).astype(w.dtype), names[1]: w}

    def kernel_to_weight(self, g, w, opts: Options):
        """Flax ``kernel`` -> torch ``weight`` (each subclass's layout)."""
        raise NotImplementedError

    def weight_to_kernel(self, g, w, opts: Options):
        """Torch ``weight`` -> Flax ``kernel`` (each subclass's layout)."""
        raise NotImplementedError

    def to_torch(self, g, f, problems, opts):
        out = {}
        w, b = _pop(f, "kernel"), _pop(f, "bias")
        weight = self.kernel_to_weight(g, w, opts) if w is not None else None
        wn = self.weight_norm_to_torch(g, f, opts, weight)
        if wn is not None:
            out.update(wn)
        elif weight is not None:
            out["weight"] = weight
        if b is not None:
            out["bias"] = b
        return out

    def to_flax(self, g, t, problems, opts):
        wn = self.weight_norm_to_flax(g, t, problems, opts)
        if wn is not None:
            return wn
        out = {(P, ("kernel",)): self.weight_to_kernel(g, t["weight"], opts)}
        if "bias" in t:
            out[(P, ("bias",))] = t["bias"]
        return out


@register
class Dense(_KernelKind):
    name, flax_class, torch_classes = "dense", "Dense", ("Linear",)
    layout = "dense           weight (out, in), bias                   params kernel (in, out) = weight.T, bias"

    def flax_match(self, kids, leaves):
        return "kernel" in leaves and leaves["kernel"] == 2 and "embedding" not in leaves

    def torch_guess(self, leaves, shapes):
        return "weight" in leaves and len(shapes[leaves["weight"]]) == 2

    def weight_to_kernel(self, g, w, opts):
        return w.T

    def kernel_to_weight(self, g, w, opts):
        return w.T


@register
class Conv(_KernelKind):
    name, flax_class = "conv", "Conv"
    torch_classes = ("Conv1d", "Conv2d", "Conv3d")
    layout = "conv            weight (out, in/groups, *k), bias        params kernel (*k, in/groups, out), bias"

    def flax_match(self, kids, leaves):
        return "kernel" in leaves and leaves["kernel"] != 2 and "embedding" not in leaves

    def torch_guess(self, leaves, shapes):
        return "weight" in leaves and len(shapes[leaves["weight"]]) >= 3 and "running_mean" not in leaves

    def weight_to_kernel(self, g, w, opts):
        return w.transpose(*_spatial(w.ndim), 1, 0)

    def kernel_to_weight(self, g, w, opts):
        return w.transpose(w.ndim - 1, w.ndim - 2, *range(w.ndim - 2))


@register
class ConvTranspose(_KernelKind):
    name, flax_class = "conv_transpose", "ConvTranspose"
    torch_classes = ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d")
    layout = ("conv_transpose  weight (in, out, *k), bias (groups=1)    transpose_kernel=False: kernel (*k, in, out) =\n"
              "                                                         spatially FLIPPED weight; True: (*k, out, in) unflipped")

    def module_options(self, module):
        return {"groups": getattr(module, "groups", 1)}

    def to_flax(self, g, t, problems, opts):
        if g.opts.get("groups", 1) != 1:
            problems.add("unsupported layers", f"{g.id}: ConvTranspose with groups={g.opts['groups']}: "
                         "Flax's ConvTranspose has no feature groups (only groups=1 converts).")
            return {}
        return super().to_flax(g, t, problems, opts)

    def weight_to_kernel(self, g, w, opts):
        sp = _spatial(w.ndim)
        if g.opts.get("transpose_kernel", opts.transpose_kernel):
            return w.transpose(*sp, 1, 0)
        return np.flip(w.transpose(*sp, 0, 1), axis=tuple(range(len(sp))))

    def kernel_to_weight(self, g, w, opts):
        sp = tuple(range(w.ndim - 2))
        if g.opts.get("transpose_kernel", opts.transpose_kernel):
            return w.transpose(w.ndim - 1, w.ndim - 2, *sp)
        return np.flip(w, axis=sp).transpose(w.ndim - 2, w.ndim - 1, *sp)


@register
class BatchNorm(LayerKind):
    name, flax_class = "batchnorm", "BatchNorm"
    torch_classes = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "BatchNorm")
    torch_leaves = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    layout = ("batchnorm       weight, bias, running_mean, running_var, params scale, bias; batch_stats mean, var,\n"
              "                num_batches_tracked (int64)              num_batches_tracked (int32, jaxinit.BatchNorm)")

    def flax_match(self, kids, leaves):
        return ("mean" in leaves or "var" in leaves) and "kernel" not in leaves

    def torch_guess(self, leaves, shapes):
        return "running_mean" in leaves

    def to_flax(self, g, t, problems, opts):
        out = _affine_to_flax(t)
        if "running_mean" in t:
            out[("batch_stats", ("mean",))] = t["running_mean"]
        if "running_var" in t:
            out[("batch_stats", ("var",))] = t["running_var"]
        if "num_batches_tracked" in t and opts.batchnorm == "torch":
            n = t["num_batches_tracked"]
            if np.any(np.abs(n.astype(np.int64)) > np.iinfo(np.int32).max):
                problems.add("values Flax cannot hold exactly",
                             f"{_name(g, 'num_batches_tracked')} = {int(n)} does not fit int32")
            out[("batch_stats", ("num_batches_tracked",))] = n.astype(np.int32)
        # (batchnorm='flax': num_batches_tracked is read and not converted, on request)
        return out

    def to_torch(self, g, f, problems, opts):
        out = _affine_to_torch(f)
        m, v = _pop(f, "mean", coll="batch_stats"), _pop(f, "var", coll="batch_stats")
        if m is not None:
            out["running_mean"] = m
        if v is not None:
            out["running_var"] = v
        n = _pop(f, "num_batches_tracked", coll="batch_stats")
        if opts.batchnorm == "torch":
            if n is not None:
                out["num_batches_tracked"] = np.asarray(n).astype(np.int64)
        elif n is not None:
            problems.add("unexpected keys", f"batch_stats/{'/'.join(opts.fpath)}/num_batches_tracked with "
                         "batchnorm='flax' (that convention has none; use batchnorm='torch' for "
                         "jaxinit.BatchNorm variables)")
        else:
            out["num_batches_tracked"] = np.zeros((), np.int64)
        return out


@register
class LayerNorm(LayerKind):
    name, flax_class, torch_classes = "layernorm", "LayerNorm", ("LayerNorm",)
    torch_leaves = ("weight", "bias")
    layout = "layernorm,      weight, bias                             params scale, bias\ngroupnorm"

    def flax_match(self, kids, leaves):
        return bool(set(leaves) & {"scale", "bias"}) and not set(leaves) & {"kernel", "embedding", "mean", "var"}

    def torch_guess(self, leaves, shapes):
        return "weight" in leaves and len(shapes[leaves["weight"]]) == 1 and "running_mean" not in leaves

    def module_match(self, module):
        """A hand-written layer norm (Hugging Face's ``Wav2Vec2``/``ConvNext``-style ``LayerNorm``
        classes): a ``*Norm*`` module with exactly a 1-D ``weight`` and ``bias`` and no children."""
        p = _direct_params(module)
        return self.name == "layernorm" and "Norm" in type(module).__name__ and set(p) == {"weight", "bias"} \
            and all(v.dim() == 1 for v in p.values()) and next(module.children(), None) is None

    def to_flax(self, g, t, problems, opts):
        return _affine_to_flax(t)

    def to_torch(self, g, f, problems, opts):
        return _affine_to_torch(f)


@register
class InstanceNorm(LayerNorm):
    name, flax_class = "instancenorm", "InstanceNorm"
    torch_classes: tuple = ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")
    extra_leaves = ("running_mean", "running_var", "num_batches_tracked")
    layout = "instancenorm    weight, bias (affine=True)               params scale, bias (use_scale/use_bias)"

    def module_error(self, module):
        if getattr(module, "track_running_stats", False):
            return ("InstanceNorm with track_running_stats=True normalizes with running statistics in eval; "
                    "Flax's InstanceNorm has none")
        return None

    def flax_match(self, kids, leaves):
        return False  # same leaves as LayerNorm: an InstanceNorm needs the module or kinds=

    def torch_guess(self, leaves, shapes):
        return False


@register
class RMSNorm(LayerKind):
    """``torch.nn.RMSNorm`` and hand-written weight-only norms (Hugging Face's ``LlamaRMSNorm``,
    ``MistralRMSNorm``, ``GemmaRMSNorm``, ``T5LayerNorm``): the weight is Flax's ``scale``
    (``flax.linen.RMSNorm``) or ``weight`` (Hugging Face's Flax norms), whichever the
    template holds (``scale`` without a template)."""

    name, flax_class, torch_classes = "rmsnorm", "RMSNorm", ("RMSNorm",)
    torch_leaves, required = ("weight",), ("weight",)
    layout = "rmsnorm         weight                                   params scale (flax RMSNorm) or weight (HF Flax)"

    def module_match(self, module):
        p = _direct_params(module)
        return "Norm" in type(module).__name__ and list(p) == ["weight"] and p["weight"].dim() == 1 \
            and next(module.children(), None) is None

    def flax_match(self, kids, leaves):
        return set(leaves) == {"weight"} and leaves["weight"] == 1

    def to_flax(self, g, t, problems, opts):
        leaf = "weight" if opts.has is not None and opts.has(("weight",)) else "scale"
        return {(P, (leaf,)): t["weight"]}

    def to_torch(self, g, f, problems, opts):
        w = _pop(f, "scale")
        w = _pop(f, "weight") if w is None else w
        return {} if w is None else {"weight": w}


@register
class PReLU(LayerKind):
    name, flax_class, torch_classes = "prelu", "PReLU", ("PReLU",)
    torch_leaves, required = ("weight",), ("weight",)
    layout = "prelu           weight (1,)                              params negative_slope ()"

    def flax_match(self, kids, leaves):
        return set(leaves) == {"negative_slope"}

    def to_flax(self, g, t, problems, opts):
        w = t["weight"]
        if w.size != 1:
            problems.add("unsupported layers", f"{g.id}: PReLU(num_parameters={w.size}): Flax's PReLU has one "
                         "negative_slope (only num_parameters=1 converts)")
            return {}
        return {(P, ("negative_slope",)): w.reshape(())}

    def to_torch(self, g, f, problems, opts):
        w = _pop(f, "negative_slope")
        return {} if w is None else {"weight": np.asarray(w).reshape(1)}


@register
class HFConv1D(LayerKind):
    """Hugging Face's ``Conv1D`` (GPT-2): a linear layer whose weight is stored (in, out).
    Hugging Face's Flax twin (``FlaxConv1D``) stores the kernel (out, in) and a Flax ``Dense``
    (in, out): the template's shape decides, and a square kernel follows the other Conv1D
    layers of the same conversion (Hugging Face's layout when none decides)."""

    name, flax_class = "conv1d", "Dense"
    torch_classes = ("transformers.pytorch_utils.Conv1D",)
    torch_leaves, required = ("weight", "bias"), ("weight",)
    layout = ("conv1d          HF Conv1D weight (in, out), bias        HF FlaxConv1D kernel (out, in) = weight.T;\n"
              "                                                         flax Dense kernel (in, out) = weight")

    def transposed(self, g, w, opts) -> bool | None:
        """True: Flax holds weight.T (HF); False: weight (Dense); None: the template cannot tell."""
        if "transpose" in g.opts:
            return bool(g.opts["transpose"])
        n0 = opts.has(("kernel",), shape_dim=0) if opts.has is not None else None
        if n0 is None or w.shape[0] == w.shape[1]:
            return None
        return n0 == w.shape[1]

    def to_flax(self, g, t, problems, opts):
        w = t["weight"]
        tr = self.transposed(g, w, opts)
        if tr is None:
            tr = (opts.shared or {}).get(self.name, True)
        out = {(P, ("kernel",)): w.T if tr else w}
        if "bias" in t:
            out[(P, ("bias",))] = t["bias"]
        return out

    def to_torch(self, g, f, problems, opts):
        w, b = _pop(f, "kernel"), _pop(f, "bias")
        out = {}
        if w is not None:
            out["weight"] = w.T if g.opts.get("transpose", (opts.shared or {}).get(self.name, True)) else w
        if b is not None:
            out["bias"] = b
        return out


@register
class GroupNorm(LayerNorm):
    name, flax_class, torch_classes = "groupnorm", "GroupNorm", ("GroupNorm",)
    layout = ""

    def flax_match(self, kids, leaves):
        return False  # same leaves as LayerNorm: a GroupNorm needs the module or kinds=

    def torch_guess(self, leaves, shapes):
        return False


@register
class Embed(LayerKind):
    name, flax_class, torch_classes = "embed", "Embed", ("Embedding",)
    torch_leaves, required = ("weight",), ("weight",)
    layout = "embed           weight (num, features)                   params embedding (num, features)"

    def module_options(self, module):
        return {"padding_idx": getattr(module, "padding_idx", None)}

    def flax_match(self, kids, leaves):
        return "embedding" in leaves

    def to_flax(self, g, t, problems, opts):
        return {(P, ("embedding",)): t["weight"]}

    def to_torch(self, g, f, problems, opts):
        e = _pop(f, "embedding")
        return {} if e is None else {"weight": e}


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


@register
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
            out[(P, (names_i[j], "kernel"))] = wi[j].T
            out[(P, (names_h[j], "kernel"))] = wh[j].T
            b = _merge_bias(bi[j], bh[j], _name(g, "bias_ih") + f"[gate {'ifgo'[j]}]",
                            _name(g, "bias_hh") + f"[gate {'ifgo'[j]}]", opts.merge_rnn_biases, problems,
                            opts.gradients)
            out[(P, (names_h[j], "bias"))] = b if b is not None else np.zeros(wh[j].shape[0], wh[j].dtype)
        return out

    def to_torch(self, g, f, problems, opts):
        out: dict[str, Any] = {}
        fi = "if_" if ((P, ("if_", "kernel")) in f) else "if"
        names_i, names_h = ("ii", fi, "ig", "io"), ("hi", "hf", "hg", "ho")
        wi = [_pop(f, n, "kernel") for n in names_i]
        wh = [_pop(f, n, "kernel") for n in names_h]
        bh = [_pop(f, n, "bias") for n in names_h]
        if any(x is None for x in wi + wh):
            return out  # the missing leaves are reported by the caller
        out["weight_ih"] = np.concatenate([w.T for w in wi], 0)
        out["weight_hh"] = np.concatenate([w.T for w in wh], 0)
        if all(b is not None for b in bh):
            _rnn_bias_out(out, np.concatenate(bh), g, problems, opts)
        return out


@register
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
        br, bz = (_merge_bias(bi[j], bh[j], _name(g, "bias_ih") + f"[gate {gate}]", _name(g, "bias_hh") + f"[gate {gate}]",
                              opts.merge_rnn_biases, problems, opts.gradients) for j, gate in ((0, "r"), (1, "z")))
        if opts.has is not None and opts.has(("dense_i",)):
            if np.any(bh[2]) and not opts.gradients:  # (a gradient of b_hn is not a value of it)
                problems.add("values Flax cannot hold exactly",
                             f"{_name(g, 'bias_hh')}[gate n] (b_hn) is nonzero, but flax.nnx.GRUCell has no bias "
                             "inside r * (W_hn h): use flax.linen.GRUCell (it has hn/bias), or a torch GRU "
                             "whose b_hn is 0.")
            out[(P, ("dense_i", "kernel"))] = t["weight_ih"].T
            out[(P, ("dense_i", "bias"))] = np.concatenate([br, bz, bi[2]])
            out[(P, ("dense_h", "kernel"))] = t["weight_hh"].T
            return out
        for j, (gi, gh) in enumerate((("ir", "hr"), ("iz", "hz"), ("in", "hn"))):
            out[(P, (gi, "kernel"))] = wi[j].T
            out[(P, (gh, "kernel"))] = wh[j].T
        out[(P, ("ir", "bias"))], out[(P, ("iz", "bias"))] = br, bz
        out[(P, ("in", "bias"))], out[(P, ("hn", "bias"))] = bi[2], bh[2]
        return out

    def to_torch(self, g, f, problems, opts):
        out: dict[str, Any] = {}
        if (P, ("dense_i", "kernel")) in f:
            wi, bi, wh = _pop(f, "dense_i", "kernel"), _pop(f, "dense_i", "bias"), _pop(f, "dense_h", "kernel")
            if wi is None or wh is None:
                return out
            out["weight_ih"], out["weight_hh"] = wi.T, wh.T
            if bi is not None:
                _rnn_bias_out(out, bi, g, problems, opts)
            return out
        wi = [_pop(f, n, "kernel") for n in ("ir", "iz", "in")]
        wh = [_pop(f, n, "kernel") for n in ("hr", "hz", "hn")]
        bi = [_pop(f, n, "bias") for n in ("ir", "iz", "in")]
        bhn = _pop(f, "hn", "bias")
        if any(x is None for x in wi + wh + bi) or bhn is None:
            return out
        out["weight_ih"] = np.concatenate([w.T for w in wi], 0)
        out["weight_hh"] = np.concatenate([w.T for w in wh], 0)
        b_ih = np.concatenate(bi)
        b_hh = np.concatenate([np.zeros_like(bhn), np.zeros_like(bhn), bhn])
        if opts.torch_expects is None or "bias_ih" in opts.torch_expects or np.any(b_ih) or np.any(b_hh):
            out["bias_ih"], out["bias_hh"] = b_ih, b_hh
        return out


@register
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
            out[(P, (nm, "kernel"))] = w.T.reshape(w.shape[1], heads, D)
            if b is not None:
                out[(P, (nm, "bias"))] = b.reshape(heads, D)
        out[(P, ("out", "kernel"))] = wo.T.reshape(heads, D, E)
        if "out_proj.bias" in t:
            out[(P, ("out", "bias"))] = t["out_proj.bias"]
        return out

    def to_torch(self, g, f, problems, opts):
        out: dict[str, Any] = {}
        ws = [_pop(f, n, "kernel") for n in ("query", "key", "value")]
        bs = [_pop(f, n, "bias") for n in ("query", "key", "value")]
        wo, bo = _pop(f, "out", "kernel"), _pop(f, "out", "bias")
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


KINDS = tuple(REGISTRY)
LAYOUTS = "kind            torch (state_dict)                       Flax (variables)\n" + \
    "\n".join(k.layout for k in REGISTRY.values() if k.layout) + "\n"
