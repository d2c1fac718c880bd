"""Model-level re-initialization for Flax: PyTorch's ``model.apply(init_fn)`` pattern.

Mirror of :mod:`torchinit._src.reinit`: same function, same argument names and
meanings. Rule parsing, matching and the ``strict`` report live once in
``_jaxinit.rules``. Flax is imported when :func:`reinit` is first called,
so ``import jaxinit`` does not load it.
"""
from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from _jaxinit.errors import InitError
from _jaxinit.rules import Rule, check_strict, first_match, parse_rules, path_crc, rule_failed
from jaxinit._src.initializers import Initializer

WHO = "reinit"
SEP = "/"


def reinit(target: Any, rules, key, *, strict: bool = False):
    r"""Re-initialize a model's parameters by rules; the first matching rule wins.

    The Flax counterpart of PyTorch's ``model.apply(init_fn)``; the same rules
    mean the same thing in :func:`torchinit.reinit`.

    Args:
      target: a Flax Linen params pytree (``variables["params"]``, or the whole
        ``variables`` dict: every array leaf is a candidate) -> a NEW pytree is
        returned, the input is untouched (pure, works under ``jax.jit``); or a
        ``flax.nnx.Module`` -> its ``nnx.Param`` variables are updated in place
        (batch statistics are not touched) and the module is returned.
      rules: ``[(selector, initializer), ...]`` or a dict ``{selector: initializer}``.
        Selectors:

        - a regex string (or ``re.Pattern``), ``re.search``-ed in the path
          joined with "/" (``"Dense_0/kernel"``, NNX: ``"layers/0/kernel"``).
          ``r"bias$"`` and ``r"(kernel|weight)$"`` work in both packages;
        - a module class or tuple of classes (``nnx.Linear``, ``nn.Conv``):
          matches the parameters of modules that are instances of it (the
          module that directly owns the parameter). NNX targets only: a Linen
          params pytree does not record its modules, so a class selector
          there raises :class:`InitError`; select Linen layers by path
          instead (Linen auto-names them ``ClassName_i``: ``r"Conv_\d+/kernel$"``);
        - a predicate ``(path: str, value: jax.Array) -> bool``.

        Initializers: a jaxinit :class:`Initializer` or any Flax-style
        ``init(key, shape, dtype)`` (``jax.nn.initializers.zeros``); ``None``
        leaves the selected parameters unchanged (to exclude them from later
        rules). Fan-based initializers see the Flax kernel layout (their
        default); for Flax ``ConvTranspose`` kernels use
        ``init.with_layout(**FLAX_CONV_TRANSPOSE_LAYOUT)`` to get PyTorch's fans
        (the same rule then gives the same fans in :func:`torchinit.reinit`).
        Unmatched parameters are returned unchanged (the same objects).
      key: a JAX PRNG key (``jax.random.key(0)``; raw ``PRNGKey`` too). The
        parameter at ``path`` gets ``jax.random.fold_in(key, crc32(path))``
        (``zlib.crc32`` of the UTF-8 path string): independent of dict order
        and of the other parameters. :func:`torchinit.reinit` given the same
        JAX key derives the same per-parameter keys from the torch names
        (``"fc1.weight"`` -> ``"fc1/kernel"``, ``_jaxinit.rules.flax_path``) and
        draws the same numbers, so a torch model equals its Flax twin (pass
        ``variables["params"]`` so paths start at the layer names).
      strict: if True, raise :class:`InitError` naming any rule that
        re-initializes no parameter (selects nothing, or only parameters an
        earlier rule already took).
    Returns:
      The new pytree (Linen) or ``target`` itself (NNX). Every leaf keeps its
      dtype; boxed leaves (``nn.Partitioned``) stay boxed.

    Example::

        rules = [(r"(kernel|weight)$", jaxinit.xavier_uniform()), (r"bias$", jaxinit.zeros())]
        params = jaxinit.reinit(params, rules, jax.random.key(0))
        # by layer kind (NNX), biases first: a class selector selects every parameter of the layer
        jaxinit.reinit(model, [(r"bias$", jaxinit.zeros()),
                               (nnx.Conv, jaxinit.kaiming_normal(mode="fan_out", nonlinearity="relu")),
                               (nnx.Linear, jaxinit.normal(0, 0.01))], jax.random.key(0))
    """
    import flax.linen as nn
    from flax import nnx

    key = _check_key(key)
    parsed = parse_rules(
        rules, who=WHO, module_bases=(nn.Module, nnx.Module),
        module_hint="a flax.linen.Module subclass (nn.Dense) or a flax.nnx.Module subclass (nnx.Linear)",
        initializer=_as_initializer,
    )
    if isinstance(target, nnx.Module):
        _check_class_family(parsed, nnx.Module, "nnx", "an NNX module")
        return _reinit_nnx(target, parsed, key, strict)
    return _reinit_pytree(target, parsed, key, strict)


# --------------------------------------------------------------------------- checks
def _check_key(key):
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and np.shape(key) == ():
        return key
    if dtype is not None and dtype == jnp.uint32 and np.shape(key) == (2,):
        return key
    raise InitError(
        f"{WHO}: `key` must be a single JAX PRNG key, got {type(key).__name__} {key!r:.60}; "
        "e.g. jax.random.key(0) (or jax.random.PRNGKey(0))."
    )


