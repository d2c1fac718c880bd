"""``compare_layers``: run a torch module and its Flax twin on the same inputs, capture
every submodule's output in both, pair them with the converter's naming rule, and name the
FIRST layer (in torch's execution order) whose difference exceeds the rounding budget.

Capture: torch forward hooks; Linen ``nn.intercept_methods`` (the mechanism behind
``capture_intermediates``, which also gives the call order); NNX by wrapping the
``__call__`` of the model's module classes for the duration of the pass. Needs jax,
flax and torch, imported inside the functions.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from _jaxinit import arrays as _arr
from _jaxinit import naming as _naming
from _jaxinit.convert import torch_to_flax
from _jaxinit.errors import InitError
from _jaxinit.jax_and_torch import _common as shared
from _jaxinit.jax_and_torch.layer_pairing import pair_layers
from _jaxinit.jax_and_torch.twin import (
    MODES,
    Run,
    cotangents,
    normalize_call,
    bound_torch,
    explain_missing_rngs,
    train_rng_calls,
)


class LayerReport:
    """The result of :func:`compare_layers`.

    ``rows``: one dict per paired layer, in torch's execution order (a module's output is
    complete after its children's): ``torch``, ``flax`` (paths), ``shape``, ``diff`` (max
    abs), ``scale`` (max ``|torch|``), ``rel``, ``budget``, ``ok`` (``None``: not
    comparable, see ``note``), and with ``gradients=True`` ``grad_diff``, ``grad_scale``,
    ``grad_ok``; in train mode ``state_diff`` for layers with running statistics.
    ``first_divergence``: the first row that is not ok (None: none). ``unpaired_torch`` /
    ``unpaired_flax``: modules without a counterpart (activation functions are not modules
    in Flax; compare the module that applies them). ``str(report)`` is a text table,
    ``report.as_dict()`` plain data, ``report.plot()`` the differences on a log scale.
    """

    def __init__(self, rows, unpaired_torch, unpaired_flax, dtype, rtol, mode):
        self.ignored: dict = {"torch": [], "flax": []}
        self.autocast: dict | None = None  # under autocast: its setting and budget (share, ulps)
        self.tied: dict = {}
        self.rows = rows
        self.unpaired_torch = unpaired_torch
        self.unpaired_flax = unpaired_flax
        self.dtype, self.rtol, self.mode = dtype, rtol, mode
        self.first_divergence = next((r for r in rows if r["ok"] is False), None)
        # gradients flow backwards: a layer's output gradient depends on every LATER layer, so the
        # first gradient divergence in backward order is the last one in execution order
        self.first_grad_divergence = next((r for r in reversed(rows) if r.get("grad_ok") is False), None)

    def as_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows], "first_divergence": self.first_divergence,
                "first_grad_divergence": self.first_grad_divergence,
                "unpaired_torch": list(self.unpaired_torch), "unpaired_flax": list(self.unpaired_flax),
                "dtype": self.dtype, "budget_rtol": self.rtol, "mode": self.mode, "autocast": self.autocast}

    def __str__(self) -> str:
        head: tuple[str, ...] = ("#", "torch", "flax", "shape", "max|diff|", "max|torch|", "rel", "budget", "")
        lines: list[tuple[str, ...]] = []
        for i, r in enumerate(self.rows):
            flag = {True: "", False: "<-- DIVERGES" if r is self.first_divergence else "x", None: "n/a"}[r["ok"]]
            cells: tuple[str, ...] = (str(i), r["torch"] or "(model)", r["flax"] or "(model)", "x".join(map(str, r["shape"])),
                     f"{r['diff']:.2e}", f"{r['scale']:.2e}", f"{r['rel']:.1e}", f"{r['budget']:.1e}", flag)
            if "grad_diff" in r:
                cells = cells[:-1] + (f"grad {r['grad_diff']:.1e}{'' if r['grad_ok'] is not False else ' x'}",
                                      cells[-1])
            lines.append(cells)
        if lines and len(lines[0]) > len(head):
            head = head[:-1] + ("grad", "")
        widths = [max(len(str(c)) for c in col) for col in zip(head, *lines)]
        fmt = "  ".join(f"{{:{w}}}" for w in widths)
        ac = self.autocast
        budget = (f"under {ac['device_type']} autocast, budget {ac['ulps_budget']:g} ulps at max|torch| and "
                  f"{ac['share_budget']['outputs']:.0%} of elements off by an ulp, per layer" if ac else
                  f"budget {self.rtol:g} x max|torch| per layer")
        out = [f"compare_layers ({self.mode}, {self.dtype}, {budget})",
               fmt.format(*head)] + [fmt.format(*c) for c in lines]
        fd = self.first_divergence
        out.append("first divergence: " + (f"torch {fd['torch']!r} <-> Flax {fd['flax']!r} "
                                           f"(max|diff| {fd['diff']:.3g}, {fd['rel']:.2g} of max|torch|)"
                                           if fd else "none (every paired layer within budget)"))
        fg = self.first_grad_divergence
        if any("grad_ok" in r for r in self.rows):
            out.append("first gradient divergence (backward order): " + (
                f"torch {fg['torch']!r} (max|diff| {fg['grad_diff']:.3g} of {fg['grad_scale']:.3g})" if fg else "none"))
        if self.unpaired_torch:
            out.append(f"torch modules without a Flax module ({len(self.unpaired_torch)}): "
                       + ", ".join(self.unpaired_torch[:12]) + (" ..." if len(self.unpaired_torch) > 12 else ""))
        if fd is not None and fd.get("hint"):
            out.append(f"  {fd['hint']}")
        notes = [f"{r['torch']}: {r['note']}" for r in self.rows if r.get("note")]
        out.extend(notes)
        return "\n".join(out)

    def plot(self, ax=None, path: str | os.PathLike | None = None):
        """Difference relative to max|torch| per layer (log scale), the budget as a line;
        saved to ``path`` when given. Needs matplotlib; returns the axes."""
        try:
            import matplotlib
            if ax is None and path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise InitError("LayerReport.plot needs matplotlib: pip install matplotlib") from err
        if ax is None:
            _, ax = plt.subplots(figsize=(max(6, 0.25 * len(self.rows)), 3.5))
        rel = [max(r["rel"], 1e-300) for r in self.rows]
        ax.semilogy(range(len(rel)), rel, marker="o", lw=1, label="max|diff| / max|torch|")
        ax.axhline(self.rtol, color="r", ls="--", label=f"budget ({self.dtype})")
        if self.first_divergence is not None:
            i = self.rows.index(self.first_divergence)
            ax.axvline(i, color="k", ls=":", label=f"first divergence: {self.first_divergence['torch']}")
        ax.set_xticks(range(len(rel)))
        ax.set_xticklabels([r["torch"] or "(model)" for r in self.rows], rotation=90, fontsize=6)
        ax.set_ylabel("relative difference")
        ax.legend(fontsize=7)
        if path is not None:
            ax.figure.tight_layout()
            ax.figure.savefig(os.fspath(path))
        return ax


def compare_layers(torch_module: Any, flax_module: Any, inputs: Any, *, variables: Any = None,
                   flax_inputs: Any = None, mode: str = "eval", train_kwarg: str | None = "train",
                   flax_call: Any = None, mapping=None, kinds=None, layout: Any = "auto",
                   gradients: bool = False, seed: int = 0, ignore: Any = (), tied: Any = None,
                   autocast: Any = None, rngs: Any = None) -> LayerReport:
    r"""Compare every layer's output of a torch module and its Flax twin; name the first divergence.

    Both models run once on the same inputs (as in :func:`twin_check`: Linen
    ``apply`` with ``train_kwarg``, NNX after ``.train()``/``.eval()``, or the
    ``flax_call`` hook; Hugging Face Flax models get theirs by default). Every
    submodule's output is captured; a torch module is paired with the Flax
    module the converter's naming rule gives its prefix (``mapping=`` and
    ``kinds=`` respected; a torch container is paired with the deepest Flax
    module holding all its layers). Layers are reported in torch's execution
    order with max abs and relative difference and the rounding budget
    (``rtol * max|torch|`` of that layer, ``rtol`` per dtype as in
    :func:`twin_check`); the FIRST layer over budget is
    ``report.first_divergence``.

    Args:
      mode: 'eval' or 'train' (train also compares each layer's running
        statistics after the pass; with dropout on, pass ``rngs=``).
      rngs: ``{'dropout': key}`` in train mode, as in :func:`twin_check`: Flax's
        apply gets it, the torch model is bound to the same masks.
      layout: 'auto' (channels-first torch vs channels-last Flax for outputs
        with >= 3 dims when the torch model has convolutions), 'same', or a
        function ``(torch_path, flax_array) -> array in torch's layout``.
      gradients: also compare the gradient of the loss ``sum(output * c)``
        with respect to each layer's output.
      ignore, tied: torch keys (or Flax paths, or regular expressions) without a
        partner, and tied keys, as in :func:`twin_check` (train mode converts the
        running statistics); listed in ``report.ignored`` / ``report.tied``.
      autocast: compare in mixed precision, as in :func:`twin_check` (torch under
        ``torch.autocast``, Flax under the ``jaxinit.amp.Autocast`` policy); each layer
        is judged in ulps of the low dtype and by the share of its elements off by an
        ulp (``report.autocast`` holds the setting and budget; rows gain ``ulps`` and
        ``share``, with ``gradients=True`` ``grad_ulps`` and ``grad_share``).

    >>> report = jaxinit.compare_layers(torch_resnet, flax_resnet, x, variables=variables, flax_inputs=x_nhwc)  # doctest: +SKIP
    >>> print(report); report.first_divergence  # doctest: +SKIP
    """
    if mode not in MODES:
        raise InitError(f"compare_layers: `mode` must be one of {MODES}, got {mode!r}.")
    if not (layout in ("auto", "same") or callable(layout)):
        raise InitError(f"compare_layers: `layout` must be 'auto', 'same' or a function (torch_path, flax_array) "
                        f"-> array, got {layout!r}.")
    user_call = flax_call is not None
    flax_module, variables, flax_call = normalize_call(flax_module, variables, flax_call, (mode,))
    amp = shared.resolve_autocast(autocast, torch_module, "compare_layers")
    train = mode == "train"
    xs = [_arr.to_numpy(x) for x in shared.as_tuple(inputs)]
    fxs = xs if flax_inputs is None else [_arr.to_numpy(x) for x in shared.as_tuple(flax_inputs)]
    run = Run(train_kwarg=train_kwarg, rngs=shared.check_rngs(rngs, "compare_layers"))
    if run.rngs is not None and train:
        run = run._replace(rng_calls=train_rng_calls(flax_module, variables, fxs, run, user_call, "compare_layers"))
    with shared.exact_precision():
        tm, tcalls, tout, tstate = _torch_capture(torch_module, xs, train, seed, gradients, amp, run)
        groups, containers = _naming.groups_from_module(tm, tstate.keys(), kinds)
        channels_last = layout == "auto" and any(g.kind in ("conv", "conv_transpose") for g in groups)
        with explain_missing_rngs("compare_layers", run):
            fcalls, fvars = _flax_capture(flax_module, variables, fxs, train, tout, seed, gradients, train_kwarg,
                                          flax_call, channels_last, layout, amp, run.rngs if train else None)
    alternates: dict = {}
    pairs = pair_layers(tm, groups, containers, fvars, mapping, [p for p, _, _ in fcalls], alternates)
    fby: dict[str, tuple] = {}
    for path, outs, grads in fcalls:
        if outs or "/".join(path) not in fby:
            fby["/".join(path)] = (outs, grads)
    for tpath, alt in alternates.items():  # a cell run inside nn.RNN's scan: compare the RNN module
        if pairs.get(tpath) in fby and not fby[pairs[tpath]][0] and alt in fby:
            pairs[tpath] = alt
    dtype = next((np.asarray(v).dtype for _, o, _ in tcalls for v in o.values() if _arr.is_float(np.asarray(v).dtype)),
                 np.dtype("float32"))
    rtol = shared.budget_rtol(dtype)
    rows, seen = [], set()
    for tpath, touts, tgrads in tcalls:
        fpath = pairs.get(tpath)
        if fpath is None or fpath not in fby or tpath in seen:
            continue
        seen.add(tpath)
        fouts, fgrads = fby[fpath]
        row = _row(tpath, fpath, touts, fouts, rtol, layout, channels_last, amp, "outputs")
        if gradients:
            g = _row(tpath, fpath, tgrads, fgrads, rtol, layout, channels_last, amp, "grads")
            row.update(grad_diff=g["diff"], grad_scale=g["scale"], grad_ok=g["ok"])
            if amp is not None:
                row.update(grad_share=g.get("share", 0.0), grad_ulps=g.get("ulps", 0.0))
        rows.append(row)
    keep = _ignored(ignore, tied, tstate, fvars, tm)
    if train:
        _state_rows(rows, {k: v for k, v in tstate.items() if k not in keep.torch_ignored},
                    [g for g in groups if any(k not in keep.torch_ignored for k in g.keys.values())] if
                    keep.torch_ignored else groups, containers,
                    {k: v for k, v in fvars.items() if _arr.fname(k) not in keep.flax_ignored}, mapping, rtol,
                    keep.tied, amp)
    unpaired_t = [p for p, _, _ in tcalls if p not in seen and p != ""]
    _hint_first_divergence(rows, tcalls, seen, dict(tm.named_modules()))
    paired_f = {r["flax"] for r in rows}
    unpaired_f = ["/".join(p) for p in dict.fromkeys(p for p, _, _ in fcalls) if "/".join(p) not in paired_f]
    report = LayerReport(rows, list(dict.fromkeys(unpaired_t)), unpaired_f, np.dtype(dtype).name,
                         amp.rtol if amp is not None else rtol, mode)
    report.autocast = amp.describe() if amp is not None else None
    report.ignored = {"torch": list(keep.torch_ignored), "flax": list(keep.flax_ignored)}
    report.tied = dict(keep.tied)
    return report


def _ignored(ignore, tied, tstate, fvars, tm):
    """twin_check's ``ignore=`` / ``tied=`` resolution, on compare_layers' two sides."""
    from _jaxinit.jax_and_torch.twin import Run, Keep, Side, tied_keys

    t = Side({}, dict(tstate), {}, {}, [], True, tied_keys(tm), ())
    f = Side({}, {}, {k: v for k, v in fvars.items() if k[0] != "params"},
              {k: v for k, v in fvars.items() if k[0] == "params"}, [], True, {}, ())
    return Keep.of(t, f, Run(ignore=ignore, tied=tied))


def _hint_first_divergence(rows, tcalls, seen, modules) -> None:
    """Name the torch modules without a Flax module (activations, pooling) that ran inside the
    first divergent layer or just before it: the cause is often there."""
    first = next((r for r in rows if r["ok"] is False), None)
    if first is None:
        return
    order = [p for p, _, _ in tcalls]
    end = order.index(first["torch"])
    prev = max((order.index(r["torch"]) for r in rows[:rows.index(first)]), default=-1)
    between = [p for p in dict.fromkeys(order[prev + 1:end]) if p not in seen]
    if between:
        desc = [f"{p} ({modules[p]!r})" if p in modules else p for p in between[:4]]
        first["hint"] = ("ran without a Flax module just before or inside it: " + ", ".join(desc)
                         + " (activations and pooling are functions in Flax: check the function applied there)")


# --------------------------------------------------------------------------- capture
def _torch_capture(torch_module, xs, train, seed, gradients, amp=None, run=None):
    """[(torch path, {leaf: array}, {leaf: d loss / d output})] in completion order, the
    model output and the state dict after the pass. Outputs are copied in the hook (later
    in-place ops such as ``out += identity`` would change them); with ``gradients`` a
    single-tensor output gets a zero perturbation whose gradient is that of the output."""
    import torch

    device = next((p.device for p in torch_module.parameters()), torch.device("cpu"))
    tm = shared.copy_module(torch_module)
    tm.train(train)
    calls: list[tuple[str, dict, int | None]] = []
    perts: list[Any] = []
    handles = []

    def hook_for(name):
        def hook(module, args, out):
            leaves = {k: _arr.to_numpy(v).copy() for k, v in shared.tree_leaves(out) if _arr.is_torch_tensor(v)}
            if gradients and isinstance(out, torch.Tensor) and out.is_floating_point() and torch.is_grad_enabled():
                calls.append((name, leaves, len(perts)))
                perts.append(torch.zeros_like(out, requires_grad=True))
                return out + perts[-1]
            calls.append((name, leaves, None))
            return None
        return hook

    for name, mod in tm.named_modules():
        handles.append(mod.register_forward_hook(hook_for(name)))
    try:
        with amp.torch() if amp is not None else contextlib.nullcontext(), \
                bound_torch(tm, train, run) if run is not None else contextlib.nullcontext():
            y = tm(*[_arr.numpy_to_tensor(x, torch, device) for x in xs])
    finally:
        for h in handles:
            h.remove()
    out = {k: _arr.to_numpy(v).copy() for k, v in shared.tree_leaves(y)}
    grads: Sequence[Any] = []
    if gradients and perts:
        rng = np.random.default_rng(seed)
        loss = sum((v * _arr.numpy_to_tensor(rng.standard_normal(tuple(v.shape)).astype(_arr.tensor_spec(v).dtype),
                                             torch, device)).sum()
                   for _, v in shared.tree_leaves(y) if isinstance(v, torch.Tensor) and v.is_floating_point())
        grads = torch.autograd.grad(loss, perts, allow_unused=True)
    rows = []
    for name, leaves, i in calls:
        g = grads[i] if i is not None and grads else None
        rows.append((name, leaves, {"output": _arr.to_numpy(g)} if g is not None else {}))
    state = {k: _arr.to_numpy(v).copy() for k, v in tm.state_dict().items()}
    return tm, rows, out, state


def _loss_term(key, c, out, channels_last, layout):
    """``sum(output * c)`` with ``c`` drawn in torch's layout: a ``layout`` function brings the
    Flax output to torch's layout first (it is applied to traced arrays, so it must use
    ``jnp`` or array methods such as ``y.transpose(0, 3, 1, 2)``)."""
    import jax.numpy as jnp

    if callable(layout):
        y = layout("", out)
        if tuple(y.shape) != tuple(c.shape):
            raise InitError(f"compare_layers: layout('', flax_output) gives shape {tuple(y.shape)} for the model "
                            f"output {key or '(output)'!r}, torch's is {tuple(c.shape)}: the layout function must bring "
                            "every Flax output into torch's layout.")
        return jnp.sum(y * c)
    return jnp.sum(out * _cot_in_flax_layout(key, c, out, channels_last))


def _cot_in_flax_layout(key, c, out, channels_last):
    """The model output's cotangent (drawn in torch's layout) in the Flax output's layout: with
    ``channels_last`` (layout='auto', a convolutional model) a torch output (N, C, ...) of >= 3
    dims is (N, ..., C) in Flax, as ``_row`` assumes, so the loss ``sum(output * c)`` is the same
    function on both sides (also when the two layouts have equal shapes, e.g. 2x4x4x4)."""
    import jax.numpy as jnp

    if channels_last and c.ndim >= 3 and jnp.moveaxis(c, 1, -1).shape == out.shape:
        return jnp.moveaxis(c, 1, -1)
    if c.shape == out.shape:
        return c
    raise InitError(f"compare_layers: the model output {key or '(output)'!r} has shape {tuple(out.shape)} in Flax and "
                    f"{tuple(c.shape)} in torch (neither equal nor channels-last vs channels-first"
                    + (", and layout='auto' assumes channels-last only for a model with convolutions" if
                       c.ndim >= 3 and jnp.moveaxis(c, 1, -1).shape == out.shape else "")
                    + "): pass layout=lambda torch_path, y: <y in torch's layout> (e.g. "
                    "jnp.moveaxis(y, -1, 1) if y.ndim >= 3 else y), applied to every layer and the output.")


def _flax_capture(model, variables, fxs, train, torch_out, seed, gradients, train_kwarg, flax_call,
                  channels_last=False, layout="auto", amp=None, rngs=None):
    """[(flax path str tuple, {leaf: array}, {leaf: d loss / d output})] in call order, and
    the Flax variables after the pass ({(collection, path): array})."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    xf = [jnp.asarray(x) for x in fxs]
    cot = {k: jnp.asarray(v) for k, v in cotangents(torch_out, seed).items()}
    is_nnx = isinstance(model, nnx.Module)
    if is_nnx:
        model = nnx.clone(model)
        model.train() if train else model.eval()

    def run(perts):
        calls: list[tuple[tuple, Any]] = []

        def record(path, out):
            if perts is None:  # the plain pass: a call inside a transform (the cell of nn.RNN runs in a
                # scan) gives tracers, not values: it is recorded without an output
                traced = any(isinstance(v, jax.core.Tracer) for _, v in shared.tree_leaves(out))
                calls.append((path, None if traced else out))
                return out
            if isinstance(out, jax.Array) and len(calls) < len(perts) and perts[len(calls)] is not None:
                out = out + perts[len(calls)]
            calls.append((path, out))
            return out

        if is_nnx:
            with _nnx_intercept(model, record), amp.flax(model) if amp is not None else contextlib.nullcontext():
                y = shared.call_flax(flax_call, model, None, xf, train)[0] if flax_call else model(*xf)
            upd: dict = {}
        else:
            import flax.linen as nn

            def icpt(next_fun, args, kwargs, ctx):
                if ctx.method_name != "__call__" or _amp_clone_call():
                    return next_fun(*args, **kwargs)  # a clone the autocast policy applies: the layer's own call records
                return record(tuple(str(p) for p in ctx.module.path), next_fun(*args, **kwargs))

            full = variables
            # the capture first: Flax runs the interceptor entered first outermost, so it records the
            # layer's output as the autocast policy (entered second) computes it
            with nn.intercept_methods(icpt), amp.flax() if amp is not None else contextlib.nullcontext():
                kw = shared.train_kwargs(model, train_kwarg, train)
                if flax_call is not None:
                    y, upd = shared.call_flax(flax_call, model, full, xf, train, rngs)
                elif train and "batch_stats" in full:
                    y, upd = model.apply(full, *xf, mutable=["batch_stats"], rngs=rngs, **kw)
                else:
                    y, upd = model.apply(full, *xf, rngs=rngs, **kw), {}
        leaves = dict(shared.tree_leaves(y))
        loss = sum((_loss_term(k, c, leaves[k], channels_last, layout) for k, c in cot.items() if k in leaves),
                   jnp.zeros(()))
        return loss, (calls, upd)

    _, (calls, upd) = run(None)
    grads: Any = [None] * len(calls)
    if gradients:
        zeros = [jnp.zeros_like(o) if isinstance(o, jax.Array) and jnp.issubdtype(o.dtype, jnp.floating) else None
                 for _, o in calls]
        if is_nnx:
            model = nnx.clone(model)  # the first pass may have updated running statistics
            model.train() if train else model.eval()
        grads = jax.grad(lambda p: run(p)[0])(zeros)
    out = []
    for (path, o), g in zip(calls, grads):
        outs = {} if o is None else {k: np.asarray(v) for k, v in shared.tree_leaves(o) if hasattr(v, "shape")}
        gd: dict[str, np.ndarray] = {"output": np.asarray(g)} if g is not None and isinstance(o, jax.Array) else {}
        out.append((path, outs, gd))
    if is_nnx:
        from _jaxinit.jax_and_torch.twin import nnx_vars

        stats, params = nnx_vars(model, nnx)
        fvars = {**params, **stats}
    else:
        fvars = _arr.flatten_flax({**variables, **upd}, "compare_layers")
    return out, fvars


