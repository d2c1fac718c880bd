"""The twin check: one implementation behind ``jaxinit.twin_check`` and ``torchinit.twin_check``.

Needs jax, flax and torch, imported inside the functions (see the package docstring).
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, NamedTuple

import numpy as np

from _jaxinit import arrays as _arr
from _jaxinit import naming as _naming
from _jaxinit.convert import ConversionError, torch_to_flax
from _jaxinit.errors import InitError
from _jaxinit.jax_and_torch import _common as shared

MODES = ("eval", "train")


class Side(NamedTuple):
    """One framework's pass: output leaves, parameter gradients and state after the pass."""

    outputs: dict  # {field: np.ndarray}
    grads: dict  # torch: {state-dict key: array}; Flax: {(collection, path): array}
    state: dict  # Flax: {(collection, path): array} of non-params collections; torch: unused
    params: dict  # Flax: {(collection, path): array}
    no_grad: list  # torch parameters without a gradient (unused by the loss)
    state_seen: bool = True  # Flax: the pass returned its updated running statistics
    tied: dict = {}  # torch: {state-dict key: key whose tensor it shares}
    buffers: tuple = ()  # torch: the state-dict keys that are buffers, not parameters


class Run(NamedTuple):
    """The options of one check, in one place: every pass reads them from here (a new option
    is one field, passed through unchanged)."""

    output_transform: Any = None
    torch_output_transform: Any = None
    train_kwarg: str | None = "train"
    flax_call: Any = None
    seed: int = 0
    jit: bool = False
    mapping: Any = None
    kinds: Any = None
    batchnorm: str = "torch"
    transpose_kernel: bool = False
    ignore: Any = ()
    tied: Any = None
    amp: Any = None  # a _common.AmpSetting: the autocast both passes run under (None: none)
    rngs: Any = None  # {stream: JAX key} for Flax's apply in train mode (None: none)
    rng_calls: Any = None  # the Flax twin's make_rng calls in train mode (jaxinit.rngs.rng_calls), torch bound to them


