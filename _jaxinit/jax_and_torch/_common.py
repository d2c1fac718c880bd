"""Shared by the both-framework tools: exact precision, output trees, rounding budgets,
and one forward (+ backward) pass through each framework. jax, flax and torch are
imported inside the functions only."""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

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


# ---------------------------------------------------------------------------- mixed precision
# A twin under autocast (torch.autocast on the torch side, jaxinit.amp.Autocast on the Flax side):
# the ops of the policy reproduce torch's bit for bit where both sides accumulate in float32 and round
# once (linear, matmul, conv) and differ by one ulp of the low dtype in a small share of elements where
# a float32 computation is summed in another order before the one rounding (norms, softmax, attention:
# _jaxinit.autocast_table.OP_BUDGETS, measured per op, the tighter figure for a single op). A model
# passes such one-ulp flips on to later layers, which flip a few more, more often in float16 (3 more
# mantissa bits: a float32 last-bit difference crosses a rounding boundary 8x as often). The budget of
# a check under autocast is therefore stated per dtype in ulps of the low dtype and as a share of
# elements: at most ``outputs`` (model and layer outputs) / ``grads`` (gradients and running
# statistics) of a category's elements may differ by one ulp or more of their own magnitude (a
# near-zero element judged at 1/256 of the category's largest |torch|, as the float budgets judge
# against the scale), and no difference may exceed ``ulps`` ulps at that largest |torch|. Measured on
# the MLP / conv+BatchNorm / transformer-block twins of parity_tests/_amp_twins.py against planted
# porting errors (tanh-approximated GELU, LayerNorm eps 1e-6 for 1e-5): docs/amp.md, "Twins in mixed
# precision".
AUTOCAST_TWIN_BUDGET = {"bfloat16": {"outputs": 0.01, "grads": 0.05, "ulps": 2.0},
                        "float16": {"outputs": 0.15, "grads": 0.2, "ulps": 4.0}}
_MANTISSA = {"bfloat16": (7, -126), "float16": (10, -14)}  # explicit mantissa bits, smallest normal exponent


def autocast_twin_budget(dtype: str) -> dict:
    """``{'outputs': share, 'grads': share, 'ulps': ulps}`` a check under autocast in ``dtype``
    ('bfloat16' or 'float16') allows (:data:`AUTOCAST_TWIN_BUDGET`)."""
    return dict(AUTOCAST_TWIN_BUDGET[dtype])


def spacing(v: np.ndarray, low: str) -> np.ndarray:
    """The distance between neighbouring ``low``-dtype numbers at ``|v|`` (one ulp), as float64."""
    mant, emin = _MANTISSA[low]
    _, e = np.frexp(np.abs(np.asarray(v, dtype=np.float64)))
    return np.ldexp(1.0, np.maximum(e - 1, emin) - mant)


def ulp_counts(ref, got, low: str, top: float) -> np.ndarray:
    """``|ref - got|`` in ulps of the ``low`` dtype at ``max(|ref|, top / 256)``, elementwise."""
    a = np.asarray(ref, dtype=np.float64)
    b = np.asarray(got, dtype=np.float64)
    return np.abs(a - b) / spacing(np.maximum(np.abs(a), top / 256.0), low)


class AmpSetting:
    """The autocast of one check: torch's ``torch.autocast(device_type, dtype)`` around the torch
    forward, the :class:`jaxinit.amp.Autocast` policy of the same setting around the Flax one."""

    def __init__(self, device_type: str, dtype: str):
        from jaxinit._src.amp import Autocast

        self.device_type, self.dtype = device_type, dtype
        self.policy = Autocast(device_type, dtype)
        budget = autocast_twin_budget(dtype)
        self.share = {"outputs": budget["outputs"], "grads": budget["grads"], "batch_stats": budget["grads"]}
        self.ulps = budget["ulps"]
        self.rtol = self.ulps * 2.0 ** -_MANTISSA[dtype][0]  # the ulps budget relative to the scale, at most

    def torch(self):
        import torch

        return torch.autocast(self.device_type, dtype=getattr(torch, self.dtype))

    def flax(self, model=None):
        """The policy as a context manager: Linen interception, or the hooks of an NNX ``model``."""
        return self.policy.nnx(model) if model is not None else self.policy

    def describe(self) -> dict:
        return {"device_type": self.device_type, "dtype": self.dtype, "share_budget": dict(self.share),
                "ulps_budget": self.ulps}


