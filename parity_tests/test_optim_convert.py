"""torch.optim optimizers as optax transformations (from_torch), and optimizer state both ways.

All runs are float64 with identical injected gradients. Tolerance: 1e-12 of the largest parameter
magnitude per tensor (``max|ours - torch| / max|torch|``) after 500 steps: float64 rounding of
500 updates whose float operations differ in order between optax and torch (test_optim.py
measures 1e-13..1e-17 after 100 steps), plus the closed-form vs recursive lr of the schedulers
(<= 3e-13 of the lr, parity_tests/test_schedules.py). State round trips are BITWISE.
"""
from __future__ import annotations

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

STEPS = 500
TOL = 1e-12
SHAPES = [(3, 4), (4,), (2, 2, 3)]
W0 = [np.random.default_rng(1).standard_normal(s) for s in SHAPES]
GRADS = [np.random.default_rng(2).standard_normal((STEPS,) + s) for s in SHAPES]


def _ps():
    return [torch.nn.Parameter(torch.tensor(w)) for w in W0]


# builders: params -> (optimizer, scheduler or None); several groups each, every option exercised
CASES = {
    "sgd+steplr": lambda ps: (lambda o: (o, L.StepLR(o, 30, 0.7)))(torch.optim.SGD(
        [{"params": ps[:2], "nesterov": True}, {"params": ps[2:], "lr": 0.05, "momentum": 0.5, "dampening": 0.3,
                                               "weight_decay": 0.01}], lr=0.1, momentum=0.9)),
    "sgd+onecycle(momentum)": lambda ps: (lambda o: (o, L.OneCycleLR(o, [0.1, 0.05, 0.02], total_steps=STEPS)))(
        torch.optim.SGD([{"params": ps[:1]}, {"params": ps[1:2], "maximize": True}, {"params": ps[2:]}],
                        lr=0.1, momentum=0.9)),
    "adagrad": lambda ps: (torch.optim.Adagrad(
        [{"params": ps[:1], "lr_decay": 0.01}, {"params": ps[1:], "weight_decay": 0.1, "initial_accumulator_value": 0.2,
                                                "eps": 1e-6}], lr=0.1), None),
    "rmsprop+cosine": lambda ps: (lambda o: (o, L.CosineAnnealingLR(o, 120, 1e-4)))(torch.optim.RMSprop(
        [{"params": ps[:2], "centered": True, "momentum": 0.8}, {"params": ps[2:], "weight_decay": 0.05}],
        lr=0.01, alpha=0.9)),
    "adam+onecycle(beta1)": lambda ps: (lambda o: (o, L.OneCycleLR(o, [0.02, 0.01], total_steps=STEPS,
                                                                  three_phase=True)))(torch.optim.Adam(
        [{"params": ps[:1], "amsgrad": True}, {"params": ps[1:], "lr": 0.01, "weight_decay": 0.1}], lr=0.02)),
    "adamw+linear": lambda ps: (lambda o: (o, L.LinearLR(o, 0.2, 1.0, 100)))(torch.optim.AdamW(
        [{"params": ps[:2], "weight_decay": 0.3}, {"params": ps[2:], "amsgrad": True, "betas": (0.8, 0.99)}],
        lr=0.01)),
    "torchinit OptaxAdam(eps_root, optax amsgrad)": lambda ps: (to.adamw(
        [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.003}], lr=0.01, eps_root=1e-9, amsgrad=True,
        amsgrad_bias_corrected=True), None),
    "torchinit adam(schedule)": lambda ps: (to.adam(
        [{"params": ps[:2]}, {"params": ps[2:], "lr": to.exponential_lr(0.005, 0.995)}],
        lr=to.cosine_annealing_warm_restarts(0.01, T_0=50, T_mult=2), weight_decay=0.01), None),
}


def torch_steps_with(grads, o, s, ps, start, stop):
    """torch's loop from step ``start`` to ``stop``: step t's gradients assigned, then the optimizer's
    step and the scheduler's (if any). Also test_optim_more.py's, over its own gradients."""
    for t in range(start, stop):
        for p, g in zip(ps, grads):
            p.grad = torch.tensor(g[t])
        o.step()
        if s is not None:
            s.step()


