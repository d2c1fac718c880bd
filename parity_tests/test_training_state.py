"""A whole training state as files (docs/training_state.md), both directions.

A torch run (AdamW, two param groups, SequentialLR warm-up + cosine, GradScaler state, RNG) saved
after 10 steps, resumed in JAX from the files for 10 steps, equals 20 torch steps; and the reverse.
float64, injected gradients; tolerance 1e-12 of each tensor's largest magnitude: the JAX schedule is
torch's closed form where torch recurses (<= 3e-13 of the lr, test_schedules.py) and the update's
float operations are ordered differently (test_optim_convert.py). The files themselves round-trip
bitwise (every optimizer this project converts).
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler as L

import jaxinit
import jaxinit.optim as jo
import torchinit
import torchinit.optim as to
from _jaxinit import InitError
from parity_tests._figures import record_figure

TOL = 1e-12
STEPS = 20
GRADS = {n: np.random.default_rng(k).standard_normal((STEPS,) + s)
         for k, (n, s) in enumerate({"0.weight": (4, 4), "0.bias": (4,), "2.weight": (4, 4), "2.bias": (4,)}.items())}


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 4)).double()


def _torch_run(named_groups=True, step_lr=False, lambda_lr=None):
    """model, AdamW (weights decayed, biases not; groups from named_parameters() or plain), SequentialLR
    warm-up + cosine (``step_lr``: StepLR; ``lambda_lr``: LambdaLR of that function)."""
    m = _model()
    named = list(m.named_parameters())

    def pick(cond):
        return [(n, p) for n, p in named if cond(n)] if named_groups else [p for n, p in named if cond(n)]

    o = torch.optim.AdamW([{"params": pick(lambda n: n.endswith("weight")), "weight_decay": 0.1},
                           {"params": pick(lambda n: n.endswith("bias")), "weight_decay": 0.0}], lr=0.01)
    if step_lr:
        return m, o, L.StepLR(o, 3, 0.5)
    if lambda_lr is not None:
        return m, o, L.LambdaLR(o, lambda_lr)
    s = L.SequentialLR(o, [L.LinearLR(o, 0.1, total_iters=4), L.CosineAnnealingLR(o, T_max=30)], milestones=[4])
    return m, o, s


def _torch_steps(m, o, s, start, stop):
    for t in range(start, stop):
        for n, p in m.named_parameters():
            p.grad = torch.tensor(GRADS[n][t])
        o.step()
        if s is not None:
            s.step()


def _jax_steps(tx, params, st, start, stop):
    for t in range(start, stop):
        u, st = tx.update({n: jnp.asarray(GRADS[n][t]) for n in params}, st, params)
        params = optax.apply_updates(params, u)
    return params, st


def _rel_err(params, m) -> float:
    return max(float(np.max(np.abs(np.asarray(params[n]) - p.detach().numpy())) / np.max(np.abs(p.detach().numpy())))
               for n, p in m.named_parameters())


@pytest.mark.parametrize("form", ["directory", "save_training_state .pt", "training loop's own torch.save"])
def test_torch_run_resumes_in_jax_from_files(tmp_path, form):
    m, o, s = _torch_run(named_groups=form != "directory")  # the directory form names plain groups by identity
    _torch_steps(m, o, s, 0, 10)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    torch.manual_seed(3)
    if form == "training loop's own torch.save":
        path = tmp_path / "run.pt"
        torch.save({"model": m.state_dict(), "optimizer": o.state_dict(), "scheduler": s.state_dict(),
                    "scaler": scaler.state_dict(), "step": 10}, path)
        with pytest.raises(InitError, match="pass scheduler_class="):
            jo.load_training_state(path)
        # a SequentialLR's children classes are not in torch's state_dict: refused, not guessed
        with pytest.raises(InitError, match="does not record its children's classes"):
            jo.load_training_state(path, optimizer_class="AdamW", scheduler_class="SequentialLR")
        m, o, s = _torch_run(named_groups=True, step_lr=True)
        _torch_steps(m, o, s, 0, 10)
        torch.save({"model": m.state_dict(), "optimizer": o.state_dict(), "scheduler": s.state_dict(),
                    "scaler": scaler.state_dict(), "step": 10}, path)
        with pytest.raises(InitError, match="do not record torch's optimizer class .* pass optimizer_class="):
            jo.from_torch(jo.load_training_state(path, scheduler_class="StepLR").optimizer)
        ts = jo.load_training_state(path, optimizer_class="AdamW", scheduler_class="StepLR")
        ref_m, ref_o, ref_s = _torch_run(named_groups=True, step_lr=True)
    else:
        path = tmp_path / ("ckpt" if form == "directory" else "ckpt.pt")
        to.save_training_state(path, model=m, optimizer=o, scheduler=s, grad_scaler=scaler, rng=True,
                               counters={"epoch": 2})
        ts = jo.load_training_state(path)
        assert ts.counters == {"epoch": 2}
        np.testing.assert_array_equal(ts.rng["torch"], torch.get_rng_state().numpy())
        ref_m, ref_o, ref_s = _torch_run(named_groups=True)
    assert ts.step == 10
    assert ts.grad_scaler == {"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 7,
                              "_growth_tracker": 0}
    tx = jo.from_torch(ts.optimizer, ts.scheduler)
    params = {n: jnp.asarray(v) for n, v in ts.model.items()}
    st = jo.import_state(ts.optimizer, params, tx)
    params, _ = _jax_steps(tx, params, st, 10, STEPS)
    _torch_steps(ref_m, ref_o, ref_s, 0, STEPS)
    err = _rel_err(params, ref_m)
    record_figure("training_state", "torch->files->jax", err, form)
    assert err <= TOL, err


def test_jax_run_resumes_in_torch_from_files(tmp_path):
    """10 JAX steps (the transformation equal to the torch optimizer + scheduler) saved; torch loads
    model, optimizer, the scheduler (replayed 10 steps) and the scaler; 10 torch steps == 20 JAX steps."""
    m0, o0, s0 = _torch_run()
    tx = jo.from_torch(o0, s0)
    p0 = {n: jnp.asarray(p.detach().numpy()) for n, p in m0.named_parameters()}
    full, _ = _jax_steps(tx, p0, tx.init(p0), 0, STEPS)
    half, st = _jax_steps(tx, p0, tx.init(p0), 0, 10)
    key = jax.random.key(42)
    scaler = {"scale": 512.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 100,
              "_growth_tracker": 3}
    jo.save_training_state(tmp_path / "ckpt", params=half, opt_state=st, grad_scaler=scaler, rng={"dropout": key},
                           counters={"epoch": 1})
    body = json.loads((tmp_path / "ckpt" / "training_state.json").read_text())
    assert body["step"] == 10 and body["written_by"] == "jaxinit"
    back = jo.load_training_state(tmp_path / "ckpt")
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(back.rng["dropout"])), np.asarray(jax.random.key_data(key)))
    m, o, s = _torch_run()
    gs = torch.amp.GradScaler("cpu")
    ts = to.load_training_state(tmp_path / "ckpt", model=m, optimizer=o, scheduler=s, grad_scaler=gs)
    assert ts.step == 10 and s.last_epoch == 10 and gs.state_dict()["_growth_tracker"] == 3
    _torch_steps(m, o, s, 10, STEPS)
    err = _rel_err(full, m)
    record_figure("training_state", "jax->files->torch", err, "adamw+sequential")
    assert err <= TOL, err


def test_torch_jax_torch_chain_through_files(tmp_path):
    """torch 6 steps -> files -> JAX 6 steps -> files (the optimizer and scheduler records carried) ->
    JAX again, and torch again (its scheduler replayed from step 0), 6 more steps each == 18 torch steps."""
    m, o, s = _torch_run(named_groups=False)
    _torch_steps(m, o, s, 0, 6)
    to.save_training_state(tmp_path / "a", model=m, optimizer=o, scheduler=s)
    ts = jo.load_training_state(tmp_path / "a")
    tx = jo.from_torch(ts.optimizer, ts.scheduler)
    params = {n: jnp.asarray(v) for n, v in ts.model.items()}
    params, st = _jax_steps(tx, params, jo.import_state(ts.optimizer, params, tx), 6, 12)
    jo.save_training_state(tmp_path / "b", params=params, opt_state=st, optimizer=ts.optimizer, scheduler=ts.scheduler)
    ts2 = jo.load_training_state(tmp_path / "b")
    assert ts2.step == 12 and type(ts2.optimizer).__name__ == "AdamW"
    tx2 = jo.from_torch(ts2.optimizer, ts2.scheduler)
    p2 = {n: jnp.asarray(v) for n, v in ts2.model.items()}
    p2, _ = _jax_steps(tx2, p2, jo.import_state(ts2.optimizer, p2, tx2), 12, 18)
    m3, o3, s3 = _torch_run(named_groups=False)
    to.load_training_state(tmp_path / "b", model=m3, optimizer=o3, scheduler=s3)
    _torch_steps(m3, o3, s3, 12, 18)
    ref_m, ref_o, ref_s = _torch_run(named_groups=False)
    _torch_steps(ref_m, ref_o, ref_s, 0, 18)
    err_jax, err_torch = _rel_err(p2, ref_m), _rel_err({n: p.detach().numpy() for n, p in m3.named_parameters()}, ref_m)
    record_figure("training_state", "torch->jax->jax/torch", max(err_jax, err_torch), "adamw+sequential")
    assert err_jax <= TOL and err_torch <= TOL, (err_jax, err_torch)


def test_torchinit_schedules_through_files(tmp_path):
    """A torchinit optimizer whose lr is a torchinit schedule (no torch scheduler): the schedules are
    stored with the optimizer, and JAX from the files continues like torch (1e-12); a schedule whose
    parameters are a Python function is refused by from_torch, not replaced by a constant lr."""
    m = _model()
    named = dict(m.named_parameters())
    o = to.adam([{"params": [named["0.weight"], named["2.weight"]], "lr": to.exponential_lr(0.01, 0.9)},
                 {"params": [named["0.bias"], named["2.bias"]]}], lr=to.step_lr(0.02, 3, 0.5), weight_decay=0.01)
    _torch_steps(m, o, None, 0, 5)
    to.save_training_state(tmp_path / "a", model=m, optimizer=o)
    ts = jo.load_training_state(tmp_path / "a")
    tx = jo.from_torch(ts.optimizer)
    params = {n: jnp.asarray(v) for n, v in ts.model.items()}
    params, _ = _jax_steps(tx, params, jo.import_state(ts.optimizer, params, tx), 5, 10)
    _torch_steps(m, o, None, 5, 10)
    err = _rel_err(params, m)
    record_figure("training_state", "torchinit schedule", err, "adam, exponential_lr + step_lr")
    assert err <= TOL, err
    o2 = to.adam(m.parameters(), lr=to.lambda_lr(0.01, lambda t: 0.9 ** t))
    to.save_training_state(tmp_path / "b", model=m, optimizer=o2)
    with pytest.raises(InitError, match=r"a Python callable lr \(<a torchinit schedule that the files do not hold"):
        jo.from_torch(jo.load_training_state(tmp_path / "b").optimizer)


def test_lambda_lr_from_files_takes_the_function(tmp_path):
    """torch's LambdaLR.state_dict() stores None for a plain function: from the files, from_torch asks for
    lr_lambda= (not checkable against torch's, which the files do not hold) and then continues like torch."""
    m, o, s = _torch_run(lambda_lr=lambda t: 0.9 ** t)
    _torch_steps(m, o, s, 0, 5)
    to.save_training_state(tmp_path / "a", model=m, optimizer=o, scheduler=s)
    ts = jo.load_training_state(tmp_path / "a")
    with pytest.raises(InitError, match="LambdaLR holds a Python function"):
        jo.from_torch(ts.optimizer, ts.scheduler)
    tx = jo.from_torch(ts.optimizer, ts.scheduler, lr_lambda=lambda t: 0.9 ** t)
    params = {n: jnp.asarray(v) for n, v in ts.model.items()}
    params, _ = _jax_steps(tx, params, jo.import_state(ts.optimizer, params, tx), 5, 10)
    _torch_steps(m, o, s, 5, 10)
    err = _rel_err(params, m)
    assert err <= TOL, err


def test_torch_to_torch_from_files_is_bitwise(tmp_path):
    """torch -> files -> torch: the optimizer state, scheduler state and lrs are torch's own (bitwise),
    and 10 more steps equal an uninterrupted run exactly."""
    m, o, s = _torch_run(named_groups=False)
    _torch_steps(m, o, s, 0, 10)
    to.save_training_state(tmp_path / "ckpt", model=m, optimizer=o, scheduler=s)
    m2, o2, s2 = _torch_run(named_groups=False)
    to.load_training_state(tmp_path / "ckpt", model=m2, optimizer=o2, scheduler=s2)
    assert [g["lr"] for g in o2.param_groups] == [g["lr"] for g in o.param_groups]
    _torch_steps(m, o, s, 10, 15)
    _torch_steps(m2, o2, s2, 10, 15)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def _state_equal(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b), (set(a) ^ set(b))
        for k in a:
            _state_equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _state_equal(x, y)
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    else:
        assert a == b or (a != a and b != b), (a, b)


def _stepped(name):
    """A torch optimizer of class ``name`` over small float64 parameters, stepped 3 times."""
    torch.manual_seed(0)
    ps = [torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64)), torch.nn.Parameter(torch.randn(3, 2,
                                                                                                     dtype=torch.float64))]
    kw = {"Muon": dict(lr=0.02), "SparseAdam": dict(lr=0.01), "LBFGS": dict(lr=0.5, history_size=3)}.get(name, {})
    o = getattr(torch.optim, name)(ps, **kw)
    for t in range(3):
        def closure():
            o.zero_grad()
            loss = sum(((p - t) ** 2).sum() for p in ps)
            loss.backward()
            return loss

        if name == "LBFGS":
            o.step(closure)
            continue
        for p in ps:
            g = torch.cos(p.detach() + t)
            p.grad = g.to_sparse() if name == "SparseAdam" else g
        o.step()
    return o


