r"""Optimizers for optax with ``torch.optim``'s exact update rules.

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

from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

from _jaxinit import optim as _core

ScalarOrSchedule = Union[float, jax.Array, Callable[[jax.Array], Any]]


# ----------------------------------------------------------------- helpers
def _inc(count):
    return optax.safe_increment(count) if hasattr(optax, "safe_increment") else count + 1


def _powm1(beta, count, dtype):
    """``1 - beta ** count`` in ``dtype`` (torch's bias correction)."""
    return 1 - jnp.asarray(beta, dtype) ** count.astype(dtype)


def _lerp(start, end, weight):
    """``torch.lerp``: ``start + weight * (end - start)``."""
    return start + weight * (end - start)


def _dtype_of(tree):
    leaves = jax.tree.leaves(tree)
    return jnp.result_type(*leaves) if leaves else jnp.float32


def _negate() -> optax.GradientTransformation:
    """torch's ``maximize=True``: ascend by negating the gradient first."""
    return optax.scale(-1.0)


def _l2(weight_decay) -> optax.GradientTransformation:
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


# ----------------------------------------------------------------- EMA
class TorchEmaState(NamedTuple):
    """State of :func:`ema`: ``count`` updates seen, ``ema`` the raw average."""
    count: jax.Array
    ema: optax.Updates


def ema(decay: Any, debias: bool = False) -> optax.GradientTransformation:
    r"""Exponentially weighted average of the updates, torch's ``lerp`` form.

    .. math:: m_t = m_{t-1} + (1 - \beta)(g_t - m_{t-1}),\quad
              \text{out}_t = m_t \;\text{ or }\; m_t / (1 - \beta^t)\ (\text{debias})

    ``m_0 = 0``. This is Adam's ``exp_avg`` (``torch.Tensor.lerp_``); with
    ``debias=True`` the bias-corrected average :math:`\hat m_t`. Equal in
    exact arithmetic to ``optax.ema(decay, debias)``, which computes
    ``(1 - decay) * g + decay * m`` (different float rounding).

    Example: ``optax.chain(jaxinit.optim.ema(0.9, debias=True), optax.scale(-0.1))``.
    """
    _core.check("ema", decay=decay, debias=debias)

    def init_fn(params):
        return TorchEmaState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        count = _inc(state.count)
        m = jax.tree.map(lambda m, g: _lerp(m, g, 1 - decay), state.ema, updates)
        out = m
        if debias:
            out = jax.tree.map(lambda x: x / _powm1(decay, count, x.dtype), m)
        return out, TorchEmaState(count, m)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------- SGD momentum
class TraceTorchState(NamedTuple):
    """State of :func:`trace_torch`: ``count`` steps taken, torch's ``momentum_buffer``."""
    count: jax.Array
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
        return outs, TraceTorchState(_inc(state.count), bufs)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------- Adagrad
class ScaleByTorchAdagradState(NamedTuple):
    """State of :func:`scale_by_torch_adagrad`: torch's ``step`` and ``sum``."""
    count: jax.Array
    sum: optax.Updates


def scale_by_torch_adagrad(initial_accumulator_value: Any = 0.0, eps: Any = 1e-10,
                           eps_in_sqrt: bool = False) -> optax.GradientTransformation:
    r"""Adagrad's scaling :math:`s_t = s_{t-1} + g_t^2`, out :math:`g_t / (\sqrt{s_t} + \epsilon)`.

    ``eps_in_sqrt=True``: optax's :math:`g_t \cdot \mathrm{rsqrt}(s_t + \epsilon)`
    (0 where :math:`s_t = 0`), as ``optax.scale_by_rss``.
    """
    def init_fn(params):
        return ScaleByTorchAdagradState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update_fn(updates, state, params=None):
        del params
        s = jax.tree.map(lambda s, g: s + g * g, state.sum, updates)
        if eps_in_sqrt:
            out = jax.tree.map(lambda s, g: jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0).astype(g.dtype) * g, s, updates)
        else:
            out = jax.tree.map(lambda s, g: g / (jnp.sqrt(s) + eps), s, updates)
        return out, ScaleByTorchAdagradState(_inc(state.count), s)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------- RMSprop
class ScaleByTorchRmsState(NamedTuple):
    """State of :func:`scale_by_torch_rms`: torch's ``step``, ``square_avg``, ``grad_avg`` (None unless centered)."""
    count: jax.Array
    square_avg: optax.Updates
    grad_avg: Any


