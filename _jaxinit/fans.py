"""Fan computation for any kernel layout.

PyTorch computes fans positionally on its (out, in, *k) layout
(``torch.nn.init._calculate_fan_in_and_fan_out``)::

    fan_in  = size(1) * prod(size(2:))
    fan_out = size(0) * prod(size(2:))

JAX generalises this with ``in_axis``/``out_axis``/``batch_axis``. We accept the
JAX arguments and default to the Flax kernel layout, so the same fans as
PyTorch come out for every layer type:

================================  ============================  =====================================
layer                             Flax kernel                   layout giving PyTorch's fans
================================  ============================  =====================================
Dense / Linear                    (in, out)                     ``FLAX_LAYOUT`` (in_axis=-2, out_axis=-1)
Conv 1-3d, grouped                (*k, in/groups, out)          ``FLAX_LAYOUT``
ConvTranspose                     (*k, in, out)                 ``FLAX_CONV_TRANSPOSE_LAYOUT`` (-1, -2)
ConvTranspose(transpose_kernel)   (*k, out, in)                 ``FLAX_LAYOUT``
any torch weight                  (out, in, *k) / (in, out, *k) ``TORCH_LAYOUT`` (in_axis=1, out_axis=0)
================================  ============================  =====================================

(PyTorch's ConvTranspose weight is (in, out/groups, *k) and its positional rule
gives fan_in = out/groups * prod(k), pytorch#7865; the Flax ConvTranspose layout
above reproduces that number.)
"""
from __future__ import annotations

import math
from typing import Sequence, Union

from _jaxinit.errors import InitError

Axes = Union[int, Sequence[int]]


FLAX_LAYOUT = {"in_axis": -2, "out_axis": -1, "batch_axis": ()}
TORCH_LAYOUT = {"in_axis": 1, "out_axis": 0, "batch_axis": ()}
FLAX_CONV_TRANSPOSE_LAYOUT = {"in_axis": -1, "out_axis": -2, "batch_axis": ()}


def _as_axes(value, name: str, ndim: int | None, who: str) -> tuple[int, ...]:
    """``value`` as a tuple of axes in ``0..ndim-1`` (``ndim=None``: types only, as given)."""
    if isinstance(value, bool):
        raise InitError(f"{who}: `{name}` must be an int or a tuple of ints, got {value!r}")
    if isinstance(value, int):
        items = (value,)
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise InitError(
                f"{who}: `{name}` must be an int or a tuple of ints, got {value!r}"
            ) from None
    out = []
    for ax in items:
        if isinstance(ax, bool) or not isinstance(ax, int):
            raise InitError(f"{who}: `{name}` must hold ints, got {value!r}")
        if ndim is None:
            out.append(ax)
            continue
        if not -ndim <= ax < ndim:
            raise InitError(
                f"{who}: `{name}`={value!r} is out of range for a {ndim}-D shape; "
                f"accepted axes are {-ndim}..{ndim - 1}. Fix: pass the layout of this "
                "kernel (FLAX_LAYOUT for Flax kernels, TORCH_LAYOUT for torch weights)."
            )
        out.append(ax % ndim)
    return tuple(out)


def check_layout(in_axis: Axes, out_axis: Axes, batch_axis: Axes, who: str) -> None:
    """Factory-time check of layout arguments: ints or tuples of ints, ``in_axis``
    and ``out_axis`` non-empty (ranges are checked against each shape)."""
    ins = _as_axes(in_axis, "in_axis", None, who)
    outs = _as_axes(out_axis, "out_axis", None, who)
    _as_axes(batch_axis, "batch_axis", None, who)
    if not ins or not outs:
        raise InitError(f"{who}: in_axis and out_axis must each name at least one axis")


def single_axis(value, name: str, ndim: int | None, who: str) -> int:
    """One int axis in ``0..ndim-1`` (``ndim=None``: the type only, value as given)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InitError(f"{who}: `{name}` must be a single int axis, got {value!r}")
    if ndim is None:
        return value
    if not -ndim <= value < ndim:
        raise InitError(f"{who}: `{name}`={value} is out of range for a {ndim}-D shape")
    return value % ndim


def normalize_layout(ndim: int, in_axis: Axes, out_axis: Axes, batch_axis: Axes, who: str):
    """Resolve layout arguments to non-negative, disjoint axis tuples."""
    ins = _as_axes(in_axis, "in_axis", ndim, who)
    outs = _as_axes(out_axis, "out_axis", ndim, who)
    batch = _as_axes(batch_axis, "batch_axis", ndim, who)
    seen: dict[int, str] = {}
    for name, axes in (("in_axis", ins), ("out_axis", outs), ("batch_axis", batch)):
        for ax in axes:
            if ax in seen:
                raise InitError(
                    f"{who}: axis {ax} is given both as {seen[ax]} and as {name}; "
                    "in_axis, out_axis and batch_axis must name different axes."
                )
            seen[ax] = name
    if not ins or not outs:
        raise InitError(f"{who}: in_axis and out_axis must each name at least one axis")
    return ins, outs, batch


def compute_fans(
    shape: Sequence[int],
    in_axis: Axes = -2,
    out_axis: Axes = -1,
    batch_axis: Axes = (),
    *,
    who: str = "initializer",
) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` for ``shape`` in the given layout.

    The receptive field is the product of all axes that are neither input,
    output nor batch axes. With ``TORCH_LAYOUT`` this is exactly PyTorch's
    positional rule; with the default Flax layout it gives the same numbers for
    the Flax kernel of the same layer.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise InitError(
            f"{who}: Fan in and fan out can not be computed for tensor with fewer than "
            f"2 dimensions (got shape {shape}). Fan-based initializers need a kernel of "
            "rank >= 2; use normal/uniform/constant for vectors."
        )
    ins, outs, batch = normalize_layout(len(shape), in_axis, out_axis, batch_axis, who)
    receptive = 1
    for ax, d in enumerate(shape):
        if ax not in ins and ax not in outs and ax not in batch:
            receptive *= d
    fan_in = math.prod(shape[a] for a in ins) * receptive
    fan_out = math.prod(shape[a] for a in outs) * receptive
    return fan_in, fan_out
