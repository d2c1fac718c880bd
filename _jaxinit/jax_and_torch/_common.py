"""Shared by the both-framework tools: exact precision, output trees, rounding budgets,
and one forward (+ backward) pass through each framework. jax, flax and torch are
imported inside the functions only."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from _jaxinit import arrays as _arr
from _jaxinit.errors import InitError

# Rounding budget of a twin comparison, relative to the reference's scale (max |torch|
# over the compared category): a difference above rtol * scale is a divergence. Stated
# bounds, not derivations: float64 leaves ~10^6 ulps for summation-order differences in
# deep networks (real porting errors are >= 1e-7 relative: LayerNorm eps 1e-6 vs 1e-5
# on unit variances is 5e-6); float32 ~800 ulps; half precisions a few ulps of 2^-8/2^-11.
BUDGET_RTOL = {"float64": 1e-9, "float32": 1e-4, "float16": 5e-3, "bfloat16": 4e-2}


def budget_rtol(dtype) -> float:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    return BUDGET_RTOL.get(name, BUDGET_RTOL["float32"])


@contextlib.contextmanager
def exact_precision():
    """JAX matmuls/convs at "highest" precision and torch's TF32 off, restored afterwards."""
    import jax
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        with jax.default_matmul_precision("highest"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def tree_leaves(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(name, leaf)`` of an output tree: tuples and lists by position, dicts (Hugging Face
    ``ModelOutput`` included) and dataclasses by field name (``None`` fields skipped);
    a bare array is named ``output``."""
    def join(k):
        return f"{prefix}/{k}" if prefix else str(k)

    if isinstance(tree, Mapping):
        return [x for k, v in tree.items() if v is not None for x in tree_leaves(v, join(k))]
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return [x for f in dataclasses.fields(tree) if getattr(tree, f.name) is not None
                for x in tree_leaves(getattr(tree, f.name), join(f.name))]
    if isinstance(tree, (tuple, list)):
        return [x for i, v in enumerate(tree) for x in tree_leaves(v, join(i))]
    return [(prefix or "output", tree)]


def pair_leaves(t: dict, f: dict, who: str, what: str = "output") -> None:
    """Both output trees name the same fields, with the same shapes."""
    if list(t) != list(f) and set(t) != set(f):
        raise InitError(f"{who}: the {what}s differ in structure: torch has {sorted(t)}, Flax has {sorted(f)}. "
                        "Pass output_transform= (Flax) / torch_output_transform= (torch) to bring both to the "
                        "same fields.")
    for k in t:
        if np.shape(t[k]) != np.shape(f[k]):
            raise InitError(f"{who}: {what} {k!r} has shape {np.shape(t[k])} in torch but {np.shape(f[k])} in Flax; "
                            "pass output_transform= to bring the Flax output into torch's layout "
                            "(e.g. lambda y: y.transpose(0, 3, 1, 2) for NHWC -> NCHW).")


def diff(ref: np.ndarray, got: np.ndarray) -> float:
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(got, dtype=np.float64)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def scale(ref: np.ndarray) -> float:
    a = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def verdicts(pairs: Mapping[str, tuple], rtol: float) -> dict:
    """``{name: (torch, flax)}`` -> ``{name: {diff, scale, rel, budget, ok}}``: the budget is
    ``rtol`` times the scale of the whole category (the largest ``|torch|`` among the pairs),
    so a leaf that is rounding noise around zero is not judged against its own tiny size."""
    rows = {k: {"diff": diff(t, f), "scale": scale(t)} for k, (t, f) in pairs.items()}
    top = max((r["scale"] for r in rows.values()), default=0.0)
    for r in rows.values():
        r["rel"] = r["diff"] / top if top else (0.0 if r["diff"] == 0 else float("inf"))
        r["budget"] = rtol * top
        r["ok"] = bool(r["diff"] <= r["budget"])
    return rows


def is_hf_flax(model) -> bool:
    """A Hugging Face Flax model (``FlaxPreTrainedModel``): ``.module`` and ``.params``, called
    as ``model(*inputs, params=..., train=...)`` (train is ``deterministic=not train`` inside)."""
    return hasattr(model, "module") and hasattr(type(model), "params") and hasattr(model, "config") \
        and type(model).__name__.startswith("Flax")


def hf_call(model, variables, *inputs, train):
    """``model(*inputs, params=..., train=...)`` (``deterministic=not train`` for the models that take
    that, e.g. OPT) -> ``(output, updated collections)``. Models with
    running statistics (ResNet, RegNet) take the whole variables and return ``(output,
    {'batch_stats': ...})`` in train mode (``mutable=['batch_stats']`` inside)."""
    import inspect

    names: Any
    try:
        names = inspect.signature(type(model).__call__).parameters
    except (TypeError, ValueError):
        names = {"train": None}
    mode = {"train": train} if "train" in names or "deterministic" not in names else {"deterministic": not train}
    if set(variables) - {"params"}:
        out = model(*inputs, params=variables, **mode)
        return out if train else (out, {})
    return model(*inputs, params=variables["params"], **mode), {}


hf_call.returns_updates = True  # type: ignore[attr-defined]


def call_flax(flax_call, model, variables, xs, train):
    """``(output, updates)`` of a ``flax_call`` hook: the hooks marked ``returns_updates``
    (``hf_call``) return both, a user's hook the output only (updates ``{}``)."""
    if getattr(flax_call, "returns_updates", False):
        return flax_call(model, variables, *xs, train=train)
    return flax_call(model, variables, *xs, train=train), {}


def float_leaf(x) -> bool:
    return _arr.is_float(np.asarray(x).dtype if not _arr.is_torch_tensor(x) else _arr.tensor_spec(x).dtype)


def train_kwargs(model, train_kwarg, train: bool) -> dict:
    """``{train_kwarg: train}`` when the Linen module's ``__call__`` names that argument."""
    import inspect

    if not train_kwarg:
        return {}
    try:
        params = inspect.signature(type(model).__call__).parameters
    except (TypeError, ValueError):
        return {train_kwarg: train}
    return {train_kwarg: train} if train_kwarg in params else {}


def copy_module(module):
    """``copy.deepcopy`` of a torch module. The old ``torch.nn.utils.weight_norm`` leaves its
    computed ``weight`` (not a leaf tensor) on the module after a forward pass, which deepcopy
    refuses (pytorch#103001); it is recomputed by the hook at every forward, so it is left out
    of the copy and put back on the original."""
    import copy

    saved = []
    for mod in module.modules():
        for hook in mod._forward_pre_hooks.values():
            name = getattr(hook, "name", None)
            if type(hook).__name__ == "WeightNorm" and name in mod.__dict__:
                saved.append((mod, name, mod.__dict__.pop(name)))
    try:
        return copy.deepcopy(module)
    finally:
        for mod, name, value in saved:
            mod.__dict__[name] = value
