"""Re-initialization rules shared by ``jaxinit.reinit`` and ``torchinit.reinit``.

Framework-free: parsing and validating ``rules``, matching a parameter against
them (first match wins), the ``strict`` report, and the per-parameter seed
arithmetic. Each package supplies what only it knows: which module classes a
class selector may name, how to apply an initializer, and the owner module of
each parameter.
"""
from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Sequence

from _jaxinit.errors import InitError

_MASK64 = (1 << 64) - 1
SELECTOR_KINDS = "a regex string (or compiled re.Pattern), a module class (or tuple of classes), or a predicate (path, value) -> bool"


class Rule(NamedTuple):
    """One parsed ``(selector, initializer)`` pair."""

    position: int  # in the rules list (a field named `index` would shadow tuple.index)
    selector_type: str  # "regex" | "class" | "predicate"
    selector: Any  # re.Pattern | tuple[type, ...] | callable
    initializer: Any  # the package's applier, or None (leave unchanged)
    label: str  # how errors name the rule: "rules[1] (r'bias$')"


def _label(i: int, selector) -> str:
    if isinstance(selector, str):
        shown = repr(selector)
    elif isinstance(selector, re.Pattern):
        shown = repr(selector.pattern)
    elif isinstance(selector, type):
        shown = selector.__qualname__
    elif isinstance(selector, tuple):
        shown = "(" + ", ".join(getattr(c, "__qualname__", repr(c)) for c in selector) + ")"
    else:
        shown = getattr(selector, "__qualname__", None) or repr(selector)
    return f"rules[{i}] ({shown})"


def parse_rules(
    rules,
    *,
    who: str,
    module_bases: tuple[type, ...],
    module_hint: str,
    initializer: Callable[[Any, str], Any],
) -> list[Rule]:
    """Validate ``rules`` and return them as :class:`Rule` s, in order.

    ``rules`` is a mapping ``{selector: initializer}`` (insertion order kept)
    or a sequence of ``(selector, initializer)`` pairs. ``module_bases`` are
    the classes a class selector must subclass; ``initializer(obj, label)``
    validates and adapts one initializer (``None`` means: leave the matched
    parameters unchanged, so an early rule can exclude them from later ones).
    """
    accepted = (
        "a sequence of (selector, initializer) pairs or a dict {selector: initializer}, "
        'e.g. [(r"(kernel|weight)$", xavier_uniform()), (r"bias$", zeros())]'
    )
    if isinstance(rules, Mapping):
        items = list(rules.items())
    elif isinstance(rules, (str, bytes)) or not isinstance(rules, Sequence):
        raise InitError(f"{who}: `rules` must be {accepted}; got {type(rules).__name__} {rules!r:.80}")
    else:
        items = list(rules)
    parsed = []
    for i, item in enumerate(items):
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
            raise InitError(
                f"{who}: rules[{i}] must be a (selector, initializer) pair, got {item!r:.80}; "
                f"`rules` must be {accepted}."
            )
        selector, init = item
        selector_type, sel = _parse_selector(selector, i, who, module_bases, module_hint)
        label = _label(i, selector)
        parsed.append(Rule(i, selector_type, sel, None if init is None else initializer(init, label), label))
    return parsed


def _parse_selector(selector, i, who, module_bases, module_hint):
    if isinstance(selector, str):
        try:
            return "regex", re.compile(selector)
        except re.error as err:
            raise InitError(
                f"{who}: the selector of rules[{i}], {selector!r}, is not a valid regex "
                f"({err}); selectors are {SELECTOR_KINDS}. Fix the pattern (escape literal '.' as r'\\.') "
                "or pass a class or a predicate."
            ) from None
    if isinstance(selector, re.Pattern):
        if not isinstance(selector.pattern, str):
            raise InitError(f"{who}: the selector of rules[{i}] is a bytes pattern; use a str pattern.")
        return "regex", selector
    classes = selector if isinstance(selector, tuple) else (selector,) if isinstance(selector, type) else None
    if classes is not None:
        bad = [c for c in classes if not (isinstance(c, type) and issubclass(c, module_bases))]
        if not classes or bad:
            raise InitError(
                f"{who}: the selector of rules[{i}], {selector!r}, is not a module class this package "
                f"can match: {module_hint}. Selectors are {SELECTOR_KINDS}; for parameter names use a "
                'regex such as r"bias$".'
            )
        return "class", tuple(classes)
    if callable(selector):
        return "predicate", selector
    raise InitError(
        f"{who}: the selector of rules[{i}] must be {SELECTOR_KINDS}; got {type(selector).__name__} "
        f"{selector!r:.80}."
    )


