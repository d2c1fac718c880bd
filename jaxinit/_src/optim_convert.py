r"""A torch optimizer as an optax transformation, and optimizer state both ways.

* :func:`from_torch` ``(optimizer, scheduler=None)``: the :mod:`jaxinit.optim`
  transformation equal to a ``torch.optim`` optimizer of the registry (its docstring lists
  them; or a :mod:`torchinit.optim` optimizer): every param group with its
  hyperparameters (``optax.multi_transform`` over groups when there are several),
  the scheduler as a closed-form schedule (:func:`jaxinit.optim.schedules_from_torch`;
  OneCycleLR's momentum / beta1 cycle via ``optax.inject_hyperparams``).
* :func:`import_state` ``(state, params, tx)``: the optax state of ``tx`` for
  ``params`` holding a torch optimizer's state (step counts and every per-parameter
  buffer, e.g. ``momentum_buffer``, ``exp_avg``: the registry's ``fields``), so a torch
  run resumes in JAX with no step lost.
* :func:`export_state` ``(opt_state, params)``: the other way, in the neutral format
  ``{"state": {i: {...numpy}}, "param_groups": [...], "step": n}`` that
  :func:`torchinit.optim.import_state` loads into a torch optimizer.

Matching params to torch's parameter list, never by a guess (``_jaxinit/optim_convert.py``,
docs/training_state.md): by name for a Mapping keyed by torch parameter names; by identity
with ``param_names=model`` (the optimizer's Parameter objects found in the model; a list is
then in ``model.parameters()`` order); by position (``jax.tree.leaves`` order = the
optimizer's order) only where no two parameters a reordering could swap have the same shape,
else an error names the two parameters and the fix. Shapes must be torch's (convert Flax-layout params
with :func:`jaxinit.to_torch_state_dict` / :func:`jaxinit.from_torch_state_dict`).

torch is never imported: the optimizer, scheduler and tensors are read duck-typed.

>>> tx = jaxinit.optim.from_torch(torch_opt, torch_sched)                  # doctest: +SKIP
>>> params = [jnp.asarray(p.detach().numpy()) for p in model.parameters()]  # doctest: +SKIP
>>> opt_state = jaxinit.optim.import_state(torch_opt, params, tx)          # doctest: +SKIP
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _jaxinit import optim_convert as _core
from _jaxinit import schedules as _sched_core
from _jaxinit.arrays import to_numpy
from _jaxinit.errors import InitError
from _jaxinit.optim_checks import refuse_tensor_lr
from jaxinit._src import lbfgs_convert
from jaxinit._src.schedules import Schedule, schedules_from_torch


def _path_str(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def path_leaves(tree):
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [_path_str(p) for p, _ in flat], [x for _, x in flat], treedef


def _match(params, tp: _core.TorchParams, who, what) -> tuple[list[int], Any]:
    paths, leaves, treedef = path_leaves(params)
    order = _core.match(paths, [tuple(np.shape(x)) for x in leaves], tp, isinstance(params, Mapping), who, what)
    return order, treedef


def _check_layout(layout, who):
    if layout not in ("torch", "flax"):
        raise InitError(f"{who}: layout must be 'torch' (params with torch's shapes) or 'flax' (Flax params, "
                        f"converted by jaxinit.from_torch_state_dict's naming rule and layouts), got {layout!r}.")


def _need_names(names, who):
    if names is None:
        raise InitError(f"{who}: layout='flax' matches torch parameters to Flax params by name; build the torch "
                        "optimizer from model.named_parameters() or pass param_names=[...] (optimizer order).")
    return names


def _flax_like(named: dict, params, cast: bool = False) -> list:
    """``{torch_name: array}`` in Flax layout, as a list in ``params``' leaf order (the weight converter's rule)."""
    from jaxinit._src.convert import from_torch_state_dict

    out = from_torch_state_dict(named, {"params": params}, dtype="template" if cast else None)["params"]
    by_path = dict(zip(*path_leaves(out)[:2]))
    return [by_path[p] for p in path_leaves(params)[0]]


def _with_beta1(factory):
    """``factory`` with ``betas`` split into injectable ``b1`` and ``b2`` (OneCycleLR's beta1 cycle)."""
    def make(b1, b2, **kw):
        return factory(betas=(b1, b2), **kw)

    # optax.inject_hyperparams reads the signature: b1, b2 and the factory's other arguments
    sig = inspect.signature(factory)
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for n, p in sig.parameters.items() if n != "betas"]
    kw = inspect.Parameter.KEYWORD_ONLY
    make.__signature__ = sig.replace(  # type: ignore[attr-defined]  # read by inspect.signature
        parameters=[inspect.Parameter("b1", kw), inspect.Parameter("b2", kw), *rest])
    return make