def _amp_clone_call() -> bool:
    """True while :class:`jaxinit.amp.Autocast` applies its clone of a layer (the clone's own call is
    not a layer of the model)."""
    from jaxinit._src import amp as _amp

    return bool(getattr(_amp.STATE, "skip_next", False))


class _nnx_intercept:
    """Wrap ``__call__`` of every NNX module class in ``model`` so each call records
    ``(path, output)``; restored on exit."""

    def __init__(self, model, record):
        from flax import nnx

        self.paths = {id(node): tuple(str(p) for p in path) for path, node in nnx.iter_graph(model)
                      if isinstance(node, nnx.Module)}
        self.types = {type(n) for _, n in nnx.iter_graph(model) if isinstance(n, nnx.Module)}
        self.record = record
        self.saved = {}

    def __enter__(self):
        originals = {t: t.__call__ for t in self.types}
        for t, orig in originals.items():
            self.saved[t] = t.__dict__.get("__call__")
            setattr(t, "__call__", self._wrap(t, orig))  # the class attribute, restored in __exit__
        return self

    def _wrap(self, t, orig):
        paths, record = self.paths, self.record

        def __call__(obj, *args, **kwargs):
            out = orig(obj, *args, **kwargs)
            # an instance whose class Autocast.nnx swapped (jaxinit._src.amp_nnx) is its base class's
            if getattr(type(obj), "_autocast_base", type(obj)) is t and id(obj) in paths:
                out = record(paths[id(obj)], out)
            return out

        return __call__

    def __exit__(self, *exc):
        for t, orig in self.saved.items():
            if orig is None:
                del t.__call__
            else:
                setattr(t, "__call__", orig)
        return False