_TORCH_CLASSES = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam", "RAdam", "Adamax", "Adadelta", "Rprop",
                  "ASGD", "Adafactor", "Muon", "LBFGS", "SparseAdam"]
_SAMPLED = ("AdamW", "Adafactor", "LBFGS")


@pytest.mark.parametrize("name", [n if n in _SAMPLED else pytest.param(n, marks=pytest.mark.exhaustive)
                                  for n in _TORCH_CLASSES])
def test_optimizer_files_every_optimizer(tmp_path, name):
    """Every optimizer this project converts: export_state -> save_checkpoint (.safetensors, .pt) ->
    load_checkpoint is the same dict, bitwise (no raw SafetensorError); torch.save(optimizer.state_dict())
    reads with weights_only=True; save_training_state -> load_training_state into a fresh optimizer
    gives torch's state_dict bitwise; and the optax state imported from the files equals the one
    imported from the torch optimizer in memory, bitwise. Default run: a sample (AdamW, Adafactor's
    factored state, LBFGS's lists and ints); ``-m exhaustive``: all 15."""
    o = _stepped(name)
    exported = to.export_state(o)
    for suffix in (".safetensors", ".pt"):
        f = tmp_path / f"{name}{suffix}"
        jaxinit.save_checkpoint(f, exported)
        _state_equal(jaxinit.load_checkpoint(f), exported)
    torch.save(o.state_dict(), tmp_path / f"{name}_torch.pt")
    theirs = jaxinit.load_checkpoint(tmp_path / f"{name}_torch.pt")
    _state_equal(theirs, jax.tree.map(lambda x: x.numpy() if isinstance(x, torch.Tensor) else x, o.state_dict()))
    torchinit.save_checkpoint(tmp_path / f"{name}_ti.safetensors", o.state_dict())
    back = torchinit.load_checkpoint(tmp_path / f"{name}_ti.safetensors")
    _state_equal(jax.tree.map(lambda x: x.numpy() if isinstance(x, torch.Tensor) else x, back),
                 jax.tree.map(lambda x: x.numpy() if isinstance(x, torch.Tensor) else x, o.state_dict()))
    to.save_training_state(tmp_path / name, optimizer=o)
    o2 = _stepped(name)
    for st in o2.state.values():  # another state, overwritten by the load
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "step":
                v.add_(1.0)
    to.load_training_state(tmp_path / name, optimizer=o2)
    _state_equal(jax.tree.map(lambda x: x.numpy() if isinstance(x, torch.Tensor) else x, o2.state_dict()),
                 jax.tree.map(lambda x: x.numpy() if isinstance(x, torch.Tensor) else x, o.state_dict()))
    # JAX from the files == JAX from the torch optimizer in memory (from_torch's record, import_state)
    ts = jo.load_training_state(tmp_path / name)
    params = [jnp.asarray(p.detach().numpy()) for g in o.param_groups for p in g["params"]]
    tx = jo.lbfgs(lr=0.5, history_size=3) if name == "LBFGS" else jo.from_torch(ts.optimizer)
    from_files = jo.import_state(ts.optimizer, params, tx, step=3)  # SGD and Muon count no steps
    in_memory = jo.import_state(o, params, tx, step=3)
    assert jax.tree.structure(from_files) == jax.tree.structure(in_memory)
    for a, b in zip(jax.tree.leaves(from_files), jax.tree.leaves(in_memory)):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b)), name  # numpy: no XLA compile


