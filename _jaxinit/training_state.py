"""A whole training state as files, readable by both packages (framework-free core).

Layout (docs/training_state.md), a directory ``DIR``:

* ``DIR/model.safetensors``: the weights, keyed by torch names (or Flax paths
  ``params/Dense_0/kernel``), as :func:`jaxinit.save_checkpoint` writes them;
* ``DIR/optimizer.safetensors``: the optimizer state in torch's ``state_dict()`` layout:
  every array under ``state/<i>/<field>`` (``i``: torch's flat parameter index), everything
  else (``param_groups`` with every hyperparameter and the torch names, per-parameter
  ``step``, the optimizer's class) as JSON in the header's ``__metadata__["jaxinit"]``.
  The same file is what ``save_checkpoint(path, export_state(...))`` writes;
* ``DIR/training_state.json``: the format and version, the step count, user counters, the
  scheduler (torch class names and torch's ``state_dict()``), the GradScaler's
  ``state_dict()`` scalars, and the names of the RNG states;
* ``DIR/rng.safetensors``: the RNG states as arrays (``torch.get_rng_state()``'s bytes, JAX
  key data as uint32 with the key's impl recorded in the JSON).

Or one ``.pt`` file, ``torch.save`` of ``{"format", "version", "model", "optimizer",
"optimizer_class", "scheduler", "scheduler_classes", "grad_scaler", "rng", "step",
"counters"}``: only tensors, numbers, strings, lists and dicts, so ``torch.load(...,
weights_only=True)`` reads it (never an arbitrary pickle).

Non-array values are stored in JSON with a small tagged encoding (:func:`encode`): dicts
with non-string keys as ``{"__items__": [[k, v], ...]}``, tuples as ``{"__tuple__": [...]}``,
arrays as ``{"__array__": "<key in the safetensors file>"}``.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from _jaxinit import checkpoint as _ckpt
from _jaxinit.errors import InitError

FORMAT = "jaxinit.training_state"
OPTIMIZER_FORMAT = "jaxinit.optimizer_state"
VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
JSON_FILE = "training_state.json"
GRAD_SCALER_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")
_META_KEY = "jaxinit"


# ------------------------------------------------------------------ JSON + arrays


def encode(obj, arrays: dict, prefix: str, who: str, to_numpy, keep: bool = False) -> Any:
    """``obj`` as JSON-able data; every array goes into ``arrays`` under a key built from ``prefix``
    (a copy; ``keep=True``: the object itself, for a writer that reads it later, one at a time)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, arrays, f"{prefix}/{k}", who, to_numpy, keep) for k, v in obj.items()}
        return {"__items__": [[encode(k, arrays, prefix, who, to_numpy, keep),
                               encode(v, arrays, f"{prefix}/{k}", who, to_numpy, keep)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, arrays, f"{prefix}/{i}", who, to_numpy, keep) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, arrays, f"{prefix}/{i}", who, to_numpy, keep) for i, v in enumerate(obj)]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        if keep:
            if str(obj.dtype) == "object":
                raise InitError(f"{who}: {prefix!r} is an array of Python objects; only numeric arrays are stored.")
            arrays[prefix] = obj
            return {"__array__": prefix}
        a = to_numpy(obj)
        if a.dtype == object:
            raise InitError(f"{who}: {prefix!r} is an array of Python objects; only numeric arrays are stored.")
        arrays[prefix] = np.array(a, order="C", copy=True)
        return {"__array__": prefix}
    raise InitError(f"{who}: {prefix!r} is a {type(obj).__name__}, which the training-state files do not store "
                    "(arrays, numbers, strings, None, and lists / tuples / dicts of them). Fix: leave it out, or "
                    "convert it to one of those.")


