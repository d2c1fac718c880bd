"""torch.optim optimizers <-> jaxinit.optim transformations: the framework-free part.

Both packages read a torch optimizer the same way (duck-typed: ``param_groups``,
``state_dict()``, the class name), match its parameter list to a params pytree the
same way, and exchange optimizer state in one neutral format:

    {"state": {i: {"step": float, "exp_avg": ndarray, ...}}, "step": int | None}

i.e. ``torch.optim.Optimizer.state_dict()["state"]`` with NumPy arrays (``i`` is torch's
flat parameter index: group 0's parameters first), plus the common step count (torch's
SGD keeps none; the schedule needs it).

Matching a params pytree to torch's parameter list (docs/training_state.md, "Matching parameters"):
never by a guess. In this order:

* by name: a Mapping whose flattened paths, joined by ``.``, are exactly torch's parameter
  names (``{"fc.weight": w, "fc.bias": b}`` or ``{"fc": {"weight": w, "bias": b}}``); names
  come from the optimizer (built from ``model.named_parameters()``: torch >= 2.6 keeps them as
  ``param_names``) or the ``param_names`` argument: a list of names in the optimizer's order,
  or the model / ``model.named_parameters()`` / ``dict(model.named_parameters())``, whose
  Parameter objects are found in the optimizer's groups by identity (``is``);
* by identity: with ``param_names=model`` (or its named parameters, or a list of the torch
  Parameters themselves) a list is read in that source's order (``model.parameters()`` order),
  each leaf mapped to the optimizer parameter that IS that Parameter object;
* by position: ``jax.tree.leaves(params)[k]`` is the optimizer's parameter ``k`` (group 0's
  first). Accepted only where a different order could not silently go through: a list is
  refused when two parameters of different param groups have the same shape (a list in
  ``model.parameters()`` order is not the optimizer's order when the groups are not in model
  order, and the shape check cannot tell); a dict not keyed by torch names (``jax.tree.leaves``
  sorts its keys) is refused when two parameters have the same shape (for hyperparameters:
  in different groups). The error names the two parameters and the fix.

Shapes must be equal (torch layout); every mismatch is listed in one error.
"""
from __future__ import annotations

import dataclasses
import inspect
import numbers
from typing import Mapping, Sequence

from _jaxinit import optim_registry as registry
from _jaxinit.errors import InitError

# Derived from the optimizer registry (_jaxinit/optim_registry.py), one entry per torch optimizer:
# torch state keys holding one array per parameter == the jaxinit.optim state field names; of those, the 0-d
# tensors torch keeps per parameter (NAdam's mu_product, ASGD's eta and mu) in torch's default dtype (torch's
# load_state_dict casts them to the parameter dtype, which changes its arithmetic); and the keys whose arrays
# do not have the parameter's shape (Adafactor's factors)
PER_PARAM_FIELDS = registry.PER_PARAM_FIELDS
SCALAR_FIELDS = registry.SCALAR_FIELDS
NOT_PARAM_SHAPED = registry.NOT_PARAM_SHAPED
# torch.optim / torchinit class name -> jaxinit.optim factory name
FACTORY_BY_CLASS = registry.FACTORY_BY_CLASS
# group keys that only select torch's implementation: same numbers either way
IMPLEMENTATION_KEYS = {"params", "param_names", "foreach", "fused", "differentiable", "capturable", "initial_lr",
                       "schedule_step", "decoupled_weight_decay", "max_lr", "min_lr", "max_momentum",
                       "base_momentum"}


