r"""The torch mirror of :mod:`jaxinit.optim`: same factories, ``params`` first.

``torchinit.optim.adam(model.parameters(), 1e-3)`` returns a real
``torch.optim.Optimizer``:

* torch's own class (``torch.optim.SGD``, ``Adagrad``, ``RMSprop``, ``Adam``,
  ``AdamW``, ``NAdam``, ``RAdam``, ``Adamax``, ``Adadelta``, ``Rprop``, ``ASGD``) with ``foreach=True`` (torch's multi-tensor path) when the
  configuration is plain torch;
* a subclass of ``torch.optim.Optimizer`` from this module when an
  optax-convention option is set (``eps_in_sqrt``, ``initial_scale``,
  ``eps_root``, ``amsgrad_bias_corrected``) and for ``lars`` (torch has none).
  Their ``state`` uses torch's keys (``step``, ``sum``, ``square_avg``,
  ``grad_avg``, ``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``,
  ``max_exp_avg_sq``) so ``state_dict`` conversion treats both alike.

``lr`` may be a callable schedule ``step -> lr`` (also per group, as a group's
``"lr"``): a step pre-hook sets ``group["lr"] = schedule(k)`` before the k-th
``step()`` (k from 0, kept in ``group["schedule_step"]``, so it survives
``state_dict``/``load_state_dict``), exactly as optax evaluates a schedule at
the update count. The hyperparameter checks are torch's (``_jaxinit.optim``).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from _jaxinit import optim as _core


# ----------------------------------------------------------------- schedules
def split_schedules(params, lr):
    """Replace callable lrs by their value at step 0; return (params, default lr, per-group schedules)."""
    params = list(params)
    default_sched = lr if callable(lr) else None
    lr0 = float(lr(0)) if callable(lr) else lr
    if params and isinstance(params[0], dict):
        groups, scheds = [], []
        for g in params:
            g = dict(g)
            if callable(g.get("lr")):
                scheds.append(g["lr"])
                g["lr"] = float(g["lr"](0))
            else:
                scheds.append(None if "lr" in g else default_sched)
            groups.append(g)
        return groups, lr0, scheds
    return params, lr0, [default_sched]


def _attach_schedules(opt: torch.optim.Optimizer, scheds) -> torch.optim.Optimizer:
    if not any(s is not None for s in scheds):
        return opt

    def pre_hook(optimizer, args, kwargs):
        for group, sched in zip(optimizer.param_groups, scheds):
            if sched is not None:
                k = group.get("schedule_step", 0)
                group["lr"] = float(sched(k))
                group["schedule_step"] = k + 1

    for group in opt.param_groups:
        group.setdefault("schedule_step", 0)
    opt.register_step_pre_hook(pre_hook)
    opt._torchinit_schedules = scheds
    return opt


# ----------------------------------------------------------------- own optimizers
class _Optimizer(torch.optim.Optimizer):
    """Shared loop: per group, the params with a gradient and their state."""

    def _init_state(self, p, group) -> dict:
        raise NotImplementedError

    def _update(self, group, params, grads, states) -> None:
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, states = [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                if not self.state[p]:
                    self.state[p].update(self._init_state(p, group))
                params.append(p)
                grads.append(-p.grad if group.get("maximize", False) else p.grad)
                states.append(self.state[p])
            if params:
                self._update(group, params, grads, states)
        return loss


def _step(states) -> list[float]:
    out = []
    for s in states:
        s["step"] += 1
        out.append(float(s["step"]))
    return out


def _l2(grads, params, wd):
    if wd != 0:
        return torch._foreach_add(grads, params, alpha=wd)
    return grads


class OptaxAdagrad(_Optimizer):
    """Adagrad with the optax-convention option ``eps_in_sqrt`` (see :func:`adagrad`)."""

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 maximize=False, eps_in_sqrt=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                        eps_in_sqrt=eps_in_sqrt)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        return {"step": torch.tensor(0.0), "sum": torch.full_like(p, group["initial_accumulator_value"],
                                                                  memory_format=torch.preserve_format)}

    def _update(self, group, params, grads, states):
        grads = _l2(grads, params, group["weight_decay"])
        sums = [s["sum"] for s in states]
        torch._foreach_addcmul_(sums, grads, grads, value=1)
        steps = _step(states)
        if len(set(steps)) == 1:  # the usual case: one multi-tensor pass for the group
            clr = group["lr"] / (1 + (steps[0] - 1) * group["lr_decay"])
            if group["eps_in_sqrt"]:
                scale = torch._foreach_add(sums, group["eps"])
                torch._foreach_rsqrt_(scale)
                if group["eps"] > 0:  # optax's 0 where s == 0: times sign(s) in {0, 1} (s >= 0)
                    torch._foreach_mul_(scale, torch._foreach_sign(sums))
                else:  # rsqrt(0) = inf: select instead
                    scale = [torch.where(s > 0, c, torch.zeros_like(c)) for s, c in zip(sums, scale)]
                torch._foreach_mul_(scale, grads)
                torch._foreach_add_(params, scale, alpha=-clr)
            else:
                den = torch._foreach_sqrt(sums)
                torch._foreach_add_(den, group["eps"])
                torch._foreach_addcdiv_(params, grads, den, value=-clr)
            return
        for p, g, s, step in zip(params, grads, sums, steps):
            clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
            if group["eps_in_sqrt"]:
                scale = torch.where(s > 0, torch.rsqrt(s + group["eps"]), torch.zeros_like(s))
                p.add_(scale * g, alpha=-clr)
            else:
                p.addcdiv_(g, s.sqrt().add_(group["eps"]), value=-clr)


class OptaxRMSprop(_Optimizer):
    """RMSprop with the optax-convention options ``eps_in_sqrt`` and ``initial_scale``."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 maximize=False, eps_in_sqrt=False, initial_scale=0.0):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        st = {"step": torch.tensor(0.0),
              "square_avg": torch.full_like(p, group["initial_scale"], memory_format=torch.preserve_format)}
        if group["momentum"] > 0:
            st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["centered"]:
            st["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    def _update(self, group, params, grads, states):
        _step(states)
        alpha, eps = group["alpha"], group["eps"]
        grads = _l2(grads, params, group["weight_decay"])
        sq = [s["square_avg"] for s in states]
        torch._foreach_mul_(sq, alpha)
        torch._foreach_addcmul_(sq, grads, grads, value=1 - alpha)
        if group["centered"]:
            ga = [s["grad_avg"] for s in states]
            torch._foreach_lerp_(ga, grads, 1 - alpha)
            var = torch._foreach_addcmul(sq, ga, ga, value=-1)
        else:
            var = sq
        if group["eps_in_sqrt"]:
            upd = torch._foreach_add(var, eps)
            torch._foreach_rsqrt_(upd)
            torch._foreach_mul_(upd, grads)
        else:
            den = torch._foreach_sqrt(var)
            torch._foreach_add_(den, eps)
            upd = torch._foreach_div(grads, den)
        if group["momentum"] > 0:
            bufs = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, upd)
            upd = bufs
        torch._foreach_add_(params, upd, alpha=-group["lr"])


