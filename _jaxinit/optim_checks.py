"""Hyperparameter checks and scalar rules of torch 2.13's Adafactor, Muon, LBFGS and SparseAdam.

Framework-free, shared by ``jaxinit/_src/{adafactor,muon,lbfgs,sparse_adam}.py`` and
their ``torchinit`` mirrors. The refusals are torch's own (torch/optim/_adafactor.py,
_muon.py, lbfgs.py, sparse_adam.py ``__init__``), torch's wording first, then what is
accepted and the fix. Only concrete values are checked (a schedule or a traced
value is not); see :func:`_jaxinit.optim.concrete`.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

from _jaxinit.errors import InitError
from _jaxinit import optim_registry as registry
from _jaxinit.optim import concrete

# torch/optim/_muon.py: DEFAULT_A, DEFAULT_B, DEFAULT_C, EPS, DEFAULT_NS_STEPS
MUON_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
MUON_EPS = 1e-7
MUON_NS_STEPS = 5
MUON_ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def _lr(who: str, lr: Any, strict: bool = False) -> None:
    if hasattr(lr, "shape") and not callable(lr) and tuple(getattr(lr, "shape", ())) not in ((), (1,)):
        raise InitError(f"{who}: Tensor lr must be 1-element, got shape {tuple(lr.shape)}; pass a number, "
                        "a 0-d array or a schedule.")
    v = concrete(lr)
    if v is not None and (v < 0 or (strict and v == 0)):
        bound = "> 0" if strict else ">= 0"
        raise InitError(f"{who}: Invalid learning rate: {lr}. lr must be {bound} (torch.optim refuses it too); "
                        "e.g. lr=1e-3.")


def _bool(who: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InitError(f"{who}: {name} must be True or False, got {value!r}.")


# Each check_* below repeats the shape of torch's own constructor checks, one per optimizer, with
# torch's message for each argument (by design: the messages differ per optimizer and argument).
def check_adafactor(who: str, lr: Any, beta2_decay: Any, eps: Any, d: Any, weight_decay: Any,
                    maximize: Any) -> None:
    """torch.optim.Adafactor's constructor checks."""
    _lr(who, lr)
    v = concrete(beta2_decay)
    if v is not None and not v <= 0.0:
        raise InitError(f"{who}: beta2_decay should be <= 0 but is: {beta2_decay}. beta2_t = 1 - t**beta2_decay "
                        "must rise towards 1; pass beta2_decay <= 0 (torch's default -0.8).")
    if not isinstance(eps, (tuple, list)) or len(eps) != 2:
        raise InitError(f"{who}: eps must be a pair (eps1, eps2) with eps1 None (the dtype's machine epsilon) or "
                        f"a number >= 0, got {eps!r}; e.g. eps=(None, 1e-3).")
    if eps[0] is not None:
        v = concrete(eps[0])
        if v is None and not isinstance(eps[0], numbers.Real):
            raise InitError(f"{who}: eps[0] must be None or a number >= 0, got {eps[0]!r}.")
        if v is not None and not v >= 0.0:
            raise InitError(f"{who}: epsilon1 should be >= 0 but is: {eps[0]}; pass eps=(None, ...) or a number >= 0.")
    v = concrete(eps[1])
    if v is not None and not v >= 0.0:
        raise InitError(f"{who}: epsilon2 should be >= 0 but is: {eps[1]}; pass eps=(..., 1e-3) or a number >= 0.")
    v = concrete(d)
    if v is not None and not v >= 1.0:
        raise InitError(f"{who}: Clipping threshold d should be >= 1 but is: {d}; pass d >= 1 (default 1.0).")
    v = concrete(weight_decay)
    if v is not None and not v >= 0.0:
        raise InitError(f"{who}: weight_decay should be >= 0 but is: {weight_decay}; pass weight_decay >= 0.")
    _bool(who, "maximize", maximize)


