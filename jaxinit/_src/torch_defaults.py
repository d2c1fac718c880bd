"""PyTorch's default initialization for Flax layers (Linen and NNX).

Each class here is a subclass of the Flax layer of the same name whose
*default* initializers are the ones the corresponding ``torch.nn`` module uses
in its ``reset_parameters``; everything else (call signature, parameter names
and shapes, outputs) is Flax's. Passing ``kernel_init=``/``bias_init=``/...
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

The fan_in-aware bias. A Flax ``bias_init`` receives only the bias shape, so it
cannot know the kernel's fan_in (jax#4862, flax#1386). The defaults here are
markers (:data:`TORCH_KERNEL`, :data:`TORCH_BIAS`) that the owning layer
resolves: a Linen layer overrides ``Module.param`` and, when asked to create a
parameter whose init is a marker, builds the real initializer from the layer's
kernel layout and, for the bias, the shape of the kernel it has just created
(read back with ``self.get_variable('params', 'kernel')``); an NNX layer knows
its kernel shape at construction and resolves the markers before calling
Flax's ``__init__``. Both go through :func:`_resolve`, so the two APIs share one
formula. Calling a marker directly raises :class:`~jaxinit.InitError`.
"""
from __future__ import annotations

import contextvars
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as _linen
from flax import nnx as _nnx
from flax.core import meta as _meta

from _initcore import FLAX_CONV_TRANSPOSE_LAYOUT, FLAX_LAYOUT
from _initcore.errors import InitError
from _initcore.fans import compute_fans
from jaxinit._src.initializers import kaiming_uniform, normal, uniform, zeros

Array = jax.Array
InitFn = Callable[..., Array]

_SQRT5 = math.sqrt(5)


def _public(module: str, name: str):
    """Give a class its public name: Linen derives submodule names (``Dense_0``)
    from ``type(self).__name__``, so the class must be called ``Dense``."""

    def rename(cls):
        cls.__name__ = cls.__qualname__ = name
        cls.__module__ = module
        return cls

    return rename


# --------------------------------------------------------------------------- markers
class _TorchDefault:
    """Marker for "PyTorch's default for this parameter", resolved by the owning layer.

    ``kind`` is ``'kernel'`` (kaiming_uniform(a=sqrt(5)) in the layer's
    layout), ``'bias'`` (U(+-1/sqrt(fan_in of the kernel))), ``'rnn'``
    (U(+-1/sqrt(hidden))) or ``'mha_in'`` (xavier_uniform of torch's stacked
    in_proj).
    """

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, key, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        raise InitError(
            f"jaxinit PyTorch-default {self.kind} initializer was called outside a "
            "jaxinit.linen / jaxinit.nnx layer: it needs its layer (the kernel's fan_in, the "
            "hidden size or the attention dimensions) to compute its bound. Fix: use it only "
            "as the default of jaxinit.linen.* / jaxinit.nnx.* layers, or pass an explicit "
            "initializer such as jaxinit.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))."
        )

    def __repr__(self) -> str:
        return f"<PyTorch default {self.kind} init>"

    def __eq__(self, other):
        return isinstance(other, _TorchDefault) and other.kind == self.kind

    def __hash__(self):
        return hash(("_TorchDefault", self.kind))


TORCH_KERNEL = _TorchDefault("kernel")
TORCH_BIAS = _TorchDefault("bias")
TORCH_RNN = _TorchDefault("rnn")
TORCH_MHA_IN = _TorchDefault("mha_in")


