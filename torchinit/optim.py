"""The torch mirror of :mod:`jaxinit.optim`: the same factories, ``params`` first, returning
``torch.optim.Optimizer`` instances (torch's own classes with ``foreach=True`` for plain-torch
configurations; the classes of ``torchinit/_src/<family>.py`` for the optax-convention options
and LARS). ``lr`` may be a schedule ``step -> lr``, followed step for step like optax.
"""
# BEGIN generated: optimizers (python -m _jaxinit.optim_codegen, from _jaxinit/optim_registry.py)
from torchinit._src.optim_factories import sgd as sgd
from torchinit._src.adagrad import adagrad as adagrad
from torchinit._src.rmsprop import rmsprop as rmsprop
from torchinit._src.adam import adam as adam
from torchinit._src.adam import adamw as adamw
from torchinit._src.nadam import nadam as nadam
from torchinit._src.optim_factories import radam as radam
from torchinit._src.optim_factories import adamax as adamax
from torchinit._src.optim_factories import adadelta as adadelta
from torchinit._src.rprop import rprop as rprop
from torchinit._src.asgd import asgd as asgd
from torchinit._src.adafactor import adafactor as adafactor
from torchinit._src.muon import muon as muon
from torchinit._src.lbfgs import lbfgs as lbfgs
from torchinit._src.sparse_adam import sparse_adam as sparse_adam
# END generated: optimizers
# not a torch.optim class: LARS
from torchinit._src.lars import lars as lars
# learning-rate schedules (torch.optim.lr_scheduler's, written once in _jaxinit.schedules)
from torchinit._src.schedules import Schedule as Schedule
from torchinit._src.schedule_factories import cosine_annealing_lr as cosine_annealing_lr
from torchinit._src.schedule_factories import cosine_annealing_warm_restarts as cosine_annealing_warm_restarts
from torchinit._src.schedule_factories import exponential_lr as exponential_lr
from torchinit._src.schedule_factories import linear_lr as linear_lr
from torchinit._src.schedule_factories import multi_step_lr as multi_step_lr
from torchinit._src.schedule_factories import one_cycle_lr as one_cycle_lr
from torchinit._src.schedule_factories import one_cycle_momentum as one_cycle_momentum
from torchinit._src.schedule_factories import polynomial_lr as polynomial_lr
from torchinit._src.schedules import schedules_from_torch as schedules_from_torch
from torchinit._src.schedule_factories import step_lr as step_lr
from torchinit._src.schedule_factories import chained_scheduler as chained_scheduler
from torchinit._src.schedule_factories import constant_lr as constant_lr
from torchinit._src.schedule_factories import cyclic_lr as cyclic_lr
from torchinit._src.schedule_factories import cyclic_momentum as cyclic_momentum
from torchinit._src.schedule_factories import lambda_lr as lambda_lr
from torchinit._src.schedule_factories import multiplicative_lr as multiplicative_lr
from torchinit._src.schedule_factories import sequential_lr as sequential_lr
from torchinit._src.schedule_factories import swalr as swalr
# training-loop utilities: gradient clipping (torch.nn.utils) and weight averaging (torch.optim.swa_utils)
from torchinit._src.clip import clip_grad_norm as clip_grad_norm
from torchinit._src.clip import clip_grad_value as clip_grad_value
from torchinit._src.swa import averaged_model as averaged_model
from torchinit._src.swa import get_ema_multi_avg_fn as get_ema_multi_avg_fn
from torchinit._src.swa import get_swa_multi_avg_fn as get_swa_multi_avg_fn
from torchinit._src.swa import update_bn as update_bn
# ReduceLROnPlateau: metric driven (a wrapper transformation in jaxinit, torch's scheduler in torchinit)
from torchinit._src.plateau import export_plateau_state as export_plateau_state
from torchinit._src.plateau import import_plateau_state as import_plateau_state
from torchinit._src.plateau import reduce_lr_on_plateau as reduce_lr_on_plateau
# torch optimizer <-> optax conversion and optimizer state both ways
from torchinit._src.optim_convert import export_state as export_state
from torchinit._src.optim_convert import from_torch as from_torch
from torchinit._src.optim_convert import import_state as import_state
from torchinit._src.training_state import TrainingState as TrainingState
from torchinit._src.training_state import load_training_state as load_training_state
from torchinit._src.training_state import save_training_state as save_training_state
from torchinit._src.optimizer_io import load_optimizer_state as load_optimizer_state
from torchinit._src.optimizer_io import save_optimizer_state as save_optimizer_state

__all__ = [
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