def decode(obj, arrays: Mapping, who: str) -> Any:
    """The inverse of :func:`encode` (arrays as numpy)."""
    if isinstance(obj, list):
        return [decode(v, arrays, who) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__array__"}:
            key = obj["__array__"]
            if key not in arrays:
                raise InitError(f"{who}: the JSON refers to array {key!r}, which the safetensors file does not hold; "
                                "the files are from different saves or damaged.")
            return arrays[key]
        if set(obj) == {"__tuple__"}:
            return tuple(decode(v, arrays, who) for v in obj["__tuple__"])
        if set(obj) == {"__items__"}:
            return {decode(k, arrays, who): decode(v, arrays, who) for k, v in obj["__items__"]}
        return {k: decode(v, arrays, who) for k, v in obj.items()}
    return obj


def is_optimizer_state(obj) -> bool:
    """A torch ``optimizer.state_dict()`` or an ``export_state`` dict (``state`` + ``param_groups``)."""
    return isinstance(obj, Mapping) and "state" in obj and "param_groups" in obj


def write_optimizer_file(path, state: Mapping, to_numpy, who: str, extra: Mapping | None = None) -> None:
    """``state`` (torch's ``state_dict()`` layout, tensors or arrays) as one safetensors file."""
    arrays: dict = {}
    body = {"format": OPTIMIZER_FORMAT, "version": VERSION, **(extra or {})}
    body["state"] = encode(state, arrays, "state", who, to_numpy)
    _ckpt.write_safetensors(path, arrays, {_META_KEY: json.dumps(body)}, who)


def optimizer_file_body(metadata: Mapping) -> dict | None:
    """The JSON of an optimizer-state file's header (None: not one)."""
    raw = (metadata or {}).get(_META_KEY)
    if raw is None:
        return None
    body = json.loads(raw)
    return body if body.get("format") == OPTIMIZER_FORMAT else None


def read_optimizer_file(path, who: str) -> dict:
    """``{"state": ..., "class": ..., ...}`` of :func:`write_optimizer_file`'s file (numpy arrays)."""
    arrays, metadata = _ckpt.read_safetensors(path, who)
    body = optimizer_file_body(metadata)
    if body is None:
        raise InitError(f"{who}: {os.fspath(path)!r} is a safetensors file without jaxinit's optimizer-state "
                        "header; write it with save_checkpoint(path, export_state(...)) or save_training_state.")
    check_version(body, path, who)
    body["state"] = decode(body["state"], arrays, who)
    return body


def check_version(body: Mapping, path, who: str) -> None:
    version = body.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InitError(f"{who}: {os.fspath(path)!r} has training-state format version {version!r}; this jaxinit "
                        f"reads versions <= {VERSION}. Fix: upgrade jaxinit.")


def write_json(path, body: Mapping, who: str) -> None:
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(body, fh, indent=1, sort_keys=True, allow_nan=True)
    os.replace(tmp, os.fspath(path))


def read_json(path, who: str) -> dict:
    try:
        with open(path) as fh:
            body = json.load(fh)
    except json.JSONDecodeError as err:
        raise InitError(f"{who}: {os.fspath(path)!r} is not valid JSON ({err}); the file is damaged.") from err
    if body.get("format") != FORMAT:
        raise InitError(f"{who}: {os.fspath(path)!r} is not a jaxinit training-state file (format "
                        f"{body.get('format')!r}, expected {FORMAT!r}).")
    check_version(body, path, who)
    return body


def check_grad_scaler(state, who: str) -> dict | None:
    """torch's ``GradScaler.state_dict()`` scalars (a plain dict), checked."""
    if state is None:
        return None
    if not isinstance(state, Mapping):
        raise InitError(f"{who}: grad_scaler must be torch's GradScaler (torchinit) or its state_dict() as a dict "
                        f"with keys {list(GRAD_SCALER_KEYS)}, got {type(state).__name__}.")
    if not state:  # torch's state_dict() of a disabled scaler is {}
        return {}
    missing = [k for k in GRAD_SCALER_KEYS if k not in state]
    if missing:
        raise InitError(f"{who}: grad_scaler is missing {missing} (torch's GradScaler.state_dict() has "
                        f"{list(GRAD_SCALER_KEYS)}).")
    return {k: (float(v) if k != "growth_interval" and k != "_growth_tracker" else int(v))
            for k, v in ((k, state[k].item() if hasattr(state[k], "item") else state[k]) for k in GRAD_SCALER_KEYS)}


def check_counters(counters, who: str) -> dict:
    if counters is None:
        return {}
    if not isinstance(counters, Mapping) or not all(isinstance(k, str) for k in counters):
        raise InitError(f"{who}: counters must be a dict of str -> number/str (e.g. {{'epoch': 3}}), got "
                        f"{type(counters).__name__}.")
    out = {}
    for k, v in counters.items():
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, str)):
            raise InitError(f"{who}: counters[{k!r}] is a {type(v).__name__}; counters hold numbers and strings.")
        out[k] = int(v) if isinstance(v, numbers.Integral) else (float(v) if isinstance(v, numbers.Real) else v)
    return out


