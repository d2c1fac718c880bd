"""The factories' docstrings, rendered per package (read by ``python -m _jaxinit.schedules_codegen``).

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

import inspect

from _jaxinit.schedules.registry import SPECS


# ------------------------------------------------------------------ docstrings (rendered per package)

_RETURNS = {
    "jaxinit": "an optax schedule ``count -> lr`` (jittable; ``count`` = optimizer steps already taken)",
    "torchinit": "a callable ``step -> lr`` (Python float; ``step`` = optimizer steps already taken), "
                 "accepted as ``lr`` by the :mod:`torchinit.optim` optimizers",
}

MOMENTUM_EXAMPLES = {
    "jaxinit": (
        "    lr = jaxinit.optim.one_cycle_lr(0.1, total_steps=1000)\n"
        "    mom = jaxinit.optim.one_cycle_momentum(total_steps=1000)\n"
        "    tx = optax.inject_hyperparams(jaxinit.optim.sgd)(lr=lr, momentum=mom)\n"
        "    # Adam's beta1: optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=mom)\n"),
    "torchinit": (
        "    sched = torchinit.optim.one_cycle_lr(0.1, total_steps=1000)\n"
        "    torch_sched = sched.torch_scheduler(optimizer)   # real OneCycleLR, cycles momentum too\n"
        "    mom = torchinit.optim.one_cycle_momentum(total_steps=1000)\n"
        "    mom(0)  # 0.95, the momentum torch uses at the first step\n"),
}


def doc(name: str, package: str) -> str:
    return SPECS[name].doc.format(returns=_RETURNS[package], pkg=f"{package}.optim",
                                  momentum_example=MOMENTUM_EXAMPLES[package])


def factory_parameters(name: str) -> list[inspect.Parameter]:
    """The factory's parameters: those of the spec's ``check``."""
    return list(inspect.signature(SPECS[name].check).parameters.values())
