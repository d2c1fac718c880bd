r"""torch's ``ReduceLROnPlateau`` as an optax transformation whose ``update`` takes the metric.

ReduceLROnPlateau is driven by a metric, not by the step, so it is no schedule: like
``optax.contrib.reduce_on_plateau`` it is a wrapper transformation. Unlike optax's (which
scales the updates by a factor), it changes the *learning rate* of the wrapped optimizer,
as torch does: the wrapped transformation must be built with ``optax.inject_hyperparams``
so its lr lives in its state (``hyperparams["lr"]``; ``lr_name="learning_rate"`` for optax's
own optimizers). Every injected lr found in the state (one per param group of a
``from_torch`` ``multi_transform``) is reduced, with its own ``min_lr``.

Order, as in a torch loop (``optimizer.step()`` then ``scheduler.step(metric)``): an
``update(..., value=metric)`` first applies the current lr, then records the metric; the
next update uses the reduced lr. ``value=None`` (the default) records nothing: pass the
metric once per epoch (e.g. on the epoch's last update) for torch's per-epoch use.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from _jaxinit import schedules as _core
from _jaxinit.errors import InitError


class ReduceLROnPlateauState(NamedTuple):
    """torch's ``ReduceLROnPlateau`` counters (its ``state_dict`` names) and the wrapped state."""
    best: jax.Array
    num_bad_epochs: jax.Array
    cooldown_counter: jax.Array
    last_epoch: jax.Array
    inner_state: optax.OptState


def _lr_nodes(node, lr_name, path=()):
    """Paths to every ``inject_hyperparams`` state holding ``lr_name``, in a fixed order."""
    if hasattr(node, "hyperparams") and isinstance(getattr(node, "hyperparams"), dict) and \
            lr_name in node.hyperparams:
        return [path]
    out = []
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        for f in node._fields:
            out += _lr_nodes(getattr(node, f), lr_name, path + (f,))
    elif isinstance(node, (tuple, list)):
        for k, x in enumerate(node):
            out += _lr_nodes(x, lr_name, path + (k,))
    elif isinstance(node, dict):
        for k, x in node.items():
            out += _lr_nodes(x, lr_name, path + (k,))
    return out


def _get(node, path):
    for p in path:
        node = getattr(node, p) if isinstance(p, str) and hasattr(node, "_fields") else node[p]
    return node


def _set(node, path, value):
    if not path:
        return value
    p, rest = path[0], path[1:]
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return node._replace(**{p: _set(getattr(node, p), rest, value)})  # type: ignore[attr-defined]  # a NamedTuple
    if isinstance(node, dict):
        return {**node, p: _set(node[p], rest, value)}
    items = list(node)
    items[p] = _set(items[p], rest, value)
    return type(node)(items)


def get_lrs(state, lr_name: str = "lr") -> list:
    """The injected lrs in ``state`` (one per param group), in a fixed order."""
    return [_get(state, p).hyperparams[lr_name] for p in _lr_nodes(state, lr_name)]


def set_lrs(state, lrs: Sequence[Any], lr_name: str = "lr"):
    for path, lr in zip(_lr_nodes(state, lr_name), lrs, strict=True):
        node = _get(state, path)
        old = node.hyperparams[lr_name]
        state = _set(state, path, node._replace(hyperparams={**node.hyperparams,
                                                                lr_name: jnp.asarray(lr, jnp.asarray(old).dtype)}))
    return state