def _group_lr_schedules(optimizer, scheduler, who, step=None, lr_lambda=None):
    n = len(optimizer.param_groups)
    if scheduler is not None:
        if getattr(scheduler, "optimizer", None) is not optimizer:
            raise InitError(f"{who}: the scheduler does not drive this optimizer (scheduler.optimizer is another "
                            "object); pass the scheduler built on it.")
        lrs = schedules_from_torch(scheduler, lr_lambda=lr_lambda)
        moms: list[Any] = [None] * n
        if _sched_core.cycles_momentum(scheduler, who):
            moms = schedules_from_torch(scheduler, which="momentum")
        _sched_core.scheduler_steps(optimizer, scheduler, step, who)  # once per optimizer.step()
        return lrs, moms
    scheds = getattr(optimizer, "_torchinit_schedules", None) or [None] * n
    out: list[Any] = []
    for i, s in enumerate(scheds):
        if s is None:
            out.append(None)
        elif hasattr(s, "name") and hasattr(s, "params") and type(s).__name__ == "Schedule":
            out.append(Schedule(s.name, s.args, s.params))  # a torchinit schedule: the same formula in JAX
        else:
            raise InitError(f"{who}: param group {i} has a Python callable lr ({s!r}) that cannot be traced by "
                            "JAX; use a torchinit.optim schedule (step_lr, ...) or pass the scheduler.")
    return out, [None] * n


