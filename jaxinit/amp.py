"""Mixed precision with torch.amp's semantics for JAX/Flax.

* :class:`Autocast` / :func:`autocast`: torch's autocast policy for Linen (interception) and NNX
  (:meth:`Autocast.nnx`), its op table :func:`autocast_policy` (``_jaxinit/autocast_table.py``);
* :func:`grad_scaler`: ``torch.amp.GradScaler`` as an optax transformation, its state as
  ``GradScaler.state_dict()``;
* :func:`precision_contract` / :func:`precision_from_jax`: torch's TF32 / float32-matmul settings
  <-> JAX's matmul precision.

Mirror: :mod:`torchinit.amp` (same names; there the autocast and the scaler are torch's own
``torch.autocast`` and ``torch.amp.GradScaler``). ``JAX_ONLY`` lists the names that exist only
here (optax building blocks and states, the Linen rule registry).
"""
from _jaxinit.autocast_table import budget as autocast_budget
from _jaxinit.autocast_table import policy as autocast_policy
from jaxinit._src.amp import Autocast as Autocast
from jaxinit._src.amp import active as active
from jaxinit._src.amp_rules import attention_rule as attention_rule
from jaxinit._src.amp import autocast as autocast
from jaxinit._src.amp_rules import low_precision_rule as low_precision_rule
from jaxinit._src.amp_rules import normalization_rule as normalization_rule
from jaxinit._src.amp_rules import register_linen_rule as register_linen_rule
from jaxinit._src.grad_scaler import GradScalerState as GradScalerState
from jaxinit._src.grad_scaler import grad_scaler as grad_scaler
from jaxinit._src.grad_scaler import grad_scaler_state_dict as grad_scaler_state_dict
from jaxinit._src.grad_scaler import load_grad_scaler_state_dict as load_grad_scaler_state_dict
from jaxinit._src.grad_scaler import scale_loss as scale_loss
from jaxinit._src.grad_scaler import unscale as unscale
from jaxinit._src.grad_scaler import update_scale as update_scale
from jaxinit._src.precision import PrecisionContract as PrecisionContract
from jaxinit._src.precision import precision_contract as precision_contract
from jaxinit._src.precision import precision_from_jax as precision_from_jax

# JAX-only (not mirrored in torchinit.amp): optax building blocks and states, the Linen rule registry.
JAX_ONLY = (
    "GradScalerState",
    "active",
    "attention_rule",
    "low_precision_rule",
    "normalization_rule",
    "register_linen_rule",
    "unscale",
    "update_scale",
)

__all__ = [
    "JAX_ONLY",
    "Autocast",
    "GradScalerState",
    "PrecisionContract",
    "active",
    "attention_rule",
    "autocast",
    "autocast_budget",
    "autocast_policy",
    "grad_scaler",
    "grad_scaler_state_dict",
    "load_grad_scaler_state_dict",
    "low_precision_rule",
    "normalization_rule",
    "precision_contract",
    "precision_from_jax",
    "register_linen_rule",
    "scale_loss",
    "unscale",
    "update_scale",
]