def optimizer_factory_name(optimizer, who: str) -> str:
    """The jaxinit.optim factory name equal to a torch optimizer (duck-typed)."""
    if type(optimizer).__name__ == "StoredOptimizer":  # _jaxinit.training_state: the file names no class
        raise InitError(f"{who}: the optimizer state was read from files that do not record torch's optimizer "
                        "class (written by JAX, or a training loop's own torch.save); pass optimizer_class='AdamW' "
                        "(torch's class name) to load_training_state.")
    names = [c.__name__ for c in type(optimizer).__mro__]
    for n in names:
        if n in FACTORY_BY_CLASS:
            factory_name = FACTORY_BY_CLASS[n]
            break
    else:
        raise InitError(
            f"{who}: {type(optimizer).__name__} is not supported; supported are torch.optim's "
            f"{', '.join(sorted(o.torch_class for o in registry.OPTIMIZERS))} "
            "and the torchinit.optim optimizers built from them.")
    if factory_name == "adam" and optimizer.param_groups and optimizer.param_groups[0].get("decoupled_weight_decay"):
        factory_name = "adamw"
    return factory_name


def _is_tensor(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "item") and not isinstance(x, (int, float))


def torch_arithmetic_refusal(factory_name: str, group: Mapping) -> str | None:
    """Why torch's numbers for this group are not what jaxinit.optim computes (None: they are).

    Where a flag or a tensor hyperparameter switches torch to float32 scalar arithmetic that
    XLA cannot reproduce bitwise (torch's float32 ``pow`` is not correctly rounded: 143 of
    18000 ``beta ** step`` values differ from the rounded exact power), ``from_torch``
    refuses with this reason instead of drifting silently.
    """
    name = registry.CLASS_BY_FACTORY.get(factory_name, factory_name)
    torch_file = "adam" if factory_name == "adamw" else factory_name
    src = f"torch/optim/{torch_file}.py _single_tensor_{torch_file}"
    for flag in ("differentiable", "capturable"):
        if not group.get(flag):
            continue
        if factory_name in ("adam", "adamw"):
            return (f"{flag}=True makes torch's {name} compute the bias corrections 1 - beta**step from the float32 "
                    f"state['step'] tensor in float32 tensor arithmetic ({src}): about 1e-7 relative away from "
                    f"exact arithmetic, and torch's float32 pow cannot be reproduced bitwise. Fix: build the torch "
                    f"optimizer with {flag}=False (the same algorithm in float64/Python arithmetic).")
        if flag == "capturable" and factory_name in ("nadam", "radam", "adamax", "asgd"):
            return (f"capturable=True makes torch's {name} compute its step-dependent scalars from the float32 "
                    f"state['step'] tensor on the device ({src}), with torch's float32 pow. Fix: build the torch "
                    "optimizer with capturable=False.")
    if factory_name == "asgd" and (group.get("foreach") or (group.get("foreach") is None and any(
            getattr(getattr(p, "device", None), "type", "cpu") != "cpu" for p in group.get("params", ())))):
        return ("torch's multi-tensor ASGD (foreach=True, torch's default on GPU) computes eta from the float32 "
                "state['step'] tensor in float32 arithmetic (torch/optim/asgd.py _multi_tensor_asgd), ~1e-7 "
                "relative away from its single-tensor formulas, which jaxinit.optim.asgd reproduces. Fix: build the "
                "torch optimizer with foreach=False.")
    lr = group.get("lr")
    rule = registry.TENSOR_LR_FLOAT32.get(factory_name, False)
    if _is_tensor(lr) and (rule is True or (isinstance(rule, str) and group.get(rule, 0) != 0)):
        return (f"a Tensor lr makes torch's {name} compute its lr terms (lr / bias_correction, lr * weight_decay, "
                f"...) as float32 tensor arithmetic ({src}), not the exact lr. Fix: pass lr as a Python float, "
                "e.g. lr=float(lr).")
    betas = group.get("betas")
    if isinstance(betas, (tuple, list)) and any(_is_tensor(b) for b in betas):
        return (f"Tensor betas make torch's {name} compute 1 - beta and beta**step as float32 tensor arithmetic "
                f"({src}). Fix: pass betas as Python floats.")
    return None


