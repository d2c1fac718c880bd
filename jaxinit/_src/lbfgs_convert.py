"""LBFGS in ``jaxinit/_src/optim_convert.py``: from_torch's refusal, import_state, export_state.

Every other optimizer's state converts through its field names (the optimizer registry,
``_jaxinit/optim_registry.py``); LBFGS is not an optax
transformation and has a global state (torch keeps it under the first parameter),
so :func:`from_torch`, :func:`import_state` and :func:`export_state` hand it here.
"""
from __future__ import annotations

from typing import Any

import jax

from _jaxinit import optim_convert as _core
from _jaxinit import optim_registry as registry
from _jaxinit.errors import InitError
from jaxinit._src.lbfgs import LBFGS, LBFGSState, lbfgs, lbfgs_state_from_torch, lbfgs_state_to_torch


def lbfgs_from_torch(optimizer, scheduler, who: str):
    """Refuse torch's LBFGS in ``from_torch`` (not an optax transformation), naming the exact replacement."""
    hp = _core.group_hyperparams("lbfgs", optimizer.param_groups[0], lbfgs, who, 0)
    call = ", ".join(f"{k}={v!r}" for k, v in hp.items())
    raise InitError(
        f"{who}: LBFGS is not supported; supported are optimizers whose step is one gradient update: torch's "
        f"{registry.BY_CLASS['LBFGS'].from_torch_refusal}. Use tx = jaxinit.optim.lbfgs({call}), state = jaxinit.optim.import_state(optimizer, params, tx), "
        "then params, state, loss = tx.step(params, state, jax.value_and_grad(loss_fn)) (jittable)"
        + ("; the scheduler is not converted (lbfgs takes a constant lr per step call)." if scheduler is not None
           else "."))


def is_lbfgs(x: Any) -> bool:
    return isinstance(x, (LBFGS, LBFGSState))


def import_lbfgs(state: Any, params: Any, tx: LBFGS) -> LBFGSState:
    """``import_state`` for LBFGS: ``state`` is a torch LBFGS, its ``state_dict()`` or the neutral dict."""
    if hasattr(state, "param_groups") and hasattr(state, "state_dict"):
        state = state.state_dict()  # a torch LBFGS or a stored one (training-state files): state under index 0
    if isinstance(state, dict) and "state" in state:
        st = state["state"]
        entry = dict(st.get(0, st.get("0", {}))) if st else {}
    else:
        raise InitError("jaxinit.optim.import_state: for LBFGS, state must be a torch LBFGS, its state_dict() or "
                        f"export_state's dict, got {type(state).__name__}.")
    return lbfgs_state_from_torch(entry, params, tx.hyperparams["history_size"])


def export_lbfgs(opt_state: LBFGSState, params: Any) -> dict:
    """``export_state`` for LBFGS: torch's state under parameter 0 (torch's layout of the LBFGS state)."""
    entry = lbfgs_state_to_torch(opt_state)
    n = len(jax.tree.leaves(params))
    return {"state": {0: entry} if entry else {}, "param_groups": [{"params": list(range(n))}], "step": None,
            "kind": "lbfgs"}