def check_muon(who: str, lr: Any, weight_decay: Any, momentum: Any, nesterov: Any, ns_coefficients: Any,
               eps: Any, ns_steps: Any, adjust_lr_fn: Any) -> None:
    """torch.optim.Muon's constructor checks, plus those of ``_zeropower_via_newtonschulz`` (made eager)."""
    _lr(who, lr)
    v = concrete(momentum)
    if v is not None and not v >= 0.0:
        raise InitError(f"{who}: momentum should be >= 0 but is: {momentum}; pass momentum >= 0 (default 0.95).")
    v = concrete(weight_decay)
    if v is not None and not v >= 0.0:
        raise InitError(f"{who}: weight decay should be >= 0 but is: {weight_decay}; pass weight_decay >= 0.")
    _bool(who, "nesterov", nesterov)
    if adjust_lr_fn not in MUON_ADJUST_LR_FNS:
        raise InitError(f"{who}: Adjust learning rate function {adjust_lr_fn} is not supported; pass adjust_lr_fn="
                        "None, 'original' (sqrt(max(1, A/B))) or 'match_rms_adamw' (0.2 * sqrt(max(A, B))).")
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, numbers.Integral):
        raise InitError(f"{who}: ns_steps must be a Python int (the number of Newton-Schulz iterations is the "
                        f"structure of the computation), got {ns_steps!r}; with optax.inject_hyperparams pass "
                        "static_args=('ns_steps',).")
    steps = int(ns_steps)  # numbers.Integral -> int: typeshed gives Integral no comparison with int
    if steps >= 100:
        raise InitError(f"{who}: Number of steps must be less than 100 for computational efficiency "
                        f"(ns_steps={ns_steps}); pass ns_steps < 100 (default 5).")
    if steps < 0:
        raise InitError(f"{who}: ns_steps must be >= 0, got {ns_steps}.")
    if not isinstance(ns_coefficients, (tuple, list)) or len(ns_coefficients) != 3:
        raise InitError(f"{who}: Coefficients must be a tuple of exactly 3 values, got {ns_coefficients!r}; "
                        "e.g. ns_coefficients=(3.4445, -4.775, 2.0315).")
    v = concrete(eps)
    if v is not None and not v >= 0.0:
        raise InitError(f"{who}: eps must be >= 0 (it clamps the norm from below), got {eps}.")


def muon_lr_ratio(adjust_lr_fn: str | None, shape) -> float:
    """torch/optim/_muon.py ``_adjust_lr``'s ratio for a parameter of ``shape`` (A, B)."""
    a, b = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, a / b))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(a, b))
    return 1.0


def muon_shape_error(who: str, where: str, shape) -> InitError:
    return InitError(
        f"{who}: Muon only supports 2D parameters whereas we found a parameter with size: {tuple(shape)} "
        f"({where}). Optimize the 2-D hidden-layer weights with Muon and the rest (biases, norms, embeddings) "
        "with e.g. AdamW: optax.multi_transform({'muon': muon(...), 'adamw': adamw(...)}, "
        "lambda p: jax.tree.map(lambda x: 'muon' if x.ndim == 2 else 'adamw', p)) "
        "(torch: two optimizers, or torch.optim.Muon over the 2-D parameters only).")