def check_step(step, who: str) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise InitError(f"{who}: step must be an int >= 0 (optimizer steps taken), got {step!r}.")
    return int(step)


# ------------------------------------------------------------------ what was read


@dataclasses.dataclass
class TrainingState:
    """A training state read from files (both packages' ``load_training_state``).

    Attributes:
      model: ``{name: array}`` (torch names, torch layout; Flax variables when the file holds Flax
        paths), or None.
      optimizer: :class:`StoredOptimizer` (torch's ``state_dict()`` with its class, accepted by
        ``jaxinit.optim.from_torch`` and ``import_state`` in place of the torch optimizer), or None.
      scheduler: :class:`StoredScheduler` (accepted by ``jaxinit.optim.from_torch`` in place of the
        torch scheduler), or None.
      grad_scaler: torch's ``GradScaler.state_dict()`` as a plain dict (``scale``, ``growth_factor``,
        ``backoff_factor``, ``growth_interval``, ``_growth_tracker``), or None.
      rng: ``{name: array or JAX key}``.
      step: optimizer steps taken (None: unknown).
      counters: the user's counters (``{"epoch": 3}``).
    """

    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    grad_scaler: dict | None = None
    rng: dict = dataclasses.field(default_factory=dict)
    step: int | None = None
    counters: dict = dataclasses.field(default_factory=dict)


class StoredParam:
    """A parameter of a stored optimizer: its shape and dtype only (no data)."""

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = dtype

    def __repr__(self):
        return f"StoredParam(shape={self.shape}, dtype={self.dtype})"


class StoredOptimizer:
    """A torch optimizer read from files: its class name, ``param_groups`` (hyperparameters, torch
    names; ``params`` are :class:`StoredParam` placeholders), ``state`` and ``state_dict()``.

    Duck-types the parts of a ``torch.optim.Optimizer`` that ``jaxinit.optim.from_torch`` and
    ``import_state`` read, so a run saved by torch resumes in JAX without torch. Build it with
    :func:`stored_optimizer` (the class is named after torch's).
    """

    def __init__(self, state_dict: Mapping, shapes: list, dtypes: list, defaults: Mapping | None = None):
        self._state_dict = {"state": dict(state_dict["state"]),
                            "param_groups": [dict(g) for g in state_dict["param_groups"]]}
        if "step" in state_dict:
            self._state_dict["step"] = state_dict["step"]
        self.defaults = dict(defaults or {})
        self.state = self._state_dict["state"]
        self.param_groups = []
        for g in self._state_dict["param_groups"]:
            group = dict(g)
            group["params"] = [StoredParam(shapes[i], dtypes[i]) for i in g["params"]]
            self.param_groups.append(group)

    def state_dict(self) -> dict:
        return {"state": dict(self._state_dict["state"]),
                "param_groups": [dict(g) for g in self._state_dict["param_groups"]],
                **({"step": self._state_dict["step"]} if "step" in self._state_dict else {})}

    def __repr__(self):
        return (f"{type(self).__name__}(stored; {len(self.param_groups)} param group(s), "
                f"{sum(len(g['params']) for g in self.param_groups)} parameters)")


