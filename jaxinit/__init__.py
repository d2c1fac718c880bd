"""jaxinit: PyTorch's initializers (and the JAX/Flax ones) for JAX and Flax.

Every initializer is a factory returning ``init(key, shape, dtype=jnp.float32)``,
usable as ``flax.linen.Dense(kernel_init=...)`` or ``flax.nnx.Linear(kernel_init=...)``
and under ``jax.jit``. The mirror package :mod:`torchinit` has the same names,
arguments and meanings for PyTorch. This package never imports torch.
"""
from _jaxinit import FLAX_CONV_TRANSPOSE_LAYOUT as FLAX_CONV_TRANSPOSE_LAYOUT
from _jaxinit import FLAX_LAYOUT as FLAX_LAYOUT
from _jaxinit import TORCH_LAYOUT as TORCH_LAYOUT
from _jaxinit import InitError as InitError
from _jaxinit import calculate_gain as calculate_gain
from _jaxinit import compute_fans as compute_fans
from jaxinit._src.initializers import Initializer as Initializer
from jaxinit._src.initializers import constant as constant
from jaxinit._src.initializers import dirac as dirac
from jaxinit._src.initializers import eye as eye
from jaxinit._src.initializers import glorot_normal as glorot_normal
from jaxinit._src.initializers import glorot_uniform as glorot_uniform
from jaxinit._src.initializers import he_normal as he_normal
from jaxinit._src.initializers import he_uniform as he_uniform
from jaxinit._src.initializers import kaiming_normal as kaiming_normal
from jaxinit._src.initializers import kaiming_uniform as kaiming_uniform
from jaxinit._src.initializers import lecun_normal as lecun_normal
from jaxinit._src.initializers import lecun_uniform as lecun_uniform
from jaxinit._src.initializers import normal as normal
from jaxinit._src.initializers import ones as ones
from jaxinit._src.initializers import orthogonal as orthogonal
from jaxinit._src.initializers import sparse as sparse
from jaxinit._src.initializers import svd as svd
from jaxinit._src.initializers import trunc_normal as trunc_normal
from jaxinit._src.initializers import truncated_normal as truncated_normal
from jaxinit._src.initializers import uniform as uniform
from jaxinit._src.initializers import variance_scaling as variance_scaling
from jaxinit._src.initializers import xavier_normal as xavier_normal
from jaxinit._src.initializers import xavier_uniform as xavier_uniform
from jaxinit._src.initializers import zeros as zeros
from jaxinit._src.reinit import reinit as reinit
from _jaxinit.convert import ConversionError as ConversionError
from jaxinit._src.convert import from_torch_state_dict as from_torch_state_dict
from jaxinit._src.convert import load_checkpoint as load_checkpoint
from jaxinit._src.convert import save_checkpoint as save_checkpoint
from jaxinit._src.convert import to_torch_state_dict as to_torch_state_dict
from _jaxinit.sharded import CheckpointFileError as CheckpointFileError
from jaxinit._src.checkpoint_io import convert_checkpoint as convert_checkpoint
from jaxinit._src.checkpoint_io import load_torch_checkpoint as load_torch_checkpoint
from jaxinit._src.porting import audit as audit
from jaxinit._src.porting import compare_layers as compare_layers
from jaxinit._src.porting import suggest_mapping as suggest_mapping
from jaxinit._src.porting import twin_check as twin_check

__version__ = "0.1.0"


def __getattr__(name):
    # BatchNorm is a flax.linen Module: imported on first use so `import jaxinit` needs no flax.
    if name == "BatchNorm":
        from jaxinit._src.batchnorm import LinenBatchNorm

        return LinenBatchNorm
    raise AttributeError(f"module 'jaxinit' has no attribute {name!r}")


def __dir__():
    # dir(jaxinit) and tab completion show the names __getattr__ provides (PEP 562)
    return sorted(set(globals()) | set(__all__))


# Mirrors torchinit's __all__ name for name by design (parity_tests/test_api.py checks the two surfaces match).
__all__ = [
    "BatchNorm",
    "FLAX_CONV_TRANSPOSE_LAYOUT",
    "FLAX_LAYOUT",
    "TORCH_LAYOUT",
    "InitError",
    "Initializer",
    "calculate_gain",
    "compute_fans",
    "constant",
    "dirac",
    "eye",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "reinit",
    "sparse",
    "svd",
    "trunc_normal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
    "CheckpointFileError",
    "ConversionError",
    "convert_checkpoint",
    "load_torch_checkpoint",
    "from_torch_state_dict",
    "load_checkpoint",
    "save_checkpoint",
    "to_torch_state_dict",
    "twin_check",
    "audit",
    "compare_layers",
    "suggest_mapping",
]
