"""Conversion hooks of Adafactor, Muon, LBFGS and SparseAdam for ``jaxinit/_src/optim_convert.py``.

The generic code handles Adafactor / Muon / SparseAdam states through their field
names (``_initcore.optim_more.PER_PARAM_FIELDS``); LBFGS is not an optax
transformation and has a global state (torch keeps it under the first parameter),
so :func:`from_torch`, :func:`import_state` and :func:`export_state` hand it here.
"""
from __future__ import annotations

from typing import Any

import jax

from _initcore import optim_convert as _core
from _initcore.errors import InitError
from jaxinit._src.adafactor import adafactor
from jaxinit._src.lbfgs import LBFGS, LBFGSState, lbfgs, lbfgs_state_from_torch, lbfgs_state_to_torch
from jaxinit._src.muon import muon
from jaxinit._src.sparse_adam import sparse_adam

FACTORIES = {"adafactor": adafactor, "muon": muon, "lbfgs": lbfgs, "sparse_adam": sparse_adam}
# optax state NamedTuples of these optimizers that the state walker knows (and which own torch's "step")
KNOWN_STATES = {"ScaleByTorchAdafactorState", "ScaleByTorchSparseAdamState", "MuonState", "ScaleByTorchMuonState"}
STEP_OWNERS = {"ScaleByTorchAdafactorState", "ScaleByTorchSparseAdamState"}


def lbfgs_from_torch(optimizer, scheduler, who: str) -> LBFGS:
    """:func:`jaxinit.optim.lbfgs` with the torch LBFGS's hyperparameters (one group, no scheduler)."""
    if scheduler is not None:
        raise InitError(f"{who}: a scheduler on torch's LBFGS is not converted (jaxinit.optim.lbfgs takes a constant "
                        "lr per step call); drop the scheduler and rebuild lbfgs(lr=...) when the lr changes.")
    hp = _core.group_hyperparams("lbfgs", optimizer.param_groups[0], lbfgs, who, 0)
    return lbfgs(**hp)


def is_lbfgs(x: Any) -> bool:
    return isinstance(x, (LBFGS, LBFGSState))


def import_lbfgs(state: Any, params: Any, tx: LBFGS) -> LBFGSState:
    """``import_state`` for LBFGS: ``state`` is a torch LBFGS, its ``state_dict()`` or the neutral dict."""
    if hasattr(state, "param_groups") and hasattr(state, "state"):
        entry = dict(state.state.get(state.param_groups[0]["params"][0], {}))
    elif isinstance(state, dict) and "state" in state:
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
