"""The framework-free part of a configured initializer, shared by both packages.

Each package subclasses :class:`InitializerBase` with its own ``__call__``
(JAX: ``init(key, shape, dtype)``; torch: ``init(key, shape, dtype, device)``)
and sets ``_package`` and ``_factories`` (name -> factory), which
:meth:`with_layout` and pickling use to rebuild the initializer from its
arguments. Instances are weak-referenceable, so ``jax.jit(init, static_argnums=1)``
works as it does for ``jax.nn.initializers`` functions.

:func:`factory` wraps each public factory of both packages: an array passed
where a number belongs (``xavier_uniform(w)``, torch's deprecated un-suffixed
alias called on a tensor) raises an error naming the in-place form.
"""
from __future__ import annotations

import functools
import inspect
import numbers
from typing import Any, Callable, ClassVar, Mapping

from _jaxinit.errors import InitError

LAYOUT_KEYS = ("in_axis", "out_axis", "batch_axis")


class InitializerBase:
    """A named initializer with its arguments: repr, equality and layout re-targeting."""

    __slots__ = ("name", "args", "_impl", "__weakref__")
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

    def __reduce__(self):
        # the sampling closure is not picklable; the factory call that built it is
        return (_rebuild, (type(self), self.name, self.args))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self._package}.{self.name}({inner})"

    def __eq__(self, other):
        return type(other) is type(self) and (self.name, self.args) == (other.name, other.args)

    def __hash__(self):
        return hash((self.name, repr(self.args)))


def _rebuild(cls, name: str, args: Mapping[str, Any]):
    return cls._factories[name](**args)


def _array_shape(value):
    """The shape of an array/tensor argument, or None for anything else."""
    if isinstance(value, numbers.Number) or isinstance(value, (str, bytes)):
        return None
    shape = getattr(value, "shape", None)
    if shape is None or not hasattr(value, "dtype"):
        return None
    try:
        return tuple(int(d) for d in shape)
    except TypeError:
        return None


def factory(package: str, min_ndim: int = 1):
    """Decorate a public initializer factory of ``package`` ("jaxinit" or "torchinit").

    Any argument that is an array of ``min_ndim`` or more dimensions (a weight
    tensor, not a number) raises :class:`InitError` before the factory runs:
    ``torchinit.xavier_uniform(w)`` is torch's deprecated ``xavier_uniform(w)``
    (torch/nn/init.py ``_make_deprecate``), whose in-place form is
    ``xavier_uniform_(w)``. ``svd`` takes ``min_ndim=2`` (its spectrum may be a
    1-D array).
    """

    def wrap(fn):
        name = fn.__name__
        params = list(inspect.signature(fn).parameters)

        @functools.wraps(fn)
        def checked(*args, **kwargs):
            for i, value in enumerate(args):
                _refuse_array(package, name, params[i] if i < len(params) else f"argument {i}", value, min_ndim)
            for arg, value in kwargs.items():
                _refuse_array(package, name, arg, value, min_ndim)
            return fn(*args, **kwargs)

        return checked

    return wrap


def _refuse_array(package: str, name: str, arg: str, value, min_ndim: int) -> None:
    shape = _array_shape(value)
    if shape is None or len(shape) < min_ndim:
        return
    kind = type(value).__name__
    if package == "torchinit":
        raise InitError(
            f"torchinit.{name}: got a {kind} of shape {shape} for `{arg}`, where a number belongs: "
            f"torchinit.{name}(...) builds an initializer init(key, shape), it does not fill a tensor. "
            f"Did you mean `torchinit.{name}_(tensor)`? (torch.nn.init.{name}(tensor) is torch's deprecated "
            f"alias of torch.nn.init.{name}_.)"
        )
    raise InitError(
        f"jaxinit.{name}: got a {kind} of shape {shape} for `{arg}`, where a number belongs: "
        f"jaxinit.{name}(...) builds an initializer; JAX arrays are immutable, so there is no in-place "
        f"{name}_(tensor). Did you mean `jaxinit.{name}()(key, x.shape, x.dtype)` (a new array of x's shape)?"
    )