def _row(tpath, fpath, touts: dict, fouts: dict, rtol, layout, channels_last, amp=None, what="outputs") -> dict:
    row = {"torch": tpath, "flax": fpath, "shape": (), "diff": 0.0, "scale": 0.0, "rel": 0.0,
           "budget": 0.0, "ok": None}
    common = [k for k in touts if k in fouts]
    if not common and list(fouts) == ["output"] and "0" in touts:
        # torch's recurrent layers return (sequence, state), Flax's nn.RNN the sequence
        touts, fouts, common = {"0": touts["0"]}, {"0": fouts["output"]}, ["0"]
    if not common:
        if touts or fouts:
            row["note"] = (f"outputs not comparable: torch fields {sorted(touts)} vs Flax {sorted(fouts)}")
        return row
    diffs, scales, pairs = [], [], {}
    for k in common:
        t, f = np.asarray(touts[k]), np.asarray(fouts[k])
        if callable(layout):
            f = np.asarray(layout(tpath, f))
        elif channels_last and f.ndim >= 3:
            f = np.moveaxis(f, -1, 1)  # Flax NHWC -> torch NCHW
        if t.shape != f.shape:
            row["note"] = f"output {k!r}: shape {t.shape} (torch) vs {f.shape} (Flax): not comparable"
            return row
        if not (_arr.is_float(t.dtype) or np.issubdtype(t.dtype, np.integer)):
            continue
        diffs.append(shared.diff(t, f))
        scales.append(shared.scale(t))
        pairs[k] = (t, f)
        row["shape"] = row["shape"] or tuple(t.shape)
    if not diffs:
        return row
    d, s = max(diffs), max(scales)
    row.update(diff=d, scale=s, rel=d / s if s else (0.0 if d == 0 else float("inf")), budget=rtol * s,
               ok=bool(d <= rtol * s))
    if amp is not None:  # the layer's outputs as one category, judged as twin_check judges one
        v = shared.verdicts(pairs, rtol, amp)
        share = shared.amp_share(v)
        row.update(budget=max(r["budget"] for r in v.values()), ulps=max(r["ulps"] for r in v.values()),
                   share=share, ok=bool(all(r["ok"] for r in v.values()) and share <= amp.share[what]))
    return row