def torch_bias_bound(kernel_shape: Sequence[int], layout: dict, who: str) -> float:
    """``1 / sqrt(fan_in)`` of the kernel (0 when fan_in is 0), as torch's reset_parameters."""
    fan_in, _ = compute_fans(kernel_shape, **layout, who=who)
    return 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def _resolve(init: InitFn, *, kernel_shape: Sequence[int] | None = None, layout: dict = FLAX_LAYOUT,
             hidden: int | None = None, who: str = "layer") -> InitFn:
    """Turn a :class:`_TorchDefault` marker into the real initializer; pass others through."""
    if not isinstance(init, _TorchDefault):
        return init
    if init.kind == "kernel":
        return kaiming_uniform(a=_SQRT5, in_axis=layout["in_axis"], out_axis=layout["out_axis"],
                               batch_axis=layout.get("batch_axis", ()))
    if init.kind == "bias":
        bound = torch_bias_bound(kernel_shape, layout, who)
        return uniform(-bound, bound)
    if init.kind == "rnn":
        bound = 1 / math.sqrt(hidden) if hidden > 0 else 0.0
        return uniform(-bound, bound)
    raise InitError(f"{who}: the PyTorch-default {init.kind} initializer does not apply to this layer")


# --------------------------------------------------------------------------- Linen
class _TorchParamsMixin:
    """Resolve :class:`_TorchDefault` markers in ``Module.param`` (Linen)."""

    def _torch_layout(self) -> dict:
        return FLAX_LAYOUT

    def param(self, name: str, init_fn, *init_args, **init_kwargs):
        if isinstance(init_fn, _TorchDefault):
            init_fn = self._torch_init(init_fn)
        return super().param(name, init_fn, *init_args, **init_kwargs)

    def _torch_init(self, marker: _TorchDefault) -> InitFn:
        who = type(self).__name__
        if marker.kind == "kernel":
            return _resolve(marker, layout=self._torch_layout(), who=who)

        def bias_init(key, shape, dtype=jnp.float32):
            # Called only when the bias is created, right after the kernel.
            if not self.has_variable("params", "kernel"):
                raise InitError(
                    f"{who}: the PyTorch-default bias needs the layer's kernel to exist first; "
                    "pass an explicit bias_init for this layer."
                )
            kernel_shape = jnp.shape(_meta.unbox(self.get_variable("params", "kernel")))
            return _resolve(marker, kernel_shape=kernel_shape, layout=self._torch_layout(), who=who)(
                key, shape, dtype)

        return bias_init


@_public("jaxinit.linen", "Dense")
class LinenDense(_TorchParamsMixin, _linen.Dense):
    """``flax.linen.Dense`` with ``torch.nn.Linear``'s default initialization.

    kernel (in, out) ~ U(-1/sqrt(in), 1/sqrt(in)) (``kaiming_uniform_(a=sqrt(5))``),
    bias ~ U(-1/sqrt(in), 1/sqrt(in)) with the kernel's fan_in (bound 0 if in == 0).
    Flax's own defaults are lecun_normal (a TRUNCATED normal, var 1/in) and zeros.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> params = tl.Dense(4).init(jax.random.key(0), jnp.ones((1, 3)))["params"]
    >>> bool(jnp.abs(params["bias"]).max() <= 1 / 3 ** 0.5)
    True
    """

    kernel_init: InitFn = TORCH_KERNEL
    bias_init: InitFn = TORCH_BIAS


@_public("jaxinit.linen", "Conv")
class LinenConv(_TorchParamsMixin, _linen.Conv):
    """``flax.linen.Conv`` (1-3d, ``feature_group_count``) with ``torch.nn.Conv{1,2,3}d``'s
    default initialization.

    kernel (*k, in/groups, out) ~ U(+-1/sqrt(fan_in)), fan_in = in/groups * prod(k);
    bias ~ U(+-1/sqrt(fan_in)) with the same fan_in. Flax's own defaults are
    lecun_normal and zeros.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.Conv(8, (3, 3), feature_group_count=2).init(jax.random.key(0), jnp.ones((1, 5, 5, 4)))
    """

    kernel_init: InitFn = TORCH_KERNEL
    bias_init: InitFn = TORCH_BIAS