def resolve_autocast(autocast: Any, torch_module: Any, who: str) -> AmpSetting | None:
    """``autocast=`` of twin_check / compare_layers -> an :class:`AmpSetting` (None: float precision).

    Accepted: ``None``/``False``; a :class:`jaxinit.amp.Autocast`; a ``torch.autocast`` object;
    a dtype (``torch.bfloat16``, ``jnp.float16``, ``'bfloat16'``), whose device is the torch module's.
    A disabled policy is None. The device must be the torch module's (``torch.autocast('cuda')``
    leaves the ops of a CPU module alone)."""
    import torch

    if autocast is None or autocast is False:
        return None
    device = next((p.device.type for p in torch_module.parameters()), "cpu")
    from jaxinit._src.amp import Autocast

    if isinstance(autocast, Autocast):
        if not autocast.enabled:
            return None
        dev, name = autocast.device_type, np.dtype(autocast.dtype).name
    elif isinstance(autocast, torch.autocast):
        if not getattr(autocast, "_enabled", True):
            return None
        dev, name = autocast.device, str(autocast.fast_dtype).removeprefix("torch.")
    else:
        dev = device
        if isinstance(autocast, torch.dtype):
            name = str(autocast).removeprefix("torch.")
        else:
            try:
                name = np.dtype(autocast).name
            except TypeError:
                name = None
        if name is None or autocast is True:
            raise InitError(f"{who}: autocast= must be a jaxinit.amp.Autocast, a torch.autocast, or the low dtype "
                            f"(torch.bfloat16, torch.float16, 'bfloat16', jnp.float16), got {autocast!r}; None "
                            "checks in the models' own precision.")
    from _jaxinit import autocast_table as _table

    if dev not in _table.DEVICES or name not in _table.SUPPORTED_DTYPES.get(dev, ()):
        raise InitError(f"{who}: autocast= ({dev}, {name}) is not a torch autocast setting: device_type one of "
                        f"{list(_table.DEVICES)}, dtype one of {list(_table.SUPPORTED_DTYPES['cpu'])}; pass "
                        "autocast=torch.bfloat16 or jaxinit.amp.Autocast('cpu', jnp.bfloat16).")
    if dev != device:
        raise InitError(f"{who}: autocast= is {dev} autocast but the torch module is on {device}: "
                        f"torch.autocast({dev!r}) would leave its ops alone. Pass autocast=Autocast({device!r}, "
                        f"...) (or the dtype alone), or move the module to {dev}.")
    return AmpSetting(dev, name)


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


def verdicts(pairs: Mapping[str, tuple], rtol: float, amp: AmpSetting | None = None) -> dict:
    """``{name: (torch, flax)}`` -> ``{name: {diff, scale, rel, budget, ok}}``: the budget is
    ``rtol`` times the scale of the whole category (the largest ``|torch|`` among the pairs),
    so a leaf that is rounding noise around zero is not judged against its own tiny size.

    Under autocast (``amp``): the budget is ``amp.ulps`` ulps of the low dtype at the category's scale
    (``ulps``: the difference in those ulps), and each row gets ``share``: of its elements, those
    differing by one ulp or more of their own magnitude (:func:`ulp_counts`); the category's share
    (every row's elements together, :func:`amp_share`) is judged against ``amp.share[category]``."""
    rows = {k: {"diff": diff(t, f), "scale": scale(t)} for k, (t, f) in pairs.items()}
    top = max((r["scale"] for r in rows.values()), default=0.0)
    for k, r in rows.items():
        r["rel"] = r["diff"] / top if top else (0.0 if r["diff"] == 0 else float("inf"))
        r["budget"] = rtol * top
        if amp is not None:
            t, f = pairs[k]
            one = float(spacing(np.float64(top), amp.dtype)) if top else 0.0
            u = ulp_counts(t, f, amp.dtype, top) if np.size(t) else np.zeros(0)
            r["budget"] = amp.ulps * one
            r["ulps"] = r["diff"] / one if one else (0.0 if r["diff"] == 0 else float("inf"))
            r["share"] = float(np.mean(u >= 0.5)) if u.size else 0.0
            r["size"] = int(u.size)
        r["ok"] = bool(r["diff"] <= r["budget"])
    return rows


