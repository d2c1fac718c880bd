"""What every layer kind is built from: :class:`LayerKind` (the description of one kind),
:class:`Options` (one conversion call's options) and the helpers the kinds share.

The kinds themselves live in one module per family (:mod:`_jaxinit.layer_kinds_linear`,
:mod:`_jaxinit.layer_kinds_norm`, :mod:`_jaxinit.layer_kinds_sequence`); the registry that
lists them is :mod:`_jaxinit.layer_kinds`.

Arrays are numpy arrays. ``to_flax`` returns ``{(collection, relpath): array}``;
``to_torch`` pops the Flax leaves it reads from ``f`` and returns ``{torch leaf: array}``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import numpy as np

PARAMS = "params"


class Options(NamedTuple):
    """Options of one conversion call, read by the kinds."""

    batchnorm: str = "torch"
    merge_rnn_biases: bool = False
    transpose_kernel: bool = False
    torch_expects: Any = None  # set of torch leaves the torch template holds (None: no template)
    fpath: tuple = ()  # the Flax path of the layer being converted (for messages)
    has: Callable | None = None  # has(relpath[, shape_dim]) probe of the Flax template (None: no template)
    gradients: bool = False  # the arrays are gradients (twin_check): a merged RNN bias takes ONE of torch's two
    shared: Any = None  # per-conversion facts the kinds settle across layers ({kind: value}, e.g. conv1d's layout)


class LayerKind:
    """Base class: the description of one layer kind (see the module docstring)."""

    name: str = ""
    flax_class: str = ""  # Linen auto name prefix: ``Dense`` -> ``Dense_0``
    torch_classes: tuple = ()  # torch.nn class names (anywhere in the MRO)
    torch_leaves: tuple = ()  # canonical torch leaves, in state_dict order
    extra_leaves: tuple = ()  # further torch leaves the kind reads (alternatives, refused extras)
    required: tuple = ()  # leaves without which the layer cannot convert (any one of each tuple entry)
    rnn: bool = False  # torch packs several layers (``_l0``, ``_l1_reverse``) in one module
    owns_children: bool = False  # the Flax layer is a module with sub-modules (cells, attention)
    layout: str = ""  # one LAYOUTS row

    def consumed(self) -> set[str]:
        return set(self.torch_leaves) | set(self.extra_leaves)

    def missing(self, t: dict) -> list[str]:
        """Required leaves absent from ``t`` (for each alternative group, its first name)."""
        out = []
        for req in self.required:
            alts = (req,) if isinstance(req, str) else req
            if not any(a in t for a in alts):
                out.append(alts[0])
        return out

    def module_options(self, module) -> dict:
        """Options read from the torch module (duck-typed)."""
        return {}

    def module_error(self, module) -> str | None:
        return None

    def module_match(self, module) -> bool:
        """Whether a torch module that no registered class names is this kind (duck-typed)."""
        return False

    def flax_match(self, kids: set, leaves: dict) -> bool:
        """Whether a Flax module with sub-module names ``kids`` and leaves ``{name: ndim}`` is this kind."""
        return False

    def torch_guess(self, leaves: Mapping[str, str], shapes: Mapping[str, tuple]) -> bool:
        """Whether state-dict leaves ``{leaf: full key}`` (shapes by full key) are this kind by default."""
        return False

    def to_flax(self, g, t: dict, problems, opts: Options) -> dict:
        raise NotImplementedError

    def to_torch(self, g, f: dict, problems, opts: Options) -> dict:
        raise NotImplementedError


REGISTRY: dict[str, LayerKind] = {}

# --------------------------------------------------------------------------- helpers
def leaf_name(g, leaf: str) -> str:
    return g.keys.get(leaf) or (f"{g.id}.{leaf}" if g.id else leaf)


def spatial_dims(nd: int) -> tuple[int, ...]:
    return tuple(range(2, nd))


def pop_leaf(f: dict, *rel, coll=PARAMS):
    return f.pop((coll, rel), None)


def affine_to_flax(t: dict) -> dict:
    out = {}
    if "weight" in t:
        out[(PARAMS, ("scale",))] = t["weight"]
    if "bias" in t:
        out[(PARAMS, ("bias",))] = t["bias"]
    return out


def affine_to_torch(f: dict) -> dict:
    out = {}
    s, b = pop_leaf(f, "scale"), pop_leaf(f, "bias")
    if s is not None:
        out["weight"] = s
    if b is not None:
        out["bias"] = b
    return out


def merge_bias(a, b, name_a: str, name_b: str, merge: bool, problems, gradients: bool = False):
    """Flax keeps one bias where torch has two: exact when one is zero, else a sum (asked for).

    Gradients (``gradients=True``): torch's ``bias_ih`` and ``bias_hh`` of one gate enter the
    same pre-activation, so each has the gradient of Flax's single bias; it is ``bias_ih``'s
    (their sum would be twice the value)."""
    if a is None and b is None:
        return None
    if gradients:
        return a if a is not None else b
    if b is None or not np.any(b):
        return a if a is not None else np.zeros(b.shape, b.dtype)
    if a is None or not np.any(a):
        return b
    if not merge:
        problems.add("values Flax cannot hold exactly",
                     f"{name_a} and {name_b} are both nonzero: Flax's cell has one bias there, so it "
                     "would be their sum (the reverse conversion puts the sum in bias_ih and zeros in "
                     "bias_hh). Pass merge_rnn_biases=True to accept the sum.")
        return a
    return (a.astype(np.float64) + b.astype(np.float64)).astype(a.dtype) if a.dtype.itemsize < 8 else a + b


def rnn_bias_out(out: dict, b: np.ndarray, g, problems, opts: Options) -> None:
    """Flax's single gate bias -> torch's bias_ih (bias_hh zeros); a torch layer built with
    bias=False takes it only when it is zero."""
    if opts.torch_expects is None or "bias_ih" in opts.torch_expects:
        out["bias_ih"], out["bias_hh"] = b, np.zeros_like(b)
    elif np.any(b):
        problems.add("values torch cannot hold exactly",
                     f"{g.id}: the Flax cell's gate biases are nonzero but the torch layer has bias=False")



def direct_params(module) -> dict:
    return dict(module.named_parameters(recurse=False)) if hasattr(module, "named_parameters") else {}

