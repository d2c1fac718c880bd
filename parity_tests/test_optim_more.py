"""NAdam, RAdam, Adamax, Adadelta, Rprop, ASGD: jaxinit.optim == torch.optim, torchinit.optim mirrors it.

500 steps on the small MLP of ``test_optim.py`` (gradients computed by each framework from the same
weights and data, and in the same run identical injected gradients), relative difference
``max|a - b| / max|b|`` per parameter array.

Tolerances:
- float64: 1e-12 (the claim: torch's formulas, other operation order; measured 1e-16 .. 1e-14).
- float32: ``F32_TOL`` of test_optim.py (1e-3; its derivation: a few ulp per step carried over 500
  steps; measured 8e-7 .. 9e-6). Rprop is sign-driven (``sign(g) * step_size``, step sizes scaled
  by the sign of ``g_t * g_{t-1}``): a product rounded to the other sign would part the runs by a
  whole step size, but its float32 runs are measured equal (0), so the same bound holds it.
"""
from __future__ import annotations

import inspect

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
from parity_tests.test_optim_convert import torch_steps_with
from parity_tests.test_optim import DT, F32_TOL, F64_TOL, _problem, jax_run, rel_diff, torch_run

CLASSES = {"nadam": torch.optim.NAdam, "radam": torch.optim.RAdam, "adamax": torch.optim.Adamax,
           "adadelta": torch.optim.Adadelta, "rprop": torch.optim.Rprop, "asgd": torch.optim.ASGD}

# (id, factory, torch kwargs, ExponentialLR gamma or None)
CONFIGS = [
    ("nadam", "nadam", dict(lr=2e-3), None),
    ("nadam_wd_md_sched", "nadam", dict(lr=5e-3, weight_decay=1e-2, momentum_decay=6e-3), 0.995),
    ("nadam_decoupled_max", "nadam", dict(lr=2e-3, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
     None),
    ("radam", "radam", dict(lr=1e-2), None),
    ("radam_wd_sched", "radam", dict(lr=1e-2, weight_decay=1e-2, betas=(0.8, 0.99)), 0.995),
    ("radam_decoupled_max_eps", "radam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True,
                                              maximize=True, eps=1e-6), None),
    ("adamax", "adamax", dict(lr=1e-2), None),
    ("adamax_wd_max_sched", "adamax", dict(lr=1e-2, weight_decay=1e-2, maximize=True, betas=(0.8, 0.99)), 0.995),
    # lr=0.1: with torch's default lr=1.0 the MLP's model-gradient run turns chaotic after ~230 steps
    # (differences grow x1.6 per step from 1e-15 in float64, the same formulas); lr=1.0 is checked by
    # the injected-gradient run of optim_db's "default" configuration (test_optim_db.py)
    ("adadelta", "adadelta", dict(lr=0.1), None),
    ("adadelta_rho_wd_max_sched", "adadelta", dict(lr=0.5, rho=0.95, weight_decay=1e-2, maximize=True), 0.995),
    ("rprop", "rprop", dict(lr=1e-3), None),
    ("rprop_etas_sizes_max", "rprop", dict(lr=1e-3, etas=(0.4, 1.3), step_sizes=(1e-5, 0.1), maximize=True), None),
    ("asgd", "asgd", dict(lr=1e-2), None),
    ("asgd_t0_lambd_alpha_wd", "asgd", dict(lr=2e-2, lambd=1e-2, alpha=0.6, t0=100, weight_decay=1e-2), None),
    ("asgd_max_sched", "asgd", dict(lr=1e-2, t0=50, maximize=True), 0.995),
]


# the default run: the richest configuration of each optimizer; the whole table behind `exhaustive`
SAMPLED = ("nadam_wd_md_sched", "radam_decoupled_max_eps", "adamax_wd_max_sched", "adadelta_rho_wd_max_sched",
           "rprop_etas_sizes_max", "asgd_max_sched")


def _table(configs):
    return [pytest.param(*c, id=c[0], marks=() if c[0] in SAMPLED else pytest.mark.exhaustive) for c in configs]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cid,name,kw,gamma", _table(CONFIGS))
