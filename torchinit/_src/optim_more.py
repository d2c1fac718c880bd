"""Conversion hooks of Adafactor, Muon, LBFGS and SparseAdam for ``torchinit/_src/optim_convert.py``."""
from __future__ import annotations

from _jaxinit.optim_more import refuse_tensor_lr, state_shape
from torchinit._src.adafactor import adafactor
from torchinit._src.lbfgs import export_lbfgs_state, import_lbfgs_state, lbfgs
from torchinit._src.muon import muon
from torchinit._src.sparse_adam import sparse_adam

FACTORIES = {"adafactor": adafactor, "muon": muon, "lbfgs": lbfgs, "sparse_adam": sparse_adam}

__all__ = ["FACTORIES", "export_lbfgs_state", "import_lbfgs_state", "refuse_tensor_lr", "state_shape"]