def torch_steps(o, s, ps, start, stop):
    torch_steps_with(GRADS, o, s, ps, start, stop)


def jax_steps(tx, params, st, start, stop):
    grads = [jnp.asarray(g[start:stop]) for g in GRADS]

    def body(carry, g):
        p, st = carry
        u, st = tx.update(g, st, p)
        return (optax.apply_updates(p, u), st), None

    (params, st), _ = jax.jit(lambda c, g: jax.lax.scan(body, c, g))((params, st), grads)
    return params, st


def rel_err(jax_params, torch_params) -> float:
    return max(float(np.max(np.abs(np.asarray(a) - b.detach().numpy())) / np.max(np.abs(b.detach().numpy())))
               for a, b in zip(jax_params, torch_params))


@pytest.mark.parametrize("case", list(CASES))
def test_from_torch_multi_group_500_steps(case):
    ps = _ps()
    o, s = CASES[case](ps)
    tx = jo.from_torch(o, s)
    params = [jnp.asarray(w) for w in W0]
    params, _ = jax_steps(tx, params, tx.init(params), 0, STEPS)
    torch_steps(o, s, ps, 0, STEPS)
    err = rel_err(params, ps)
    record_figure("optim_convert", "from_torch", err, case)
    assert err <= TOL, err


def test_from_torch_params_dict_matched_by_name():
    """Named parameters: a dict keyed by torch names is matched by name although jax.tree.leaves sorts
    it into another order (z.weight, a.bias, m.kernel -> a.bias, m.kernel, z.weight)."""
    names = ["z.weight", "a.bias", "m.kernel"]
    ps = _ps()
    o = torch.optim.SGD([{"params": list(zip(names[:1], ps[:1])), "lr": 0.01},
                         {"params": list(zip(names[1:], ps[1:])), "lr": 0.1, "momentum": 0.9}], lr=0.1)
    tx = jo.from_torch(o)
    params = {n: jnp.asarray(w) for n, w in zip(names, W0)}
    st = tx.init(params)
    upd = jax.jit(tx.update)
    for t in range(50):
        for p, g in zip(ps, GRADS):
            p.grad = torch.tensor(g[t])
        o.step()
        u, st = upd({n: jnp.asarray(g[t]) for n, g in zip(names, GRADS)}, st, params)
        params = optax.apply_updates(params, u)
    assert rel_err([params[n] for n in names], ps) <= TOL
    # the same dict, and the optimizer without names + param_names=
    o2 = torch.optim.SGD([{"params": ps[:1], "lr": 0.01}, {"params": ps[1:], "lr": 0.1, "momentum": 0.9}], lr=0.1)
    torch_steps(o2, None, ps, 0, 3)
    st2 = jo.import_state(o2, params, jo.from_torch(o2, param_names=names), step=3, param_names=names)
    assert int(st2.inner_states["1"].inner_state[2].count) == 3


def _state_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for i in a:
        assert set(a[i]) == set(b[i]), (i, set(a[i]) ^ set(b[i]))
        for k in a[i]:
            assert a[i][k].dtype == b[i][k].dtype and torch.equal(a[i][k], b[i][k]), (i, k)


@pytest.mark.parametrize("case", list(CASES))
def test_state_round_trip_torch_optax_torch_bitwise(case):
    ps = _ps()
    o, s = CASES[case](ps)
    torch_steps(o, s, ps, 0, 20)
    params = [jnp.asarray(p.detach().numpy()) for p in ps]
    tx = jo.from_torch(o, s, step=20)  # torch's SGD counts no steps: say how many
    opt_state = jo.import_state(o, params, tx, step=20 if case.startswith("sgd") else None)
    exported = jo.export_state(opt_state, params)
    assert exported["step"] == 20
    ps2 = _ps()
    o2, _ = CASES[case](ps2)
    to.import_state(exported, o2)
    _state_equal(o.state_dict()["state"], o2.state_dict()["state"])
    # and the torch-side export is the same neutral dict
    mine = to.export_state(o)
    for i, entry in mine["state"].items():
        for k, v in entry.items():
            np.testing.assert_array_equal(v, exported["state"][i][k])


