"""Model-level re-initialization for Flax: PyTorch's ``model.apply(init_fn)`` pattern."""
from __future__ import annotations

from typing import Any

import jax

from _initcore.errors import InitError
from _initcore.rules import check_strict, first_match, normalize_rules, path_hash


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def reinit(target: Any, rules, key, *, strict: bool = False):
    """Re-initialize parameters by rules; the first matching rule wins.

    Args:
      target: a Flax Linen params pytree (a new pytree is returned, the input is
        untouched) or a ``flax.nnx.Module`` (its ``nnx.Param`` variables are
        updated in place; the module is returned).
      rules: ``[(selector, initializer), ...]`` or a dict. A selector is a regex
        searched in the "/"-joined path (``"Dense_0/kernel"``), a module class
        (NNX targets only: matches parameters owned by an instance of it), or a
        predicate ``(path, value) -> bool``. An initializer is any Flax-style
        ``init(key, shape, dtype)``, e.g. ``jaxinit.xavier_uniform()``.
      key: a JAX PRNG key. Parameter ``path`` gets
        ``jax.random.fold_in(key, crc32(path))``: independent of dict order,
        stable across runs. (torchinit derives its per-parameter generators
        from the seed and the same crc32; a later release makes the two
        derivations draw identical numbers.)
      strict: raise if a rule matches no parameter.

    Example::

        params = jaxinit.reinit(params, [(r"kernel$", jaxinit.xavier_uniform()),
                                         (r"bias$", jaxinit.zeros())], jax.random.key(0))
    """
    rules = normalize_rules(rules)
    used: set[int] = set()
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover - flax is part of the jax extra
        nnx = None
    if nnx is not None and isinstance(target, nnx.Module):
        for path, var in nnx.iter_graph(target):
            if not isinstance(var, nnx.Param):
                continue
            owner = target
            for p in path[:-1]:
                owner = owner[p] if isinstance(p, int) or isinstance(owner, dict) else getattr(owner, p)
            spath = "/".join(str(p) for p in path)
            i = first_match(rules, spath, var[...], owner)
            if i is not None:
                used.add(i)
                value = var[...]
                var[...] = rules[i][2](jax.random.fold_in(key, path_hash(spath)), value.shape, value.dtype)
        if strict:
            check_strict(rules, used)
        return target

    if any(isinstance(sel, type) for sel, _, _ in rules):
        raise InitError(
            "reinit: a module-class selector needs module information, which a Linen params "
            "pytree does not carry; use a regex on the path instead (Linen names layers "
            "after their class: r'Dense_\\d+/kernel$', r'Conv_\\d+/')."
        )

    def visit(path, value):
        spath = "/".join(_key_name(k) for k in path)
        i = first_match(rules, spath, value, None)
        if i is None:
            return value
        used.add(i)
        return rules[i][2](jax.random.fold_in(key, path_hash(spath)), value.shape, value.dtype)

    out = jax.tree_util.tree_map_with_path(visit, target)
    if strict:
        check_strict(rules, used)
    return out
