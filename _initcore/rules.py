"""Rule matching for model-level re-initialization, shared by both packages.

A rule is ``(selector, initializer)``; rules are tried in order and the first
whose selector matches a parameter wins. A selector is a regex string
(``re.search`` on the parameter path: "/"-joined in jaxinit, e.g.
``Dense_0/kernel``; "."-joined in torchinit, e.g. ``fc1.weight``; patterns such
as ``r"bias$"`` or ``r"(kernel|weight)$"`` work on both), a module class
(matches parameters owned directly by an instance of it), or a predicate
``(path, value) -> bool``.
"""
from __future__ import annotations

import re
import zlib
from typing import Any, Callable

from _initcore.errors import InitError


def normalize_rules(rules, who: str = "reinit") -> list[tuple[Any, Callable, Any]]:
    """Return ``[(selector, compiled_or_selector, initializer)]`` with checked types."""
    if isinstance(rules, dict):
        rules = list(rules.items())
    try:
        rules = list(rules)
    except TypeError:
        raise InitError(f"{who}: `rules` must be a sequence of (selector, initializer) pairs or a dict, got {rules!r}") from None
    out = []
    for i, rule in enumerate(rules):
        if not (isinstance(rule, tuple) and len(rule) == 2):
            raise InitError(f"{who}: rule {i} must be a (selector, initializer) pair, got {rule!r}")
        selector, init = rule
        if not callable(init):
            raise InitError(f"{who}: rule {i} ({selector!r}): the initializer must be callable, got {init!r}")
        if isinstance(selector, str):
            try:
                matcher = re.compile(selector)
            except re.error as e:
                raise InitError(f"{who}: rule {i}: {selector!r} is not a valid regex ({e}); escape it or use re.escape") from None
        elif isinstance(selector, type) or callable(selector):
            matcher = selector
        else:
            raise InitError(
                f"{who}: rule {i}: the selector must be a regex string, a module class or a predicate "
                f"(path, value) -> bool, got {selector!r}"
            )
        out.append((selector, matcher, init))
    return out


def first_match(rules, path: str, value, owner) -> int | None:
    """Index of the first rule matching the parameter, or None."""
    for i, (selector, matcher, _) in enumerate(rules):
        if isinstance(selector, str):
            if matcher.search(path):
                return i
        elif isinstance(selector, type):
            if owner is not None and isinstance(owner, selector):
                return i
        elif matcher(path, value):
            return i
    return None


def path_hash(path: str) -> int:
    """The 32-bit tag of a parameter path from which its key is derived (crc32 of UTF-8)."""
    return zlib.crc32(path.encode("utf-8"))


def check_strict(rules, used: set, who: str = "reinit"):
    unused = [repr(sel) for i, (sel, _, _) in enumerate(rules) if i not in used]
    if unused:
        raise InitError(f"{who}: strict=True and these rules matched no parameter: {', '.join(unused)}")