def twin_check(torch_module: Any, flax_module: Any, inputs: Any, *, variables: Any = None,
               flax_inputs: Any = None, output_transform: Any = None, torch_output_transform: Any = None,
               modes: tuple = MODES, train_kwarg: str | None = "train", flax_call: Any = None, seed: int = 0,
               mapping=None, kinds=None, batchnorm: str = "torch", transpose_kernel: bool = False,
               jit: bool = False, ignore: Any = (), tied: Any = None, autocast: Any = None,
               rngs: Any = None) -> dict:
    r"""Run a torch module and its Flax twin on the same inputs; report every difference
    next to the reference's scale, with a verdict against a per-dtype rounding budget.

    Both models must already hold the same weights (e.g. via
    ``from_torch_state_dict``). For each mode in ``modes`` ('eval', 'train'):
    the torch module (a deep copy: the caller's module is not touched) runs
    ``module(*inputs)`` after ``.train()``/``.eval()``; the Flax model runs
    ``flax_module.apply(variables, *flax_inputs, **{train_kwarg: train})``
    (Linen, ``mutable=['batch_stats']`` in train), ``model(*flax_inputs)``
    after ``.train()``/``.eval()`` on a clone (NNX), or
    ``flax_call(flax_module, variables, *flax_inputs, train=train)`` when given
    (a Hugging Face Flax model, ``model(*inputs, params=..., train=...)``, gets
    that hook by default with ``variables={'params': model.params}``).
    Outputs may be any tree (tuples, lists, dicts, dataclasses, Hugging Face
    ``ModelOutput``): fields are matched by name / position and reported one by
    one. The loss is ``sum(output * c)`` over the fields with a fixed random
    cotangent ``c`` (seeded by ``seed``); torch's gradients are converted to the
    Flax layout by the same converter (a parameter the loss does not use has a
    zero gradient; a merged LSTM/GRU gate bias gets the gradient of ONE of torch's
    two biases, which both equal it). JAX runs at matmul precision "highest",
    torch with TF32 off.

    The verdict: a difference is within budget when ``diff <= rtol * scale``,
    ``scale`` the largest ``|torch|`` of its category (outputs, gradients,
    running statistics) and ``rtol`` per dtype (``BUDGET_RTOL``: float64 1e-9,
    float32 1e-4, float16 5e-3, bfloat16 4e-2).

    Running statistics (train mode) are compared where both sides' updates are
    seen: Linen ``apply`` (``mutable=['batch_stats']``), NNX, and Hugging Face
    models (theirs return the updates in train mode). A ``flax_call`` hook
    returns the output only, so they are not compared there: the report says so
    (``'batch_stats': None`` and ``'batch_stats_note'``).

    Args:
      inputs: an array (or tuple) in torch's layout (numpy or torch tensors).
      flax_inputs: the same inputs in Flax's layout (default: ``inputs``).
      output_transform: a function bringing the Flax output into torch's layout
        and structure (default identity), e.g. ``lambda y: y.transpose(0, 3, 1, 2)``.
      torch_output_transform: the same for the torch output (a torch function,
        applied before the loss, so gradients flow through it).
      train_kwarg: the Linen keyword that selects train mode (None: none).
      flax_call: ``flax_call(flax_module, variables, *flax_inputs, train=bool)``
        -> output, for models that take neither ``apply`` nor ``train_kwarg``.
      mapping, kinds, batchnorm, transpose_kernel: passed to the converter.
      ignore: torch state-dict keys (or Flax paths ``'params/a/b'``), exact or as
        regular expressions (``re.fullmatch``), that have no partner on the other
        side (a fixed sinusoid table, a buffer Flax computes, a leaf filled by
        hand): left out of the comparison and listed in the report
        (``'ignored'``). Each entry must match something.
      tied: ``{torch key: torch key it shares its tensor with}`` for tied weights
        (one Flax leaf, several torch keys, e.g. ``{'lm_head.weight':
        'shared.weight'}``). Parameters torch ties by sharing one tensor are found
        without it. Reported as ``'tied'``.
      jit: compile the Flax loss and gradient as one computation (Linen and Hugging
        Face models). Faster for one check of a deep model (Bert: 3x); the default,
        eager, compiles each operation once per shape and reuses it across checks.
      rngs: ``{'dropout': key}`` (a JAX key), for train mode with dropout on: Flax's
        apply gets ``rngs=`` (a Hugging Face model ``dropout_rng=``), and the torch
        model (the pass's copy) is bound to the same masks with
        ``torchinit.rngs.bind_rngs`` against the Flax twin's ``make_rng`` calls
        (``jaxinit.rngs.rng_calls``, traced once): outputs, gradients and running
        statistics then agree at the eval-mode budget. Hugging Face torch models
        need ``attn_implementation='eager'`` (the fused attention draws its mask
        inside the kernel). Without it, a Flax model that draws dropout keys in
        train mode raises an error naming dropout and this fix. Linen and Hugging
        Face models (an NNX model carries its own ``nnx.Rngs``).
      autocast: check in mixed precision: a :class:`jaxinit.amp.Autocast`, a
        ``torch.autocast`` object, or the low dtype (``torch.bfloat16``, ``'float16'``:
        on the torch module's device). The torch forward runs under
        ``torch.autocast(device_type, dtype)``, the Flax one under the
        ``jaxinit.amp.Autocast`` policy of the same setting (Linen by interception, NNX
        by its hooks), both with float32 parameters. The verdict is then in ulps of the
        low dtype (``AUTOCAST_TWIN_BUDGET``, per dtype): every difference within
        ``ulps`` ulps at the category's largest ``|torch|``, and at most a ``share`` of
        the category's elements (outputs; gradients and running statistics) off by one
        ulp or more of their own magnitude (bfloat16: 2 ulps, 1% of outputs, 5% of
        gradients; float16: 4 ulps, 15% / 20%). Reported as ``'autocast'`` (setting
        and budget), ``'share'`` per category, and ``'ulps'``/``'share'`` per leaf.

    Returns:
      ``{mode: {'output': max |torch - flax| over fields, 'output_scale',
      'outputs': {field: {'diff', 'scale', 'rel', 'budget', 'ok'}}, 'grad',
      'grad_scale', 'worst_grad' (its Flax path), 'grads': {path: {...}},
      'no_grad_in_torch': [torch names], 'ignored': {'torch': [...], 'flax': [...]},
      'tied': {torch key: torch key}, 'buffer_in_torch': [Flax parameters whose torch
      counterpart is a buffer: torch's gradient is 0, it never trains them], 'batch_stats' (train only; None when not
      compared, with 'batch_stats_note'), 'dtype', 'budget_rtol', 'ok'}}``; under ``autocast=`` also
      'autocast' and 'share'; in train mode without ``rngs=``, a failed verdict on a torch model with
      dropout gets 'dropout_note' (the fix).

    >>> report = jaxinit.twin_check(torch_mlp, flax_mlp, x, variables=variables)  # doctest: +SKIP
    >>> report["train"]["ok"], report["train"]["output"], report["train"]["grad"]  # doctest: +SKIP
    """
    run = Run(output_transform, torch_output_transform, train_kwarg, flax_call, seed, jit, mapping, kinds,
              batchnorm, transpose_kernel, ignore, tied, shared.resolve_autocast(autocast, torch_module, "twin_check"))
    user_call = flax_call is not None
    flax_module, variables, flax_call = normalize_call(flax_module, variables, flax_call, modes)
    run = run._replace(flax_call=flax_call)
    xs = [_arr.to_numpy(x) for x in shared.as_tuple(inputs)]
    fxs = xs if flax_inputs is None else [_arr.to_numpy(x) for x in shared.as_tuple(flax_inputs)]
    run = run._replace(rngs=shared.check_rngs(rngs, "twin_check"))
    if run.rngs is not None and "train" in modes:
        run = run._replace(rng_calls=train_rng_calls(flax_module, variables, fxs, run, user_call, "twin_check"))
    keep = Keep.of(*_static_sides(torch_module, flax_module, variables), run)  # bad ignore=/tied=: before the passes
    report = {}
    with shared.exact_precision():
        for mode in modes:
            train = mode == "train"
            tm, t = _torch_pass(torch_module, xs, train, run)
            with explain_missing_rngs("twin_check", run):
                f = _flax_pass(flax_module, variables, fxs, train, t.outputs, run)
            shared.pair_leaves(t.outputs, f.outputs, "twin_check")
            grads, frozen = _torch_grads_in_flax_layout(tm, t, f, run, keep)
            report[mode] = _mode_report(t, f, grads, train, keep, run)
            report[mode]["buffer_in_torch"] = frozen
            if train and run.rngs is None and not report[mode]["ok"]:
                note = dropout_note(torch_module)
                if note:
                    report[mode]["dropout_note"] = note
    return report


