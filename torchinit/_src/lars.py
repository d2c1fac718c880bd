r"""LARS (torch has none; the torch mirror of :mod:`jaxinit._src.lars`)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from _jaxinit import optim as _core
from torchinit._src.optim_common import OptimizerBase, build_optimizer, split_schedules


def _mask_of(mask, p) -> bool:
    return bool(mask(p)) if callable(mask) else bool(mask)


class LARS(OptimizerBase):
    r"""LARS (You et al. 2017), the mirror of :func:`jaxinit.optim.lars`.

    Per parameter tensor ``w``: :math:`d = g + \beta w`,
    :math:`\lambda = \eta\lVert w\rVert / (\lVert g\rVert + \beta\lVert w\rVert + \epsilon)`
    (``decay_in_norm``: :math:`\eta\lVert w\rVert/(\lVert d\rVert+\epsilon)`, optax's form;
    1 where a norm is 0), :math:`v = \mu v + \gamma\lambda d`,
    :math:`w \leftarrow w - v` (nesterov: :math:`w \leftarrow w - (\gamma\lambda d + \mu v)`).
    ``weight_decay_mask`` / ``trust_ratio_mask``: a bool or ``tensor -> bool``
    (e.g. ``lambda p: p.ndim > 1`` to exclude biases and norm scales).
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, eps=0.0,
                 nesterov=False, decay_in_norm=False, weight_decay_mask=True, trust_ratio_mask=True):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        eps=eps, nesterov=nesterov, decay_in_norm=decay_in_norm,
                        weight_decay_mask=weight_decay_mask, trust_ratio_mask=trust_ratio_mask)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _update(self, group, params, grads, states):
        lr, mu, eta, eps = group["lr"], group["momentum"], group["trust_coefficient"], group["eps"]
        for p, g, st in zip(params, grads, states):
            wd = group["weight_decay"] if _mask_of(group["weight_decay_mask"], p) else 0.0
            d = g + wd * p if wd != 0 else g
            if _mask_of(group["trust_ratio_mask"], p):
                w_norm = torch.linalg.vector_norm(p)
                if group["decay_in_norm"]:
                    den = torch.linalg.vector_norm(d)
                else:
                    den = torch.linalg.vector_norm(g) + wd * w_norm
                ratio = torch.where((w_norm == 0) | (den == 0), torch.ones_like(w_norm), eta * w_norm / (den + eps))
                d = d * ratio
            buf = st["momentum_buffer"]
            step = d * lr
            buf.mul_(mu).add_(step)
            p.sub_(step + mu * buf if group["nesterov"] else buf)


def lars(params: Iterable, lr: Any, momentum: Any = 0.9, weight_decay: Any = 0.0, trust_coefficient: Any = 0.001,
         eps: Any = 0.0, nesterov: bool = False, decay_in_norm: bool = False, weight_decay_mask: Any = True,
         trust_ratio_mask: Any = True) -> torch.optim.Optimizer:
    """:class:`LARS`, the mirror of :func:`jaxinit.optim.lars` (masks: bool or ``tensor -> bool``)."""
    _core.check("lars", lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps,
                trust_coefficient=trust_coefficient, nesterov=nesterov, decay_in_norm=decay_in_norm)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(LARS, params, lr, scheds, momentum=momentum, weight_decay=weight_decay,
                  trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov, decay_in_norm=decay_in_norm,
                  weight_decay_mask=weight_decay_mask, trust_ratio_mask=trust_ratio_mask)
