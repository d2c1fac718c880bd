"""Optimizers (and learning-rate schedules) with ``torch.optim``'s semantics for optax.

``import jaxinit.optim as optim``; ``optim.adam(1e-3)`` is an ``optax.GradientTransformation``
whose updates equal ``torch.optim.Adam(params, 1e-3)``'s step for step. Mirror:
:mod:`torchinit.optim` (same factories returning ``torch.optim.Optimizer``s). The state
layout is documented in ``jaxinit/_src/optim_common.py``. ``TRANSFORMS`` lists the optax building
blocks and state types, which exist only here (torch has no transformation objects).
The optimizer lines are generated from ``_jaxinit/optim_registry.py`` by
``python -m _jaxinit.optim_codegen`` (one entry per torch optimizer).
"""
# BEGIN generated: optimizers (python -m _jaxinit.optim_codegen, from _jaxinit/optim_registry.py)
from jaxinit._src.sgd import sgd as sgd
from jaxinit._src.sgd import TraceTorchState as TraceTorchState
from jaxinit._src.sgd import trace_torch as trace_torch
from jaxinit._src.adagrad import adagrad as adagrad
from jaxinit._src.adagrad import ScaleByTorchAdagradState as ScaleByTorchAdagradState
from jaxinit._src.adagrad import scale_by_torch_adagrad as scale_by_torch_adagrad
from jaxinit._src.rmsprop import rmsprop as rmsprop
from jaxinit._src.rmsprop import ScaleByTorchRmsState as ScaleByTorchRmsState
from jaxinit._src.rmsprop import scale_by_torch_rms as scale_by_torch_rms
from jaxinit._src.adam import adam as adam
from jaxinit._src.adam import ScaleByTorchAdamState as ScaleByTorchAdamState
from jaxinit._src.adam import scale_by_torch_adam as scale_by_torch_adam
from jaxinit._src.adam import adamw as adamw
from jaxinit._src.nadam import nadam as nadam
from jaxinit._src.nadam import ScaleByTorchNadamState as ScaleByTorchNadamState
from jaxinit._src.nadam import scale_by_torch_nadam as scale_by_torch_nadam
from jaxinit._src.radam import radam as radam
from jaxinit._src.radam import ScaleByTorchRadamState as ScaleByTorchRadamState
from jaxinit._src.radam import scale_by_torch_radam as scale_by_torch_radam
from jaxinit._src.adamax import adamax as adamax
from jaxinit._src.adamax import ScaleByTorchAdamaxState as ScaleByTorchAdamaxState
from jaxinit._src.adamax import scale_by_torch_adamax as scale_by_torch_adamax
from jaxinit._src.adadelta import adadelta as adadelta
from jaxinit._src.adadelta import ScaleByTorchAdadeltaState as ScaleByTorchAdadeltaState
from jaxinit._src.adadelta import scale_by_torch_adadelta as scale_by_torch_adadelta
from jaxinit._src.rprop import rprop as rprop
from jaxinit._src.rprop import ScaleByTorchRpropState as ScaleByTorchRpropState
from jaxinit._src.rprop import scale_by_torch_rprop as scale_by_torch_rprop
from jaxinit._src.asgd import asgd as asgd
from jaxinit._src.asgd import ScaleByTorchAsgdState as ScaleByTorchAsgdState
from jaxinit._src.asgd import scale_by_torch_asgd as scale_by_torch_asgd
from jaxinit._src.adafactor import adafactor as adafactor
from jaxinit._src.adafactor import ScaleByTorchAdafactorState as ScaleByTorchAdafactorState
from jaxinit._src.adafactor import scale_by_torch_adafactor as scale_by_torch_adafactor
from jaxinit._src.muon import muon as muon
from jaxinit._src.muon import MuonState as MuonState
from jaxinit._src.muon import ScaleByTorchMuonState as ScaleByTorchMuonState
from jaxinit._src.muon import scale_by_torch_muon as scale_by_torch_muon
from jaxinit._src.muon import zeropower_via_newtonschulz as zeropower_via_newtonschulz
from jaxinit._src.lbfgs import lbfgs as lbfgs
from jaxinit._src.lbfgs import LBFGS as LBFGS
from jaxinit._src.lbfgs import LBFGSState as LBFGSState
from jaxinit._src.sparse_adam import sparse_adam as sparse_adam
from jaxinit._src.sparse_adam import ScaleByTorchSparseAdamState as ScaleByTorchSparseAdamState
# END generated: optimizers
# not torch.optim classes: LARS, EMA, the lr scaling step
from jaxinit._src.ema import TorchEmaState as TorchEmaState
from jaxinit._src.ema import ema as ema
from jaxinit._src.lars import lars as lars
from jaxinit._src.lars import scale_by_lars_trust_ratio as scale_by_lars_trust_ratio
from jaxinit._src.optim_common import scale_by_torch_lr as scale_by_torch_lr
# learning-rate schedules (torch.optim.lr_scheduler's, written once in _jaxinit.schedules)
from jaxinit._src.schedules import Schedule as Schedule
from jaxinit._src.schedule_factories import cosine_annealing_lr as cosine_annealing_lr
from jaxinit._src.schedule_factories import cosine_annealing_warm_restarts as cosine_annealing_warm_restarts
from jaxinit._src.schedule_factories import exponential_lr as exponential_lr
from jaxinit._src.schedule_factories import linear_lr as linear_lr
from jaxinit._src.schedule_factories import multi_step_lr as multi_step_lr
from jaxinit._src.schedule_factories import one_cycle_lr as one_cycle_lr
from jaxinit._src.schedule_factories import one_cycle_momentum as one_cycle_momentum
from jaxinit._src.schedule_factories import polynomial_lr as polynomial_lr
from jaxinit._src.schedules import schedules_from_torch as schedules_from_torch
from jaxinit._src.schedule_factories import step_lr as step_lr
from jaxinit._src.schedule_factories import chained_scheduler as chained_scheduler
from jaxinit._src.schedule_factories import constant_lr as constant_lr
from jaxinit._src.schedule_factories import cyclic_lr as cyclic_lr
from jaxinit._src.schedule_factories import cyclic_momentum as cyclic_momentum
from jaxinit._src.schedule_factories import lambda_lr as lambda_lr
from jaxinit._src.schedule_factories import multiplicative_lr as multiplicative_lr
from jaxinit._src.schedule_factories import sequential_lr as sequential_lr
from jaxinit._src.schedule_factories import swalr as swalr
# training-loop utilities: gradient clipping (torch.nn.utils) and weight averaging (torch.optim.swa_utils)
from jaxinit._src.clip import clip_grad_norm as clip_grad_norm
from jaxinit._src.clip import clip_grad_value as clip_grad_value
from jaxinit._src.swa import averaged_model as averaged_model
from jaxinit._src.swa import get_ema_multi_avg_fn as get_ema_multi_avg_fn
from jaxinit._src.swa import get_swa_multi_avg_fn as get_swa_multi_avg_fn
from jaxinit._src.swa import update_bn as update_bn
from jaxinit._src.clip import ClipGradNormState as ClipGradNormState
from jaxinit._src.swa import AveragedModel as AveragedModel
from jaxinit._src.swa import AveragedModelState as AveragedModelState
# ReduceLROnPlateau: metric driven (a wrapper transformation in jaxinit, torch's scheduler in torchinit)
from jaxinit._src.plateau import export_plateau_state as export_plateau_state
from jaxinit._src.plateau import import_plateau_state as import_plateau_state
from jaxinit._src.plateau import reduce_lr_on_plateau as reduce_lr_on_plateau
from jaxinit._src.plateau import ReduceLROnPlateauState as ReduceLROnPlateauState
# torch optimizer <-> optax conversion and optimizer state both ways
from jaxinit._src.optim_convert import export_state as export_state
from jaxinit._src.optim_convert import from_torch as from_torch
from jaxinit._src.optim_convert import import_state as import_state
from jaxinit._src.training_state import TrainingState as TrainingState
from jaxinit._src.training_state import load_training_state as load_training_state
from jaxinit._src.training_state import save_training_state as save_training_state
from jaxinit._src.optimizer_io import load_optimizer_state as load_optimizer_state
from jaxinit._src.optimizer_io import save_optimizer_state as save_optimizer_state