@pytest.mark.parametrize("case", ["sgd+steplr", "rmsprop+cosine", "adam+onecycle(beta1)", "adagrad"])
def test_resume_torch_then_jax(case):
    """250 steps in torch, the remaining 250 in JAX == 500 uninterrupted torch steps (1e-12)."""
    ps = _ps()
    o, s = CASES[case](ps)
    torch_steps(o, s, ps, 0, STEPS // 2)
    params = [jnp.asarray(p.detach().numpy()) for p in ps]
    tx = jo.from_torch(o, s, step=STEPS // 2)  # torch's SGD counts no steps: say how many
    st = jo.import_state(o, params, tx, step=s.last_epoch if case.startswith("sgd") else None)
    params, _ = jax_steps(tx, params, st, STEPS // 2, STEPS)
    ref_ps = _ps()
    ro, rs = CASES[case](ref_ps)
    torch_steps(ro, rs, ref_ps, 0, STEPS)
    err = rel_err(params, ref_ps)
    record_figure("optim_convert", "resume t->j", err, case)
    assert err <= TOL, err


@pytest.mark.parametrize("case", ["sgd+onecycle(momentum)", "rmsprop+cosine", "adamw+linear"])
def test_resume_jax_then_torch(case):
    """250 steps in JAX, exported, loaded into torch (scheduler replayed), 250 more in torch ==
    500 uninterrupted JAX steps (1e-12)."""
    ps = _ps()
    o, s = CASES[case](ps)
    tx = jo.from_torch(o, s)
    params0 = [jnp.asarray(w) for w in W0]
    full, _ = jax_steps(tx, params0, tx.init(params0), 0, STEPS)
    half, st = jax_steps(tx, params0, tx.init(params0), 0, STEPS // 2)
    with torch.no_grad():
        for p, h in zip(ps, half):
            p.copy_(torch.tensor(np.asarray(h)))
    to.import_state(jo.export_state(st, half), o)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() before optimizer.step(): we replay it
        for _ in range(STEPS // 2):
            s.step()
    torch_steps(o, s, ps, STEPS // 2, STEPS)
    err = rel_err(full, ps)
    record_figure("optim_convert", "resume j->t", err, case)
    assert err <= TOL, err


@pytest.mark.parametrize("case", ["rmsprop+cosine", "adamw+linear", "sgd+steplr"])
def test_torchinit_from_torch_is_the_twin(case):
    """torchinit.optim.from_torch mid-run: same parameters and state, the closed-form schedule as lr;
    finishing with it equals finishing with jaxinit.optim.from_torch (and with torch) to 1e-12."""
    ps = _ps()
    o, s = CASES[case](ps)
    torch_steps(o, s, ps, 0, 100)
    params = [jnp.asarray(p.detach().numpy()) for p in ps]
    tx = jo.from_torch(o, s, step=100)
    st = jo.import_state(o, params, tx, step=100)
    twin = to.from_torch(o, s, step=100)
    assert all(a is b for a, b in zip([p for g in twin.param_groups for p in g["params"]], ps))
    params, _ = jax_steps(tx, params, st, 100, STEPS)
    torch_steps(twin, None, ps, 100, STEPS)
    err = rel_err(params, ps)
    record_figure("optim_convert", "twin", err, case)
    assert err <= TOL, err


# ------------------------------------------------------------------ errors

def test_shape_mismatch_lists_every_leaf():
    ps = _ps()
    o, s = CASES["sgd+steplr"](ps)
    tx = jo.from_torch(o, s)
    bad = [jnp.zeros((4, 3)), jnp.zeros((4,)), jnp.zeros((3, 2, 2))]
    with pytest.raises(InitError, match=r"(?s)params leaf '0' shape \(4, 3\) != torch parameter #0 shape \(3, 4\)"
                                        r".*params leaf '2' shape \(3, 2, 2\) != torch parameter #2"
                                        # the fix names the matching that cannot swap (not "model.parameters() order")
                                        r".*as a dict keyed by torch names, or as a list in model.parameters\(\) "
                                        r"order with param_names=model \(matched by identity\)"):
        tx.init(bad)
    with pytest.raises(InitError, match="params has 2 leaves but the torch optimizer has 3 parameters"):
        tx.init(bad[:2])


def test_conversion_refusals():
    ps = _ps()
    class Custom(torch.optim.Optimizer):  # an optimizer jaxinit.optim has no factory for
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})
    with pytest.raises(InitError, match="Custom is not supported"):
        jo.from_torch(Custom(ps))
    o, s = CASES["sgd+steplr"](ps)
    torch_steps(o, s, ps, 0, 3)
    params = [jnp.asarray(w) for w in W0]
    with pytest.raises(InitError, match="torch's SGD keeps none\\); pass step="):
        jo.import_state(o, params, jo.from_torch(o, s, step=3))
    ps = _ps()
    o = torch.optim.Adam(ps, lr=0.1)
    s = L.StepLR(o, 5)
    torch_steps(o, None, ps, 0, 3)  # the scheduler is not stepped with the optimizer
    with pytest.raises(InitError, match=r"has taken 3 steps but the scheduler was stepped 0 times"):
        jo.from_torch(o, s)
    o_fresh = torch.optim.SGD(_ps(), lr=0.1)
    s_fresh = L.StepLR(o_fresh, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s_fresh.step()
    with pytest.raises(InitError, match=r"SGD keeps no step count .* \(stepped 1 times\)"):
        jo.from_torch(o_fresh, s_fresh)
    ps[1].grad = None
    ps[0].grad = torch.ones(3, 4, dtype=torch.float64)
    o.step()  # only parameter 0 steps: counts differ
    with pytest.raises(InitError, match="torch parameters have different step counts"):
        jo.import_state(o, params, jo.from_torch(o))
    o = torch.optim.Adam(_ps(), lr=0.1)
    o.param_groups[0]["foo"] = 1
    with pytest.raises(InitError, match=r"param group 0 has option\(s\) \['foo'\]"):
        jo.from_torch(o)
    o, s = CASES["sgd+onecycle(momentum)"](_ps())
    with pytest.raises(InitError, match="cycle_momentum=True also sets momentum"):
        to.from_torch(o, s)


def test_dtype_mismatch_and_torch_side_refusals():
    ps = _ps()
    o = torch.optim.Adam(ps, lr=0.1)
    torch_steps(o, None, ps, 0, 2)
    with pytest.raises(InitError, match=r"exp_avg of torch parameter #0 is float64\[3, 4\], params leaf '0' is "
                                        r"float32\[3, 4\]"):
        jo.import_state(o, [jnp.asarray(w, jnp.float32) for w in W0], jo.adam(0.1))
    exported = to.export_state(o)
    small = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))], lr=0.1)
    with pytest.raises(InitError, match="state for parameter #1, but the optimizer has 1 parameters"):
        to.import_state(exported, small)


def test_jaxinit_factory_state_exports_to_torch_factory():
    """jaxinit.optim.rmsprop (no from_torch) -> export -> torchinit.optim.rmsprop: the mirror factories
    share the state layout; 100 + 100 steps equal 200 JAX steps."""
    kw = dict(alpha=0.95, momentum=0.9, centered=True, weight_decay=0.01)
    tx = jo.rmsprop(0.01, **kw)
    p0 = [jnp.asarray(w) for w in W0]
    full, _ = jax_steps(tx, p0, tx.init(p0), 0, 200)
    half, st = jax_steps(tx, p0, tx.init(p0), 0, 100)
    ps = [torch.nn.Parameter(torch.tensor(np.asarray(h))) for h in half]
    o = to.import_state(jo.export_state(st, half), to.rmsprop(ps, 0.01, **kw))
    torch_steps(o, None, ps, 100, 200)
    assert rel_err(full, ps) <= TOL


# ------------------------------------------------------------------ Flax-layout params

def _flax_setup():
    import jaxinit

    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"conv": torch.nn.Conv2d(2, 4, 3), "fc": torch.nn.Linear(5, 6)}).double()
    named = dict(model.named_parameters())
    o = torch.optim.Adam([{"params": [(n, p) for n, p in named.items() if n.endswith("weight")], "weight_decay": 0.1},
                          {"params": [(n, p) for n, p in named.items() if n.endswith("bias")], "amsgrad": True}],
                         lr=0.01)
    s = L.CosineAnnealingLR(o, 40, 1e-4)
    rng = np.random.default_rng(3)
    grads = [{n: rng.standard_normal(tuple(p.shape)) for n, p in named.items()} for _ in range(120)]
    template = {"params": {"conv": {"kernel": jnp.zeros((3, 3, 2, 4)), "bias": jnp.zeros(4)},
                           "fc": {"kernel": jnp.zeros((5, 6)), "bias": jnp.zeros(6)}}}

    def to_flax(d):
        return jaxinit.from_torch_state_dict({k: np.asarray(v) for k, v in d.items()}, template)["params"]

    def run_torch(start, stop):
        for t in range(start, stop):
            for n, p in named.items():
                p.grad = torch.tensor(grads[t][n])
            o.step()
            s.step()

    return model, named, o, s, grads, to_flax, run_torch


