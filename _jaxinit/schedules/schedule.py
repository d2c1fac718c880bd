"""The schedule object both packages subclass, and reading torch scheduler objects.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError
from _jaxinit.schedules.ops import PyOps, int_arg
from _jaxinit.schedules.registry import SPECS, by_torch_class
from _jaxinit.schedules.specs_one_cycle import MOMENTUM_SPECS
from _jaxinit.schedules.specs_factor import set_group_lr


def scheduler_steps(optimizer, scheduler, step, who) -> int:
    """The optimizer steps taken, checked against ``scheduler``'s count (a schedule is a function of it).

    Adagrad/RMSprop/Adam/... count steps in their state; torch's SGD keeps none, so the number of
    optimizer steps must then be given (``step=``) unless nothing has happened yet.
    """
    sched_steps = _torch.steps_taken(scheduler)
    counted = set()
    for st in optimizer.state.values():
        if "step" in st:
            s = st["step"]
            counted.add(int(float(s.item() if hasattr(s, "item") else s)))
    if step is not None:
        step = int_arg(who, "step", step, low=0)
        if counted and counted != {step}:
            raise InitError(f"{who}: step={step} but the optimizer state says {sorted(counted)} steps.")
        counted = {step}
    if not counted:
        has_state = any(any(v is not None for v in st.values()) for st in optimizer.state.values())
        if sched_steps == 0 and not has_state:
            return 0  # neither has stepped
        raise InitError(
            f"{who}: {type(optimizer).__name__} keeps no step count (torch's SGD does not), so whether "
            f"{_torch.class_name(scheduler)} (stepped {sched_steps} times) was stepped once per optimizer.step() "
            "cannot be checked; the schedule is a function of the optimizer step. Fix: pass step=<number of "
            "optimizer.step() calls so far> (equal to the scheduler's count when it steps per batch).")
    if counted != {sched_steps}:
        raise InitError(
            f"{who}: the optimizer has taken {sorted(counted)[0] if len(counted) == 1 else sorted(counted)} "
            f"steps but the scheduler was stepped {sched_steps} times; the schedule is a function of the "
            "optimizer step, so the scheduler must be stepped once per optimizer.step() from the start (not "
            "per epoch).")
    return sched_steps


# ------------------------------------------------------------------ the schedule object


class ScheduleBase:
    """A named schedule with its arguments; calling it gives the lr after ``count`` steps.

    Subclasses set ``_ops`` (the array namespace) and ``_package``.
    """

    __slots__ = ("name", "args", "params", "__weakref__")
    _ops: ClassVar[Any] = PyOps
    _package: ClassVar[str] = ""

    def __init__(self, name: str, args: Mapping[str, Any], params: Mapping[str, Any] | None = None):
        self.name = name
        self.args = dict(args)
        self.params = dict(SPECS[name].check(**self.args) if params is None else params)

    def __call__(self, count):
        t = self._ops.step(count, f"{self._package}.{self.name}")
        return SPECS[self.name].formula(self._ops, t, **self.params)

    # The same repr as _jaxinit.initializer.Initializer's (a call that rebuilds the object); equality
    # differs (params, not args), so the three methods are not shared.
    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self._package}.{self.name}({inner})"

    def __eq__(self, other):
        return type(other) is type(self) and (self.name, self.params) == (other.name, other.params)

    def __hash__(self):
        return hash((self.name, repr(sorted(self.params.items()))))

    def _build_torch(self, optimizer, reset: bool = True):
        """The torch scheduler; ``reset``: first set every group's lr to the base lr (not for a
        ChainedScheduler's later children, which torch builds on the lr the earlier ones set)."""
        spec = SPECS[self.name]
        if spec.to_torch is not None:
            return spec.to_torch(dict(self.args), optimizer, lambda s, r=True: s._build_torch(optimizer, r), reset)
        import torch.optim.lr_scheduler as tls  # the optimizer is a torch object: torch is loaded

        a = dict(self.args)
        if reset:
            for group in optimizer.param_groups:
                set_group_lr(group, a["lr"])
                group.pop("initial_lr", None)
        del a["lr"]
        return getattr(tls, str(spec.torch))(optimizer, **a)

    def torch_scheduler(self, optimizer, steps_taken: int = 0):
        """The real ``torch.optim.lr_scheduler`` object equal to this schedule, for ``optimizer``.

        Every param group's ``lr`` is first set to this schedule's base lr (torch schedulers read
        their base lr from the groups); ``steps_taken`` replays that many ``scheduler.step()``
        calls, so a run resumed after ``steps_taken`` optimizer steps gets the very values
        (recursive rounding included) of an uninterrupted torch run.
        """
        import warnings

        steps_taken = int_arg("torch_scheduler", "steps_taken", steps_taken, low=0)
        sched = self._build_torch(optimizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
            for _ in range(steps_taken):
                sched.step()
        return sched


# ------------------------------------------------------------------ reading torch schedulers


# torch.optim.lr_scheduler classes that are no schedule of the step, with what replaces them (every other
# scheduler class of torch is a spec's ``torch`` class: parity_tests/test_schedules.py checks it)
NOT_SCHEDULES = {
    "ReduceLROnPlateau": "ReduceLROnPlateau is driven by a metric, not by the step, so it is no schedule; use "
                         "jaxinit.optim.reduce_lr_on_plateau (an optax transformation whose update takes "
                         "value=metric) or jaxinit.optim.from_torch(optimizer, scheduler).",
}


def read_torch_scheduler(scheduler, which: str = "lr", *, schedule_class=None, lr_lambda=None,
                         python_ok: bool = False):
    """``[(name, args, params), ...]``, one per param group, for a torch scheduler (duck-typed).

    ``which='momentum'`` gives the momentum / beta1 cycle of a scheduler that cycles it.
    ``schedule_class`` builds the children of SequentialLR / ChainedScheduler; ``lr_lambda``
    is the caller's version of LambdaLR's / MultiplicativeLR's functions (checked against
    torch's), required unless ``python_ok`` (torchinit runs torch's own functions).
    """
    ctx = dict(schedule_class=schedule_class, lr_lambda=lr_lambda, python_ok=python_ok)
    torch_class = _torch.class_name(scheduler)
    if torch_class in NOT_SCHEDULES:
        raise InitError(f"schedules_from_torch: {NOT_SCHEDULES[torch_class]}")
    if which not in ("lr", "momentum"):
        raise InitError(f"schedules_from_torch: which must be 'lr' or 'momentum', got {which!r}.")
    if which == "momentum":
        if not (torch_class in MOMENTUM_SPECS and scheduler.cycle_momentum):
            raise InitError(
                f"schedules_from_torch: which='momentum' needs a {' or '.join(MOMENTUM_SPECS)} with "
                f"cycle_momentum=True, got {torch_class}"
                + (" with cycle_momentum=False" if torch_class in MOMENTUM_SPECS else "") + ".")
        spec = SPECS[MOMENTUM_SPECS[torch_class]]
    else:
        found = by_torch_class(torch_class)
        if found is None or found.read is None:
            supported = sorted(s.torch for s in SPECS.values() if s.torch and s.read)
            raise InitError(
                f"schedules_from_torch: {torch_class} is not supported; supported are {supported}. Fix: express "
                "the schedule with one of them, or pass an optax schedule / callable as lr yourself.")
        spec = found
    assert spec.read is not None  # checked above; momentum specs all read
    out = []
    for i, group in enumerate(scheduler.optimizer.param_groups):
        args, params = spec.read(scheduler, i, group, ctx)
        out.append((spec.name, args, spec.check(**args) if params is None else params))
    return out