def reduce_lr_on_plateau(inner: optax.GradientTransformation, mode: str = "min", factor: float = 0.1,
                         patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                         cooldown: int = 0, min_lr: float | Sequence[float] = 0.0, eps: float = 1e-8, *,
                         lr_name: str = "lr") -> optax.GradientTransformationExtraArgs:
    r"""torch's ``ReduceLROnPlateau(optimizer, mode, factor, ...)`` around ``inner``.

    At each ``update(updates, state, params, value=metric)``, after ``inner``'s update with
    the current lr (torch's step semantics, ``rel``/``abs`` and ``min``/``max``):

    .. math:: \text{better} = \begin{cases} m < \text{best}(1 - \theta) & \text{min, rel}\\
              m < \text{best} - \theta & \text{min, abs} \\ m > \text{best}(1 + \theta) &
              \text{max, rel} \\ m > \text{best} + \theta & \text{max, abs}\end{cases}

    ``best`` and ``num_bad_epochs`` update, a cooldown in progress counts down and zeroes
    ``num_bad_epochs``, and when ``num_bad_epochs > patience`` every lr becomes
    ``max(lr * factor, min_lr)`` if that lowers it by more than ``eps``; then the cooldown
    restarts. ``value=None`` skips the metric step.

    Args:
      inner: the optimizer, built with ``optax.inject_hyperparams`` (``from_torch`` does it).
      mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps: torch's
        (``min_lr`` may be one per param group, in the order of :func:`get_lrs`).
      lr_name: the injected hyperparameter that is the lr (``"learning_rate"`` for optax's).

    Example::

        tx = jaxinit.optim.reduce_lr_on_plateau(
            optax.inject_hyperparams(jaxinit.optim.sgd)(lr=0.1, momentum=0.9), patience=3)
        updates, state = tx.update(grads, state, params, value=val_loss)

    The counters convert both ways with :func:`export_plateau_state` /
    :func:`import_plateau_state` (torch's ``best``, ``num_bad_epochs``,
    ``cooldown_counter``, ``last_epoch`` and the group lrs).
    """
    c = _core.check_reduce_lr_on_plateau(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)
    inner = optax.with_extra_args_support(inner)
    worse = math.inf if c["mode"] == "min" else -math.inf

    def min_lrs(n):
        if isinstance(c["min_lr"], tuple):
            if len(c["min_lr"]) != n:
                raise InitError(f"reduce_lr_on_plateau: expected {n} min_lrs (one per injected lr), got "
                                f"{len(c['min_lr'])}.")
            return c["min_lr"]
        return (c["min_lr"],) * n

    def init_fn(params):
        inner_state = inner.init(params)
        n = len(_lr_nodes(inner_state, lr_name))
        if n == 0:
            raise InitError(
                f"reduce_lr_on_plateau: the wrapped state has no injected {lr_name!r}: build the optimizer with "
                "optax.inject_hyperparams so its lr can change, e.g. "
                "optax.inject_hyperparams(jaxinit.optim.sgd)(lr=0.1), or pass lr_name='learning_rate' for optax's.")
        min_lrs(n)
        dtype = jnp.result_type(float)
        zero = jnp.zeros((), jnp.int32)
        return ReduceLROnPlateauState(jnp.asarray(worse, dtype), zero, zero, zero, inner_state)

    def update_fn(updates, state, params=None, *, value=None, **extra):
        updates, inner_state = inner.update(updates, state.inner_state, params, **extra)
        if value is None:
            return updates, state._replace(inner_state=inner_state)
        current = jnp.asarray(value, state.best.dtype)
        best, th = state.best, c["threshold"]
        if c["mode"] == "min":
            better = current < (best * (1.0 - th) if c["threshold_mode"] == "rel" else best - th)
        else:
            better = current > (best * (th + 1.0) if c["threshold_mode"] == "rel" else best + th)
        best = jnp.where(better, current, best)
        bad = jnp.where(better, 0, state.num_bad_epochs + 1)
        in_cooldown = state.cooldown_counter > 0
        cool = jnp.where(in_cooldown, state.cooldown_counter - 1, state.cooldown_counter)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad > c["patience"]
        lrs = get_lrs(inner_state, lr_name)
        new_lrs = []
        for old, floor in zip(lrs, min_lrs(len(lrs))):
            new = jnp.maximum(old * c["factor"], floor)
            new_lrs.append(jnp.where(reduce & (old - new > c["eps"]), new, old))
        inner_state = set_lrs(inner_state, new_lrs, lr_name)
        cool = jnp.where(reduce, c["cooldown"], cool)
        bad = jnp.where(reduce, 0, bad)
        return updates, ReduceLROnPlateauState(best, bad.astype(jnp.int32), cool.astype(jnp.int32),
                                               state.last_epoch + 1, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _find_plateau(opt_state):
    if isinstance(opt_state, ReduceLROnPlateauState):
        return opt_state
    raise InitError("plateau state: opt_state must be the state of jaxinit.optim.reduce_lr_on_plateau(...) "
                    f"(a ReduceLROnPlateauState), got {type(opt_state).__name__}.")


def export_plateau_state(opt_state: ReduceLROnPlateauState, *, lr_name: str = "lr") -> dict:
    """The counters and lrs as ``{"best", "num_bad_epochs", "cooldown_counter", "last_epoch", "lrs"}``
    (Python numbers), loadable into torch with :func:`torchinit.optim.import_plateau_state`."""
    st = _find_plateau(opt_state)
    return {"best": float(st.best), "num_bad_epochs": int(st.num_bad_epochs),
            "cooldown_counter": int(st.cooldown_counter), "last_epoch": int(st.last_epoch),
            "lrs": [float(x) for x in get_lrs(st.inner_state, lr_name)]}


def import_plateau_state(state: Any, opt_state: ReduceLROnPlateauState, *,
                         lr_name: str = "lr") -> ReduceLROnPlateauState:
    """``opt_state`` with the counters and group lrs of ``state``: a torch ``ReduceLROnPlateau``
    or :func:`export_plateau_state`'s / :func:`torchinit.optim.export_plateau_state`'s dict."""
    if not isinstance(state, dict):
        state = _core.plateau_state_from_torch(state)
    st = _find_plateau(opt_state)
    n = len(_lr_nodes(st.inner_state, lr_name))
    if len(state["lrs"]) != n:
        raise InitError(f"import_plateau_state: the state has {len(state['lrs'])} lrs (param groups), this "
                        f"optimizer state {n}.")
    return ReduceLROnPlateauState(
        jnp.asarray(state["best"], st.best.dtype), jnp.asarray(state["num_bad_epochs"], jnp.int32),
        jnp.asarray(state["cooldown_counter"], jnp.int32), jnp.asarray(state["last_epoch"], jnp.int32),
        set_lrs(st.inner_state, state["lrs"], lr_name))