def test_flax_layout_resume_and_round_trip():
    """Torch Conv2d/Linear + 2-group Adam (amsgrad) + CosineAnnealingLR: 60 steps in torch, state moved to a
    Flax-layout params tree (kernels transposed like the weights), 60 more steps in JAX == 120 torch steps;
    torch -> Flax-layout optax state -> torch is bitwise."""
    import jaxinit

    model, named, o, s, grads, to_flax, run_torch = _flax_setup()
    run_torch(0, 60)
    params = to_flax({n: p.detach() for n, p in named.items()})
    tx = jo.from_torch(o, s, layout="flax")
    st = jo.import_state(o, params, tx, layout="flax")
    back = jo.export_state(st, params, layout="flax", template=o)
    _, named2, o2, _, _, _, _ = _flax_setup()
    to.import_state(back, o2)
    _state_equal(o.state_dict()["state"], o2.state_dict()["state"])
    g = jax.tree.map(lambda *xs: jnp.stack(xs), *[to_flax(grads[t]) for t in range(60, 120)])

    def body(carry, g):
        p, st = carry
        u, st = tx.update(g, st, p)
        return (optax.apply_updates(p, u), st), None

    (params, _), _ = jax.lax.scan(body, (params, st), g)
    run_torch(60, 120)
    final = jaxinit.to_torch_state_dict({"params": params}, {n: p.detach().numpy() for n, p in named.items()})
    err = rel_err([final[n] for n in named], list(named.values()))
    record_figure("optim_convert", "flax layout", err, "conv+linear adam")
    assert err <= TOL, err