def first_match(rules: Sequence[Rule], path: str, value, owner_type: type | None) -> Rule | None:
    """The first rule selecting the parameter at ``path`` (None: no rule does).

    Regexes use ``re.search`` on ``path``; a class selector matches when the
    module that directly owns the parameter (``owner_type``) is a subclass of
    one of its classes; a predicate is called as ``predicate(path, value)``.
    """
    for rule in rules:
        if matches(rule, path, value, owner_type):
            return rule
    return None


def matches(rule: Rule, path: str, value, owner_type: type | None) -> bool:
    if rule.selector_type == "regex":
        return rule.selector.search(path) is not None
    if rule.selector_type == "class":
        return owner_type is not None and issubclass(owner_type, rule.selector)
    return bool(rule.selector(path, value))


def check_strict(rules: Sequence[Rule], paths_values_owners, applied: dict[int, int], who: str) -> None:
    """``strict=True``: raise for the first rule that re-initialized nothing,
    saying whether it selects nothing or is shadowed by earlier rules."""
    for rule in rules:
        if applied.get(rule.position, 0):
            continue
        shadowed = set()
        for p, v, o in paths_values_owners:
            if matches(rule, p, v, o):
                first = first_match(rules, p, v, o)
                assert first is not None  # `rule` itself matches
                shadowed.add(first.label)
        shadowed_by = sorted(shadowed)
        if shadowed_by:
            raise InitError(
                f"{who}: strict=True and {rule.label} applies to no parameter: every parameter it "
                f"selects is taken first by {', '.join(shadowed_by)} (the first matching rule wins). "
                "Fix: move it earlier, narrow the earlier rule, or drop it."
            )
        names = [p for p, _, _ in paths_values_owners]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        raise InitError(
            f"{who}: strict=True and {rule.label} selects no parameter. Parameter paths are: {shown}. "
            "Fix the selector, or pass strict=False to allow rules that match nothing."
        )


_CLASS_HINT = (" (a class selector selects every parameter of the module, bias included: put "
               "(r\"bias$\", zeros()) before it)")


def rule_failed(rule: Rule, path: str, shape, dtype, err: Exception, who: str) -> InitError:
    """The error raised when ``rule``'s initializer fails on parameter ``path`` (both packages)."""
    return InitError(
        f"{who}: {rule.label} failed on parameter {path!r} (shape {shape}, dtype {dtype}): "
        f"{str(err).rstrip('.')}. Fix: narrow the selector so it skips this parameter, or put a rule for "
        "it earlier" + _CLASS_HINT * (rule.selector_type == "class") + "."
    )


def path_crc(path: str) -> int:
    """``zlib.crc32`` of the UTF-8 path: the per-parameter number mixed into the key."""
    return zlib.crc32(path.encode("utf-8"))


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(base_seed: int, path: str) -> int:
    """Per-parameter seed in [0, 2**63) from a base seed and the path:
    ``splitmix64(splitmix64(base) ^ crc32(path))``, top bit dropped."""
    return _splitmix64(_splitmix64(base_seed & _MASK64) ^ path_crc(path)) >> 1


def flax_path(torch_name: str, ndim: int, embedding: bool = False) -> str:
    """The Flax path of a torch parameter name, used to derive its key from a JAX key.

    ``"fc1.weight"`` (2-D or more) -> ``"fc1/kernel"``; a 1-D ``weight`` (norm
    layers) -> ``".../scale"``; an ``nn.Embedding`` weight -> ``".../embedding"``;
    ``bias`` and other names are kept; "." becomes "/". This is the path
    ``jaxinit.reinit`` sees for the Flax twin's ``variables["params"]`` (or an
    nnx model) when the submodules carry the same names.
    """
    parts = torch_name.split(".")
    if parts[-1] == "weight":
        parts[-1] = "embedding" if embedding else ("kernel" if ndim >= 2 else "scale")
    return "/".join(parts)