def _record_class(class_name: str | None) -> type:
    """StoredOptimizer itself when the class is unknown (import_state works; from_torch says what to pass)."""
    if class_name is None:
        return StoredOptimizer
    return type(class_name, (StoredOptimizer,), {"__module__": __name__})


def stored_optimizer(class_name: str | None, state_dict: Mapping, defaults: Mapping | None, who: str,
                     shapes: list | None = None, dtypes: list | None = None) -> StoredOptimizer:
    """A :class:`StoredOptimizer` whose class is named ``class_name`` (how from_torch recognises it);
    parameter shapes as stored (else read from the state: a parameter without state is refused)."""
    n = sum(len(g["params"]) for g in state_dict["param_groups"])
    flat = [i for g in state_dict["param_groups"] for i in g["params"]]
    if shapes is not None and dtypes is not None and len(shapes) == n:
        return _record_class(class_name)(state_dict, [tuple(x) for x in shapes], [_dtype(d) for d in dtypes], defaults)
    shapes = [None] * n
    dtypes = [None] * n
    for i in flat:
        entry = state_dict["state"].get(i, {})
        for k, v in entry.items():
            if k in _PARAM_SHAPED and hasattr(v, "shape"):
                shapes[i], dtypes[i] = tuple(v.shape), v.dtype
                break
    for i in flat:
        if shapes[i] is None:
            raise InitError(f"{who}: parameter #{i} of the stored {class_name} has no per-parameter state to read "
                            "its shape from (it never stepped); resume from a state where every parameter stepped.")
    return _record_class(class_name)(state_dict, shapes, dtypes, defaults)


def _dtype(name):
    try:
        return np.dtype(name)
    except TypeError:  # bfloat16 without ml_dtypes loaded: the name is enough (shapes matter here)
        return name


# torch state keys with the parameter's shape (Adafactor's row/col variances and SparseAdam's do not)
_PARAM_SHAPED = ("exp_avg", "exp_avg_sq", "momentum_buffer", "sum", "square_avg", "acc_delta", "exp_inf", "prev",
                 "step_size", "ax", "max_exp_avg_sq", "grad_avg")


class StoredScheduler:
    """A torch ``lr_scheduler`` read from files: torch's ``state_dict()`` entries as attributes and
    ``optimizer`` (the :class:`StoredOptimizer`); children of SequentialLR / ChainedScheduler are
    StoredSchedulers too. Build it with :func:`stored_scheduler`."""

    def __repr__(self):
        return f"{type(self).__name__}(stored; last_epoch={getattr(self, 'last_epoch', None)})"


def scheduler_classes(scheduler, children) -> dict:
    """``{"class": name, "children": [...]}`` of a torch scheduler (``children(s)``: a composite's)."""
    name = type(scheduler).__name__
    out: dict = {"class": name}
    if name in ("SequentialLR", "ChainedScheduler"):
        out["children"] = [scheduler_classes(c, children) for c in children(scheduler)]
    return out


def stored_scheduler(classes: Mapping, state: Mapping, optimizer, who: str) -> StoredScheduler:
    """A :class:`StoredScheduler` from the class tree and torch's ``state_dict()``."""
    cls = type(classes["class"], (StoredScheduler,), {"__module__": __name__})
    obj = cls()
    for k, v in state.items():
        if k == "_schedulers":
            continue
        setattr(obj, k, v)
    obj.optimizer = optimizer
    if "children" in classes:
        kids = state.get("_schedulers", [])
        if len(kids) != len(classes["children"]):
            raise InitError(f"{who}: the stored {classes['class']} has {len(kids)} child states for "
                            f"{len(classes['children'])} child classes; the file is damaged.")
        obj._schedulers = [stored_scheduler(c, s, optimizer, who) for c, s in zip(classes["children"], kids)]
        if classes["class"] == "SequentialLR":
            obj._milestones = state["_milestones"]
    return obj