@_public("jaxinit.linen", "ConvTranspose")
class LinenConvTranspose(_TorchParamsMixin, _linen.ConvTranspose):
    """``flax.linen.ConvTranspose`` with ``torch.nn.ConvTranspose{1,2,3}d``'s default init.

    PyTorch's weight is (in, out/groups, *k) and its positional fan rule gives
    fan_in = out/groups * prod(k) (pytorch#7865): the OUTPUT channels. Here the
    kernel (*k, in, out) (``transpose_kernel=False``) or (*k, out, in)
    (``transpose_kernel=True``) is drawn from U(+-1/sqrt(fan_in)) with
    fan_in = out * prod(k) in both cases, and the bias from the same bound.
    Flax's ConvTranspose has no groups, so this is torch's ``groups=1``.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.ConvTranspose(6, (4,)).init(jax.random.key(0), jnp.ones((1, 7, 3)))
    """

    kernel_init: InitFn = TORCH_KERNEL
    bias_init: InitFn = TORCH_BIAS

    def _torch_layout(self) -> dict:
        return FLAX_LAYOUT if self.transpose_kernel else FLAX_CONV_TRANSPOSE_LAYOUT


def _check_padding_idx(padding_idx, num_embeddings: int, who: str) -> int | None:
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


def _zero_row(init: InitFn, row: int) -> InitFn:
    def init_with_zero_row(key, shape, dtype=jnp.float32):
        return init(key, shape, dtype).at[row].set(0)

    return init_with_zero_row


def _stop_padding_grad(y: Array, inputs: Array, row: int) -> Array:
    """torch's padding row gets no gradient: stop it where ``inputs`` hits that row."""
    hit = jnp.expand_dims(inputs == row, -1)
    return jnp.where(hit, jax.lax.stop_gradient(y), y)


@_public("jaxinit.linen", "Embed")
class LinenEmbed(_linen.Embed):
    """``flax.linen.Embed`` with ``torch.nn.Embedding``'s default init and ``padding_idx``.

    embedding (num_embeddings, features) ~ N(0, 1); Flax's own default is
    N(0, 1/features). ``padding_idx`` (``-num_embeddings <= padding_idx <
    num_embeddings`` or None) zeroes that row at init, whatever
    ``embedding_init`` is, and, as in PyTorch, lookups of that index pass no
    gradient to it (``attend`` is not affected).

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.Embed(10, 4, padding_idx=0).init(jax.random.key(0), jnp.array([0, 3]))
    >>> bool((v["params"]["embedding"][0] == 0).all())
    True
    """

    embedding_init: InitFn = normal(0.0, 1.0)
    padding_idx: int | None = None

    def __post_init__(self):
        _check_padding_idx(self.padding_idx, self.num_embeddings, type(self).__name__)
        super().__post_init__()

    def param(self, name: str, init_fn, *init_args, **init_kwargs):
        row = _check_padding_idx(self.padding_idx, self.num_embeddings, type(self).__name__)
        if name == "embedding" and row is not None:
            init_fn = _zero_row(init_fn, row)
        return super().param(name, init_fn, *init_args, **init_kwargs)

    def __call__(self, inputs: Array) -> Array:
        y = super().__call__(inputs)
        row = _check_padding_idx(self.padding_idx, self.num_embeddings, type(self).__name__)
        if row is None:
            return y
        return _stop_padding_grad(y, jnp.where(inputs < 0, inputs + self.num_embeddings, inputs), row)


@_public("jaxinit.linen", "LayerNorm")
class LinenLayerNorm(_linen.LayerNorm):
    """``flax.linen.LayerNorm`` with ``torch.nn.LayerNorm``'s defaults.

    scale 1 and bias 0 (the same as Flax). Differences from Flax's defaults,
    on purpose: ``epsilon=1e-5`` (torch's eps; Flax uses 1e-6) and
    ``use_fast_variance=False`` (torch computes the two-pass variance; Flax's
    E[x^2] - E[x]^2 loses precision for large means). Pass ``epsilon=1e-6`` to
    get Flax's.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> v = tl.LayerNorm().init(jax.random.key(0), jnp.ones((2, 8)))
    """

    epsilon: float = 1e-5
    use_fast_variance: bool = False


