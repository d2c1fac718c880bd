"""Specs of torch's ConstantLR, LambdaLR and MultiplicativeLR.

Part of the ``_jaxinit.schedules`` package (its ``__init__`` describes the whole).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

from _jaxinit import torch_schedulers as _torch
from _jaxinit.errors import InitError
from _jaxinit.schedules.ops import int_arg, lr_arg, real_arg
from _jaxinit.schedules.registry import ScheduleSpec, register
from _jaxinit.schedules.specs_decay import read_base_lr


# ------------------------------------------------------------------ ConstantLR


def check_constant_lr(lr: float, factor: float = 1.0 / 3, total_iters: int = 5):
    who = "constant_lr"
    if isinstance(factor, numbers.Real) and not isinstance(factor, bool) and not 0 <= factor <= 1:
        raise InitError(f"{who}: Constant multiplicative factor expected to be between 0 and 1 (torch's "
                        f"ConstantLR refuses it too), got factor={factor!r}.")
    return dict(lr=lr_arg(who, lr), factor=real_arg(who, "factor", factor),
                total_iters=int_arg(who, "total_iters", total_iters, low=0, hint=(
                    " It is the number of steps the lr is scaled by factor.")))


def _constant_lr(o, t, lr, factor, total_iters):
    # torch closed form: base_lr * (factor + (last_epoch >= total_iters) * (1 - factor))
    return lr * (factor + o.where(t >= total_iters, 1 - factor, 0.0))


register(ScheduleSpec(
    "constant_lr", "ConstantLR", check_constant_lr, _constant_lr,
    doc="torch's ``ConstantLR(optimizer, factor, total_iters)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * factor   for t < total_iters,   lr afterwards\n\n"
        "torch multiplies by ``factor`` at step 0 and by ``1 / factor`` at ``total_iters`` (equal to "
        "the closed form to float64 rounding).\n\n"
        "Example::\n\n    sched = {pkg}.constant_lr(0.1, factor=0.5, total_iters=4)\n",
    read=lambda s, i, g, c: (dict(lr=read_base_lr(s, i), factor=s.factor, total_iters=s.total_iters), None),
    chainable=True,
))


# ------------------------------------------------------------------ LambdaLR / MultiplicativeLR


def callable_arg(who, name, fn, what):
    if not callable(fn):
        raise InitError(f"{who}: {name} must be a function of the step ({what}), got {fn!r}.")
    return fn


def check_lambda_lr(lr: float, lr_lambda: Callable[[Any], Any]):
    who = "lambda_lr"
    return dict(lr=lr_arg(who, lr), lr_lambda=callable_arg(who, "lr_lambda", lr_lambda, "jittable for jaxinit: it gets an "
                                                                              "int array"))


def _lambda_lr(o, t, lr, lr_lambda):
    return lr * lr_lambda(t)  # torch: base_lr * lmbda(last_epoch)


def _lambdas(which):
    """Read group ``i``'s function: the caller's ``lr_lambda`` (checked against torch's) or torch's own."""
    def read(s, i, group, ctx):
        theirs = s.lr_lambdas[i]
        given = ctx.get("lr_lambda")
        if given is None:
            if not ctx.get("python_ok"):
                raise InitError(
                    f"jaxinit.optim.schedules_from_torch: {_torch.class_name(s)} holds a Python function "
                    "(lr_lambdas) that JAX cannot be assumed to trace; pass lr_lambda=<the same function "
                    "written with jax.numpy> (or one per param group), e.g. "
                    "schedules_from_torch(sched, lr_lambda=lambda k: 0.95 ** k). It is checked against "
                    "torch's on the first steps.")
            fn = theirs
        else:
            fn = given[i] if isinstance(given, (list, tuple)) else given
            if theirs is not None:  # None: read from training-state files, which hold no function to check
                _same_function(fn, theirs, i, max(int(s.last_epoch), 0))
        if fn is None:
            raise InitError(
                f"jaxinit.optim.schedules_from_torch: this {_torch.class_name(s)} was read from files, which hold no "
                "Python function (torch's state_dict() stores None for it); pass lr_lambda=<the function>.")
        return dict(lr=read_base_lr(s, i), lr_lambda=fn), None
    return read


def _same_function(ours, theirs, group, last, n=64):
    for k in sorted(set(range(n)) | {last}):
        a, b = float(ours(k)), float(theirs(k))
        if not (a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))):
            raise InitError(
                f"schedules_from_torch: lr_lambda does not match the scheduler's lr_lambdas[{group}] at step "
                f"{k}: {a!r} vs torch's {b!r}. Fix: pass the same function (written with jax.numpy for "
                "jaxinit), or one per param group as a list.")


def _lambda_to_torch(cls_name):
    def to_torch(args, optimizer, build, reset):
        import torch.optim.lr_scheduler as tls

        fn = args["lr_lambda"]
        for group in optimizer.param_groups if reset else ():
            set_group_lr(group, args["lr"])
            group.pop("initial_lr", None)
        return getattr(tls, cls_name)(optimizer, lambda k: float(fn(k)))
    return to_torch


def set_group_lr(group, lr):
    if hasattr(group.get("lr"), "fill_"):  # a tensor lr stays a tensor, as torch's schedulers keep it
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


register(ScheduleSpec(
    "lambda_lr", "LambdaLR", check_lambda_lr, _lambda_lr,
    doc="torch's ``LambdaLR(optimizer, lr_lambda)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * lr_lambda(t)\n\n"
        "For jaxinit ``lr_lambda`` must be jittable (it gets the step as an int array); the torch "
        "scheduler built by ``.torch_scheduler()`` calls it with Python ints.\n\n"
        "Example::\n\n    sched = {pkg}.lambda_lr(0.1, lambda k: 0.95 ** k)\n",
    read=_lambdas("lr"), to_torch=_lambda_to_torch("LambdaLR"),
))


def check_multiplicative_lr(lr: float, lr_lambda: Callable[[Any], Any]):
    who = "multiplicative_lr"
    return dict(lr=lr_arg(who, lr), lr_lambda=callable_arg(who, "lr_lambda", lr_lambda, "jittable for jaxinit: it gets an "
                                                                              "int array"))


def _multiplicative_lr(o, t, lr, lr_lambda):
    # torch: lr_t = lr_{t-1} * lmbda(t) from t = 1 on: the same products in the same order
    return o.product(lr, lr_lambda, t)


register(ScheduleSpec(
    "multiplicative_lr", "MultiplicativeLR", check_multiplicative_lr, _multiplicative_lr,
    doc="torch's ``MultiplicativeLR(optimizer, lr_lambda)`` for base lr ``lr``: {returns}.\n\n"
        "    lr_t = lr * lr_lambda(1) * lr_lambda(2) * ... * lr_lambda(t)\n\n"
        "multiplied in torch's order (so equal to torch's recursion bit for bit in Python). It costs "
        "``t`` calls of ``lr_lambda`` (a ``lax.fori_loop`` in JAX): for a long run prefer a closed "
        "form (``lambda_lr``) when one exists. For jaxinit ``lr_lambda`` must be jittable.\n\n"
        "Example::\n\n    sched = {pkg}.multiplicative_lr(0.1, lambda k: 0.95)\n",
    read=_lambdas("lr"), to_torch=_lambda_to_torch("MultiplicativeLR"),
    chainable=True,
))
