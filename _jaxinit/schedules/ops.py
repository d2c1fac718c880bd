"""The formulas' array namespace for Python numbers (``PyOps``; ``jaxinit/_src/schedules.py`` has the
jax.numpy one) and the argument checks the specs share.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

import bisect
import math
import numbers
import operator
import weakref

from _jaxinit.errors import InitError


# ------------------------------------------------------------------ namespaces


class PyOps:
    """The formulas' array namespace for Python numbers (``torchinit``)."""

    @staticmethod
    def step(t, who):
        try:
            t = operator.index(t)
        except TypeError:
            raise InitError(
                f"{who}: the step must be an int (the number of optimizer steps already taken), got {t!r}"
            ) from None
        if t < 0:
            raise InitError(f"{who}: the step must be >= 0 (steps already taken), got {t}")
        return t

    to_float = staticmethod(float)
    cos = staticmethod(math.cos)
    minimum = staticmethod(min)

    @staticmethod
    def where(cond, a, b):
        return a if cond else b

    @staticmethod
    def count_le(table, t):
        """How many entries of the sorted ``table`` are ``<= t``."""
        return bisect.bisect_right(table, t)

    @staticmethod
    def take(table, i):
        return table[i]

    @staticmethod
    def invalid_if(cond, value, message):
        """torch raises here; Python does too (JAX returns NaN instead)."""
        if cond:
            raise ValueError(message)
        return value

    floor = staticmethod(math.floor)  # an int, as torch's math.floor

    @staticmethod
    def nonzero(x):
        """``x``, or 1 where it is 0 (a divisor on a branch ``where`` does not take)."""
        return x if x != 0 else 1.0

    @staticmethod
    def switch(i, branches):
        """``branches[i]()`` (only the taken branch runs)."""
        return branches[i]()

    @staticmethod
    def product(value, fn, t):
        """``value * fn(1) * fn(2) * ... * fn(t)``, multiplied left to right (prefixes cached per ``fn``)."""
        try:
            prefix = _PRODUCTS.setdefault(fn, {}).setdefault(value, [value])
        except TypeError:  # fn not weak-referenceable: no cache
            prefix = [value]
        while len(prefix) <= t:
            prefix.append(prefix[-1] * fn(len(prefix)))
        return prefix[t]


# fn -> {start value: [value, value * fn(1), ...]}: a torchinit MultiplicativeLR is called at t = 0, 1, 2, ...
_PRODUCTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


# ------------------------------------------------------------------ argument checks


def real_arg(who, name, value, *, low=None, low_open=False, high=None, high_open=False, hint=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InitError(f"{who}: {name} must be a finite real number, got {value!r}.{hint}")
    bad = (low is not None and (value <= low if low_open else value < low)) or (
        high is not None and (value >= high if high_open else value > high))
    if bad:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
        hi = "" if high is None else f"{high}" + (")" if high_open else "]")
        rng = f"{lo}, {hi}" if low is not None and high is not None else (
            f"{'>' if low_open else '>='} {low}" if low is not None else f"{'<' if high_open else '<='} {high}")
        raise InitError(f"{who}: {name} must be {rng}, got {value!r}.{hint}")
    return float(value) if not isinstance(value, int) else value


def int_arg(who, name, value, *, low, hint=""):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise InitError(f"{who}: {name} must be an int >= {low}, got {value!r}.{hint}")
    return int(value)


def lr_arg(who, lr, name="lr"):
    return real_arg(who, name, lr, low=0.0, hint=(
        f" (torch.optim refuses a negative learning rate: 'Invalid learning rate'); pass {name}=<base lr >= 0>."))
