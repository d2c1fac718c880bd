"""torchinit: the PyTorch mirror of :mod:`jaxinit`: same names, arguments and meanings.

Factories ``name(...)`` return ``init(key, shape, dtype=torch.float32, device=None)`` reading
``shape`` in torch's layout (out, in, *k) by default (a JAX key gives jaxinit's draw for the Flax
twin, permuted back; docs/initializers.md); in-place drop-ins ``name_(tensor, ...,
generator=None)`` work on PyTorch-layout tensors and match ``torch.nn.init`` bitwise under the
same seed. This package never imports jax.
"""
from _jaxinit import FLAX_CONV_TRANSPOSE_LAYOUT as FLAX_CONV_TRANSPOSE_LAYOUT
from _jaxinit import FLAX_LAYOUT as FLAX_LAYOUT
from _jaxinit import TORCH_LAYOUT as TORCH_LAYOUT
from _jaxinit import InitError as InitError
from _jaxinit import calculate_gain as calculate_gain
from torchinit._src.initializers import compute_fans as compute_fans
from torchinit._src.batchnorm import BatchNorm as BatchNorm
from torchinit._src.initializers import Initializer as Initializer
from torchinit._src.initializers import constant as constant
from torchinit._src.initializers import constant_ as constant_
from torchinit._src.initializers import dirac as dirac
from torchinit._src.initializers import dirac_ as dirac_
from torchinit._src.initializers import eye as eye
from torchinit._src.initializers import eye_ as eye_
from torchinit._src.initializers import glorot_normal as glorot_normal
from torchinit._src.initializers import glorot_normal_ as glorot_normal_
from torchinit._src.initializers import glorot_uniform as glorot_uniform
from torchinit._src.initializers import glorot_uniform_ as glorot_uniform_
from torchinit._src.initializers import he_normal as he_normal
from torchinit._src.initializers import he_normal_ as he_normal_
from torchinit._src.initializers import he_uniform as he_uniform
from torchinit._src.initializers import he_uniform_ as he_uniform_
from torchinit._src.initializers import kaiming_normal as kaiming_normal
from torchinit._src.initializers import kaiming_normal_ as kaiming_normal_
from torchinit._src.initializers import kaiming_uniform as kaiming_uniform
from torchinit._src.initializers import kaiming_uniform_ as kaiming_uniform_
from torchinit._src.initializers import lecun_normal as lecun_normal
from torchinit._src.initializers import lecun_normal_ as lecun_normal_
from torchinit._src.initializers import lecun_uniform as lecun_uniform
from torchinit._src.initializers import lecun_uniform_ as lecun_uniform_
from torchinit._src.initializers import normal as normal
from torchinit._src.initializers import normal_ as normal_
from torchinit._src.initializers import ones as ones
from torchinit._src.initializers import ones_ as ones_
from torchinit._src.initializers import orthogonal as orthogonal
from torchinit._src.initializers import orthogonal_ as orthogonal_
from torchinit._src.initializers import sparse as sparse
from torchinit._src.initializers import sparse_ as sparse_
from torchinit._src.initializers import svd as svd
from torchinit._src.initializers import svd_ as svd_
from torchinit._src.initializers import trunc_normal as trunc_normal
from torchinit._src.initializers import trunc_normal_ as trunc_normal_
from torchinit._src.initializers import truncated_normal as truncated_normal
from torchinit._src.initializers import truncated_normal_ as truncated_normal_
from torchinit._src.initializers import uniform as uniform
from torchinit._src.initializers import uniform_ as uniform_
from torchinit._src.initializers import variance_scaling as variance_scaling
from torchinit._src.initializers import variance_scaling_ as variance_scaling_
from torchinit._src.initializers import xavier_normal as xavier_normal
from torchinit._src.initializers import xavier_normal_ as xavier_normal_
from torchinit._src.initializers import xavier_uniform as xavier_uniform
from torchinit._src.initializers import xavier_uniform_ as xavier_uniform_
from torchinit._src.initializers import zeros as zeros
from torchinit._src.initializers import zeros_ as zeros_
from torchinit._src.reinit import reinit as reinit
from _jaxinit.convert import ConversionError as ConversionError
from torchinit._src.convert import from_torch_state_dict as from_torch_state_dict
from torchinit._src.convert import load_checkpoint as load_checkpoint
from torchinit._src.convert import save_checkpoint as save_checkpoint
from torchinit._src.convert import to_torch_state_dict as to_torch_state_dict
from _jaxinit.sharded import CheckpointFileError as CheckpointFileError
from torchinit._src.checkpoint_io import convert_checkpoint as convert_checkpoint
from torchinit._src.checkpoint_io import load_torch_checkpoint as load_torch_checkpoint
from torchinit._src.porting import audit as audit
from torchinit._src.porting import compare_layers as compare_layers
from torchinit._src.porting import suggest_mapping as suggest_mapping
from torchinit._src.porting import twin_check as twin_check

__version__ = "0.1.0"

# The in-place drop-ins for torch tensors; every other name mirrors jaxinit.
INPLACE = (
    "constant_",
    "dirac_",
    "eye_",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "normal_",
    "ones_",
    "orthogonal_",
    "sparse_",
    "svd_",
    "trunc_normal_",
    "truncated_normal_",
    "uniform_",
    "variance_scaling_",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
)

__all__ = [
    "BatchNorm",
    "FLAX_CONV_TRANSPOSE_LAYOUT",
    "FLAX_LAYOUT",
    "INPLACE",
    "InitError",
    "Initializer",
    "TORCH_LAYOUT",
    "calculate_gain",
    "compute_fans",
    "constant",
    "constant_",
    "dirac",
    "dirac_",
    "eye",
    "eye_",
    "glorot_normal",
    "glorot_normal_",
    "glorot_uniform",
    "glorot_uniform_",
    "he_normal",
    "he_normal_",
    "he_uniform",
    "he_uniform_",
    "kaiming_normal",
    "kaiming_normal_",
    "kaiming_uniform",
    "kaiming_uniform_",
    "lecun_normal",
    "lecun_normal_",
    "lecun_uniform",
    "lecun_uniform_",
    "normal",
    "normal_",
    "ones",
    "ones_",
    "orthogonal",
    "orthogonal_",
    "reinit",
    "sparse",
    "sparse_",
    "svd",
    "svd_",
    "trunc_normal",
    "trunc_normal_",
    "truncated_normal",
    "truncated_normal_",
    "uniform",
    "uniform_",
    "variance_scaling",
    "variance_scaling_",
    "xavier_normal",
    "xavier_normal_",
    "xavier_uniform",
    "xavier_uniform_",
    "zeros",
    "zeros_",
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