def from_torch(optimizer: Any, scheduler: Any = None, *, param_names: Sequence[str] | None = None,
               layout: str = "torch", step: int | None = None, lr_lambda: Any = None) -> optax.GradientTransformation:
    r"""The optax transformation equal to a torch optimizer (and its scheduler), step for step.

    Args:
      optimizer: a ``torch.optim`` optimizer, or a :mod:`torchinit.optim` optimizer (its
        schedules and optax-convention options are carried over). Converted (the optimizer
        registry, ``_jaxinit/optim_registry.py``):
        SGD, Adagrad, RMSprop, Adam, AdamW, NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD,
        Adafactor, Muon or SparseAdam. LBFGS is refused with its replacement named.
        Every param group becomes a
        :mod:`jaxinit.optim` factory call with that group's hyperparameters.
      scheduler: optional ``torch.optim.lr_scheduler`` object driving ``optimizer``
        (one :func:`schedules_from_torch` schedule per group; OneCycleLR's / CyclicLR's
        ``cycle_momentum`` cycles ``momentum`` / ``betas[0]`` through
        ``optax.inject_hyperparams``). It must be stepped once per optimizer step.
        A ``ReduceLROnPlateau`` gives :func:`reduce_lr_on_plateau` around the groups
        (lrs injected; load its counters with :func:`import_plateau_state`).
      param_names: how to tell which params leaf is which torch parameter when the
        optimizer was not built from ``named_parameters()``: torch's names in the
        optimizer's order (params: a dict keyed by them), or the model /
        ``model.named_parameters()`` / the torch Parameters in params' order, whose
        Parameter objects are found in the optimizer's groups by identity (params: a
        list in that order, or a dict keyed by the model's names).
      layout: ``'torch'`` (params have torch's shapes) or ``'flax'`` (Flax params:
        torch names are mapped to Flax paths with the rule and layouts of
        :func:`jaxinit.from_torch_state_dict`; needs torch names).
      step: the number of ``optimizer.step()`` calls so far, checked against the
        scheduler's count; needed with a stepped scheduler on torch's SGD, which
        keeps no step count of its own.
      lr_lambda: the JAX version of a LambdaLR / MultiplicativeLR function (or one per
        group), see :func:`schedules_from_torch`.

    Returns:
      An ``optax.GradientTransformation``. One group: the group's transformation
      (with a check of the params at ``init``); several: ``optax.multi_transform``
      with labels ``"0"``, ``"1"``, ... found by matching the params to torch's
      parameters (by name, by identity, or by position where shapes leave no doubt; a
      list whose same-shaped parameters sit in different groups is refused at ``init``).

    Note: the lr is the closed form (``scheduler.step(epoch)``'s) where torch
    recurses; see :mod:`jaxinit.optim` schedules for the (float64-rounding) difference.
    """
    who = "jaxinit.optim.from_torch"
    _check_layout(layout, who)
    factory_name = _core.optimizer_factory_name(optimizer, who)
    factory = _core.registry.BY_FACTORY[factory_name].factory_of("jaxinit")
    refuse_tensor_lr(optimizer, factory_name, who)  # Adafactor / Muon / SparseAdam compute in its dtype
    if factory_name == "lbfgs":  # not an optax transformation: jaxinit.optim.lbfgs's own step API
        return lbfgs_convert.lbfgs_from_torch(optimizer, scheduler, who)
    groups = optimizer.param_groups
    plateau = scheduler if type(scheduler).__name__ == "ReduceLROnPlateau" else None  # metric driven: injected lr
    lrs, moms = _group_lr_schedules(optimizer, None if plateau is not None else scheduler, who, step, lr_lambda)
    txs = []
    for i, g in enumerate(groups):
        hp = _core.torch_quirks(optimizer, factory_name, _core.group_hyperparams(factory_name, g, factory, who, i))
        if lrs[i] is not None:
            hp["lr"] = lrs[i]
        if moms[i] is None and plateau is None:
            txs.append(factory(**hp))
            continue
        static = tuple(k for k, v in hp.items() if isinstance(v, bool))
        if moms[i] is None:
            txs.append(optax.inject_hyperparams(factory, static_args=static)(**hp))
        elif "betas" in hp:
            b2 = hp.pop("betas")[1]
            txs.append(optax.inject_hyperparams(_with_beta1(factory), static_args=static)(b1=moms[i], b2=b2, **hp))
        else:
            hp["momentum"] = moms[i]
            txs.append(optax.inject_hyperparams(factory, static_args=static)(**hp))
    tp = _core.optimizer_params(optimizer, param_names, who)
    torch_shapes, names, group_of = tp.shapes, tp.names, tp.groups

    def labels(tree):
        if layout == "flax":
            named = {n: np.full(s, float(g)) for n, s, g in zip(_need_names(names, who), torch_shapes, group_of)}
            spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)
            with jax.ensure_compile_time_eval():  # labels are static: also when called on traced updates
                marks = _flax_like(named, spec, cast=True)
            treedef = jax.tree.structure(tree)
            return jax.tree_util.tree_unflatten(treedef, [str(int(np.asarray(m).flat[0])) for m in marks])
        order, treedef = _match(tree, tp, who, "hyperparameters (lr, schedule, ...)")
        return jax.tree_util.tree_unflatten(treedef, [str(group_of[i]) for i in order])

    if len(txs) == 1:
        inner = txs[0]

        def init(params):
            labels(params)
            return inner.init(params)

        tx = optax.GradientTransformationExtraArgs(init, inner.update)
    else:
        tx = optax.multi_transform({str(i): tx for i, tx in enumerate(txs)}, labels)
    if plateau is not None:  # counters: jaxinit.optim.import_plateau_state(scheduler, opt_state)
        from jaxinit._src.plateau import reduce_lr_on_plateau

        return reduce_lr_on_plateau(tx, **_sched_core.plateau_args_from_torch(plateau))
    return tx


# ------------------------------------------------------------------ state walking

# optax's own state types the walker goes through, plus every registered optimizer's (_jaxinit/optim_registry.py)
_OPTAX_STATES = {"ScaleByScheduleState", "InjectHyperparamsState", "InjectStatefulHyperparamsState",
                 "MultiTransformState", "PartitionState", "MaskedState", "EmptyState", "MaskedNode",
                 "WrappedScheduleState", "ReduceLROnPlateauState"}
_KNOWN = _OPTAX_STATES | _core.registry.KNOWN_STATES
_TORCH_STEP_OWNERS = set(_core.registry.STEP_OWNERS)