def train_rng_calls(flax_module, variables, fxs, run: Run, user_call: bool, who: str) -> list:
    """The Flax twin's ``make_rng`` calls in train mode (``jaxinit.rngs.rng_calls``: one traced apply,
    nothing computed), which the torch model is bound to; checks that ``rngs=`` can feed them."""
    from flax import nnx

    from jaxinit._src.rngs import rng_calls

    if isinstance(flax_module, nnx.Module):
        raise InitError(f"{who}: rngs= is for Linen and Hugging Face Flax models (keys given to apply); an NNX "
                        "model carries its streams (nnx.Rngs): give the torch twin torchinit.nn's keyed layers with "
                        "torchinit.rngs.Rngs of the same seeds, and call without rngs=.")
    if user_call:
        raise InitError(f"{who}: rngs= with a flax_call hook: twin_check cannot trace the hook's apply to bind "
                        "the torch model. Call the Linen module directly (train_kwarg=...), or bind the torch model "
                        "yourself (torchinit.rngs.bind_rngs(torch_model, key, jaxinit.rngs.rng_calls(...))) and give "
                        "the hook the key.")
    if shared.is_hf_flax(flax_module):
        import inspect

        names = inspect.signature(type(flax_module).__call__).parameters
        kw: dict = {"train": True} if "train" in names or "deterministic" not in names else {"deterministic": False}
        calls = rng_calls(flax_module, *fxs, variables={"params": variables["params"]}, rngs=run.rngs, **kw)
    else:
        kw = shared.train_kwargs(flax_module, run.train_kwarg, True)
        if "batch_stats" in variables:
            kw["mutable"] = ["batch_stats"]
        calls = rng_calls(flax_module, *fxs, variables=variables, rngs=run.rngs, **kw)
    drawing = [c for c in calls if c.kind != "other"]
    if drawing and "dropout" not in run.rngs:
        raise InitError(f"{who}: the Flax twin's dropout draws from the 'dropout' stream "
                        f"({len(drawing)} masks) but rngs= has {sorted(run.rngs)}: pass rngs={{'dropout': key}}.")
    return calls