def test_matches_torch_optim(cid, name, kw, gamma, dtype):
    npd, tdt = DT[dtype]
    p0, x, y, grads = _problem(npd)
    lr = kw["lr"]
    jlr = (lambda count: lr * gamma ** count) if gamma else lr  # == torch ExponentialLR(gamma)
    tx = getattr(jo, name)(**{**kw, "lr": jlr})
    sign = -1.0 if kw.get("maximize") else 1.0
    jm, ji, sm, _ = jax_run(tx, p0, x, y, grads, sign=sign)
    sched = (lambda o: L.ExponentialLR(o, gamma)) if gamma else None
    tm, ti, om, _ = torch_run(lambda ps: CLASSES[name](ps, **kw), p0, x, y, grads, tdt, sched, sign=sign)
    dm, di = rel_diff(jm, tm), rel_diff(ji, ti)
    record_figure(f"optim/{name}", f"rel_diff_{'f64' if dtype == 'float64' else 'f32'}", max(dm, di), cid)
    if dtype == "float64":
        assert max(dm, di) <= F64_TOL, (dm, di)
        _assert_state_like_torch(sm, om)
    else:
        assert max(dm, di) <= F32_TOL, (dm, di)


_KEYS = ("exp_avg", "exp_avg_sq", "exp_inf", "square_avg", "acc_delta", "prev", "step_size", "ax", "mu_product",
         "eta", "mu")


def _assert_state_like_torch(jstate, topt):
    """The documented state fields hold torch's state (per-parameter arrays, and the 0-d scalars bitwise)."""
    tstate = topt.state[topt.param_groups[0]["params"][0]]
    seen = 0
    for key in _KEYS:
        if key in tstate:
            seen += 1
            a = np.asarray(optax.tree_utils.tree_get(jstate, key)["w1"])
            b = tstate[key].detach().cpu().numpy()
            if b.ndim == 0:  # mu_product / eta / mu: torch's float32 scalars, equal in dtype
                assert a.dtype == b.dtype, (key, a.dtype, b.dtype)
                np.testing.assert_allclose(a, b, rtol=1e-6 if key == "mu_product" else 0, err_msg=key)
            else:
                assert np.max(np.abs(a - b)) <= 1e-10 * max(np.max(np.abs(b)), 1e-300), key
    assert seen >= 2


@pytest.mark.parametrize("dtype", ["float64", pytest.param("float32", marks=pytest.mark.exhaustive)])
@pytest.mark.parametrize("cid,name,kw,gamma", [
    pytest.param(*c, id=c[0], marks=() if c[1] in ("nadam", "rprop", "asgd") else pytest.mark.exhaustive)
    for c in CONFIGS if c[0] in SAMPLED])
def test_torchinit_mirror_equals_jaxinit(cid, name, kw, gamma, dtype):
    """torchinit.optim.<name> (torch's class, lr schedule by the step pre-hook) == jaxinit.optim.<name>."""
    npd, tdt = DT[dtype]
    p0, x, y, grads = _problem(npd)
    lr = kw["lr"]
    sched = (lambda k: lr * gamma ** k) if gamma and name != "rprop" else lr
    sign = -1.0 if kw.get("maximize") else 1.0
    jm, ji, _, _ = jax_run(getattr(jo, name)(**{**kw, "lr": sched}), p0, x, y, grads, sign=sign)
    tm, ti, opt, _ = torch_run(lambda ps: getattr(to, name)(ps, **{**kw, "lr": sched}), p0, x, y, grads, tdt,
                               sign=sign)
    assert type(opt) is CLASSES[name]
    dm, di = rel_diff(jm, tm), rel_diff(ji, ti)
    record_figure("optim/torchinit_mirror", f"rel_diff_{'f64' if dtype == 'float64' else 'f32'}", max(dm, di), cid)
    assert max(dm, di) <= (F64_TOL if dtype == "float64" else F32_TOL), (dm, di)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in ("nadam", "rprop", "asgd") else
                                               pytest.mark.exhaustive) for n in CLASSES])
