"""Every read of a ``torch.optim.lr_scheduler`` object that is not public API, in one place.

The schedule specs (``_jaxinit/schedules/``) read schedulers duck-typed (torch is
never imported). Most of what they need is public (``base_lrs``, ``last_epoch``,
``step_size``, ``gamma``, ``lr_lambdas``, ...); what is not is read here only, so a torch
release that renames a private attribute breaks one function, named in the error.
``parity_tests/test_schedules.py::test_private_reads_of_this_torch`` checks each reader
against the public behaviour of the installed torch, and that torch's version is one of
:data:`SUPPORTED_TORCH` (the versions these readers were checked on).

Private attributes read (torch/optim/lr_scheduler.py):

* ``OneCycleLR._schedule_phases``: the phase table ``[{"end_step", "start_lr",
  "end_lr", "start_momentum", "end_momentum"}, ...]`` (the group keys of each corner);
* ``OneCycleLR._anneal_func_type``: ``'cos'`` or ``'linear'`` (torch >= 2.2);
* ``SequentialLR._schedulers`` / ``SequentialLR._milestones``;
* ``ChainedScheduler._schedulers``;
* ``CyclicLR._scale_fn_custom``: the user's ``scale_fn`` (None for the built-in modes);
* ``SWALR._anneal_strategy``: ``'cos'`` or ``'linear'``.
"""
from __future__ import annotations

from typing import Any

from _jaxinit.errors import InitError

# torch versions whose private attributes these readers were checked on (major.minor)
SUPPORTED_TORCH = ("2.12", "2.13")


def _private(scheduler, attr: str):
    try:
        return getattr(scheduler, attr)
    except AttributeError:
        raise InitError(
            f"schedules_from_torch: this torch's {type(scheduler).__name__} has no {attr!r} (a private "
            f"attribute read by _jaxinit/torch_schedulers.py, checked on torch {', '.join(SUPPORTED_TORCH)}). "
            "Fix: use a supported torch version, or build the schedule with the factory of the same "
            "name instead of converting the scheduler.") from None


def scalar(x) -> Any:
    """A number from a float or a 1-element tensor (torch allows a 1-element tensor lr)."""
    if hasattr(x, "item") and not isinstance(x, (int, float)):
        numel = x.numel() if hasattr(x, "numel") else getattr(x, "size", 1)
        if numel != 1:
            raise InitError(f"schedules_from_torch: Tensor lr must be 1-element (as torch.optim says), got "
                            f"shape {tuple(getattr(x, 'shape', ()))}.")
        return x.item()
    return x


def class_name(scheduler) -> str:
    """The torch scheduler's class name (``"StepLR"``)."""
    return type(scheduler).__name__


def one_cycle_phases(scheduler) -> list[dict]:
    """OneCycleLR's phase table (end_step and the group keys of each phase's corners)."""
    return list(_private(scheduler, "_schedule_phases"))


def one_cycle_anneal(scheduler) -> str:
    """OneCycleLR's anneal strategy, ``'cos'`` or ``'linear'``."""
    return _private(scheduler, "_anneal_func_type")


def children(scheduler) -> list:
    """The schedulers inside a SequentialLR / ChainedScheduler, in order."""
    return list(_private(scheduler, "_schedulers"))


def milestones(scheduler) -> list[int]:
    """SequentialLR's milestones."""
    return list(_private(scheduler, "_milestones"))


def cyclic_scale_fn(scheduler):
    """CyclicLR's custom ``scale_fn`` (None when ``mode`` picks a built-in one)."""
    return _private(scheduler, "_scale_fn_custom")


def swalr_anneal(scheduler) -> str:
    """SWALR's anneal strategy, ``'cos'`` or ``'linear'``."""
    return _private(scheduler, "_anneal_strategy")


def steps_taken(scheduler) -> int:
    """The number of ``scheduler.step()`` calls since construction (ChainedScheduler: its first child's)."""
    if class_name(scheduler) == "ChainedScheduler":
        return steps_taken(children(scheduler)[0])
    return int(scheduler.last_epoch)