def scale_by_torch_rms(alpha: Any = 0.99, eps: Any = 1e-8, centered: bool = False,
                       eps_in_sqrt: bool = False, initial_scale: Any = 0.0) -> optax.GradientTransformation:
    r"""RMSprop's scaling, torch's formulas.

    .. math:: v_t = \alpha v_{t-1} + (1-\alpha) g_t^2,\quad
              \bar g_t = \mathrm{lerp}(\bar g_{t-1}, g_t, 1-\alpha)\ (\text{centered}),\quad
              \text{out}_t = g_t / (\sqrt{v_t - \bar g_t^2} + \epsilon)

    ``eps_in_sqrt=True``: :math:`g_t\,\mathrm{rsqrt}(v_t - \bar g_t^2 + \epsilon)` (optax's default).
    ``initial_scale``: :math:`v_0` (optax's ``initial_scale``; torch uses 0).
    """
    def init_fn(params):
        return ScaleByTorchRmsState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(lambda p: jnp.full_like(p, initial_scale), params),
            jax.tree.map(jnp.zeros_like, params) if centered else None)

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree.map(lambda v, g: v * alpha + (1 - alpha) * (g * g), state.square_avg, updates)
        if centered:
            ga = jax.tree.map(lambda a, g: _lerp(a, g, 1 - alpha), state.grad_avg, updates)
            var = jax.tree.map(lambda v, a: v - a * a, v, ga)
        else:
            ga, var = None, v
        if eps_in_sqrt:
            out = jax.tree.map(lambda s, g: jax.lax.rsqrt(s + eps) * g, var, updates)
        else:
            out = jax.tree.map(lambda s, g: g / (jnp.sqrt(s) + eps), var, updates)
        return out, ScaleByTorchRmsState(_inc(state.count), v, ga)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------- Adam
class ScaleByTorchAdamState(NamedTuple):
    """State of :func:`scale_by_torch_adam`: torch's ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``."""
    count: jax.Array
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates
    max_exp_avg_sq: Any


def scale_by_torch_adam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, amsgrad: bool = False,
                        eps_root: Any = 0.0, amsgrad_bias_corrected: bool = False) -> optax.GradientTransformation:
    r"""Adam's scaling, torch's formulas (lr applied afterwards).

    .. math:: m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
              v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,\quad
              \hat v_t = \max(\hat v_{t-1}, v_t)\ (\text{amsgrad}) \text{ else } v_t,

    .. math:: \text{out}_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\hat v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    torch's AMSGrad keeps the max of the *raw* :math:`v_t` and bias-corrects
    afterwards; ``optax.amsgrad`` keeps the max of :math:`v_t/(1-\beta_2^t)`
    (``amsgrad_bias_corrected=True`` here). ``eps_root`` moves to optax's
    denominator :math:`\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon`.
    """
    optax_denominator = not _core.is_static_zero(eps_root) or amsgrad_bias_corrected

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchAdamState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros() if amsgrad else None)

    def update_fn(updates, state, params=None):
        del params
        count = _inc(state.count)
        m = jax.tree.map(lambda m, g: _lerp(m, g, 1 - b1), state.exp_avg, updates)
        v = jax.tree.map(lambda v, g: v * b2 + (1 - b2) * (g * g), state.exp_avg_sq, updates)
        dtype = _dtype_of(updates)
        bc1, bc2 = _powm1(b1, count, dtype), _powm1(b2, count, dtype)
        vmax = None
        if amsgrad and amsgrad_bias_corrected:
            vmax = jax.tree.map(lambda a, v: jnp.maximum(a, v / bc2), state.max_exp_avg_sq, v)
            denom = jax.tree.map(lambda a: jnp.sqrt(a + eps_root) + eps, vmax)
        else:
            vv = v
            if amsgrad:
                vmax = vv = jax.tree.map(jnp.maximum, state.max_exp_avg_sq, v)
            if optax_denominator:
                denom = jax.tree.map(lambda a: jnp.sqrt(a / bc2 + eps_root) + eps, vv)
            else:
                denom = jax.tree.map(lambda a: jnp.sqrt(a) / jnp.sqrt(bc2) + eps, vv)
        out = jax.tree.map(lambda m, d: (m / d / bc1).astype(m.dtype), m, denom)
        return out, ScaleByTorchAdamState(count, m, v, vmax)

    return optax.GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------- optimizers
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
        _negate() if maximize else optax.identity(),
        _l2(weight_decay),
        optax.identity() if _core.is_static_zero(momentum) else trace_torch(momentum, dampening, nesterov),
        scale_by_torch_lr(lr),
    )


