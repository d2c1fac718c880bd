"""Hyperparameter checks for the optimizers of both packages (framework-free).

``jaxinit.optim`` and ``torchinit.optim`` call :func:`check` with the factory's
arguments before building anything. The refusals are ``torch.optim``'s, with
torch's wording first (so a search for the torch message finds ours), then what
is accepted and how to fix the call. They raise :class:`InitError`, a
``ValueError`` like torch's.

Only concrete values are checked: Python/NumPy numbers and 0-d arrays or
tensors that can be read with ``float()``. A schedule (a callable) and a value
traced by ``jax.jit`` (e.g. a hyperparameter injected by
``optax.inject_hyperparams`` inside a jitted update) are not checked here.

:func:`is_static_zero` is the one rule both packages use to decide optimizer
*structure* (whether a momentum buffer / weight-decay term exists): only a
Python number equal to 0 counts as "absent"; an array (even a concrete 0) keeps
the general path, so that structure never depends on a traced value.
"""
from __future__ import annotations

import numbers
from typing import Any

from _jaxinit.errors import InitError


def concrete(x: Any) -> float | None:
    """``float(x)`` for numbers and readable 0-d arrays/tensors; None for schedules and tracers."""
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, numbers.Real):
        return float(x)
    if callable(x) or getattr(x, "shape", None) != ():
        return None
    try:
        return float(x)
    except Exception:  # a jax tracer (ConcretizationTypeError) or anything unreadable
        return None


def is_static_zero(x: Any) -> bool:
    """True only for a Python/NumPy number equal to 0 (decides structure statically)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and x == 0


def _nonneg(who: str, name: str, value: Any, torch_msg: str, what: str) -> None:
    v = concrete(value)
    if v is not None and not 0.0 <= v:
        raise InitError(
            f"{who}: {torch_msg}: {value}. {name} is {what} and must be >= 0 "
            f"(torch.optim refuses it too); pass {name}=<a non-negative number>."
        )


def _beta(who: str, index: int, value: Any) -> None:
    v = concrete(value)
    if v is not None and not 0.0 <= v < 1.0:
        raise InitError(
            f"{who}: Invalid beta parameter at index {index}: {value}. betas[{index}] is a decay "
            f"rate and must lie in [0, 1) (torch.optim refuses it too); e.g. betas=(0.9, 0.999)."
        )


def _bool(who: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InitError(f"{who}: {name} must be True or False, got {value!r}.")


_LR = ("lr", "Invalid learning rate", "the learning rate (a number or a schedule)")
_WD = ("weight_decay", "Invalid weight_decay value", "the L2 / decoupled decay coefficient")
_EPS = ("eps", "Invalid epsilon value", "the term added to the denominator")
_MOM = ("momentum", "Invalid momentum value", "the momentum factor")


def _lr_size(who: str, lr: Any) -> None:
    """torch's ``Tensor lr must be 1-element`` (an array lr of any other size would broadcast)."""
    shape = getattr(lr, "shape", None)
    if callable(lr) or shape is None or shape == ():
        return
    size = 1
    for d in shape:
        size *= int(d)
    if size != 1:
        raise InitError(f"{who}: Tensor lr must be 1-element, got an array of shape {tuple(shape)}. lr is one "
                        "learning rate for the whole parameter group (torch.optim refuses it too); pass a number, "
                        "a 0-d array or a schedule, and use optax.multi_transform for per-parameter rates.")