def test_inject_hyperparams_and_multi_transform(name):
    """inject_hyperparams (jitted, traced hyperparameters) and multi_transform groups == torch param groups."""
    p0, x, y, grads = _problem(np.float64, steps=100)
    kw = {c[0]: c[2] for c in CONFIGS}[name]
    a = {k: v for k, v in kw.items() if not isinstance(v, bool)}
    static = tuple(k for k, v in kw.items() if isinstance(v, bool))
    tx = optax.inject_hyperparams(getattr(jo, name), static_args=static)(**a, **{k: kw[k] for k in static})
    jm, ji, _, _ = jax_run(tx, p0, x, y, grads)
    tm, ti, _, _ = torch_run(lambda ps: CLASSES[name](ps, **kw), p0, x, y, grads, torch.float64)
    d = max(rel_diff(jm, tm), rel_diff(ji, ti))
    other = dict(lr=kw["lr"] * 0.5)
    labels = {"w1": "a", "w2": "a", "b1": "b", "b2": "b"}
    tx = optax.multi_transform({"a": getattr(jo, name)(**kw), "b": getattr(jo, name)(**{**kw, **other})}, labels)
    jm, ji, _, _ = jax_run(tx, p0, x, y, grads)

    def mk(ps):
        return CLASSES[name]([{"params": [ps[0], ps[2]]}, {"params": [ps[1], ps[3]], **other}], **kw)
    tm, ti, _, _ = torch_run(mk, p0, x, y, grads, torch.float64)
    d = max(d, rel_diff(jm, tm), rel_diff(ji, ti))
    record_figure("optim/inject_multi_transform", "rel_diff_f64", d, name)
    assert d <= F64_TOL, d


# ------------------------------------------------------------------ conversion: groups, schedulers, state
STEPS = 300
SHAPES = [(3, 4), (4,), (2, 2, 3)]
W0 = [np.random.default_rng(1).standard_normal(s) for s in SHAPES]
GRADS = [np.random.default_rng(2).standard_normal((STEPS,) + s) for s in SHAPES]

GROUPS = {  # several param groups, every option, a scheduler where torch's lr is used every step
    "nadam+steplr": lambda ps: (lambda o: (o, L.StepLR(o, 40, 0.7)))(torch.optim.NAdam(
        [{"params": ps[:2], "momentum_decay": 6e-3}, {"params": ps[2:], "weight_decay": 0.1,
                                                       "decoupled_weight_decay": True}], lr=5e-3)),
    "radam+cosine": lambda ps: (lambda o: (o, L.CosineAnnealingLR(o, 100, 1e-4)))(torch.optim.RAdam(
        [{"params": ps[:1], "maximize": True}, {"params": ps[1:], "weight_decay": 0.1, "betas": (0.8, 0.99)}],
        lr=1e-2)),
    "adamax": lambda ps: (torch.optim.Adamax([{"params": ps[:2]}, {"params": ps[2:], "lr": 1e-3, "eps": 1e-6}],
                                             lr=2e-3, weight_decay=1e-2), None),
    "adadelta+exp": lambda ps: (lambda o: (o, L.ExponentialLR(o, 0.99)))(torch.optim.Adadelta(
        [{"params": ps[:2], "rho": 0.95}, {"params": ps[2:], "maximize": True}], weight_decay=1e-2)),
    "rprop": lambda ps: (torch.optim.Rprop([{"params": ps[:1], "etas": (0.3, 1.5)},
                                            {"params": ps[1:], "step_sizes": (1e-4, 1.0), "lr": 1e-3}]), None),
    "asgd+linear": lambda ps: (lambda o: (o, L.LinearLR(o, 0.2, 1.0, 60)))(torch.optim.ASGD(
        [{"params": ps[:2], "t0": 30}, {"params": ps[2:], "lambd": 1e-2, "alpha": 0.5, "weight_decay": 0.1}],
        lr=1e-2)),
}


def _ps():
    return [torch.nn.Parameter(torch.tensor(w)) for w in W0]


def _torch_steps(o, s, ps, start, stop):
    torch_steps_with(GRADS, o, s, ps, start, stop)