def check_lbfgs(who: str, lr: Any, max_iter: Any, max_eval: Any, tolerance_grad: Any, tolerance_change: Any,
                history_size: Any, line_search_fn: Any) -> int:
    """torch.optim.LBFGS's constructor checks; returns ``max_eval`` (torch's default ``max_iter * 5 // 4``)."""
    if callable(lr):
        raise InitError(f"{who}: lr must be a number (torch's LBFGS has one lr per step() call, no schedule); "
                        "change it between steps by rebuilding the optimizer.")
    _lr(who, lr)
    for name, value in (("max_iter", max_iter), ("history_size", history_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InitError(f"{who}: {name} must be an int >= 1, got {value!r}.")
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    if isinstance(max_eval, bool) or not isinstance(max_eval, numbers.Integral):
        raise InitError(f"{who}: max_eval must be an int or None (= max_iter * 5 // 4), got {max_eval!r}.")
    if line_search_fn not in (None, "strong_wolfe"):
        raise InitError(f"{who}: only 'strong_wolfe' is supported as line_search_fn (torch: \"only "
                        f"'strong_wolfe' is supported\"), got {line_search_fn!r}; pass None or 'strong_wolfe'.")
    if line_search_fn is not None and max_eval < 1:
        raise InitError(f"{who}: max_eval={max_eval} leaves the strong-Wolfe line search a negative evaluation "
                        "budget (torch fails inside _strong_wolfe); pass max_eval >= 1.")
    for name, value in (("tolerance_grad", tolerance_grad), ("tolerance_change", tolerance_change)):
        v = concrete(value)
        if v is None:
            raise InitError(f"{who}: {name} must be a number, got {value!r}.")
    return int(max_eval)


def check_sparse_adam(who: str, lr: Any, betas: Any, eps: Any, maximize: Any) -> None:
    """torch.optim.SparseAdam's constructor checks (lr and eps strictly positive)."""
    _lr(who, lr, strict=True)
    v = concrete(eps)
    if v is not None and not v > 0.0:
        raise InitError(f"{who}: Invalid epsilon value: {eps}. SparseAdam needs eps > 0 (torch.optim refuses it "
                        "too); e.g. eps=1e-8.")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise InitError(f"{who}: betas must be a pair (beta1, beta2), got {betas!r}; e.g. betas=(0.9, 0.999).")
    for i, b in enumerate(betas):
        v = concrete(b)
        if v is not None and not 0.0 <= v < 1.0:
            raise InitError(f"{who}: Invalid beta parameter at index {i}: {b}. betas[{i}] must lie in [0, 1); "
                            "e.g. betas=(0.9, 0.999).")
    _bool(who, "maximize", maximize)


# ------------------------------------------------------------------ conversion (read by the optim_convert modules)
def state_shape(key: str, param_shape: tuple) -> tuple:
    """The shape torch gives state ``key`` of a parameter: Adafactor's factors drop a dimension to 1."""
    shape = tuple(param_shape)
    if key == "row_var":
        return shape[:-1] + (1,)
    if key == "col_var":
        return shape[:-2] + (1, shape[-1])
    return shape


def refuse_tensor_lr(optimizer, factory_name: str, who: str) -> None:
    """from_torch refuses a tensor lr for Adafactor / Muon / SparseAdam: torch then computes in its dtype.

    ``torch.optim.optimizer._to_scalar`` keeps a 0-d tensor lr a tensor, so torch computes
    Adafactor's ``alpha`` and ``1 - lr * weight_decay``, Muon's adjusted lr and decay factor and
    SparseAdam's ``step_size = lr * sqrt(bc2) / bc1`` in the tensor's dtype (float32 for
    ``torch.tensor(1e-3)``), which a Python-float lr does not reproduce (~1e-7 relative per step).
    """
    if factory_name not in registry.TENSOR_LR_KEPT:
        return
    for i, g in enumerate(optimizer.param_groups):
        lr = g.get("lr")
        if hasattr(lr, "dtype") and hasattr(lr, "shape") and not isinstance(lr, (int, float)):
            raise InitError(
                f"{who}: param group {i} has a tensor lr ({lr!r}); torch's {type(optimizer).__name__} keeps it a "
                "tensor (torch.optim.optimizer._to_scalar) and computes its step size in the tensor's dtype "
                f"({lr.dtype}), which the converted optimizer (Python-float lr) would not reproduce (~1e-7 relative "
                "per step). Build the torch optimizer with lr=float(lr) (or set group['lr'] = float(lr)) to convert.")