def _is_masked(x) -> bool:
    return isinstance(x, optax.MaskedNode)


def _field_leaves(subtree):
    return jax.tree_util.tree_flatten(subtree, is_leaf=_is_masked)


def walk_states(node, visit):
    """Rebuild ``node`` with ``visit(namedtuple) -> namedtuple | None`` applied to every state NamedTuple."""
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        name = type(node).__name__
        if name not in _KNOWN:
            arrays = [x for x in jax.tree.leaves(node) if np.ndim(x) > 0]
            if arrays:
                raise InitError(f"optimizer state conversion: {name} holds per-parameter arrays that have no torch "
                                "counterpart (only the states of jaxinit.optim's torch optimizers convert).")
            return node
        new = visit(node)
        if new is not None:
            return new
        return type(node)(*[walk_states(getattr(node, f), visit) for f in node._fields])
    if isinstance(node, (tuple, list)):
        return type(node)(walk_states(x, visit) for x in node)
    if isinstance(node, dict):
        return {k: walk_states(v, visit) for k, v in node.items()}
    return node


def import_state(state: Any, params: Any, tx: optax.GradientTransformation, *, step: int | None = None,
                 param_names: Sequence[str] | None = None, layout: str = "torch"):
    r"""The optax state of ``tx`` for ``params`` holding a torch optimizer's state.

    Args:
      state: a torch optimizer, its ``state_dict()``, or the neutral dict of
        :func:`torchinit.optim.export_state` (NumPy arrays).
      params: the params pytree ``tx`` will update, matched to torch's parameters
        by name (a dict keyed by torch names), by identity (``param_names=model``) or by
        position where no two same-shaped parameters could be swapped (see the module
        docstring); shapes and dtypes must equal the torch state's (every mismatch is
        listed in one error).
      tx: a :mod:`jaxinit.optim` transformation (:func:`from_torch`, ``sgd``, ...,
        possibly inside ``optax.multi_transform`` / ``optax.inject_hyperparams``).
      step: the number of optimizer steps taken, needed only for torch's SGD,
        which keeps no step count (e.g. ``scheduler.last_epoch``).
      param_names: torch's parameter names in optimizer order (for a dict keyed by
        names when the state does not carry ``param_names``), or, with the torch
        optimizer as ``state``, the model / its named parameters / the Parameters in
        params' order (matched by identity, as in :func:`from_torch`).
      layout: ``'flax'`` for Flax params: each buffer is converted like its weight
        (transposes, flips, reshapes of :func:`jaxinit.from_torch_state_dict`).

    Returns:
      ``tx.init(params)`` with every count set to torch's step and every buffer set
      to torch's (bitwise: the arrays are copied, not recomputed).
    """
    who = "jaxinit.optim.import_state"
    _check_layout(layout, who)
    if lbfgs_convert.is_lbfgs(tx):
        return lbfgs_convert.import_lbfgs(state, params, tx)
    optimizer = state if hasattr(state, "state_dict") and hasattr(state, "param_groups") else None
    tstate, groups, the_step = _read_torch_state(state, step, who)
    if optimizer is not None:  # the Parameters themselves: shapes of all, names by identity possible
        tp = _core.optimizer_params(optimizer, param_names, who)
    else:
        n = sum(len(g["params"]) for g in groups) if groups else max(tstate, default=-1) + 1
        tp = _core.torch_params(None, torch_state_shapes(tstate, n), _core.state_groups(groups, n),
                                _core.names_of(groups), param_names, who)
    n = len(tp.shapes)
    paths, leaves, _ = path_leaves(params)
    problems: list[str] = []
    if layout == "flax":
        order = list(range(len(leaves)))  # leaf k <-> parameter k in messages; buffers come converted in leaf order
        flax = _flax_buffers(tstate, n, _need_names(tp.names, who), params, len(leaves), problems)

        def source(f, k):
            return flax[f][k] if f in flax else None
    else:
        # parameters without state (never stepped) have no torch shape here: not checked
        order = _core.match(paths, [tuple(np.shape(x)) for x in leaves], tp, isinstance(params, Mapping), who)

        def source(f, k):
            return tstate.get(order[k], {}).get(f)

    new_state = walk_states(tx.init(params), state_filler(the_step, order, source, paths, problems))
    if problems:
        raise InitError(f"{who}: the torch state does not fit these params:\n" + "\n".join(problems)
                        + "\nFix: pass params with the torch parameters' shapes and dtypes, keyed by torch names "
                          "or as a list in model.parameters() order with param_names=model.")
    return new_state


