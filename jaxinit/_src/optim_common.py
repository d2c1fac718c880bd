r"""Optimizers for optax with ``torch.optim``'s exact update rules: what they share.

One module per optimizer family (``sgd.py``, ``adam.py``, ...; the optimizer registry
``_jaxinit/optim_registry.py`` names each); this one holds the helpers they share and the
conventions and state layouts below.

Every factory returns an ``optax.GradientTransformation``: an ``optax.chain`` of
small transforms whose updates equal ``torch.optim``'s parameter changes step
for step (float64: within 1e-12 relative after 500 steps; see the README for
the float32 figures)::

    import jax, jax.numpy as jnp, optax
    from jaxinit import optim
    tx = optim.adam(1e-3, weight_decay=1e-2)             # == torch.optim.Adam(p, 1e-3, weight_decay=1e-2)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.full(3, 0.5)}, state, params)
    params = optax.apply_updates(params, updates)

``lr`` is a number or an optax schedule (``count -> lr``, ``count`` = number of
updates already applied, i.e. the lr torch's scheduler has set after ``count``
``scheduler.step()`` calls). All factories work under ``jax.jit``, inside
``optax.multi_transform`` (torch's parameter groups) and with
``optax.inject_hyperparams``.

Injected / traced hyperparameters
---------------------------------
Structure is decided only from Python numbers given at construction
(``_jaxinit.optim.is_static_zero``): ``momentum=0`` (a Python number) means no
momentum buffer and ``weight_decay=0`` no decay term, exactly like torch's
``if momentum != 0``. A hyperparameter that arrives as an array (as
``optax.inject_hyperparams`` passes every numeric argument, ``momentum=0``
included) keeps the general path: the buffer exists and the value is used
arithmetically, which gives torch's numbers for every value (momentum 0 is
selected with ``jnp.where`` so that torch's "no momentum" update ``g`` comes out
even with dampening). Booleans (``nesterov``, ``centered``, ``amsgrad``, ...)
and ``betas`` (a tuple) are always static. Values are checked like torch's
constructor does when they are concrete; traced values are not checked.

State layout (for state conversion with torch's ``state_dict``)
----------------------------------------------------------------
Each optimizer's state is the ``optax.chain`` tuple below, always the same
length whatever the options (absent parts are ``optax.EmptyState()``); fields
holding ``None`` are absent subtrees. ``count`` fields are int32 scalars equal
to the number of updates applied (torch's ``state['step']``).

======== ======================================================================
sgd      ``(Empty [maximize], Empty [L2 decay], TraceTorchState | Empty,
         ScaleByScheduleState)``
adagrad  ``(Empty, Empty, ScaleByTorchAdagradState, ScaleByScheduleState)``
rmsprop  ``(Empty, Empty, ScaleByTorchRmsState, TraceTorchState | Empty,
         ScaleByScheduleState)``
adam     ``(Empty, Empty [L2 decay], ScaleByTorchAdamState, Empty [decoupled
         decay], ScaleByScheduleState)``; adamw has the same layout
lars     ``(Empty [trust ratio], ScaleByScheduleState, optax.TraceState)``
nadam    ``(Empty, Empty [L2], ScaleByTorchNadamState, Empty [decoupled],
         ScaleByScheduleState)``; radam and adamax (Radam/Adamax states) alike
adadelta ``(Empty, Empty, ScaleByTorchAdadeltaState, ScaleByScheduleState)``
rprop    ``(Empty [maximize], ScaleByTorchRpropState)``
asgd     ``(Empty [maximize], Empty [L2 decay], ScaleByTorchAsgdState)``
======== ======================================================================

* ``TraceTorchState(count, momentum_buffer)``: torch ``momentum_buffer``;
  torch stores ``None`` while ``count == 0`` (SGD); RMSprop's buffer starts at 0.
* ``ScaleByTorchAdagradState(count, sum)``: torch ``step``, ``sum``.
* ``ScaleByTorchRmsState(count, square_avg, grad_avg)``: torch ``step``,
  ``square_avg``, ``grad_avg`` (``None`` unless ``centered``).
* ``ScaleByTorchAdamState(count, exp_avg, exp_avg_sq, max_exp_avg_sq)``: torch
  ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (``None`` unless
  ``amsgrad``; with ``amsgrad_bias_corrected=True`` it holds the max of the
  bias-corrected ``exp_avg_sq``, optax's ``nu_max``).
* ``ScaleByTorchNadamState(count, mu_product, exp_avg, exp_avg_sq)``,
  ``ScaleByTorchRadamState(count, exp_avg, exp_avg_sq)``,
  ``ScaleByTorchAdamaxState(count, exp_avg, exp_inf)``,
  ``ScaleByTorchAdadeltaState(count, square_avg, acc_delta)``,
  ``ScaleByTorchRpropState(count, prev, step_size)``,
  ``ScaleByTorchAsgdState(count, eta, mu, ax)``: torch's keys; ``mu_product``,
  ``eta`` and ``mu`` are one 0-d array per parameter (as torch keeps them) in
  the factory's ``scalar_dtype``.
* ``optax.ScaleByScheduleState(count)``: the lr schedule's counter.

Field names are unique per optimizer, so ``optax.tree_utils.tree_get(state,
"exp_avg")`` finds them, also inside ``inject_hyperparams``/``multi_transform``.

optax-convention options (same names in :mod:`torchinit.optim`)
----------------------------------------------------------------
* ``eps_in_sqrt`` (adagrad, rmsprop): ``g * rsqrt(s + eps)`` instead of torch's
  ``g / (sqrt(s) + eps)``; ``adagrad(lr, initial_accumulator_value=0.1,
  eps=1e-7, eps_in_sqrt=True)`` is ``optax.adagrad(lr)``.
* ``initial_scale`` (rmsprop): start of ``square_avg`` (optax's
  ``initial_scale``); ``rmsprop(lr, alpha=0.9, eps_in_sqrt=True)`` is
  ``optax.rmsprop(lr)``.
* ``eps_root`` (adam, adamw): optax's ``eps_root``, denominator
  ``sqrt(v_hat + eps_root) + eps``.
* ``amsgrad_bias_corrected`` (adam, adamw, with ``amsgrad=True``): keep the max
  of the bias-corrected second moment, as ``optax.amsgrad`` does (optax#1389).
"""
from __future__ import annotations

