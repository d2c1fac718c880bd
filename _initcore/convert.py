"""Weight conversion between a PyTorch ``state_dict`` and Flax variables: the shared core.

Framework-free (numpy only; ``ml_dtypes`` arrays for bfloat16). It holds, once, what
``jaxinit`` and ``torchinit`` must agree on:

- the *groups*: which torch keys form one layer and of which kind, found from a
  torch module's types (duck-typed: no torch import), from the key names, or from
  Flax names;
- the naming rule: torch ``a.b.0`` <-> Flax ``a/b/<x>`` where, when a template is
  given, ``<x>`` is the first of ``0``, ``layers_0`` (Linen ``Sequential``),
  ``layers/0`` (NNX ``Sequential``), ``<FlaxClass>_<k>`` (Linen auto names: the
  k-th sibling of that class) present in the template; ``mapping`` overrides any
  prefix;
- the layout transposes of every layer kind (:data:`LAYOUTS` documents them);
- strictness: every problem (missing / unexpected keys, shape and dtype
  mismatches, values that cannot be represented) is collected and raised as ONE
  :class:`ConversionError`.

Arrays are numpy arrays here; each package converts its tensors to and from numpy.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from _initcore.errors import InitError

FlaxKey = tuple  # (collection, path tuple)

KINDS = ("dense", "conv", "conv_transpose", "batchnorm", "layernorm", "groupnorm", "embed", "lstm", "gru", "mha")

# The Flax class name each kind takes in Linen's auto names (``Dense_0``).
FLAX_CLASS = {
    "dense": "Dense", "conv": "Conv", "conv_transpose": "ConvTranspose", "batchnorm": "BatchNorm",
    "layernorm": "LayerNorm", "groupnorm": "GroupNorm", "embed": "Embed", "lstm": "LSTMCell",
    "gru": "GRUCell", "mha": "MultiHeadDotProductAttention",
}

# torch.nn class name (anywhere in the MRO, defined in torch.nn) -> kind.
TORCH_CLASS_KIND = {
    "Linear": "dense", "Bilinear": None, "Conv1d": "conv", "Conv2d": "conv", "Conv3d": "conv",
    "ConvTranspose1d": "conv_transpose", "ConvTranspose2d": "conv_transpose", "ConvTranspose3d": "conv_transpose",
    "BatchNorm1d": "batchnorm", "BatchNorm2d": "batchnorm", "BatchNorm3d": "batchnorm", "SyncBatchNorm": "batchnorm",
    "LayerNorm": "layernorm", "GroupNorm": "groupnorm", "Embedding": "embed", "LSTM": "lstm", "LSTMCell": "lstm",
    "GRU": "gru", "GRUCell": "gru", "MultiheadAttention": "mha",
}

LAYOUTS = """\
kind            torch (state_dict)                       Flax (variables)
dense           weight (out, in), bias                   params kernel (in, out) = weight.T, bias
conv            weight (out, in/groups, *k), bias        params kernel (*k, in/groups, out), bias
conv_transpose  weight (in, out, *k), bias (groups=1)    transpose_kernel=False: kernel (*k, in, out) =
                                                         spatially FLIPPED weight; True: (*k, out, in) unflipped
batchnorm       weight, bias, running_mean, running_var, params scale, bias; batch_stats mean, var,
                num_batches_tracked (int64)              num_batches_tracked (int32, jaxinit.BatchNorm)
layernorm,      weight, bias                             params scale, bias
groupnorm
embed           weight (num, features)                   params embedding (num, features)
lstm            weight_ih (4H, in), weight_hh (4H, H),   ii/if/ig/io kernel (in, H); hi/hf/hg/ho kernel (H, H)
                bias_ih, bias_hh (gates i, f, g, o)      and bias = bias_ih + bias_hh (NNX: if_)
gru             weight_ih (3H, in), weight_hh (3H, H),   Linen: ir/iz/in kernel+bias, hr/hz kernel, hn
                bias_ih, bias_hh (gates r, z, n)         kernel+bias (= b_hn); NNX: dense_i (in, 3H)+bias,
                                                         dense_h (H, 3H) without bias (b_hn must be 0)
                Both Flax GRUCells apply the reset gate as torch does, after the hidden projection:
                n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), so the conversion is exact.
mha             in_proj_weight (3E, E) (or q/k/v_proj_   query/key/value kernel (E_in, heads, head_dim),
                weight), in_proj_bias, out_proj.weight,  bias (heads, head_dim); out kernel
                out_proj.bias                            (heads, head_dim, E), bias (E,)
