r"""torch.optim.SGD: momentum buffer (``trace_torch``) and the ``sgd`` factory.

Conventions and state layout: ``jaxinit/_src/optim_common.py``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core
from jaxinit._src.optim_common import ScalarOrSchedule, inc, l2, negate, scale_by_torch_lr


class TraceTorchState(NamedTuple):
    """State of :func:`trace_torch`: ``count`` steps taken, torch's ``momentum_buffer``."""
    count: jax.Array  # type: ignore[assignment]  # optax's field name shadows tuple.count
    momentum_buffer: optax.Updates


def trace_torch(momentum: Any, dampening: Any = 0.0, nesterov: bool = False) -> optax.GradientTransformation:
    r"""torch's momentum buffer, with dampening skipped on the first step.

    .. math:: b_1 = g_1,\quad b_t = \mu b_{t-1} + (1 - \tau) g_t,\quad
              \text{out}_t = g_t + \mu b_t \;(\text{nesterov}) \text{ or } b_t

    Differs from ``optax.trace`` only through dampening ``tau`` (optax has
    none); torch applies no dampening on the first step (pytorch#23796), which
    is why this transform keeps a step counter.
    """
    static_m = isinstance(momentum, (int, float))
    no_damp = _core.is_static_zero(dampening)

    def init_fn(params):
        return TraceTorchState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        first = state.count == 0

        def new_buf(g, b):
            if no_damp:
                return momentum * b + g
            return jnp.where(first, g, momentum * b + (1 - dampening) * g)

        def out(g, b):
            o = g + momentum * b if nesterov else b
            if not static_m:  # an injected momentum of 0 must give torch's plain g
                o = jnp.where(momentum == 0, g, o)
            return o

        bufs = jax.tree.map(new_buf, updates, state.momentum_buffer)
        outs = jax.tree.map(out, updates, bufs)
        return outs, TraceTorchState(inc(state.count), bufs)

    return optax.GradientTransformation(init_fn, update_fn)


def sgd(lr: ScalarOrSchedule = 1e-3, momentum: Any = 0, dampening: Any = 0, weight_decay: Any = 0,
        nesterov: bool = False, maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.SGD`` as an optax transformation.

    .. math:: g \leftarrow \pm g + \lambda p,\quad b_t = \mu b_{t-1} + (1-\tau) g\ (b_1 = g),\quad
              p \leftarrow p - \eta\,(g + \mu b_t \text{ if nesterov else } b_t)

    Unlike ``optax.sgd`` it has dampening (not applied on the first step, as
    torch) and coupled weight decay; ``optax.sgd(lr, momentum, nesterov)``
    equals ``sgd(lr, momentum, nesterov=nesterov)``.

    Example: ``tx = jaxinit.optim.sgd(0.1, momentum=0.9, weight_decay=5e-4)``.
    """
    _core.check("sgd", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, maximize=maximize)
    return optax.chain(
        negate() if maximize else optax.identity(),
        l2(weight_decay),
        optax.identity() if _core.is_static_zero(momentum) else trace_torch(momentum, dampening, nesterov),
        scale_by_torch_lr(lr),
    )
