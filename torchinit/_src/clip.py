"""torch's gradient clipping under the names of :mod:`jaxinit.optim` (the mirror's functions).

``clip_grad_norm(parameters, max_norm, ...)`` is ``torch.nn.utils.clip_grad_norm_`` (in place on
``.grad``, returns the total norm) after the same argument checks as the JAX transformation;
``clip_grad_value(parameters, clip_value)`` is ``torch.nn.utils.clip_grad_value_``.
"""
from __future__ import annotations

from typing import Iterable

import torch

from _jaxinit import clip as _core


def clip_grad_norm(parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> torch.Tensor:
    r"""``torch.nn.utils.clip_grad_norm_``: scale every ``.grad`` by ``min(max_norm / (N + 1e-6), 1)``.

    ``N`` is the ``norm_type``-norm of the per-tensor norms (returned). Mirror of
    :func:`jaxinit.optim.clip_grad_norm` (an optax transformation there).
    """
    max_norm, norm_type = _core.check_clip_grad_norm("clip_grad_norm", max_norm, norm_type, error_if_nonfinite)
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value(parameters: Iterable[torch.Tensor] | torch.Tensor, clip_value: float,
                    foreach: bool | None = None) -> None:
    """``torch.nn.utils.clip_grad_value_``: clamp every ``.grad`` to ``[-clip_value, clip_value]``."""
    torch.nn.utils.clip_grad_value_(parameters, _core.check_clip_grad_value("clip_grad_value", clip_value), foreach)
