"""Mixed precision: the PyTorch mirror of :mod:`jaxinit.amp` (same names, arguments and errors).

The scaler is torch's own ``torch.amp.GradScaler``.
"""
from torchinit._src.amp import grad_scaler as grad_scaler
from torchinit._src.amp import grad_scaler_state_dict as grad_scaler_state_dict
from torchinit._src.amp import load_grad_scaler_state_dict as load_grad_scaler_state_dict
from torchinit._src.amp import scale_loss as scale_loss

__all__ = [
    "grad_scaler",
    "grad_scaler_state_dict",
    "load_grad_scaler_state_dict",
    "scale_loss",
]
