"""``audit``: every known semantic difference between paired torch and Flax layers, with
the fix. Conversion checks names and shapes, not meaning; the audit reads the layers'
settings (padding, eps, BatchNorm conventions, padding_idx, dropout rates, biases,
initializers) and the order in which the paired layers run. Needs jax, flax and torch,
imported inside the functions.
"""
from __future__ import annotations

from typing import Any

from _jaxinit import arrays as _arr
from _jaxinit import naming as _naming
from _jaxinit.jax_and_torch import _common as shared
from _jaxinit.jax_and_torch.audit_layers import LAYER_CHECKS, Finding, fast_variance
from _jaxinit.jax_and_torch.audit_model import activation_notes, dropout_findings, order_findings, pooling_findings
from _jaxinit.jax_and_torch.audit_trace import (FLAX_INPUT, TORCH_INPUT, flax_call_order, flax_modules,
                                                template_call_order, torch_modules)
from _jaxinit.jax_and_torch.layer_pairing import pair_layers
from _jaxinit.jax_and_torch.twin import normalize_call

__all__ = ["AuditReport", "Finding", "audit", "flax_call_order", "template_call_order"]


class AuditReport:
    """``findings`` (list of :class:`Finding`), ``notes`` (what the audit cannot check and
    where to look), ``pairs`` ({torch path: flax path}); ``str(report)`` lists them."""

    def __init__(self, findings, notes, pairs):
        self.findings, self.notes, self.pairs = findings, notes, pairs

    def categories(self) -> set:
        return {f.category for f in self.findings}

    def __len__(self):
        return len(self.findings)

    def __iter__(self):
        return iter(self.findings)

    def __str__(self):
        lines = [f"audit: {len(self.findings)} finding(s) over {len(self.pairs)} paired layers"]
        for f in self.findings:
            lines.append(f"- [{f.category}] torch {f.torch or '(model)'!r} <-> Flax {f.flax or '(model)'!r}: "
                         f"{f.problem}\n    fix: {f.fix}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def audit(torch_module: Any, flax_module: Any, inputs: Any = None, *, variables: Any = None,
          flax_inputs: Any = None, train_kwarg: str | None = "train", flax_call: Any = None,
          mapping=None, kinds=None) -> AuditReport:
    r"""List every known semantic difference between the paired layers of a torch module and
    its Flax twin, each with the fix.

    Layers are paired by the converter's naming rule (``mapping=``, ``kinds=``
    respected). A Linen model's submodules exist only while it runs, so Linen
    (and Hugging Face Flax) models need ``inputs`` (torch layout; ``flax_inputs``
    in Flax's, default the same): both models are traced once (Flax under
    ``jax.eval_shape``, no computation; torch under ``no_grad``), which also
    gives each convolution's input size and the order the layers run in.

    Checked: conv padding (``'SAME'`` vs explicit, asymmetric for even strides),
    strides / dilation / groups, bias presence, pooling (``ceil_mode``,
    ``count_include_pad``, padding: pooling is a function in Flax, so the
    audit states the Flax call that matches), LayerNorm / GroupNorm eps and
    groups, BatchNorm conventions (momentum direction, biased running variance,
    eps, float32 statistics under x64), Embedding ``padding_idx`` (torch gives
    the pad row no gradient; Flax's Embed does), Dropout rates, default
    initializers (matter when both models start fresh), and the execution
    order of paired layers (a ``mapping=`` that swaps two same-shape layers).
    Activation functions are not modules in Flax: they are listed as a note;
    :func:`compare_layers` checks them.

    Returns:
      an :class:`AuditReport` (``.findings``, ``.notes``; ``print`` it).

    >>> print(jaxinit.audit(torch_bert, flax_bert, input_ids))  # doctest: +SKIP
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    flax_module, variables, flax_call = normalize_call(flax_module, variables, flax_call, ("eval",)) \
        if (variables is not None or shared.is_hf_flax(flax_module) or isinstance(flax_module, nnx.Module)) \
        else (flax_module, None, flax_call)
    xs = None if inputs is None else [_arr.to_numpy(x) for x in shared.as_tuple(inputs)]
    fxs = xs if flax_inputs is None else [_arr.to_numpy(x) for x in shared.as_tuple(flax_inputs)]
    TORCH_INPUT.clear()
    FLAX_INPUT.clear()
    try:
        return _audit(torch_module, flax_module, xs, fxs, variables, train_kwarg, flax_call, mapping, kinds,
                      jax, jnp, nnx)
    finally:
        TORCH_INPUT.clear()
        FLAX_INPUT.clear()


def _audit(torch_module, flax_module, xs, fxs, variables, train_kwarg, flax_call, mapping, kinds, jax, jnp, nnx):
    tmods, torder, tin = torch_modules(torch_module, xs)
    fmods, forder, fin, fvars = flax_modules(flax_module, variables, fxs, train_kwarg, flax_call, jax, jnp, nnx)
    state_keys = torch_module.state_dict().keys()
    groups, containers = _naming.groups_from_module(torch_module, state_keys, kinds)
    pairs = pair_layers(torch_module, groups, containers, fvars, mapping, list(fmods))
    findings: list[Finding] = []
    fast_notes: list[str] = []
    for tpath, fpath in pairs.items():
        tm, fm = tmods.get(tpath), fmods.get(tuple(p for p in fpath.split("/") if p))
        if tm is None or fm is None:
            continue
        for check in LAYER_CHECKS:
            findings.extend(check(tpath, fpath, tm, fm, tin.get(tpath), fvars))
        fast = fast_variance(tpath, fpath, tm, fm, fin.get(tuple(p for p in fpath.split("/") if p)))
        if isinstance(fast, Finding):
            findings.append(fast)
        elif fast:
            fast_notes.append(fast)
    inits = [f for f in findings if f.category == "initializers"]
    if inits:  # one finding for the model, not one per layer
        findings = [f for f in findings if f.category != "initializers"]
        findings.append(inits[0]._replace(torch=f"{inits[0].torch} and {len(inits) - 1} more" if len(inits) > 1
                                          else inits[0].torch, flax=", ".join(f.flax for f in inits[:3])
                                          + (" ..." if len(inits) > 3 else "")))
    findings.extend(order_findings(pairs, groups, torder, forder, fvars))
    findings.extend(dropout_findings(torch_module, tmods, torder, fmods, forder, findings))
    notes = activation_notes(tmods, pairs, findings)
    if fast_notes:
        notes.append(f"Flax LayerNorm(use_fast_variance=True) at {', '.join(fast_notes[:4])}"
                     f"{' ...' if len(fast_notes) > 4 else ''}: var = E[x^2] - E[x]^2 where torch computes "
                     "E[(x - mean)^2]; harmless in float64 (these layers see float64), a difference in float32 "
                     "(use_fast_variance=False)")
    pool_findings, pool_notes = pooling_findings(tmods, pairs)
    findings.extend(pool_findings)
    notes.extend(pool_notes)
    return AuditReport(findings, notes, pairs)
