"""Layer layouts taken from the real upstream modules.

Each entry gives a PyTorch weight shape (read off ``torch.nn`` modules) and the
Flax kernel shape of the same layer (read off ``flax.linen`` modules with
``jax.eval_shape``), plus the jaxinit/torchinit layout arguments that give
PyTorch's fans on the Flax kernel.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import torch

from _jaxinit import FLAX_CONV_TRANSPOSE_LAYOUT, FLAX_LAYOUT


def _flax_kernel_shape(module, in_shape):
    variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros(in_shape))
    return tuple(variables["params"]["kernel"].shape)


@functools.lru_cache(maxsize=None)
def layer_layouts():
    """name -> (torch weight shape, flax kernel shape, layout kwargs for the flax kernel)."""
    t, f = torch.nn, nn
    spec = {
        "linear": (t.Linear(512, 256), f.Dense(256), (1, 512), FLAX_LAYOUT),
        "conv1d": (t.Conv1d(64, 128, 7), f.Conv(128, (7,)), (1, 16, 64), FLAX_LAYOUT),
        "conv2d": (t.Conv2d(64, 128, 3), f.Conv(128, (3, 3)), (1, 8, 8, 64), FLAX_LAYOUT),
        "conv3d": (t.Conv3d(32, 64, 3), f.Conv(64, (3, 3, 3)), (1, 4, 4, 4, 32), FLAX_LAYOUT),
        "grouped_conv2d": (t.Conv2d(128, 128, 3, groups=4), f.Conv(128, (3, 3), feature_group_count=4),
                           (1, 8, 8, 128), FLAX_LAYOUT),
        "conv_transpose2d": (t.ConvTranspose2d(64, 128, 3), f.ConvTranspose(128, (3, 3)), (1, 8, 8, 64),
                             FLAX_CONV_TRANSPOSE_LAYOUT),
        "conv_transpose2d_tk": (t.ConvTranspose2d(64, 128, 3), f.ConvTranspose(128, (3, 3), transpose_kernel=True),
                                (1, 8, 8, 64), FLAX_LAYOUT),
    }
    out = {}
    for name, (tmod, fmod, in_shape, layout) in spec.items():
        out[name] = (tuple(tmod.weight.shape), _flax_kernel_shape(fmod, in_shape), dict(layout))
    return out
