r"""Adam and AdamW: torch's classes, or :class:`OptaxAdam` for optax's ``eps_root`` /
``amsgrad_bias_corrected`` (the torch mirror of :mod:`jaxinit._src.adam`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import OptimizerBase, build_optimizer, count_step, l2_decay, split_schedules


class OptaxAdam(OptimizerBase):
    """Adam / AdamW with the optax-convention options ``eps_root`` and ``amsgrad_bias_corrected``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 maximize=False, eps_root=0.0, amsgrad_bias_corrected=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, eps_root=eps_root, amsgrad_bias_corrected=amsgrad_bias_corrected,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        st = {"step": torch.tensor(0.0), "exp_avg": z(), "exp_avg_sq": z()}
        if group["amsgrad"]:
            st["max_exp_avg_sq"] = z()
        return st

    def _update(self, group, params, grads, states):
        b1, b2 = group["betas"]
        lr, wd, eps, eps_root = group["lr"], group["weight_decay"], group["eps"], group["eps_root"]
        if group["decoupled_weight_decay"]:
            if wd != 0:
                torch._foreach_mul_(params, 1 - lr * wd)
        else:
            grads = l2_decay(grads, params, wd)
        m = [s["exp_avg"] for s in states]
        v = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(m, grads, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        steps = count_step(states)
        if len(set(steps)) == 1:  # the usual case: one multi-tensor pass for the group
            bc1, bc2 = 1 - b1 ** steps[0], 1 - b2 ** steps[0]
            if group["amsgrad"] and group["amsgrad_bias_corrected"]:
                vmax = [s["max_exp_avg_sq"] for s in states]
                torch._foreach_maximum_(vmax, torch._foreach_div(v, bc2))
                denom = torch._foreach_add(vmax, eps_root)
            else:
                vv = v
                if group["amsgrad"]:
                    vv = [s["max_exp_avg_sq"] for s in states]
                    torch._foreach_maximum_(vv, v)
                denom = torch._foreach_div(vv, bc2)
                torch._foreach_add_(denom, eps_root)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, value=-lr / bc1)
            return
        for p, mi, vi, st, step in zip(params, m, v, states, steps):
            bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
            if group["amsgrad"] and group["amsgrad_bias_corrected"]:
                vmax = st["max_exp_avg_sq"]
                torch.maximum(vmax, vi / bc2, out=vmax)
                denom = (vmax + eps_root).sqrt_().add_(eps)
            else:
                vv = vi
                if group["amsgrad"]:
                    vv = st["max_exp_avg_sq"]
                    torch.maximum(vv, vi, out=vv)
                denom = (vv / bc2 + eps_root).sqrt_().add_(eps)
            p.addcdiv_(mi, denom, value=-lr / bc1)


def _adam_family(who, cls, decoupled, params, lr, betas, eps, weight_decay, amsgrad, maximize, eps_root,
                 amsgrad_bias_corrected):
    _core.check(who, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                eps_root=eps_root, amsgrad_bias_corrected=amsgrad_bias_corrected)
    params, lr, scheds = split_schedules(params, lr)
    kw = dict(betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    if not _core.is_static_zero(eps_root) or amsgrad_bias_corrected:
        return build_optimizer(OptaxAdam, params, lr, scheds, eps_root=eps_root,
                      amsgrad_bias_corrected=amsgrad_bias_corrected, decoupled_weight_decay=decoupled, **kw)
    return build_optimizer(cls, params, lr, scheds, foreach=True, **kw)


def adam(params: Iterable, lr: Any = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
         amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
         amsgrad_bias_corrected: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (foreach), or :class:`OptaxAdam` for ``eps_root`` / ``amsgrad_bias_corrected``."""
    return _adam_family("adam", torch.optim.Adam, False, params, lr, betas, eps, weight_decay, amsgrad,
                        maximize, eps_root, amsgrad_bias_corrected)


def adamw(params: Iterable, lr: Any = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 1e-2, amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
          amsgrad_bias_corrected: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` (foreach), or :class:`OptaxAdam` (decoupled) for the optax options."""
    return _adam_family("adamw", torch.optim.AdamW, True, params, lr, betas, eps, weight_decay, amsgrad,
                        maximize, eps_root, amsgrad_bias_corrected)
