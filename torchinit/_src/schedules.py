"""Learning-rate schedules equal to ``torch.optim.lr_scheduler``'s, as Python callables.

The mirror of :mod:`jaxinit.optim`'s schedules: the same names, arguments and
values (the formulas are written once in ``_jaxinit.schedules`` and run here
with Python's ``math``). Each factory returns a :class:`Schedule`, a callable
``step -> lr`` (Python float; ``step`` = optimizer steps already taken) that the
:mod:`torchinit.optim` optimizers accept as ``lr``, and whose
``torch_scheduler(optimizer, steps_taken=0)`` builds the equal real
``torch.optim.lr_scheduler`` object.
"""
from __future__ import annotations

from _jaxinit import schedules as _core


class Schedule(_core.ScheduleBase):
    """A callable ``step -> lr`` equal to a torch scheduler; ``repr`` shows its arguments.

    ``schedule(step)`` is the lr of the optimizer step after ``step`` steps;
    ``schedule.torch_scheduler(optimizer, steps_taken=0)`` builds the equal real
    ``torch.optim.lr_scheduler`` object.
    """

    __slots__ = ()
    _ops = _core.PyOps
    _package = "torchinit.optim"


# Same docstring as jaxinit.optim.schedules_from_torch's by design (the mirror); the reading is in
# _jaxinit.schedules.read_torch_scheduler, here and there.
def schedules_from_torch(scheduler, which: str = "lr", *, lr_lambda=None) -> list[Schedule]:
    """One :class:`Schedule` per param group, equal to a ``torch.optim.lr_scheduler`` object.

    Reads the scheduler's attributes: StepLR, MultiStepLR,
    ExponentialLR, CosineAnnealingLR, LinearLR, PolynomialLR, ConstantLR,
    CosineAnnealingWarmRestarts, OneCycleLR, CyclicLR, LambdaLR, MultiplicativeLR,
    SWALR, SequentialLR and ChainedScheduler over them; the base lr of group ``i`` is
    ``scheduler.base_lrs[i]`` (OneCycleLR: the group's ``initial_lr``/``max_lr``/
    ``min_lr``; a 1-element tensor lr is read with ``.item()``). ``which='momentum'``
    gives OneCycleLR's / CyclicLR's momentum / beta1 cycle (``cycle_momentum=True``
    only). LambdaLR / MultiplicativeLR run torch's own functions here; ``lr_lambda=``
    (one function or a list per group) replaces them after a check on the first 64 steps. The schedules are functions of the number
    of optimizer steps, i.e. they assume ``scheduler.step()`` after every
    ``optimizer.step()``.
    """
    read = _core.read_torch_scheduler(scheduler, which, schedule_class=Schedule, lr_lambda=lr_lambda,
                                      python_ok=True)
    return [Schedule(name, args, params) for name, args, params in read]


