"""ConstantLR, LambdaLR, MultiplicativeLR, CyclicLR, SequentialLR, ChainedScheduler and
ReduceLROnPlateau vs the REAL torch.optim.lr_scheduler, 1000 steps, both packages.

Every case runs torch's scheduler on an SGD optimizer with two param groups, the second with a
1-element tensor lr (as torch's own scheduler tests do), and compares, at every step, the group
lrs torch sets with (a) our schedules read from the torch scheduler (``schedules_from_torch``)
and (b) the direct factory call. Tolerance (float64): ``<= 1e-12 * peak`` as in
``test_schedules.py`` (torch's recursions accumulate <= 1 rounding per step; the closed forms
do not). A float32 tensor lr is a separate case: torch then computes the lr in float32.
"""
from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler as L

import jaxinit.optim as jo
import torchinit.optim as to
from _jaxinit import InitError
from parity_tests._figures import record_figure

N = 1000
RTOL_PEAK = 1e-12
MIRROR_RTOL_PEAK = 1e-13  # XLA's float64 cos/pow vs libm's (test_schedules.py)
LR0, LR1 = 0.1, 0.5


def f_exp(k):
    return 0.995 ** k


def f_mult(k):
    return 0.999 ** (k % 3)  # 1, 0.999, 0.998..., works on Python ints and JAX int arrays alike


def f_scale(x):
    return 1 / (1.0 + x)


def f_scale_it(x):
    return 0.999 ** x