"""


class ConversionError(InitError):
    """Every problem of one conversion, listed together (a ``ValueError`` subclass)."""


class Group(NamedTuple):
    """One torch layer: ``id`` names it for the naming rule and ``mapping`` (``"lstm.l1"``
    for layer 1 of a multi-layer ``nn.LSTM``, else the module prefix); ``keys`` maps each
    canonical leaf name (``weight``, ``weight_ih``, ``out_proj.weight``) to the full key."""

    id: str
    kind: str
    keys: dict
    opts: dict


# --------------------------------------------------------------------------- errors
class Problems:
    """Collects every problem; :meth:`raise_if_any` raises one :class:`ConversionError`."""

    def __init__(self, who: str):
        self.who = who
        self.sections: dict[str, list[str]] = {}

    def add(self, section: str, item: str) -> None:
        self.sections.setdefault(section, []).append(item)

    def raise_if_any(self, fix: str = "") -> None:
        if not self.sections:
            return
        n = sum(len(v) for v in self.sections.values())
        lines = [f"{self.who}: {n} problem(s); nothing was converted:"]
        for section, items in self.sections.items():
            lines.append(f"  {section} ({len(items)}):")
            lines.extend(f"    {it}" for it in items)
        if fix:
            lines.append(fix)
        raise ConversionError("\n".join(lines))


# --------------------------------------------------------------------------- kinds from torch
# torchinit's own modules that are not subclasses of a torch.nn class listed above.
TORCHINIT_CLASS_KIND = {"BatchNorm": "batchnorm"}


def torch_kind(module) -> str | None:
    """The kind of a torch module by the torch.nn (or torchinit) classes in its MRO (duck-typed)."""
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn") and cls.__name__ in TORCH_CLASS_KIND:
            return TORCH_CLASS_KIND[cls.__name__]
        if cls.__module__.startswith("torchinit") and cls.__name__ in TORCHINIT_CLASS_KIND:
            return TORCHINIT_CLASS_KIND[cls.__name__]
    return None


_RNN_LEAF = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(_l(\d+)(_reverse)?)?$")


def _rnn_groups(prefix: str, kind: str, leaves: dict, opts: dict) -> list[Group]:
    by_suffix: dict[str, dict] = {}
    for leaf, full in leaves.items():
        m = _RNN_LEAF.match(leaf)
        if m is None:
            continue
        by_suffix.setdefault(m.group(2) or "", {})[m.group(1)] = full
    groups = []
    multi = len(by_suffix) > 1
    for suffix, keys in by_suffix.items():
        gid = prefix
        if multi:
            gid = _join(prefix, suffix[1:])  # "lstm.l1", "lstm.l0_reverse"
        groups.append(Group(gid, kind, keys, dict(opts)))
    return groups


def _join(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


def groups_from_module(module, state_keys, kinds: Mapping | None = None):
    """Groups from a torch module (``named_modules`` and types); returns (groups, container types)."""
    kinds = dict(kinds or {})
    keys = list(state_keys)
    groups: list[Group] = []
    containers: dict[str, str] = {}
    skip: list[str] = []
    for prefix, mod in module.named_modules():
        if any(s == "" or prefix == s or prefix.startswith(s + ".") for s in skip):
            continue
        kind, opts = _kind_spec(kinds.get(prefix)) if prefix in kinds else (torch_kind(mod), {})
        if kind is None:
            containers[prefix] = type(mod).__name__
            continue
        skip.append(prefix)
        own = {k[len(prefix) + 1:] if prefix else k: k for k in keys
               if (k.startswith(prefix + ".") if prefix else True)}
        if kind == "conv_transpose":
            opts.setdefault("groups", getattr(mod, "groups", 1))
        if kind == "mha":
            opts.setdefault("num_heads", getattr(mod, "num_heads", None))
        if kind in ("lstm", "gru"):
            if getattr(mod, "proj_size", 0):
                opts["error"] = "nn.LSTM with proj_size > 0 has no Flax counterpart (weight_hr)"
            groups.extend(_rnn_groups(prefix, kind, own, opts))
            continue
        groups.append(Group(prefix, kind, own, opts))
    return groups, containers


def _kind_spec(spec) -> tuple[str | None, dict]:
    if isinstance(spec, tuple):
        kind, opts = spec
        opts = dict(opts)
    else:
        kind, opts = spec, {}
    if kind is not None and kind not in KINDS:
        raise InitError(f"`kinds`: unknown layer kind {kind!r}; accepted: {', '.join(KINDS)} "
                        "(or (kind, options_dict)).")
    return kind, opts


def groups_from_torch_names(shapes: Mapping[str, tuple], kinds: Mapping | None = None) -> list[Group]:
    """Groups from state-dict key names and shapes alone (no module).

    Ambiguities resolved by default, overridable with ``kinds={prefix: kind}``: a
    >=3-D ``weight`` is a ``conv`` (a ConvTranspose needs the module or ``kinds``);
    a 2-D ``weight`` is ``dense`` (``embed`` when the Flax template has an
    ``embedding`` there); a 1-D ``weight`` without running stats is ``layernorm``.
    """
    kinds = dict(kinds or {})
    by_prefix: dict[str, dict] = {}
    for k in shapes:
        prefix, _, leaf = k.rpartition(".")
        by_prefix.setdefault(prefix, {})[leaf] = k
    # MultiheadAttention owns its out_proj.
    for prefix, leaves in list(by_prefix.items()):
        if "in_proj_weight" in leaves or "q_proj_weight" in leaves:
            sub = by_prefix.pop(_join(prefix, "out_proj"), {})
            leaves.update({f"out_proj.{leaf}": full for leaf, full in sub.items()})
    groups = []
    for prefix, leaves in by_prefix.items():
        if prefix in kinds:
            kind, opts = _kind_spec(kinds[prefix])
        else:
            kind, opts = _guess_torch_kind(leaves, shapes), {}
        if kind is None:
            groups.append(Group(prefix, "unknown", leaves, {}))
        elif kind in ("lstm", "gru"):
            groups.extend(_rnn_groups(prefix, kind, leaves, opts))
        else:
            groups.append(Group(prefix, kind, leaves, dict(opts, inferred=prefix not in kinds)))
    return groups


def _guess_torch_kind(leaves: dict, shapes) -> str | None:
    if "in_proj_weight" in leaves or "q_proj_weight" in leaves:
        return "mha"
    hh = [k for k in leaves if k.startswith("weight_hh")]
    if hh:
        h4, h = shapes[leaves[hh[0]]][:2]
        return {4: "lstm", 3: "gru"}.get(h4 // h if h else 0)
    if "running_mean" in leaves:
        return "batchnorm"
    if "weight" in leaves:
        nd = len(shapes[leaves["weight"]])
        return "layernorm" if nd == 1 else "dense" if nd == 2 else "conv"
    return None


# --------------------------------------------------------------------------- kinds from Flax names
_LSTM_GATES = {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}
_LSTM_GATES_NNX = {"ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"}
_GRU_GATES = {"ir", "iz", "in", "hr", "hz", "hn"}


def groups_from_flax_names(flat: Mapping[FlaxKey, Any], kinds: Mapping | None = None) -> list[Group]:
    """Groups of a Flax variables tree without a torch template; torch names are the
    Flax path joined with ``.`` (``Dense_0/kernel`` -> ``Dense_0.weight``). A >=3-D
    kernel is a ``conv`` unless ``kinds`` says ``conv_transpose``."""
    kinds = dict(kinds or {})
    children: dict[tuple, set] = {}
    leaves_of: dict[tuple, dict] = {}
    for coll, path in flat:
        leaves_of.setdefault(path[:-1], {})[path[-1]] = (coll, path)
        for i in range(len(path) - 1):
            children.setdefault(path[:i], set()).add(path[i])
    owned: set[tuple] = set()
    groups = []
    for mpath in sorted(set(children) | set(leaves_of), key=len):
        if any(mpath[:len(o)] == o for o in owned):
            continue
        gid = ".".join(mpath)
        kids = children.get(mpath, set())
        kind = None
        if gid in kinds:
            kind, opts = _kind_spec(kinds[gid])
        else:
            opts = {}
            if kids and (kids == _LSTM_GATES or kids == _LSTM_GATES_NNX):
                kind = "lstm"
            elif kids and kids == _GRU_GATES:
                kind = "gru"
            elif kids and kids == {"dense_i", "dense_h"}:
                kind = "gru"
            elif kids and kids >= {"query", "key", "value", "out"}:
                kind = "mha"
            elif mpath in leaves_of:
                names = set(leaves_of[mpath])
                if "embedding" in names:
                    kind = "embed"
                elif "kernel" in names:
                    kind = "dense" if np.ndim(flat[leaves_of[mpath]["kernel"]]) == 2 else "conv"
                elif "mean" in names or "var" in names:
                    kind = "batchnorm"
                elif names & {"scale", "bias"}:
                    kind = "layernorm"
        if kind is None:
            continue
        if kind in ("lstm", "gru", "mha"):
            owned.add(mpath)
        keys = {leaf: _join(gid, leaf) for leaf in _torch_leaf_names(kind)}
        groups.append(Group(gid, kind, keys, dict(opts, flax_path=mpath, from_flax=True)))
    return groups


def _torch_leaf_names(kind: str) -> tuple[str, ...]:
    return {
        "dense": ("weight", "bias"), "conv": ("weight", "bias"), "conv_transpose": ("weight", "bias"),
        "embed": ("weight",), "layernorm": ("weight", "bias"), "groupnorm": ("weight", "bias"),
        "batchnorm": ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"),
        "lstm": ("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
        "gru": ("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
        "mha": ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"),
    }[kind]


# --------------------------------------------------------------------------- naming rule
def flax_index(flat: Mapping[FlaxKey, Any] | None) -> set | None:
    """Every module path prefix present in a flat Flax tree (any collection)."""
    if flat is None:
        return None
    index = set()
    for _, path in flat:
        for i in range(len(path) + 1):
            index.add(path[:i])
    return index


def resolve_paths(groups: list[Group], index: set | None, mapping: Mapping | None,
                  containers: Mapping[str, str] | None = None) -> dict[str, tuple]:
    """Flax module path of every group (see the module docstring for the rule)."""
    mapping = dict(mapping or {})
    containers = dict(containers or {})
    # Sibling order and class of every torch child, for Linen auto names.
    siblings: dict[str, list[tuple[str, str | None]]] = {}
    for g in groups:
        segs = g.id.split(".") if g.id else []
        for i, seg in enumerate(segs):
            parent, child = ".".join(segs[:i]), ".".join(segs[:i + 1])
            cls = FLAX_CLASS.get(g.kind) if i == len(segs) - 1 else containers.get(child)
            lst = siblings.setdefault(parent, [])
            if all(s != seg for s, _ in lst):
                lst.append((seg, cls))
    out = {}
    for g in groups:
        if "flax_path" in g.opts:
            out[g.id] = tuple(g.opts["flax_path"])
            continue
        segs = g.id.split(".") if g.id else []
        base, start = (), 0
        for k in sorted(mapping, key=len, reverse=True):
            if g.id == k or g.id.startswith(k + ".") or k == "":
                base = tuple(p for p in str(mapping[k]).split("/") if p)
                start = len(k.split(".")) if k else 0
                break
        path = base
        for i in range(start, len(segs)):
            seg, parent = segs[i], ".".join(segs[:i])
            cands = [(seg,)]
            if seg.isdigit():
                cands += [(f"layers_{seg}",), ("layers", seg)]
            sib = siblings.get(parent, [])
            cls = next((c for s, c in sib if s == seg), None)
            if cls:
                k = [s for s, c in sib if c == cls].index(seg)
                cands.append((f"{cls}_{k}",))
            chosen = cands[0]
            if index is not None:
                chosen = next((c for c in cands if path + c in index), cands[0])
            path = path + chosen
        if g.kind in ("lstm", "gru") and index is not None and path + ("cell",) in index \
                and not any(path + (x,) in index for x in ("hi", "ir", "dense_i")):
            path = path + ("cell",)  # Linen nn.RNN(cell) / NNX nnx.RNN(cell)
        out[g.id] = path
    return out


def refine_kind(g: Group, path: tuple, index: set | None) -> Group:
    """Name-inferred kinds, corrected by what the Flax template holds at ``path``."""
    if not g.opts.get("inferred") or index is None:
        return g
    if g.kind == "dense" and path + ("embedding",) in index:
        return g._replace(kind="embed")
    return g


# --------------------------------------------------------------------------- dtype helpers
def _merge_bias(a, b, name_a: str, name_b: str, merge: bool, problems: Problems):
    """Flax keeps one bias where torch has two: exact when one is zero, else a sum (asked for)."""
    if a is None and b is None:
        return None
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


def _spatial(nd: int) -> tuple[int, ...]:
    return tuple(range(2, nd))


# --------------------------------------------------------------------------- torch -> Flax per kind
def group_to_flax(g: Group, t: dict, path_index_has, problems: Problems, *, batchnorm: str,
                  merge_rnn_biases: bool, transpose_kernel: bool) -> dict:
    """Convert one group's torch arrays ``t`` (canonical leaf name -> array) to
    ``{(collection, relpath): array}``. ``path_index_has(relpath)`` says whether the
    template has that relative path (None when there is no template)."""
    k, P = g.kind, "params"
    out: dict = {}
    name = lambda leaf: g.keys.get(leaf, _join(g.id, leaf))  # noqa: E731
    if "error" in g.opts:
        problems.add("unsupported layers", f"{g.id}: {g.opts['error']}")
        return out
    if k == "dense":
        out[(P, ("kernel",))] = t["weight"].T
        if "bias" in t:
            out[(P, ("bias",))] = t["bias"]
    elif k == "conv":
        w = t["weight"]
        out[(P, ("kernel",))] = w.transpose(*_spatial(w.ndim), 1, 0)
        if "bias" in t:
            out[(P, ("bias",))] = t["bias"]
    elif k == "conv_transpose":
        w = t["weight"]
        if g.opts.get("groups", 1) != 1:
            problems.add("unsupported layers", f"{g.id}: ConvTranspose with groups={g.opts['groups']}: "
                         "Flax's ConvTranspose has no feature groups (only groups=1 converts).")
            return out
        sp = _spatial(w.ndim)
        tk = g.opts.get("transpose_kernel", transpose_kernel)
        if tk:
            out[(P, ("kernel",))] = w.transpose(*sp, 1, 0)
        else:
            out[(P, ("kernel",))] = np.flip(w.transpose(*sp, 0, 1), axis=tuple(range(len(sp))))
        if "bias" in t:
            out[(P, ("bias",))] = t["bias"]
    elif k in ("layernorm", "groupnorm", "batchnorm"):
        if "weight" in t:
            out[(P, ("scale",))] = t["weight"]
        if "bias" in t:
            out[(P, ("bias",))] = t["bias"]
        if k == "batchnorm":
            if "running_mean" in t:
                out[("batch_stats", ("mean",))] = t["running_mean"]
            if "running_var" in t:
                out[("batch_stats", ("var",))] = t["running_var"]
            if "num_batches_tracked" in t and batchnorm == "torch":
                n = t["num_batches_tracked"]
                if np.any(np.abs(n.astype(np.int64)) > np.iinfo(np.int32).max):
                    problems.add("values Flax cannot hold exactly",
                                 f"{name('num_batches_tracked')} = {int(n)} does not fit int32")
                out[("batch_stats", ("num_batches_tracked",))] = n.astype(np.int32)
    elif k == "embed":
        out[(P, ("embedding",))] = t["weight"]
    elif k == "lstm":
        nnx = path_index_has is not None and path_index_has(("if_",))
        names_i = ("ii", "if_" if nnx else "if", "ig", "io")
        names_h = ("hi", "hf", "hg", "ho")
        wi, wh = np.split(t["weight_ih"], 4, 0), np.split(t["weight_hh"], 4, 0)
        bi = np.split(t["bias_ih"], 4) if "bias_ih" in t else [None] * 4
        bh = np.split(t["bias_hh"], 4) if "bias_hh" in t else [None] * 4
        for j in range(4):
            out[(P, (names_i[j], "kernel"))] = wi[j].T
            out[(P, (names_h[j], "kernel"))] = wh[j].T
            b = _merge_bias(bi[j], bh[j], name("bias_ih") + f"[gate {'ifgo'[j]}]",
                            name("bias_hh") + f"[gate {'ifgo'[j]}]", merge_rnn_biases, problems)
            out[(P, (names_h[j], "bias"))] = b if b is not None else np.zeros(wh[j].shape[0], wh[j].dtype)
    elif k == "gru":
        wi, wh = np.split(t["weight_ih"], 3, 0), np.split(t["weight_hh"], 3, 0)
        H = wh[0].shape[0]
        zero = np.zeros(H, t["weight_hh"].dtype)
        bi = np.split(t["bias_ih"], 3) if "bias_ih" in t else [zero] * 3
        bh = np.split(t["bias_hh"], 3) if "bias_hh" in t else [zero] * 3
        br = _merge_bias(bi[0], bh[0], name("bias_ih") + "[gate r]", name("bias_hh") + "[gate r]",
                         merge_rnn_biases, problems)
        bz = _merge_bias(bi[1], bh[1], name("bias_ih") + "[gate z]", name("bias_hh") + "[gate z]",
                         merge_rnn_biases, problems)
        nnx = path_index_has is not None and path_index_has(("dense_i",))
        if nnx:
            if np.any(bh[2]):
                problems.add("values Flax cannot hold exactly",
                             f"{name('bias_hh')}[gate n] (b_hn) is nonzero, but flax.nnx.GRUCell has no bias "
                             "inside r * (W_hn h): use flax.linen.GRUCell (it has hn/bias), or a torch GRU "
                             "whose b_hn is 0.")
            out[(P, ("dense_i", "kernel"))] = t["weight_ih"].T
            out[(P, ("dense_i", "bias"))] = np.concatenate([br, bz, bi[2]])
            out[(P, ("dense_h", "kernel"))] = t["weight_hh"].T
        else:
            for j, (gi, gh) in enumerate((("ir", "hr"), ("iz", "hz"), ("in", "hn"))):
                out[(P, (gi, "kernel"))] = wi[j].T
                out[(P, (gh, "kernel"))] = wh[j].T
            out[(P, ("ir", "bias"))], out[(P, ("iz", "bias"))] = br, bz
            out[(P, ("in", "bias"))], out[(P, ("hn", "bias"))] = bi[2], bh[2]
    elif k == "mha":
        for leaf in ("bias_k", "bias_v"):
            if leaf in t:
                problems.add("unsupported layers", f"{g.id}: MultiheadAttention(add_bias_kv=True) ({leaf}) "
                             "has no Flax counterpart.")
                return out
        wo = t["out_proj.weight"]
        E = wo.shape[0]
        heads = g.opts.get("num_heads")
        if heads is None and path_index_has is not None:
            heads = path_index_has(("query", "kernel"), shape_dim=1)
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


def consumed_torch_leaves(g: Group) -> set[str]:
    """The canonical leaves a kind reads (the rest of a group's keys are unexpected)."""
    base = set(_torch_leaf_names(g.kind)) if g.kind in FLAX_CLASS else set()
    if g.kind == "mha":
        base |= {"q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k", "bias_v"}
    return base


# --------------------------------------------------------------------------- Flax -> torch per kind
def group_to_torch(g: Group, f: dict, problems: Problems, *, batchnorm: str, transpose_kernel: bool,
                   torch_expects: set | None) -> dict:
    """Convert one group's Flax leaves ``f`` ({(collection, relpath): array}; consumed
    entries are popped) to {canonical torch leaf: array}."""
    k, P = g.kind, "params"
    out: dict = {}
    get = lambda *rel, coll=P: f.pop((coll, rel), None)  # noqa: E731
    want = (lambda leaf: True) if torch_expects is None else (lambda leaf: leaf in torch_expects)
    if k in ("dense", "conv", "conv_transpose"):
        w, b = get("kernel"), get("bias")
        if w is not None:
            sp = tuple(range(w.ndim - 2))
            if k == "dense":
                out["weight"] = w.T
            elif k == "conv":
                out["weight"] = w.transpose(w.ndim - 1, w.ndim - 2, *sp)
            elif g.opts.get("transpose_kernel", transpose_kernel):
                out["weight"] = w.transpose(w.ndim - 1, w.ndim - 2, *sp)
            else:
                out["weight"] = np.flip(w, axis=sp).transpose(w.ndim - 2, w.ndim - 1, *sp)
        if b is not None:
            out["bias"] = b
    elif k in ("layernorm", "groupnorm", "batchnorm"):
        s, b = get("scale"), get("bias")
        if s is not None:
            out["weight"] = s
        if b is not None:
            out["bias"] = b
        if k == "batchnorm":
            m, v = get("mean", coll="batch_stats"), get("var", coll="batch_stats")
            if m is not None:
                out["running_mean"] = m
            if v is not None:
                out["running_var"] = v
            n = get("num_batches_tracked", coll="batch_stats")
            if batchnorm == "torch":
                if n is not None:
                    out["num_batches_tracked"] = np.asarray(n).astype(np.int64)
            elif n is not None:
                problems.add("unexpected keys", f"batch_stats/{'/'.join(g.opts.get('_fpath', ()))}"
                             "/num_batches_tracked with batchnorm='flax' (that convention has none; use "
                             "batchnorm='torch' for jaxinit.BatchNorm variables)")
            else:
                out["num_batches_tracked"] = np.zeros((), np.int64)
    elif k == "embed":
        e = get("embedding")
        if e is not None:
            out["weight"] = e
    elif k == "lstm":
        fi = "if_" if ((P, ("if_", "kernel")) in f) else "if"
        names_i, names_h = ("ii", fi, "ig", "io"), ("hi", "hf", "hg", "ho")
        wi = [get(n, "kernel") for n in names_i]
        wh = [get(n, "kernel") for n in names_h]
        bh = [get(n, "bias") for n in names_h]
        if any(x is None for x in wi + wh):
            return out  # the missing leaves are reported by the caller
        out["weight_ih"] = np.concatenate([w.T for w in wi], 0)
        out["weight_hh"] = np.concatenate([w.T for w in wh], 0)
        if all(b is not None for b in bh):
            _rnn_bias_out(out, np.concatenate(bh), g, problems, want)
    elif k == "gru":
        if (P, ("dense_i", "kernel")) in f:
            wi, bi, wh = get("dense_i", "kernel"), get("dense_i", "bias"), get("dense_h", "kernel")
            if wi is None or wh is None:
                return out
            out["weight_ih"], out["weight_hh"] = wi.T, wh.T
            if bi is not None:
                _rnn_bias_out(out, bi, g, problems, want)
        else:
            wi = [get(n, "kernel") for n in ("ir", "iz", "in")]
            wh = [get(n, "kernel") for n in ("hr", "hz", "hn")]
            bi = [get(n, "bias") for n in ("ir", "iz", "in")]
            bhn = get("hn", "bias")
            if any(x is None for x in wi + wh + bi) or bhn is None:
                return out
            out["weight_ih"] = np.concatenate([w.T for w in wi], 0)
            out["weight_hh"] = np.concatenate([w.T for w in wh], 0)
            b_ih = np.concatenate(bi)
            b_hh = np.concatenate([np.zeros_like(bhn), np.zeros_like(bhn), bhn])
            if want("bias_ih") or np.any(b_ih) or np.any(b_hh):
                out["bias_ih"], out["bias_hh"] = b_ih, b_hh
    elif k == "mha":
        ws = [get(n, "kernel") for n in ("query", "key", "value")]
        bs = [get(n, "bias") for n in ("query", "key", "value")]
        wo, bo = get("out", "kernel"), get("out", "bias")
        if any(w is None for w in ws) or wo is None:
            return out
        mats = [w.reshape(w.shape[0], -1).T for w in ws]
        separate = (torch_expects is not None and "q_proj_weight" in torch_expects) or \
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


def _rnn_bias_out(out: dict, b: np.ndarray, g: Group, problems: Problems, want) -> None:
    """Flax's single gate bias -> torch's bias_ih (bias_hh zeros); a torch layer built with
    bias=False takes it only when it is zero."""
    if want("bias_ih"):
        out["bias_ih"], out["bias_hh"] = b, np.zeros_like(b)
    elif np.any(b):
        problems.add("values torch cannot hold exactly",
                     f"{g.id}: the Flax cell's gate biases are nonzero but the torch layer has bias=False")


# --------------------------------------------------------------------------- template checks
def check_against_template(produced: Mapping, template: Mapping, problems: Problems, name, *,
                           dtype_policy) -> dict:
    """Missing / unexpected / shape / dtype problems of ``produced`` vs ``template``
    ({key: array-like with shape and dtype}); returns the (possibly cast) arrays."""
    out = {}
    for key in template:
        if key not in produced:
            problems.add("missing keys (in the target, not produced from the source)", name(key))
    for key, arr in produced.items():
        if key not in template:
            problems.add("unexpected keys (produced from the source, absent from the target)", name(key))
            continue
        ref = template[key]
        rshape, rdtype = tuple(ref.shape), np.dtype(ref.dtype)
        if tuple(arr.shape) != rshape:
            problems.add("shape mismatches (source -> target)", f"{name(key)}: {tuple(arr.shape)} vs target {rshape}")
            continue
        out[key] = cast(arr, rdtype, key, name, problems, dtype_policy)
    return out


def cast(arr: np.ndarray, target: np.dtype | None, key, name, problems: Problems, dtype_policy) -> np.ndarray:
    """Apply the dtype policy: None keeps the dtype (a template dtype that differs is a
    problem); ``'template'`` casts to the template's; a dtype casts floating arrays."""
    if np.issubdtype(arr.dtype, np.integer) and target is not None and np.issubdtype(target, np.integer):
        return arr.astype(target)  # counters: int64 (torch) <-> int32 (jaxinit.BatchNorm)
    if dtype_policy is None:
        if target is not None and arr.dtype != target:
            problems.add("dtype mismatches (pass dtype='template' or a dtype to cast)",
                         f"{name(key)}: {arr.dtype} vs target {target}")
        return arr
    if isinstance(dtype_policy, str) and dtype_policy == "template":
        return arr.astype(target) if target is not None else arr
    if _is_float(arr.dtype):
        return arr.astype(dtype_policy)
    return arr


def _is_float(dt) -> bool:
    dt = np.dtype(dt)
    return np.issubdtype(dt, np.floating) or dt.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")


def check_options(who: str, batchnorm: str) -> None:
    if batchnorm not in ("torch", "flax"):
        raise InitError(
            f"{who}: `batchnorm` must be 'torch' (jaxinit.BatchNorm / torchinit.BatchNorm variables: "
            "batch_stats mean, var, num_batches_tracked) or 'flax' (flax.linen.BatchNorm / nnx.BatchNorm: "
            f"batch_stats mean, var only), got {batchnorm!r}.")


# --------------------------------------------------------------------------- the two directions
def torch_to_flax(arrays: Mapping[str, np.ndarray], groups: list[Group], *, template: Mapping | None,
                  mapping, containers=None, batchnorm="torch", merge_rnn_biases=False, transpose_kernel=False,
                  dtype=None, who="from_torch_state_dict") -> dict:
    """torch arrays (flat, torch names) -> {(collection, path): array}, strictly."""
    check_options(who, batchnorm)
    problems = Problems(who)
    index = flax_index(template)
    paths = resolve_paths(groups, index, mapping, containers)
    produced: dict = {}
    origin: dict = {}
    used: set[str] = set()
    for g in groups:
        fpath = paths[g.id]
        g = refine_kind(g, fpath, index)
        if g.kind == "unknown":
            continue
        accept = consumed_torch_leaves(g)
        t = {}
        for leaf, full in g.keys.items():
            if leaf in accept and full in arrays:
                t[leaf] = arrays[full]
                used.add(full)
        # (batchnorm='flax': num_batches_tracked is read and not converted, on request)
        has = None if index is None else _template_probe(template, index, fpath)
        try:
            conv = group_to_flax(g, t, has, problems, batchnorm=batchnorm, merge_rnn_biases=merge_rnn_biases,
                                 transpose_kernel=transpose_kernel)
        except KeyError as err:
            problems.add("missing keys (in the source)", f"{g.keys.get(err.args[0], _join(g.id, str(err.args[0])))}"
                         f" (a {g.kind} layer needs it)")
            continue
        except (ValueError, IndexError) as err:
            problems.add("shape mismatches (source -> target)", f"{g.id}: {err}")
            continue
        for (coll, rel), arr in conv.items():
            key = (coll, fpath + rel)
            if key in produced:
                problems.add("name collisions", f"{_fname(key)} from both {origin[key]} and {g.id}")
            produced[key] = arr
            origin[key] = g.id
    for full in arrays:
        if full not in used:
            problems.add("unexpected keys (in the source, no converter)",
                         f"{full}: not part of a recognised layer; pass kinds={{prefix: kind}} "
                         f"(kinds: {', '.join(KINDS)}) or drop it from the source explicitly")
    if template is not None:
        produced = check_against_template(produced, template, problems, _fname, dtype_policy=dtype)
    else:
        produced = {k: cast(v, None, k, _fname, problems, dtype) for k, v in produced.items()}
    problems.raise_if_any(_FIX_TO_FLAX)
    return produced


def _template_probe(template: Mapping, index: set, fpath: tuple):
    """``has(rel)``: does the template hold ``fpath + rel``; ``has(rel, shape_dim=i)``: that
    entry's size along axis i (None if absent)."""

    def has(rel, shape_dim=None):
        if shape_dim is None:
            return fpath + rel in index
        for (_, p), v in template.items():
            if p == fpath + rel:
                return int(v.shape[shape_dim])
        return None

    return has


def flax_to_torch(flat: Mapping[FlaxKey, np.ndarray], groups: list[Group], *, template: Mapping | None,
                  mapping, containers=None, batchnorm="torch", transpose_kernel=False, dtype=None,
                  who="to_torch_state_dict") -> dict:
    """{(collection, path): array} -> torch arrays (flat, torch names), strictly."""
    check_options(who, batchnorm)
    problems = Problems(who)
    index = flax_index(flat)
    paths = resolve_paths(groups, index, mapping, containers)
    remaining = dict(flat)
    produced: dict = {}
    for g in groups:
        if g.kind == "unknown":
            continue
        fpath = paths[g.id]
        g = refine_kind(g, fpath, index)
        n = len(fpath)
        f = {(c, p[n:]): remaining[(c, p)] for (c, p) in list(remaining) if p[:n] == fpath and len(p) > n}
        mine = dict(f)
        expects = set(g.keys) if template is not None else None
        g.opts["_fpath"] = fpath
        try:
            conv = group_to_torch(g, f, problems, batchnorm=batchnorm, transpose_kernel=transpose_kernel,
                                  torch_expects=expects)
        except (ValueError, IndexError) as err:
            problems.add("shape mismatches (source -> target)", f"{g.id}: {err}")
            conv = {}
        for key in mine:
            if key not in f:  # consumed
                remaining.pop((key[0], fpath + key[1]))
        for leaf, arr in conv.items():
            produced[g.keys.get(leaf, _join(g.id, leaf))] = arr
    for key in remaining:
        problems.add("unexpected keys (in the source, no converter)",
                     f"{_fname(key)}: not part of a recognised layer (or not read by its layer kind); "
                     "pass mapping= / kinds=")
    if template is not None:
        produced = check_against_template(produced, template, problems, str, dtype_policy=dtype)
    else:
        produced = {k: cast(v, None, k, str, problems, dtype) for k, v in produced.items()}
    problems.raise_if_any(_FIX_TO_TORCH)
    return produced


def _fname(key) -> str:
    coll, path = key
    return "/".join((coll,) + tuple(str(p) for p in path))


_FIX_TO_FLAX = ("Fix: name layers with mapping={'torch.prefix': 'flax/path'}, set ambiguous layer kinds with "
                "kinds={'torch.prefix': kind}, or pass the torch module (its types decide the kinds).")
_FIX_TO_TORCH = ("Fix: name layers with mapping={'torch.prefix': 'flax/path'}, set layer kinds with "
                 "kinds={'torch.prefix': kind}, or pass the torch module as `target`.")


# --------------------------------------------------------------------------- arrays
class Spec(NamedTuple):
    """Shape and dtype of a template entry (no data)."""

    shape: tuple
    dtype: Any


def bfloat16():
    try:
        import ml_dtypes
    except ImportError as err:  # pragma: no cover - jax depends on ml_dtypes
        raise InitError("bfloat16 arrays need numpy's bfloat16 from ml_dtypes: pip install ml_dtypes") from err
    return np.dtype(ml_dtypes.bfloat16)


def is_torch_tensor(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "numpy")


def torch_dtype_name(t) -> str:
    return str(t.dtype).replace("torch.", "")


def tensor_to_numpy(t) -> np.ndarray:
    """A torch tensor as numpy (a CPU view where possible); bfloat16 through ml_dtypes.
    Duck-typed: the torch module is the one the tensor comes from."""
    import sys

    t = t.detach().cpu()
    if torch_dtype_name(t) == "bfloat16":
        torch = sys.modules["torch"]
        return t.contiguous().view(torch.int16).numpy().view(bfloat16())
    return t.numpy()


def tensor_spec(t) -> Spec:
    if torch_dtype_name(t) == "bfloat16":
        return Spec(tuple(t.shape), bfloat16())
    return Spec(tuple(t.shape), np.dtype(torch_dtype_name(t)))


def numpy_to_tensor(a: np.ndarray, torch, device=None):
    """A numpy array (ml_dtypes bfloat16 included) as a new torch tensor (a copy)."""
    a = np.array(a, order="C", copy=True)  # one copy: the tensor never aliases the caller's array
    t = torch.from_numpy(a.view(np.int16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a)
    return t if device is None else t.to(device)


def to_numpy(x) -> np.ndarray:
    """numpy view of a torch tensor, jax array or array-like."""
    if is_torch_tensor(x):
        return tensor_to_numpy(x)
    return np.asarray(x)


def torch_target(template, flat: Mapping, kinds: Mapping, who: str):
    """What ``to_torch_state_dict`` converts into, read from ``template`` (duck-typed).

    ``template`` is None (torch names from the Flax paths), a torch module (names,
    shapes, dtypes, devices and layer kinds from its modules) or a state dict (kinds
    guessed from names and shapes). Returns ``(tspec, groups, containers, devices,
    torch)``; ``torch`` is the torch module when the template holds torch tensors
    (the result should then be tensors), else None.
    """
    import sys

    if template is None:
        return None, groups_from_flax_names(flat, kinds), {}, {}, None
    if hasattr(template, "state_dict") and hasattr(template, "named_modules"):
        sd = template.state_dict()
        tspec = {k: tensor_spec(v) for k, v in sd.items()}
        devices = {k: v.device for k, v in sd.items()}
        groups, containers = groups_from_module(template, sd.keys(), kinds)
        return tspec, groups, containers, devices, sys.modules["torch"]
    if isinstance(template, Mapping):
        tspec, devices, torch = {}, {}, None
        for k, v in template.items():
            if is_torch_tensor(v):
                torch = sys.modules["torch"]
                tspec[k], devices[k] = tensor_spec(v), v.device
            else:
                tspec[k] = Spec(tuple(np.shape(v)), np.asarray(v).dtype)
        groups = groups_from_torch_names({k: s.shape for k, s in tspec.items()}, kinds)
        return tspec, groups, {}, devices, torch
    raise InitError(f"{who}: `template` must be a torch nn.Module, a state dict, or None; "
                    f"got {type(template).__name__}.")


# --------------------------------------------------------------------------- nested dicts
def flatten_flax(tree: Mapping, who: str) -> dict:
    """``{'params': {...}, 'batch_stats': {...}}`` -> ``{(collection, path): leaf}``."""
    if not isinstance(tree, Mapping):
        raise InitError(f"{who}: Flax variables must be a dict like {{'params': {{...}}, 'batch_stats': "
                        f"{{...}}}}, got {type(tree).__name__}.")
    flat = {}

    def walk(node, coll, path):
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, coll, path + (str(k),))
        else:
            flat[(coll, path)] = node

    for coll, sub in tree.items():
        if not isinstance(sub, Mapping):
            raise InitError(f"{who}: Flax variables must map collection names ('params', 'batch_stats') to "
                            f"nested dicts; {coll!r} holds a {type(sub).__name__}. If you passed "
                            "variables['params'], pass the whole variables dict or {'params': params}.")
        walk(sub, str(coll), ())
    return flat


def unflatten_flax(flat: Mapping) -> dict:
    tree: dict = {}
    for (coll, path), v in flat.items():
        node = tree.setdefault(coll, {})
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = v
    return tree