class _HiddenUniform:
    """U(+-1/sqrt(hidden)) with hidden = ``shape[-1]``: every kernel (in, hidden),
    (hidden, hidden) and bias (hidden,) that Flax's Linen cells create has the
    hidden size last."""

    def __call__(self, key, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        hidden = int(shape[-1])
        return _resolve(TORCH_RNN, hidden=hidden, who="torch RNN default")(key, shape, dtype)

    def __repr__(self) -> str:
        return "<PyTorch default RNN init U(+-1/sqrt(hidden))>"

    def __eq__(self, other):
        return isinstance(other, _HiddenUniform)

    def __hash__(self):
        return hash("_HiddenUniform")


_RNN_UNIFORM = _HiddenUniform()

_CELL_DOC = """``flax.linen.{name}`` with ``torch.nn.{name}``'s default initialization.

    Every kernel and bias ~ U(-1/sqrt(H), 1/sqrt(H)), H = ``features`` (torch:
    ``stdv = 1 / sqrt(hidden_size)`` for weight_ih, weight_hh, bias_ih and
    bias_hh). Flax's defaults are lecun_normal input kernels, orthogonal
    recurrent kernels and zero biases.

    Parameter correspondence: Flax keeps ONE bias per gate where torch has
    two ({biases}); each Flax bias has the distribution of one torch bias
    vector, so the effective gate bias (torch's b_ih + b_hh, variance 2/(3H))
    has half torch's variance there.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> cell = tl.{name}(features=4)
    >>> x = jnp.ones((2, 3))
    >>> v = cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(1), x.shape), x)
    """


@_public("jaxinit.linen", "LSTMCell")
class LinenLSTMCell(_linen.LSTMCell):
    __doc__ = _CELL_DOC.format(name="LSTMCell", biases="all four gates: b_i* + b_h*")

    kernel_init: InitFn = _RNN_UNIFORM
    recurrent_kernel_init: InitFn = _RNN_UNIFORM
    bias_init: InitFn = _RNN_UNIFORM


@_public("jaxinit.linen", "GRUCell")
class LinenGRUCell(_linen.GRUCell):
    __doc__ = _CELL_DOC.format(
        name="GRUCell", biases="the r and z gates: b_ir + b_hr, b_iz + b_hz; b_in and b_hn are separate in both")

    kernel_init: InitFn = _RNN_UNIFORM
    recurrent_kernel_init: InitFn = _RNN_UNIFORM
    bias_init: InitFn = _RNN_UNIFORM


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


# Whether the Linen attention call being initialized has torch's stacked in_proj.
_MHA_STACKED: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "jaxinit_mha_stacked", default=None)


