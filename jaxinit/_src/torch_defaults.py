"""PyTorch's default initialization for Flax layers: the part Linen and NNX share.

The layers themselves are in :mod:`jaxinit._src.torch_defaults_linen` (``jaxinit.linen``)
and :mod:`jaxinit._src.torch_defaults_nnx` (``jaxinit.nnx``). Each is a subclass of the
Flax layer of the same name whose *default* initializers are the ones the corresponding
``torch.nn`` module uses in its ``reset_parameters``; everything else (call signature,
parameter names and shapes, outputs) is Flax's. Passing ``kernel_init=``/``bias_init=``/...
overrides the PyTorch default exactly as in Flax.

PyTorch defaults reproduced (torch 2.13, ``torch/nn/modules``):

==========================  ==============================================================
torch module                default
==========================  ==============================================================
Linear, Conv{1,2,3}d        weight ``kaiming_uniform_(a=sqrt(5))`` = U(+-1/sqrt(fan_in));
                            bias U(+-1/sqrt(fan_in)) with the WEIGHT's fan_in (0 if fan_in=0)
ConvTranspose{1,2,3}d       the same, fan_in = out/groups * prod(k) (pytorch#7865)
Embedding                   N(0, 1); row ``padding_idx`` zero
LayerNorm                   weight 1, bias 0; eps 1e-5, two-pass variance
LSTMCell, GRUCell           every weight and bias U(+-1/sqrt(hidden))
MultiheadAttention          in_proj (3E, E) ``xavier_uniform_`` as ONE matrix, so each of
                            q/k/v has bound sqrt(6/(E + 3E)); biases 0; out_proj weight
                            U(+-1/sqrt(E))
==========================  ==============================================================

One mechanism for the defaults that depend on the layer. A Flax initializer receives
only ``(key, shape, dtype)``, so it cannot know the kernel's fan_in when it draws a bias
(jax#4862, flax#1386), the hidden size of a cell, or whether torch would stack the q/k/v
projections. The defaults here are markers (:class:`TorchDefault`) that resolve
themselves when called, from the :class:`LayerContext` of the jaxinit layer that is
creating its parameters: the layer makes its context active (:func:`creating_parameters`)
around Flax's parameter creation (Linen: around ``__call__``; NNX: around ``__init__``),
which also covers parameters that Flax creates in child modules (the Dense layers inside a
Linen cell, the projections of an attention layer). :func:`resolve` holds the one formula
per default. Calling a marker outside such a layer raises :class:`~jaxinit.InitError`.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from _jaxinit import FLAX_LAYOUT
from _jaxinit.errors import InitError
from _jaxinit.fans import compute_fans
from jaxinit._src.initializers import kaiming_uniform, uniform

Array = jax.Array
InitFn = Callable[..., Array]

_SQRT5 = math.sqrt(5)
# torch.nn.Linear's weight default, for layers whose kernel is always a plain Linear weight.
TORCH_LINEAR_KERNEL = kaiming_uniform(a=_SQRT5)


@dataclasses.dataclass(frozen=True)
class LayerContext:
    """What a PyTorch default needs to know about the layer creating the parameter.

    ``layout``: the kernel layout (fan axes). ``kernel_shape``: returns the shape of the
    kernel whose fan_in bounds the bias. ``hidden``: a recurrent cell's hidden size.
    ``mha_stacked``: whether torch would draw the q/k/v projections as one stacked
    in_proj matrix (all inputs of width E).
    """

    who: str
    layout: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(FLAX_LAYOUT))
    kernel_shape: Callable[[], Sequence[int]] | None = None
    hidden: int | None = None
    mha_stacked: bool | None = None


_ACTIVE: contextvars.ContextVar[LayerContext | None] = contextvars.ContextVar(
    "jaxinit_torch_default_layer", default=None)


@contextlib.contextmanager
def creating_parameters(context: LayerContext) -> Iterator[None]:
    """Make ``context`` the one markers resolve against while the layer creates parameters."""
    token = _ACTIVE.set(context)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


class TorchDefault:
    """Marker for "PyTorch's default for this parameter", resolved by the active layer.

    ``kind`` is ``'kernel'`` (kaiming_uniform(a=sqrt(5)) in the layer's layout),
    ``'bias'`` (U(+-1/sqrt(fan_in of the kernel))), ``'rnn'`` (U(+-1/sqrt(hidden))) or
    ``'mha_in'`` (xavier_uniform of torch's stacked in_proj).
    """

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        context = _ACTIVE.get()
        if context is None:
            raise InitError(
                f"jaxinit PyTorch-default {self.kind} initializer was called outside a "
                "jaxinit.linen / jaxinit.nnx layer: it needs its layer (the kernel's fan_in, the "
                "hidden size or the attention dimensions) to compute its bound. Fix: use it only "
                "as the default of jaxinit.linen.* / jaxinit.nnx.* layers, or pass an explicit "
                "initializer such as jaxinit.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))."
            )
        return resolve(self.kind, context, shape)(key, shape, dtype)

    def __repr__(self) -> str:
        return f"<PyTorch default {self.kind} init>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TorchDefault) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash(("TorchDefault", self.kind))


TORCH_KERNEL = TorchDefault("kernel")
TORCH_BIAS = TorchDefault("bias")
TORCH_RNN = TorchDefault("rnn")
TORCH_MHA_IN = TorchDefault("mha_in")


def torch_bias_bound(kernel_shape: Sequence[int], layout: Mapping[str, Any], who: str) -> float:
    """``1 / sqrt(fan_in)`` of the kernel (0 when fan_in is 0), as torch's reset_parameters."""
    fan_in, _ = compute_fans(kernel_shape, **layout, who=who)
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def mha_in_proj_bound(in_x: int, out_x: int, stacked: bool) -> float:
    """The ``xavier_uniform_`` bound torch's MultiheadAttention gives a q/k/v projection.

    When every input has the embedding width E (torch's ``_qkv_same_embed_dim``)
    torch draws the stacked (3E, E) ``in_proj_weight`` as ONE matrix, so each
    projection gets bound sqrt(6 / (E + 3E)). Otherwise (kdim/vdim given) each
    of q_proj_weight, k_proj_weight, v_proj_weight is its own (E, in_x) matrix:
    bound sqrt(6 / (in_x + E)).
    """
    total = in_x + (3 * out_x if stacked else out_x)
    return math.sqrt(6.0 / float(total)) if total > 0 else 0.0


def resolve(kind: str, context: LayerContext, shape: Sequence[int]) -> InitFn:
    """The real initializer of the default ``kind`` for a parameter of ``shape`` in ``context``."""
    who = context.who
    if kind == "kernel":
        layout = context.layout
        return kaiming_uniform(a=_SQRT5, in_axis=layout["in_axis"], out_axis=layout["out_axis"],
                               batch_axis=layout.get("batch_axis", ()))
    if kind == "bias" and context.kernel_shape is not None:
        bound = torch_bias_bound(context.kernel_shape(), context.layout, who)
    elif kind == "rnn" and context.hidden is not None:
        bound = 1 / math.sqrt(context.hidden) if context.hidden > 0 else 0.0
    elif kind == "mha_in" and context.mha_stacked is not None:
        # DenseGeneral passes the flat (in, out) shape of a projection.
        bound = mha_in_proj_bound(int(shape[0]), int(shape[-1]), context.mha_stacked)
    else:
        raise InitError(f"{who}: the PyTorch-default {kind} initializer does not apply to this layer; "
                        "pass an explicit initializer for this parameter.")
    return uniform(-bound, bound)


def check_padding_idx(padding_idx: Any, num_embeddings: int, who: str) -> int | None:
    """torch.nn.Embedding's rule: -num_embeddings <= padding_idx < num_embeddings."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
        raise InitError(f"{who}: `padding_idx` must be an int or None, got {padding_idx!r}")
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise InitError(
            f"{who}: `padding_idx`={padding_idx} must be within num_embeddings: accepted "
            f"{-num_embeddings}..{num_embeddings - 1} (negative counts from the end, as torch), or None."
        )
    return padding_idx % num_embeddings


def zero_row(init: InitFn, row: int) -> InitFn:
    """``init`` with row ``row`` set to 0 (torch's padding_idx row)."""
    def init_with_zero_row(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        return init(key, shape, dtype).at[row].set(0)

    return init_with_zero_row


def stop_padding_grad(y: Array, inputs: Array, num_embeddings: int, row: int) -> Array:
    """torch's padding row gets no gradient: stop it where ``inputs`` (negative counts from
    the end) hits that row."""
    hit = jnp.expand_dims(jnp.where(inputs < 0, inputs + num_embeddings, inputs) == row, -1)
    return jnp.where(hit, jax.lax.stop_gradient(y), y)
