"""Model-level re-initialization for torch modules: the mirror of :mod:`jaxinit._src.reinit`.

Same function, same argument names and meanings as :func:`jaxinit.reinit`;
rule parsing, matching and the ``strict`` report live once in ``_jaxinit.rules``.
"""
from __future__ import annotations

import inspect
import numbers

import torch

from _jaxinit.errors import InitError
from _jaxinit.fans import TORCH_LAYOUT
from _jaxinit.rules import (Rule, check_strict, derive_seed, first_match, flax_path, parse_rules, path_crc,
                            rule_failed)
from torchinit._src import random as _rnd
from torchinit._src.initializer_object import Initializer, keyed_inplace

WHO = "reinit"
_LAYOUT_KEYS = ("in_axis", "out_axis", "batch_axis")


def reinit(target: torch.nn.Module, rules, key, *, strict: bool = False) -> torch.nn.Module:
    """Re-initialize a module's parameters in place by rules; the first matching rule wins.

    PyTorch's ``model.apply(init_fn)`` written as rules; the same rules mean
    the same thing in :func:`jaxinit.reinit`.

    Args:
      target: a ``torch.nn.Module``. Its parameters (``named_parameters()``;
        buffers such as BatchNorm running stats are not touched) are updated in
        place under ``torch.no_grad()`` with ``copy_``, so dtype, device and
        the ``Parameter`` objects (and optimizer references to them) are kept.
        ``target`` is returned.
      rules: ``[(selector, initializer), ...]`` or a dict ``{selector: initializer}``.
        Selectors:

        - a regex string (or ``re.Pattern``), ``re.search``-ed in the
          parameter name joined with "." (``"fc1.weight"``, ``"0.bias"``).
          ``r"bias$"`` and ``r"(kernel|weight)$"`` work in both packages;
        - a module class or tuple of classes (``torch.nn.Conv2d``): matches
          the parameters registered directly on instances of it;
        - a predicate ``(path: str, value: torch.nn.Parameter) -> bool``.

        Initializers:

        - a torchinit :class:`Initializer` (``torchinit.xavier_uniform()``).
          Those with layout arguments are applied with
          ``init.with_layout(**TORCH_LAYOUT)`` (torchinit's default): torch weights are (out, in, *k)
          (ConvTranspose: (in, out, *k), whose positional fans PyTorch itself
          uses), so a rule gives the same fans as in :func:`jaxinit.reinit`
          on the Flax twin of the model. Any layout set on the initializer is
          replaced; wrap it in a function to keep a custom one;
        - an in-place function of one tensor (``torch.nn.init.zeros_``,
          ``functools.partial(torch.nn.init.kaiming_normal_, mode="fan_out")``,
          ``lambda t: torch.nn.init.normal_(t, 0, 0.01)``). It gets
          ``generator=`` when it takes one; otherwise it runs with the default
          generator of the parameter's device seeded with the parameter's seed
          (and restored afterwards), so the result still depends only on
          ``key`` and the path;
        - a factory-style ``init(generator, shape, dtype[, device])`` (its
          second parameter must be named ``shape``);
        - ``None``: leave the selected parameters unchanged (to exclude them
          from later rules).
        Unmatched parameters are left unchanged.
      key: a JAX-style key (``torchinit.random.key(0)``, a ``jax.random.key``,
        a uint32[2] array): the parameter at torch name ``path`` gets
        ``fold_in(key, crc32(flax_path(path)))`` (``_jaxinit.rules.flax_path``:
        ``"fc1.weight"`` -> ``"fc1/kernel"``), exactly the key
        :func:`jaxinit.reinit` gives the Flax twin's parameter, and torchinit
        Initializers and ``key=``-aware in-place functions draw in the Flax
        layout and permute (ConvTranspose modules: ``conv_transpose=True``), so
        the torch model equals its Flax twin after the layout transposes.
        Or an int seed or a ``torch.Generator`` (only its ``initial_seed()``
        is used; its state is not advanced, so the same generator gives the
        same result, as a JAX key does). The parameter at ``path`` gets a
        fresh generator on its device seeded with
        ``splitmix64(splitmix64(seed) ^ crc32(path)) >> 1`` (``zlib.crc32`` of
        the UTF-8 path; see ``_jaxinit.rules.derive_seed``): independent of
        registration order and of the other parameters. :func:`jaxinit.reinit`
        uses ``fold_in(key, crc32(path))``: pass a JAX-style key (above) to
        draw its numbers; an int seed keeps this torch-only derivation.
      strict: if True, raise :class:`InitError` naming any rule that
        re-initializes no parameter (selects nothing, or only parameters an
        earlier rule already took).

    Every initializer runs before any parameter is written, so an error leaves
    ``target`` unchanged.

    Example::

        torchinit.reinit(model, [(r"weight$", torchinit.xavier_uniform()), (r"bias$", torchinit.zeros())], 0)
        torchinit.reinit(model, [(torch.nn.Conv2d, torchinit.kaiming_normal(mode="fan_out", nonlinearity="relu")),
                                 (torch.nn.Linear, torchinit.normal(0, 0.01))], 0)
    """
    if not isinstance(target, torch.nn.Module):
        raise InitError(f"{WHO}: `target` must be a torch.nn.Module, got {type(target).__name__}; "
                        "for a tensor use the in-place initializers (torchinit.xavier_uniform_(w)).")
    jax_key = _rnd.as_key(key) if _rnd.is_key(key) else None
    seed = _base_seed(key) if jax_key is None else None
    parsed = parse_rules(
        rules, who=WHO, module_bases=(torch.nn.Module,),
        module_hint="a torch.nn.Module subclass (torch.nn.Linear)",
        initializer=_as_initializer if jax_key is None else _as_keyed_initializer,
    )
    entries = []
    for path, param in target.named_parameters():
        owner_name = path.rpartition(".")[0]
        owner = type(target.get_submodule(owner_name))
        entries.append((path, param, owner))
    applied: dict[int, int] = {}
    chosen = []
    for path, param, owner in entries:
        rule = first_match(parsed, path, param, owner)
        if rule is None:
            continue
        applied[rule.position] = applied.get(rule.position, 0) + 1
        if rule.initializer is not None:
            chosen.append((rule, path, param))
    if strict:
        check_strict(parsed, entries, applied, WHO)
    with torch.no_grad():
        if seed is not None:  # exactly when jax_key is None
            updates = [(param, _new_value(rule, path, param, derive_seed(seed, path))) for rule, path, param in chosen]
        else:
            updates = [(param, _new_value(rule, path, param, None, _param_key(jax_key, target, path, param)))
                       for rule, path, param in chosen]
        for param, new in updates:
            param.copy_(new)
    return target


