"""The torch mirror of :func:`jaxinit.optim.sparse_adam`: ``torch.optim.SparseAdam`` itself.

torch's SparseAdam needs sparse gradients (``nn.Embedding(sparse=True)``); the rows
present in them are what ``row_mask`` states on the JAX side.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim_checks as checks
from torchinit._src.optim_common import build_optimizer, split_schedules


def sparse_adam(params: Iterable, lr: Any = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8,
                maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.SparseAdam(params, lr, betas, eps, maximize)``; ``lr`` may be a schedule."""
    checks.check_sparse_adam("sparse_adam", lr, betas, eps, maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.SparseAdam, params, lr, scheds, betas=tuple(betas), eps=eps, maximize=maximize)
