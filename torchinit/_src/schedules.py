"""Learning-rate schedules equal to ``torch.optim.lr_scheduler``'s, as Python callables.

The mirror of :mod:`jaxinit.optim`'s schedules: the same names, arguments and
values (the formulas are written once in ``_initcore.schedules`` and run here
with Python's ``math``). Each factory returns a :class:`Schedule`, a callable
``step -> lr`` (Python float; ``step`` = optimizer steps already taken) that the
:mod:`torchinit.optim` optimizers accept as ``lr``, and whose
``torch_scheduler(optimizer, steps_taken=0)`` builds the equal real
``torch.optim.lr_scheduler`` object.
"""
from __future__ import annotations

from typing import Sequence

from _initcore import schedules as _core


class Schedule(_core.ScheduleBase):
    """A callable ``step -> lr`` equal to a torch scheduler; ``repr`` shows its arguments.

    ``schedule(step)`` is the lr of the optimizer step after ``step`` steps;
    ``schedule.torch_scheduler(optimizer, steps_taken=0)`` builds the equal real
    ``torch.optim.lr_scheduler`` object.
    """

    __slots__ = ()
    _ops = _core.PyOps
    _package = "torchinit.optim"


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    return Schedule("step_lr", dict(lr=lr, step_size=step_size, gamma=gamma))


def multi_step_lr(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    return Schedule("multi_step_lr", dict(lr=lr, milestones=milestones, gamma=gamma))


def exponential_lr(lr: float, gamma: float) -> Schedule:
    return Schedule("exponential_lr", dict(lr=lr, gamma=gamma))


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0) -> Schedule:
    return Schedule("cosine_annealing_lr", dict(lr=lr, T_max=T_max, eta_min=eta_min))


def linear_lr(lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
              total_iters: int = 5) -> Schedule:
    return Schedule("linear_lr", dict(lr=lr, start_factor=start_factor, end_factor=end_factor,
                                      total_iters=total_iters))


def polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0) -> Schedule:
    return Schedule("polynomial_lr", dict(lr=lr, total_iters=total_iters, power=power))


def cosine_annealing_warm_restarts(lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0) -> Schedule:
    return Schedule("cosine_annealing_warm_restarts", dict(lr=lr, T_0=T_0, T_mult=T_mult, eta_min=eta_min))


def one_cycle_lr(max_lr: float, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, three_phase: bool = False) -> Schedule:
    return Schedule("one_cycle_lr", dict(
        max_lr=max_lr, total_steps=total_steps, epochs=epochs, steps_per_epoch=steps_per_epoch,
        pct_start=pct_start, anneal_strategy=anneal_strategy, cycle_momentum=cycle_momentum,
        base_momentum=base_momentum, max_momentum=max_momentum, div_factor=div_factor,
        final_div_factor=final_div_factor, three_phase=three_phase))


def one_cycle_momentum(total_steps: int | None = None, epochs: int | None = None,
                       steps_per_epoch: int | None = None, pct_start: float = 0.3,
                       anneal_strategy: str = "cos", base_momentum: float = 0.85,
                       max_momentum: float = 0.95, three_phase: bool = False) -> Schedule:
    return Schedule("one_cycle_momentum", dict(
        total_steps=total_steps, epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start,
        anneal_strategy=anneal_strategy, base_momentum=base_momentum, max_momentum=max_momentum,
        three_phase=three_phase))


def schedules_from_torch(scheduler, which: str = "lr") -> list[Schedule]:
    """One :class:`Schedule` per param group, equal to a ``torch.optim.lr_scheduler`` object.

    Reads the scheduler's attributes: StepLR, MultiStepLR,
    ExponentialLR, CosineAnnealingLR, LinearLR, PolynomialLR,
    CosineAnnealingWarmRestarts, OneCycleLR; the base lr of group ``i`` is
    ``scheduler.base_lrs[i]`` (OneCycleLR: the group's ``initial_lr``/``max_lr``/
    ``min_lr``). ``which='momentum'`` gives OneCycleLR's momentum / beta1 cycle
    (``cycle_momentum=True`` only). The schedules are functions of the number
    of optimizer steps, i.e. they assume ``scheduler.step()`` after every
    ``optimizer.step()``.
    """
    return [Schedule(name, args, params) for name, args, params in _core.read_torch_scheduler(scheduler, which)]


for _f in (step_lr, multi_step_lr, exponential_lr, cosine_annealing_lr, linear_lr, polynomial_lr,
           cosine_annealing_warm_restarts, one_cycle_lr, one_cycle_momentum):
    _f.__doc__ = _core.doc(_f.__name__, "torchinit")
del _f
