"""``suggest_mapping``: pair the torch layers the naming rule leaves unmatched with the Flax
layers left over, by layer kind, order of definition and shapes. Framework-free.

Within each kind family (``conv`` and ``conv_transpose``, ``layernorm`` and
``groupnorm``, a name-inferred ``dense`` and ``embed``), the unmatched torch layers (in
``named_modules`` / state-dict order) and the unmatched Flax layers (in the template's
order: Linen creates variables in execution order) are paired in order when every pair's
converted shapes agree. Otherwise only pairs whose shapes occur once on each side are
suggested; same-shape layers that could pair in more than one way are listed as
``ambiguous``, never guessed.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from _jaxinit.layer_kinds import REGISTRY, Options
from _jaxinit.naming import Group, flax_index, groups_from_flax_names, resolve_paths

_FAMILY = {"conv_transpose": "conv", "groupnorm": "layernorm", "embed": "dense"}


class Suggestion(dict):
    """``{torch prefix: flax path}`` ready for ``mapping=``, with what it could not settle:
    ``ambiguous`` (readable lines), ``unmatched_torch`` and ``unmatched_flax`` (layer names)."""

    def __init__(self, pairs=(), ambiguous=(), unmatched_torch=(), unmatched_flax=()):
        super().__init__(pairs)
        self.ambiguous = list(ambiguous)
        self.unmatched_torch = list(unmatched_torch)
        self.unmatched_flax = list(unmatched_flax)


def _torch_signature(g: Group, shapes: Mapping[str, tuple]) -> tuple | None:
    """Sorted shapes of the Flax params the torch layer converts to (None: cannot tell)."""
    spec = REGISTRY[g.kind]
    t = {leaf: np.broadcast_to(np.zeros((), np.float32), shapes[full])
         for leaf, full in g.keys.items() if leaf in spec.consumed() and full in shapes}
    if spec.missing(t):
        return None
    try:
        out = spec.to_flax(g, t, _Quiet(), Options(merge_rnn_biases=True))
    except (ValueError, IndexError):
        return None
    return tuple(sorted(tuple(np.shape(v)) for (coll, _), v in out.items() if coll == "params"))


def _flax_signature(path: tuple, flat: Mapping) -> tuple:
    n = len(path)
    return tuple(sorted(tuple(v.shape) for (coll, p), v in flat.items()
                        if coll == "params" and p[:n] == path and len(p) > n))


class _Quiet:
    def add(self, section, item):
        pass


def _family(kind: str) -> str:
    return _FAMILY.get(kind, kind)


def suggest(groups: list[Group], containers, flat_spec: Mapping, mapping=None,
            shapes: Mapping[str, tuple] | None = None, flax_order=None) -> Suggestion:
    """Suggest ``mapping`` entries for the torch ``groups`` unmatched in the Flax template
    ``flat_spec`` ({(collection, path): array-like with ``shape``}); ``shapes``: torch key ->
    shape (default: read from nothing, so signatures are unknown and only counts pair);
    ``flax_order``: Flax module paths (tuples) in the order they run, which replaces the
    template's order."""
    index = flax_index(flat_spec)
    paths = resolve_paths(groups, index, mapping, containers)
    fgroups = groups_from_flax_names(flat_spec)
    fpaths = {tuple(fg.opts["flax_path"]): fg for fg in fgroups}
    matched = set()
    todo_t: list[Group] = []
    for g in groups:
        if g.kind == "unknown":
            continue
        p = paths[g.id]
        hit = next((q for q in (p, p + ("cell",)) if q in fpaths), None)
        if hit is not None:
            matched.add(hit)
        else:
            todo_t.append(g)
    todo_f = [fg for fg in fgroups if tuple(fg.opts["flax_path"]) not in matched]
    sug = Suggestion()
    sorted_keys = _looks_sorted(flat_spec) and flax_order is None
    if flax_order is not None:
        rank = {tuple(p): i for i, p in reversed(list(enumerate(flax_order)))}
        todo_f.sort(key=lambda fg: rank.get(tuple(fg.opts["flax_path"]), len(rank)))
    elif sorted_keys:  # the creation order is lost; auto names (Conv_0, Conv_10) still order their siblings
        todo_f.sort(key=lambda fg: [_natural(seg) for seg in fg.opts["flax_path"]])
    for fam in dict.fromkeys(_family(g.kind) for g in todo_t):
        ts = [g for g in todo_t if _family(g.kind) == fam]
        fs = [fg for fg in todo_f if _family(fg.kind) == fam]
        tsig = [None if shapes is None else _torch_signature(g, shapes) for g in ts]
        fsig = [_flax_signature(tuple(fg.opts["flax_path"]), flat_spec) for fg in fs]
        if len(ts) == len(fs) and all(a == b for a, b in zip(tsig, fsig)):
            unsure = set()
            if sorted_keys:
                for sig in set(fsig):
                    same = [tuple(fg.opts["flax_path"]) for fg, q in zip(fs, fsig) if q == sig]
                    if not _auto_ordered(same):
                        unsure.add(sig)
            for g, fg, sig in zip(ts, fs, fsig):
                if sig not in unsure:
                    sug[g.id] = "/".join(fg.opts["flax_path"])
            for sig in unsure:
                ti = [g.id for g, q in zip(ts, tsig) if q == sig]
                fi = ["/".join(fg.opts["flax_path"]) for fg, q in zip(fs, fsig) if q == sig]
                sug.ambiguous.append(f"{len(ti)} torch {fam} layer(s) ({', '.join(ti)}) and {len(fi)} Flax one(s) "
                                     f"({', '.join(fi)}) share the shapes {list(sig)}")
            continue
        if shapes is None:
            sug.unmatched_torch += [g.id for g in ts]
            continue
        for tsg in dict.fromkeys(tsig):
            t_ix = [i for i, s in enumerate(tsig) if s == tsg]
            f_ix = [i for i, s in enumerate(fsig) if s == tsg]
            same_paths = [tuple(fs[i].opts["flax_path"]) for i in f_ix]
            if tsg is not None and len(t_ix) == len(f_ix) and (len(t_ix) == 1 or not sorted_keys or _auto_ordered(same_paths)):
                sug.update({ts[i].id: "/".join(fs[j].opts["flax_path"]) for i, j in zip(t_ix, f_ix)})
            elif tsg is not None and t_ix and f_ix:
                sug.ambiguous.append(f"{len(t_ix)} torch {fam} layer(s) ({', '.join(ts[i].id for i in t_ix)}) and "
                                     f"{len(f_ix)} Flax one(s) ({', '.join('/'.join(fs[i].opts['flax_path']) for i in f_ix)}) "
                                     f"share the shapes {list(tsg)}")
            else:
                sug.unmatched_torch += [ts[i].id for i in t_ix]
    if sug.ambiguous and _looks_sorted(flat_spec):
        sug.ambiguous.append("the template's keys are in sorted order (jax.eval_shape and jit sort them), so the "
                             "order the Flax layers were created in is lost: pass flax_module= and flax_inputs= "
                             "(the order they run in), or the output of model.init(...) as the template")
    paired = set(sug.values())
    sug.unmatched_flax = ["/".join(fg.opts["flax_path"]) for fg in todo_f if "/".join(fg.opts["flax_path"]) not in paired]
    return sug


_AUTO = re.compile(r"^(.+)_(\d+)$")


def _natural(seg: str):
    m = _AUTO.match(seg)
    return (m.group(1), int(m.group(2))) if m else (seg, -1)


def _auto_ordered(paths: list) -> bool:
    """Whether Linen auto names (``Class_k``) alone order these paths: each pair first
    differs in a segment that is an auto name of the same class in both."""
    for a, b in zip(paths, paths[1:]):
        i = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), None)
        if i is None:
            return False
        ma, mb = _AUTO.match(a[i]), _AUTO.match(b[i])
        if not (ma and mb and ma.group(1) == mb.group(1)):
            return False
    return True


def _looks_sorted(flat: Mapping) -> bool:
    """Whether every level of the tree lists its keys in sorted order."""
    seen: dict[tuple, list] = {}
    for coll, path in flat:
        for j in range(len(path)):
            lst = seen.setdefault((coll,) + path[:j], [])
            if not lst or lst[-1] != path[j]:
                lst.append(path[j])
    return all(lst == sorted(lst) for lst in seen.values())