# (id, ours(pkg, lr) -> Schedule, torch(opt) -> scheduler); lr_lambda passed to schedules_from_torch
CASES = [
    ("constant", lambda p, lr: p.constant_lr(lr), lambda o: L.ConstantLR(o)),
    ("constant_300", lambda p, lr: p.constant_lr(lr, 0.5, 300), lambda o: L.ConstantLR(o, 0.5, 300)),
    ("lambda", lambda p, lr: p.lambda_lr(lr, f_exp), lambda o: L.LambdaLR(o, f_exp)),
    ("multiplicative", lambda p, lr: p.multiplicative_lr(lr, f_mult), lambda o: L.MultiplicativeLR(o, f_mult)),
    ("cyclic_triangular", lambda p, lr: p.cyclic_lr(lr / 10, lr, step_size_up=50, step_size_down=30),
     lambda o: L.CyclicLR(o, [LR0 / 10, LR1 / 10], [LR0, LR1], step_size_up=50, step_size_down=30)),
    ("cyclic_triangular2", lambda p, lr: p.cyclic_lr(lr / 10, lr, step_size_up=40, mode="triangular2"),
     lambda o: L.CyclicLR(o, [LR0 / 10, LR1 / 10], [LR0, LR1], step_size_up=40, mode="triangular2")),
    ("cyclic_exp_range", lambda p, lr: p.cyclic_lr(lr / 10, lr, step_size_up=33, mode="exp_range", gamma=0.998),
     lambda o: L.CyclicLR(o, [LR0 / 10, LR1 / 10], [LR0, LR1], step_size_up=33, mode="exp_range", gamma=0.998)),
    ("cyclic_scale_fn_cycle", lambda p, lr: p.cyclic_lr(lr / 10, lr, step_size_up=25, scale_fn=f_scale),
     lambda o: L.CyclicLR(o, [LR0 / 10, LR1 / 10], [LR0, LR1], step_size_up=25, scale_fn=f_scale)),
    ("cyclic_scale_fn_iterations",
     lambda p, lr: p.cyclic_lr(lr / 10, lr, step_size_up=25, step_size_down=0, scale_fn=f_scale_it,
                               scale_mode="iterations"),
     lambda o: L.CyclicLR(o, [LR0 / 10, LR1 / 10], [LR0, LR1], step_size_up=25, step_size_down=0,
                          scale_fn=f_scale_it, scale_mode="iterations")),
    ("seq_warmup_cosine",
     lambda p, lr: p.sequential_lr([p.linear_lr(lr, 0.01, total_iters=100), p.cosine_annealing_lr(lr, T_max=900)],
                                   [100]),
     lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.01, total_iters=100), L.CosineAnnealingLR(o, 900)], [100])),
    ("seq_constant_exp_step",
     lambda p, lr: p.sequential_lr([p.constant_lr(lr, 0.2, 20), p.exponential_lr(lr, 0.99), p.step_lr(lr, 70, 0.5)],
                                   [50, 400]),
     lambda o: L.SequentialLR(o, [L.ConstantLR(o, 0.2, 20), L.ExponentialLR(o, 0.99), L.StepLR(o, 70, 0.5)],
                              [50, 400])),
    ("seq_linear_multiplicative",
     lambda p, lr: p.sequential_lr([p.linear_lr(lr, 0.1, 0.5, 100), p.multiplicative_lr(lr, f_mult)], [150]),
     lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 0.5, 100), L.MultiplicativeLR(o, f_mult)], [150])),
    ("seq_lambda_onecycle",
     lambda p, lr: p.sequential_lr([p.lambda_lr(lr, f_exp), p.one_cycle_lr(lr, total_steps=901)], [100]),
     lambda o: L.SequentialLR(o, [L.LambdaLR(o, f_exp), L.OneCycleLR(o, [LR0, LR1], total_steps=901,
                                                                       cycle_momentum=False)], [100])),
    ("seq_restarts_poly",
     lambda p, lr: p.sequential_lr([p.cosine_annealing_warm_restarts(lr, 30, 2), p.polynomial_lr(lr, 300, 2.0)],
                                   [333]),
     lambda o: L.SequentialLR(o, [L.CosineAnnealingWarmRestarts(o, 30, 2), L.PolynomialLR(o, 300, 2.0)], [333])),
    ("chain_constant_exp",
     lambda p, lr: p.chained_scheduler([p.constant_lr(lr, 0.1, 2), p.exponential_lr(lr, 0.995)]),
     lambda o: L.ChainedScheduler([L.ConstantLR(o, 0.1, 2), L.ExponentialLR(o, 0.995)])),
    ("chain_warmup_cosine",
     lambda p, lr: p.chained_scheduler([p.linear_lr(lr, 0.01, total_iters=50), p.cosine_annealing_lr(lr, 1000)]),
     lambda o: L.ChainedScheduler([L.LinearLR(o, 0.01, total_iters=50), L.CosineAnnealingLR(o, 1000)])),
    ("chain_step_multistep_poly_mult",
     lambda p, lr: p.chained_scheduler([p.step_lr(lr, 90, 0.7), p.multi_step_lr(lr, [10, 500]),
                                        p.polynomial_lr(lr, 800, 0.5), p.multiplicative_lr(lr, f_mult)]),
     lambda o: L.ChainedScheduler([L.StepLR(o, 90, 0.7), L.MultiStepLR(o, [10, 500]), L.PolynomialLR(o, 800, 0.5),
                                   L.MultiplicativeLR(o, f_mult)])),
]
LAMBDA = {"lambda": f_exp, "multiplicative": f_mult, "seq_linear_multiplicative": f_mult,
          "seq_lambda_onecycle": f_exp, "chain_step_multistep_poly_mult": f_mult}


def _optimizer(lr1=None, momentum=0.9, opt="sgd"):
    a, b = (torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)) for _ in range(2))
    lr1 = torch.tensor(LR1, dtype=torch.float64) if lr1 is None else lr1
    if opt == "adam":
        return torch.optim.Adam([{"params": [a]}, {"params": [b], "lr": LR1}], lr=LR0)
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": lr1}], lr=LR0, momentum=momentum)


def torch_run(make, steps=N, **kw):
    """Group lrs (and momentum / beta1) torch sets before each of steps+1 optimizer steps, + the scheduler."""
    o = _optimizer(**kw)
    s = make(o)
    lrs, moms = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps + 1):
            lrs.append([float(g["lr"]) for g in o.param_groups])
            moms.append([g["momentum"] if "momentum" in g else g["betas"][0] for g in o.param_groups])
            o.step()
            s.step()
    return np.array(lrs), np.array(moms), s


def jax_values(sched, n):
    return np.asarray(jax.jit(jax.vmap(sched))(jnp.arange(n, dtype=jnp.int32)))