def _read_torch_state(state, step: int | None, who: str):
    """Step 1 of :func:`import_state`: torch's state as ``({i: {key: ndarray or float}}, param_groups,
    common step)`` from a torch optimizer, its ``state_dict()`` or ``export_state``'s dict."""
    if hasattr(state, "state_dict") and hasattr(state, "param_groups"):
        state = state.state_dict()
    if not isinstance(state, dict) or "state" not in state:
        raise InitError(f"{who}: state must be a torch optimizer, its state_dict() or "
                        f"torchinit.optim.export_state's dict, got {type(state).__name__}.")
    groups = state.get("param_groups", [])
    tstate = _core.neutral_state(state, to_numpy)
    the_step = _core.common_step(tstate, step if step is not None else state.get("step"), groups, who)
    return tstate, groups, the_step


def torch_state_shapes(tstate: dict, n: int) -> list:
    """The shape of each of the ``n`` torch parameters read from its per-parameter buffers (None: no state)."""
    shapes = []
    for i in range(n):
        arrays = [v for k, v in tstate.get(i, {}).items()
                  if k not in _core.NOT_PARAM_SHAPED and k not in _core.SCALAR_FIELDS]
        shapes.append(tuple(arrays[0].shape) if arrays else None)
    return shapes


def _flax_buffers(tstate: dict, n: int, names, params, n_leaves: int, problems: list) -> dict:
    """``layout='flax'``: ``{field: [buffer or None per params leaf]}``, each torch buffer converted like
    its weight; what does not convert is appended to ``problems``."""
    flax: dict = {}
    shape_of = {}
    for i in range(n):
        arrays = [v for k, v in tstate.get(i, {}).items() if k != "step" and k not in _core.SCALAR_FIELDS]
        if arrays:
            shape_of[i] = arrays[0]
    for f in _core.PER_PARAM_FIELDS:
        have = [i for i in range(n) if f in tstate.get(i, {})]
        if not have:
            continue
        if f in _core.SCALAR_FIELDS:  # one 0-d value per parameter, equal when all stepped together
            values = {tstate[i][f].tobytes() for i in have}
            if len(values) != 1 or len(have) != n:
                problems.append(f"  torch's {f} differs between parameters; layout='flax' needs one value")
                continue
            flax[f] = [tstate[have[0]][f]] * n_leaves
            continue
        if len(have) != n and len(shape_of) != n:
            problems.append(f"  torch parameters {sorted(set(range(n)) - set(shape_of))} have no state; "
                            "layout='flax' needs every parameter's state (or none)")
            continue
        vals = _flax_like({names[i]: tstate[i][f] if f in tstate[i] else np.zeros_like(shape_of[i])
                           for i in range(n)}, params)
        if len(have) != n:  # e.g. max_exp_avg_sq in the amsgrad group only: which leaves have it
            marks = _flax_like({names[i]: np.full(shape_of[i].shape, float(i in have)) for i in range(n)},
                               params, cast=True)
            vals = [v if np.asarray(m).flat[0] else None for v, m in zip(vals, marks)]
        flax[f] = vals
    return flax