def _state_rows(rows, tstate, groups, containers, fvars, mapping, rtol, tied=None, amp=None) -> None:
    """Train mode: each layer's running statistics after the pass, torch converted to the
    Flax layout by the converter, compared per layer (a divergence there marks the row)."""
    template = _arr.shape_dtypes(fvars)
    conv = torch_to_flax(tstate, groups, template=template, mapping=mapping, containers=containers,
                         batchnorm="flax" if not any(k[1][-1] == "num_batches_tracked" for k in fvars) else "torch",
                         dtype="template", merge_rnn_biases=True, who="compare_layers", tied=tied)
    by_row = {r["flax"]: r for r in rows}
    for key, v in fvars.items():
        coll, path = key
        if coll == "params" or key not in conv or not _arr.is_float(np.asarray(v).dtype):
            continue
        row = by_row.get("/".join(path[:-1]))
        if row is None:
            continue
        d, s = shared.diff(conv[key], v), shared.scale(conv[key])
        row["state_diff"] = max(row.get("state_diff", 0.0), d)
        if amp is not None:
            r = shared.verdicts({"s": (conv[key], v)}, rtol, amp)["s"]
            bad = not r["ok"] or r["share"] > amp.share["batch_stats"]
        else:
            bad = d > rtol * max(s, 1e-300)
        if bad:
            row["ok"] = False
            row["note"] = f"running statistic {path[-1]!r} after the pass differs by {d:.3g} (scale {s:.3g})"