def bound_torch(tm, train: bool, run: Run):
    """``tm`` (the pass's deep copy) bound to the Flax twin's dropout keys in train mode
    (``torchinit.rngs.bind_rngs``), or a no-op."""
    if not train or run.rng_calls is None:
        return contextlib.nullcontext()
    from torchinit.rngs import bind_rngs

    return bind_rngs(tm, run.rngs.get("dropout"), run.rng_calls)


@contextlib.contextmanager
def explain_missing_rngs(who: str, run: Run):
    """Flax's raw ``InvalidRngError`` (a stream without a key, dropout in train mode) as an error that
    names dropout and the fix."""
    import flax.errors

    try:
        yield
    except flax.errors.InvalidRngError as err:
        given = "no rngs=" if run.rngs is None else f"rngs= with {sorted(run.rngs)}"
        raise InitError(
            f"{who}: in train mode the Flax model draws random numbers (dropout) and got {given} "
            f"(Flax: {str(err).splitlines()[0]}). Pass rngs={{'dropout': jax.random.key(0)}}: {who} gives the key "
            "to Flax and binds the torch model's dropout to the same masks (torchinit.rngs.bind_rngs; a Hugging "
            "Face torch model needs attn_implementation='eager'). Or check modes=('eval',) only.") from None


def dropout_note(torch_module) -> str | None:
    """Train mode without rngs= and a failed verdict: the torch dropouts that draw their own masks."""
    drops = [n or "<root>" for n, m in torch_module.named_modules()
             if type(m).__name__.startswith("Dropout") and float(getattr(m, "p", 0.0)) > 0.0]
    if not drops and not any(float(getattr(getattr(torch_module, "config", None), a, 0.0) or 0.0) > 0.0
                             for a in ("hidden_dropout_prob", "attention_probs_dropout_prob", "resid_pdrop",
                                       "attn_pdrop", "dropout", "attention_dropout")):
        return None
    return (f"torch applies dropout in train mode ({', '.join(drops[:4]) or 'its config'}{' ...' if len(drops) > 4 else ''}) "
            "with its own masks, so the outputs cannot agree: pass rngs={'dropout': key} (the Flax twin's "
            "dropout key; the torch model is bound to the same masks), or compare modes=('eval',).")


def _static_sides(torch_module, flax_module, variables) -> tuple[Side, Side]:
    """The two sides' keys before any pass: torch's state dict (and its ties), Flax's variables."""
    from flax import nnx

    t = Side({}, dict(torch_module.state_dict()), {}, {}, [], True, tied_keys(torch_module))
    if isinstance(flax_module, nnx.Module):
        state, params = nnx_vars(flax_module, nnx)
    else:
        flat = _arr.flatten_flax(variables, "twin_check")
        state = {k: v for k, v in flat.items() if k[0] != "params"}
        params = {k: v for k, v in flat.items() if k[0] == "params"}
    return t, Side({}, {}, state, params, [])


