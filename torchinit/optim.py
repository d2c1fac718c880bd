"""The torch mirror of :mod:`jaxinit.optim`: the same factories, ``params`` first, returning
``torch.optim.Optimizer`` instances (torch's own classes with ``foreach=True`` for plain-torch
configurations; the classes in ``torchinit/_src/optim.py`` for the optax-convention options
and LARS). ``lr`` may be a schedule ``step -> lr``, followed step for step like optax.
"""
from torchinit._src.optim import adagrad as adagrad
from torchinit._src.optim import adam as adam
from torchinit._src.optim import adamw as adamw
from torchinit._src.optim import lars as lars
from torchinit._src.optim import rmsprop as rmsprop
from torchinit._src.optim import sgd as sgd
# torch 2.13's Adafactor, Muon, LBFGS and SparseAdam (torch's own classes)
from torchinit._src.adafactor import adafactor as adafactor
from torchinit._src.lbfgs import lbfgs as lbfgs
from torchinit._src.muon import muon as muon
from torchinit._src.sparse_adam import sparse_adam as sparse_adam
# learning-rate schedules (torch.optim.lr_scheduler's, written once in _initcore.schedules)
from torchinit._src.schedules import Schedule as Schedule
from torchinit._src.schedules import cosine_annealing_lr as cosine_annealing_lr
from torchinit._src.schedules import cosine_annealing_warm_restarts as cosine_annealing_warm_restarts
from torchinit._src.schedules import exponential_lr as exponential_lr
from torchinit._src.schedules import linear_lr as linear_lr
from torchinit._src.schedules import multi_step_lr as multi_step_lr
from torchinit._src.schedules import one_cycle_lr as one_cycle_lr
from torchinit._src.schedules import one_cycle_momentum as one_cycle_momentum
from torchinit._src.schedules import polynomial_lr as polynomial_lr
from torchinit._src.schedules import schedules_from_torch as schedules_from_torch
from torchinit._src.schedules import step_lr as step_lr
# torch optimizer <-> optax conversion and optimizer state both ways
from torchinit._src.optim_convert import export_state as export_state
from torchinit._src.optim_convert import from_torch as from_torch
from torchinit._src.optim_convert import import_state as import_state

__all__ = [
    "adagrad",
    "adam",
    "adamw",
    "lars",
    "rmsprop",
    "sgd",
    "adafactor",
    "lbfgs",
    "muon",
    "sparse_adam",
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