def state_filler(the_step: int, order, source, paths, problems: list, make=None):
    """The ``visit`` of :func:`walk_states` that builds each transform's state: every ``count`` set to
    ``the_step``, every per-parameter buffer to ``source(field, leaf index)`` (copied; ``make(field,
    leaf index, source, leaf)`` builds it instead, e.g. read slice by slice into a sharding); every
    mismatch is appended to ``problems``."""

    def fill_field(f, leaf, k):
        i = order[k]
        src = source(f, k)
        if src is None:
            if the_step > 0 and f != "momentum_buffer":
                problems.append(f"  torch parameter #{i} ({paths[k]!r}) has no {f!r} after {the_step} steps")
            return leaf if make is None else make(f, k, None, leaf)
        if src.shape != leaf.shape or src.dtype != leaf.dtype:
            problems.append(f"  {f} of torch parameter #{i} is {src.dtype}{list(src.shape)}, "
                            f"params leaf {paths[k]!r} is {leaf.dtype}{list(leaf.shape)}")
            return leaf
        return jnp.array(src, copy=True) if make is None else make(f, k, src, leaf)

    def visit(nt):
        fields = nt._fields
        if not ("count" in fields or any(f in _core.PER_PARAM_FIELDS for f in fields)):
            return None
        repl = {}
        for f in fields:
            v = getattr(nt, f)
            if f == "count":
                repl[f] = jnp.asarray(the_step, dtype=v.dtype)
            elif f in _core.PER_PARAM_FIELDS and v is not None:
                flat, treedef = _field_leaves(v)
                out = [leaf if _is_masked(leaf) else fill_field(f, leaf, k) for k, leaf in enumerate(flat)]
                repl[f] = jax.tree_util.tree_unflatten(treedef, out)
            else:  # inner_state(s), inject_hyperparams' hyperparams_states (their own counts), ...
                repl[f] = walk_states(v, visit)
        return type(nt)(**repl)

    return visit


def export_state(opt_state: Any, params: Any, *, param_names: Sequence[str] | None = None,
                 layout: str = "torch", template: Any = None) -> dict:
    r"""A :mod:`jaxinit.optim` state in torch's ``state_dict`` layout (NumPy arrays).

    Returns ``{"state": {i: {"step": float, "exp_avg": ndarray, ...}}, "param_groups":
    [{"params": [0, ..., n-1], "param_names": [...]}], "step": n_steps}`` where ``i`` is the
    torch index of each params leaf (its position, or its name's index in ``param_names``
    for a dict keyed by torch names; ``param_names`` in the groups when names are known).
    ``template=`` the torch optimizer (``layout='torch'`` too): its param groups, names and
    order (with ``param_names=model`` for an optimizer of plain parameters), so that
    :func:`torchinit.optim.import_state` loads each buffer by name. Keys follow torch: ``step`` only for Adagrad/RMSprop/Adam
    (torch's SGD keeps none), nothing before the first step. Load it with
    :func:`torchinit.optim.import_state`.

    ``layout='flax'``: ``params`` are Flax params and ``template`` gives torch's names,
    shapes and order: the torch optimizer (built from ``named_parameters()``), or
    ``{name: tensor}`` in the optimizer's order (else pass ``param_names``); each buffer
    is converted like its weight by :func:`jaxinit.to_torch_state_dict`.
    """
    return export_state_with(opt_state, params, param_names, layout, template, lambda leaf: np.array(leaf, copy=True))