class Keep(NamedTuple):
    """What ``ignore=`` / ``tied=`` take out of the comparison, resolved against both sides."""

    torch_ignored: list
    flax_ignored: list
    tied: dict

    @classmethod
    def of(cls, t: Side, f: Side, run: Run) -> Keep:
        pats = [run.ignore] if isinstance(run.ignore, str) else list(run.ignore or ())
        tkeys = list(t.grads)
        fkeys = [_arr.fname(k) for k in {**f.params, **f.state}]
        tig, fig = [], []
        for p in pats:
            if not isinstance(p, str):
                raise InitError(f"`ignore` entries must be strings (torch keys, Flax paths "
                                f"'params/...', or regular expressions), got {p!r}.")
            rx = re.compile(p)
            hit_t = [k for k in tkeys if k == p or rx.fullmatch(k)]
            hit_f = [k for k in fkeys if k == p or rx.fullmatch(k)]
            if not hit_t and not hit_f:
                raise InitError(f"ignore={p!r} matches no torch key and no Flax path (torch keys: "
                                f"{', '.join(tkeys[:6])}{', ...' if len(tkeys) > 6 else ''}; Flax paths: "
                                f"{', '.join(fkeys[:4])}{', ...' if len(fkeys) > 4 else ''}); fix or drop it.")
            tig += [k for k in hit_t if k not in tig]
            fig += [k for k in hit_f if k not in fig]
        tied = dict(t.tied)
        for dep, src in dict(run.tied or {}).items():
            for k in (dep, src):
                if k not in t.grads:
                    raise InitError(f"tied={{{dep!r}: {src!r}}}: {k!r} is not a key of the torch "
                                    "module's state_dict.")
            tied[dep] = src
        return cls(tig, fig, tied)


def normalize_call(flax_module, variables, flax_call, modes):
    from flax import nnx

    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise InitError(f"twin_check: `modes` must be a non-empty subset of {MODES}, got {modes!r}.")
    if flax_call is None and shared.is_hf_flax(flax_module):
        flax_call = shared.hf_call
        if variables is None:
            try:
                variables = dict(flax_module.params)
            except ValueError as err:  # created with _do_init=False: the params live outside the model
                raise InitError("twin_check: this Hugging Face Flax model keeps its params outside (_do_init=False): "
                                "pass variables={'params': params}.") from err
            if "params" not in variables:  # most models: the params tree itself; ResNet/RegNet: collections
                variables = {"params": variables}
    if isinstance(flax_module, nnx.Module):
        return flax_module, None, flax_call
    if variables is None:
        raise InitError("twin_check: a Linen module needs its `variables` (model.init(...) or converted "
                        "with from_torch_state_dict); an NNX module carries its own.")
    if "params" not in variables:
        _arr.flatten_flax(variables, "twin_check")  # names the missing 'params' level
        variables = {"params": {}, **variables}  # a twin without parameters
    return flax_module, variables, flax_call


def tied_keys(tm) -> dict:
    """``{key: first key}`` for state-dict keys whose tensor is another key's (tied weights)."""
    first: dict = {}
    tied = {}
    for k, v in tm.state_dict(keep_vars=True).items():
        ident = (v.data_ptr(), tuple(v.shape), tuple(v.stride()), v.dtype) if v.numel() else None
        if ident is None:
            continue
        if ident in first:
            tied[k] = first[ident]
        else:
            first[ident] = k
    return tied


def _check_leaves(leaves: dict, torch) -> None:
    """Every output leaf is an array: a cache object (a decoder's ``past_key_values`` under
    ``use_cache=True``) or any other object gets a clear error, never torch's raw one."""
    for name, v in leaves.items():
        if isinstance(v, (torch.Tensor, np.ndarray, int, float, bool)):
            continue
        cls = type(v).__name__
        if "Cache" in cls or name.endswith("past_key_values"):
            raise InitError(
                f"twin_check: the torch output {name!r} is a {cls}: the model returns its key/value cache "
                "(use_cache=True, the default of decoder configs). Build it with use_cache=False "
                "(config.use_cache = False, or model.config.use_cache = False), or pass "
                "torch_output_transform= (and output_transform= for Flax) to keep the fields to compare.")
        raise InitError(f"twin_check: the torch output {name!r} is a {cls}, not a tensor; pass "
                        "torch_output_transform= (and output_transform= for Flax) to keep the array fields.")


