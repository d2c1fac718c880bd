r"""Adagrad: ``torch.optim.Adagrad``, or :class:`OptaxAdagrad` for optax's ``eps_in_sqrt``
(the torch mirror of :mod:`jaxinit._src.adagrad`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import OptimizerBase, build_optimizer, count_step, l2_decay, split_schedules


class OptaxAdagrad(OptimizerBase):
    """Adagrad with the optax-convention option ``eps_in_sqrt`` (see :func:`adagrad`)."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 maximize=False, eps_in_sqrt=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                        eps_in_sqrt=eps_in_sqrt)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        return {"step": torch.tensor(0.0), "sum": torch.full_like(p, group["initial_accumulator_value"],
                                                                  memory_format=torch.preserve_format)}

    def _update(self, group, params, grads, states):
        grads = l2_decay(grads, params, group["weight_decay"])
        sums = [s["sum"] for s in states]
        torch._foreach_addcmul_(sums, grads, grads, value=1)
        steps = count_step(states)
        if len(set(steps)) == 1:  # the usual case: one multi-tensor pass for the group
            clr = group["lr"] / (1 + (steps[0] - 1) * group["lr_decay"])
            if group["eps_in_sqrt"]:
                scale: list[torch.Tensor] | tuple[torch.Tensor, ...] = torch._foreach_add(sums, group["eps"])
                torch._foreach_rsqrt_(scale)
                if group["eps"] > 0:  # optax's 0 where s == 0: times sign(s) in {0, 1} (s >= 0)
                    torch._foreach_mul_(scale, torch._foreach_sign(sums))
                else:  # rsqrt(0) = inf: select instead
                    scale = [torch.where(s > 0, c, torch.zeros_like(c)) for s, c in zip(sums, scale)]
                torch._foreach_mul_(scale, grads)
                torch._foreach_add_(params, scale, alpha=-clr)
            else:
                den = torch._foreach_sqrt(sums)
                torch._foreach_add_(den, group["eps"])
                torch._foreach_addcdiv_(params, grads, den, value=-clr)
            return
        for p, g, s, step in zip(params, grads, sums, steps):
            clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
            if group["eps_in_sqrt"]:
                coef = torch.where(s > 0, torch.rsqrt(s + group["eps"]), torch.zeros_like(s))
                p.add_(coef * g, alpha=-clr)
            else:
                p.addcdiv_(g, s.sqrt().add_(group["eps"]), value=-clr)


def adagrad(params: Iterable, lr: Any = 1e-2, lr_decay: Any = 0, weight_decay: Any = 0,
            initial_accumulator_value: Any = 0, eps: Any = 1e-10, maximize: bool = False,
            eps_in_sqrt: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adagrad`` (foreach), or :class:`OptaxAdagrad` when ``eps_in_sqrt=True``.

    ``adagrad(p, lr, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True)`` is ``optax.adagrad(lr)``.
    """
    _core.check("adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                eps_in_sqrt=eps_in_sqrt)
    params, lr, scheds = split_schedules(params, lr)
    kw = dict(lr_decay=lr_decay, weight_decay=weight_decay, initial_accumulator_value=initial_accumulator_value,
              eps=eps, maximize=maximize)
    if eps_in_sqrt:
        return build_optimizer(OptaxAdagrad, params, lr, scheds, eps_in_sqrt=True, **kw)
    return build_optimizer(torch.optim.Adagrad, params, lr, scheds, foreach=True, **kw)