def adagrad(lr: ScalarOrSchedule = 1e-2, lr_decay: Any = 0, weight_decay: Any = 0,
            initial_accumulator_value: Any = 0, eps: Any = 1e-10, maximize: bool = False,
            eps_in_sqrt: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adagrad`` as an optax transformation.

    .. math:: g \leftarrow \pm g + \lambda p,\quad s_t = s_{t-1} + g^2\ (s_0 = \text{initial\_accumulator\_value}),

    .. math:: p \leftarrow p - \frac{\eta}{1 + (t-1)\,\text{lr\_decay}}\, \frac{g}{\sqrt{s_t} + \epsilon}

    ``optax.adagrad(lr)`` starts at 0.1 with ``eps=1e-7`` inside the root:
    reproduce it with ``adagrad(lr, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True)``.
    """
    _core.check("adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                eps_in_sqrt=eps_in_sqrt)
    return optax.chain(
        _negate() if maximize else optax.identity(),
        _l2(weight_decay),
        scale_by_torch_adagrad(initial_accumulator_value, eps, eps_in_sqrt),
        scale_by_torch_lr(lr, lr_decay),
    )


def rmsprop(lr: ScalarOrSchedule = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0,
            momentum: Any = 0, centered: bool = False, maximize: bool = False,
            eps_in_sqrt: bool = False, initial_scale: Any = 0.0) -> optax.GradientTransformation:
    r"""``torch.optim.RMSprop`` as an optax transformation.

    .. math:: u_t = g / (\sqrt{v_t - \bar g_t^2} + \epsilon),\quad
              b_t = \mu b_{t-1} + u_t,\quad p \leftarrow p - \eta\, b_t

    The momentum buffer is taken *before* the lr, as torch does; ``optax.rmsprop``
    traces after the lr, which differs when lr is scheduled. ``optax.rmsprop(lr)``
    is ``rmsprop(lr, alpha=0.9, eps_in_sqrt=True)`` (for a constant lr).
    """
    _core.check("rmsprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale)
    return optax.chain(
        _negate() if maximize else optax.identity(),
        _l2(weight_decay),
        scale_by_torch_rms(alpha, eps, centered, eps_in_sqrt, initial_scale),
        optax.identity() if _core.is_static_zero(momentum) else trace_torch(momentum),
        scale_by_torch_lr(lr),
    )


def _adam_family(who, lr, betas, eps, weight_decay, amsgrad, maximize, eps_root, amsgrad_bias_corrected,
                 decoupled):
    _core.check(who, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                maximize=maximize, eps_root=eps_root, amsgrad_bias_corrected=amsgrad_bias_corrected)
    b1, b2 = betas
    return optax.chain(
        _negate() if maximize else optax.identity(),
        optax.identity() if decoupled else _l2(weight_decay),
        scale_by_torch_adam(b1, b2, eps, amsgrad, eps_root, amsgrad_bias_corrected),
        _l2(weight_decay) if decoupled else optax.identity(),
        scale_by_torch_lr(lr),
    )


def adam(lr: ScalarOrSchedule = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
         amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
         amsgrad_bias_corrected: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adam`` as an optax transformation (``weight_decay`` is L2 on the gradient).

    .. math:: g \leftarrow \pm g + \lambda p,\quad
              p \leftarrow p - \eta\,\frac{m_t/(1-\beta_1^t)}{\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon}

    See :func:`scale_by_torch_adam` (AMSGrad differs from ``optax.amsgrad``:
    use ``amsgrad_bias_corrected=True`` for optax's).
    """
    return _adam_family("adam", lr, betas, eps, weight_decay, amsgrad, maximize, eps_root,
                        amsgrad_bias_corrected, decoupled=False)


def adamw(lr: ScalarOrSchedule = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 1e-2,
          amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
          amsgrad_bias_corrected: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.AdamW`` as an optax transformation (decoupled decay, default 1e-2).

    .. math:: p \leftarrow p - \eta\,(\text{adam}_t + \lambda p)

    ``optax.adamw``'s default weight decay is 1e-4, torch's 1e-2.
    """
    return _adam_family("adamw", lr, betas, eps, weight_decay, amsgrad, maximize, eps_root,
                        amsgrad_bias_corrected, decoupled=True)


# ----------------------------------------------------------------- LARS
def _resolve_mask(mask, params):
    if isinstance(mask, bool):
        return jax.tree.map(lambda _: mask, params)
    return mask(params) if callable(mask) else mask


def scale_by_lars_trust_ratio(trust_coefficient: Any = 0.001, weight_decay: Any = 0.0, eps: Any = 0.0,
                              decay_in_norm: bool = False, weight_decay_mask: Any = True,
                              trust_ratio_mask: Any = True) -> optax.GradientTransformation:
    r"""LARS's local step (You et al. 2017, Algorithm 1), per parameter array ``w``:

    .. math:: d = g + \beta w,\qquad
              \text{out} = \eta\,\frac{\lVert w\rVert}{\lVert g\rVert + \beta\lVert w\rVert + \epsilon}\; d

    ``decay_in_norm=True`` uses :math:`\lVert d\rVert + \epsilon` as the
    denominator instead (``optax.lars``' form). The ratio is 1 where
    :math:`\lVert w\rVert = 0` or the denominator norm is 0 (as
    ``optax.scale_by_trust_ratio``). ``weight_decay_mask`` / ``trust_ratio_mask``:
    optax masks (bool, pytree of bools, or ``params -> pytree``); False leaves
    are not decayed / not rescaled (biases and norm scales usually).
    """
    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("scale_by_lars_trust_ratio needs params: call update(grads, state, params).")
        wdm = _resolve_mask(weight_decay_mask, params)
        trm = _resolve_mask(trust_ratio_mask, params)

        def one(g, w, decay_it, scale_it):
            wd = weight_decay if decay_it else 0.0
            d = g if _core.is_static_zero(wd) else g + wd * w
            if not scale_it:
                return d
            w_norm = jnp.linalg.norm(w.ravel())
            g_norm = jnp.linalg.norm(d.ravel() if decay_in_norm else g.ravel())
            denom_norm = g_norm if decay_in_norm else g_norm + wd * w_norm
            ratio = trust_coefficient * w_norm / (denom_norm + eps)
            ratio = jnp.where((w_norm == 0) | (denom_norm == 0), jnp.ones_like(ratio), ratio)
            return d * ratio.astype(d.dtype)

        return jax.tree.map(one, updates, params, wdm, trm), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def lars(lr: ScalarOrSchedule, momentum: Any = 0.9, weight_decay: Any = 0.0, trust_coefficient: Any = 0.001,
         eps: Any = 0.0, nesterov: bool = False, decay_in_norm: bool = False, weight_decay_mask: Any = True,
         trust_ratio_mask: Any = True) -> optax.GradientTransformation:
    r"""LARS (You et al. 2017): layer-wise trust ratio, then lr, then momentum.

    .. math:: v_t = \mu v_{t-1} + \gamma_t\,\eta\frac{\lVert w\rVert}{\lVert g\rVert+\beta\lVert w\rVert+\epsilon}(g+\beta w),
              \quad w \leftarrow w - v_t

    torch has no LARS; :func:`torchinit.optim.lars` is the mirror.
    ``lars(lr, momentum, weight_decay, trust_coefficient, eps, nesterov,
    decay_in_norm=True, ...)`` equals ``optax.lars`` with the same arguments.
    Exclude biases / BatchNorm with e.g.
    ``weight_decay_mask=trust_ratio_mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)``.
    """
    _core.check("lars", lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps,
                trust_coefficient=trust_coefficient, nesterov=nesterov, decay_in_norm=decay_in_norm)
    return optax.chain(
        scale_by_lars_trust_ratio(trust_coefficient, weight_decay, eps, decay_in_norm,
                                  weight_decay_mask, trust_ratio_mask),
        scale_by_torch_lr(lr),
        optax.trace(decay=momentum, nesterov=nesterov),
    )


# ----------------------------------------------------------------- the rest of torch.optim
def _wide():
    """The widest float dtype on: torch computes these optimizers' scalars in Python (double) precision."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def _scalar(x, dtype):
    """A schedule value / hyperparameter as an array of ``dtype``."""
    return jnp.asarray(x).astype(dtype)


def _lr_at(lr, count):
    return lr(count) if callable(lr) else lr


def _adam_like(who, maximize, weight_decay, decoupled, core, lr) -> optax.GradientTransformation:
    """``(Empty [maximize], Empty [L2 decay], core, Empty [decoupled decay], ScaleByScheduleState)``."""
    return optax.chain(
        _negate() if maximize else optax.identity(),
        optax.identity() if decoupled else _l2(weight_decay),
        core,
        _l2(weight_decay) if decoupled else optax.identity(),
        scale_by_torch_lr(lr),
    )


# One NamedTuple state per transform, optax's pattern (by design): the field names are torch's
# state keys, which the state converters read.
class ScaleByTorchNadamState(NamedTuple):
    """State of :func:`scale_by_torch_nadam`: torch's ``step``, ``mu_product`` (one 0-d array per
    parameter, in ``scalar_dtype``), ``exp_avg``, ``exp_avg_sq``."""
    count: jax.Array
    mu_product: optax.Updates
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates


def scale_by_torch_nadam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8, momentum_decay: Any = 4e-3,
                         scalar_dtype: str = "float32", differentiable_lr: Any = None) -> optax.GradientTransformation:
    r"""NAdam's scaling, torch's formulas (lr applied afterwards).

    .. math:: \mu_t = \beta_1\bigl(1 - \tfrac12\, 0.96^{t\psi}\bigr),\quad
              \Pi_t = \Pi_{t-1}\,\mu_t\ (\text{mu\_product}),\quad
              m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
              v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

    .. math:: \text{out}_t = \frac{1-\mu_t}{1-\Pi_t}\,\frac{g_t}{d_t}
              + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\,\frac{m_t}{d_t},\qquad
              d_t = \sqrt{v_t / (1-\beta_2^t)} + \epsilon

    torch keeps :math:`\Pi_t` in a 0-d tensor of ``torch.get_default_dtype()``
    (float32 by default, also for float64 parameters): ``scalar_dtype`` is
    that dtype, and the product is rounded to it every step as torch does.
    ``optax.nadam`` is a different algorithm (Adam with a Nesterov
    look-ahead, no :math:`\mu_t` schedule).

    ``differentiable_lr`` (a number or schedule): torch's ``differentiable=True``
    path, which folds the lr into the two coefficients and computes them as
    ``scalar_dtype`` tensor arithmetic (torch/optim/nadam.py
    ``_single_tensor_nadam``: ``1 - mu_product`` in float32, ``x / t`` as
    ``t.reciprocal() * x``); the output then already holds ``-lr`` (the caller
    scales by 1).
    """
    def init_fn(params):
        return ScaleByTorchNadamState(
            jnp.zeros([], jnp.int32), jax.tree.map(lambda p: jnp.ones([], scalar_dtype), params),
            jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        count = _inc(state.count)
        w = _wide()
        t = count.astype(w)
        decay = jnp.asarray(0.96, w)
        mu = _scalar(b1, w) * (1.0 - 0.5 * decay ** (t * momentum_decay))
        mu_next = _scalar(b1, w) * (1.0 - 0.5 * decay ** ((t + 1) * momentum_decay))
        bc2 = 1 - _scalar(b2, w) ** t
        mp = jax.tree.map(lambda a: a * mu.astype(a.dtype), state.mu_product)
        m = jax.tree.map(lambda m, g: _lerp(m, g, 1 - b1), state.exp_avg, updates)
        v = jax.tree.map(lambda v, g: v * b2 + (1 - b2) * (g * g), state.exp_avg_sq, updates)

        def one(g, m, v, mp):
            dt = g.dtype
            d = jnp.sqrt(v / bc2.astype(dt)) + eps
            if differentiable_lr is not None:  # torch's tensor arithmetic in mu_product's dtype
                sd = mp.dtype
                lr_now = _scalar(_lr_at(differentiable_lr, state.count), w)
                c1 = (1 / (1 - mp)) * (-lr_now * (1.0 - mu)).astype(sd)
                mpn = mp * mu_next.astype(sd)
                c2 = (1 / (1 - mpn)) * (-lr_now * mu_next).astype(sd)
                return (g * c1.astype(dt)) / d + (m * c2.astype(dt)) / d
            mpw = mp.astype(w)
            c1 = ((1.0 - mu) / (1.0 - mpw)).astype(dt)
            c2 = (mu_next / (1.0 - mpw * mu_next)).astype(dt)
            return c1 * (g / d) + c2 * (m / d)

        out = jax.tree.map(one, updates, m, v, mp)
        return out, ScaleByTorchNadamState(count, mp, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchRadamState(NamedTuple):
    """State of :func:`scale_by_torch_radam`: torch's ``step``, ``exp_avg``, ``exp_avg_sq``."""
    count: jax.Array
    exp_avg: optax.Updates
    exp_avg_sq: optax.Updates


def scale_by_torch_radam(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> optax.GradientTransformation:
    r"""RAdam's scaling, torch's formulas (lr applied afterwards).

    .. math:: \rho_\infty = \frac{2}{1-\beta_2} - 1,\quad
              \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t},\quad
              \hat m_t = \frac{m_t}{1-\beta_1^t},

    .. math:: \text{out}_t = \hat m_t\,\frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t}+\epsilon}\,
              \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}
              \ \text{ if } \rho_t > 5 \text{ else } \hat m_t

    Equal to ``optax.radam(lr, threshold=5.0)`` in exact arithmetic (optax
    writes the same terms in another order).
    """
    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchRadamState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update_fn(updates, state, params=None):
        del params
        count = _inc(state.count)
        w = _wide()
        t = count.astype(w)
        b2w = _scalar(b2, w)
        bc1 = 1 - _scalar(b1, w) ** t
        bc2 = 1 - b2w ** t
        rho_inf = 2 / (1 - b2w) - 1
        rho_t = rho_inf - 2 * t * (b2w ** t) / bc2
        on = rho_t > 5.0
        rect = jnp.sqrt(jnp.where(on, (rho_t - 4) * (rho_t - 2) * rho_inf
                                  / ((rho_inf - 4) * (rho_inf - 2) * rho_t), 1.0))
        m = jax.tree.map(lambda m, g: _lerp(m, g, 1 - b1), state.exp_avg, updates)
        v = jax.tree.map(lambda v, g: v * b2 + (1 - b2) * (g * g), state.exp_avg_sq, updates)

        def one(m, v):
            dt = m.dtype
            bm = m / bc1.astype(dt)
            adaptive = jnp.sqrt(bc2).astype(dt) / (jnp.sqrt(v) + eps)
            return jnp.where(on, bm * adaptive * rect.astype(dt), bm)

        return jax.tree.map(one, m, v), ScaleByTorchRadamState(count, m, v)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchAdamaxState(NamedTuple):
    """State of :func:`scale_by_torch_adamax`: torch's ``step``, ``exp_avg``, ``exp_inf``."""
    count: jax.Array
    exp_avg: optax.Updates
    exp_inf: optax.Updates


def scale_by_torch_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> optax.GradientTransformation:
    r"""Adamax's scaling, torch's formulas (lr applied afterwards).

    .. math:: m_t = \mathrm{lerp}(m_{t-1}, g_t, 1-\beta_1),\quad
              u_t = \max(\beta_2 u_{t-1},\ |g_t| + \epsilon),\quad
              \text{out}_t = \frac{m_t}{(1-\beta_1^t)\,u_t}

    ``optax.adamax`` adds ``eps`` after the max (:math:`\max(\beta_2 u, |g|) + \epsilon`):
    not equal.
    """
    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchAdamaxState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update_fn(updates, state, params=None):
        del params
        count = _inc(state.count)
        w = _wide()
        bc = 1 - _scalar(b1, w) ** count.astype(w)
        m = jax.tree.map(lambda m, g: _lerp(m, g, 1 - b1), state.exp_avg, updates)
        u = jax.tree.map(lambda u, g: jnp.maximum(u * b2, jnp.abs(g) + eps), state.exp_inf, updates)
        out = jax.tree.map(lambda m, u: m / u / bc.astype(m.dtype), m, u)
        return out, ScaleByTorchAdamaxState(count, m, u)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchAdadeltaState(NamedTuple):
    """State of :func:`scale_by_torch_adadelta`: torch's ``step``, ``square_avg``, ``acc_delta``."""
    count: jax.Array
    square_avg: optax.Updates
    acc_delta: optax.Updates


def scale_by_torch_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> optax.GradientTransformation:
    r"""Adadelta's scaling, torch's formulas (lr applied afterwards).

    .. math:: v_t = \rho v_{t-1} + (1-\rho) g_t^2,\quad
              \Delta_t = \frac{\sqrt{a_{t-1}+\epsilon}}{\sqrt{v_t+\epsilon}}\, g_t,\quad
              a_t = \rho a_{t-1} + (1-\rho)\Delta_t^2,\quad \text{out}_t = \Delta_t

    Equal to ``optax.scale_by_adadelta(rho, eps)`` in exact arithmetic.
    """
    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
        return ScaleByTorchAdadeltaState(jnp.zeros([], jnp.int32), zeros(), zeros())

    def update_fn(updates, state, params=None):
        del params
        v = jax.tree.map(lambda v, g: v * rho + (1 - rho) * (g * g), state.square_avg, updates)
        delta = jax.tree.map(lambda a, v, g: jnp.sqrt(a + eps) / jnp.sqrt(v + eps) * g, state.acc_delta, v, updates)
        acc = jax.tree.map(lambda a, d: a * rho + (1 - rho) * (d * d), state.acc_delta, delta)
        return delta, ScaleByTorchAdadeltaState(_inc(state.count), v, acc)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchRpropState(NamedTuple):
    """State of :func:`scale_by_torch_rprop`: torch's ``step``, ``prev``, ``step_size``."""
    count: jax.Array
    prev: optax.Updates
    step_size: optax.Updates


def scale_by_torch_rprop(lr: Any = 1e-2, etas: tuple = (0.5, 1.2),
                         step_sizes: tuple = (1e-6, 50)) -> optax.GradientTransformation:
    r"""Rprop's full update (the lr is only the initial step size), torch's formulas.

    .. math:: s = \mathrm{sign}(g_t\, g_{t-1}),\quad
              \delta_t = \mathrm{clip}(\delta_{t-1}\cdot\{\eta_+ \text{ if } s>0;\ \eta_- \text{ if } s<0;\ 1\},
              \delta_{\min}, \delta_{\max}),

    .. math:: g_t \leftarrow 0 \text{ where } s < 0,\qquad \text{out}_t = -\mathrm{sign}(g_t)\,\delta_t,
              \qquad \text{prev} \leftarrow g_t

    :math:`\delta_0 = \text{lr}`. ``optax.rprop`` keeps the sign flip of the
    previous step differently (it stores the sign-masked product); torch's
    rule is the one written here.
    """
    if callable(lr):
        raise _core.InitError(
            "rprop: lr must be a number (torch's Rprop reads lr once, to fill step_size on the first step, and "
            "ignores it afterwards, so a schedule would have no effect in torch); pass lr=<initial step size>.")
    etaminus, etaplus = etas
    smin, smax = step_sizes

    def init_fn(params):
        return ScaleByTorchRpropState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params),
                                      jax.tree.map(lambda p: jnp.full_like(p, lr), params))

    def update_fn(updates, state, params=None):
        del params

        def one(g, prev, size):
            prod = g * prev  # torch takes its sign; the comparisons below are the same (NaN kept, as torch)
            factor = jnp.where(prod > 0, jnp.asarray(etaplus, g.dtype),
                               jnp.where(prod < 0, jnp.asarray(etaminus, g.dtype),
                                         jnp.where(prod == 0, jnp.ones_like(g), prod)))
            size = jnp.clip(size * factor, smin, smax)
            g = jnp.where(prod < 0, jnp.zeros_like(g), g)
            return -jnp.sign(g) * size, g, size

        res = jax.tree.map(one, updates, state.prev, state.step_size)
        is_triple = lambda x: isinstance(x, tuple) and len(x) == 3 and not hasattr(x, "_fields")  # noqa: E731
        out, prev, size = (jax.tree.map(lambda r: r[k], res, is_leaf=is_triple) for k in range(3))
        return out, ScaleByTorchRpropState(_inc(state.count), prev, size)

    return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchAsgdState(NamedTuple):
    """State of :func:`scale_by_torch_asgd`: torch's ``step``, ``eta``, ``mu`` (0-d arrays per parameter,
    in ``scalar_dtype``) and ``ax`` (the averaged parameters)."""
    count: jax.Array
    eta: optax.Updates
    mu: optax.Updates
    ax: optax.Updates


def scale_by_torch_asgd(lr: ScalarOrSchedule = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75, t0: Any = 1e6,
                        scalar_dtype: str = "float32") -> optax.GradientTransformation:
    r"""ASGD's full update (lr inside), torch's formulas; needs ``params``.

    .. math:: p_t = p_{t-1}(1 - \lambda\eta_{t-1}) - \eta_{t-1} g_t,\quad
              a_t = p_t \text{ if } \mu_{t-1} = 1 \text{ else } a_{t-1} + \mu_{t-1}(p_t - a_{t-1}),

    .. math:: \eta_t = \frac{\text{lr}}{(1 + \lambda\,\text{lr}\,t)^{\alpha}},\quad
              \mu_t = \frac{1}{\max(1, t - t_0)},\quad \eta_0 = \text{lr},\ \mu_0 = 1

    ``out = p_t - p_{t-1}``; ``ax`` (torch's ``state['ax']``) holds the
    averaged parameters :math:`a_t`, read it with
    ``optax.tree_utils.tree_get(state, "ax")``. torch keeps :math:`\eta, \mu` in
    0-d tensors of its default dtype (float32 unless changed), rounding them
    every step: ``scalar_dtype`` is that dtype. A schedule ``lr(count)`` enters
    :math:`\eta` the way torch's scheduler does (the lr of the step that just ran).
    """
    def init_fn(params):
        lr0 = _lr_at(lr, jnp.zeros([], jnp.int32))
        return ScaleByTorchAsgdState(
            jnp.zeros([], jnp.int32),
            jax.tree.map(lambda p: _scalar(lr0, scalar_dtype), params),
            jax.tree.map(lambda p: jnp.ones([], scalar_dtype), params),
            jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params):
        if params is None:
            raise ValueError("scale_by_torch_asgd needs params: call update(grads, state, params).")
        w = _wide()
        count = _inc(state.count)
        t = count.astype(w)
        lr_now = _scalar(_lr_at(lr, state.count), w)
        eta_next = (lr_now / (1 + lambd * lr_now * t) ** alpha).astype(scalar_dtype)
        mu_next = (1 / jnp.maximum(1.0, t - t0)).astype(scalar_dtype)

        def one(g, p, eta, mu, ax):
            dt = p.dtype
            e = eta.astype(w)
            new_p = p * (1 - lambd * e).astype(dt) + g * (-e).astype(dt)
            ax = jnp.where(mu == 1, new_p, ax + (new_p - ax) * mu.astype(dt))
            return new_p - p, ax

        res = jax.tree.map(one, updates, params, state.eta, state.mu, state.ax)
        is_pair = lambda x: isinstance(x, tuple) and len(x) == 2 and not hasattr(x, "_fields")  # noqa: E731
        out = jax.tree.map(lambda r: r[0], res, is_leaf=is_pair)
        ax = jax.tree.map(lambda r: r[1], res, is_leaf=is_pair)
        eta = jax.tree.map(lambda e: eta_next, state.eta)
        mu = jax.tree.map(lambda m: mu_next, state.mu)
        return out, ScaleByTorchAsgdState(count, eta, mu, ax)

    return optax.GradientTransformation(init_fn, update_fn)


def nadam(lr: ScalarOrSchedule = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
          momentum_decay: Any = 4e-3, decoupled_weight_decay: bool = False, maximize: bool = False,
          scalar_dtype: str = "float32", differentiable: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.NAdam`` as an optax transformation (see :func:`scale_by_torch_nadam`).

    .. math:: g \leftarrow \pm g + \lambda p\ (\text{or } p \leftarrow p(1-\eta\lambda) \text{ if decoupled}),
              \quad p \leftarrow p - \eta\,\text{out}_t

    State: ``(Empty, Empty, ScaleByTorchNadamState, Empty, ScaleByScheduleState)``.
    ``scalar_dtype``: the dtype torch keeps ``mu_product`` in (torch's default
    dtype: ``'float32'`` unless ``torch.set_default_dtype(torch.float64)``).
    ``differentiable``: torch's ``differentiable=True`` arithmetic (the step
    coefficients as float32 tensor arithmetic, see :func:`scale_by_torch_nadam`).
    """
    _core.check("nadam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, scalar_dtype=scalar_dtype,
                differentiable=differentiable)
    b1, b2 = betas
    core = scale_by_torch_nadam(b1, b2, eps, momentum_decay, scalar_dtype, lr if differentiable else None)
    if not differentiable:
        return _adam_like("nadam", maximize, weight_decay, decoupled_weight_decay, core, lr)
    if decoupled_weight_decay and not _core.is_static_zero(weight_decay):
        core = _with_decoupled_decay(core, lr, weight_decay)
    return optax.chain(  # the same layout; the core's output already holds -lr (and the decoupled decay)
        _negate() if maximize else optax.identity(),
        optax.identity() if decoupled_weight_decay else _l2(weight_decay),
        core,
        optax.identity(),
        optax.scale_by_schedule(lambda count: 1.0),
    )


def _with_decoupled_decay(core, lr, weight_decay):
    """``core``'s output minus ``lr(count) * weight_decay * p`` (torch's ``p *= 1 - lr * wd``), same state."""
    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("decoupled weight decay needs params: call update(grads, state, params).")
        lr_now = _lr_at(lr, state.count)
        out, new_state = core.update(updates, state, params)
        out = jax.tree.map(lambda u, p: u - (lr_now * weight_decay) * p, out, params)
        return out, new_state

    return optax.GradientTransformation(core.init, update_fn)


def radam(lr: ScalarOrSchedule = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
          decoupled_weight_decay: bool = False, maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.RAdam`` as an optax transformation (see :func:`scale_by_torch_radam`).

    State: ``(Empty, Empty, ScaleByTorchRadamState, Empty, ScaleByScheduleState)``.
    """
    _core.check("radam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
    b1, b2 = betas
    return _adam_like("radam", maximize, weight_decay, decoupled_weight_decay, scale_by_torch_radam(b1, b2, eps), lr)


def adamax(lr: ScalarOrSchedule = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
           maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adamax`` as an optax transformation (see :func:`scale_by_torch_adamax`).

    State: ``(Empty, Empty, ScaleByTorchAdamaxState, Empty, ScaleByScheduleState)``.
    """
    _core.check("adamax", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
    b1, b2 = betas
    return _adam_like("adamax", maximize, weight_decay, False, scale_by_torch_adamax(b1, b2, eps), lr)


def adadelta(lr: ScalarOrSchedule = 1.0, rho: Any = 0.9, eps: Any = 1e-6, weight_decay: Any = 0,
             maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Adadelta`` as an optax transformation (see :func:`scale_by_torch_adadelta`).

    ``optax.adadelta(lr, rho, eps)`` is the same rule (``weight_decay`` there is
    also L2 on the gradient). State: ``(Empty, Empty, ScaleByTorchAdadeltaState,
    ScaleByScheduleState)``.
    """
    _core.check("adadelta", lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
    return optax.chain(
        _negate() if maximize else optax.identity(),
        _l2(weight_decay),
        scale_by_torch_adadelta(rho, eps),
        scale_by_torch_lr(lr),
    )


def rprop(lr: Any = 1e-2, etas: tuple = (0.5, 1.2), step_sizes: tuple = (1e-6, 50),
          maximize: bool = False) -> optax.GradientTransformation:
    r"""``torch.optim.Rprop`` as an optax transformation (see :func:`scale_by_torch_rprop`).

    ``lr`` is the initial step size only (a number; torch ignores later lr
    changes). State: ``(Empty [maximize], ScaleByTorchRpropState)``.
    """
    _core.check("rprop", lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
    return optax.chain(
        _negate() if maximize else optax.identity(),
        scale_by_torch_rprop(lr, etas, step_sizes),
    )


def asgd(lr: ScalarOrSchedule = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75, t0: Any = 1e6, weight_decay: Any = 0,
         maximize: bool = False, scalar_dtype: str = "float32") -> optax.GradientTransformation:
    r"""``torch.optim.ASGD`` as an optax transformation (see :func:`scale_by_torch_asgd`).

    State: ``(Empty [maximize], Empty [L2 decay], ScaleByTorchAsgdState)``; the
    averaged parameters are its ``ax``. ``scalar_dtype``: the dtype torch keeps
    ``eta``/``mu`` in (torch's default dtype, ``'float32'`` unless changed).
    """
    _core.check("asgd", lr=lr, weight_decay=weight_decay, maximize=maximize, scalar_dtype=scalar_dtype)
    return optax.chain(
        _negate() if maximize else optax.identity(),
        _l2(weight_decay),
        scale_by_torch_asgd(lr, lambd, alpha, t0, scalar_dtype),
    )
