"""Argument checks of torch's gradient clipping, shared by both packages (``torch/nn/utils/clip_grad.py``)."""
from __future__ import annotations

import math
import numbers

from _jaxinit.errors import InitError

NONFINITE_MESSAGE = (
    "The total norm of order {norm_type} for gradients from `parameters` is non-finite, so it cannot be "
    "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
    "`error_if_nonfinite=False`")


def check_clip_grad_norm(who, max_norm, norm_type, error_if_nonfinite):
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real) or math.isnan(max_norm):
        raise InitError(f"{who}: max_norm must be a real number (the largest total norm kept), got {max_norm!r}.")
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or math.isnan(norm_type):
        raise InitError(f"{who}: norm_type must be a real number (2.0, 1.0, float('inf'), ...), got {norm_type!r}.")
    if not isinstance(error_if_nonfinite, bool):
        raise InitError(f"{who}: error_if_nonfinite must be True or False, got {error_if_nonfinite!r}.")
    return float(max_norm), float(norm_type)


def check_clip_grad_value(who, clip_value):
    if isinstance(clip_value, bool) or not isinstance(clip_value, numbers.Real) or math.isnan(clip_value):
        raise InitError(f"{who}: clip_value must be a real number (gradients are clamped to "
                        f"[-clip_value, clip_value]), got {clip_value!r}.")
    return float(clip_value)
