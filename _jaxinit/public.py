"""The public name of a class defined in a private module (shared by ``jaxinit`` and ``torchinit``)."""
from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T", bound=type)


def public(module: str, name: str) -> Callable[[T], T]:
    """Class decorator: ``cls`` reports itself as ``module.name`` (``repr``, ``help()``, pickling
    by name), e.g. ``@public("jaxinit", "BatchNorm")`` on ``LinenBatchNorm``."""

    def rename(cls: T) -> T:
        cls.__name__ = cls.__qualname__ = name
        cls.__module__ = module
        return cls

    return rename