from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core


ScalarOrSchedule = Union[float, jax.Array, Callable[[jax.Array], Any]]


def inc(count):
    return optax.safe_increment(count) if hasattr(optax, "safe_increment") else count + 1


def powm1(beta, count, dtype):
    """``1 - beta ** count`` in ``dtype`` (torch's bias correction)."""
    return 1 - jnp.asarray(beta, dtype) ** count.astype(dtype)


def lerp(start, end, weight):
    """``torch.lerp``: ``start + weight * (end - start)``."""
    return start + weight * (end - start)


def aten_lerp(start, end, weight):
    """``torch.lerp`` as ATen computes it: from ``start`` below weight 0.5, from ``end`` above."""
    if isinstance(weight, (int, float)):
        return start + weight * (end - start) if abs(weight) < 0.5 else end - (end - start) * (1 - weight)
    w = jnp.asarray(weight, start.dtype)
    return jnp.where(jnp.abs(w) < 0.5, start + w * (end - start), end - (end - start) * (1 - w))


def dtype_of(tree):
    leaves = jax.tree.leaves(tree)
    return jnp.result_type(*leaves) if leaves else jnp.float32


def negate() -> optax.GradientTransformation:
    """torch's ``maximize=True``: ascend by negating the gradient first."""
    return optax.scale(-1.0)


def l2(weight_decay) -> optax.GradientTransformation:
    """torch's coupled weight decay ``g + weight_decay * p`` (absent for a Python 0)."""
    if _core.is_static_zero(weight_decay):
        return optax.identity()
    return optax.add_decayed_weights(weight_decay)


def scale_by_torch_lr(lr: ScalarOrSchedule, lr_decay: Any = 0.0) -> optax.GradientTransformation:
    r"""Multiply by ``-lr(count) / (1 + count * lr_decay)`` (Adagrad's decay; 0 for others).

    Always keeps an ``optax.ScaleByScheduleState(count)`` (also for a constant
    lr), so every optimizer's state has the same structure for any ``lr``.
    """
    sched = lr if callable(lr) else (lambda count: lr)
    if _core.is_static_zero(lr_decay):
        return optax.scale_by_schedule(lambda count: -sched(count))
    return optax.scale_by_schedule(lambda count: -sched(count) / (1 + count * lr_decay))


def wide():
    """The widest float dtype on: torch computes these optimizers' scalars in Python (double) precision."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def scalar(x, dtype):
    """A schedule value / hyperparameter as an array of ``dtype``."""
    return jnp.asarray(x).astype(dtype)


def lr_at(lr, count):
    return lr(count) if callable(lr) else lr


def adam_like(who, maximize, weight_decay, decoupled, core, lr) -> optax.GradientTransformation:
    """``(Empty [maximize], Empty [L2 decay], core, Empty [decoupled decay], ScaleByScheduleState)``."""
    return optax.chain(
        negate() if maximize else optax.identity(),
        optax.identity() if decoupled else l2(weight_decay),
        core,
        l2(weight_decay) if decoupled else optax.identity(),
        scale_by_torch_lr(lr),
    )


def with_decoupled_decay(core, lr, weight_decay):
    """``core``'s output minus ``lr(count) * weight_decay * p`` (torch's ``p *= 1 - lr * wd``), same state."""
    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("decoupled weight decay needs params: call update(grads, state, params).")
        lr_now = lr_at(lr, state.count)
        out, new_state = core.update(updates, state, params)
        out = jax.tree.map(lambda u, p: u - (lr_now * weight_decay) * p, out, params)
        return out, new_state

    return optax.GradientTransformation(core.init, update_fn)