def export_state_with(opt_state: Any, params: Any, param_names, layout: str, template: Any, take) -> dict:
    """:func:`export_state` with ``take(leaf)`` for each buffer (a copy there; the array itself for a
    writer that copies one buffer at a time)."""
    who = "jaxinit.optim.export_state"
    _check_layout(layout, who)
    if lbfgs_convert.is_lbfgs(opt_state):
        return lbfgs_convert.export_lbfgs(opt_state, params)
    paths, leaves, treedef = path_leaves(params)
    shapes = [tuple(np.shape(x)) for x in leaves]
    param_names = _core.param_names_arg(param_names, who)
    is_optimizer = hasattr(template, "param_groups")
    if not is_optimizer and _core.named_items(param_names, who) is not None:
        raise InitError(f"{who}: param_names=<model or named parameters> finds the torch optimizer's Parameters by "
                        "identity: pass the optimizer as template= too (or param_names=[names in its order]).")
    names = list(param_names) if param_names is not None and not is_optimizer else None
    groups_out = None
    if is_optimizer:  # the torch optimizer: its names and groups, in its order
        tp = _core.optimizer_params(template, param_names, who)
        names = tp.names
        groups_out = [{"params": [i for i, g in enumerate(tp.groups) if g == k]} for k in range(max(tp.groups) + 1)]
        if names is not None:
            for grp in groups_out:
                grp["param_names"] = [names[i] for i in grp["params"]]
    if layout == "flax":
        if is_optimizer:
            template = dict(zip(_need_names(names, who), [p for g in template.param_groups for p in g["params"]]))
        if not hasattr(template, "items"):
            raise InitError(f"{who}: layout='flax' needs template= the torch optimizer (built from "
                            "named_parameters()) or {torch_name: tensor} such as dict(model.named_parameters()).")
        tmpl = {k: to_numpy(v) for k, v in template.items()}
        names = names if names is not None else list(tmpl)
        order = list(range(len(leaves)))  # leaf positions; torch indices come from the names
    else:
        if template is not None and not is_optimizer:
            raise InitError(f"{who}: with layout='torch', template must be the torch optimizer (its names, groups "
                            f"and order), got {type(template).__name__}.")
        if not is_optimizer:
            torch_shapes = shapes if names is None or set(paths) != set(names) else \
                [shapes[paths.index(n)] for n in names]
            tp = _core.torch_params(None, torch_shapes, [0] * len(torch_shapes), None, names, who)
        order = _core.match(paths, shapes, tp, isinstance(params, Mapping), who)
    per: dict[int, dict] = {i: {} for i in order}
    counts, owners = set(), set()

    def visit(nt):
        name = type(nt).__name__
        if "count" in nt._fields:
            counts.add(int(np.asarray(nt.count)))
        if name in _TORCH_STEP_OWNERS:
            owners.add(name)
        for f in nt._fields:
            v = getattr(nt, f)
            if f in _core.PER_PARAM_FIELDS and v is not None:
                flat, _ = _field_leaves(v)
                if len(flat) != len(order):
                    raise InitError(f"{who}: the state's {f} has {len(flat)} leaves, params {len(order)}; pass "
                                    "the params this state was made for.")
                for k, leaf in enumerate(flat):
                    if not _is_masked(leaf):
                        per[order[k]][f] = take(leaf)
            elif f != "count":
                walk_states(v, visit)
        return nt

    walk_states(opt_state, visit)
    if layout == "flax":
        from jaxinit._src.convert import to_torch_state_dict

        assert names is not None  # layout='flax' set them from the template above
        index = {nm: i for i, nm in enumerate(names)}
        tmpl_dt = next(iter(tmpl.values())).dtype if tmpl else np.float32
        fields = sorted({f for entry in per.values() for f in entry})
        converted: dict[int, dict] = {i: {} for i in range(len(names))}
        for f in fields:
            arrays = [per[k].get(f) for k in order]
            if f in _core.SCALAR_FIELDS:  # 0-d per parameter: nothing to convert, keep torch's order
                for nm in names:
                    if arrays[0] is not None:
                        converted[index[nm]][f] = np.array(arrays[0], copy=True)
                continue
            present = None
            if any(a is None for a in arrays):  # e.g. max_exp_avg_sq in the amsgrad group only
                marks = jax.tree_util.tree_unflatten(treedef, [np.full(shapes[k], float(a is not None), dtype=tmpl_dt)
                                                               for k, a in zip(order, arrays)])
                present = {nm: bool(np.asarray(m).flat[0]) for nm, m in
                           to_torch_state_dict({"params": marks}, tmpl, dtype="template").items()}
                arrays = [a if a is not None else np.zeros(shapes[k], dtype=tmpl_dt) for k, a in zip(order, arrays)]
            tree = jax.tree_util.tree_unflatten(treedef, arrays)
            for nm, arr in to_torch_state_dict({"params": tree}, tmpl, dtype="template").items():
                if present is None or present[nm]:
                    converted[index[nm]][f] = np.array(arr, copy=True)
        per = converted
    if len(counts) > 1:
        raise InitError(f"{who}: the state's counts disagree ({sorted(counts)}); it was not made by stepping "
                        "one jaxinit.optim transformation.")
    step = counts.pop() if counts else 0
    out = {}
    for i, entry in per.items():
        if step == 0 or not (entry or owners):  # torch keeps no state before the first step (nor SGD without momentum)
            continue
        if owners:
            entry = {"step": float(step), **entry}
        out[i] = entry
    if groups_out is None:
        groups_out = [{"params": sorted(per), **({"param_names": list(names)} if names is not None else {})}]
    return {"state": out, "param_groups": groups_out, "step": step}
