r"""The torch side of optimizer conversion: the mirror of :mod:`jaxinit._src.optim_convert`.

* :func:`export_state` ``(optimizer)``: a torch optimizer's state in the neutral format
  ``{"state": {i: {"step": float, "exp_avg": ndarray, ...}}, "param_groups": [...],
  "step": n}`` (torch's ``state_dict`` with NumPy arrays), which
  :func:`jaxinit.optim.import_state` turns into optax state.
* :func:`import_state` ``(state, optimizer)``: load such a dict (e.g. from
  :func:`jaxinit.optim.export_state`) into a torch optimizer, keeping the optimizer's
  own hyperparameters; tensors get the parameters' devices, values are copied bitwise.
* :func:`from_torch` ``(optimizer, scheduler=None)``: the torch twin of
  :func:`jaxinit.optim.from_torch`: a :mod:`torchinit.optim` optimizer over the same
  parameters and state whose lr follows the closed-form schedule that the JAX
  transformation uses (torch's schedulers recurse; see the schedules' docs), so a
  run can hop between the frameworks with the very same lr values.

Matching and the neutral format are documented in ``_jaxinit/optim_convert.py``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from _jaxinit import optim_convert as _core
from _jaxinit import schedules as _sched_core
from _jaxinit.arrays import to_numpy
from _jaxinit.errors import InitError
from _jaxinit.optim_checks import refuse_tensor_lr, state_shape
from torchinit._src.lbfgs import export_lbfgs_state, import_lbfgs_state
from torchinit._src.schedules import schedules_from_torch


def _copy(x) -> np.ndarray:
    return to_numpy(x, copy=True)  # a copy: the exported state never aliases the optimizer's tensors


def _scalar_dtype():
    """The dtype torch gives a fresh ``state["step"]`` (float64 under a float64 default dtype)."""
    from torch.optim import optimizer as _topt

    get = getattr(_topt, "_get_scalar_dtype", None)
    return get() if get is not None else torch.float32


def export_state(optimizer: torch.optim.Optimizer, *, param_names: Any = None) -> dict:
    """``optimizer``'s state as ``{"state": {i: {...numpy}}, "param_groups": [...], "step": n}``.

    ``step`` is the common step count (torch's SGD keeps none: then the torchinit
    schedule counter ``schedule_step`` if any, else None). Groups keep ``params``
    (indices) and ``param_names`` when torch has them or ``param_names`` gives them: a list of
    names in the optimizer's order, or the model / ``model.named_parameters()`` (the optimizer's
    Parameters found there by identity), so that :func:`jaxinit.optim.import_state` matches a
    params dict by name.
    """
    who = "torchinit.optim.export_state"
    if isinstance(optimizer, torch.optim.LBFGS):
        return export_lbfgs_state(optimizer)
    sd = optimizer.state_dict()
    state = _core.neutral_state(sd, _copy)
    groups = [{k: v for k, v in g.items() if k in ("params", "param_names")} for g in sd["param_groups"]]
    if param_names is not None:
        names = _core.optimizer_params(optimizer, param_names, who).names
        flat = [i for g in groups for i in g["params"]]
        by_index = dict(zip(flat, names or []))
        for g in groups:
            g["param_names"] = [by_index[i] for i in g["params"]]
    try:
        step = _core.common_step(state, None, sd["param_groups"], who)
    except InitError:
        if any("step" in st for st in state.values()):
            raise
        step = None  # SGD with momentum buffers and no schedule: the step is unknown to torch
    return {"state": state, "param_groups": groups, "step": step}


def _target_index(state: dict, optimizer, param_names, who) -> dict[int, int]:
    """The optimizer's flat index for each parameter index of ``state``: by name when both sides
    have torch names, else by position where that cannot silently swap two parameters."""
    groups = state.get("param_groups") or []
    src_names = _core.names_of(groups)
    src_index = [i for g in groups for i in g["params"]]
    tp = _core.optimizer_params(optimizer, param_names, who)
    n = len(tp.shapes)
    if src_names is not None and tp.names is not None:
        where = {nm: i for i, nm in enumerate(tp.names)}
        missing = sorted(set(src_names) - set(where))[:8]
        extra = sorted(set(where) - set(src_names))[:8]
        if missing or extra or len(src_names) != n:
            raise InitError(f"{who}: the state's torch names do not match the optimizer's: names in the state "
                            f"only {missing}, in the optimizer only {extra}. Fix: load it into an optimizer over "
                            "the same model's parameters.")
        return {int(i): where[nm] for i, nm in zip(src_index, src_names)}
    same_groups = groups and [len(g["params"]) for g in groups] == [len(g["params"]) for g in optimizer.param_groups]
    if not same_groups:  # e.g. jaxinit.optim.export_state's one group: no structure to check the order by
        clash = _core.shape_clash(tp, across_groups=True)
        if clash is not None:
            i, j = clash
            raise InitError(
                f"{who}: the state has {'no param groups' if not groups else f'{len(groups)} param group(s)'} and "
                f"no torch names, and this optimizer's parameters {_core.describe_param(i, tp)} and "
                f"{_core.describe_param(j, tp)} have the same shape in different groups, so loading by position "
                "could silently swap their state. Fix: export with names (jaxinit.optim.export_state(..., "
                "template=torch_optimizer) or a params dict keyed by torch names with param_names=), and pass "
                "param_names=model here if the optimizer was not built from named_parameters().")
    return {}  # by position: state index i is the optimizer's parameter i


def import_state(state: Any, optimizer: torch.optim.Optimizer, *, param_names: Any = None) -> torch.optim.Optimizer:
    """Load a neutral state dict (or another optimizer's ``state_dict()``) into ``optimizer``.

    The optimizer keeps its own param groups and hyperparameters; only the per-parameter
    state is replaced (and a torchinit schedule's ``schedule_step`` set to the state's
    ``step``). Parameters are matched by torch name when the state and the optimizer both
    have names (``param_names``: names in the optimizer's order, or the model /
    ``model.named_parameters()``, found by identity); else by position, as torch's own
    ``load_state_dict`` does, where the state's param groups have the optimizer's sizes or no two
    parameters of different groups have the same shape (otherwise refused: a swap would go
    unnoticed). Every shape / dtype / index problem is listed in one error. Returns ``optimizer``.
    """
    who = "torchinit.optim.import_state"
    if not isinstance(state, dict) or "state" not in state:
        raise InitError(f"{who}: state must be jaxinit.optim.export_state's / torchinit.optim.export_state's dict "
                        f"or a torch state_dict(), got {type(state).__name__}.")
    if isinstance(optimizer, torch.optim.LBFGS):
        return import_lbfgs_state(state, optimizer)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    src = _core.neutral_state(state, _copy)
    target = _target_index(state, optimizer, param_names, who)
    problems = []
    new_state = {}
    sdtype = _scalar_dtype()
    for j, entry in src.items():
        i = target.get(j, j)
        if not 0 <= i < len(params):
            problems.append(f"  state for parameter #{i}, but the optimizer has {len(params)} parameters")
            continue
        p = params[i]
        old = optimizer.state.get(p, {})
        out: dict[str, Any] = {}
        for k, v in entry.items():
            if k == "step" and isinstance(optimizer, torch.optim.SparseAdam):
                out[k] = int(v)  # torch's SparseAdam keeps a Python int (a tensor step would compute in float32)
                continue
            if k == "step":
                dt = old["step"].dtype if isinstance(old.get("step"), torch.Tensor) else sdtype
                out[k] = torch.tensor(v, dtype=dt)
                continue
            t = torch.from_numpy(np.ascontiguousarray(v).reshape(np.shape(v)))  # ascontiguousarray makes 0-d 1-d
            if k in _core.SCALAR_FIELDS:  # a 0-d tensor in torch's default dtype (mu_product, eta, mu)
                if t.shape != ():
                    problems.append(f"  {k} of parameter #{i} has shape {list(t.shape)}; torch keeps a 0-d tensor")
                out[k] = t
                continue
            if tuple(t.shape) != state_shape(k, p.shape) or t.dtype != p.dtype:
                problems.append(f"  {k} of parameter #{i} is {t.dtype}{list(t.shape)}, the parameter is "
                                f"{p.dtype}{list(p.shape)}")
                continue
            out[k] = t.to(p.device)
        new_state[i] = out
    if problems:
        raise InitError(f"{who}: the state does not fit this optimizer:\n" + "\n".join(problems)
                        + "\nFix: load it into an optimizer over the same parameters, in the same order.")
    sd = optimizer.state_dict()
    sd["state"] = new_state
    step = state.get("step")
    if step is not None:
        for g in sd["param_groups"]:
            if "schedule_step" in g:
                g["schedule_step"] = int(step)
    optimizer.load_state_dict(sd)
    # load_state_dict casts every state tensor but 'step' to the parameter's dtype; torch's own run keeps
    # mu_product / eta / mu in its default dtype (float32), and its arithmetic depends on it: restore it
    for i, entry in new_state.items():
        st = optimizer.state[params[i]]
        for k in _core.SCALAR_FIELDS:
            if k in entry and k in st:
                st[k] = entry[k].to(device=st[k].device).clone()
    return optimizer


def from_torch(optimizer: Any, scheduler: Any = None, *, param_names=None, layout: str = "torch",
               step: int | None = None, lr_lambda: Any = None) -> torch.optim.Optimizer:
    """A :mod:`torchinit.optim` optimizer equal to ``optimizer`` (+ ``scheduler``), state included.

    ``optimizer``: a ``torch.optim`` optimizer or a :mod:`torchinit.optim` one. Converted (the
    optimizer registry, ``_jaxinit/optim_registry.py``):
    SGD, Adagrad, RMSprop, Adam, AdamW, NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD,
    Adafactor, Muon, LBFGS or SparseAdam.
    The twin of :func:`jaxinit.optim.from_torch`: same factory per param group with the
    group's hyperparameters over the same parameter tensors, the scheduler as the
    closed-form schedule (``lr`` callables, counter ``schedule_step`` =
    ``scheduler.last_epoch``), and the optimizer's state copied. OneCycleLR's momentum
    cycling is torch-scheduler-only here: keep the torch scheduler for it.
    ``param_names`` and ``layout`` are accepted for the mirror's signature (torch's own
    parameters are used here). ``step``: the number of ``optimizer.step()`` calls so far,
    checked against the scheduler's count (needed with a stepped scheduler on torch's SGD,
    which keeps no step count); ``lr_lambda`` replaces LambdaLR's / MultiplicativeLR's
    functions after a check (see :func:`schedules_from_torch`).
    """
    who = "torchinit.optim.from_torch"
    factory_name = _core.optimizer_factory_name(optimizer, who)
    factory = _core.registry.BY_FACTORY[factory_name].factory_of("torchinit")
    refuse_tensor_lr(optimizer, factory_name, who)  # Adafactor / Muon / SparseAdam compute in its dtype
    n = len(optimizer.param_groups)
    if layout not in ("torch", "flax"):
        raise InitError(f"{who}: layout must be 'torch' or 'flax', got {layout!r}.")
    lrs: list[Any] = [None] * n
    sched_step = None
    if scheduler is not None:
        if getattr(scheduler, "optimizer", None) is not optimizer:
            raise InitError(f"{who}: the scheduler does not drive this optimizer; pass the scheduler built on it.")
        if type(scheduler).__name__ == "ReduceLROnPlateau":
            raise InitError(f"{who}: ReduceLROnPlateau drives the optimizer it was built on; convert the optimizer "
                            "alone (from_torch(optimizer)), then carry the scheduler over with "
                            "torchinit.optim.import_plateau_state(torchinit.optim.export_plateau_state(scheduler), "
                            "torchinit.optim.reduce_lr_on_plateau(new_optimizer, ...)).")
        if _sched_core.cycles_momentum(scheduler, who):
            raise InitError(f"{who}: {type(scheduler).__name__} with cycle_momentum=True also sets momentum/betas, "
                            "which torchinit optimizers do not schedule; keep the torch scheduler (or use "
                            "jaxinit.optim.from_torch, which injects the momentum cycle).")
        lrs = schedules_from_torch(scheduler, lr_lambda=lr_lambda)
        sched_step = _sched_core.scheduler_steps(optimizer, scheduler, step, who)
    groups = []
    for i, g in enumerate(optimizer.param_groups):
        hp = _core.torch_quirks(optimizer, factory_name, _core.group_hyperparams(factory_name, g, factory, who, i))
        if lrs[i] is not None:
            hp["lr"] = lrs[i]
        groups.append({"params": list(g["params"]), **hp})
    top = {"lr": groups[0]["lr"]}
    for g in groups:  # scalar_dtype is a factory argument, not a param-group option
        if "scalar_dtype" in g:
            top["scalar_dtype"] = g.pop("scalar_dtype")
        if g.get("differentiable"):  # torch's single-tensor path for the whole optimizer (no foreach)
            top["differentiable"] = True
    if "initial_accumulator_value" in groups[0]:  # torch's Adagrad reads it from the constructor only
        top["initial_accumulator_value"] = groups[0]["initial_accumulator_value"]
    new = factory(groups, **top)
    exported = export_state(optimizer)
    if sched_step is not None:  # checked against the optimizer's own count by scheduler_steps
        exported["step"] = sched_step
    return import_state(exported, new)
