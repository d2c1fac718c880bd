"""Mixed precision with torch.amp's semantics for JAX/Flax: ``torch.amp.GradScaler`` as an optax
transformation (and, in this module, torch's autocast policy and precision settings).

Mirror: :mod:`torchinit.amp` (same names; the scaler there is torch's own ``torch.amp.GradScaler``).
``TRANSFORMS`` lists the optax building blocks and state types, which exist only here.
"""
from jaxinit._src.amp import Autocast as Autocast
from jaxinit._src.amp import autocast as autocast
from jaxinit._src.amp import active as active
from jaxinit._src.amp import register_linen_rule as register_linen_rule
from jaxinit._src.amp import low_precision_rule as low_precision_rule
from jaxinit._src.amp import normalization_rule as normalization_rule
from jaxinit._src.grad_scaler import GradScalerState as GradScalerState
from jaxinit._src.grad_scaler import grad_scaler as grad_scaler
from jaxinit._src.grad_scaler import grad_scaler_state_dict as grad_scaler_state_dict
from jaxinit._src.grad_scaler import load_grad_scaler_state_dict as load_grad_scaler_state_dict
from jaxinit._src.grad_scaler import scale_loss as scale_loss
from jaxinit._src.grad_scaler import unscale as unscale
from jaxinit._src.grad_scaler import update_scale as update_scale

# optax building blocks and their states: JAX-only (not mirrored in torchinit.amp).
TRANSFORMS = (
    "GradScalerState",
    "unscale",
    "update_scale",
)

__all__ = [
    "TRANSFORMS",
    "GradScalerState",
    "grad_scaler",
    "grad_scaler_state_dict",
    "load_grad_scaler_state_dict",
    "scale_loss",
    "unscale",
    "update_scale",
]
