"""Porting a model: ``suggest_mapping``, and ``twin_check``, ``compare_layers``, ``audit``
(mirror of :mod:`jaxinit._src.porting`; the last three are the one implementation in
``_jaxinit.jax_and_torch``, which imports jax and flax only when called)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from _jaxinit import suggest as _suggest
from _jaxinit.jax_and_torch import audit as audit  # noqa: F401
from _jaxinit.jax_and_torch import compare_layers as compare_layers  # noqa: F401
from _jaxinit.jax_and_torch import twin_check as twin_check  # noqa: F401
from _jaxinit.jax_and_torch.audit import template_call_order as _order
from torchinit._src.convert import template_spec, torch_source


def suggest_mapping(torch_model: Any, flax_template: Any, *, kinds: Mapping[str, Any] | None = None,
                    mapping: Mapping[str, str] | None = None, flax_module: Any = None, flax_inputs: Any = None):
    """Mirror of :func:`jaxinit.suggest_mapping` (same rule and result); ``flax_template`` is
    Flax variables as nested dicts of array-likes (``flax_module`` needs jax at call time).

    >>> import numpy as np, torch, torchinit
    >>> m = torch.nn.Sequential(torch.nn.Linear(3, 4))
    >>> torchinit.suggest_mapping(m, {"params": {"proj": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}}})
    {'0': 'proj'}
    """
    who = "torchinit.suggest_mapping"
    arrays, groups, containers = torch_source(torch_model, kinds, who)
    sug = _suggest.suggest(groups, containers, template_spec(flax_template, who), mapping,
                           {k: np.shape(v) for k, v in arrays.items()}, _order(flax_module, flax_inputs, flax_template))
    sug.update(dict(mapping or {}))
    return sug
