"""Layer kinds of the normalisation family (BatchNorm, LayerNorm, InstanceNorm, RMSNorm,
GroupNorm) and PReLU's per-channel slope (registered in :mod:`_jaxinit.layer_kinds`)."""
from __future__ import annotations

import numpy as np

from _jaxinit.layer_kind_base import PARAMS, LayerKind, affine_to_flax, affine_to_torch, direct_params, leaf_name, pop_leaf


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
        out = affine_to_flax(t)
        if "running_mean" in t:
            out[("batch_stats", ("mean",))] = t["running_mean"]
        if "running_var" in t:
            out[("batch_stats", ("var",))] = t["running_var"]
        if "num_batches_tracked" in t and opts.batchnorm == "torch":
            n = t["num_batches_tracked"]
            if np.any(np.abs(n.astype(np.int64)) > np.iinfo(np.int32).max):
                problems.add("values Flax cannot hold exactly",
                             f"{leaf_name(g, 'num_batches_tracked')} = {int(n)} does not fit int32")
            out[("batch_stats", ("num_batches_tracked",))] = n.astype(np.int32)
        # (batchnorm='flax': num_batches_tracked is read and not converted, on request)
        return out

    def to_torch(self, g, f, problems, opts):
        out = affine_to_torch(f)
        m, v = pop_leaf(f, "mean", coll="batch_stats"), pop_leaf(f, "var", coll="batch_stats")
        if m is not None:
            out["running_mean"] = m
        if v is not None:
            out["running_var"] = v
        n = pop_leaf(f, "num_batches_tracked", coll="batch_stats")
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
        p = direct_params(module)
        return self.name == "layernorm" and "Norm" in type(module).__name__ and set(p) == {"weight", "bias"} \
            and all(v.dim() == 1 for v in p.values()) and next(module.children(), None) is None

    def to_flax(self, g, t, problems, opts):
        return affine_to_flax(t)

    def to_torch(self, g, f, problems, opts):
        return affine_to_torch(f)


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


class RMSNorm(LayerKind):
    """``torch.nn.RMSNorm`` and hand-written weight-only norms (Hugging Face's ``LlamaRMSNorm``,
    ``MistralRMSNorm``, ``GemmaRMSNorm``, ``T5LayerNorm``): the weight is Flax's ``scale``
    (``flax.linen.RMSNorm``) or ``weight`` (Hugging Face's Flax norms), whichever the
    template holds (``scale`` without a template)."""

    name, flax_class, torch_classes = "rmsnorm", "RMSNorm", ("RMSNorm",)
    torch_leaves, required = ("weight",), ("weight",)
    layout = "rmsnorm         weight                                   params scale (flax RMSNorm) or weight (HF Flax)"

    def module_match(self, module):
        p = direct_params(module)
        return "Norm" in type(module).__name__ and list(p) == ["weight"] and p["weight"].dim() == 1 \
            and next(module.children(), None) is None

    def flax_match(self, kids, leaves):
        return set(leaves) == {"weight"} and leaves["weight"] == 1

    def to_flax(self, g, t, problems, opts):
        leaf = "weight" if opts.has is not None and opts.has(("weight",)) else "scale"
        return {(PARAMS, (leaf,)): t["weight"]}

    def to_torch(self, g, f, problems, opts):
        w = pop_leaf(f, "scale")
        w = pop_leaf(f, "weight") if w is None else w
        return {} if w is None else {"weight": w}


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
        return {(PARAMS, ("negative_slope",)): w.reshape(())}

    def to_torch(self, g, f, problems, opts):
        w = pop_leaf(f, "negative_slope")
        return {} if w is None else {"weight": np.asarray(w).reshape(1)}



class GroupNorm(LayerNorm):
    name, flax_class, torch_classes = "groupnorm", "GroupNorm", ("GroupNorm",)
    layout = ""

    def flax_match(self, kids, leaves):
        return False  # same leaves as LayerNorm: a GroupNorm needs the module or kinds=

    def torch_guess(self, leaves, shapes):
        return False