def _jax_steps(tx, params, st, start, stop):
    def body(carry, g):
        p, st = carry
        u, st = tx.update(g, st, p)
        return (optax.apply_updates(p, u), st), None

    grads = [jnp.asarray(g[start:stop]) for g in GRADS]
    return jax.jit(lambda c, g: jax.lax.scan(body, c, g)[0])((params, st), grads)


def _rel(jp, tp):
    return max(float(np.max(np.abs(np.asarray(a) - b.detach().numpy())) / np.max(np.abs(b.detach().numpy())))
               for a, b in zip(jp, tp))


@pytest.mark.parametrize("case", list(GROUPS))
def test_from_torch_groups_scheduler_resume_and_bitwise_round_trip(case):
    """from_torch over param groups + scheduler: 300 steps == torch; torch 150 -> JAX 150 == torch 300;
    the state at 150 round-trips torch -> JAX -> torch bitwise (0-d float32 scalars keep their dtype)."""
    ps = _ps()
    o, s = GROUPS[case](ps)
    tx = jo.from_torch(o, s)
    p0 = [jnp.asarray(w) for w in W0]
    full, _ = _jax_steps(tx, p0, tx.init(p0), 0, STEPS)
    _torch_steps(o, s, ps, 0, STEPS // 2)
    mid = [jnp.asarray(p.detach().numpy()) for p in ps]
    st = jo.import_state(o, mid, jo.from_torch(o, s))
    exported = jo.export_state(st, mid)
    o2, _ = GROUPS[case](_ps())
    to.import_state(exported, o2)
    a, b = o.state_dict()["state"], o2.state_dict()["state"]
    assert set(a) == set(b)
    for i in a:
        assert set(a[i]) == set(b[i])
        for k in a[i]:
            assert a[i][k].dtype == b[i][k].dtype and torch.equal(a[i][k], b[i][k]), (i, k)
    resumed, _ = _jax_steps(tx, mid, st, STEPS // 2, STEPS)
    _torch_steps(o, s, ps, STEPS // 2, STEPS)
    d = max(_rel(full, ps), _rel(resumed, ps))
    record_figure("optim_convert", "new optimizers", d, case)
    assert d <= F64_TOL, d


def test_torchinit_import_keeps_torch_scalar_dtype():
    """torch's own load_state_dict casts NAdam's mu_product (and ASGD's eta/mu) to the parameter dtype,
    which changes torch's arithmetic after a resume; torchinit.optim.import_state keeps torch's float32."""
    ps = _ps()
    o = torch.optim.NAdam(ps, lr=1e-2)
    _torch_steps(o, None, ps, 0, 5)
    o2 = torch.optim.NAdam(_ps(), lr=1e-2)
    o2.load_state_dict(o.state_dict())
    assert o2.state[o2.param_groups[0]["params"][0]]["mu_product"].dtype == torch.float64  # torch's cast
    o3 = torch.optim.NAdam(_ps(), lr=1e-2)
    to.import_state(to.export_state(o), o3)
    assert o3.state[o3.param_groups[0]["params"][0]]["mu_product"].dtype == torch.float32


def test_from_torch_reads_scalar_dtype_from_the_state():
    """After torch's load_state_dict (mu_product float64), from_torch builds nadam(scalar_dtype='float64')."""
    ps = _ps()
    o = torch.optim.NAdam(ps, lr=1e-2)
    _torch_steps(o, None, ps, 0, 5)
    o2 = torch.optim.NAdam(_ps(), lr=1e-2)
    o2.load_state_dict(o.state_dict())
    params = [jnp.asarray(w) for w in W0]
    st = jo.import_state(o2, params, jo.from_torch(o2))
    assert optax.tree_utils.tree_get(st, "mu_product")[0].dtype == jnp.float64
    st = jo.import_state(o, params, jo.from_torch(o))
    assert optax.tree_utils.tree_get(st, "mu_product")[0].dtype == jnp.float32


# ------------------------------------------------------------------ surface, defaults, errors
@pytest.mark.parametrize("name", list(CLASSES))
def test_defaults_and_signatures(name):
    """Our defaults are torch's; torchinit's signature is jaxinit's with ``params`` first."""
    ours = inspect.signature(getattr(jo, name)).parameters
    theirs = inspect.signature(CLASSES[name].__init__).parameters
    for k, p in ours.items():
        if k in theirs:
            assert p.default == theirs[k].default, (name, k)
    js = [(p.name, p.default) for p in ours.values()]
    ts = [(p.name, p.default) for p in inspect.signature(getattr(to, name)).parameters.values()]
    assert ts[0][0] == "params" and ts[1:] == js


def test_sgd_default_lr_is_torchs():
    assert inspect.signature(jo.sgd).parameters["lr"].default == 1e-3 == \
        inspect.signature(torch.optim.SGD.__init__).parameters["lr"].default
    assert to.sgd([torch.nn.Parameter(torch.zeros(2))]).param_groups[0]["lr"] == 1e-3


@pytest.mark.parametrize("name,kw,msg", [
    ("nadam", dict(momentum_decay=-1.0), "Invalid momentum_decay value"),
    ("nadam", dict(betas=(1.0, 0.9)), "Invalid beta parameter at index 0"),
    ("radam", dict(eps=-1.0), "Invalid epsilon value"),
    ("adamax", dict(weight_decay=-0.1), "Invalid weight_decay value"),
    ("adadelta", dict(rho=1.5), "Invalid rho value"),
    ("rprop", dict(etas=(1.5, 1.2)), "Invalid eta values"),
    ("asgd", dict(lr=-1.0), "Invalid learning rate"),
])
def test_same_refusals_as_torch(name, kw, msg):
    with pytest.raises(ValueError, match=msg):
        CLASSES[name]([torch.nn.Parameter(torch.zeros(2))], **kw)
    with pytest.raises(InitError, match=msg):
        getattr(jo, name)(**kw)
    with pytest.raises(InitError, match=msg):
        getattr(to, name)([torch.nn.Parameter(torch.zeros(2))], **kw)


def test_option_errors():
    for make in (lambda: jo.rprop(lr=lambda k: 0.1), lambda: to.rprop([torch.zeros(2)], lr=lambda k: 0.1)):
        with pytest.raises(InitError, match="reads lr once"):
            make()
    with pytest.raises(InitError, match="scalar_dtype must be 'float32' or 'float64'"):
        jo.nadam(scalar_dtype="bfloat16")
    with pytest.raises(InitError, match=r"torch.get_default_dtype\(\) = float32"):
        to.asgd([torch.nn.Parameter(torch.zeros(2))], scalar_dtype="float64")
    with pytest.raises(InitError, match="etas must be a pair"):
        jo.rprop(etas=0.5)
    ps = [torch.nn.Parameter(torch.zeros(2))]
    for conv in (jo.from_torch, to.from_torch):  # torch's multi-tensor ASGD rounds eta in float32
        with pytest.raises(InitError, match="foreach=False"):
            conv(torch.optim.ASGD(ps, foreach=True))
    with pytest.raises(ValueError, match="needs params"):
        tx = jo.asgd()
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_torchinit_from_torch_nadam_differentiable_twin():
    """A differentiable NAdam converts to a torchinit twin that continues exactly like torch."""
    ps = [torch.tensor(w) for w in W0]  # plain tensors: differentiable=True steps outside no_grad
    o = torch.optim.NAdam(ps, lr=1e-2, differentiable=True, weight_decay=0.1, decoupled_weight_decay=True)
    _torch_steps(o, None, ps, 0, 20)
    ref = [torch.tensor(w) for w in W0]
    ro = torch.optim.NAdam(ref, lr=1e-2, differentiable=True, weight_decay=0.1, decoupled_weight_decay=True)
    _torch_steps(ro, None, ref, 0, 40)
    twin = to.from_torch(o)
    assert twin.param_groups[0]["differentiable"]
    _torch_steps(twin, None, ps, 20, 40)
    assert _rel([p.numpy() for p in ps], ref) <= F64_TOL