class _MhaInProj:
    """Linen q/k/v kernel default: U(+-mha_in_proj_bound), stacking read from the call."""

    def __call__(self, key, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        stacked = _MHA_STACKED.get()
        if stacked is None:
            return TORCH_MHA_IN(key, shape, dtype)  # raises the marker's error
        in_x, out_x = int(shape[0]), int(shape[-1])  # DenseGeneral passes the flat (in, out)
        bound = mha_in_proj_bound(in_x, out_x, stacked)
        return uniform(-bound, bound)(key, shape, dtype)

    def __repr__(self) -> str:
        return "<PyTorch default MultiheadAttention in_proj init>"

    def __eq__(self, other):
        return isinstance(other, _MhaInProj)

    def __hash__(self):
        return hash("_MhaInProj")


_TORCH_LINEAR_KERNEL = kaiming_uniform(a=_SQRT5)


@_public("jaxinit.linen", "MultiHeadDotProductAttention")
class LinenMultiHeadDotProductAttention(_linen.MultiHeadDotProductAttention):
    """``flax.linen.MultiHeadDotProductAttention`` with ``torch.nn.MultiheadAttention``'s
    default initialization.

    - query/key/value kernels: torch's ``xavier_uniform_`` of the stacked
      (3E, E) ``in_proj_weight``, i.e. U(+-sqrt(6 / (E + 3E))) for each, when
      the q, k and v inputs all have width E = ``qkv_features`` (torch's
      default); otherwise U(+-sqrt(6 / (in_x + E))) per projection, as torch's
      separate ``q/k/v_proj_weight`` with ``kdim``/``vdim``.
    - out kernel (E, out) ~ U(+-1/sqrt(E)) (torch's out_proj Linear default).
    - every bias 0 (torch zeroes in_proj_bias and out_proj.bias).

    Flax's own defaults are lecun_normal for all four kernels and zero biases.
    The stacking rule needs the input widths, which Linen learns at call time:
    ``__call__`` records them for the kernel initializers of that call.

    >>> import jax, jax.numpy as jnp, jaxinit.linen as tl
    >>> x = jnp.ones((2, 5, 16))
    >>> v = tl.MultiHeadDotProductAttention(num_heads=4).init(jax.random.key(0), x)
    """

    kernel_init: InitFn = _MhaInProj()
    out_kernel_init: InitFn | None = _TORCH_LINEAR_KERNEL
    bias_init: InitFn = zeros()
    out_bias_init: InitFn | None = zeros()

    def __call__(self, inputs_q: Array, inputs_k: Array | None = None, inputs_v: Array | None = None,
                 *, inputs_kv: Array | None = None, **kwargs):
        k = inputs_kv if inputs_kv is not None else (inputs_k if inputs_k is not None else inputs_q)
        v = inputs_kv if inputs_kv is not None else (inputs_v if inputs_v is not None else k)
        width = self.qkv_features or inputs_q.shape[-1]
        stacked = inputs_q.shape[-1] == k.shape[-1] == v.shape[-1] == width
        token = _MHA_STACKED.set(stacked)
        try:
            return super().__call__(inputs_q, inputs_k, inputs_v, inputs_kv=inputs_kv, **kwargs)
        finally:
            _MHA_STACKED.reset(token)


# --------------------------------------------------------------------------- NNX
@_public("jaxinit.nnx", "Linear")
class NnxLinear(_nnx.Linear):
    """``flax.nnx.Linear`` with ``torch.nn.Linear``'s default initialization.

    kernel (in, out) ~ U(+-1/sqrt(in)); bias ~ U(+-1/sqrt(in)) (bound 0 if
    in == 0). Flax's defaults are lecun_normal (truncated normal, var 1/in) and
    zeros. All other arguments are ``flax.nnx.Linear``'s.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> layer = tn.Linear(3, 4, rngs=nnx.Rngs(0))
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_init: InitFn = TORCH_KERNEL,
                 bias_init: InitFn = TORCH_BIAS, **kwargs: Any):
        shape = (in_features, out_features)
        super().__init__(
            in_features, out_features,
            kernel_init=_resolve(kernel_init, layout=FLAX_LAYOUT, who="Linear"),
            bias_init=_resolve(bias_init, kernel_shape=shape, layout=FLAX_LAYOUT, who="Linear"),
            **kwargs)


def _kernel_size(kernel_size) -> tuple[int, ...]:
    return (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)


@_public("jaxinit.nnx", "Conv")
class NnxConv(_nnx.Conv):
    """``flax.nnx.Conv`` with ``torch.nn.Conv{1,2,3}d``'s default initialization.

    kernel (*k, in/groups, out) ~ U(+-1/sqrt(fan_in)), fan_in = in/groups * prod(k);
    bias ~ U(+-1/sqrt(fan_in)). All other arguments are ``flax.nnx.Conv``'s.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> conv = tn.Conv(4, 8, (3, 3), feature_group_count=2, rngs=nnx.Rngs(0))
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] | None = 1, *, feature_group_count: int = 1,
                 kernel_init: InitFn = TORCH_KERNEL, bias_init: InitFn = TORCH_BIAS, **kwargs: Any):
        shape = _kernel_size(kernel_size) + (in_features // feature_group_count, out_features)
        super().__init__(
            in_features, out_features, kernel_size, strides, feature_group_count=feature_group_count,
            kernel_init=_resolve(kernel_init, layout=FLAX_LAYOUT, who="Conv"),
            bias_init=_resolve(bias_init, kernel_shape=shape, layout=FLAX_LAYOUT, who="Conv"),
            **kwargs)


@_public("jaxinit.nnx", "ConvTranspose")
class NnxConvTranspose(_nnx.ConvTranspose):
    """``flax.nnx.ConvTranspose`` with ``torch.nn.ConvTranspose{1,2,3}d``'s default init.

    fan_in = out * prod(k) (torch's weight is (in, out/groups, *k), pytorch#7865);
    kernel (*k, in, out), or (*k, out, in) with ``transpose_kernel=True``,
    ~ U(+-1/sqrt(fan_in)); bias the same bound. Flax has no groups: torch's groups=1.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> deconv = tn.ConvTranspose(3, 6, (4,), rngs=nnx.Rngs(0))
    """

    def __init__(self, in_features: int, out_features: int, kernel_size: int | Sequence[int],
                 strides: int | Sequence[int] | None = None, *, transpose_kernel: bool = False,
                 kernel_init: InitFn = TORCH_KERNEL, bias_init: InitFn = TORCH_BIAS, **kwargs: Any):
        k = _kernel_size(kernel_size)
        if transpose_kernel:
            shape, layout = k + (out_features, in_features), FLAX_LAYOUT
        else:
            shape, layout = k + (in_features, out_features), FLAX_CONV_TRANSPOSE_LAYOUT
        super().__init__(
            in_features, out_features, kernel_size, strides, transpose_kernel=transpose_kernel,
            kernel_init=_resolve(kernel_init, layout=layout, who="ConvTranspose"),
            bias_init=_resolve(bias_init, kernel_shape=shape, layout=layout, who="ConvTranspose"),
            **kwargs)


@_public("jaxinit.nnx", "Embed")
class NnxEmbed(_nnx.Embed):
    """``flax.nnx.Embed`` with ``torch.nn.Embedding``'s default init and ``padding_idx``.

    embedding ~ N(0, 1) (Flax: N(0, 1/features)); row ``padding_idx`` is zero at
    init and lookups of it pass no gradient, as in PyTorch.

    >>> import jax.numpy as jnp, jaxinit.nnx as tn
    >>> from flax import nnx
    >>> emb = tn.Embed(10, 4, padding_idx=0, rngs=nnx.Rngs(0))
    >>> bool((emb(jnp.array([0])) == 0).all())
    True
    """

    def __init__(self, num_embeddings: int, features: int, *, padding_idx: int | None = None,
                 embedding_init: InitFn = normal(0.0, 1.0), **kwargs: Any):
        row = _check_padding_idx(padding_idx, num_embeddings, "Embed")
        if row is not None:
            embedding_init = _zero_row(embedding_init, row)
        super().__init__(num_embeddings, features, embedding_init=embedding_init, **kwargs)
        self.padding_idx = row

    def __call__(self, inputs: Array) -> Array:
        y = super().__call__(inputs)
        if self.padding_idx is None:
            return y
        return _stop_padding_grad(y, jnp.where(inputs < 0, inputs + self.num_embeddings, inputs),
                                  self.padding_idx)


@_public("jaxinit.nnx", "LayerNorm")
class NnxLayerNorm(_nnx.LayerNorm):
    """``flax.nnx.LayerNorm`` with ``torch.nn.LayerNorm``'s defaults: scale 1, bias 0,
    ``epsilon=1e-5`` (Flax: 1e-6) and ``use_fast_variance=False`` (two-pass
    variance, as torch).

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> ln = tn.LayerNorm(8, rngs=nnx.Rngs(0))
    """

    def __init__(self, num_features: int, *, epsilon: float = 1e-5, use_fast_variance: bool = False,
                 **kwargs: Any):
        super().__init__(num_features, epsilon=epsilon, use_fast_variance=use_fast_variance, **kwargs)


_NNX_CELL_DOC = """``flax.nnx.{name}`` with ``torch.nn.{name}``'s default initialization.

    Every kernel and bias ~ U(-1/sqrt(H), 1/sqrt(H)), H = ``hidden_features``.
    {layout}
    As in :class:`jaxinit.linen.{name}`, Flax keeps one bias where torch sums
    two ({biases}), so those effective gate biases have half torch's variance.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> cell = tn.{name}(3, 4, rngs=nnx.Rngs(0))
    """


class _NnxCellMixin:
    def __init__(self, in_features: int, hidden_features: int, *, kernel_init: InitFn = TORCH_RNN,
                 recurrent_kernel_init: InitFn = TORCH_RNN, bias_init: InitFn = TORCH_RNN, **kwargs: Any):
        who = type(self).__name__
        super().__init__(
            in_features, hidden_features,
            kernel_init=_resolve(kernel_init, hidden=hidden_features, who=who),
            recurrent_kernel_init=_resolve(recurrent_kernel_init, hidden=hidden_features, who=who),
            bias_init=_resolve(bias_init, hidden=hidden_features, who=who),
            **kwargs)


@_public("jaxinit.nnx", "LSTMCell")
class NnxLSTMCell(_NnxCellMixin, _nnx.LSTMCell):
    __doc__ = _NNX_CELL_DOC.format(
        name="LSTMCell", layout="Kernels per gate: ii/if_/ig/io (in, H), hi/hf/hg/ho (H, H).",
        biases="all gates")


@_public("jaxinit.nnx", "GRUCell")
class NnxGRUCell(_NnxCellMixin, _nnx.GRUCell):
    __doc__ = _NNX_CELL_DOC.format(
        name="GRUCell",
        layout="Stacked kernels: dense_i (in, 3H) with bias (3H,), dense_h (H, 3H) without bias; NNX's "
               "GRU has no b_hn at all (Linen's has).",
        biases="r and z gates")


@_public("jaxinit.nnx", "MultiHeadAttention")
class NnxMultiHeadAttention(_nnx.MultiHeadAttention):
    """``flax.nnx.MultiHeadAttention`` with ``torch.nn.MultiheadAttention``'s default init.

    query/key/value kernels ~ U(+-sqrt(6 / (E + 3E))) (torch's stacked (3E, E)
    ``in_proj_weight`` drawn by ``xavier_uniform_`` as one matrix) when
    in_features == in_kv_features == qkv_features = E and num_kv_heads ==
    num_heads; otherwise each projection (in_x, width) ~ U(+-sqrt(6 / (in_x +
    width))), as torch's separate q/k/v_proj_weight. The out kernel
    ~ U(+-1/sqrt(qkv_features)); all biases 0. Flax: lecun_normal and zeros.

    >>> import jaxinit.nnx as tn
    >>> from flax import nnx
    >>> mha = tn.MultiHeadAttention(num_heads=4, in_features=16, rngs=nnx.Rngs(0), decode=False)
    """

    def __init__(self, num_heads: int, in_features: int, qkv_features: int | None = None,
                 out_features: int | None = None, num_kv_heads: int | None = None,
                 in_kv_features: int | None = None, *, kernel_init: InitFn = TORCH_MHA_IN,
                 out_kernel_init: InitFn | None = _TORCH_LINEAR_KERNEL, bias_init: InitFn = zeros(),
                 out_bias_init: InitFn | None = zeros(), **kwargs: Any):
        if isinstance(kernel_init, _TorchDefault) and kernel_init.kind == "mha_in":
            width = qkv_features if qkv_features is not None else in_features
            kv_in = in_kv_features if in_kv_features is not None else in_features
            kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
            stacked = in_features == kv_in == width and kv_heads == num_heads

            def kernel_init(key, shape, dtype=jnp.float32):
                bound = mha_in_proj_bound(int(shape[0]), int(shape[-1]), stacked)
                return uniform(-bound, bound)(key, shape, dtype)

        super().__init__(num_heads, in_features, qkv_features, out_features, num_kv_heads, in_kv_features,
                         kernel_init=kernel_init, out_kernel_init=out_kernel_init, bias_init=bias_init,
                         out_bias_init=out_bias_init, **kwargs)
