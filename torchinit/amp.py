"""Mixed precision: the PyTorch mirror of :mod:`jaxinit.amp` (same names, arguments and errors).

The autocast and the scaler are torch's own (``torch.autocast``, ``torch.amp.GradScaler``); these
functions build them with jaxinit's checks and convert their state and precision settings.
"""
from _jaxinit.autocast_table import budget as autocast_budget
from _jaxinit.autocast_table import policy as autocast_policy
from torchinit._src.amp import Autocast as Autocast
from torchinit._src.amp import PrecisionContract as PrecisionContract
from torchinit._src.amp import autocast as autocast
from torchinit._src.amp import grad_scaler as grad_scaler
from torchinit._src.amp import grad_scaler_state_dict as grad_scaler_state_dict
from torchinit._src.amp import load_grad_scaler_state_dict as load_grad_scaler_state_dict
from torchinit._src.amp import precision_contract as precision_contract
from torchinit._src.amp import precision_from_jax as precision_from_jax
from torchinit._src.amp import scale_loss as scale_loss

__all__ = [
    "Autocast",
    "PrecisionContract",
    "autocast",
    "autocast_budget",
    "autocast_policy",
    "grad_scaler",
    "grad_scaler_state_dict",
    "load_grad_scaler_state_dict",
    "precision_contract",
    "precision_from_jax",
    "scale_loss",
]
