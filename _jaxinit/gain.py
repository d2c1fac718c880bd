"""PyTorch's gain table (``torch.nn.init.calculate_gain``), reproduced exactly."""
from __future__ import annotations

import math

from _jaxinit.errors import InitError

_LINEAR_FNS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
)
SUPPORTED_NONLINEARITIES = _LINEAR_FNS + ("sigmoid", "tanh", "relu", "leaky_relu", "selu")


def calculate_gain(nonlinearity: str, param: int | float | None = None) -> float:
    r"""Return the recommended gain for a nonlinearity, exactly as PyTorch.

    ================= ====================================================
    nonlinearity      gain
    ================= ====================================================
    Linear / Identity :math:`1`
    Conv{1,2,3}D      :math:`1`
    Conv transpose    :math:`1`
    Sigmoid           :math:`1`
    Tanh              :math:`\frac{5}{3}`
    ReLU              :math:`\sqrt{2}`
    Leaky Relu        :math:`\sqrt{\frac{2}{1 + \text{negative\_slope}^2}}`
    SELU              :math:`\frac{3}{4}`
    ================= ====================================================

    ``param`` is the leaky ReLU negative slope (default 0.01); a ``bool`` is
    rejected as in PyTorch. The returned Python numbers are the very ones
    ``torch.nn.init.calculate_gain`` returns (``1`` is an ``int`` there too),
    so formulas built on them round identically.

    Example:
        >>> calculate_gain("leaky_relu", 0.2)
        1.3867504905630728
    """
    if nonlinearity in _LINEAR_FNS or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif (not isinstance(param, bool) and isinstance(param, int)) or isinstance(param, float):
            negative_slope = param
        else:
            raise InitError(
                f"negative_slope {param} not a valid number: `param` (the initializers' `a`) "
                "must be an int or float slope, e.g. 0.01"
            )
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise InitError(
        f"Unsupported nonlinearity {nonlinearity}"
        f" (accepted: {', '.join(SUPPORTED_NONLINEARITIES)};"
        " for an unsupported activation pass gain= explicitly where the initializer takes it)"
    )