def test_flax_layout_needs_names():
    ps = _ps()
    o = torch.optim.SGD(ps, lr=0.1)
    with pytest.raises(InitError, match="layout='flax' matches torch parameters to Flax params by name"):
        jo.from_torch(o, layout="flax").init({"a": {"kernel": jnp.zeros((4, 3))}})
    with pytest.raises(InitError, match="layout must be 'torch'"):
        jo.from_torch(o, layout="nhwc")


# ------------------------------------------------------------------ matching params to param groups (no guessing)
#
# The trap: two bias-free 16x16 layers in two param groups, head group first. A list of params in
# model.parameters() order is not the optimizer's order, and the shapes cannot tell; matched by position,
# the groups' lrs (1e-3 <-> 1e-5) and the Adam moments swap (1e-3 parameter error after one step). Each
# pattern either converts correctly (continuing in JAX == continuing in torch, 1e-12, float64) or is
# refused with an error that names the two parameters and the fix.

_SAME_SHAPE = "have the same shape, so a swap would silently give each the other's"
_G = np.random.default_rng(7).standard_normal((6, 3, 16, 16))  # step t, layer k


def _layers(n=2, tied=False):
    """``nn.Sequential`` of bias-free 16x16 Linear layers (float64); ``tied``: layer 1 shares layer 0's weight."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(*[torch.nn.Linear(16, 16, bias=False, dtype=torch.float64) for _ in range(n)])
    if tied:
        m[1].weight = m[0].weight
    return m


def _head_first(m, named=False):
    """Adam over two groups, the head (last layer, lr 1e-3) first, the body (layer 0, lr 1e-5) second."""
    def group(k):
        return list(m[k].named_parameters(prefix=str(k))) if named else list(m[k].parameters())

    return torch.optim.Adam([{"params": group(len(m) - 1), "lr": 1e-3}, {"params": group(0), "lr": 1e-5}])


def _torch_grads(m, t):
    for k, layer in enumerate(m):
        if layer.weight.grad is None or k == 0 or layer.weight is not m[0].weight:
            layer.weight.grad = torch.tensor(_G[t, k])


def _continue_both(m, o, s, tx, st, params, key_of, start=2, stop=5):
    """Steps ``start..stop`` in torch (``m``, ``o``, ``s``) and in JAX (``tx`` from ``st``, ``params``);
    ``key_of[name]`` is the params key (a list index or a dict key) of the torch parameter ``name``.
    Returns the largest relative difference."""
    named = dict(m.named_parameters())
    for t in range(start, stop):
        _torch_grads(m, t)
        o.step()
        if s is not None:
            s.step()
        grads = jax.tree.map(lambda x: x, params)
        for name in named:
            grads[key_of[name]] = jnp.asarray(_G[t, int(name.split(".")[0])])
        u, st = tx.update(grads, st, params)
        params = optax.apply_updates(params, u)
    return max(float(np.max(np.abs(np.asarray(params[key_of[n]]) - p.detach().numpy()))
                     / np.max(np.abs(p.detach().numpy()))) for n, p in named.items())


def _torch_run(m, o, s, steps=2):
    for t in range(steps):
        _torch_grads(m, t)
        o.step()
        if s is not None:
            s.step()


def test_plain_params_two_groups_refused_or_matched_by_identity():
    """Plain parameters in two dict groups, head first (the issue's case), with a StepLR: a list is refused
    (by from_torch's labels and by import_state); param_names=model matches by identity, and the run
    continues equal to torch's."""
    m = _layers()
    o = _head_first(m)
    s = L.StepLR(o, 2, 0.5)
    _torch_run(m, o, s)
    params = [jnp.asarray(p.detach().numpy()) for p in m.parameters()]
    tx = jo.from_torch(o, s)
    with pytest.raises(InitError, match=r"torch parameters #0 \(param group 0, shape \(16, 16\)\) and #1 "
                                        r"\(param group 1, shape \(16, 16\)\) " + _SAME_SHAPE + r" hyperparameters"):
        tx.init(params)
    with pytest.raises(InitError, match=_SAME_SHAPE + r" optimizer state\. Fix: pass param_names=model"):
        jo.import_state(o, params, jo.adam(1e-3))
    tx = jo.from_torch(o, s, param_names=m)
    st = jo.import_state(o, params, tx, param_names=m)
    err = _continue_both(m, o, s, tx, st, params, {"0.weight": 0, "1.weight": 1})
    assert err <= TOL, err
    # the same, identity through named_parameters() (a generator) and a dict keyed by torch names
    m = _layers()
    o = _head_first(m)
    s = L.StepLR(o, 2, 0.5)
    _torch_run(m, o, s)
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in m.named_parameters()}
    tx = jo.from_torch(o, s, param_names=m.named_parameters())
    st = jo.import_state(o, params, tx, param_names=dict(m.named_parameters()))
    err = _continue_both(m, o, s, tx, st, params, {"0.weight": "0.weight", "1.weight": "1.weight"})
    record_figure("optim_convert", "matching", err, "head-first groups, identity")
    assert err <= TOL, err


def test_plain_params_one_group_list_is_the_optimizer_order():
    """One group over model.parameters(): a list in that order is the optimizer's order (accepted,
    correct); a dict not keyed by torch names is refused (jax.tree.leaves sorts its keys)."""
    m = _layers()
    o = torch.optim.Adam(m.parameters(), lr=1e-3)
    _torch_run(m, o, None)
    params = [jnp.asarray(p.detach().numpy()) for p in m.parameters()]
    tx = jo.from_torch(o)
    st = jo.import_state(o, params, tx)
    assert _continue_both(m, o, None, tx, st, params, {"0.weight": 0, "1.weight": 1}) <= TOL
    with pytest.raises(InitError, match=r"a dict not keyed by the optimizer's torch names .* " + _SAME_SHAPE):
        jo.import_state(o, {"b": params[0], "a": params[1]}, tx)


def test_named_params_groups():
    """Groups built from named_parameters() (torch keeps param_names), head first: a dict keyed by the
    names is matched by name; a list is refused (same shapes in different groups)."""
    m = _layers()
    o = _head_first(m, named=True)
    s = L.StepLR(o, 2, 0.5)
    _torch_run(m, o, s)
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in m.named_parameters()}
    tx = jo.from_torch(o, s)
    st = jo.import_state(o, params, tx)
    assert _continue_both(m, o, s, tx, st, params, {n: n for n in params}) <= TOL
    with pytest.raises(InitError, match=r"#0 '1.weight' \(param group 0, shape \(16, 16\)\) and #1 '0.weight' "
                                        r"\(param group 1, shape \(16, 16\)\) " + _SAME_SHAPE):
        jo.import_state(o, list(params.values()), tx)


