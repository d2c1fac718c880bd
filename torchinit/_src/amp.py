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
from _jaxinit import autocast_table as _table
from _jaxinit.errors import InitError


Autocast = torch.autocast


def autocast(device_type: str = "cpu", dtype: Any = None, enabled: bool = True) -> torch.autocast:
    """``torch.autocast(device_type, dtype, enabled)`` with the checks of ``jaxinit.amp.autocast``: a
    dtype torch's autocast does not allow on that device is an error here (torch warns and disables
    itself). ``dtype=None``: torch's default for the device (CPU bfloat16, CUDA float16)."""
    if device_type not in _table.DEVICES:
        raise InitError(f"Autocast: device_type must be one of {list(_table.DEVICES)} (the torch autocast "
                        f"whose op lists to follow), got {device_type!r}.")
    if not isinstance(enabled, bool):
        raise InitError(f"Autocast: enabled must be True or False, got {enabled!r}.")
    name = _table.DEFAULT_DTYPE[device_type] if dtype is None else str(dtype).removeprefix("torch.")
    allowed = _table.SUPPORTED_DTYPES[device_type]
    if name not in allowed:
        raise InitError(f"Autocast: dtype {name!r} is not allowed by torch's {device_type} autocast "
                        f"(torch {_table.TORCH_VERSION} accepts {list(allowed)} and otherwise disables itself "
                        f"with a warning); pass dtype=torch.bfloat16 or torch.float16, or enabled=False.")
    return torch.autocast(device_type, dtype=getattr(torch, name), enabled=enabled)


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


# ---------------------------------------------------------------- the precision contract, torch side

from _jaxinit import precision as _prec  # noqa: E402


class PrecisionContract(_prec.PrecisionCore):
    """``matmul`` and ``conv`` float32 precision levels; as a context manager it sets torch's flags
    (``torch.set_float32_matmul_precision``, ``torch.backends.cudnn.allow_tf32``) and restores them.
    Mirror of ``jaxinit.amp.PrecisionContract``."""

    def __enter__(self) -> "PrecisionContract":
        _SAVED.append((torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32))
        s = self.torch_settings()
        torch.set_float32_matmul_precision(s["float32_matmul_precision"])
        torch.backends.cudnn.allow_tf32 = s["cudnn_allow_tf32"]
        return self

    def __exit__(self, *exc) -> None:
        prec, cudnn = _SAVED.pop()
        torch.set_float32_matmul_precision(prec)
        torch.backends.cudnn.allow_tf32 = cudnn


_SAVED: list = []


def precision_contract(allow_tf32: bool | None = None, cudnn_allow_tf32: bool | None = None,
                       float32_matmul_precision: str | None = None) -> PrecisionContract:
    """The contract of a torch configuration; ``None`` arguments read torch's CURRENT flags
    (``torch.get_float32_matmul_precision()``, ``torch.backends.cudnn.allow_tf32``)."""
    if allow_tf32 is None and float32_matmul_precision is None:
        float32_matmul_precision = torch.get_float32_matmul_precision()
    if cudnn_allow_tf32 is None:
        cudnn_allow_tf32 = torch.backends.cudnn.allow_tf32
    return PrecisionContract(*_prec.from_torch("precision_contract", allow_tf32, cudnn_allow_tf32,
                                               float32_matmul_precision))


def precision_from_jax(precision: Any = None, backend: str | None = None) -> PrecisionContract:
    """The contract of a JAX precision (a name; ``None``: JAX's default) on ``backend`` ('cpu', 'gpu',
    'tpu'; ``None``: 'gpu' when CUDA is available, else 'cpu'). Mirror of ``jaxinit.amp.precision_from_jax``."""
    if backend is None:
        backend = "gpu" if torch.cuda.is_available() else "cpu"
    return PrecisionContract(*_prec.from_jax("precision_from_jax", precision, backend))
