"""``torch.amp.GradScaler`` with jaxinit's checks: the PyTorch side of :mod:`jaxinit.amp`.

The scaler is torch's own class; these functions build and convert it under the same names,
arguments and errors as the optax transformation (``jaxinit.amp.grad_scaler``), so one training
script reads the same in both frameworks and a scaler's state moves between them through
``GradScaler.state_dict()``.
"""
from __future__ import annotations

from typing import Any

import torch

from _jaxinit import amp as _core
from _jaxinit.errors import InitError


def grad_scaler(inner: torch.optim.Optimizer, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> torch.amp.GradScaler:
    """``torch.amp.GradScaler(device, init_scale, growth_factor, backoff_factor, growth_interval, enabled)``
    for the optimizer ``inner``, on the device type of its parameters.

    The arguments are checked as ``jaxinit.amp.grad_scaler`` checks them (torch itself accepts a
    zero or negative scale / backoff factor and a growth interval below 1). Use it as torch documents::

        scaler = torchinit.amp.grad_scaler(opt)
        scaler.scale(loss).backward(); scaler.unscale_(opt); clip_grad_norm_(...); scaler.step(opt); scaler.update()
    """
    cfg = _core.check_config("grad_scaler", init_scale, growth_factor, backoff_factor, growth_interval, enabled)
    if not isinstance(inner, torch.optim.Optimizer):
        raise InitError(f"grad_scaler: inner must be a torch.optim.Optimizer (the optimizer the scaler steps), "
                        f"got {type(inner).__name__}.")
    params = [p for g in inner.param_groups for p in g["params"]]
    device = params[0].device.type if params else "cpu"
    return torch.amp.GradScaler(device, init_scale=cfg["init_scale"], growth_factor=cfg["growth_factor"],
                                backoff_factor=cfg["backoff_factor"], growth_interval=cfg["growth_interval"],
                                enabled=cfg["enabled"])


def _check_scaler(who, state):
    if not isinstance(state, torch.amp.GradScaler):
        raise InitError(f"{who}: state must be a torch.amp.GradScaler, got {type(state).__name__}.")
    return state


def scale_loss(loss: torch.Tensor, state: torch.amp.GradScaler) -> torch.Tensor:
    """``state.scale(loss)`` (the mirror of ``jaxinit.amp.scale_loss``)."""
    return _check_scaler("scale_loss", state).scale(loss)


def grad_scaler_state_dict(state: torch.amp.GradScaler) -> dict[str, Any]:
    """``state.state_dict()``: torch's five keys, ``{}`` for a disabled scaler."""
    return _check_scaler("grad_scaler_state_dict", state).state_dict()


def load_grad_scaler_state_dict(state: torch.amp.GradScaler, state_dict: Any) -> torch.amp.GradScaler:
    """``state.load_state_dict(state_dict)`` after the checks of ``jaxinit.amp.load_grad_scaler_state_dict``
    (torch's five keys, a valid scale and factors); returns ``state``. A disabled scaler ignores it."""
    who = "load_grad_scaler_state_dict"
    scaler = _check_scaler(who, state)
    if not scaler.is_enabled():
        return scaler
    scaler.load_state_dict(_core.check_state_dict(who, state_dict))
    return scaler
