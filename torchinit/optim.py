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

__all__ = [
    "adagrad",
    "adam",
    "adamw",
    "lars",
    "rmsprop",
    "sgd",
]
