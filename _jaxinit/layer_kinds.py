"""One weight converter per layer kind, in one registry.

A kind is a class: its torch classes, its Flax class (for Linen auto names), the torch
leaves it reads, how Flax names reveal it, its layout transposes (``layout``) and the two
directions ``to_flax`` / ``to_torch``. Adding a layer kind is one class in its family module
(:mod:`_jaxinit.layer_kinds_linear`, ``_norm``, ``_sequence``, built on
:mod:`_jaxinit.layer_kind_base`) and one entry in :data:`KIND_CLASSES` here; the
discovery (:mod:`_jaxinit.naming`) and the two conversion directions (:mod:`_jaxinit.convert`) never name a kind.

Arrays are numpy arrays. ``to_flax`` returns ``{(collection, relpath): array}``;
``to_torch`` pops the Flax leaves it reads from ``f`` and returns ``{torch leaf: array}``.
"""
from __future__ import annotations

from _jaxinit.layer_kind_base import LayerKind as LayerKind
from _jaxinit.layer_kind_base import Options as Options
from _jaxinit.layer_kinds_linear import Conv, ConvTranspose, Dense, Embed, HFConv1D
from _jaxinit.layer_kinds_norm import BatchNorm, GroupNorm, InstanceNorm, LayerNorm, PReLU, RMSNorm
from _jaxinit.layer_kinds_sequence import GRU, LSTM, MultiHeadAttention

REGISTRY: dict[str, LayerKind] = {}


def register(cls):
    """Add one instance of a :class:`LayerKind` subclass to the registry."""
    kind = cls()
    if kind.name in REGISTRY:
        raise ValueError(f"layer kind {kind.name!r} registered twice")
    REGISTRY[kind.name] = kind
    return cls


# Every layer kind, in the order discovery tries them (the first whose ``module_match`` /
# ``torch_guess`` / ``flax_match`` answers yes wins).
KIND_CLASSES = (Dense, Conv, ConvTranspose, BatchNorm, LayerNorm, InstanceNorm, RMSNorm, PReLU, HFConv1D, GroupNorm,
                Embed, LSTM, GRU, MultiHeadAttention)
for _cls in KIND_CLASSES:
    register(_cls)

KINDS = tuple(REGISTRY)
LAYOUTS = "kind            torch (state_dict)                       Flax (variables)\n" + \
    "\n".join(k.layout for k in REGISTRY.values() if k.layout) + "\n"
