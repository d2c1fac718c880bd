"""The object every torchinit initializer factory returns (:class:`Initializer`) and the
argument checks and key handling the in-place functions and the factories share
(:mod:`torchinit._src.initializers` holds both forms of every initializer).

This package never imports jax.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Mapping, Sequence

import torch

from _jaxinit import init_params
from _jaxinit.errors import InitError
from _jaxinit.fans import check_layout, single_axis
from _jaxinit.initializer import InitializerBase
from torchinit._src import random as _rnd

Tensor = torch.Tensor


# --------------------------------------------------------------------------- helpers
def float_tensor(tensor, who: str) -> Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise InitError(f"{who}: `tensor` must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.dtype.is_floating_point:
        raise InitError(
            f"{who}: random initializers need a floating tensor, got {tensor.dtype}; "
            "use float32/float64/bfloat16/float16 (constant_/zeros_/ones_ accept integers)."
        )
    return tensor


def any_tensor(tensor, who: str) -> Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise InitError(f"{who}: `tensor` must be a torch.Tensor, got {type(tensor).__name__}")
    return tensor



def layout_args(in_axis, out_axis, batch_axis, who=None):
    if who is not None:
        check_layout(in_axis, out_axis, batch_axis, who)
    return {"in_axis": in_axis, "out_axis": out_axis, "batch_axis": batch_axis}


def keyed_inplace(tensor, key, generator, who, init, conv_transpose=False):
    """Fill a torch-layout ``tensor`` with jaxinit's draw for its Flax twin, from a JAX key.

    ``init`` is the torchinit factory's initializer carrying the tensor's layout
    arguments; see :meth:`Initializer._draw_keyed` for the permutation.
    """
    if generator is not None:
        raise InitError(f"{who}: pass either `key` (a JAX-style key) or `generator` (a torch.Generator), not both")
    if not _rnd.is_key(key):
        raise InitError(
            f"{who}: `key` must be a JAX-style key (torchinit.random.key(0), a jax.random.key, or a uint32[2] "
            f"array/tensor), got {type(key).__name__}; for a torch seed use generator=torch.Generator().manual_seed(s)."
        )
    if tensor.is_meta:
        init._twin(tuple(tensor.shape), conv_transpose, who)  # the layout checks only
        return tensor
    values = init._draw_keyed(_rnd.as_key(key), tuple(tensor.shape), tensor.dtype, tensor.device, conv_transpose, who)
    with torch.no_grad():
        tensor.copy_(values)
    return tensor


# --------------------------------------------------------------------------- factories
class Initializer(InitializerBase):
    """A configured initializer: ``init(key, shape, dtype=torch.float32, device=None)``.

    ``shape`` is read in torch's layout (out, in, *k) unless the factory was
    given other ``in_axis``/``out_axis``. ``key`` is:

    - an int seed (a fresh ``torch.Generator`` seeded with it on ``device``) or
      a ``torch.Generator``: the result is the in-place ``name_`` on
      ``torch.empty(shape)`` with that generator (bitwise ``torch.nn.init``
      for torch's own initializers). An int is always a torch seed;
    - a JAX-style key (``torchinit.random.key(0)``, a ``jax.random.key``, a
      uint32[2] array or tensor): the result is jaxinit's draw, bit for bit,
      for the Flax twin (*k, in, out) of ``shape``, permuted back (see
      :meth:`_draw_keyed`); deterministic initializers ignore the key.

    16-bit dtypes are sampled in float32 and cast, as in jaxinit.
    """

    __slots__ = ("_keyed",)
    _package = "torchinit"

    def __init__(self, name: str, args: Mapping[str, Any], impl: Callable[..., Any],
                 keyed: Callable[..., Tensor] | None):
        super().__init__(name, args, impl)
        self._keyed = keyed

    def __call__(self, key, shape: Sequence[int], dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        shape = init_params.check_shape(shape, self.name)
        if not isinstance(dtype, torch.dtype):
            raise InitError(f"{self.name}: `dtype` must be a torch.dtype, got {dtype!r}")
        if self._keyed is not None and _rnd.is_key(key):
            # A JAX key: jaxinit's draw for the Flax twin, bit for bit (see torchinit._src.keyed).
            return self._draw_keyed(_rnd.as_key(key), shape, dtype, device)
        generator = as_generator(key, device, self.name)
        work = torch.float32 if dtype.is_floating_point and dtype.itemsize < 4 else dtype
        tensor = torch.empty(shape, dtype=work, device=device)
        return self._impl(tensor, generator).to(dtype)

    def _twin(self, shape, conv_transpose: bool, who: str):
        """``(perm, layout)``: the Flax twin's shape is ``shape[perm]`` and its layout arguments ``layout``.

        The twin puts the other axes first, in order, then (in, out): torch Linear
        (out, in) -> Dense (in, out); Conv (out, in, *k) -> (*k, in, out). With
        ``conv_transpose`` a torch ConvTranspose weight (in, out, *k) -> Flax
        ConvTranspose (*k, in, out), drawn with ``FLAX_CONV_TRANSPOSE_LAYOUT``.
        Initializers without ``in_axis`` take in = 1 (out_axis 0) or the axis before
        ``out_axis``; without layout arguments, torch's (1, 0). Under 2-D: as is.
        """
        nd = len(shape)
        if nd < 2:
            return list(range(nd)), {"in_axis": -2, "out_axis": -1, "batch_axis": ()}
        args = self.args
        if "in_axis" in args:
            in_axis, out_axis, batch_axis = args["in_axis"], args["out_axis"], args.get("batch_axis", ())
        elif "out_axis" in args:
            out_axis, batch_axis = args["out_axis"], ()
            oax = single_axis(out_axis, "out_axis", nd, who)
            in_axis = 1 if oax == 0 else oax - 1
        else:
            in_axis, out_axis, batch_axis = 1, 0, ()
        ia = single_axis(in_axis, "in_axis", nd, who)
        oa = single_axis(out_axis, "out_axis", nd, who)
        if ia == oa:
            raise InitError(f"{who}: `in_axis` and `out_axis` must differ, got {in_axis} and {out_axis}")
        spatial = [a for a in range(nd) if a not in (ia, oa)]
        perm = spatial + ([oa, ia] if conv_transpose else [ia, oa])
        batch = (batch_axis,) if isinstance(batch_axis, int) else tuple(batch_axis)
        try:
            fb = tuple(spatial.index(b % nd) for b in batch)
        except ValueError:
            raise InitError(f"{who}: `batch_axis` {batch_axis} must not be the in or out axis") from None
        if conv_transpose:
            return perm, {"in_axis": -1, "out_axis": -2, "batch_axis": fb}
        return perm, {"in_axis": -2, "out_axis": -1, "batch_axis": fb}

    def _draw_keyed(self, key, shape, dtype, device, conv_transpose: bool = False, who: str | None = None) -> Tensor:
        """jaxinit's draw from the JAX key ``key`` for the Flax twin of ``shape``, permuted back.

        ``jaxinit.NAME(...)(key, shape[perm])`` with the twin's layout (see
        :meth:`_twin`), then permuted to ``shape``: the same values the in-place
        ``NAME_(tensor, key=key)`` writes. With the Flax layout given explicitly
        (``in_axis=-2, out_axis=-1``) the permutation is the identity.
        """
        who = who or self.name
        if self._keyed is None:
            raise InitError(f"{who}: is deterministic; it draws nothing from a key")
        perm, layout = self._twin(shape, conv_transpose, who)
        values = self._keyed(key, tuple(shape[a] for a in perm), dtype, device, layout)
        if perm == sorted(perm):
            return values
        inverse = sorted(range(len(perm)), key=lambda i: perm[i])
        return values.permute(inverse).contiguous()


def as_generator(key, device, who: str) -> torch.Generator | None:
    if isinstance(key, torch.Generator):
        return key
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return torch.Generator(device=device if device is not None else "cpu").manual_seed(int(key))
    if _rnd.is_key(key):  # deterministic initializers ignore the key
        return None
    raise InitError(
        f"{who}: `key` must be an int seed or a torch.Generator (torch's RNG), or a JAX-style key "
        f"(torchinit.random.key(0), a jax.random.key, or a uint32[2] array/tensor), got {type(key).__name__}; "
        "e.g. init(0, shape), init(torch.Generator().manual_seed(0), shape) or init(torchinit.random.key(0), shape)."
    )
