r"""A whole torch training state as files, and back: the torch side of the layout in
``_jaxinit/training_state.py`` (docs/training_state.md); mirror: :mod:`jaxinit._src.training_state`.

* :func:`save_training_state` ``(path, model=, optimizer=, scheduler=, grad_scaler=, rng=, step=,
  counters=)``: a directory (``model.safetensors``, ``optimizer.safetensors``,
  ``training_state.json``, ``rng.safetensors``) or, for a path ending in ``.pt``, one
  ``torch.save`` file of ``state_dict()``\ s that ``torch.load(weights_only=True)`` reads.
* :func:`load_training_state` ``(path, model=, optimizer=, scheduler=, grad_scaler=, rng=)``:
  loads every piece given into the torch objects (weights, optimizer state matched by name or by
  a position that cannot swap, the scheduler's state or, for a state written by JAX, torch's
  own ``scheduler.step()`` replayed to the step count, the GradScaler's scalars, the RNG), and
  returns the :class:`TrainingState` read.

>>> torchinit.optim.save_training_state("ckpt", model=model, optimizer=opt, scheduler=sched)  # doctest: +SKIP
>>> ts = torchinit.optim.load_training_state("ckpt", model=model, optimizer=opt, scheduler=sched)  # doctest: +SKIP
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from _jaxinit import checkpoint as _ckpt
from _jaxinit import optim_convert as _core
from _jaxinit import torch_schedulers as _torch_sched
from _jaxinit import training_state as _ts
from _jaxinit.arrays import numpy_to_tensor, to_numpy
from _jaxinit.errors import InitError
from _jaxinit.training_state import TrainingState
from torchinit._src import optim_convert as _convert

# group keys a scheduler sets; restored from the file with the scheduler's state (torch's
# optimizer.load_state_dict restores them too; torchinit.optim.import_state keeps the optimizer's own)
_SCHEDULED_KEYS = ("lr", "initial_lr", "momentum", "betas", "max_lr", "min_lr", "max_momentum", "base_momentum")


def _weights(model, who) -> dict | None:
    if model is None:
        return None
    if isinstance(model, torch.nn.Module):
        return dict(model.state_dict())
    if isinstance(model, Mapping):
        return dict(model)
    raise InitError(f"{who}: model must be a torch.nn.Module or its state_dict(), got {type(model).__name__}.")


def _rng_states(rng, who) -> dict:
    if rng is None or rng is False:
        return {}
    if rng is True:
        return {"torch": torch.get_rng_state()}
    if not isinstance(rng, Mapping):
        raise InitError(f"{who}: rng must be True (torch's global CPU generator) or a dict name -> "
                        f"torch.Generator / state tensor, got {type(rng).__name__}.")
    out = {}
    for k, v in rng.items():
        out[k] = v.get_state() if isinstance(v, torch.Generator) else v
        if not isinstance(out[k], torch.Tensor):
            raise InitError(f"{who}: rng[{k!r}] is a {type(v).__name__}; pass a torch.Generator or a state tensor.")
    return out


def optimizer_dict(optimizer, model, who):
    """torch's ``state_dict()`` with the names (found by identity in ``model``), class, shapes, dtypes."""
    sd = optimizer.state_dict()
    tp = _core.optimizer_params(optimizer, model if isinstance(model, torch.nn.Module) else None, who)
    if tp.names is not None:
        flat = [i for g in sd["param_groups"] for i in g["params"]]
        by_index = dict(zip(flat, tp.names))
        for g in sd["param_groups"]:
            g["param_names"] = [by_index[i] for i in g["params"]]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    defaults = {k: v for k, v in optimizer.defaults.items()
                if v is None or isinstance(v, (bool, int, float, str, tuple))}
    extra = {"class": _ts.optimizer_class_name(optimizer, _core.FACTORY_BY_CLASS), "defaults": defaults,
             "shapes": [list(p.shape) for p in params], "dtypes": [str(p.dtype).replace("torch.", "") for p in params],
             "schedules": _ts.schedules_json(getattr(optimizer, "_torchinit_schedules", None), who)}
    return sd, extra