def test_training_state_errors(tmp_path):
    with pytest.raises(InitError, match=r"'flag' is a array of <U3, not a numeric array; .* save_training_state"):
        jaxinit.save_checkpoint(tmp_path / "x.safetensors", {"w": np.zeros(2), "flag": "yes"})
    m, o, s = _torch_run()
    _torch_steps(m, o, s, 0, 2)
    to.save_training_state(tmp_path / "ckpt", model=m, optimizer=o, scheduler=s)
    os.remove(tmp_path / "ckpt" / "optimizer.safetensors")
    with pytest.raises(InitError, match="lists optimizer.safetensors, which is missing"):
        jo.load_training_state(tmp_path / "ckpt")
    body = json.loads((tmp_path / "ckpt" / "training_state.json").read_text())
    body["version"] = 99
    (tmp_path / "ckpt" / "training_state.json").write_text(json.dumps(body))
    with pytest.raises(InitError, match="format version 99; this jaxinit reads versions <= 1"):
        jo.load_training_state(tmp_path / "ckpt")
    to.save_training_state(tmp_path / "ckpt", model=m, optimizer=o, scheduler=s)
    m2, o2, _ = _torch_run()
    with pytest.raises(InitError, match=r"the file's scheduler is .*SequentialLR.*, this one is .*StepLR"):
        to.load_training_state(tmp_path / "ckpt", optimizer=o2, scheduler=L.StepLR(o2, 3))
    with pytest.raises(InitError, match="grad_scaler is missing"):
        jo.save_training_state(tmp_path / "j", grad_scaler={"scale": 1.0})
    with pytest.raises(InitError, match=r"counters\['epoch'\] is a list"):
        to.save_training_state(tmp_path / "t", counters={"epoch": [1]})
    bad = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    with pytest.raises(InitError, match=r"do not fit the model"):
        to.load_training_state(tmp_path / "ckpt", model=bad)