def schedules_json(schedules, who: str) -> list | None:
    """A torchinit optimizer's per-group schedules (``_torchinit_schedules``) as JSON: ``{"name",
    "params"}`` per scheduled group (None: a constant lr); ``{"unsupported": why}`` for one whose
    parameters are not data (a LambdaLR's function), which JAX then refuses instead of a constant lr."""
    if not schedules:
        return None
    out: list = []
    for s in schedules:
        if s is None:
            out.append(None)
            continue
        if isinstance(s, UnstoredSchedule):
            out.append({"unsupported": s.why})
            continue
        arrays: dict = {}
        try:
            params = encode(dict(s.params), arrays, "params", who, np.asarray)
            args = encode(dict(s.args), arrays, "args", who, np.asarray)
        except InitError as err:
            out.append({"unsupported": f"{s!r} cannot be stored ({err})"})
            continue
        if arrays:
            out.append({"unsupported": f"{s!r} holds arrays, which the JSON does not store"})
            continue
        out.append({"name": s.name, "args": args, "params": params})
    return out


class StoredSchedule:
    """A torchinit schedule read from files: ``name``, ``args``, ``params`` (what
    ``jaxinit.optim.from_torch`` reads of a torchinit optimizer's schedules). Named ``Schedule``."""

    def __init__(self, name: str, args: Mapping, params: Mapping):
        self.name, self.args, self.params = name, dict(args), dict(params)

    def __repr__(self):
        return f"stored {self.name} schedule"


class UnstoredSchedule:
    """A schedule that could not be stored; ``from_torch`` refuses it (its repr says why)."""

    def __init__(self, why: str):
        self.why = why

    def __repr__(self):
        return f"<a torchinit schedule that the files do not hold: {self.why}>"


def stored_schedules(entries: list | None, who: str) -> list | None:
    if not entries:
        return None
    cls = type("Schedule", (StoredSchedule,), {"__module__": __name__})
    out: list = []
    for e in entries:
        if e is None:
            out.append(None)
        elif "unsupported" in e:
            out.append(UnstoredSchedule(e["unsupported"]))
        else:
            out.append(cls(e["name"], decode(e.get("args", {}), {}, who), decode(e["params"], {}, who)))
    return out


def optimizer_class_name(optimizer, factory_by_class: Mapping) -> str:
    """The first class in ``optimizer``'s MRO that the converters know (torch's or torchinit's)."""
    for c in type(optimizer).__mro__:
        if c.__name__ in factory_by_class:
            return c.__name__
    return type(optimizer).__name__


def paths(path) -> dict[str, str]:
    d = os.fspath(path)
    return {"model": os.path.join(d, MODEL_FILE), "optimizer": os.path.join(d, OPTIMIZER_FILE),
            "rng": os.path.join(d, RNG_FILE), "json": os.path.join(d, JSON_FILE)}


def is_torch_file(path) -> bool:
    return os.fspath(path).endswith(_ckpt.TORCH_SUFFIXES)


def write_dir(path, *, weights, optimizer, optimizer_extra, scheduler, grad_scaler, rng, rng_meta, step, counters,
              written_by: str, who: str, to_numpy) -> None:
    """The directory layout of the module docstring. ``weights``: flat ``{key: array}``; ``optimizer``:
    torch's ``state_dict()`` layout; ``scheduler``: ``{"classes", "state"}``; ``rng``: ``{name: array}``."""
    d = os.fspath(path)
    if os.path.exists(d) and not os.path.isdir(d):
        raise InitError(f"{who}: {d!r} exists and is not a directory; the training state is a directory of "
                        "files (or pass a path ending in .pt for one torch.save file).")
    os.makedirs(d, exist_ok=True)
    p = paths(d)
    # the JSON goes first and comes last: an interrupted save leaves no JSON (a clear error when read),
    # never an earlier save's JSON beside this one's files
    for f in (p["json"], p["model"], p["optimizer"], p["rng"]):
        if os.path.exists(f):
            os.remove(f)
    if weights is not None:
        _ckpt.write_safetensors(p["model"], {k: to_numpy(v) for k, v in weights.items()}, None, who)
    if optimizer is not None:
        write_optimizer_file(p["optimizer"], optimizer, to_numpy, who, optimizer_extra)
    if rng:
        _ckpt.write_safetensors(p["rng"], {k: to_numpy(v) for k, v in rng.items()}, None, who)
    arrays: dict = {}
    body = {"format": FORMAT, "version": VERSION, "written_by": written_by, "step": step, "counters": counters,
            "files": {"model": weights is not None, "optimizer": optimizer is not None, "rng": bool(rng)},
            "scheduler": None if scheduler is None else encode(scheduler, arrays, "scheduler", who, to_numpy),
            "grad_scaler": grad_scaler, "rng": rng_meta}
    if arrays:
        raise InitError(f"{who}: the scheduler state holds arrays {sorted(arrays)[:4]} (a Tensor lr?); store the "
                        "scheduler with Python-float lrs.")
    write_json(p["json"], body, who)