def save_training_state(path: str | os.PathLike, *, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                        grad_scaler: Any = None, rng: Any = None, step: int | None = None,
                        counters: Mapping | None = None, format: str | None = None) -> None:
    """Write a torch training state (every argument optional) in the layout of docs/training_state.md.

    Args:
      path: a directory (safetensors + JSON), or a file ending in ``.pt`` / ``.pth`` (one
        ``torch.save`` of ``state_dict()``\\ s, readable with ``torch.load(weights_only=True)``).
      model: a ``torch.nn.Module`` (its ``state_dict()``; the optimizer's parameters are also named
        from it, by identity) or a state dict.
      optimizer: any torch / torchinit optimizer this project converts: its ``state_dict()``, class,
        parameter shapes and dtypes.
      scheduler: a ``torch.optim.lr_scheduler`` object: its ``state_dict()`` and class (children's too).
      grad_scaler: a ``torch.amp.GradScaler`` (or its ``state_dict()``): its scalars ``scale``,
        ``growth_factor``, ``backoff_factor``, ``growth_interval``, ``_growth_tracker``.
      rng: True (``torch.get_rng_state()``) or ``{name: torch.Generator}``.
      step: optimizer steps taken (default: the optimizer's common step count).
      counters: ``{name: number or str}``, e.g. ``{"epoch": 3}``.
      format: None (a directory of safetensors + JSON, or ``.pt``) or ``'dcp'``: a new
        ``torch.distributed.checkpoint`` directory (``{"model": ..., "optimizer": ...}``, the
        optimizer in ``get_optimizer_state_dict``'s FQN-keyed form when names are known, so torch's
        ``set_optimizer_state_dict`` loads it) with ``training_state.json`` beside it.
    """
    who = "torchinit.optim.save_training_state"
    if format not in (None, "dcp"):
        raise InitError(f"{who}: format must be None (safetensors + JSON, or .pt) or 'dcp' "
                        f"(torch.distributed.checkpoint), got {format!r}.")
    step = _ts.check_step(step, who)
    counters = _ts.check_counters(counters, who)
    weights = _weights(model, who)
    sd = extra = None
    if optimizer is not None:
        sd, extra = optimizer_dict(optimizer, model, who)
        if step is None:
            step = _convert.export_state(optimizer)["step"]
    sched = None
    if scheduler is not None:
        sched = {"classes": _ts.scheduler_classes(scheduler, _torch_sched.children), "state": scheduler.state_dict()}
    if grad_scaler is not None and hasattr(grad_scaler, "state_dict"):
        grad_scaler = grad_scaler.state_dict()
    scaler = _ts.check_grad_scaler(grad_scaler, who)
    rngs = _rng_states(rng, who)
    if format == "dcp":
        from _jaxinit import optimizer_files as _of

        _of.write_training_dcp(path, weights=weights, optimizer=sd, optimizer_extra=extra, scheduler=sched,
                               grad_scaler=scaler, rng=rngs, rng_meta={k: {"kind": "torch"} for k in rngs}, step=step,
                               counters=counters, written_by="torchinit", who=who, to_numpy=to_numpy, torch=torch)
        return
    if _ts.is_torch_file(path):
        torch.save({"format": _ts.FORMAT, "version": _ts.VERSION, "model": weights, "optimizer": sd,
                    "optimizer_class": None if extra is None else extra["class"],
                    "optimizer_defaults": None if extra is None else extra["defaults"],
                    "param_shapes": None if extra is None else extra["shapes"],
                    "param_dtypes": None if extra is None else extra["dtypes"],
                    "optimizer_schedules": None if extra is None else extra["schedules"],
                    "scheduler": None if sched is None else sched["state"],
                    "scheduler_classes": None if sched is None else sched["classes"],
                    "grad_scaler": scaler, "rng": rngs, "step": step, "counters": counters}, os.fspath(path))
        return
    _ts.write_dir(path, weights=weights, optimizer=sd, optimizer_extra=extra, scheduler=sched, grad_scaler=scaler,
                  rng=rngs, rng_meta={k: {"kind": "torch"} for k in rngs}, step=step, counters=counters,
                  written_by="torchinit", who=who, to_numpy=to_numpy)


def _load_weights(model, weights: dict, who):
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    problems = [f"  {k}: file {v.dtype}{list(v.shape)}, model {str(own[k].dtype).replace('torch.', '')}"
                f"{list(own[k].shape)}" for k, v in weights.items()
                if k in own and (tuple(v.shape) != tuple(own[k].shape)
                                 or str(v.dtype) != str(own[k].dtype).replace("torch.", ""))]
    if missing or extra or problems:
        raise InitError(f"{who}: the file's weights do not fit the model: missing {missing[:8]}, unexpected "
                        f"{extra[:8]}" + ("\n" + "\n".join(problems) if problems else "")
                        + "\nFix: load into the model the state was saved from (same names, shapes and dtypes).")
    model.load_state_dict({k: numpy_to_tensor(v, torch) for k, v in weights.items()})