def test_dict_groups_state_round_trip_by_name():
    """Head-first dict groups, JAX -> torch: export_state with template=optimizer and param_names=model
    carries the names and groups, and torchinit.import_state loads each buffer into its own parameter
    (bitwise, checked against torch's state); an export without names into two same-shape groups is
    refused, and param_names= naming another model's Parameters is refused."""
    m = _layers()
    o = _head_first(m)
    _torch_run(m, o, None)
    params = [jnp.asarray(p.detach().numpy()) for p in m.parameters()]
    tx = jo.from_torch(o, param_names=m)
    st = jo.import_state(o, params, tx, param_names=m)
    exported = jo.export_state(st, params, template=o, param_names=m)
    assert exported["param_groups"] == [{"params": [0], "param_names": ["1.weight"]},
                                        {"params": [1], "param_names": ["0.weight"]}]
    m2 = _layers()
    o2 = _head_first(m2)
    to.import_state(exported, o2, param_names=m2)
    _state_equal(o.state_dict()["state"], o2.state_dict()["state"])
    with pytest.raises(InitError, match=r"no torch names, and this optimizer's parameters #0 .* and #1 .* have "
                                        r"the same shape in different groups"):
        to.import_state(jo.export_state(st, params), _head_first(_layers()))
    with pytest.raises(InitError, match=r"2 of the optimizer's 2 parameters are not among param_names' Parameters "
                                        r"\(matched by identity"):
        jo.from_torch(o, param_names=_layers())
    with pytest.raises(InitError, match=r"pass the optimizer as template= too"):
        jo.export_state(st, params, param_names=m)
    # torch -> torch through the neutral dict with names: the target's groups in the other order
    m3 = _layers()
    o3 = torch.optim.Adam([{"params": [m3[0].weight], "lr": 1e-5}, {"params": [m3[1].weight], "lr": 1e-3}])
    to.import_state(to.export_state(o, param_names=m), o3, param_names=m3)
    for a, b in ((m[0].weight, m3[0].weight), (m[1].weight, m3[1].weight)):
        assert torch.equal(o.state[a]["exp_avg"], o3.state[b]["exp_avg"])


def test_shared_params():
    """A tied weight (layer 1 is layer 0's Parameter) held once by the optimizer: named_parameters() and
    the identity match see it once, under its first name; a dict with both names (a state_dict's keys) is
    refused, naming the extra one."""
    m = _layers(3, tied=True)
    o = torch.optim.Adam([{"params": [m[2].weight], "lr": 1e-3}, {"params": [m[0].weight], "lr": 1e-5}])
    _torch_run(m, o, None)
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in m.named_parameters()}
    assert sorted(params) == ["0.weight", "2.weight"]
    tx = jo.from_torch(o, param_names=m.named_parameters(remove_duplicate=False))
    st = jo.import_state(o, params, tx, param_names=m)
    assert _continue_both(m, o, None, tx, st, params, {n: n for n in params}) <= TOL
    both = {n: jnp.asarray(t.numpy()) for n, t in m.state_dict().items()}
    with pytest.raises(InitError, match=r"params has 3 leaves but the torch optimizer has 2 parameters\. By name: "
                                        r"torch names missing from params \[\], params not in torch \['1.weight'\]"):
        jo.from_torch(o, param_names=m).init(both)
