r"""The torch mirror of :mod:`jaxinit.optim`: same factories, ``params`` first.

``torchinit.optim.adam(model.parameters(), 1e-3)`` returns a real
``torch.optim.Optimizer``:

* torch's own class (``torch.optim.SGD``, ``Adagrad``, ``RMSprop``, ``Adam``,
  ``AdamW``, ``NAdam``, ``RAdam``, ``Adamax``, ``Adadelta``, ``Rprop``, ``ASGD``) with ``foreach=True`` (torch's multi-tensor path) when the
  configuration is plain torch;
* a subclass of :class:`OptimizerBase` (``OptaxAdagrad``, ``OptaxRMSprop``, ``OptaxAdam``,
  ``LARS``, each in its family's module) when an
  optax-convention option is set (``eps_in_sqrt``, ``initial_scale``,
  ``eps_root``, ``amsgrad_bias_corrected``) and for ``lars`` (torch has none).
  Their ``state`` uses torch's keys (``step``, ``sum``, ``square_avg``,
  ``grad_avg``, ``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``,
  ``max_exp_avg_sq``) so ``state_dict`` conversion treats both alike.

``lr`` may be a callable schedule ``step -> lr`` (also per group, as a group's
``"lr"``): a step pre-hook sets ``group["lr"] = schedule(k)`` before the k-th
``step()`` (k from 0, kept in ``group["schedule_step"]``, so it survives
``state_dict``/``load_state_dict``), exactly as optax evaluates a schedule at
the update count. The hyperparameter checks are torch's (``_jaxinit.optim``).

This module holds what the optimizer modules (one per family, as ``jaxinit/_src``; the
registry's ``module``) share: the schedule hook, the base class of the own optimizers
and the factories' helpers.
"""
from __future__ import annotations

from typing import Callable

import torch

from _jaxinit import optim as _core


# ----------------------------------------------------------------- schedules
def split_schedules(params, lr):
    """Replace callable lrs by their value at step 0; return (params, default lr, per-group schedules)."""
    params = list(params)
    default_sched = lr if callable(lr) else None
    lr0 = float(lr(0)) if callable(lr) else lr
    if params and isinstance(params[0], dict):
        groups, scheds = [], []
        for g in params:
            g = dict(g)
            if callable(g.get("lr")):
                scheds.append(g["lr"])
                g["lr"] = float(g["lr"](0))
            else:
                scheds.append(None if "lr" in g else default_sched)
            groups.append(g)
        return groups, lr0, scheds
    return params, lr0, [default_sched]


def attach_schedules(opt: torch.optim.Optimizer, scheds) -> torch.optim.Optimizer:
    if not any(s is not None for s in scheds):
        return opt

    def pre_hook(optimizer, args, kwargs):
        for group, sched in zip(optimizer.param_groups, scheds):
            if sched is not None:
                k = group.get("schedule_step", 0)
                group["lr"] = float(sched(k))
                group["schedule_step"] = k + 1

    for group in opt.param_groups:
        group.setdefault("schedule_step", 0)
    opt.register_step_pre_hook(pre_hook)
    opt._torchinit_schedules = scheds  # type: ignore[attr-defined]  # read by export and training state
    return opt


# ----------------------------------------------------------------- own optimizers
class OptimizerBase(torch.optim.Optimizer):
    """Shared loop: per group, the params with a gradient and their state."""

    def _init_state(self, p, group) -> dict:
        raise NotImplementedError

    def _update(self, group, params, grads, states) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                if not self.state[p]:
                    self.state[p].update(self._init_state(p, group))
                params.append(p)
                grads.append(-p.grad if group.get("maximize", False) else p.grad)
                states.append(self.state[p])
            if params:
                self._update(group, params, grads, states)
        return loss


def count_step(states) -> list[float]:
    out = []
    for s in states:
        s["step"] += 1
        out.append(float(s["step"]))
    return out


def l2_decay(grads, params, wd):
    if wd != 0:
        return torch._foreach_add(grads, params, alpha=wd)
    return grads


def build_optimizer(cls, params, lr, scheds, **kw):
    """``cls(params, lr=lr, **kw)`` following the per-group lr schedules ``scheds`` (from split_schedules)."""
    return attach_schedules(cls(params, lr=lr, **kw), scheds)


def check_scalar_dtype(who: str, scalar_dtype: str) -> None:
    """torch picks the dtype of its 0-d state tensors itself (``torch.get_default_dtype()``): refuse another."""
    from torch.optim.optimizer import _get_scalar_dtype

    have = str(_get_scalar_dtype()).replace("torch.", "")
    if scalar_dtype != have:
        raise _core.InitError(
            f"{who}: scalar_dtype={scalar_dtype!r}, but torch keeps this optimizer's 0-d state tensors in "
            f"torch.get_default_dtype() = {have}; call torch.set_default_dtype(torch.{scalar_dtype}) first, "
            f"or pass scalar_dtype={have!r}.")