def _torch_pass(torch_module, xs, train, run: Run):
    import torch

    device = next((p.device for p in torch_module.parameters()), torch.device("cpu"))
    tm = shared.copy_module(torch_module)
    tm.train(train)
    for p in tm.parameters():
        p.grad = None
    amp = run.amp.torch() if run.amp is not None else contextlib.nullcontext()
    with _weight_norm_grads(tm, torch) as normalized, amp, bound_torch(tm, train, run):
        y = tm(*[_arr.numpy_to_tensor(x, torch, device) for x in xs])
        y = run.torch_output_transform(y) if run.torch_output_transform is not None else y
    leaves = dict(shared.tree_leaves(y))
    _check_leaves(leaves, torch)
    rng = np.random.default_rng(run.seed)
    loss = None
    for name, v in leaves.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            cot = _arr.numpy_to_tensor(rng.standard_normal(tuple(v.shape)).astype(_arr.tensor_spec(v).dtype), torch, device)
            term = (v * cot).sum()
            loss = term if loss is None else loss + term
    if loss is not None and loss.requires_grad:
        loss.backward()
    named = dict(tm.named_parameters(remove_duplicate=False))  # tied keys share the parameter and its grad
    no_grad = list(dict.fromkeys(k for k, p in named.items() if p.grad is None))
    grads = {}
    for k, v in tm.state_dict().items():
        if k in named:
            g = named[k].grad
            grads[k] = _arr.to_numpy(g) if g is not None else np.zeros(tuple(v.shape), _arr.tensor_spec(v).dtype)
        else:
            grads[k] = _arr.to_numpy(v)  # buffers: the running statistics after the pass
    for prefix, w in normalized.items():  # the gradient of each weight-normalized layer's weight itself
        if w.grad is not None:
            grads[f"{prefix}.weight" if prefix else "weight"] = _arr.to_numpy(w.grad)
    outs = {k: _arr.to_numpy(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in leaves.items()}
    buffers = tuple(k for k in tm.state_dict() if k not in named)
    return tm, Side(outs, grads, {}, {}, no_grad, True, tied_keys(tm), buffers)


class _weight_norm_grads:
    """During the torch pass, keep the normalized ``weight`` of every weight-normalized layer
    (``torch.nn.utils.parametrizations.weight_norm``: computed once under ``parametrize.cached()``;
    the old ``weight_norm``: recomputed by its pre-hook) with ``retain_grad()``, so the gradient
    of a Flax twin's plain kernel can be compared: ``{module prefix: weight tensor}``."""

    def __init__(self, tm, torch):
        self.tm, self.torch, self.weights, self.handles, self.cache = tm, torch, {}, [], None

    def __enter__(self):
        from torch.nn.utils import parametrize

        for prefix, mod in self.tm.named_modules():
            if parametrize.is_parametrized(mod, "weight"):
                if self.cache is None:
                    self.cache = parametrize.cached()
                    self.cache.__enter__()
                w = mod.weight  # computed now and cached for the forward pass
                if w.requires_grad:
                    w.retain_grad()
                    self.weights[prefix] = w
            elif any(type(h).__name__ == "WeightNorm" for h in mod._forward_pre_hooks.values()):
                def keep(module, args, prefix=prefix):
                    w = getattr(module, "weight", None)
                    if w is not None and w.requires_grad:
                        w.retain_grad()
                        self.weights[prefix] = w
                self.handles.append(mod.register_forward_pre_hook(keep))
        return self.weights

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        if self.cache is not None:
            self.cache.__exit__(*exc)
        return False


def cotangents(outputs: dict, seed: int) -> dict:
    """The torch pass's cotangents (same seed, same order), for the Flax loss."""
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(np.shape(v)).astype(np.asarray(v).dtype)
            for k, v in outputs.items() if _arr.is_float(np.asarray(v).dtype)}