def read(path, who: str, torch_load, torch=None) -> dict:
    """``{"model", "optimizer" (the optimizer file's body), "scheduler", "grad_scaler", "rng", "rng_meta",
    "step", "counters"}`` of a directory, a DCP directory or a ``.pt`` file (numpy arrays).
    ``torch_load(path)``: the caller's ``torch.load(weights_only=True)`` (None when torch is missing);
    ``torch``: the module, for a DCP directory."""
    name = os.fspath(path)
    if os.path.exists(os.path.join(name, ".metadata")):
        from _jaxinit import optimizer_files as _of

        return _of.read_training_dcp(name, who, torch)
    if is_torch_file(name):
        if torch_load is None:
            raise InitError(f"{who}: {name!r} is a torch.save file; reading it needs torch. Save the training "
                            "state as a directory (safetensors + JSON) instead, or pip install torch.")
        return _from_torch_dict(torch_load(name), name, who)
    if not os.path.isdir(name):
        raise FileNotFoundError(f"{who}: no training-state directory {name!r}")
    p = paths(name)
    if not os.path.exists(p["json"]):
        raise InitError(f"{who}: {name!r} has no {JSON_FILE}; it is not a training-state directory (written by "
                        "save_training_state), or the save was interrupted.")
    body = read_json(p["json"], who)
    files = body.get("files", {})
    out = {"model": None, "optimizer": None, "scheduler": body.get("scheduler"), "grad_scaler": body.get("grad_scaler"),
           "rng": {}, "rng_meta": body.get("rng") or {}, "step": body.get("step"), "counters": body.get("counters") or {}}
    for key in ("model", "optimizer", "rng"):
        if files.get(key) and not os.path.exists(p[key]):
            raise InitError(f"{who}: {JSON_FILE} lists {os.path.basename(p[key])}, which is missing from {name!r}.")
    if files.get("model"):
        out["model"], _ = _ckpt.read_safetensors(p["model"], who)
    if files.get("optimizer"):
        out["optimizer"] = read_optimizer_file(p["optimizer"], who)
    if files.get("rng"):
        out["rng"], _ = _ckpt.read_safetensors(p["rng"], who)
    if out["scheduler"] is not None:
        out["scheduler"] = decode(out["scheduler"], {}, who)
    return out


def _from_torch_dict(obj, name: str, who: str) -> dict:
    """A ``torch.load``ed dict: this layout's, or a training loop's own ``{"model": ..., "optimizer":
    optimizer.state_dict(), "scheduler": ..., "step": ...}`` (classes then come from the caller)."""
    if not isinstance(obj, Mapping):
        raise InitError(f"{who}: {name!r} holds a {type(obj).__name__}; a training-state .pt file holds a dict "
                        "with 'model', 'optimizer', 'scheduler', ... (torch.save of state_dict()s).")
    if obj.get("format") not in (None, FORMAT):
        raise InitError(f"{who}: {name!r} has format {obj.get('format')!r}, expected {FORMAT!r}.")
    if "format" in obj:
        check_version(obj, name, who)
    opt = obj.get("optimizer")
    if opt is not None and not is_optimizer_state(opt):
        raise InitError(f"{who}: {name!r}['optimizer'] is not an optimizer.state_dict() (no 'state' and "
                        "'param_groups').")
    body = None
    if opt is not None:
        body = {"format": OPTIMIZER_FORMAT, "version": VERSION, "state": opt, "class": obj.get("optimizer_class"),
                "defaults": obj.get("optimizer_defaults"), "shapes": obj.get("param_shapes"),
                "dtypes": obj.get("param_dtypes"), "schedules": obj.get("optimizer_schedules")}
    sched = obj.get("scheduler")
    scheduler = None
    if sched is not None:
        scheduler = {"classes": obj.get("scheduler_classes"), "state": sched}
    return {"model": obj.get("model"), "optimizer": body, "scheduler": scheduler,
            "grad_scaler": obj.get("grad_scaler", obj.get("scaler")), "rng": dict(obj.get("rng") or {}),
            "rng_meta": obj.get("rng_meta") or {}, "step": obj.get("step"), "counters": dict(obj.get("counters") or {})}