def group_hyperparams(factory_name: str, group: Mapping, factory, who: str, index: int) -> dict:
    """The factory's keyword arguments for one torch param group; unknown options are an error."""
    accepted = set(inspect.signature(factory).parameters)
    reason = torch_arithmetic_refusal(factory_name, group)
    if reason is not None:
        raise InitError(f"{who}: param group {index}: {reason}")
    out, unknown = {}, []
    for key, value in group.items():
        if key in IMPLEMENTATION_KEYS and key not in accepted:
            continue
        if key in accepted:
            if key == "betas":
                value = tuple(float(b) for b in value)
            elif isinstance(value, bool):
                pass
            elif hasattr(value, "item") and getattr(value, "shape", None) == ():
                value = value.item()  # a 0-d tensor lr
            out[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise InitError(f"{who}: param group {index} has option(s) {sorted(unknown)} that jaxinit.optim.{factory_name} "
                        "does not model; remove them or convert by hand.")
    return out


def torch_quirks(optimizer, factory_name: str, hp: dict) -> dict:
    """What torch really does where a group's value is not what it uses.

    ``torch.optim.Adagrad`` fills every parameter's ``sum`` in ``__init__`` from the
    CONSTRUCTOR's ``initial_accumulator_value``, ignoring a per-group value
    (torchinit's ``OptaxAdagrad`` honours the group's).
    """
    if factory_name == "adagrad" and "OptaxAdagrad" not in [c.__name__ for c in type(optimizer).__mro__]:
        hp = dict(hp, initial_accumulator_value=optimizer.defaults.get("initial_accumulator_value", 0))
    if registry.BY_FACTORY[factory_name].scalar_fields:  # 0-d state tensors in torch's default dtype
        hp = dict(hp, scalar_dtype=scalar_dtype(optimizer))
    return hp


def scalar_dtype(optimizer) -> str:
    """The dtype of torch's 0-d state tensors (mu_product / eta, mu): from the state, else torch's default."""
    for st in optimizer.state.values():
        for k in SCALAR_FIELDS:
            if k in st and hasattr(st[k], "dtype"):
                return str(st[k].dtype).replace("torch.", "")
    import sys

    torch = sys.modules.get("torch")
    return str(torch.get_default_dtype()).replace("torch.", "") if torch is not None else "float32"


@dataclasses.dataclass
class TorchParams:
    """What is known of a torch optimizer's parameters, in its flat order (group 0's first).

    ``shapes[i]`` (None: unknown, e.g. a parameter without state in a state_dict), ``groups[i]``
    (its param group), ``names`` (torch names, or None), ``source_order``: the optimizer index of
    each parameter of ``param_names=<model or named parameters>`` in that source's order (None:
    names not given by identity; an entry is None for a source parameter the optimizer lacks).
    """

    shapes: list
    groups: list
    names: list | None = None
    source_order: list | None = None
    source_names: list | None = None


def named_items(source, who: str) -> list | None:
    """``[(name, tensor), ...]`` when ``source`` is a model, ``named_parameters()`` or a name -> tensor
    Mapping; None when it is a sequence of names (or None)."""
    if source is None or isinstance(source, str):
        return None
    if callable(getattr(source, "named_parameters", None)):
        return list(source.named_parameters())
    if isinstance(source, Mapping):
        items = list(source.items())
    else:
        items = list(source)
    if all(isinstance(x, str) for x in items):
        return None
    if all(hasattr(x, "shape") and not isinstance(x, tuple) for x in items):  # the Parameters, in params' order
        return [(None, x) for x in items]
    if not all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) and hasattr(x[1], "shape")
               for x in items):
        raise InitError(f"{who}: param_names must be torch's parameter names in the optimizer's order, the "
                        "model, model.named_parameters(), dict(model.named_parameters()) or the torch Parameters "
                        "in params' order; got a "
                        f"{type(source).__name__} of {sorted({type(x).__name__ for x in items})}.")
    return items


def param_names_arg(param_names, who: str):
    """``param_names`` as given, a generator (``model.named_parameters()``) read once into a list."""
    if param_names is None or isinstance(param_names, str) or callable(getattr(param_names, "named_parameters", None)):
        if isinstance(param_names, str):
            raise InitError(f"{who}: param_names must be a list of names (or the model / its "
                            f"named_parameters()), got the string {param_names!r}.")
        return param_names
    if isinstance(param_names, Mapping):
        return param_names
    return list(param_names)


