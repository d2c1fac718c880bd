r"""``torch.optim.lr_scheduler``'s schedules, written once for both packages: one spec each.

Each schedule is one :class:`ScheduleSpec`: its argument check (whose signature *is* the
factory's signature), its formula of the number of optimizer steps already taken ``t``
(optax's ``count``; torch's ``scheduler.last_epoch`` when ``scheduler.step()`` is called
after every ``optimizer.step()``), its docstring, and how to read it from / build it as
a torch scheduler. The factories of both packages (``jaxinit/_src/schedule_factories.py``,
``torchinit/_src/schedule_factories.py``) are generated from the specs by
``python -m _jaxinit.schedules_codegen`` (literal docstrings, visible to IDEs and
``help()``; a test checks they are up to date).

The formulas are written against a tiny array namespace (:class:`PyOps` here,
``_JaxOps`` in ``jaxinit/_src/schedules.py``): ``jaxinit`` runs them with ``jax.numpy``
(jittable optax schedules), ``torchinit`` with Python's ``math`` (a callable
``step -> float``). Reading torch objects goes through ``_jaxinit/torch_schedulers.py``
(the only place that touches torch's private attributes).

Closed forms vs torch's recursive forms
---------------------------------------
torch updates StepLR, MultiStepLR, ExponentialLR, LinearLR, PolynomialLR and
CosineAnnealingLR *recursively* (``lr_t = lr_{t-1} * factor_t``); we evaluate
the closed forms torch itself uses for ``scheduler.step(epoch)``
(``_get_closed_form_lr``). In exact arithmetic they are equal; in float64 they
differ by the rounding torch accumulates: measured <= 3.2e-13 of the peak lr over
1000 steps, except CosineAnnealingLR with ``eta_min != 0``, whose recursion loses
``ulp(eta_min)`` at every minimum and carries it to the next maximum (2.6e-12 for
T_max=333, eta_min=0.2; ``parity_tests/test_schedules.py`` states the bound). CosineAnnealingWarmRestarts
and OneCycleLR are closed forms in torch too; we use torch's operation order.

Where the formulas are used in both JAX and Python, ``t`` is converted to the
default float type explicitly: ``int32 / int`` is float32 in JAX even with x64
enabled.

The package: ``ops`` (the Python array namespace, argument checks), ``registry``
(``ScheduleSpec``, ``SPECS``), ``specs_*`` (one module per scheduler family, registered in
torch's order), ``plateau``,
``schedule`` (the schedule object, reading torch schedulers) and ``render`` (docstrings).
"""
from _jaxinit.schedules.ops import (  # noqa: F401
    PyOps as PyOps,
    int_arg as int_arg,
    lr_arg as lr_arg,
    real_arg as real_arg,
)
from _jaxinit.schedules.registry import (  # noqa: F401
    SPECS as SPECS,
    ScheduleSpec as ScheduleSpec,
    register as register,
    by_torch_class as by_torch_class,
)
from _jaxinit.schedules.specs_decay import (  # noqa: F401
    read_base_lr as read_base_lr,
    check_cosine_annealing_lr as check_cosine_annealing_lr,
    check_cosine_annealing_warm_restarts as check_cosine_annealing_warm_restarts,
    check_exponential_lr as check_exponential_lr,
    check_linear_lr as check_linear_lr,
    check_multi_step_lr as check_multi_step_lr,
    check_polynomial_lr as check_polynomial_lr,
    check_step_lr as check_step_lr,
)
from _jaxinit.schedules.specs_one_cycle import (  # noqa: F401
    MOMENTUM_SPECS as MOMENTUM_SPECS,
    no_torch_scheduler as no_torch_scheduler,
    check_one_cycle_lr as check_one_cycle_lr,
    check_one_cycle_momentum as check_one_cycle_momentum,
    one_cycle_params as one_cycle_params,
)
from _jaxinit.schedules.specs_factor import (  # noqa: F401
    callable_arg as callable_arg,
    set_group_lr as set_group_lr,
    check_constant_lr as check_constant_lr,
    check_lambda_lr as check_lambda_lr,
    check_multiplicative_lr as check_multiplicative_lr,
)
from _jaxinit.schedules.specs_cyclic import (  # noqa: F401
    check_cyclic_lr as check_cyclic_lr,
    check_cyclic_momentum as check_cyclic_momentum,
)
from _jaxinit.schedules.specs_composite import (  # noqa: F401
    COMPOSITES as COMPOSITES,
    check_chained_scheduler as check_chained_scheduler,
    check_sequential_lr as check_sequential_lr,
    check_swalr as check_swalr,
)
from _jaxinit.schedules.plateau import (  # noqa: F401
    PLATEAU_FIELDS as PLATEAU_FIELDS,
    check_reduce_lr_on_plateau as check_reduce_lr_on_plateau,
    cycles_momentum as cycles_momentum,
    plateau_args_from_torch as plateau_args_from_torch,
    plateau_state_from_torch as plateau_state_from_torch,
    plateau_state_to_torch as plateau_state_to_torch,
)
from _jaxinit.schedules.schedule import (  # noqa: F401
    NOT_SCHEDULES as NOT_SCHEDULES,
    ScheduleBase as ScheduleBase,
    read_torch_scheduler as read_torch_scheduler,
    scheduler_steps as scheduler_steps,
)
from _jaxinit.schedules.render import (  # noqa: F401
    MOMENTUM_EXAMPLES as MOMENTUM_EXAMPLES,
    doc as doc,
    factory_parameters as factory_parameters,
)
