"""The schedule registry: one :class:`ScheduleSpec` per schedule in ``SPECS`` (filled by the ``specs_*`` modules).

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


# ------------------------------------------------------------------ the schedule spec


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    """One schedule: everything both packages need, in one place.

    ``check``'s signature (names, annotations, defaults) is the factory's; it returns the
    resolved parameters that ``formula(ops, t, **params)`` takes. ``doc`` is the factory
    docstring (``{returns}``, ``{pkg}`` and ``{momentum_example}`` are filled in per package).
    ``read(scheduler, i, group, ctx) -> (args, params | None)`` reads param group ``i`` of a torch
    scheduler of class ``torch``; ``to_torch(args, optimizer, build, reset)`` builds one (default:
    set every group's lr to ``args["lr"]`` and call the class with the other arguments).
    """

    name: str
    torch: str | None
    check: Callable[..., dict]
    formula: Callable[..., Any]
    doc: str
    read: Callable[..., tuple] | None = None
    to_torch: Callable[..., Any] | None = None
    chainable: bool = False  # torch's recursion multiplies the incoming lr (what ChainedScheduler composes)


# One ScheduleSpec per schedule below, the same shape by design (the lr and momentum variants of OneCycleLR
# and CyclicLR are separate public schedules with their own docs).
SPECS: dict[str, ScheduleSpec] = {}


def register(spec: ScheduleSpec) -> ScheduleSpec:
    SPECS[spec.name] = spec
    return spec


def by_torch_class(torch_class: str) -> ScheduleSpec | None:
    for s in SPECS.values():
        if s.torch == torch_class:
            return s
    return None