def describe_param(i: int, tp: TorchParams) -> str:
    name = f" {tp.names[i]!r}" if tp.names is not None else ""
    shape = "" if tp.shapes[i] is None else f", shape {tuple(tp.shapes[i])}"
    return f"#{i}{name} (param group {tp.groups[i]}{shape})"


def torch_params(optimizer_params: Sequence | None, shapes: Sequence, groups: Sequence[int],
                 names_in_state: Sequence[str] | None, param_names, who: str) -> TorchParams:
    """:class:`TorchParams` from the optimizer's flat parameter list (None: only a state_dict), its
    shapes and groups, the names it carries and the ``param_names`` argument (see the module doc)."""
    tp = TorchParams(list(shapes), list(groups), list(names_in_state) if names_in_state is not None else None)
    n = len(tp.shapes)
    param_names = param_names_arg(param_names, who)
    items = named_items(param_names, who)
    if items is None:
        if param_names is not None:
            names = list(param_names)
            if len(names) != n:
                raise InitError(f"{who}: param_names has {len(names)} names but the optimizer has {n} parameters; "
                                "pass one name per parameter in the optimizer's order (or pass the model, whose "
                                "parameters are found in the optimizer by identity).")
            if tp.names is not None and tp.names != names:
                raise InitError(f"{who}: param_names disagrees with the names the optimizer keeps (it was built "
                                "from named_parameters()); drop param_names.")
            tp.names = names
        return tp
    if optimizer_params is None:
        raise InitError(f"{who}: param_names=<model or named parameters> finds the optimizer's parameters by "
                        "identity, which needs the torch optimizer itself, not its state_dict() (that holds indices "
                        "only). Fix: pass the optimizer, or param_names=[names in the optimizer's order].")
    by_id: dict[int, str] = {}
    for name, t in items:
        by_id.setdefault(id(t), name)  # a shared (tied) Parameter: its first name, as named_parameters() does
    names = []
    missing: list = []
    for i, p in enumerate(optimizer_params):
        nm = by_id.get(id(p), missing)
        if nm is missing:
            missing.append(f"#{i} (param group {tp.groups[i]}, shape {tuple(p.shape)})")
        names.append(nm)
    if missing:
        raise InitError(f"{who}: {len(missing)} of the optimizer's {n} parameters are not among param_names' "
                        f"Parameters (matched by identity, `is`): {', '.join(missing[:8])}. Fix: pass the model "
                        "the optimizer was built on (or its named_parameters()); a state_dict() holds copies, "
                        "not the Parameter objects.")
    if all(nm is None for nm in names):  # Parameters without names: identity gives the order only
        names = tp.names  # type: ignore[assignment]  # None: no names known at all
    elif tp.names is not None and tp.names != names:
        raise InitError(f"{who}: the optimizer's own param_names {tp.names[:4]}... differ from the model's names "
                        f"{names[:4]}... for the same Parameters; drop param_names= or fix the names.")
    index = {id(p): i for i, p in enumerate(optimizer_params)}
    seen, order, src_names = set(), [], []
    for name, t in items:
        if id(t) in seen:
            continue
        seen.add(id(t))
        order.append(index.get(id(t)))
        src_names.append(name)
    tp.names, tp.source_order = names, order
    tp.source_names = None if all(nm is None for nm in src_names) else src_names
    return tp