def _flax_pass(model, variables, fxs, train, torch_outputs, run: Run):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    flax_call, transform = run.flax_call, run.output_transform
    xf = [jnp.asarray(x) for x in fxs]
    cot = {k: jnp.asarray(v) for k, v in cotangents(torch_outputs, run.seed).items()}

    def loss_of(y):
        y = transform(y) if transform is not None else y
        leaves = dict(shared.tree_leaves(y))
        shared.pair_leaves(torch_outputs, leaves, "twin_check")
        return sum((jnp.sum(leaves[k] * c) for k, c in cot.items()), jnp.zeros(())), leaves

    if isinstance(model, nnx.Module):
        m = nnx.clone(model)
        m.train() if train else m.eval()

        def loss_nnx(mm):
            with run.amp.flax(mm) if run.amp is not None else contextlib.nullcontext():
                y = shared.call_flax(flax_call, mm, None, xf, train)[0] if flax_call else mm(*xf)
            return loss_of(y)

        (_, leaves), g = nnx.value_and_grad(loss_nnx, has_aux=True)(m)
        grads = {("params", tuple(str(p) for p in path)): v for path, v in _nnx_leaves(g, nnx)}
        state, params = nnx_vars(m, nnx)
        return Side({k: np.asarray(v) for k, v in leaves.items()}, grads, state, params, [], True, {})
    rest = {k: v for k, v in variables.items() if k != "params"}
    seen = flax_call is None or getattr(flax_call, "returns_updates", False) or not train or not rest

    def loss_linen(params):
        with run.amp.flax() if run.amp is not None else contextlib.nullcontext():
            return _linen_loss(params)

    def _linen_loss(params):
        full = {"params": params, **rest}
        rngs = run.rngs if train else None
        if flax_call is not None:
            y, upd = shared.call_flax(flax_call, model, full, xf, train, rngs)
        elif train and "batch_stats" in variables:
            kw = shared.train_kwargs(model, run.train_kwarg, train)
            y, upd = model.apply(full, *xf, mutable=["batch_stats"], rngs=rngs, **kw)
        else:
            kw = shared.train_kwargs(model, run.train_kwarg, train)
            y, upd = model.apply(full, *xf, rngs=rngs, **kw), {}
        loss, leaves = loss_of(y)
        return loss, (leaves, upd)

    vg = jax.value_and_grad(loss_linen, has_aux=True)
    (_, (leaves, upd)), g = (jax.jit(vg) if run.jit else vg)(variables["params"])
    grads = _arr.flatten_flax({"params": g}, "twin_check")
    new_vars = {**variables, **upd}
    state = {k: v for k, v in _arr.flatten_flax(new_vars, "twin_check").items() if k[0] != "params"}
    params = _arr.flatten_flax({"params": variables["params"]}, "twin_check")
    return Side({k: np.asarray(v) for k, v in leaves.items()}, grads, state, params, [], seen, {})


def _torch_grads_in_flax_layout(tm, t: Side, f: Side, run: Run, keep: Keep) -> tuple[dict, list]:
    """torch's gradients (and buffers after the pass) converted to the Flax layout; ignored
    keys left out on both sides, tied keys whose Flax leaf is their partner's dropped."""
    drop_f = set(keep.flax_ignored)
    template = _arr.shape_dtypes({k: v for k, v in {**f.params, **f.state}.items() if _arr.fname(k) not in drop_f})
    arrays = {k: v for k, v in t.grads.items() if k not in set(keep.torch_ignored)}
    groups, containers = _naming.groups_from_module(tm, arrays.keys(), run.kinds)
    if keep.torch_ignored:  # a layer whose every key is ignored is not converted
        groups = [g for g in groups if any(k in arrays for k in g.keys.values())]
    def convert(arrs):
        return torch_to_flax(arrs, groups, template=template, mapping=run.mapping, containers=containers,
                             batchnorm=run.batchnorm, transpose_kernel=run.transpose_kernel, dtype="template",
                             merge_rnn_biases=True, who="twin_check", gradients=True, tied=keep.tied)

    try:
        conv = convert(arrays)
    except ConversionError as err:
        raise ConversionError(f"{err}\nKeys with no partner on the other side (a fixed sinusoid table, a buffer the "
                              "Flax model computes, a leaf filled by hand): pass ignore=[torch key or Flax path, ...]; "
                              "tied weights (one Flax leaf, several torch keys): tied={torch key: partner key}.") from None
    frozen: list = []
    buffers = [k for k in arrays if k in t.buffers and _arr.is_float(np.asarray(arrays[k]).dtype)]
    if buffers:  # a torch buffer that is a Flax parameter (Marian's final_logits_bias): torch never trains it
        marked = convert({k: np.full(np.shape(a), np.nan, np.asarray(a).dtype) if k in buffers else np.zeros_like(a)
                          for k, a in arrays.items()})
        for key, a in marked.items():
            if key[0] == "params" and np.asarray(a).size and np.isnan(np.asarray(a, dtype=np.float64)).all():
                conv[key] = np.zeros_like(conv[key])
                frozen.append(_arr.fname(key))
    return conv, frozen