def _required_positional(fn) -> int | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in sig.parameters.values()):
        return None
    return sum(1 for p in sig.parameters.values() if p.kind in kinds and p.default is inspect.Parameter.empty)


def _as_initializer(init, label: str):
    if isinstance(init, Initializer):
        return init
    if not callable(init):
        raise InitError(
            f"{WHO}: the initializer of {label} must be callable: a jaxinit Initializer "
            f"(jaxinit.zeros()), any init(key, shape, dtype), or None to leave the parameters unchanged; "
            f"got {type(init).__name__} {init!r:.60}."
        )
    if _required_positional(init) == 0:
        name = getattr(init, "__name__", repr(init))
        raise InitError(
            f"{WHO}: the initializer of {label}, {name}, takes no (key, shape) arguments: it looks like a "
            f"factory. Fix: call it, e.g. {name}() instead of {name}."
        )
    return init


def _check_class_family(rules: list[Rule], base: type, family: str, what: str):
    for rule in rules:
        if rule.selector_type == "class" and not all(issubclass(c, base) for c in rule.selector):
            raise InitError(
                f"{WHO}: {rule.label} names a module class that never owns parameters of {what}; "
                f"use {family} classes here (or a regex on the path)."
            )


# --------------------------------------------------------------------------- sampling
def _new_value(rule: Rule, key, path: str, shape: tuple[int, ...], dtype):
    try:
        new = rule.initializer(jax.random.fold_in(key, np.uint32(path_crc(path))), shape, dtype)
    except Exception as err:
        raise rule_failed(rule, path, shape, jnp.dtype(dtype), err, WHO) from err
    if tuple(np.shape(new)) != shape:
        raise InitError(
            f"{WHO}: {rule.label} returned shape {tuple(np.shape(new))} for parameter {path!r} of shape "
            f"{shape}; an initializer must return init(key, shape, dtype) of the requested shape."
        )
    return jnp.asarray(new).astype(dtype)


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


# --------------------------------------------------------------------------- NNX
def _reinit_nnx(model, rules, key, strict):
    from flax import nnx

    modules, params = {}, []
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module):
            modules[tuple(path)] = type(node)
        elif isinstance(node, nnx.Param):
            params.append((tuple(path), node))
    entries = []
    for path, var in params:
        owner = next((modules[path[:k]] for k in range(len(path) - 1, -1, -1) if path[:k] in modules), None)
        entries.append((SEP.join(str(p) for p in path), var.get_value(), owner, var))
    updates = _plan(entries, rules, key, strict)
    for var, new in updates:
        var.set_value(new)
    return model


# --------------------------------------------------------------------------- Linen
def _is_box(x) -> bool:
    from flax.core.meta import AxisMetadata

    return isinstance(x, AxisMetadata)


def unbox(x):
    if not _is_box(x):
        return x
    try:
        return x.unbox(apply_constraint=False)
    except TypeError:
        return x.unbox()


def _reinit_pytree(tree, rules, key, strict):
    import flax.linen as nn

    if isinstance(tree, nn.Module):
        raise InitError(f"{WHO}: `target` is a Linen module; pass its params pytree "
                        "(variables['params']), or use an nnx.Module.")
    flat, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_box)
    paths = [tuple(_key_name(k) for k in p) for p, _ in flat]
    _check_class_family(rules, nn.Module, "flax.linen", "a Linen params pytree")
    if any(r.selector_type == "class" for r in rules):
        label = next(r.label for r in rules if r.selector_type == "class")
        raise InitError(
            f"{WHO}: {label} selects by module class, but a Linen params pytree does not record which "
            "module owns each parameter. Fix: use a regex on the path instead (Linen auto-names layers "
            "after their class: r'Dense_\\d+/kernel$', r'Conv_\\d+/'), a predicate (path, value) -> bool, "
            "or an nnx.Module target."
        )
    entries: list[tuple[str, Any, None, int]] = []
    for (path, leaf), names in zip(flat, paths):
        value = unbox(leaf)
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise InitError(f"{WHO}: the leaf at {SEP.join(names)!r} is {type(value).__name__}, not an array; "
                            "`target` must be a params pytree of arrays or an nnx.Module.")
        entries.append((SEP.join(names), value, None, len(entries)))
    leaves = [leaf for _, leaf in flat]
    for i, new in _plan(entries, rules, key, strict):
        leaves[i] = leaves[i].replace_boxed(new) if _is_box(leaves[i]) else new
    return jax.tree_util.tree_unflatten(treedef, leaves)


# --------------------------------------------------------------------------- shared plan
def _plan(entries, rules, key, strict):
    """Match every entry (path, value, owner type, handle), check ``strict``, then
    sample: returns ``[(handle, new value)]`` for the re-initialized ones."""
    applied: dict[int, int] = {}
    chosen = []
    for path, value, owner, handle in entries:
        rule = first_match(rules, path, value, owner)
        if rule is None:
            continue
        applied[rule.position] = applied.get(rule.position, 0) + 1
        if rule.initializer is not None:
            chosen.append((rule, path, value, handle))
    if strict:
        check_strict(rules, [(p, v, o) for p, v, o, _ in entries], applied, WHO)
    return [(handle, _new_value(rule, key, path, tuple(value.shape), value.dtype))
            for rule, path, value, handle in chosen]