def build(raw: Mapping, who: str, to_numpy, optimizer_class: str | None = None,
          scheduler_class: str | None = None) -> TrainingState:
    """:class:`TrainingState` (records for the optimizer and the scheduler) from :func:`read`'s dict."""
    ts = TrainingState(step=raw.get("step"), counters=dict(raw.get("counters") or {}),
                       grad_scaler=check_grad_scaler(raw.get("grad_scaler"), who))
    if raw.get("model") is not None:
        ts.model = {k: to_numpy(v) for k, v in _ckpt.flatten_for_file(raw["model"], who).items()}
    body = raw.get("optimizer")
    if body is not None:
        sd = _numpy_tree(body["state"], to_numpy)
        cls = body.get("class") or optimizer_class
        if optimizer_class is not None and optimizer_class != cls:
            raise InitError(f"{who}: optimizer_class={optimizer_class!r} but the file records {cls!r}.")
        if ts.step is None and sd.get("step") is not None:
            ts.step = int(sd["step"])
        if ts.step is not None:
            sd["step"] = ts.step
        ts.optimizer = stored_optimizer(cls, sd, body.get("defaults"), who, body.get("shapes"), body.get("dtypes"))
        scheds = stored_schedules(body.get("schedules"), who)
        if scheds is not None:
            ts.optimizer._torchinit_schedules = scheds
    sched = raw.get("scheduler")
    if sched is not None:
        classes = sched.get("classes") or ({"class": scheduler_class} if scheduler_class else None)
        if classes is None:
            raise InitError(f"{who}: the file does not record the scheduler's class; pass scheduler_class="
                            "'StepLR' (torch's class name; SequentialLR / ChainedScheduler need files written by "
                            "save_training_state, which record their children's classes).")
        if "children" not in classes and classes["class"] in ("SequentialLR", "ChainedScheduler"):
            raise InitError(f"{who}: torch's {classes['class']}.state_dict() does not record its children's classes; "
                            "save the run with torchinit.optim.save_training_state (which records them), or "
                            "rebuild the scheduler and convert it with jaxinit.optim.from_torch.")
        if ts.optimizer is None:
            raise InitError(f"{who}: the file has a scheduler but no optimizer state; save both.")
        state = _numpy_tree(sched.get("state") or {}, to_numpy)
        ts.scheduler = stored_scheduler(classes, state, ts.optimizer, who) if state else None
        if ts.scheduler is not None and ts.step is not None and getattr(ts.scheduler, "last_epoch", None) is not None:
            ts.scheduler.last_epoch = max(int(ts.scheduler.last_epoch), ts.step)  # written later by the other side
    ts.rng = {k: to_numpy(v) for k, v in (raw.get("rng") or {}).items()}
    return ts


def _numpy_tree(obj, to_numpy):
    if isinstance(obj, Mapping):
        return {k: _numpy_tree(v, to_numpy) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numpy_tree(v, to_numpy) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_numpy_tree(v, to_numpy) for v in obj)
    if hasattr(obj, "shape") and hasattr(obj, "dtype") and not isinstance(obj, np.ndarray):
        a = to_numpy(obj)
        return a
    return obj