def _base_seed(key) -> int:
    if isinstance(key, torch.Generator):
        return key.initial_seed()
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return int(key)
    raise InitError(
        f"{WHO}: `key` must be an int seed or a torch.Generator, or a JAX-style key (torchinit.random.key(0)), "
        f"got {type(key).__name__}; "
        "e.g. reinit(model, rules, 0) or reinit(model, rules, torch.Generator().manual_seed(0))."
    )


def _as_initializer(init, label: str):
    """Turn any accepted initializer into ``apply(param, generator) -> tensor``."""
    if isinstance(init, Initializer):
        if any(k in init.args for k in _LAYOUT_KEYS):
            init = init.with_layout(**TORCH_LAYOUT)
        return lambda p, g: init(g, tuple(p.shape), p.dtype, p.device)
    if not callable(init):
        raise InitError(
            f"{WHO}: the initializer of {label} must be a torchinit Initializer (torchinit.zeros()), an "
            "in-place function of a tensor (torch.nn.init.zeros_), an init(generator, shape, dtype, device), "
            f"or None to leave the parameters unchanged; got {type(init).__name__} {init!r:.60}."
        )
    try:
        params = list(inspect.signature(init).parameters.values())
    except (TypeError, ValueError):
        raise InitError(
            f"{WHO}: the initializer of {label} has no inspectable signature; wrap it, e.g. "
            "lambda t: fn(t)."
        ) from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    names = {p.name for p in params}
    name = getattr(init, "__name__", repr(init))
    if len(positional) >= 2 and positional[1].name == "shape":
        takes_device = "device" in names or len(positional) >= 4
        if takes_device:
            return lambda p, g: init(g, tuple(p.shape), p.dtype, p.device)
        return lambda p, g: init(g, tuple(p.shape), p.dtype)
    if not required and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise InitError(
            f"{WHO}: the initializer of {label}, {name}, takes no tensor argument: it looks like a "
            f"factory. Fix: call it, e.g. {name}() instead of {name}."
        )
    if len(required) > 1:
        extra = ", ".join(p.name for p in required[1:])
        raise InitError(
            f"{WHO}: the initializer of {label}, {name}, needs more than the tensor (also: {extra}). "
            f"Fix: bind them, e.g. functools.partial({name}, {required[1].name}=...)."
        )
    if "generator" in names:
        def apply(p, g):
            work = p.detach().clone()
            out = init(work, generator=g)
            return out if isinstance(out, torch.Tensor) else work
    else:
        def apply(p, g):
            work = p.detach().clone()
            with _seeded_default_generator(work.device, g.initial_seed()):
                out = init(work)
            return out if isinstance(out, torch.Tensor) else work
    return apply


