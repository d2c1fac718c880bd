"""Layer kinds of the kernel family: Dense, Conv, ConvTranspose, Hugging Face's Conv1D and
Embed (registered in :mod:`_jaxinit.layer_kinds`)."""
from __future__ import annotations

import numpy as np

from _jaxinit.layer_kind_base import PARAMS, LayerKind, Options, leaf_name, pop_leaf, spatial_dims

_WN = ("parametrizations.weight.original0", "parametrizations.weight.original1")  # torch.nn.utils.parametrize
_WN_OLD = ("weight_g", "weight_v")  # torch.nn.utils.weight_norm (deprecated)


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
            out = {(PARAMS, ("weight_g",)): wg, (PARAMS, ("weight_v",)): wv}
        elif "weight" in t:
            return None  # twin_check's gradient of the normalized weight itself: the plain path
        elif opts.gradients:
            problems.add("unsupported layers", f"{g.id}: torch's gradients of a weight-normalized layer are those of "
                         "g and v, the Flax kernel's is of w = g * v / ||v||: they cannot be compared; pass "
                         f"ignore=[{leaf_name(g, _WN[0] if _WN[0] in t else 'weight_g')!r}, ...] (or hold weight_g/weight_v "
                         "in Flax)")
            return {}
        else:
            w = wg * (wv / _norm_except(wv, wg))
            out = {(PARAMS, ("kernel",)): self.weight_to_kernel(g, w, opts)}
        if "bias" in t:
            out[(PARAMS, ("bias",))] = t["bias"]
        return out

    def weight_norm_to_torch(self, g, f, opts: Options, w):
        """Flax ``weight_g``/``weight_v`` (or a plain kernel's weight ``w``) -> the torch names the
        template expects."""
        want = opts.torch_expects or set()
        names = _WN if _WN[0] in want else _WN_OLD if _WN_OLD[0] in want else None
        fg, fv = pop_leaf(f, "weight_g"), pop_leaf(f, "weight_v")
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
        w, b = pop_leaf(f, "kernel"), pop_leaf(f, "bias")
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
        out = {(PARAMS, ("kernel",)): self.weight_to_kernel(g, t["weight"], opts)}
        if "bias" in t:
            out[(PARAMS, ("bias",))] = t["bias"]
        return out



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


class Conv(_KernelKind):
    name, flax_class = "conv", "Conv"
    torch_classes = ("Conv1d", "Conv2d", "Conv3d")
    layout = "conv            weight (out, in/groups, *k), bias        params kernel (*k, in/groups, out), bias"

    def flax_match(self, kids, leaves):
        return "kernel" in leaves and leaves["kernel"] != 2 and "embedding" not in leaves

    def torch_guess(self, leaves, shapes):
        return "weight" in leaves and len(shapes[leaves["weight"]]) >= 3 and "running_mean" not in leaves

    def weight_to_kernel(self, g, w, opts):
        return w.transpose(*spatial_dims(w.ndim), 1, 0)

    def kernel_to_weight(self, g, w, opts):
        return w.transpose(w.ndim - 1, w.ndim - 2, *range(w.ndim - 2))


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
        sp = spatial_dims(w.ndim)
        if g.opts.get("transpose_kernel", opts.transpose_kernel):
            return w.transpose(*sp, 1, 0)
        return np.flip(w.transpose(*sp, 0, 1), axis=tuple(range(len(sp))))

    def kernel_to_weight(self, g, w, opts):
        sp = tuple(range(w.ndim - 2))
        if g.opts.get("transpose_kernel", opts.transpose_kernel):
            return w.transpose(w.ndim - 1, w.ndim - 2, *sp)
        return np.flip(w, axis=sp).transpose(w.ndim - 2, w.ndim - 1, *sp)



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
        out = {(PARAMS, ("kernel",)): w.T if tr else w}
        if "bias" in t:
            out[(PARAMS, ("bias",))] = t["bias"]
        return out

    def to_torch(self, g, f, problems, opts):
        w, b = pop_leaf(f, "kernel"), pop_leaf(f, "bias")
        out = {}
        if w is not None:
            out["weight"] = w.T if g.opts.get("transpose", (opts.shared or {}).get(self.name, True)) else w
        if b is not None:
            out["bias"] = b
        return out



class Embed(LayerKind):
    name, flax_class, torch_classes = "embed", "Embed", ("Embedding",)
    torch_leaves, required = ("weight",), ("weight",)
    layout = "embed           weight (num, features)                   params embedding (num, features)"

    def module_options(self, module):
        return {"padding_idx": getattr(module, "padding_idx", None)}

    def flax_match(self, kids, leaves):
        return "embedding" in leaves

    def to_flax(self, g, t, problems, opts):
        return {(PARAMS, ("embedding",)): t["weight"]}

    def to_torch(self, g, f, problems, opts):
        e = pop_leaf(f, "embedding")
        return {} if e is None else {"weight": e}
