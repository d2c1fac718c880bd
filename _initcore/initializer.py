"""The framework-free part of a configured initializer, shared by both packages.

Each package subclasses :class:`InitializerBase` with its own ``__call__``
(JAX: ``init(key, shape, dtype)``; torch: ``init(key, shape, dtype, device)``)
and sets ``_package`` and ``_factories`` (name -> factory), which
:meth:`with_layout` uses to rebuild the initializer with other axes.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

from _initcore.errors import InitError

LAYOUT_KEYS = ("in_axis", "out_axis", "batch_axis")


class InitializerBase:
    """A named initializer with its arguments: repr, equality and layout re-targeting."""

    __slots__ = ("name", "args", "_impl")
    _package: ClassVar[str] = ""
    _factories: ClassVar[Mapping[str, Callable[..., Any]]] = {}

    def __init__(self, name: str, args: Mapping[str, Any], impl: Callable[..., Any]):
        self.name = name
        self.args = dict(args)
        self._impl = impl

    def with_layout(self, in_axis=None, out_axis=None, batch_axis=None):
        """The same initializer with other layout axes (e.g. ``**TORCH_LAYOUT``)."""
        if not any(k in self.args for k in LAYOUT_KEYS):
            raise InitError(f"{self.name}: takes no layout arguments; it has none to change")
        new = dict(self.args)
        for k, v in zip(LAYOUT_KEYS, (in_axis, out_axis, batch_axis)):
            if v is not None and k in new:
                new[k] = v
        return self._factories[self.name](**new)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self._package}.{self.name}({inner})"

    def __eq__(self, other):
        return type(other) is type(self) and (self.name, self.args) == (other.name, other.args)

    def __hash__(self):
        return hash((self.name, repr(self.args)))