class _seeded_default_generator:
    """Seed the default generator of ``device`` and restore its state afterwards."""

    def __init__(self, device: torch.device, seed: int):
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.gen = torch.cuda.default_generators[index]
        else:
            self.gen = torch.default_generator
        self.seed = seed

    def __enter__(self):
        self.state = self.gen.get_state()
        self.gen.manual_seed(self.seed)

    def __exit__(self, *exc):
        self.gen.set_state(self.state)
        return False


def _owner(target, path):
    return target.get_submodule(path.rpartition(".")[0])


def _param_key(jax_key, target, path, param):
    """``fold_in(key, crc32(flax_path))``: the key jaxinit.reinit gives the Flax twin's parameter."""
    owner = _owner(target, path)
    fpath = flax_path(path, param.ndim, embedding=isinstance(owner, torch.nn.Embedding))
    conv_t = isinstance(owner, torch.nn.modules.conv._ConvTransposeNd)
    return _rnd.fold_in(jax_key, path_crc(fpath)), conv_t


def _as_keyed_initializer(init, label: str):
    """With a JAX key: ``apply(param, (key, conv_transpose)) -> tensor`` drawing in the Flax layout."""
    if isinstance(init, Initializer):
        has_layout = any(k in init.args for k in _LAYOUT_KEYS)

        torch_init = init.with_layout(**TORCH_LAYOUT) if has_layout else init

        def apply(p, kc):
            work = p.detach().clone()
            if torch_init._keyed is None:  # deterministic: the key is not used
                return torch_init._impl(work, None)
            return keyed_inplace(work, kc[0], None, init.name, torch_init, conv_transpose=kc[1])
        return apply
    _as_initializer(init, label)  # same checks and error messages
    try:
        names = set(inspect.signature(init).parameters)
    except (TypeError, ValueError):
        names = set()
    if "key" in names:
        def apply(p, kc):
            work = p.detach().clone()
            kw = {"conv_transpose": kc[1]} if "conv_transpose" in names else {}
            out = init(work, key=kc[0], **kw)
            return out if isinstance(out, torch.Tensor) else work
        return apply
    positional = [q for q in inspect.signature(init).parameters.values()
                  if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 and positional[1].name == "shape":
        return lambda p, kc: init(kc[0], tuple(p.shape), p.dtype)
    raise InitError(
        f"{WHO}: the initializer of {label} cannot take a JAX key: with a JAX-style key use a torchinit "
        "Initializer (torchinit.xavier_uniform()) or an in-place function with `key=` "
        "(torchinit.kaiming_normal_), or pass an int seed instead."
    )


def _new_value(rule: Rule, path: str, param, seed, keyed=None):
    if isinstance(param, torch.nn.parameter.UninitializedParameter):
        raise InitError(f"{WHO}: parameter {path!r} of a lazy module is not initialized yet; run one "
                        "forward pass first, then reinit.")
    gen = torch.Generator(device=param.device).manual_seed(seed) if keyed is None else keyed
    try:
        new = rule.initializer(param, gen)
    except Exception as err:
        raise rule_failed(rule, path, tuple(param.shape), param.dtype, err, WHO) from err
    if not isinstance(new, torch.Tensor) or tuple(new.shape) != tuple(param.shape):
        got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
        raise InitError(
            f"{WHO}: {rule.label} returned {got} for parameter {path!r} of shape {tuple(param.shape)}; "
            "an initializer must fill or return a tensor of the parameter's shape."
        )
    return new
