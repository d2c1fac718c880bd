"""Model-level re-initialization for torch modules: the mirror of :func:`jaxinit.reinit`."""
from __future__ import annotations

import inspect

import torch

from _initcore.errors import InitError
from _initcore.fans import TORCH_LAYOUT
from _initcore.rules import check_strict, first_match, normalize_rules, path_hash
from torchinit._src.initializers import Initializer


def _seed(key) -> int:
    if isinstance(key, torch.Generator):
        return key.initial_seed()
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    raise InitError(f"reinit: `key` must be an int seed or a torch.Generator, got {type(key).__name__}")


def reinit(target: torch.nn.Module, rules, key, *, strict: bool = False) -> torch.nn.Module:
    """Re-initialize a module's parameters in place by rules; the first matching rule wins.

    Args:
      target: a ``torch.nn.Module``; updated in place under ``torch.no_grad()`` and returned.
      rules: ``[(selector, initializer), ...]`` or a dict. A selector is a regex
        searched in the parameter name (``"fc1.weight"``), a module class
        (matches parameters owned directly by an instance of it), or a
        predicate ``(name, tensor) -> bool``. An initializer is a torchinit
        factory (fan-based ones are applied with ``TORCH_LAYOUT``, so
        "kaiming_uniform for every weight" gives the same fans as jaxinit on
        the Flax twin) or an in-place function such as ``torch.nn.init.zeros_``
        (given ``generator=`` when it takes one).
      key: an int seed or a ``torch.Generator`` (its initial seed is used).
        Parameter ``name`` gets a generator seeded with
        ``(seed + crc32(name)) mod 2**63``: independent of registration order.
      strict: raise if a rule matches no parameter.
    """
    if not isinstance(target, torch.nn.Module):
        raise InitError(f"reinit: `target` must be a torch.nn.Module, got {type(target).__name__}")
    rules = normalize_rules(rules)
    seed = _seed(key)
    used: set[int] = set()
    owners = {}
    for mname, module in target.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            owners[f"{mname}.{pname}" if mname else pname] = module
    with torch.no_grad():
        for name, param in target.named_parameters():
            i = first_match(rules, name, param, owners.get(name))
            if i is None:
                continue
            used.add(i)
            init = rules[i][2]
            gen = torch.Generator(param.device).manual_seed((seed + path_hash(name)) % 2**63)
            if isinstance(init, Initializer):
                if any(k in init.args for k in ("in_axis", "out_axis")):
                    init = init.with_layout(**TORCH_LAYOUT)
                param.copy_(init(gen, tuple(param.shape), param.dtype, param.device))
            elif "generator" in inspect.signature(init).parameters:
                init(param, generator=gen)
            else:
                init(param)
    if strict:
        check_strict(rules, used)
    return target
