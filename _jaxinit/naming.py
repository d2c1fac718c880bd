"""Layer discovery and the naming rule of the weight converters.

- *Groups*: which torch keys form one layer and of which kind, found from a torch
  module's types (duck-typed: no torch import), from state-dict key names and shapes,
  or from Flax names. Every kind-specific fact comes from the registry in
  :mod:`_jaxinit.layer_kinds`.
- The naming rule: torch ``a.b.0`` <-> Flax ``a/b/<x>`` where, when a template is
  given, ``<x>`` is the first of ``0``, ``layers_0`` (Linen ``Sequential``),
  ``layers/0`` (NNX ``Sequential``), ``<parent>_0`` (a list named after its parent, as
  Hugging Face's Flax ResNet's ``layer/layer_0``), ``<FlaxClass>_<k>`` (Linen auto names:
  the k-th sibling of that class) present in the template; ``mapping`` overrides any prefix.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple, overload

import numpy as np

from _jaxinit import arrays as _arr
from _jaxinit.errors import InitError
from _jaxinit.layer_kinds import KINDS, REGISTRY

# torch class name -> kind, from the registry (torch.nn classes, and torchinit's own BatchNorm).
_TORCH_CLASS_KIND = {cls: kind.name for kind in REGISTRY.values() for cls in kind.torch_classes}


class Group(NamedTuple):
    """One torch layer: ``id`` names it for the naming rule and ``mapping`` (``"lstm.l1"``
    for layer 1 of a multi-layer ``nn.LSTM``, else the module prefix); ``keys`` maps each
    canonical leaf name (``weight``, ``weight_ih``, ``out_proj.weight``) to the full key."""

    id: str
    kind: str
    keys: dict
    opts: dict


def join(prefix: str, leaf: str) -> str:
    return f"{prefix}.{leaf}" if prefix else leaf


# --------------------------------------------------------------------------- kinds from torch
def torch_kind(module) -> str | None:
    """The kind of a torch module: by the torch.nn (or torchinit) classes in its MRO, by a
    registered qualified class name (``transformers.pytorch_utils.Conv1D``), else by each
    kind's ``module_match`` (hand-written layers such as Hugging Face's ``LlamaRMSNorm``).
    Duck-typed: torch is not imported."""
    for cls in type(module).__mro__:
        qual = f"{cls.__module__}.{cls.__name__}"
        if qual in _TORCH_CLASS_KIND:
            return _TORCH_CLASS_KIND[qual]
        if cls.__module__.startswith(("torch.nn", "torchinit")) and cls.__name__ in _TORCH_CLASS_KIND:
            return _TORCH_CLASS_KIND[cls.__name__]
    return next((k.name for k in REGISTRY.values() if k.module_match(module)), None)


_RNN_LEAF = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(_l(\d+)(_reverse)?)?$")


def _rnn_groups(prefix: str, kind: str, leaves: dict, opts: dict) -> list[Group]:
    by_suffix: dict[str, dict] = {}
    for leaf, full in leaves.items():
        m = _RNN_LEAF.match(leaf)
        if m is None:
            continue
        by_suffix.setdefault(m.group(2) or "", {})[m.group(1)] = full
    multi = len(by_suffix) > 1
    # "lstm.l1", "lstm.l0_reverse" for multi-layer modules
    return [Group(join(prefix, suffix[1:]) if multi else prefix, kind, keys, dict(opts))
            for suffix, keys in by_suffix.items()]


def kind_spec(spec) -> tuple[str | None, dict]:
    """``kinds=`` entry -> (kind, options)."""
    if isinstance(spec, tuple):
        kind, opts = spec
        opts = dict(opts)
    else:
        kind, opts = spec, {}
    if kind is not None and kind not in REGISTRY:
        raise InitError(f"`kinds`: unknown layer kind {kind!r}; accepted: {', '.join(KINDS)} "
                        "(or (kind, options_dict)).")
    return kind, opts


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
        kind, opts = kind_spec(kinds.get(prefix)) if prefix in kinds else (torch_kind(mod), {})
        if kind is None:
            containers[prefix] = type(mod).__name__
            continue
        skip.append(prefix)
        own = {k[len(prefix) + 1:] if prefix else k: k for k in keys
               if (k.startswith(prefix + ".") if prefix else True)}
        spec = REGISTRY[kind]
        for name, value in spec.module_options(mod).items():
            opts.setdefault(name, value)
        error = spec.module_error(mod)
        if error:
            opts["error"] = error
        if spec.rnn:
            groups.extend(_rnn_groups(prefix, kind, own, opts))
        else:
            groups.append(Group(prefix, kind, own, opts))
    return groups, containers


def groups_from_torch_names(shapes: Mapping[str, tuple], kinds: Mapping | None = None) -> list[Group]:
    """Groups from state-dict key names and shapes alone (no module).

    Ambiguities resolved by default (each kind's ``torch_guess``), overridable with
    ``kinds={prefix: kind}``: a >=3-D ``weight`` is a ``conv`` (a ConvTranspose needs
    the module or ``kinds``); a 2-D ``weight`` is ``dense`` (``embed`` when the Flax
    template has an ``embedding`` there); a 1-D ``weight`` without running stats is
    ``layernorm``.
    """
    kinds = dict(kinds or {})
    by_prefix: dict[str, dict] = {}
    for k in shapes:
        prefix, _, leaf = k.rpartition(".")
        by_prefix.setdefault(prefix, {})[leaf] = k
    # MultiheadAttention owns its out_proj.
    for prefix, leaves in list(by_prefix.items()):
        if "in_proj_weight" in leaves or "q_proj_weight" in leaves:
            sub = by_prefix.pop(join(prefix, "out_proj"), {})
            leaves.update({f"out_proj.{leaf}": full for leaf, full in sub.items()})
    groups = []
    for prefix, leaves in by_prefix.items():
        if prefix in kinds:
            kind, opts = kind_spec(kinds[prefix])
        else:
            kind = next((k.name for k in REGISTRY.values() if k.torch_guess(leaves, shapes)), None)
            opts = {}
        if kind is None:
            groups.append(Group(prefix, "unknown", leaves, {}))
        elif REGISTRY[kind].rnn:
            groups.extend(_rnn_groups(prefix, kind, leaves, opts))
        else:
            groups.append(Group(prefix, kind, leaves, dict(opts, inferred=prefix not in kinds)))
    return groups


# --------------------------------------------------------------------------- kinds from Flax names
def _flax_kind(kids: set, leaves: dict) -> str | None:
    """Sub-module kinds (cells, attention) first: they own their children."""
    ordered = sorted(REGISTRY.values(), key=lambda k: not k.owns_children)
    return next((k.name for k in ordered if k.flax_match(kids, leaves)), None)


def _ndim(v) -> int:
    return len(v.shape) if hasattr(v, "shape") else np.ndim(v)


def groups_from_flax_names(flat: Mapping, kinds: Mapping | None = None) -> list[Group]:
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
    first_seen: dict[tuple, int] = {}  # the tree's own order (Linen's init: creation order)
    for i, (_, path) in enumerate(flat):
        for j in range(len(path)):
            first_seen.setdefault(path[:j], i)
    for mpath in sorted(first_seen, key=len):
        if any(mpath[:len(o)] == o for o in owned):
            continue
        gid = ".".join(mpath)
        if gid in kinds:
            kind, opts = kind_spec(kinds[gid])
        else:
            ndims = {leaf: _ndim(flat[key]) for leaf, key in leaves_of.get(mpath, {}).items()}
            kind, opts = _flax_kind(children.get(mpath, set()), ndims), {}
        if kind is None:
            continue
        if REGISTRY[kind].owns_children:
            owned.add(mpath)
        keys = {leaf: join(gid, leaf) for leaf in REGISTRY[kind].torch_leaves}
        groups.append(Group(gid, kind, keys, dict(opts, flax_path=mpath, from_flax=True)))
    return sorted(groups, key=lambda g: first_seen[g.opts["flax_path"]])


# --------------------------------------------------------------------------- naming rule
@overload
def flax_index(flat: Mapping) -> set: ...
@overload
def flax_index(flat: None) -> None: ...
def flax_index(flat: Mapping | None) -> set | None:
    """Every module path prefix present in a flat Flax tree (any collection)."""
    if flat is None:
        return None
    index = set()
    for _, path in flat:
        for i in range(len(path) + 1):
            index.add(path[:i])
    return index


def resolve_prefixes(groups: list[Group], index: set | None, mapping: Mapping | None,
                     containers: Mapping[str, str] | None = None, extra: tuple = ()) -> dict[str, tuple]:
    """Flax path of every group id AND of every torch prefix on the way (``layer1``,
    ``layer1.0``), by the rule of the module docstring; ``extra`` adds further torch
    module paths (parameterless modules) to resolve."""
    mapping = dict(mapping or {})
    containers = dict(containers or {})
    # Sibling order and class of every torch child, for Linen auto names.
    siblings: dict[str, list[tuple[str, str | None]]] = {}
    ids = [(g.id, g.kind) for g in groups] + [(e, None) for e in extra]
    for gid, kind in ids:
        segs = gid.split(".") if gid else []
        for i, seg in enumerate(segs):
            parent, child = ".".join(segs[:i]), ".".join(segs[:i + 1])
            cls = REGISTRY[kind].flax_class if (i == len(segs) - 1 and kind in REGISTRY) else containers.get(child)
            lst = siblings.setdefault(parent, [])
            if all(s != seg for s, _ in lst):
                lst.append((seg, cls))
    out: dict[str, tuple] = {}
    for g, (gid, kind) in zip(list(groups) + [None] * len(extra), ids):
        if g is not None and "flax_path" in g.opts:
            out[gid] = tuple(g.opts["flax_path"])
            continue
        segs = gid.split(".") if gid else []
        base: tuple[str, ...] = ()
        start = 0
        for k in sorted(mapping, key=len, reverse=True):
            if gid == k or gid.startswith(k + ".") or k == "":
                base = tuple(p for p in str(mapping[k]).split("/") if p)
                start = len(k.split(".")) if k else 0
                break
        path = base
        if start:
            out.setdefault(".".join(segs[:start]), path)
        for i in range(start, len(segs)):
            seg, parent = segs[i], ".".join(segs[:i])
            cands: list[tuple[str, ...]] = [(seg,)]
            if seg.isdigit():
                cands += [(f"layers_{seg}",), ("layers", seg)]
                if i:  # a list attribute named after its parent (Hugging Face's Flax ResNet: layer/layer_0)
                    cands.append((f"{segs[i - 1]}_{seg}",))
            sib = siblings.get(parent, [])
            cls = next((c for s, c in sib if s == seg), None)
            if cls:
                k = [s for s, c in sib if c == cls].index(seg)
                cands.append((f"{cls}_{k}",))
            chosen = cands[0]
            if index is not None:
                chosen = next((c for c in cands if path + c in index), cands[0])
            path = path + chosen
            if i < len(segs) - 1:
                out.setdefault(".".join(segs[:i + 1]), path)
        if kind in REGISTRY and REGISTRY[kind].rnn and index is not None and path + ("cell",) in index \
                and not any(path + (x,) in index for x in ("hi", "ir", "dense_i")):
            path = path + ("cell",)  # Linen nn.RNN(cell) / NNX nnx.RNN(cell)
        out[gid] = path
    return out


def resolve_paths(groups: list[Group], index: set | None, mapping: Mapping | None,
                  containers: Mapping[str, str] | None = None) -> dict[str, tuple]:
    """Flax module path of every group (see the module docstring for the rule)."""
    every = resolve_prefixes(groups, index, mapping, containers)
    return {g.id: every[g.id] for g in groups}


def refine_kind(g: Group, path: tuple, index: set | None) -> Group:
    """Name-inferred kinds, corrected by what the Flax template holds at ``path``."""
    if not g.opts.get("inferred") or index is None:
        return g
    if g.kind == "dense" and path + ("embedding",) in index:
        return g._replace(kind="embed")
    return g


# --------------------------------------------------------------------------- torch targets
class TorchSpec(dict):
    """``{torch key: ShapeDtype}`` of a torch template, with ``tied``: ``{key: key whose tensor it shares}``."""

    tied: dict = {}


def _tensor_ties(sd: Mapping) -> dict:
    """Tied entries of a state dict (torch tensors sharing memory, shape, strides and dtype)."""
    first: dict = {}
    out = {}
    for k, v in sd.items():
        if not _arr.is_torch_tensor(v) or not v.numel():
            continue
        ident = (v.data_ptr(), tuple(v.shape), tuple(v.stride()), str(v.dtype))
        if ident in first:
            out[k] = first[ident]
        else:
            first[ident] = k
    return out


def torch_target(template, flat: Mapping, kinds: Mapping, who: str):
    """What ``to_torch_state_dict`` converts into, read from ``template`` (duck-typed).

    ``template`` is None (torch names from the Flax paths), a torch module (names,
    shapes, dtypes, devices and layer kinds from its modules) or a state dict (kinds
    guessed from names and shapes). Returns ``(tspec, groups, containers, devices,
    torch)``; ``torch`` is the torch module when the template holds torch tensors
    (the result should then be tensors), else None.
    """
    if template is None:
        return None, groups_from_flax_names(flat, kinds), {}, {}, None
    if hasattr(template, "state_dict") and hasattr(template, "named_modules"):
        sd = template.state_dict()
        spec = TorchSpec({k: _arr.tensor_spec(v) for k, v in sd.items()})
        spec.tied = _tensor_ties(sd)
        tspec: dict[str, Any] = spec
        devices = {k: v.device for k, v in sd.items()}
        groups, containers = groups_from_module(template, sd.keys(), kinds)
        return tspec, groups, containers, devices, sys.modules["torch"]
    if isinstance(template, Mapping):
        tspec = {}
        devices, torch = {}, None
        for k, v in template.items():
            if _arr.is_torch_tensor(v):
                torch = sys.modules["torch"]
                tspec[k], devices[k] = _arr.tensor_spec(v), v.device
            else:
                tspec[k] = _arr.shape_dtype(v)
        groups = groups_from_torch_names({k: s.shape for k, s in tspec.items()}, kinds)
        return tspec, groups, {}, devices, torch
    raise InitError(f"{who}: `template` must be a torch nn.Module, a state dict, or None; "
                    f"got {type(template).__name__}.")
