"""The one cast to a low dtype that every rule of :mod:`jaxinit.amp` uses."""
from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jax import lax


def round_low(x: Any, dtype: Any) -> Any:
    """``x`` cast to the low ``dtype`` with the rounding pinned: ``lax.reduce_precision`` in float32
    first. XLA (``--xla_allow_excess_precision``, on by default) removes a ``convert`` to bfloat16
    and back to float32 between fused ops, e.g. where XLA:CPU computes a bf16 product in float32, so
    a bf16 value computed in float32 by the model (a mean, an activation) could reach the product
    unrounded; torch's kernel reads the rounded tensor. ``reduce_precision`` is not removed."""
    dtype = jnp.dtype(dtype)
    if dtype != jnp.dtype(jnp.bfloat16):
        # float16: reduce_precision with float16's 5 exponent bits flushes its subnormals to zero
        # (torch's casts keep them), so float16 keeps the plain cast (and XLA's excess precision)
        return x.astype(dtype)
    return lax.reduce_precision(x.astype(jnp.float32), exponent_bits=8, mantissa_bits=7).astype(dtype)
