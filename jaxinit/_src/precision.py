"""The precision contract, JAX side: compute float32 matmuls and convolutions in JAX at the
precision a torch configuration uses, and the reverse (the tables: ``_jaxinit/precision.py``)."""
from __future__ import annotations

import contextlib
from typing import Any

import jax

from _jaxinit import precision as _core

LEVELS = _core.LEVELS


class PrecisionContract(_core.PrecisionCore):
    """``matmul`` and ``conv``: the float32 precision levels ('float32', 'tensorfloat32', 'bfloat16').

    As a context manager, JAX traces under it with ``jax.default_matmul_precision(matmul)``, and
    Linen convolutions (``Conv``, ``ConvTranspose``, ``ConvLocal``) under
    ``jax.default_matmul_precision(conv)`` (JAX has one default for both; torch has two). NNX or
    hand-written ``lax.conv_general_dilated``: pass ``precision=contract.jax_precision('conv')``.
    ``torch_settings()`` gives the torch flags of the same contract.

    Example::

        with jaxinit.amp.precision_contract():      # torch's defaults: matmul float32, conv TF32
            loss, grads = train_step(params, batch)  # (trace / jit inside the block)
    """

    def __enter__(self) -> "PrecisionContract":
        stack = contextlib.ExitStack()
        stack.enter_context(jax.default_matmul_precision(self.matmul))
        if self.conv != self.matmul:
            import flax.linen as nn

            conv_kinds = (nn.Conv, nn.ConvTranspose, nn.ConvLocal)

            def interceptor(next_fun, args, kwargs, context):
                if context.method_name == "__call__" and isinstance(context.module, conv_kinds):
                    with jax.default_matmul_precision(self.conv):
                        return next_fun(*args, **kwargs)
                return next_fun(*args, **kwargs)

            stack.enter_context(nn.intercept_methods(interceptor))
        _STACKS.append(stack)
        return self

    def __exit__(self, *exc) -> None:
        _STACKS.pop().__exit__(*exc)


_STACKS: list = []


def precision_contract(allow_tf32: bool | None = None, cudnn_allow_tf32: bool | None = None,
                       float32_matmul_precision: str | None = None) -> PrecisionContract:
    """The JAX precision of a torch configuration (``None``: torch's default: ``allow_tf32=False``,
    ``cudnn_allow_tf32=True``, ``float32_matmul_precision='highest'``).

    ``float32_matmul_precision`` 'highest' -> matmul 'float32', 'high' -> 'tensorfloat32', 'medium' ->
    'bfloat16'; ``allow_tf32`` is the same setting in torch (True = 'high'); ``cudnn_allow_tf32``
    sets the convolutions ('tensorfloat32' when True). Mirror: ``torchinit.amp.precision_contract``
    (its ``None`` reads torch's current flags).
    """
    return PrecisionContract(*_core.from_torch("precision_contract", allow_tf32, cudnn_allow_tf32,
                                               float32_matmul_precision))


def precision_from_jax(precision: Any = None, backend: str | None = None) -> PrecisionContract:
    """The contract of a JAX precision on ``backend`` ('cpu', 'gpu', 'tpu'; ``None``: JAX's default
    backend), as what it computes: CPU always float32; GPU 'float32' or TF32 (JAX's default);
    TPU bf16 passes. ``precision=None`` reads ``jax_default_matmul_precision`` (unset: the backend's
    default). ``.torch_settings()`` then gives the torch flags that compute the same on a GPU."""
    if backend is None:
        backend = jax.default_backend()
        backend = "gpu" if backend in ("cuda", "rocm") else backend
    if precision is None:
        precision = getattr(jax.config, "jax_default_matmul_precision")  # the value in force (context included)
    return PrecisionContract(*_core.from_jax("precision_from_jax", precision, backend))