# optax building blocks and their states: JAX-only (not mirrored in torchinit.optim).
TRANSFORMS = (
    # BEGIN generated: optimizers (python -m _jaxinit.optim_codegen, from _jaxinit/optim_registry.py)
    "TraceTorchState",
    "trace_torch",
    "ScaleByTorchAdagradState",
    "scale_by_torch_adagrad",
    "ScaleByTorchRmsState",
    "scale_by_torch_rms",
    "ScaleByTorchAdamState",
    "scale_by_torch_adam",
    "ScaleByTorchNadamState",
    "scale_by_torch_nadam",
    "ScaleByTorchRadamState",
    "scale_by_torch_radam",
    "ScaleByTorchAdamaxState",
    "scale_by_torch_adamax",
    "ScaleByTorchAdadeltaState",
    "scale_by_torch_adadelta",
    "ScaleByTorchRpropState",
    "scale_by_torch_rprop",
    "ScaleByTorchAsgdState",
    "scale_by_torch_asgd",
    "ScaleByTorchAdafactorState",
    "scale_by_torch_adafactor",
    "MuonState",
    "ScaleByTorchMuonState",
    "scale_by_torch_muon",
    "zeropower_via_newtonschulz",
    "LBFGS",
    "LBFGSState",
    "ScaleByTorchSparseAdamState",
    # END generated: optimizers
    "AveragedModel",
    "AveragedModelState",
    "ClipGradNormState",
    "ReduceLROnPlateauState",
    "TorchEmaState",
    "ema",
    "scale_by_lars_trust_ratio",
    "scale_by_torch_lr",
)

# Mirrors torchinit.optim's __all__ (parity_tests/test_api.py checks the surfaces match), then TRANSFORMS.
__all__ = [
    "TRANSFORMS",
    # BEGIN generated: optimizers (python -m _jaxinit.optim_codegen, from _jaxinit/optim_registry.py)
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "nadam",
    "radam",
    "adamax",
    "adadelta",
    "rprop",
    "asgd",
    "adafactor",
    "muon",
    "lbfgs",
    "sparse_adam",
    # END generated: optimizers
    "lars",
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
    "chained_scheduler",
    "constant_lr",
    "cyclic_lr",
    "cyclic_momentum",
    "lambda_lr",
    "multiplicative_lr",
    "sequential_lr",
    "swalr",
    "averaged_model",
    "clip_grad_norm",
    "clip_grad_value",
    "get_ema_multi_avg_fn",
    "get_swa_multi_avg_fn",
    "update_bn",
    "export_plateau_state",
    "import_plateau_state",
    "reduce_lr_on_plateau",
    "export_state",
    "from_torch",
    "import_state",
    "TrainingState",
    "load_training_state",
    "save_training_state",
    "load_optimizer_state",
    "save_optimizer_state",
]
__all__ += TRANSFORMS
