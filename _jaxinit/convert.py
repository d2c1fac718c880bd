"""Weight conversion between a PyTorch ``state_dict`` and Flax variables: the shared core.

Framework-free (numpy only; ``ml_dtypes`` arrays for bfloat16). It holds, once, what
``jaxinit`` and ``torchinit`` must agree on, in three parts:

- :mod:`_jaxinit.naming`: the *groups* (which torch keys form one layer and of which
  kind) and the naming rule torch ``a.b.0`` <-> Flax ``a/b/<x>`` (``mapping``
  overrides any prefix);
- :mod:`_jaxinit.layer_kinds`: one converter per layer kind in a registry, with the
  layout transposes (:data:`LAYOUTS` documents them);
- :mod:`_jaxinit.arrays`: numpy <-> torch tensors and nested Flax variables;

and here, the two directions and their strictness: every problem (missing /
unexpected keys, shape and dtype mismatches, values that cannot be represented) is
collected and raised as ONE :class:`ConversionError`. Conversion checks names and
shapes, not meaning: two same-shape layers swapped by ``mapping=`` convert silently
(``audit`` and ``compare_layers`` catch it).
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np

from _jaxinit import suggest as _suggest
from _jaxinit.arrays import (FlaxKey, ShapeDtype, bfloat16, flatten_flax, is_float, is_torch_tensor,  # noqa: F401
                              fname, numpy_to_tensor, shape_dtypes, tensor_spec, tensor_to_numpy, to_numpy, torch_dtype_name,
                              unflatten_flax)
from _jaxinit.errors import InitError
from _jaxinit.layer_kinds import KINDS, LAYOUTS, REGISTRY, Options  # noqa: F401
from _jaxinit.naming import (Group, flax_index, groups_from_flax_names, groups_from_module,  # noqa: F401
                              groups_from_torch_names, refine_kind, resolve_paths, resolve_prefixes, torch_target)
from _jaxinit.naming import join as _join


class ConversionError(InitError):
    """Every problem of one conversion, listed together (a ``ValueError`` subclass)."""


# --------------------------------------------------------------------------- errors
_NAMING_SECTIONS = ("missing keys", "unexpected keys", "name collisions")


class Problems:
    """Collects every problem; :meth:`raise_if_any` raises one :class:`ConversionError`."""

    def __init__(self, who: str):
        self.who = who
        self.sections: dict[str, list[str]] = {}
        self.notes: list[str] = []

    def add(self, section: str, item: str) -> None:
        self.sections.setdefault(section, []).append(item)

    def naming_problems(self) -> bool:
        return any(s.startswith(_NAMING_SECTIONS) for s in self.sections)

    def raise_if_any(self, fix: str = "") -> None:
        """Raise; the naming ``fix`` line is added only when a naming problem is listed."""
        if not self.sections:
            return
        n = sum(len(v) for v in self.sections.values())
        lines = [f"{self.who}: {n} problem(s); nothing was converted:"]
        for section, items in self.sections.items():
            lines.append(f"  {section} ({len(items)}):")
            lines.extend(f"    {it}" for it in items)
        lines.extend(self.notes)
        if fix and self.naming_problems():
            lines.append(fix)
        raise ConversionError("\n".join(lines))


_KNOWN_LEAVES = sorted({leaf for k in REGISTRY.values() for leaf in k.consumed()} | {"running_mean", "running_var"})


def _misspelt(full: str) -> str | None:
    leaf = full.rpartition(".")[2]
    close = difflib.get_close_matches(leaf, _KNOWN_LEAVES, n=1, cutoff=0.75)
    return _join(full.rpartition(".")[0], close[0]) if close and close[0] != leaf else None


def _unread_key_message(full: str, group: Group | None) -> str:
    """Why a source key is not converted, and the fix that applies to it."""
    guess = _misspelt(full)
    if guess:
        return f"{full}: no layer kind reads this name; did you mean {guess!r}? (fix the key in the source)"
    if group is not None and group.kind == "unknown":
        bad = [k for k in group.keys.values() if _misspelt(k)]
        if bad:
            return (f"{full}: its layer {group.id!r} is not recognised because of the misspelt key {bad[0]!r} "
                    "(fix that key)")
    return (f"{full}: not part of a recognised layer; pass kinds={{prefix: kind}} "
            f"(kinds: {', '.join(KINDS)}) or drop it from the source explicitly")


# --------------------------------------------------------------------------- template checks
def check_against_template(produced: Mapping, template: Mapping, problems: Problems, name, *,
                           dtype_policy, x64_stats: frozenset = frozenset()) -> dict:
    """Missing / unexpected / shape / dtype problems of ``produced`` vs ``template``
    ({key: array-like with shape and dtype}); returns the (possibly cast) arrays.
    ``x64_stats``: BatchNorm running statistics where the float32 / float64 mix is
    Flax's own (:func:`flax_x64_stats`): without a dtype policy they are kept in
    (torch -> Flax) or widened to (Flax -> torch) float64, never a mismatch."""
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
        if dtype_policy is None and key in x64_stats:
            out[key] = arr.astype(np.float64)  # lossless: float64 kept, or float32 widened
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
    if is_float(arr.dtype):
        return arr.astype(dtype_policy)
    return arr


def flax_x64_stats(stats: Mapping, params: Mapping) -> frozenset:
    """The BatchNorm running statistics whose float32 / float64 mix is Flax's own.

    ``flax.linen.BatchNorm`` creates ``batch_stats`` mean / var in float32 whatever
    ``param_dtype`` (flax/linen/normalization.py, ``BatchNorm.__call__``: ``ra_mean =
    self.variable('batch_stats', 'mean', ..., jnp.float32 if self.force_float32_reductions
    else self.param_dtype)``, ``force_float32_reductions=True`` by default), and under x64
    they become float64 at the first update with float64 inputs (``momentum *
    ra_mean.value + (1 - momentum) * mean`` promotes). A float64 model's Flax side thus
    holds float32 statistics until its first step and float64 ones after it: both are
    Flax's. ``stats``: {key: (Flax layer path, Flax dtype, torch dtype)}; ``params``:
    {Flax layer path: [that layer's Flax parameters]}. A statistic qualifies when its Flax
    dtype is float32, its torch dtype float64 and the layer's parameters float64 (or it
    has none); converting it then gives float64, which is lossless and what Flax holds
    after one step (rounding a float64 torch model's statistics to float32 would move
    eval outputs by ~1e-7 relative, far over a float64 twin's budget)."""
    return frozenset(
        key for key, (layer, fdt, tdt) in stats.items()
        if np.dtype(fdt) == np.float32 and np.dtype(tdt) == np.float64
        and all(np.dtype(p.dtype) == np.float64 for p in params.get(layer, ())))


def check_options(who: str, batchnorm: str) -> None:
    if batchnorm not in ("torch", "flax"):
        raise InitError(
            f"{who}: `batchnorm` must be 'torch' (jaxinit.BatchNorm / torchinit.BatchNorm variables: "
            "batch_stats mean, var, num_batches_tracked) or 'flax' (flax.linen.BatchNorm / nnx.BatchNorm: "
            f"batch_stats mean, var only), got {batchnorm!r}.")


def _add_suggestion(problems: Problems, groups, containers, flax_spec, mapping, shapes) -> None:
    """A ``mapping=`` suggestion for naming problems, when one pairs the unmatched layers."""
    if flax_spec is None or not problems.naming_problems():
        return
    sug = _suggest.suggest(groups, containers, flax_spec, mapping, shapes)
    if sug:
        items = [f"    {k!r}: {v!r}," for k, v in sug.items()]
        shown = items[:12] + ([f"    # ... {len(items) - 12} more"] if len(items) > 12 else [])
        problems.notes.append("Suggested mapping (suggest_mapping(torch_model, flax_template) returns it; "
                              "check it, then pass mapping=...):\n  {\n" + "\n".join(shown) + "\n  }")
    if sug.ambiguous:
        problems.notes.append("Ambiguous pairs not suggested (same shapes in a different order): "
                              + "; ".join(sug.ambiguous))


# --------------------------------------------------------------------------- the two directions
def torch_to_flax(arrays: Mapping[str, np.ndarray], groups: list[Group], *, template: Mapping | None,
                  mapping, containers=None, batchnorm="torch", merge_rnn_biases=False, transpose_kernel=False,
                  dtype=None, who="from_torch_state_dict", gradients=False, tied=None) -> dict:
    """torch arrays (flat, torch names) -> {(collection, path): array}, strictly.

    ``gradients``: the arrays are torch's parameter gradients (see ``Options.gradients``).
    ``tied``: ``{torch key: torch key whose tensor it shares}`` (tied weights), added to the
    ties found from the arrays' memory (:func:`tied_keys`). A layer made only of tied keys
    whose Flax leaves the template does not hold is not converted: its tensor is its
    partner's, which is (one Flax leaf, several torch keys)."""
    check_options(who, batchnorm)
    problems = Problems(who)
    ties = {**tied_keys(arrays), **dict(tied or {})}
    index = flax_index(template)
    paths = resolve_paths(groups, index, mapping, containers)
    produced: dict = {}
    origin: dict = {}
    bn_stats: dict = {}  # Flax key of a BatchNorm running statistic -> its Flax layer path
    used: set[str] = set()
    group_of = {full: g for g in groups for full in g.keys.values()}
    shared = _settle_shared(groups, paths, arrays, template, index)
    for g in groups:
        fpath = paths[g.id]
        g = refine_kind(g, fpath, index)
        if g.kind == "unknown":
            continue
        own = [full for full in g.keys.values() if full in arrays]
        if own and ties and all(full in ties for full in own) and index is not None and fpath not in index:
            used.update(own)  # tied to a converted layer: the Flax model holds that one leaf
            continue
        spec = REGISTRY[g.kind]
        accept = spec.consumed()
        t = {}
        for leaf, full in g.keys.items():
            if leaf in accept and full in arrays:
                t[leaf] = arrays[full]
                used.add(full)
        if "error" in g.opts:
            problems.add("unsupported layers", f"{g.id}: {g.opts['error']}")
            continue
        missing = spec.missing(t)
        if missing:
            for leaf in missing:
                problems.add("missing keys (in the source)", f"{g.keys.get(leaf, _join(g.id, leaf))} "
                             f"(a {g.kind} layer needs it)")
            continue
        opts = Options(batchnorm, merge_rnn_biases, transpose_kernel, None, fpath,
                       None if template is None or index is None else template_probe(template, index, fpath),
                       gradients, shared)
        try:
            conv = spec.to_flax(g, t, problems, opts)
        except (ValueError, IndexError) as err:  # np.split / reshape of a wrongly shaped source array
            problems.add("shape mismatches (source -> target)", f"{g.id}: {err}")
            continue
        for (coll, rel), arr in conv.items():
            key = (coll, fpath + rel)
            if key in produced:
                problems.add("name collisions", f"{fname(key)} from both {origin[key]} and {g.id}")
            produced[key] = arr
            origin[key] = g.id
            if g.kind == "batchnorm" and coll == "batch_stats" and rel[-1:] in (("mean",), ("var",)):
                bn_stats[key] = fpath
    for full, key in _bare_parameters([k for k in arrays if k not in used], arrays, groups, template, index, mapping,
                                      containers).items():
        produced[key], origin[key] = arrays[full], full
        used.add(full)
    for full in arrays:
        if full not in used and not (full in ties and template is not None):
            problems.add("unexpected keys (in the source, no converter)", _unread_key_message(full, group_of.get(full)))
    if template is not None:
        x64 = flax_x64_stats({k: (p, template[k].dtype, produced[k].dtype) for k, p in bn_stats.items()
                              if k in template}, _layer_params(template, set(bn_stats.values())))
        produced = check_against_template(produced, template, problems, fname, dtype_policy=dtype, x64_stats=x64)
    else:
        produced = {k: cast(v, None, k, fname, problems, dtype) for k, v in produced.items()}
    _add_suggestion(problems, groups, containers, template, mapping, {k: np.shape(v) for k, v in arrays.items()})
    problems.raise_if_any(_FIX_TO_FLAX)
    return produced


def _settle_shared(groups, paths, arrays, template, index) -> dict:
    """Facts a kind settles across the layers of one conversion: Hugging Face ``Conv1D``'s Flax
    layout (kernel = weight.T or weight), from the layers whose template shape tells (not
    square), for the square ones."""
    if template is None or index is None:
        return {}
    votes = set()
    kind = REGISTRY["conv1d"]
    for g in groups:
        if g.kind != "conv1d" or "weight" not in g.keys or g.keys["weight"] not in arrays:
            continue
        probe = template_probe(template, index, paths[g.id])
        tr = kind.transposed(g, arrays[g.keys["weight"]], Options(has=probe))  # type: ignore[attr-defined]
        if tr is not None:
            votes.add(tr)
    return {"conv1d": votes.pop()} if len(votes) == 1 else {}


def _settle_shared_to_torch(groups, paths, flat, template) -> dict:
    """The Flax -> torch side of :func:`_settle_shared`: Conv1D's layout from the torch template's
    weight shapes against the Flax kernels (non-square layers), for all Conv1D layers."""
    if template is None:
        return {}
    votes = set()
    for g in groups:
        w = template.get(g.keys.get("weight", "")) if g.kind == "conv1d" else None
        if w is None:
            continue
        shape = tuple(w.shape)
        k = flat.get(("params", tuple(paths[g.id]) + ("kernel",)))
        if k is not None and shape[0] != shape[1]:
            votes.add(tuple(np.shape(k)) == shape[::-1])
    return {"conv1d": votes.pop()} if len(votes) == 1 else {}


def _bare_parameters(unread, arrays, groups, template, index, mapping, containers) -> dict:
    """``{torch key: Flax key}`` for parameters held directly by a container module (ViT's
    ``embeddings.cls_token``, CLIP's ``class_embedding``): the key's module path by the naming
    rule plus the same leaf name, when the template holds it with the same shape."""
    if template is None or index is None or not unread:
        return {}
    prefixes = tuple(dict.fromkeys(k.rpartition(".")[0] for k in unread if k.rpartition(".")[0]))
    every = resolve_prefixes(groups, index, mapping, containers, prefixes)
    out = {}
    for full in unread:
        prefix, _, leaf = full.rpartition(".")
        path = every.get(prefix, ()) if prefix else ()
        key = ("params", tuple(path) + (leaf,))
        a = arrays[full]
        if key in template and tuple(template[key].shape) == tuple(a.shape if hasattr(a, "shape") else np.shape(a)):
            out[full] = key
    return out


def tied_keys(arrays: Mapping[str, np.ndarray]) -> dict:
    """``{key: first key}`` for arrays that are views of one memory block with the same shape,
    strides and dtype: torch's tied weights (one ``nn.Parameter`` under several state-dict
    keys, e.g. Hugging Face's ``lm_head.weight`` and ``shared.weight``) read through
    ``Tensor.numpy()``, which shares the tensor's memory. Copies (bfloat16, GPU tensors,
    checkpoints, which store a tied tensor once) are not ties."""
    first: dict = {}
    out = {}
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.size == 0:
            continue
        ident = (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
        if ident in first:
            out[k] = first[ident]
        else:
            first[ident] = k
    return out


def _layer_params(flat: Mapping, layers: set) -> dict:
    """{Flax layer path: [its ``params`` arrays]} for the given layer paths."""
    out: dict = {}
    for (coll, path), v in flat.items():
        if coll == "params" and path[:-1] in layers:
            out.setdefault(path[:-1], []).append(v)
    return out


def template_probe(template: Mapping, index: set, fpath: tuple):
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
    bn_stats: dict = {}  # torch key of a BatchNorm running statistic -> (Flax layer path, Flax array)
    shared = _settle_shared_to_torch(groups, paths, flat, template)
    for g in groups:
        if g.kind == "unknown":
            continue
        fpath = paths[g.id]
        g = refine_kind(g, fpath, index)
        n = len(fpath)
        f = {(c, p[n:]): remaining[(c, p)] for (c, p) in list(remaining) if p[:n] == fpath and len(p) > n}
        mine = dict(f)
        opts = Options(batchnorm, False, transpose_kernel, set(g.keys) if template is not None else None, fpath,
                       shared=shared)
        try:
            conv = REGISTRY[g.kind].to_torch(g, f, problems, opts)
        except (ValueError, IndexError) as err:  # reshape of a wrongly shaped source array
            problems.add("shape mismatches (source -> target)", f"{g.id}: {err}")
            conv = {}
        for key in mine:
            if key not in f:  # consumed
                remaining.pop((key[0], fpath + key[1]))
        for leaf, arr in conv.items():
            produced[g.keys.get(leaf, _join(g.id, leaf))] = arr
            if g.kind == "batchnorm" and leaf in ("running_mean", "running_var"):
                bn_stats[g.keys.get(leaf, _join(g.id, leaf))] = (fpath, np.asarray(arr))
    if template is not None:
        unproduced = [k for k in template if k not in produced]
        for full, key in _bare_parameters(unproduced, {k: template[k] for k in unproduced}, groups,
                                          {k: v for k, v in flat.items()}, index, mapping, containers).items():
            if key in remaining:
                produced[full] = np.asarray(remaining.pop(key))
        for dep, src in getattr(template, "tied", {}).items():  # one Flax leaf, several torch keys
            if dep not in produced and src in produced:
                produced[dep] = produced[src]
    for key in remaining:
        problems.add("unexpected keys (in the source, no converter)",
                     f"{fname(key)}: not part of a recognised layer (or not read by its layer kind); "
                     "pass mapping= / kinds=")
    layer_params = _layer_params(flat, {p for p, _ in bn_stats.values()})
    if template is not None:
        x64 = flax_x64_stats({k: (p, a.dtype, template[k].dtype) for k, (p, a) in bn_stats.items() if k in template},
                             layer_params)
        produced = check_against_template(produced, template, problems, str, dtype_policy=dtype, x64_stats=x64)
        _add_suggestion(problems, groups, containers, shape_dtypes(flat), mapping,
                        {k: tuple(s.shape) for k, s in template.items()})
    else:  # no torch template: a float64 layer's float32 Flax statistics come out float64, like its parameters
        x64 = flax_x64_stats({k: (p, a.dtype, np.float64) for k, (p, a) in bn_stats.items() if layer_params.get(p)},
                             layer_params)
        produced = {k: cast(v.astype(np.float64) if dtype is None and k in x64 else v, None, k, str, problems, dtype)
                    for k, v in produced.items()}
    problems.raise_if_any(_FIX_TO_TORCH)
    return produced


_FIX_TO_FLAX = ("Fix: name layers with mapping={'torch.prefix': 'flax/path'} (suggest_mapping(torch_model, "
                "flax_template) proposes one), set ambiguous layer kinds with kinds={'torch.prefix': kind}, or pass "
                "the torch module (its types decide the kinds).")
_FIX_TO_TORCH = ("Fix: name layers with mapping={'torch.prefix': 'flax/path'} (suggest_mapping(torch_model, "
                 "flax_variables) proposes one), set layer kinds with kinds={'torch.prefix': kind}, or pass the "
                 "torch module as `template`.")