def _load_scheduler(scheduler, stored, step, written_by_torch: bool, optimizer, who):
    """torch's state (class checked) then ``scheduler.step()`` replayed up to ``step``; a state written
    by JAX (no torch state): the fresh ``scheduler`` is stepped ``step`` times, torch's own recursion."""
    # a torch state in a file written by JAX is the one JAX read at an earlier step, with lrs that the
    # file no longer holds: replay the fresh scheduler from step 0 instead (torch's own recursion)
    state = stored.get("state") if stored and written_by_torch else None
    classes = stored.get("classes") if stored else None
    ours = _ts.scheduler_classes(scheduler, _torch_sched.children)
    if classes is not None and classes != ours:
        raise InitError(f"{who}: the file's scheduler is {classes}, this one is {ours}; pass the same scheduler.")
    done = 0
    if state:
        scheduler.load_state_dict(state)
        done = _torch_sched.steps_taken(scheduler)
        if optimizer is not None and written_by_torch and stored.get("param_groups") is not None:
            for g, sg in zip(optimizer.param_groups, stored["param_groups"]):
                for k in _SCHEDULED_KEYS:
                    if k in g and k in sg:
                        _set_group_value(g, k, sg[k])
    elif _torch_sched.steps_taken(scheduler) != 0:
        raise InitError(f"{who}: the file holds no current torch scheduler state (written by JAX), so the scheduler is "
                        f"replayed from its start, but this one has stepped {_torch_sched.steps_taken(scheduler)} "
                        "times; pass a freshly built scheduler.")
    if step is None:
        return
    if step < done:
        raise InitError(f"{who}: the scheduler state is at step {done}, after the training state's step {step}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()": a replay
        for _ in range(step - done):
            scheduler.step()


def _set_group_value(group: dict, key: str, value) -> None:
    """``group[key] = value`` keeping the group's kind of value (a Tensor lr stays a Tensor)."""
    old = group[key]
    if isinstance(old, torch.Tensor):
        old.fill_(float(value))
    elif isinstance(old, tuple):
        group[key] = tuple(float(v) for v in value)
    elif isinstance(old, float):
        group[key] = float(value)
    else:
        group[key] = value


def load_training_state(path: str | os.PathLike, *, model: Any = None, optimizer: Any = None, scheduler: Any = None,
                        grad_scaler: Any = None, rng: Any = None) -> TrainingState:
    """Read a training state (a directory or ``.pt`` file) and load it into the torch objects given.

    ``model``: weights loaded (names, shapes and dtypes must match). ``optimizer``: the state loaded
    with :func:`torchinit.optim.import_state` (by torch name; names of a plain-parameter optimizer
    come from ``model`` by identity), the optimizer keeping its hyperparameters (a scheduler's lr
    and momentum are restored with the scheduler). ``scheduler``: torch's state loaded, then
    ``scheduler.step()`` replayed up to the state's step (all of it for a state written by JAX:
    torch's recursive lrs, as an uninterrupted run). ``grad_scaler``: ``load_state_dict`` of the
    stored scalars. ``rng``: True restores ``torch.set_rng_state``; ``{name: torch.Generator}``
    each generator's. Returns the :class:`TrainingState` read (numpy arrays).
    """
    who = "torchinit.optim.load_training_state"
    raw = _ts.read(path, who, lambda p: _ckpt.torch_load(torch, p, who), torch)
    body = {}
    json_path = _ts.paths(path)["json"]
    if _ts.is_torch_file(path) or (os.path.exists(os.path.join(os.fspath(path), ".metadata"))
                                   and not os.path.exists(json_path)):
        written_by_torch = True  # torch.save / a training loop's own dcp.save
    else:
        body = _ts.read_json(json_path, who)
        written_by_torch = body.get("written_by") == "torchinit"
    ts = _ts.build(raw, who, to_numpy, optimizer_class=_ts.optimizer_class_name(optimizer, _core.FACTORY_BY_CLASS)
                   if optimizer is not None and (raw.get("optimizer") or {}).get("class") is None else None,
                   scheduler_class=type(scheduler).__name__ if scheduler is not None else None)
    if model is not None:
        if ts.model is None:
            raise InitError(f"{who}: {os.fspath(path)!r} holds no model weights.")
        _load_weights(model, ts.model, who)
    if optimizer is not None:
        if ts.optimizer is None:
            raise InitError(f"{who}: {os.fspath(path)!r} holds no optimizer state.")
        sd = ts.optimizer.state_dict()
        if ts.step is not None:
            sd["step"] = ts.step
        _convert.import_state(sd, optimizer, param_names=model if isinstance(model, torch.nn.Module) else None)
    if scheduler is not None:
        stored = raw.get("scheduler")
        if stored is not None and ts.optimizer is not None:
            stored = dict(stored, param_groups=ts.optimizer.state_dict()["param_groups"])
        _load_scheduler(scheduler, stored, ts.step, written_by_torch, optimizer, who)
    if grad_scaler is not None:
        if ts.grad_scaler is None:
            raise InitError(f"{who}: {os.fspath(path)!r} holds no GradScaler state.")
        grad_scaler.load_state_dict(dict(ts.grad_scaler))
    if rng is not None and rng is not False:
        _restore_rng(rng, ts.rng, who)
    return ts


def _restore_rng(rng, stored: dict, who):
    targets = {"torch": None} if rng is True else dict(rng)
    for name, gen in targets.items():
        if name not in stored:
            raise InitError(f"{who}: the file holds no RNG state {name!r} (it has {sorted(stored)}).")
        state = torch.from_numpy(stored[name].copy())
        if gen is None:
            torch.set_rng_state(state)
        else:
            gen.set_state(state)