def check(who: str, **hp: Any) -> None:
    """Check the hyperparameters of optimizer ``who`` like ``torch.optim`` does.

    Keys understood: lr, momentum, dampening, weight_decay, nesterov, maximize,
    lr_decay, initial_accumulator_value, eps, alpha, centered, betas, amsgrad,
    eps_in_sqrt, eps_root, initial_scale, amsgrad_bias_corrected,
    trust_coefficient, decay_in_norm, decay (EMA), debias, momentum_decay,
    decoupled_weight_decay, rho, etas, step_sizes, lambd, t0, scalar_dtype.
    """
    if "lr" in hp:
        _lr_size(who, hp["lr"])
    for key, name_msg_what in (("lr", _LR), ("weight_decay", _WD), ("eps", _EPS), ("momentum", _MOM)):
        if key in hp:
            _nonneg(who, name_msg_what[0], hp[key], name_msg_what[1], name_msg_what[2])
    if "lr_decay" in hp:
        _nonneg(who, "lr_decay", hp["lr_decay"], "Invalid lr_decay value", "the Adagrad lr decay")
    if "initial_accumulator_value" in hp:
        _nonneg(who, "initial_accumulator_value", hp["initial_accumulator_value"],
                "Invalid initial_accumulator_value value", "the starting value of the sum of squares")
    if "alpha" in hp:
        _nonneg(who, "alpha", hp["alpha"], "Invalid alpha value", "the smoothing constant")
    if "eps_root" in hp:
        _nonneg(who, "eps_root", hp["eps_root"], "Invalid eps_root value", "the term added inside the square root")
    if "initial_scale" in hp:
        _nonneg(who, "initial_scale", hp["initial_scale"], "Invalid initial_scale value",
                "the starting value of the squared-gradient average")
    if "trust_coefficient" in hp:
        _nonneg(who, "trust_coefficient", hp["trust_coefficient"], "Invalid trust_coefficient value",
                "LARS's eta")
    if "decay" in hp:
        v = concrete(hp["decay"])
        if v is not None and not 0.0 <= v < 1.0:
            raise InitError(f"{who}: Invalid decay value: {hp['decay']}. decay must lie in [0, 1); e.g. decay=0.9.")
    if "betas" in hp:
        betas = hp["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise InitError(f"{who}: betas must be a pair (beta1, beta2), got {betas!r}; e.g. betas=(0.9, 0.999).")
        _beta(who, 0, betas[0])
        _beta(who, 1, betas[1])
    if "momentum_decay" in hp:
        _nonneg(who, "momentum_decay", hp["momentum_decay"], "Invalid momentum_decay value",
                "NAdam's momentum decay psi")
    if "rho" in hp:
        v = concrete(hp["rho"])
        if v is not None and not 0.0 <= v <= 1.0:
            raise InitError(f"{who}: Invalid rho value: {hp['rho']}. rho is the decay of the running averages and "
                            "must lie in [0, 1] (torch.optim refuses it too); e.g. rho=0.9.")
    if "etas" in hp:
        etas = hp["etas"]
        if not isinstance(etas, (tuple, list)) or len(etas) != 2:
            raise InitError(f"{who}: etas must be a pair (etaminus, etaplus), got {etas!r}; e.g. etas=(0.5, 1.2).")
        lo, hi = concrete(etas[0]), concrete(etas[1])
        if lo is not None and hi is not None and not 0.0 < lo < 1.0 < hi:
            raise InitError(f"{who}: Invalid eta values: {etas[0]}, {etas[1]}. Rprop needs 0 < etaminus < 1 < "
                            "etaplus (torch.optim refuses it too); e.g. etas=(0.5, 1.2).")
    if "step_sizes" in hp:
        ss = hp["step_sizes"]
        if not isinstance(ss, (tuple, list)) or len(ss) != 2:
            raise InitError(f"{who}: step_sizes must be a pair (min_step, max_step), got {ss!r}; "
                            "e.g. step_sizes=(1e-6, 50).")
    if "scalar_dtype" in hp and hp["scalar_dtype"] not in ("float32", "float64"):
        raise InitError(f"{who}: scalar_dtype must be 'float32' or 'float64' (the dtype of torch's 0-d state "
                        f"tensors), got {hp['scalar_dtype']!r}.")
    for flag in ("nesterov", "maximize", "centered", "amsgrad", "eps_in_sqrt", "amsgrad_bias_corrected",
                 "decay_in_norm", "debias", "decoupled_weight_decay", "differentiable"):
        if flag in hp:
            _bool(who, flag, hp[flag])
    if hp.get("nesterov"):
        m, d = concrete(hp.get("momentum", 0.0)), concrete(hp.get("dampening", 0.0))
        if (m is not None and m <= 0) or (d is not None and d != 0):
            raise InitError(
                f"{who}: Nesterov momentum requires a momentum and zero dampening "
                f"(got momentum={hp.get('momentum', 0.0)}, dampening={hp.get('dampening', 0.0)}); "
                "pass momentum > 0 and dampening=0, or nesterov=False."
            )
    if hp.get("amsgrad_bias_corrected") and not hp.get("amsgrad"):
        raise InitError(
            f"{who}: amsgrad_bias_corrected=True only applies with amsgrad=True (optax.amsgrad's "
            "convention); pass amsgrad=True as well, or drop amsgrad_bias_corrected."
        )