class OptaxAdam(_Optimizer):
    """Adam / AdamW with the optax-convention options ``eps_root`` and ``amsgrad_bias_corrected``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                 maximize=False, eps_root=0.0, amsgrad_bias_corrected=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, eps_root=eps_root, amsgrad_bias_corrected=amsgrad_bias_corrected,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        z = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
        st = {"step": torch.tensor(0.0), "exp_avg": z(), "exp_avg_sq": z()}
        if group["amsgrad"]:
            st["max_exp_avg_sq"] = z()
        return st

    def _update(self, group, params, grads, states):
        b1, b2 = group["betas"]
        lr, wd, eps, eps_root = group["lr"], group["weight_decay"], group["eps"], group["eps_root"]
        if group["decoupled_weight_decay"]:
            if wd != 0:
                torch._foreach_mul_(params, 1 - lr * wd)
        else:
            grads = _l2(grads, params, wd)
        m = [s["exp_avg"] for s in states]
        v = [s["exp_avg_sq"] for s in states]
        torch._foreach_lerp_(m, grads, 1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        steps = _step(states)
        if len(set(steps)) == 1:  # the usual case: one multi-tensor pass for the group
            bc1, bc2 = 1 - b1 ** steps[0], 1 - b2 ** steps[0]
            if group["amsgrad"] and group["amsgrad_bias_corrected"]:
                vmax = [s["max_exp_avg_sq"] for s in states]
                torch._foreach_maximum_(vmax, torch._foreach_div(v, bc2))
                denom = torch._foreach_add(vmax, eps_root)
            else:
                vv = v
                if group["amsgrad"]:
                    vv = [s["max_exp_avg_sq"] for s in states]
                    torch._foreach_maximum_(vv, v)
                denom = torch._foreach_div(vv, bc2)
                torch._foreach_add_(denom, eps_root)
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, m, denom, value=-lr / bc1)
            return
        for p, mi, vi, st, step in zip(params, m, v, states, steps):
            bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
            if group["amsgrad"] and group["amsgrad_bias_corrected"]:
                vmax = st["max_exp_avg_sq"]
                torch.maximum(vmax, vi / bc2, out=vmax)
                denom = (vmax + eps_root).sqrt_().add_(eps)
            else:
                vv = vi
                if group["amsgrad"]:
                    vv = st["max_exp_avg_sq"]
                    torch.maximum(vv, vi, out=vv)
                denom = (vv / bc2 + eps_root).sqrt_().add_(eps)
            p.addcdiv_(mi, denom, value=-lr / bc1)


def _mask_of(mask, p) -> bool:
    return bool(mask(p)) if callable(mask) else bool(mask)


class LARS(_Optimizer):
    r"""LARS (You et al. 2017), the mirror of :func:`jaxinit.optim.lars`.

    Per parameter tensor ``w``: :math:`d = g + \beta w`,
    :math:`\lambda = \eta\lVert w\rVert / (\lVert g\rVert + \beta\lVert w\rVert + \epsilon)`
    (``decay_in_norm``: :math:`\eta\lVert w\rVert/(\lVert d\rVert+\epsilon)`, optax's form;
    1 where a norm is 0), :math:`v = \mu v + \gamma\lambda d`,
    :math:`w \leftarrow w - v` (nesterov: :math:`w \leftarrow w - (\gamma\lambda d + \mu v)`).
    ``weight_decay_mask`` / ``trust_ratio_mask``: a bool or ``tensor -> bool``
    (e.g. ``lambda p: p.ndim > 1`` to exclude biases and norm scales).
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, eps=0.0,
                 nesterov=False, decay_in_norm=False, weight_decay_mask=True, trust_ratio_mask=True):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        eps=eps, nesterov=nesterov, decay_in_norm=decay_in_norm,
                        weight_decay_mask=weight_decay_mask, trust_ratio_mask=trust_ratio_mask)
        super().__init__(params, defaults)

    def _init_state(self, p, group):
        return {"momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _update(self, group, params, grads, states):
        lr, mu, eta, eps = group["lr"], group["momentum"], group["trust_coefficient"], group["eps"]
        for p, g, st in zip(params, grads, states):
            wd = group["weight_decay"] if _mask_of(group["weight_decay_mask"], p) else 0.0
            d = g + wd * p if wd != 0 else g
            if _mask_of(group["trust_ratio_mask"], p):
                w_norm = torch.linalg.vector_norm(p)
                if group["decay_in_norm"]:
                    den = torch.linalg.vector_norm(d)
                else:
                    den = torch.linalg.vector_norm(g) + wd * w_norm
                ratio = torch.where((w_norm == 0) | (den == 0), torch.ones_like(w_norm), eta * w_norm / (den + eps))
                d = d * ratio
            buf = st["momentum_buffer"]
            step = d * lr
            buf.mul_(mu).add_(step)
            p.sub_(step + mu * buf if group["nesterov"] else buf)


# ----------------------------------------------------------------- factories
def build_optimizer(cls, params, lr, scheds, **kw):
    """``cls(params, lr=lr, **kw)`` following the per-group lr schedules ``scheds`` (from split_schedules)."""
    return _attach_schedules(cls(params, lr=lr, **kw), scheds)


def sgd(params: Iterable, lr: Any = 1e-3, momentum: Any = 0, dampening: Any = 0, weight_decay: Any = 0,
        nesterov: bool = False, maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.SGD(params, lr, ..., foreach=True)``; ``lr`` may be a schedule. Mirror of :func:`jaxinit.optim.sgd`."""
    _core.check("sgd", lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, maximize=maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.SGD, params, lr, scheds, momentum=momentum, dampening=dampening,
                  weight_decay=weight_decay, nesterov=nesterov, maximize=maximize, foreach=True)


def adagrad(params: Iterable, lr: Any = 1e-2, lr_decay: Any = 0, weight_decay: Any = 0,
            initial_accumulator_value: Any = 0, eps: Any = 1e-10, maximize: bool = False,
            eps_in_sqrt: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adagrad`` (foreach), or :class:`OptaxAdagrad` when ``eps_in_sqrt=True``.

    ``adagrad(p, lr, initial_accumulator_value=0.1, eps=1e-7, eps_in_sqrt=True)`` is ``optax.adagrad(lr)``.
    """
    _core.check("adagrad", lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize,
                eps_in_sqrt=eps_in_sqrt)
    params, lr, scheds = split_schedules(params, lr)
    kw = dict(lr_decay=lr_decay, weight_decay=weight_decay, initial_accumulator_value=initial_accumulator_value,
              eps=eps, maximize=maximize)
    if eps_in_sqrt:
        return build_optimizer(OptaxAdagrad, params, lr, scheds, eps_in_sqrt=True, **kw)
    return build_optimizer(torch.optim.Adagrad, params, lr, scheds, foreach=True, **kw)


def rmsprop(params: Iterable, lr: Any = 1e-2, alpha: Any = 0.99, eps: Any = 1e-8, weight_decay: Any = 0,
            momentum: Any = 0, centered: bool = False, maximize: bool = False, eps_in_sqrt: bool = False,
            initial_scale: Any = 0.0) -> torch.optim.Optimizer:
    """``torch.optim.RMSprop`` (foreach), or :class:`OptaxRMSprop` for ``eps_in_sqrt`` / ``initial_scale``.

    ``rmsprop(p, lr, alpha=0.9, eps_in_sqrt=True)`` is ``optax.rmsprop(lr)`` (constant lr).
    """
    _core.check("rmsprop", lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                centered=centered, maximize=maximize, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale)
    params, lr, scheds = split_schedules(params, lr)
    kw = dict(alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
              maximize=maximize)
    if eps_in_sqrt or not _core.is_static_zero(initial_scale):
        return build_optimizer(OptaxRMSprop, params, lr, scheds, eps_in_sqrt=eps_in_sqrt, initial_scale=initial_scale, **kw)
    return build_optimizer(torch.optim.RMSprop, params, lr, scheds, foreach=True, **kw)


def _adam_family(who, cls, decoupled, params, lr, betas, eps, weight_decay, amsgrad, maximize, eps_root,
                 amsgrad_bias_corrected):
    _core.check(who, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                eps_root=eps_root, amsgrad_bias_corrected=amsgrad_bias_corrected)
    params, lr, scheds = split_schedules(params, lr)
    kw = dict(betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
    if not _core.is_static_zero(eps_root) or amsgrad_bias_corrected:
        return build_optimizer(OptaxAdam, params, lr, scheds, eps_root=eps_root,
                      amsgrad_bias_corrected=amsgrad_bias_corrected, decoupled_weight_decay=decoupled, **kw)
    return build_optimizer(cls, params, lr, scheds, foreach=True, **kw)


def adam(params: Iterable, lr: Any = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
         amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
         amsgrad_bias_corrected: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` (foreach), or :class:`OptaxAdam` for ``eps_root`` / ``amsgrad_bias_corrected``."""
    return _adam_family("adam", torch.optim.Adam, False, params, lr, betas, eps, weight_decay, amsgrad,
                        maximize, eps_root, amsgrad_bias_corrected)


def adamw(params: Iterable, lr: Any = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8,
          weight_decay: Any = 1e-2, amsgrad: bool = False, maximize: bool = False, eps_root: Any = 0.0,
          amsgrad_bias_corrected: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.AdamW`` (foreach), or :class:`OptaxAdam` (decoupled) for the optax options."""
    return _adam_family("adamw", torch.optim.AdamW, True, params, lr, betas, eps, weight_decay, amsgrad,
                        maximize, eps_root, amsgrad_bias_corrected)


def lars(params: Iterable, lr: Any, momentum: Any = 0.9, weight_decay: Any = 0.0, trust_coefficient: Any = 0.001,
         eps: Any = 0.0, nesterov: bool = False, decay_in_norm: bool = False, weight_decay_mask: Any = True,
         trust_ratio_mask: Any = True) -> torch.optim.Optimizer:
    """:class:`LARS`, the mirror of :func:`jaxinit.optim.lars` (masks: bool or ``tensor -> bool``)."""
    _core.check("lars", lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps,
                trust_coefficient=trust_coefficient, nesterov=nesterov, decay_in_norm=decay_in_norm)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(LARS, params, lr, scheds, momentum=momentum, weight_decay=weight_decay,
                  trust_coefficient=trust_coefficient, eps=eps, nesterov=nesterov, decay_in_norm=decay_in_norm,
                  weight_decay_mask=weight_decay_mask, trust_ratio_mask=trust_ratio_mask)


# ----------------------------------------------------------------- the rest of torch.optim (torch's classes)
def _check_scalar_dtype(who: str, scalar_dtype: str) -> None:
    """torch picks the dtype of its 0-d state tensors itself (``torch.get_default_dtype()``): refuse another."""
    from torch.optim.optimizer import _get_scalar_dtype

    have = str(_get_scalar_dtype()).replace("torch.", "")
    if scalar_dtype != have:
        raise _core.InitError(
            f"{who}: scalar_dtype={scalar_dtype!r}, but torch keeps this optimizer's 0-d state tensors in "
            f"torch.get_default_dtype() = {have}; call torch.set_default_dtype(torch.{scalar_dtype}) first, "
            f"or pass scalar_dtype={have!r}.")


def nadam(params: Iterable, lr: Any = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
          momentum_decay: Any = 4e-3, decoupled_weight_decay: bool = False, maximize: bool = False,
          scalar_dtype: str = "float32", differentiable: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.NAdam`` (foreach; single-tensor with ``differentiable=True``); ``lr`` may be a schedule.
    Mirror of :func:`jaxinit.optim.nadam`."""
    _core.check("nadam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum_decay=momentum_decay,
                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, scalar_dtype=scalar_dtype,
                differentiable=differentiable)
    _check_scalar_dtype("nadam", scalar_dtype)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.NAdam, params, lr, scheds, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                  momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                  differentiable=differentiable, foreach=not differentiable)


def radam(params: Iterable, lr: Any = 1e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
          decoupled_weight_decay: bool = False, maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.RAdam`` (foreach); ``lr`` may be a schedule. Mirror of :func:`jaxinit.optim.radam`."""
    _core.check("radam", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.RAdam, params, lr, scheds, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                  decoupled_weight_decay=decoupled_weight_decay, maximize=maximize, foreach=True)


def adamax(params: Iterable, lr: Any = 2e-3, betas: tuple = (0.9, 0.999), eps: Any = 1e-8, weight_decay: Any = 0,
           maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adamax`` (foreach); ``lr`` may be a schedule. Mirror of :func:`jaxinit.optim.adamax`."""
    _core.check("adamax", lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.Adamax, params, lr, scheds, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                  maximize=maximize, foreach=True)


def adadelta(params: Iterable, lr: Any = 1.0, rho: Any = 0.9, eps: Any = 1e-6, weight_decay: Any = 0,
             maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Adadelta`` (foreach); ``lr`` may be a schedule. Mirror of :func:`jaxinit.optim.adadelta`."""
    _core.check("adadelta", lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.Adadelta, params, lr, scheds, rho=rho, eps=eps, weight_decay=weight_decay,
                  maximize=maximize, foreach=True)


def rprop(params: Iterable, lr: Any = 1e-2, etas: tuple = (0.5, 1.2), step_sizes: tuple = (1e-6, 50),
          maximize: bool = False) -> torch.optim.Optimizer:
    """``torch.optim.Rprop`` (foreach). ``lr`` is the initial step size only: a number (torch ignores later
    lr changes, so a schedule is refused). Mirror of :func:`jaxinit.optim.rprop`."""
    _core.check("rprop", lr=lr, etas=etas, step_sizes=step_sizes, maximize=maximize)
    if callable(lr) or (isinstance(params, (list, tuple)) and any(isinstance(g, dict) and callable(g.get("lr"))
                                                                  for g in params)):
        raise _core.InitError(
            "rprop: lr must be a number (torch's Rprop reads lr once, to fill step_size on the first step, and "
            "ignores it afterwards, so a schedule would have no effect in torch); pass lr=<initial step size>.")
    return torch.optim.Rprop(params, lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes), maximize=maximize,
                             foreach=True)


def asgd(params: Iterable, lr: Any = 1e-2, lambd: Any = 1e-4, alpha: Any = 0.75, t0: Any = 1e6,
         weight_decay: Any = 0, maximize: bool = False, scalar_dtype: str = "float32") -> torch.optim.Optimizer:
    """``torch.optim.ASGD`` (single-tensor: ``foreach=False``); ``lr`` may be a schedule. Mirror of
    :func:`jaxinit.optim.asgd`.

    torch's two ASGD implementations differ: the multi-tensor one (``foreach=True``, torch's default on
    GPU) computes ``eta`` from the float32 ``step`` tensor in float32 arithmetic (torch/optim/asgd.py
    ``_multi_tensor_asgd``), ~1e-7 relative away from the single-tensor one, whose formulas these are.
    """
    _core.check("asgd", lr=lr, weight_decay=weight_decay, maximize=maximize, scalar_dtype=scalar_dtype)
    _check_scalar_dtype("asgd", scalar_dtype)
    params, lr, scheds = split_schedules(params, lr)
    return build_optimizer(torch.optim.ASGD, params, lr, scheds, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay,
                  maximize=maximize, foreach=False)
