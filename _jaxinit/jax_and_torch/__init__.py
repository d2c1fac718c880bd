"""The porting tools that need BOTH frameworks: ``twin_check``, ``compare_layers``, ``audit``.

The rest of ``_jaxinit`` is framework-free; these tools run a torch module and its
Flax twin side by side, so they need jax, flax and torch at CALL time. They import them
inside the functions, never at import time, so ``jaxinit`` (no torch) and ``torchinit``
(no jax) can both export them (as ``torch.testing`` sits apart from ``torch.nn``).
"""
from _jaxinit.jax_and_torch.audit import audit as audit
from _jaxinit.jax_and_torch.layers import compare_layers as compare_layers
from _jaxinit.jax_and_torch.twin import twin_check as twin_check

__all__ = ["audit", "compare_layers", "twin_check"]
