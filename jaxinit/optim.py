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
from jaxinit._src.optim import ScaleByTorchAdadeltaState as ScaleByTorchAdadeltaState
from jaxinit._src.optim import ScaleByTorchAdamaxState as ScaleByTorchAdamaxState
from jaxinit._src.optim import ScaleByTorchAsgdState as ScaleByTorchAsgdState
from jaxinit._src.optim import ScaleByTorchNadamState as ScaleByTorchNadamState
from jaxinit._src.optim import ScaleByTorchRadamState as ScaleByTorchRadamState
from jaxinit._src.optim import ScaleByTorchRpropState as ScaleByTorchRpropState
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
from jaxinit._src.optim import adadelta as adadelta
from jaxinit._src.optim import adamax as adamax
from jaxinit._src.optim import asgd as asgd
from jaxinit._src.optim import nadam as nadam
from jaxinit._src.optim import radam as radam
from jaxinit._src.optim import rprop as rprop
from jaxinit._src.optim import scale_by_torch_adadelta as scale_by_torch_adadelta
from jaxinit._src.optim import scale_by_torch_adamax as scale_by_torch_adamax
from jaxinit._src.optim import scale_by_torch_asgd as scale_by_torch_asgd
from jaxinit._src.optim import scale_by_torch_nadam as scale_by_torch_nadam
from jaxinit._src.optim import scale_by_torch_radam as scale_by_torch_radam
from jaxinit._src.optim import scale_by_torch_rprop as scale_by_torch_rprop
# learning-rate schedules (torch.optim.lr_scheduler's, written once in _initcore.schedules)
from jaxinit._src.schedules import Schedule as Schedule
from jaxinit._src.schedules import cosine_annealing_lr as cosine_annealing_lr
from jaxinit._src.schedules import cosine_annealing_warm_restarts as cosine_annealing_warm_restarts
from jaxinit._src.schedules import exponential_lr as exponential_lr
from jaxinit._src.schedules import linear_lr as linear_lr
from jaxinit._src.schedules import multi_step_lr as multi_step_lr
from jaxinit._src.schedules import one_cycle_lr as one_cycle_lr
from jaxinit._src.schedules import one_cycle_momentum as one_cycle_momentum
from jaxinit._src.schedules import polynomial_lr as polynomial_lr
from jaxinit._src.schedules import schedules_from_torch as schedules_from_torch
from jaxinit._src.schedules import step_lr as step_lr
# torch optimizer <-> optax conversion and optimizer state both ways
from jaxinit._src.optim_convert import export_state as export_state
from jaxinit._src.optim_convert import from_torch as from_torch
from jaxinit._src.optim_convert import import_state as import_state

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
    "ScaleByTorchAdadeltaState",
    "ScaleByTorchAdamaxState",
    "ScaleByTorchAsgdState",
    "ScaleByTorchNadamState",
    "ScaleByTorchRadamState",
    "ScaleByTorchRpropState",
    "scale_by_torch_adadelta",
    "scale_by_torch_adamax",
    "scale_by_torch_asgd",
    "scale_by_torch_nadam",
    "scale_by_torch_radam",
    "scale_by_torch_rprop",
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
    "adadelta",
    "adamax",
    "asgd",
    "nadam",
    "radam",
    "rprop",
    "ScaleByTorchAdadeltaState",
    "ScaleByTorchAdamaxState",
    "ScaleByTorchAsgdState",
    "ScaleByTorchNadamState",
    "ScaleByTorchRadamState",
    "ScaleByTorchRpropState",
    "scale_by_torch_adadelta",
    "scale_by_torch_adamax",
    "scale_by_torch_asgd",
    "scale_by_torch_nadam",
    "scale_by_torch_radam",
    "scale_by_torch_rprop",
    "Schedule",
    "cosine_annealing_lr",
    "cosine_annealing_warm_restarts",
    "exponential_lr",
    "linear_lr",
    "multi_step_lr",
    "one_cycle_lr",
    "one_cycle_momentum",
    "polynomial_lr",
    "schedules_from_torch",
    "step_lr",
    "export_state",
    "from_torch",
    "import_state",
]
