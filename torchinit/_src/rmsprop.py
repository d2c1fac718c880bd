r"""RMSprop: ``torch.optim.RMSprop``, or :class:`OptaxRMSprop` for optax's ``eps_in_sqrt`` /
``initial_scale`` (the torch mirror of :mod:`jaxinit._src.rmsprop`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import OptimizerBase, build_optimizer, count_step, l2_decay, split_schedules


class OptaxRMSprop(OptimizerBase):
    """RMSprop with the optax-convention options ``eps_in_sqrt`` and ``initial_scale``."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False, eps_in_sqrt=False, initial_scale=0.0):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        st = {"step": torch.tensor(0.0),
              "square_avg": torch.full_like(p, group["initial_scale"], memory_format=torch.preserve_format)}
        if group["momentum"] > 0:
            st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["centered"]:
            st["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    def _update(self, group, params, grads, states):
        count_step(states)
        alpha, eps = group["alpha"], group["eps"]
        grads = l2_decay(grads, params, group["weight_decay"])
        sq = [s["square_avg"] for s in states]
        torch._foreach_mul_(sq, alpha)
        torch._foreach_addcmul_(sq, grads, grads, value=1 - alpha)
        var: list[torch.Tensor] | tuple[torch.Tensor, ...]
        upd: list[torch.Tensor] | tuple[torch.Tensor, ...]
        if group["centered"]:
            ga = [s["grad_avg"] for s in states]
            torch._foreach_lerp_(ga, grads, 1 - alpha)
            var = torch._foreach_addcmul(sq, ga, ga, value=-1)
        else:
            var = sq
        if group["eps_in_sqrt"]:
            upd = torch._foreach_add(var, eps)
            torch._foreach_rsqrt_(upd)
            torch._foreach_mul_(upd, grads)
        else:
            den = torch._foreach_sqrt(var)
            torch._foreach_add_(den, eps)
            upd = torch._foreach_div(grads, den)
        if group["momentum"] > 0:
            bufs = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, upd)
            upd = bufs
        torch._foreach_add_(params, upd, alpha=-group["lr"])


def rmsprop(params: Iterable, lr: Any = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0,
            momentum: Any = 0, centered: bool = False, maximize: bool = False, eps_in_sqrt: bool = False,
            initial_scale: Any = 0.0) -> torch.optim.Optimizer:
    """``torch.optim.RMSprop`` (foreach), or :class:`OptaxRMSprop` for ``eps_in_sqrt`` / ``initial_scale``.

    ``rmsprop(p, lr, alpha=0.9, eps_in_sqrt=True)`` is ``optax.rmsprop(lr)`` (constant lr).
    """
    _core.check("rmsprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale)
    params, lr, scheds = split_schedules(params, lr)
    kw = dict(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
              maximize=maximize)
    if eps_in_sqrt or not _core.is_static_zero(initial_scale):
        return build_optimizer(OptaxRMSprop, params, lr, scheds, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale, **kw)
    return build_optimizer(torch.optim.RMSprop, params, lr, scheds, foreach=True, **kw)
