"""Pairing of a torch module's layers with its Flax twin's, by the converter's naming
rule: shared by ``compare_layers`` and ``audit``."""
from __future__ import annotations

from _jaxinit import naming as _naming


def pair_layers(tm, groups, containers, fvars, mapping, fpaths, alternates: dict | None = None) -> dict:
    """torch module path -> Flax path string, by the converter's rule (groups), the
    deepest Flax module holding all of a container's layers, or the rule for
    parameterless modules. ``alternates`` receives, for recurrent layers, the Flax module
    the rule for parameterless modules names (``nn.RNN`` holding a cell defined outside it)."""
    index = _naming.flax_index(fvars) | {p for p in fpaths}
    gids = {g.id for g in groups}
    extra = tuple(n for n, m in tm.named_modules() if n and n not in gids and next(m.children(), None) is None)
    rnn = tuple(g.id for g in groups if g.kind in ("lstm", "gru") and g.id)
    alt_groups = [g._replace(kind="unknown") for g in groups]  # no class-based auto names for the RNN module
    alt = _naming.resolve_prefixes(alt_groups, index, mapping, containers, rnn) if rnn else {}
    if alternates is not None:
        alternates.update({gid: "/".join(alt[gid]) for gid in rnn if alt.get(gid) in index})
    every = _naming.resolve_prefixes(groups, index, mapping, containers, extra)
    pairs = {}
    by_group = {}
    modules = {n for n, _ in tm.named_modules()}
    for g in groups:
        p = every[g.id]
        if g.kind in ("lstm", "gru") and p + ("cell",) in index:
            p = p + ("cell",)
        by_group[g.id] = p
        pairs[g.id if g.id in modules else g.id.rsplit(".", 1)[0]] = "/".join(p)  # "lstm.l1" -> "lstm"
    for n in extra:
        if every[n] in index:
            pairs[n] = "/".join(every[n])
    # containers: the longest common Flax prefix of their layers, when they hold ALL the Flax
    # layers under it (a torch Sequential 'downsample' inside a block is not the Flax block);
    # among torch containers that qualify for one Flax module, the deepest wins
    flax_layers = {p[:-1] for (c, p) in fvars if c == "params"}
    claimed = {}
    for c in containers:
        under = [p for gid, p in by_group.items() if c == "" or gid == c or gid.startswith(c + ".")]
        if not under:
            continue
        if c and c in every and every[c] in index and all(p[:len(every[c])] == every[c] and len(p) > len(every[c])
                                                         for p in under):
            pairs[c] = "/".join(every[c])  # the naming rule finds it (e.g. a Hugging Face twin)
            continue
        common = under[0]
        for p in under[1:]:
            k = 0
            while k < min(len(common), len(p)) and common[k] == p[k]:
                k += 1
            common = common[:k]
        if c == "":
            claimed[()] = ""
            continue
        if any(len(p) == len(common) for p in under):
            common = common[:-1]  # a container of one layer is the module above that layer
        inside = [m for m in flax_layers if m[:len(common)] == common]
        if not all(any(m[:len(p)] == p for p in under) for m in inside):
            continue
        if common and (common not in claimed or len(c) > len(claimed[common])):
            claimed[common] = c
    for fp, c in claimed.items():
        pairs[c] = "/".join(fp)
    return pairs
