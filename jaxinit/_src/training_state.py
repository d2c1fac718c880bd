r"""A whole training state as files, read and written from JAX: the JAX side of the layout in
``_jaxinit/training_state.py`` (docs/training_state.md); mirror: :mod:`torchinit._src.training_state`.

* :func:`load_training_state` ``(path)``: a state saved by :func:`torchinit.optim.save_training_state`
  (a directory, or a ``.pt`` file read with ``torch.load(weights_only=True)``: needs torch) or by
  :func:`save_training_state`. The optimizer and scheduler come back as records that
  :func:`jaxinit.optim.from_torch` and :func:`jaxinit.optim.import_state` accept in place of the
  torch objects, so a torch run continues in JAX exactly as the in-memory route does::

      ts = jaxinit.optim.load_training_state("ckpt")
      tx = jaxinit.optim.from_torch(ts.optimizer, ts.scheduler)
      params = {k: jnp.asarray(v) for k, v in ts.model.items()}    # torch names, torch layout
      opt_state = jaxinit.optim.import_state(ts.optimizer, params, tx)

* :func:`save_training_state` ``(path, params=, opt_state=, ...)``: params keyed by torch names
  (torch layout) and the optax state in torch's layout (:func:`jaxinit.optim.export_state`), which
  :func:`torchinit.optim.load_training_state` loads into a torch model, optimizer and scheduler.

torch is never imported here, except to read a ``.pt`` file and to read or write a DCP directory.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Sequence

import jax
import numpy as np

from _jaxinit import training_state as _ts
from _jaxinit.arrays import to_numpy
from _jaxinit.errors import InitError
from _jaxinit.training_state import TrainingState


def _torch_load(who):
    try:
        import torch
    except ImportError:
        return None
    from _jaxinit import checkpoint as _ckpt

    return lambda p: _ckpt.torch_load(torch, p, who)


def _key_data(name, key, who):
    """``(uint32 data, meta)`` of a JAX key (typed or raw uint32)."""
    if hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key)), {"kind": "jax_key", "impl": str(jax.random.key_impl(key))}
    a = np.asarray(key)
    if a.dtype == np.uint32:
        return a, {"kind": "jax_raw_key"}
    raise InitError(f"{who}: rng[{name!r}] is a {type(key).__name__} of {a.dtype}; pass JAX keys "
                    "(jax.random.key(...) or a uint32 jax.random.PRNGKey).")


def save_training_state(path: str | os.PathLike, *, params: Mapping | None = None, opt_state: Any = None,
                        scheduler: Any = None, grad_scaler: Mapping | None = None, rng: Mapping | None = None,
                        step: int | None = None, counters: Mapping | None = None,
                        param_names: Sequence[str] | None = None, optimizer: Any = None,
                        format: str | None = None) -> None:
    """Write a JAX training state in the layout of docs/training_state.md (a directory).

    Args:
      path: the directory (created; files of an earlier save there are replaced).
      params: ``{torch name: array}`` in torch's layout (convert Flax variables with
        :func:`jaxinit.to_torch_state_dict`), or Flax variables when no ``opt_state`` is saved.
      opt_state: a :mod:`jaxinit.optim` state for ``params``; written in torch's ``state_dict()``
        layout by :func:`jaxinit.optim.export_state` with the torch names (``param_names``, default:
        ``params``' keys in their order).
      scheduler: the ``scheduler`` of a :class:`TrainingState` read earlier (its torch class and
        state are kept; torchinit replays the scheduler from there to ``step``), or None (torchinit
        replays a fresh scheduler from step 0: the schedule is a function of the step).
      grad_scaler: torch's ``GradScaler.state_dict()`` scalars as a dict.
      rng: ``{name: JAX key}`` (typed keys keep their impl).
      step: optimizer steps taken (default: the optax state's count).
      counters: ``{name: number or str}``.
      param_names: the torch names of ``params``' leaves in the optimizer's order (default: ``params``'
        keys).
      optimizer: the ``optimizer`` of a :class:`TrainingState` read earlier: its class, param groups and
        hyperparameters are written with the new state, so the files resume in JAX again
        (``from_torch(ts.optimizer, ts.scheduler)``); without it only ``import_state`` and torchinit
        (with the user's own torch optimizer) read the optimizer state.
      format: None (safetensors + JSON) or ``'dcp'``: a new ``torch.distributed.checkpoint``
        directory (``{"model": ..., "optimizer": ...}`` in ``get_optimizer_state_dict``'s FQN-keyed
        form, written one tensor at a time by torch's DCP writer; needs torch) with
        ``training_state.json`` beside it.
    """
    who = "jaxinit.optim.save_training_state"
    from jaxinit._src.optim_convert import export_state

    if format not in (None, "dcp"):
        raise InitError(f"{who}: format must be None (safetensors + JSON) or 'dcp' (torch.distributed.checkpoint), "
                        f"got {format!r}.")

    step = _ts.check_step(step, who)
    counters = _ts.check_counters(counters, who)
    weights = None
    if params is not None:
        if not isinstance(params, Mapping):
            raise InitError(f"{who}: params must be a dict keyed by torch names (or Flax variables), got "
                            f"{type(params).__name__}.")
        from _jaxinit import checkpoint as _ckpt

        weights = _ckpt.flatten_for_file(params, who)
    sd = extra = None
    if opt_state is not None:
        if params is None or not all(not isinstance(v, Mapping) for v in params.values()):
            raise InitError(f"{who}: opt_state is written with torch's names: pass params as a flat dict keyed by "
                            "torch names in torch's layout (jaxinit.to_torch_state_dict converts Flax variables).")
        names = list(param_names) if param_names is not None else list(params)
        if optimizer is not None:
            if not isinstance(optimizer, _ts.StoredOptimizer):
                raise InitError(f"{who}: optimizer must be the optimizer of a TrainingState read by "
                                f"load_training_state, got {type(optimizer).__name__}.")
            sd = export_state(opt_state, dict(params), template=optimizer)  # its groups, names and order
            for group, stored in zip(sd["param_groups"], optimizer.state_dict()["param_groups"]):
                group.update({k: v for k, v in stored.items() if k not in ("params", "param_names")})
            cls = type(optimizer).__name__
            extra = {"class": None if cls == "StoredOptimizer" else cls, "defaults": dict(optimizer.defaults),
                     "shapes": [list(p.shape) for g in optimizer.param_groups for p in g["params"]],
                     "dtypes": [str(p.dtype) for g in optimizer.param_groups for p in g["params"]],
                     "schedules": _ts.schedules_json(getattr(optimizer, "_torchinit_schedules", None), who)}
        else:
            sd = export_state(opt_state, dict(params), param_names=names)
        if step is None:
            step = sd["step"]
    sched = None
    if scheduler is not None:
        if not isinstance(scheduler, _ts.StoredScheduler):
            raise InitError(f"{who}: scheduler must be the scheduler of a TrainingState read by "
                            "load_training_state (or None: torchinit then replays a fresh torch scheduler to "
                            f"the step), got {type(scheduler).__name__}.")
        sched = {"classes": _stored_classes(scheduler), "state": _stored_state(scheduler)}
    scaler = _ts.check_grad_scaler(grad_scaler, who)
    rngs, meta = {}, {}
    for name, key in (rng or {}).items():
        rngs[name], meta[name] = _key_data(name, key, who)
    if _ts.is_torch_file(path):
        raise InitError(f"{who}: jaxinit writes the directory layout (safetensors + JSON), not .pt; pass a "
                        "directory path (torchinit.optim.load_training_state reads it).")
    if format == "dcp":
        from _jaxinit import optimizer_files as _of
        from jaxinit._src.optimizer_io import host_copy

        torch = _torch_module(who)
        _of.write_training_dcp(path, weights=weights, optimizer=sd, optimizer_extra=extra, scheduler=sched,
                               grad_scaler=scaler, rng=rngs, rng_meta=meta, step=step, counters=counters,
                               written_by="jaxinit", who=who, to_numpy=host_copy, torch=torch)
        return
    _ts.write_dir(path, weights=weights, optimizer=sd, optimizer_extra=extra, scheduler=sched, grad_scaler=scaler,
                  rng=rngs, rng_meta=meta, step=step, counters=counters, written_by="jaxinit", who=who,
                  to_numpy=to_numpy)


def _torch_module(who):
    try:
        import torch
    except ImportError as err:
        raise InitError(f"{who}: torch.distributed.checkpoint (DCP) directories are read and written by torch: "
                        "pip install torch.") from err
    return torch


def _stored_classes(s) -> dict:
    out: dict = {"class": type(s).__name__}
    if hasattr(s, "_schedulers"):
        out["children"] = [_stored_classes(c) for c in s._schedulers]
    return out


def _stored_state(s) -> dict:
    out = {k: v for k, v in vars(s).items() if k not in ("optimizer", "_schedulers")}
    if hasattr(s, "_schedulers"):
        out["_schedulers"] = [_stored_state(c) for c in s._schedulers]
    return out


def load_training_state(path: str | os.PathLike, *, optimizer_class: str | None = None,
                        scheduler_class: str | None = None) -> TrainingState:
    """Read a training state (directory or ``.pt``) for JAX: a :class:`TrainingState`.

    ``model``: numpy arrays keyed by torch names (Flax variables when stored as Flax paths);
    ``optimizer`` / ``scheduler``: records accepted by :func:`jaxinit.optim.from_torch` and
    :func:`jaxinit.optim.import_state` in place of the torch objects; ``rng``: typed JAX keys
    rebuilt with their impl (torch RNG states as uint8 arrays); ``grad_scaler``: a plain dict.
    ``optimizer_class`` / ``scheduler_class``: torch's class names, needed only for a ``.pt`` that
    a training loop wrote itself (``torch.save({"optimizer": opt.state_dict(), ...})``).
    """
    who = "jaxinit.optim.load_training_state"
    dcp = os.path.exists(os.path.join(os.fspath(path), ".metadata"))
    raw = _ts.read(path, who, _torch_load(who), _torch_module(who) if dcp else None)
    ts = _ts.build(raw, who, to_numpy, optimizer_class, scheduler_class)
    if ts.model is not None:
        from _jaxinit import checkpoint as _ckpt

        ts.model = _ckpt.nest_if_flax(ts.model)
    meta = raw.get("rng_meta") or {}
    for name, data in list(ts.rng.items()):
        m = meta.get(name, {})
        if m.get("kind") == "jax_key":
            ts.rng[name] = jax.random.wrap_key_data(data, impl=m["impl"])
    return ts
