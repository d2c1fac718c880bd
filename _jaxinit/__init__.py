"""Framework-free core shared by :mod:`jaxinit` and :mod:`torchinit`.

Named after the distribution that owns it (``jaxinit``), as pytest owns ``_pytest``: a private
top-level name nobody else installs.

Private: nothing here imports jax or torch (except :mod:`_jaxinit.jax_and_torch`, the
porting tools that run both frameworks, which import them when called). It holds, once, every formula and
rule the two packages must agree on: PyTorch's gain table, the fan computation
for any layout, argument validation with the errors both packages raise, and
the torch-exact float arithmetic that turns an initializer's arguments into
the parameters of the distribution it draws from.
"""
from _jaxinit.errors import InitError
from _jaxinit.fans import (
    FLAX_CONV_TRANSPOSE_LAYOUT,
    FLAX_LAYOUT,
    TORCH_LAYOUT,
    compute_fans,
    normalize_layout,
)
from _jaxinit.gain import calculate_gain
from _jaxinit import init_params

__all__ = [
    "FLAX_CONV_TRANSPOSE_LAYOUT",
    "FLAX_LAYOUT",
    "TORCH_LAYOUT",
    "InitError",
    "calculate_gain",
    "compute_fans",
    "normalize_layout",
    "init_params",
]