def amp_share(rows: Mapping[str, dict]) -> float:
    """The share of a category's elements (every row's) differing by one ulp or more."""
    n = sum(r.get("size", 0) for r in rows.values())
    return sum(r.get("share", 0.0) * r.get("size", 0) for r in rows.values()) / n if n else 0.0


def is_hf_flax(model) -> bool:
    """A Hugging Face Flax model (``FlaxPreTrainedModel``): ``.module`` and ``.params``, called
    as ``model(*inputs, params=..., train=...)`` (train is ``deterministic=not train`` inside)."""
    return hasattr(model, "module") and hasattr(type(model), "params") and hasattr(model, "config") \
        and type(model).__name__.startswith("Flax")


def hf_call(model, variables, *inputs, train, rngs=None):
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
    if rngs and train and rngs.get("dropout") is not None:
        mode["dropout_rng"] = rngs["dropout"]  # the wrapper's apply gets rngs={'dropout': dropout_rng}
    if set(variables) - {"params"}:
        out = model(*inputs, params=variables, **mode)
        return out if train else (out, {})
    return model(*inputs, params=variables["params"], **mode), {}


hf_call.returns_updates = True  # type: ignore[attr-defined]


def call_flax(flax_call, model, variables, xs, train, rngs=None):
    """``(output, updates)`` of a ``flax_call`` hook: the hooks marked ``returns_updates``
    (``hf_call``) return both, a user's hook the output only (updates ``{}``). ``rngs`` (train
    mode with keys) is passed as ``rngs=``."""
    kw = {"rngs": rngs} if rngs is not None and train else {}
    if getattr(flax_call, "returns_updates", False):
        return flax_call(model, variables, *xs, train=train, **kw)
    return flax_call(model, variables, *xs, train=train, **kw), {}


def check_rngs(rngs: Any, who: str) -> dict | None:
    """``rngs=`` of twin_check / compare_layers: ``{stream: key}`` (a JAX key, typed or raw uint32[2]),
    as Flax's ``apply(..., rngs=)``; returned as a dict (None: none)."""
    if rngs is None:
        return None
    if not isinstance(rngs, Mapping) or not rngs or not all(isinstance(k, str) for k in rngs):
        raise InitError(f"{who}: rngs= must be a dict {{stream: key}} as Flax's apply takes it, e.g. "
                        f"rngs={{'dropout': jax.random.key(0)}}, got {rngs!r}.")
    import jax

    out = {}
    for k, v in rngs.items():
        typed = hasattr(v, "dtype") and jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key)
        arr = None if typed else np.asarray(v)
        if not typed and (arr is None or arr.shape != (2,) or arr.dtype != np.uint32):
            raise InitError(f"{who}: rngs[{k!r}] must be a JAX key (jax.random.key(seed) or "
                            f"jax.random.PRNGKey(seed)), got {type(v).__name__} {getattr(v, 'shape', '')}; "
                            "an int seed: rngs={'dropout': jax.random.key(seed)}.")
        if typed and getattr(v, "shape", ()) != ():
            raise InitError(f"{who}: rngs[{k!r}] must be one key, got a key array of shape {tuple(v.shape)}.")
        out[k] = v
    return out


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
