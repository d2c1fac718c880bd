"""The torch mirror of :func:`jaxinit.optim.lbfgs`: ``torch.optim.LBFGS`` itself, and its state as NumPy."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from _jaxinit import optim_checks as checks


def lbfgs(params: Iterable, lr: Any = 1, max_iter: int = 20, max_eval: int | None = None,
          tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
          line_search_fn: str | None = None) -> torch.optim.Optimizer:
    """``torch.optim.LBFGS(params, ...)`` (``step(closure)``); mirror of :func:`jaxinit.optim.lbfgs`."""
    max_eval = checks.check_lbfgs("lbfgs", lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size,
                                 line_search_fn)
    return torch.optim.LBFGS(params, lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                             tolerance_change=tolerance_change, history_size=history_size,
                             line_search_fn=line_search_fn)


def _np(v):
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy().copy()
    if isinstance(v, list):
        return [None if x is None else _np(x) for x in v]
    return v


def _torch_t(v, lr, n_iter: int, dt, dev):
    """``state["t"]`` with the type torch's ``LBFGS.step`` gives it (torch/optim/lbfgs.py).

    torch sets ``t = min(1.0, 1.0 / flat_grad.abs().sum()) * lr`` on the very first iteration
    (``n_iter == 1``) and ``t = lr`` after, with ``lr = _to_scalar(group["lr"])``: a tensor lr stays a
    0-d tensor. So with a tensor lr, ``t`` is ``lr`` itself (lr's dtype, e.g. float32 under float64
    params) after the first iteration, or ``1.0 * lr`` (lr's dtype) when ``1 / sum|g| >= 1``, and the
    0-d product ``(1 / sum|g|) * lr`` (``promote_types(param dtype, lr dtype)``) otherwise; the value
    is the same number in every case (float32 lr widens exactly), only the stored dtype follows
    torch. A value equal to lr on the first iteration is taken as the ``1.0 * lr`` branch (the other
    branch gives lr only when ``1 / sum|g|`` rounds the product back to lr: the same number, a dtype label
    apart). With a Python-number lr the value is kept as a tensor in the params' dtype (the same value).
    """
    value = np.asarray(v)
    if isinstance(lr, torch.Tensor):
        lr0 = lr.detach().reshape(())
        if n_iter > 1 or float(value) == float(lr0):
            return torch.as_tensor(value).to(dtype=lr0.dtype, device=lr0.device).clone()
        return torch.as_tensor(value).to(dtype=torch.promote_types(dt, lr0.dtype), device=dev).clone()
    return torch.as_tensor(value).to(dtype=dt, device=dev).clone()


def export_lbfgs_state(optimizer: torch.optim.LBFGS) -> dict:
    """The neutral dict ``{"state": {0: {...}}, "param_groups": [...], "step": None}`` of an LBFGS."""
    params = optimizer.param_groups[0]["params"]
    entry = optimizer.state.get(params[0], {})
    state = {0: {k: _np(v) for k, v in entry.items()}} if entry else {}
    groups = [{k: v for k, v in g.items() if k in ("params", "param_names")} for g in optimizer.state_dict()["param_groups"]]
    return {"state": state, "param_groups": groups, "step": None, "kind": "lbfgs"}


def import_lbfgs_state(state: dict, optimizer: torch.optim.LBFGS) -> torch.optim.LBFGS:
    """Load LBFGS state (neutral dict, e.g. from :func:`jaxinit.optim.export_state`) into ``optimizer``."""
    params = optimizer.param_groups[0]["params"]
    n = sum(p.numel() for p in params)
    dt, dev = params[0].dtype, params[0].device
    entry = dict(state.get("state", {}).get(0, {}))

    def tens(v):
        return torch.as_tensor(np.asarray(v)).to(dtype=dt, device=dev).clone()

    out: dict = {}
    for k, v in entry.items():
        if k in ("func_evals", "n_iter"):
            out[k] = int(v)
        elif k == "prev_loss":
            out[k] = float(v)
        elif k in ("old_dirs", "old_stps", "ro", "al"):
            out[k] = [None if x is None else tens(x) for x in v]
        elif k == "t":
            out[k] = _torch_t(v, optimizer.param_groups[0]["lr"], int(entry.get("n_iter", 0)), dt, dev)
        else:
            out[k] = tens(v)
    for k in ("d", "prev_flat_grad"):
        if k in out and tuple(out[k].shape) != (n,):
            raise checks.InitError(f"torchinit.optim.import_state (LBFGS): {k} has shape {tuple(out[k].shape)}, the "
                                  f"optimizer's parameters have {n} elements; load it into an LBFGS over the same "
                                  "parameters.")
    optimizer.state.clear()
    if out:
        optimizer.state[params[0]] = out
    return optimizer