def shape_clash(tp: TorchParams, across_groups: bool) -> tuple[int, int] | None:
    """Two torch parameters a positional match cannot tell apart: the same shape (an unknown shape,
    a parameter without state, matches any known one), in different groups if ``across_groups``.
    Linear in the number of parameters (one first index per shape and group)."""
    seen: dict = {}  # shape -> {group: first index}
    known_first: dict = {}  # group -> first index with a known shape
    for i, shape in enumerate(tp.shapes):
        if shape is None:
            continue
        by_group = seen.setdefault(tuple(shape), {})
        for g, j in by_group.items():
            if not across_groups or g != tp.groups[i]:
                return j, i
        by_group.setdefault(tp.groups[i], i)
        known_first.setdefault(tp.groups[i], i)
    for i, shape in enumerate(tp.shapes):
        if shape is not None:
            continue
        for g, j in known_first.items():
            if not across_groups or g != tp.groups[i]:
                return min(i, j), max(i, j)
    return None


def match(leaf_paths: Sequence[str], leaf_shapes: Sequence[tuple], tp: TorchParams, is_mapping: bool,
          who: str, what: str = "optimizer state") -> list[int]:
    """torch flat index of every leaf (see the module docstring); raises listing every problem.

    ``what``: what a wrong match would give the wrong parameter, ``'hyperparameters'`` (only the
    param group matters) or ``'optimizer state'`` (the parameter itself matters).
    """
    torch_names, torch_shapes, n = tp.names, tp.shapes, len(tp.shapes)
    by_name = is_mapping and torch_names is not None and len(set(torch_names)) == n
    if by_name and torch_names is not None and set(leaf_paths) == set(torch_names) and len(leaf_paths) == n:
        index = {nm: i for i, nm in enumerate(torch_names)}
        order = [index[p] for p in leaf_paths]
        how = "by name"
    elif not is_mapping and tp.source_order is not None:
        if len(leaf_paths) != len(tp.source_order) or None in tp.source_order:
            extra = [nm for nm, i in zip(tp.source_names or [], tp.source_order) if i is None][:8]
            raise InitError(
                f"{who}: params is a list read in param_names' order (the model's parameters, "
                f"{len(tp.source_order)} of them) but has {len(leaf_paths)} leaves"
                + (f"; the optimizer does not hold {extra}" if extra else "")
                + ". Fix: pass params as a dict keyed by the torch names of the optimizer's parameters.")
        order = list(tp.source_order)
        how = "by identity (params in param_names' order)"
    else:
        hint = ""
        if is_mapping and torch_names is not None:
            missing = sorted(set(torch_names) - set(leaf_paths))[:8]
            extra = sorted(set(leaf_paths) - set(torch_names))[:8]
            hint = f" By name: torch names missing from params {missing}, params not in torch {extra}."
        if len(leaf_paths) != n:
            raise InitError(
                f"{who}: params has {len(leaf_paths)} leaves but the torch optimizer has {n} "
                f"parameters.{hint} Fix: pass the params of the same model, as a dict keyed by torch parameter "
                "names, or as a list in model.parameters() order with param_names=model.")
        clash = shape_clash(tp, across_groups=not (is_mapping and what != "hyperparameters"))
        if clash is not None:
            i, j = clash
            if is_mapping:
                why = ("a dict not keyed by the optimizer's torch names is matched by position in jax.tree.leaves "
                       "order (sorted keys), which is not torch's order in general")
            else:
                why = ("a list is matched by position to the optimizer's order (group 0's parameters first), "
                       "which is not model.parameters() order when the param groups are not in model order")
            raise InitError(
                f"{who}: cannot tell which params leaf is which torch parameter: {why}, and torch parameters "
                f"{describe_param(i, tp)} and {describe_param(j, tp)} have the same shape, so a swap would "
                f"silently give each the other's {what}.{hint} Fix: pass param_names=model (or "
                "model.named_parameters()) to find the optimizer's Parameters by identity, with params as a list "
                "in model.parameters() order or a dict keyed by torch names; or build the optimizer from "
                "model.named_parameters() and pass params as a dict keyed by those names.")
        order = list(range(n))
        how = "by position (jax.tree.leaves order = the optimizer's order)"
    problems = []
    for k, i in enumerate(order):
        if torch_shapes[i] is not None and tuple(leaf_shapes[k]) != tuple(torch_shapes[i]):
            tname = torch_names[i] if torch_names is not None else f"#{i}"
            problems.append(f"  params leaf {leaf_paths[k]!r} shape {tuple(leaf_shapes[k])} != torch parameter "
                            f"{tname} shape {tuple(torch_shapes[i])}")
    if problems:
        raise InitError(
            f"{who}: params do not match the torch optimizer's parameters (matched {how}):\n"
            + "\n".join(problems)
            + "\nFix: pass params in torch's layout (torch (out, in) vs Flax (in, out): convert Flax params "
              "with jaxinit.to_torch_state_dict first), as a dict keyed by torch names, or as a list in "
              "model.parameters() order with param_names=model (matched by identity).")
    return order


