"""The precision contract between torch's float32 matmul/convolution settings and JAX's matmul
precision: the framework-free part (the mapping tables, argument checks, the contract object).

torch (torch/backends/cuda/__init__.py, torch/backends/cudnn/__init__.py, torch 2.13):

* ``torch.set_float32_matmul_precision("highest" | "high" | "medium")`` and
  ``torch.backends.cuda.matmul.allow_tf32`` are ONE setting (``allow_tf32=True`` reads back as
  "high"; "high" and "medium" set it True): float32 matmuls (``mm``, ``bmm``, ``linear``...) in
  full float32 ("highest", the default) or TensorFloat-32 on Ampere and later ("high"; "medium"
  also allows bfloat16 passes where a kernel has them: on CUDA cuBLAS uses TF32);
* ``torch.backends.cudnn.allow_tf32`` (default True): cuDNN convolutions in TF32. So torch's
  DEFAULT runs matmuls in float32 and convolutions in TF32 on an Ampere+ GPU.

JAX (``jax_default_matmul_precision`` / ``precision=`` per op, jax/_src/config.py): one setting for
dots AND convolutions, levels 'float32' (= 'highest'), 'tensorfloat32' (= 'high'), 'bfloat16'
(= 'default'), meaning per backend (:data:`BACKEND_MEANING`): on CPU every level computes in full
float32; on GPU 'float32' is IEEE float32 and the other two TF32 (the default; jax#10413 /
flax#3128); on TPU 'bfloat16' is one bfloat16 pass (the default), 'tensorfloat32' three,
'float32' six (about float32).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from _jaxinit.errors import InitError

LEVELS = ("float32", "tensorfloat32", "bfloat16")
# jax's names for the levels (legacy ``Precision`` names and the level names)
JAX_ALIASES = {"highest": "float32", "float32": "float32", "high": "tensorfloat32",
               "tensorfloat32": "tensorfloat32", "default": "bfloat16", "bfloat16": "bfloat16",
               "fastest": "bfloat16"}
TORCH_MATMUL = {"highest": "float32", "high": "tensorfloat32", "medium": "bfloat16"}
BACKENDS = ("cpu", "gpu", "tpu")
# what a float32 dot/conv computes at each JAX level, per backend
BACKEND_MEANING = {
    "cpu": {"float32": "float32", "tensorfloat32": "float32", "bfloat16": "float32"},
    "gpu": {"float32": "float32", "tensorfloat32": "tensorfloat32", "bfloat16": "tensorfloat32"},
    "tpu": {"float32": "6 bfloat16 passes (~float32)", "tensorfloat32": "3 bfloat16 passes",
            "bfloat16": "1 bfloat16 pass"},
}
# the level of JAX's default (precision None) per backend
JAX_DEFAULT = {"cpu": "float32", "gpu": "tensorfloat32", "tpu": "bfloat16"}


@dataclasses.dataclass(frozen=True)
class PrecisionCore:
    """The float32 precision of matmuls and of convolutions, as a level of :data:`LEVELS`."""
    matmul: str = "float32"
    conv: str = "tensorfloat32"

    def __post_init__(self):
        for name in ("matmul", "conv"):
            if getattr(self, name) not in LEVELS:
                raise InitError(f"PrecisionContract: {name} must be one of {list(LEVELS)}, got {getattr(self, name)!r}.")

    def torch_settings(self) -> dict[str, Any]:
        """The torch settings that compute as this contract on a CUDA GPU:
        ``{"float32_matmul_precision", "allow_tf32", "cudnn_allow_tf32"}``."""
        prec = {"float32": "highest", "tensorfloat32": "high", "bfloat16": "medium"}[self.matmul]
        return {"float32_matmul_precision": prec, "allow_tf32": self.matmul != "float32",
                "cudnn_allow_tf32": self.conv != "float32"}

    def jax_precision(self, kind: str = "matmul") -> str:
        """The JAX precision name ('float32', 'tensorfloat32' or 'bfloat16') for ``kind`` ('matmul'/'conv')."""
        if kind not in ("matmul", "conv"):
            raise InitError(f"jax_precision: kind must be 'matmul' or 'conv', got {kind!r}.")
        return getattr(self, kind)


def from_torch(who: str, allow_tf32: Any, cudnn_allow_tf32: Any, float32_matmul_precision: Any) -> tuple[str, str]:
    """(matmul level, conv level) of a torch configuration; ``None`` arguments are torch's defaults."""
    for name, v in (("allow_tf32", allow_tf32), ("cudnn_allow_tf32", cudnn_allow_tf32)):
        if v is not None and not isinstance(v, bool):
            raise InitError(f"{who}: {name} must be True, False or None (torch's default), got {v!r}.")
    if float32_matmul_precision is not None and float32_matmul_precision not in TORCH_MATMUL:
        raise InitError(f"{who}: float32_matmul_precision must be one of {list(TORCH_MATMUL)} "
                        f"(torch.set_float32_matmul_precision), got {float32_matmul_precision!r}.")
    if float32_matmul_precision is not None and allow_tf32 is not None \
            and (float32_matmul_precision != "highest") != allow_tf32:
        raise InitError(f"{who}: allow_tf32={allow_tf32} contradicts float32_matmul_precision="
                        f"{float32_matmul_precision!r}: torch keeps them as one setting (allow_tf32=True reads "
                        "back as 'high'). Pass one of them.")
    if float32_matmul_precision is not None:
        matmul = TORCH_MATMUL[float32_matmul_precision]
    else:
        matmul = "tensorfloat32" if allow_tf32 else "float32"
    conv = "float32" if cudnn_allow_tf32 is False else "tensorfloat32"
    return matmul, conv


def from_jax(who: str, precision: Any, backend: Any) -> tuple[str, str]:
    """(matmul level, conv level) computed by a JAX precision (``None``: the backend's default)."""
    if backend not in BACKENDS:
        raise InitError(f"{who}: backend must be one of {list(BACKENDS)}, got {backend!r}.")
    if precision is None:
        level = JAX_DEFAULT[backend]
    else:
        name = str(precision).lower().removeprefix("precision.")
        if name not in JAX_ALIASES:
            raise InitError(f"{who}: precision must be None (the backend default) or one of "
                            f"{sorted(JAX_ALIASES)}, got {precision!r}.")
        level = JAX_ALIASES[name]
    # what it computes on that backend, as the torch level that computes the same on a GPU
    if backend == "cpu":
        level = "float32"
    elif backend == "gpu" and level == "bfloat16":
        level = "tensorfloat32"
    return level, level
