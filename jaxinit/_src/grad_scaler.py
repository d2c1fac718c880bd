r"""``torch.amp.GradScaler`` as an optax transformation (dynamic loss scaling, step for step torch's).

torch's loop and its optax twin::

    scaler = torch.amp.GradScaler("cpu")            tx = jaxinit.amp.grad_scaler(optax_or_jaxinit_optimizer)
    scaler.scale(loss).backward()                   grads = jax.grad(lambda p: jaxinit.amp.scale_loss(loss_fn(p), state))(params)
    scaler.unscale_(opt); clip_grad_norm_(...)      (clipping goes INSIDE: grad_scaler(chain(clip_grad_norm(1.0), adam(...))))
    scaler.step(opt); scaler.update()               updates, state = tx.update(grads, state, params)

The arithmetic is torch's (torch/amp/grad_scaler.py and the CPU/CUDA kernels
``_amp_foreach_non_finite_check_and_unscale_`` / ``_amp_update_scale_`` in
aten/src/ATen/native/cpu/AmpGradScalerKernels.cpp and cuda/AmpKernels.cu):

* the scale is a float32 scalar; ``inv_scale = float32(1 / float64(scale))``
  (``scale.double().reciprocal().float()``); each gradient is multiplied by it in float32
  (float64 gradients: in float64) and rounded back to its own dtype;
* ``found_inf`` is set when any SCALED gradient element is inf or NaN; then the inner
  optimizer does not run at all: zero updates, its state (Adam's step count, moments) untouched;
* ``update``: on inf, ``scale = float32(float64(scale) * backoff_factor)`` and the growth tracker
  is reset to 0; otherwise ``tracker += 1`` and when it reaches ``growth_interval``,
  ``scale = float32(float64(scale) * growth_factor)`` (kept only if finite), tracker = 0. So the
  scale first grows after ``growth_interval`` finite steps (flax's ``DynamicScale`` grows one step
  later, after ``growth_interval + 1``).

The products are formed in float64 as torch's kernel does when ``jax_enable_x64`` is on. Without
it they are formed in float32, which is the same number whenever the factor is a float32 number
(a float32 times a float32 is exact in float64), e.g. torch's defaults 2.0 and 0.5; a factor that is
not (1.1) is refused with that fix. ``1 / scale`` in float32 equals ``float32(1 / float64(scale))``
for every float32 scale (checked for all 2**23 significands in parity_tests/test_amp.py).

Differences from torch: torch's hyper-parameters live on the scaler object (``set_growth_factor``);
here they live in the state (``GradScalerState``), so ``state._replace(...)`` is the setter and a
loaded ``state_dict`` brings them along, as torch's ``load_state_dict`` does. A skipped step returns
zero updates, so a parameter equal to ``-0.0`` comes back as ``+0.0`` after ``optax.apply_updates``
(torch leaves it untouched); no other value changes.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from _jaxinit import amp as _core
from _jaxinit.errors import InitError


class GradScalerState(NamedTuple):
    """torch GradScaler's state: ``scale`` (float32), ``growth_tracker`` (int32), the three
    hyper-parameters (float64 under ``jax_enable_x64``, else float32; ``growth_interval`` int32),
    ``found_inf`` of the last step (float32, 1.0 when it was skipped), and the inner optimizer's state.
    A disabled scaler (``enabled=False``) keeps ``None`` in all but ``inner_state``."""
    scale: Any
    growth_tracker: Any
    growth_factor: Any
    backoff_factor: Any
    growth_interval: Any
    found_inf: Any
    inner_state: Any


def _x64() -> bool:
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64  # honours jax.enable_x64(...) blocks


def _factor_dtype():
    return jnp.float64 if _x64() else jnp.float32


def _check_representable(who, cfg):
    if _x64():
        return
    for name in ("growth_factor", "backoff_factor"):
        value = cfg[name]
        if float(np.float32(value)) != value:
            raise InitError(
                f"{who}: {name}={value!r} is not a float32 number; torch multiplies the float32 scale by it in "
                "float64, which float32 arithmetic reproduces only for float32 factors. Turn on "
                "jax.config.update('jax_enable_x64', True), or use a float32 factor "
                f"(e.g. {float(np.float32(value))!r} in both frameworks; torch's defaults 2.0 and 0.5 are).")


def _new_state(cfg, tracker, inner_state):
    fdt = _factor_dtype()
    return GradScalerState(scale=jnp.asarray(np.float32(cfg["init_scale"])),
                           growth_tracker=jnp.asarray(tracker, jnp.int32),
                           growth_factor=jnp.asarray(cfg["growth_factor"], fdt),
                           backoff_factor=jnp.asarray(cfg["backoff_factor"], fdt),
                           growth_interval=jnp.asarray(cfg["growth_interval"], jnp.int32),
                           found_inf=jnp.zeros((), jnp.float32),
                           inner_state=inner_state)


def unscale(grads: Any, scale: jax.Array) -> tuple[Any, jax.Array]:
    """torch's ``_amp_foreach_non_finite_check_and_unscale_``: ``(grads * inv_scale, found_inf)``.

    ``inv_scale = float32(1 / scale)``; float16/bfloat16/float32 gradients are multiplied in
    float32 (torch's opmath) and rounded to their dtype, float64 ones in float64. ``found_inf`` is
    1.0 (float32) when any element of the scaled gradients is inf or NaN.
    """
    inv = jnp.float32(1.0) / scale.astype(jnp.float32)
    leaves = jax.tree.leaves(grads)
    found = jnp.zeros((), bool)
    for g in leaves:
        found = found | ~jnp.all(jnp.isfinite(g))

    def one(g):
        if g.dtype == jnp.float64:
            return g * inv.astype(jnp.float64)
        return (g.astype(jnp.float32) * inv).astype(g.dtype)

    return jax.tree.map(one, grads), found.astype(jnp.float32)


def update_scale(state: GradScalerState, found_inf: jax.Array) -> GradScalerState:
    """torch's ``_amp_update_scale_`` on ``state`` (the formula in this module's docstring)."""
    fdt = state.growth_factor.dtype
    s = state.scale.astype(fdt)
    backed = (s * state.backoff_factor).astype(jnp.float32)
    grown = (s * state.growth_factor).astype(jnp.float32)
    successful = state.growth_tracker + 1
    grow = successful == state.growth_interval
    found = found_inf > 0
    scale = jnp.where(found, backed, jnp.where(grow & jnp.isfinite(grown), grown, state.scale))
    tracker = jnp.where(found | grow, jnp.zeros_like(successful), successful)
    return state._replace(scale=scale, growth_tracker=tracker, found_inf=found_inf.astype(jnp.float32))


def grad_scaler(inner: optax.GradientTransformation, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                backoff_factor: float = 0.5, growth_interval: int = 2000,
                enabled: bool = True) -> optax.GradientTransformation:
    r"""``torch.amp.GradScaler(init_scale, growth_factor, backoff_factor, growth_interval, enabled)`` around ``inner``.

    ``update(scaled_grads, state, params)`` does torch's ``scaler.step(optimizer); scaler.update()``:

    .. math:: g \leftarrow \mathrm{fl}_{dt}(g \cdot \mathrm{fl}_{32}(1/s)),\quad
              \text{found\_inf} = \exists\, \neg\mathrm{isfinite}(g_{\text{scaled}})

    then ``inner.update(g, ...)`` unless ``found_inf`` (zero updates, inner state unchanged), then
    :func:`update_scale`. The gradients must be of the loss multiplied by the current scale
    (:func:`scale_loss`). Gradient clipping, which torch does between ``scaler.unscale_(opt)`` and
    ``scaler.step(opt)``, goes inside ``inner`` (it then sees the unscaled gradients).
    float16 gradients are refused, as torch's ``unscale_`` refuses them ("Attempting to unscale FP16
    gradients."): keep the parameters in float32 and let autocast cast at the op.
    ``enabled=False``: ``inner`` unchanged (no unscaling, no skipping), the scale stays 1.0.

    Example::

        tx = jaxinit.amp.grad_scaler(optax.chain(jaxinit.optim.clip_grad_norm(1.0), jaxinit.optim.adam(1e-3)))
        state = tx.init(params)
        grads = jax.grad(lambda p: jaxinit.amp.scale_loss(loss_fn(p), state))(params)
        updates, state = tx.update(grads, state, params)
    """
    cfg = _core.check_config("grad_scaler", init_scale, growth_factor, backoff_factor, growth_interval, enabled)
    if not isinstance(inner, optax.GradientTransformation):
        raise InitError(f"grad_scaler: inner must be an optax.GradientTransformation (the optimizer the scaler steps, "
                        f"e.g. jaxinit.optim.adam(1e-3)), got {type(inner).__name__}.")
    if enabled:
        _check_representable("grad_scaler", cfg)

    def init_fn(params):
        if not enabled:  # no scale at all (torch's disabled scaler keeps none; its get_scale() says 1.0)
            return GradScalerState(None, None, None, None, None, None, inner.init(params))
        return _new_state(cfg, 0, inner.init(params))

    def update_fn(updates, state, params=None):
        if not enabled:
            new, inner_state = inner.update(updates, state.inner_state, params)
            return new, state._replace(inner_state=inner_state)
        half = [g.dtype for g in jax.tree.leaves(updates) if g.dtype == jnp.float16]
        if half:
            raise InitError("grad_scaler: Attempting to unscale FP16 gradients (torch's GradScaler refuses them "
                            "too). Keep the parameters in float32 and compute in float16 through "
                            "jaxinit.amp.autocast, which casts at the op.")
        grads, found_inf = unscale(updates, state.scale)

        def run(_):
            return inner.update(grads, state.inner_state, params)

        def skip(_):
            shapes = jax.eval_shape(run, None)[0]
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), state.inner_state

        new, inner_state = jax.lax.cond(found_inf > 0, skip, run, None)
        return new, update_scale(state._replace(inner_state=inner_state), found_inf)

    return optax.GradientTransformation(init_fn, update_fn)


def _find_state(who, state) -> GradScalerState:
    if isinstance(state, GradScalerState):
        return state
    found = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, GradScalerState))
             if isinstance(s, GradScalerState)]
    if len(found) != 1:
        raise InitError(f"{who}: state must be the GradScalerState of jaxinit.amp.grad_scaler (or an optax state "
                        f"holding exactly one), found {len(found)}.")
    return found[0]


def scale_loss(loss: jax.Array, state: Any) -> jax.Array:
    """torch's ``scaler.scale(loss)``: ``loss * scale`` with torch's type promotion.

    A 0-d ``loss`` (the usual case) is promoted with the float32 scale (a bfloat16/float16 loss gives a
    float32 product, as in torch); a loss with dimensions keeps its dtype. ``state``: the
    ``GradScalerState`` (or an optax state holding one). A disabled scaler returns ``loss`` as it is.
    """
    st = _find_state("scale_loss", state)
    loss = jnp.asarray(loss)
    if _is_disabled(st):
        return loss
    if loss.ndim == 0:
        dt = jnp.promote_types(loss.dtype, jnp.float32)
        return loss.astype(dt) * st.scale.astype(dt)
    return loss * st.scale.astype(loss.dtype)


def _is_disabled(st: GradScalerState) -> bool:
    # a disabled scaler's state has no scale (None: static under jit)
    return st.scale is None


def grad_scaler_state_dict(state: Any) -> dict[str, Any]:
    """``GradScaler.state_dict()`` of this state: ``{"scale", "growth_factor", "backoff_factor",
    "growth_interval", "_growth_tracker"}`` as Python float/int, ``{}`` for a disabled scaler (as torch)."""
    st = _find_state("grad_scaler_state_dict", state)
    if _is_disabled(st):
        return {}
    return {"scale": float(np.float32(st.scale)), "growth_factor": float(st.growth_factor),
            "backoff_factor": float(st.backoff_factor), "growth_interval": int(st.growth_interval),
            "_growth_tracker": int(st.growth_tracker)}


def load_grad_scaler_state_dict(state: Any, state_dict: Any) -> Any:
    """``GradScaler.load_state_dict(state_dict)``: a new state with the scale, tracker and the three
    hyper-parameters of ``state_dict`` (the inner optimizer's state is kept). ``state`` may be the
    ``GradScalerState`` or an optax state holding one; the same kind is returned. A disabled scaler
    ignores the call, as torch's does."""
    who = "load_grad_scaler_state_dict"
    st = _find_state(who, state)
    if _is_disabled(st):
        return state
    sd = _core.check_state_dict(who, state_dict)
    cfg = {"init_scale": sd["scale"], "growth_factor": sd["growth_factor"], "backoff_factor": sd["backoff_factor"],
           "growth_interval": sd["growth_interval"]}
    _check_representable(who, cfg)
    new = _new_state(cfg, sd["_growth_tracker"], st.inner_state)
    if isinstance(state, GradScalerState):
        return new
    return jax.tree.map(lambda x: new if isinstance(x, GradScalerState) else x, state,
                        is_leaf=lambda x: isinstance(x, GradScalerState))
