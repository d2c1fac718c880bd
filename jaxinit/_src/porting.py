"""Porting a model: ``suggest_mapping``, and ``twin_check``, ``compare_layers``, ``audit``.

The last three are the one implementation in ``_jaxinit.jax_and_torch`` (both frameworks
at call time), shared with :mod:`torchinit`; importing this module imports no torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from _jaxinit import suggest as _suggest
from _jaxinit.arrays import flatten_flax, shape_dtypes
from _jaxinit.jax_and_torch import audit as audit  # noqa: F401
from _jaxinit.jax_and_torch import compare_layers as compare_layers  # noqa: F401
from _jaxinit.jax_and_torch import twin_check as twin_check  # noqa: F401
from _jaxinit.jax_and_torch.audit import template_call_order as _order
from jaxinit._src.convert import is_nnx, nnx_flat, torch_source, unbox


def suggest_mapping(torch_model: Any, flax_template: Any, *, kinds: Mapping[str, Any] | None = None,
                    mapping: Mapping[str, str] | None = None, flax_module: Any = None, flax_inputs: Any = None):
    r"""A ``mapping=`` for :func:`from_torch_state_dict` / :func:`to_torch_state_dict` that pairs
    the layers the default naming rule leaves unmatched.

    Unmatched torch layers (``named_modules`` or state-dict order) and unmatched Flax
    layers (the template's order: Linen creates variables in execution order) are paired
    per layer kind, in order, when their converted shapes agree; otherwise only shapes
    that occur once on each side pair. Layers with the same shapes that could pair in
    more than one way are never guessed: they are listed in ``.ambiguous``.

    Args:
      torch_model: a torch module (its types give the kinds) or a state dict.
      flax_template: Flax variables (``model.init`` or ``jax.eval_shape`` output) or an
        NNX module.
      kinds, mapping: as in :func:`from_torch_state_dict` (``mapping`` entries are kept
        and only the rest is suggested).
      flax_module, flax_inputs: the Linen (or Hugging Face Flax) model and inputs in
        Flax's layout: the order its modules run in (traced under ``jax.eval_shape``, no
        computation) replaces the template's order, which ``jax.eval_shape`` and ``jit``
        sort alphabetically (``model.init`` outside jit keeps the creation order).

    Returns:
      A dict ``{torch prefix: flax path}`` (pass it as ``mapping=``) with attributes
      ``ambiguous``, ``unmatched_torch``, ``unmatched_flax``.

    >>> variables = jaxinit.from_torch_state_dict(resnet, template, mapping=jaxinit.suggest_mapping(resnet, template))  # doctest: +SKIP
    """
    who = "jaxinit.suggest_mapping"
    arrays, groups, containers = torch_source(torch_model, kinds, who)
    flat = nnx_flat(flax_template)[0] if is_nnx(flax_template) else flatten_flax(unbox(flax_template), who)
    spec = shape_dtypes(flat)
    sug = _suggest.suggest(groups, containers, spec, mapping, {k: np.shape(v) for k, v in arrays.items()},
                           _order(flax_module, flax_inputs, flax_template))
    sug.update(dict(mapping or {}))
    return sug