def _mode_report(t: Side, f: Side, conv: dict, train: bool, keep: Keep, run: Run) -> dict:
    dtype = next((np.asarray(v).dtype for v in t.outputs.values() if _arr.is_float(np.asarray(v).dtype)),
                 np.dtype("float32"))
    amp = run.amp
    rtol = shared.budget_rtol(dtype)
    drop_f = set(keep.flax_ignored)
    outs = shared.verdicts({k: (t.outputs[k], f.outputs[k]) for k in t.outputs}, rtol, amp)
    grads = shared.verdicts({_arr.fname(k): (conv[k], v) for k, v in f.grads.items() if _arr.fname(k) not in drop_f},
                       rtol, amp)
    entry = {"output": max((r["diff"] for r in outs.values()), default=0.0),
             "output_scale": max((r["scale"] for r in outs.values()), default=0.0),
             "outputs": outs, "dtype": np.dtype(dtype).name, "budget_rtol": rtol}
    worst = max(grads, key=lambda k: grads[k]["diff"], default=None)
    entry.update(grad=grads[worst]["diff"] if worst else 0.0, worst_grad=worst,
                 grad_scale=max((r["scale"] for r in grads.values()), default=0.0), grads=grads,
                 no_grad_in_torch=t.no_grad,
                 ignored={"torch": list(keep.torch_ignored), "flax": list(keep.flax_ignored)},
                 tied=dict(keep.tied))
    ok = all(r["ok"] for r in outs.values()) and all(r["ok"] for r in grads.values())
    if amp is not None:
        entry["autocast"] = amp.describe()
        entry["budget_rtol"] = amp.rtol
        entry["share"] = {"outputs": shared.amp_share(outs), "grads": shared.amp_share(grads)}
        ok = ok and all(v <= amp.share[k] for k, v in entry["share"].items())
    state = {k: v for k, v in f.state.items() if k in conv and _arr.fname(k) not in drop_f}
    if train and state and not f.state_seen:
        entry["batch_stats"] = None
        entry["batch_stats_note"] = ("running statistics not compared: the flax_call hook returns the output only, "
                                     "so Flax's updated statistics are not seen (torch's are); compare them with "
                                     "compare_layers(mode='train') or a Linen apply with mutable=['batch_stats']")
    elif train and state:
        stats = shared.verdicts({_arr.fname(k): (conv[k], v) for k, v in state.items()}, rtol, amp)
        entry["batch_stats"] = max((r["diff"] for r in stats.values()), default=0.0)
        entry["batch_stats_detail"] = stats
        ok = ok and all(r["ok"] for r in stats.values())
        if amp is not None:
            entry["share"]["batch_stats"] = shared.amp_share(stats)
            ok = ok and entry["share"]["batch_stats"] <= amp.share["batch_stats"]
    entry["ok"] = ok
    return entry


def _nnx_leaves(state, nnx):
    for path, v in nnx.to_flat_state(state):
        yield path, (v.get_value() if hasattr(v, "get_value") else v)


def nnx_vars(model, nnx):
    stats, params = {}, {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.BatchStat):
            stats[("batch_stats", tuple(str(p) for p in path))] = node.get_value()
        elif isinstance(node, nnx.Param):
            params[("params", tuple(str(p) for p in path))] = node.get_value()
    return stats, params