def optimizer_params(optimizer, param_names, who: str) -> TorchParams:
    """What ``optimizer`` (a torch optimizer, duck-typed) says of its parameters, names included."""
    flat = [p for g in optimizer.param_groups for p in g["params"]]
    return torch_params(flat, [tuple(p.shape) for p in flat], groups_of(optimizer.param_groups),
                        names_of(optimizer.param_groups), param_names, who)


def groups_of(param_groups: Sequence[Mapping]) -> list[int]:
    """The param group of each parameter in flat order, from torch groups or state_dict groups."""
    return [g for g, group in enumerate(param_groups) for _ in group["params"]]


def state_groups(param_groups: Sequence[Mapping], n: int) -> list[int]:
    """The param group of each of a state_dict's ``n`` parameter indices (all 0 without groups)."""
    out = [0] * n
    for g, group in enumerate(param_groups):
        for k, i in enumerate(group["params"]):
            idx = int(i) if isinstance(i, numbers.Integral) else k
            if 0 <= idx < n:
                out[idx] = g
    return out


def names_of(param_groups: Sequence[Mapping]) -> list[str] | None:
    """The torch names the groups carry (``param_names``, torch >= 2.6), or None."""
    if not param_groups or not all("param_names" in g for g in param_groups):
        return None
    return [nm for g in param_groups for nm in g["param_names"]]


def common_step(state: Mapping, step, groups: Sequence[Mapping] | None, who: str) -> int:
    """The one step count of a torch state (all parameters must agree)."""
    steps = {}
    for i, st in state.items():
        if "step" in st:
            s = st["step"]
            s = float(s.item() if hasattr(s, "item") else s)
            steps[i] = s
    values = set(steps.values())
    if len(values) > 1:
        by: dict[float, list] = {}
        for i, s in steps.items():
            by.setdefault(s, []).append(i)
        raise InitError(f"{who}: torch parameters have different step counts {dict(sorted(by.items()))} "
                        "(some got no gradient on some steps); optax keeps one count per transformation. "
                        "Fix: convert from a state where every parameter has stepped equally.")
    found = int(values.pop()) if values else None
    if found is None and groups:
        sched = {g["schedule_step"] for g in groups if "schedule_step" in g}
        if len(sched) == 1:
            found = int(sched.pop())
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise InitError(f"{who}: step must be an int >= 0, got {step!r}.")
        if found is not None and found != step:
            raise InitError(f"{who}: step={step} but the torch state says {found}; drop step= or fix it.")
        return int(step)
    if found is not None:
        return found
    has_buffers = any(st for st in state.values())
    if has_buffers:
        raise InitError(f"{who}: this torch state has no step count (torch's SGD keeps none); pass step=<number "
                        "of optimizer steps taken>, e.g. step=scheduler.last_epoch.")
    return 0


def neutral_state(state_dict: Mapping, to_numpy) -> dict:
    """``{"state": {i: {key: ndarray or float}}}`` from a torch ``state_dict()`` (tensors or arrays)."""
    out = {}
    for i, st in state_dict.get("state", {}).items():
        entry = {}
        for k, v in st.items():
            if v is None:
                continue
            if k == "step":
                entry[k] = float(v.item() if hasattr(v, "item") else v)
            else:
                entry[k] = to_numpy(v)
        out[int(i)] = entry
    return out