def _err(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_scheduler_equals_real_torch(case):
    cid, ours, make = case
    ref, _, sched = torch_run(make)
    fn = LAMBDA.get(cid)
    errs = []
    # group 0 (float lr) read and built directly, group 1 (tensor lr) read and built directly
    groups = (0, 0, 1, 1)
    for pkg in (jo, to):
        read = pkg.schedules_from_torch(sched, lr_lambda=fn) if pkg is jo else pkg.schedules_from_torch(sched)
        assert len(read) == 2
        scheds = (read[0], ours(pkg, LR0), read[1], ours(pkg, LR1))
        if pkg is jo:  # one compilation for the four
            vals = np.asarray(jax.jit(jax.vmap(lambda t: jnp.stack([s(t) for s in scheds])))(
                jnp.arange(N + 1, dtype=jnp.int32))).T
        else:
            vals = [np.array([s(t) for t in range(N + 1)]) for s in scheds]
        errs += [_err(v, ref[:, g]) for v, g in zip(vals, groups)]
        if pkg is jo:
            j = vals[3]
    record_figure("schedulers_more", "err/peak", max(errs), cid)
    assert max(errs) <= RTOL_PEAK, errs
    mirror = _err(j, vals[3])
    record_figure("schedulers_more", "mirror/peak", mirror, cid)
    assert mirror <= MIRROR_RTOL_PEAK


@pytest.mark.parametrize("case", CASES[::2], ids=[c[0] for c in CASES[::2]])
def test_torch_scheduler_of_ours_is_torchs(case):
    """schedule.torch_scheduler(opt) builds the same torch objects: bitwise the same lrs."""
    cid, ours, make = case
    ref, _, _ = torch_run(make, steps=300, lr1=LR0)
    for pkg in (jo, to):
        o = _optimizer(lr1=123.0)
        s = ours(pkg, LR0).torch_scheduler(o)
        got = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(301):
                got.append(o.param_groups[0]["lr"])
                o.step()
                s.step()
        np.testing.assert_array_equal(got, ref[:, 0])


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("mode", ["triangular", "exp_range"])
def test_cyclic_momentum_equals_torch(opt, mode):
    kw = dict(step_size_up=30, step_size_down=20, mode=mode, gamma=0.999)
    _, ref, s = torch_run(lambda o: L.CyclicLR(o, 0.01, 0.1, base_momentum=0.8, max_momentum=0.95, **kw), opt=opt)
    for pkg in (jo, to):
        direct = pkg.cyclic_momentum(0.8, 0.95, **kw)
        read = pkg.schedules_from_torch(s, which="momentum")[1]
        for m in (direct, read):
            vals = jax_values(m, N + 1) if pkg is jo else np.array([m(t) for t in range(N + 1)])
            err = _err(vals, ref[:, 1])
            record_figure("schedulers_more", "err/peak", err, f"cyclic_momentum({opt},{mode})")
            assert err <= RTOL_PEAK


def test_cyclic_training_with_momentum_cycling():
    """300 steps of torch SGD + CyclicLR(cycle_momentum) vs jaxinit.optim.from_torch (momentum injected),
    identical gradients, float64: 1e-12 relative (float64 rounding of 300 updates)."""
    steps, size = 300, 8
    grads = np.random.default_rng(0).standard_normal((steps, size))
    p = torch.nn.Parameter(torch.linspace(-1, 1, size, dtype=torch.float64))
    o = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    s = L.CyclicLR(o, 0.01, 0.1, step_size_up=40, mode="triangular2")
    w0 = jnp.asarray(p.detach().numpy())
    tx = jo.from_torch(o, s)
    for g in grads:
        p.grad = torch.tensor(g)
        o.step()
        s.step()

    def body(carry, g):
        w, st = carry
        u, st = tx.update([g], st, w)
        return (optax.apply_updates(w, u), st), None

    (w, _), _ = jax.lax.scan(body, ([w0], tx.init([w0])), jnp.asarray(grads))
    ref = p.detach().numpy()
    err = float(np.max(np.abs(np.asarray(w[0]) - ref) / np.abs(ref)))
    record_figure("schedulers_more", "train_rel", err, "cyclic+sgd momentum")
    assert err <= 1e-12


def test_float32_tensor_lr_group():
    """lr=torch.tensor(0.5) (float32, as in torch's own scheduler tests): torch then keeps and recomputes the
    lr in float32 (fill_ of the float32 tensor at every step), so the float64 schedule agrees to float32
    rounding compounded over the recursion: <= N * 2**-24 of the peak (measured 8.4e-7)."""
    for cid, ours, make in (CASES[1], CASES[9], CASES[14]):
        ref, _, s = torch_run(make, lr1=torch.tensor(LR1))
        assert s.optimizer.param_groups[1]["lr"].dtype == torch.float32
        for pkg in (jo, to):
            read = pkg.schedules_from_torch(s, lr_lambda=LAMBDA.get(cid)) if pkg is jo else \
                pkg.schedules_from_torch(s)
            vals = jax_values(read[1], N + 1) if pkg is jo else np.array([read[1](t) for t in range(N + 1)])
            err = _err(vals, ref[:, 1])
            record_figure("schedulers_more", "f32_tensor_lr", err, cid)
            assert err <= N * 2.0**-24


@pytest.mark.parametrize("chunk", range(3))
def test_tensor_lr_group_with_every_torch_scheduler(chunk):
    """Every case of test_schedules.py on a second param group with lr=torch.tensor(0.5, float64):
    schedules_from_torch reads it (the Python twin checked against torch over 1000 steps, 1e-12 of the
    peak; the JAX schedule is the very same spec with the same parameters)."""
    from parity_tests.test_schedules import CASES as OLD

    for name, kw, make in OLD[chunk::3]:
        steps = N - 1 if name == "one_cycle_lr" else N
        base = kw.get("lr", LR0)
        o = _optimizer(lr1=torch.tensor(LR1, dtype=torch.float64))
        o.param_groups[0]["lr"] = base
        s = make(o)
        ref = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(steps + 1):
                ref.append(float(o.param_groups[1]["lr"]))
                o.step()
                s.step()
        py = to.schedules_from_torch(s)[1]
        tol = RTOL_PEAK
        if name == "cosine_annealing_lr" and kw.get("eta_min", 0.0):  # torch's recursion drift: test_schedules.py
            tol = max(tol, 8 * np.finfo(np.float64).eps * kw["eta_min"] * (2 * kw["T_max"] / math.pi) ** 2 / LR1)
        assert _err(np.array([py(t) for t in range(steps + 1)]), np.array(ref)) <= tol, name
        jx = jo.schedules_from_torch(s)[1]
        assert (jx.name, jx.params) == (py.name, py.params)


def test_lambda_needs_the_matching_function():
    o = _optimizer()
    s = L.LambdaLR(o, f_exp)
    with pytest.raises(InitError, match="pass lr_lambda=<the same function written with jax.numpy>"):
        jo.schedules_from_torch(s)
    with pytest.raises(InitError, match=r"lr_lambda does not match the scheduler's lr_lambdas\[0\] at step 1"):
        jo.schedules_from_torch(s, lr_lambda=lambda k: 0.99 ** k)
    with pytest.raises(InitError, match="pass lr_lambda"):
        jo.from_torch(o, s)
    tx = jo.from_torch(o, s, lr_lambda=f_exp)
    assert isinstance(tx, optax.GradientTransformation)
    ours = jo.schedules_from_torch(L.MultiplicativeLR(_optimizer(), [f_mult, f_exp]), lr_lambda=[f_mult, f_exp])
    assert float(ours[1](3)) == pytest.approx(LR1 * f_exp(1) * f_exp(2) * f_exp(3), rel=1e-15)


BAD = [
    (lambda p: p.constant_lr(0.1, factor=1.5), "Constant multiplicative factor expected to be between 0 and 1"),
    (lambda p: p.lambda_lr(0.1, 0.9), "lr_lambda must be a function of the step"),
    (lambda p: p.cyclic_lr(0.01, 0.1, mode="sine"), "mode is invalid and scale_fn is None"),
    (lambda p: p.cyclic_lr(0.01, 0.1, scale_fn=f_scale, scale_mode="epochs"), "scale_mode must be 'cycle' or"),
    (lambda p: p.cyclic_lr(0.01, 0.1, step_size_up=0), "step_size_up must be > 0"),
    (lambda p: p.sequential_lr([p.step_lr(0.1, 3)], [5]), "expects number of schedulers provided to be one more"),
    (lambda p: p.sequential_lr([p.step_lr(0.1, 3), p.step_lr(0.1, 3)], [0]), "milestones must be increasing"),
    (lambda p: p.sequential_lr([p.step_lr(0.1, 3), lambda k: 0.1], [5]), r"schedules\[1\] is .* not a schedule"),
    (lambda p: p.sequential_lr([p.step_lr(0.1, 3), p.one_cycle_momentum(total_steps=9)], [5]),
     "which torch cannot put inside"),
    (lambda p: p.chained_scheduler([p.step_lr(0.1, 3), p.cyclic_lr(0.01, 0.1)]), "has no\\s+closed form"),
    (lambda p: p.chained_scheduler([p.step_lr(0.1, 3), p.step_lr(0.2, 3)]), "different base lrs"),
    (lambda p: p.chained_scheduler([p.cosine_annealing_lr(0.1, 9, eta_min=0.01)]), "eta_min=0 inside a chain"),
    (lambda p: p.chained_scheduler([]), "non-empty list"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    make, msg = BAD[i]
    for pkg in (jo, to):
        with pytest.raises(InitError, match=msg):
            make(pkg)


def test_chained_cosine_past_t_max_is_refused_not_wrong():
    sched = to.chained_scheduler([to.linear_lr(0.1), to.cosine_annealing_lr(0.1, 20)])
    assert sched(20) == pytest.approx(0.0, abs=1e-17)
    with pytest.raises(ValueError, match="past T_max=20"):
        sched(21)
    assert np.isnan(jo.chained_scheduler([jo.linear_lr(0.1), jo.cosine_annealing_lr(0.1, 20)])(21))


def test_unsupported_inside_composites_and_plateau():
    o = _optimizer()
    inner = L.ChainedScheduler([L.StepLR(o, 3)])
    with pytest.raises(InitError, match="holds a ChainedScheduler"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "lr_scheduler.step() before optimizer.step()"
        jo.schedules_from_torch(L.SequentialLR(o, [inner, L.StepLR(o, 3)], [4]))
    with pytest.raises(InitError, match="ReduceLROnPlateau is driven by a metric"):
        to.schedules_from_torch(L.ReduceLROnPlateau(o))
    for pkg in (jo, to):
        with pytest.raises(InitError, match="cyclic_momentum has no torch scheduler"):
            pkg.cyclic_momentum().torch_scheduler(o)


def _stepped(opt, sched, opt_steps, sched_steps):
    ps = [p for g in opt.param_groups for p in g["params"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in range(opt_steps):
            for p in ps:
                p.grad = torch.ones_like(p)
            opt.step()
            if k < sched_steps:
                sched.step()
    return opt, sched


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_per_epoch_scheduler_on_sgd_is_not_accepted_silently(momentum):
    """torch's SGD keeps no step count: from_torch cannot see that the scheduler stepped per epoch, so it
    asks for the optimizer's step count and checks it (it used to accept momentum SGD silently and to say
    "taken [0.0] steps" without momentum)."""
    for pkg in (jo, to):
        o, s = _stepped(_optimizer(momentum=momentum), None, 0, 0)
        o, s = _stepped(o, L.StepLR(o, 3), 6, 2)  # per epoch: 2 scheduler steps for 6 optimizer steps
        with pytest.raises(InitError, match=r"SGD keeps no step count.*\(stepped 2 times\).*pass step="):
            pkg.from_torch(o, s)
        with pytest.raises(InitError, match="has taken 6 steps but the scheduler was stepped 2 times"):
            pkg.from_torch(o, s, step=6)
        o, s = _stepped(_optimizer(momentum=momentum), None, 0, 0)
        o, s = _stepped(o, L.StepLR(o, 3), 6, 6)
        assert pkg.from_torch(o, s, step=6) is not None


def test_per_epoch_scheduler_on_adam_names_both_counts():
    o = _optimizer(opt="adam")
    o, s = _stepped(o, L.StepLR(o, 3), 6, 2)
    for pkg in (jo, to):
        with pytest.raises(InitError, match="optimizer has taken 6 steps but the scheduler was stepped 2 times"):
            pkg.from_torch(o, s)
        with pytest.raises(InitError, match="step=5 but the optimizer state says"):
            pkg.from_torch(o, s, step=5)


def test_tensor_lr_group_with_scheduler_converts():
    """A group with lr=torch.tensor(...) and a scheduler: from_torch accepts it (as without a scheduler);
    the lr it uses is torch's, every step (float64 tensor: exact to 1e-12 of the peak)."""
    o = _optimizer()
    s = L.CosineAnnealingLR(o, 50)
    o, s = _stepped(o, s, 7, 7)
    tx = jo.from_torch(o, s, step=7)
    twin = to.from_torch(o, s, step=7)
    ref, _, _ = torch_run(lambda o: L.CosineAnnealingLR(o, 50), steps=60)
    sched = jo.schedules_from_torch(s)[1]
    assert _err(jax_values(sched, 61), ref[:, 1]) <= RTOL_PEAK
    assert twin.param_groups[1]["schedule_step"] == 7
    assert twin._torchinit_schedules[1](7) == pytest.approx(ref[7, 1], rel=1e-13)
    assert isinstance(tx, optax.GradientTransformation)


# ------------------------------------------------------------------ ReduceLROnPlateau

PLATEAU = [
    dict(),
    dict(mode="max", threshold_mode="abs", threshold=0.01, patience=2, cooldown=3, factor=0.5),
    dict(patience=1, cooldown=1, factor=0.3, min_lr=[0.004, 0.02], eps=1e-3),
    dict(mode="min", threshold_mode="abs", threshold=0.0, patience=0, factor=0.9),
]


def _metrics(n, seed=0):
    """A noisy, mostly falling metric with plateaus and exact repeats (2 decimals)."""
    rng = np.random.default_rng(seed)
    return np.round(1.0 / (1.0 + np.arange(n) // 9) + 0.05 * rng.standard_normal(n), 2)


@pytest.mark.parametrize("kw", PLATEAU, ids=[str(i) for i in range(len(PLATEAU))])
def test_reduce_lr_on_plateau_equals_torch(kw):
    """120 epochs x 3 SGD steps: torch SGD (2 groups, one with a tensor lr) + ReduceLROnPlateau(metric per epoch)
    vs jaxinit.optim.from_torch(optimizer, scheduler): identical lrs at every epoch (the reductions are the
    same float64 operations) and parameters within 1e-12 relative (float64 rounding of 360 updates)."""
    epochs, size = 120, 2
    grads = np.random.default_rng(1).standard_normal((epochs, 3, 2, size))
    metric = _metrics(epochs)
    o = _optimizer()
    s = L.ReduceLROnPlateau(o, **kw)
    ps = [p for g in o.param_groups for p in g["params"]]
    w0 = [jnp.asarray(p.detach().numpy()) for p in ps]
    tx = jo.from_torch(o, s, param_names=ps)  # two groups of (2,) parameters: the list's order by identity
    step = jax.jit(lambda g, st, w, v: tx.update(g, st, w, value=v))
    plain = jax.jit(lambda g, st, w: tx.update(g, st, w))
    st, w = tx.init(w0), w0
    for e in range(epochs):
        for k in range(3):
            for p, g in zip(ps, grads[e, k]):
                p.grad = torch.tensor(g)
            o.step()
            gj = [jnp.asarray(g) for g in grads[e, k]]
            u, st = step(gj, st, w, metric[e]) if k == 2 else plain(gj, st, w)
            w = optax.apply_updates(w, u)
        s.step(metric[e])
        assert jo.export_plateau_state(st)["lrs"] == [float(g["lr"]) for g in o.param_groups], e
        theirs = to.export_plateau_state(s)
        ours = jo.export_plateau_state(st)
        assert {k: ours[k] for k in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")} == \
               {k: theirs[k] for k in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch")}
    assert len({float(g["lr"]) for g in o.param_groups} | {LR0, LR1}) > 2 or not kw  # the lr did fall
    err = max(float(np.max(np.abs(np.asarray(a) - p.detach().numpy())) / np.max(np.abs(p.detach().numpy())))
              for a, p in zip(w, ps))
    record_figure("schedulers_more", "plateau_train_rel", err, str(kw))
    assert err <= 1e-12


def test_reduce_lr_on_plateau_state_both_ways():
    """Counters and lrs: torch -> JAX mid-run resumes exactly; JAX -> torch loads the same values."""
    metric = _metrics(60, seed=3)
    kw = dict(patience=2, cooldown=2, factor=0.5)
    o = _optimizer()
    s = L.ReduceLROnPlateau(o, **kw)
    for m in metric[:30]:
        s.step(m)
    tx = jo.from_torch(o, s, param_names=[p for g in o.param_groups for p in g["params"]])  # the list's order
    w = [jnp.zeros(2), jnp.zeros(2)]
    st = jo.import_plateau_state(s, tx.init(w))
    for m in metric[30:]:
        _, st = tx.update([jnp.zeros(2), jnp.zeros(2)], st, w, value=m)
        s.step(m)
    assert jo.export_plateau_state(st) == to.export_plateau_state(s)
    o2 = _optimizer()
    s2 = to.reduce_lr_on_plateau(o2, **kw)
    to.import_plateau_state(jo.export_plateau_state(st), s2)
    assert to.export_plateau_state(s2) == to.export_plateau_state(s)
    assert isinstance(o2.param_groups[1]["lr"], torch.Tensor)  # a tensor lr stays a tensor
    s.step(5.0)
    s2.step(5.0)
    assert to.export_plateau_state(s2) == to.export_plateau_state(s)


def test_torchinit_from_torch_with_plateau_says_how():
    o = _optimizer()
    with pytest.raises(InitError, match="convert the optimizer alone"):
        to.from_torch(o, L.ReduceLROnPlateau(o))


def test_reduce_lr_on_plateau_direct_and_errors():
    tx = jo.reduce_lr_on_plateau(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), patience=0,
                                 lr_name="learning_rate")
    st = tx.init(jnp.zeros(3))
    for m in (1.0, 1.0, 1.0):
        _, st = tx.update(jnp.ones(3), st, jnp.zeros(3), value=m)
    assert jo.export_plateau_state(st, lr_name="learning_rate")["lrs"] == [pytest.approx(0.001, rel=1e-15)]
    with pytest.raises(InitError, match="has no injected 'lr'"):
        jo.reduce_lr_on_plateau(jo.sgd(0.1)).init(jnp.zeros(3))
    for pkg, first in ((jo, optax.inject_hyperparams(jo.sgd)(lr=0.1)), (to, _optimizer())):
        with pytest.raises(InitError, match="mode must be 'min'"):
            pkg.reduce_lr_on_plateau(first, mode="minimum")
        with pytest.raises(InitError, match="factor must be"):
            pkg.reduce_lr_on_plateau(first, factor=1.0)
        with pytest.raises(InitError, match="threshold_mode must be 'rel' or 'abs'"):
            pkg.reduce_lr_on_plateau(first, threshold_mode="relative")
    with pytest.raises(ValueError, match="Factor should be < 1.0"):  # torch refuses it too
        L.ReduceLROnPlateau(_optimizer(), factor=1.0)


def test_every_spec_has_the_same_factory_in_both_packages():
    import inspect

    from _jaxinit.schedules import SPECS

    for name in SPECS:
        js, ts = inspect.signature(getattr(jo, name)), inspect.signature(getattr(to, name))
        assert [(p.name, p.default, p.kind) for p in js.parameters.values()] == \
               [(p.name, p.default, p.kind) for p in ts.parameters.values()], name
        assert getattr(jo, name).__doc__.split(":")[0] == getattr(to, name).__doc__.split(":")[0]
    for name in ("reduce_lr_on_plateau", "export_plateau_state", "import_plateau_state", "clip_grad_norm",
                 "clip_grad_value", "averaged_model", "get_ema_multi_avg_fn", "get_swa_multi_avg_fn", "update_bn"):
        assert getattr(jo, name).__doc__ and getattr(to, name).__doc__, name
