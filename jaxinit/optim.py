"""Optimizers (and learning-rate schedules) with ``torch.optim``'s semantics for optax.

``import jaxinit.optim as optim``; ``optim.adam(1e-3)`` is an ``optax.GradientTransformation``
whose updates equal ``torch.optim.Adam(params, 1e-3)``'s step for step. Mirror:
:mod:`torchinit.optim` (same factories returning ``torch.optim.Optimizer``s). The state
layout is documented in ``jaxinit/_src/optim.py``. ``TRANSFORMS`` lists the optax building
blocks and state types, which exist only here (torch has no transformation objects).
"""
from jaxinit._src.optim import ScaleByTorchAdagradState as ScaleByTorchAdagradState
from jaxinit._src.optim import ScaleByTorchAdamState as ScaleByTorchAdamState
from jaxinit._src.optim import ScaleByTorchRmsState as ScaleByTorchRmsState
from jaxinit._src.optim import TorchEmaState as TorchEmaState
from jaxinit._src.optim import TraceTorchState as TraceTorchState
from jaxinit._src.optim import adagrad as adagrad
from jaxinit._src.optim import adam as adam
from jaxinit._src.optim import adamw as adamw
from jaxinit._src.optim import ema as ema
from jaxinit._src.optim import lars as lars
from jaxinit._src.optim import rmsprop as rmsprop
from jaxinit._src.optim import scale_by_lars_trust_ratio as scale_by_lars_trust_ratio
from jaxinit._src.optim import scale_by_torch_adagrad as scale_by_torch_adagrad
from jaxinit._src.optim import scale_by_torch_adam as scale_by_torch_adam
from jaxinit._src.optim import scale_by_torch_lr as scale_by_torch_lr
from jaxinit._src.optim import scale_by_torch_rms as scale_by_torch_rms
from jaxinit._src.optim import sgd as sgd
from jaxinit._src.optim import trace_torch as trace_torch

# optax building blocks and their states: JAX-only (not mirrored in torchinit.optim).
TRANSFORMS = (
    "ScaleByTorchAdagradState",
    "ScaleByTorchAdamState",
    "ScaleByTorchRmsState",
    "TorchEmaState",
    "TraceTorchState",
    "ema",
    "scale_by_lars_trust_ratio",
    "scale_by_torch_adagrad",
    "scale_by_torch_adam",
    "scale_by_torch_lr",
    "scale_by_torch_rms",
    "trace_torch",
)

__all__ = [
    "TRANSFORMS",
    "ScaleByTorchAdagradState",
    "ScaleByTorchAdamState",
    "ScaleByTorchRmsState",
    "TorchEmaState",
    "TraceTorchState",
    "adagrad",
    "adam",
    "adamw",
    "ema",
    "lars",
    "rmsprop",
    "scale_by_lars_trust_ratio",
    "scale_by_torch_adagrad",
    "scale_by_torch_adam",
    "scale_by_torch_lr",
    "scale_by_torch_rms",
    "sgd",
    "trace_torch",
]
