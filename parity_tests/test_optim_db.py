"""torch's own optimizer test configurations (``optim_db``) through jaxinit.optim and torchinit.optim.

``torch/testing/_internal/common_optimizers.py`` (shipped with torch) lists, per optimizer, the
configurations torch tests itself with (``OptimizerInfo.optim_inputs_func``), and
``_get_optim_inputs_including_global_cliquey_kwargs`` adds torch's implementation switches
(``foreach`` / ``fused`` / ``differentiable``) on the device. Every CPU configuration of EVERY
optimizer in ``optim_db`` is enumerated here, so an optimizer that ``from_torch`` learns later is
covered by this file without editing it. Each configuration must either

* be equal to the real torch optimizer within 1e-12 relative (``max|ours - torch| / max|torch|`` per
  parameter, float64, 100 steps of the same injected gradients) through (a) ``jaxinit.optim.from_torch``,
  (b) the direct factory ``jaxinit.optim.<name>(**kwargs)`` where one exists, (c) a resume at step 50
  (torch state -> ``import_state`` -> JAX), and (d) the way back (JAX state at step 50 ->
  ``export_state`` -> ``torchinit.optim.import_state`` -> torch); with the state round trip
  torch -> JAX -> torch bitwise at step 50;
* or be refused by ``from_torch`` with the reason listed in ``EXPECTED_REFUSALS`` (asserted on the
  error text).

Tolerance: float64, the update formulas are torch's, written in another operation order (XLA vs
ATen): each step rounds a few operations differently (~1e-16 relative); 100 steps stay far below
1e-12 (measured: see the parity figures "optim_db"). One exception, Muon: torch runs its Newton-Schulz
orthogonalisation in bfloat16 whatever the parameter dtype (torch/optim/_muon.py
``_zeropower_via_newtonschulz``), see ``_muon_tol``.

Sparse gradients: torch's SparseAdam only takes sparse gradients (``only_supports_sparse_grads``); the
torch side gets ``g.to_sparse()`` (element-wise, ``sparse_dim = ndim``: exactly the non-zero entries are
present), whose gradients here have zero rows and zero elements, and the JAX side the same presence as
``row_mask = g != 0`` element-wise (jaxinit/_src/sparse_adam.py: a mask of the parameter's full shape).

Speed: one ``jax.jit`` per optimizer (all of its configurations run in one scan, in two calls of 50
steps), small parameters.
"""
from __future__ import annotations

import functools
import inspect
import sys
import types
import unittest

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxinit.optim as jo
import torchinit.optim as to
from _jaxinit import InitError
from _jaxinit import optim_convert as core_convert
from _jaxinit import optim_registry as registry
from parity_tests._figures import record_figure


def _load_optim_db():
    """torch's optim_db. Its module imports ``expecttest`` only for a TestCase base class: when that test
    dependency of torch is not installed, stand in ``unittest.TestCase``. Importing it also freezes
    torch.backends flags (common_utils calls ``torch.backends.disable_global_flags()``): undone here so
    other tests can still set them."""
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase
            sys.modules["expecttest"] = stub
    from torch.testing._internal import common_optimizers as co

    # torch.backends in sys.modules is not the namespace its functions read (flags_frozen.__globals__ is
    # the module torch/backends/__init__.py ran in): set the flag there, and check it took.
    torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    assert not torch.backends.flags_frozen()
    return co.optim_db, co._get_optim_inputs_including_global_cliquey_kwargs


STEPS, HALF = 100, 50
TOL = 1e-12
MIXED = [(3, 4), (5,), (2, 2, 3)]
TWO_D = [(3, 4), (5, 2)]  # for optimizers that take matrices only (torch's Muon)

# (optimizer class, implementation flag of the config or "*" for all) -> text the refusal must contain.
# Why each is refused:
_ADAM_F32 = "float32 state['step'] tensor in float32 tensor arithmetic"
EXPECTED_REFUSALS = {
    # torch computes the bias corrections 1 - beta**step from a float32 tensor with torch's float32
    # pow (torch/optim/adam.py _single_tensor_adam); not reproducible bitwise, ~1e-7 relative off
    ("Adam", "differentiable"): _ADAM_F32,
    ("AdamW", "differentiable"): _ADAM_F32,
    # Muon and SparseAdam keep a tensor lr a float32 tensor (torch.optim.optimizer._to_scalar) and compute
    # their step size in float32 (~1e-7 relative per step); the refusal says so and how to fix it
    ("Muon", "Tensor lr"): ("has a tensor lr", "torch's Muon keeps it a tensor", "float32"),
    ("SparseAdam", "Tensor lr"): ("has a tensor lr", "torch's SparseAdam keeps it a tensor", "float32"),
    # LBFGS.step(closure) re-evaluates the loss: not a GradientTransformation. from_torch names the jittable
    # replacement; LBFGS's parity (optim_db configurations included) is in test_optim_special.py
    ("LBFGS", "*"): ("LBFGS is not supported", "LBFGS.step(closure)", "jaxinit.optim.lbfgs("),
}
# optimizers from_torch does not (yet) convert: the reason must name the class as unsupported
UNSUPPORTED = "is not supported; supported are"


def _desc_flag(desc: str) -> str | None:
    return desc.rsplit(" & ", 1)[1] if " & " in desc else None


def _refusal_key(name: str, desc: str):
    """The EXPECTED_REFUSALS entry of a configuration: by implementation flag, by configuration (desc
    without the flag), or for every configuration of the class ("*")."""
    for key in ((name, _desc_flag(desc)), (name, desc.split(" & ", 1)[0]), (name, "*")):
        if key in EXPECTED_REFUSALS:
            return key
    return None


def _refusal_text_ok(expected, text: str) -> bool:
    return all(e in text for e in ((expected,) if isinstance(expected, str) else expected))


def _muon_tol(lr: float, shapes, torch_params) -> float:
    """Muon's bound (same argument as test_optim_special.py's ``_muon_tol``): torch orthogonalises in
    bfloat16 (torch/optim/_muon.py), and its CPU GEMM's float32 accumulation order decides rare ties of
    the bfloat16 rounding, where one element of the orthogonalised update O (|O| <= 1) moves by one
    bfloat16 ulp (2^-8 relative). One such event moves a parameter element by at most
    lr * r * 2^-8 with r = sqrt(max(1, A/B)) torch's 'original' lr ratio (sqrt(2.5) for the 5x2 matrix
    here; test_optim_special's 5x7 / 7x5 have 1.2); allow 10 of them over the 100 steps, relative to the
    smallest max|p| of the parameters (the measure of ``_rel``)."""
    from _jaxinit.optim_checks import muon_lr_ratio

    r = max(muon_lr_ratio(None, s) for s in shapes)
    scale = min(float(np.max(np.abs(p.detach().numpy()))) for p in torch_params)
    return 10 * lr * r * 2.0 ** -8 / scale


@functools.cache
def _db() -> tuple[list, dict[str, list]]:
    """torch's optim_db configurations (CPU, float64) and the same grouped by optimizer class name.
    Loaded on first use, not at collection: importing torch's test internals costs seconds in
    every worker, and only this file's tests need them."""
    optim_db, with_impls = _load_optim_db()
    cases = [(info, oi) for info in optim_db for oi in with_impls("cpu", torch.float64, info)]
    by_class: dict[str, list] = {}
    for info, oi in cases:
        by_class.setdefault(info.optim_cls.__name__, []).append((info, oi))
    return cases, by_class


def _torch_optimizer_classes() -> set[str]:
    """Every optimizer class torch.optim exports (read from torch, not from optim_db or our registry)."""
    return {name for name in torch.optim.__all__ if isinstance(getattr(torch.optim, name), type)
            and issubclass(getattr(torch.optim, name), torch.optim.Optimizer)
            and getattr(torch.optim, name) is not torch.optim.Optimizer}


def _grads(shapes, seed, sparse=False):
    """Injected gradients; ``sparse``: per step about 40% of the rows and 20% of the other elements zero,
    so that the entries present in ``g.to_sparse()`` (and in the JAX row_mask) change from step to step."""
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        g = rng.standard_normal((STEPS,) + s) * 0.1
        if sparse:
            rows = rng.random((STEPS, s[0]) + (1,) * (len(s) - 1)) < 0.6
            g = g * rows * (rng.random((STEPS,) + s) < 0.8)
        out.append(g)
    return out


def _make_torch(info, oi, shapes, w0):
    ps = [torch.tensor(w) for w in w0]  # plain tensors: differentiable=True steps outside no_grad
    return ps, info.optim_cls(ps, **oi.kwargs)


def _shapes_for(info, oi):
    """Mixed-rank parameters, or matrices only where torch's constructor refuses other ranks."""
    try:
        info.optim_cls([torch.zeros(s, dtype=torch.float64) for s in MIXED], **oi.kwargs)
        return MIXED
    except (ValueError, RuntimeError):
        return TWO_D


def _torch_step(info, opt, ps, grads, t):
    for p, g in zip(ps, grads):
        g = torch.tensor(g[t])
        p.grad = g.to_sparse() if info.only_supports_sparse_grads else g
    if info.step_requires_closure:
        opt.step(lambda: sum((p * p.grad).sum() for p in ps))  # a loss whose gradient is p.grad
    else:
        opt.step()


def _rel(jax_params, torch_params) -> float:
    worst = 0.0
    for a, b in zip(jax_params, torch_params):
        b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
        a = np.asarray(a)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)))
    return worst


def _factory_kwargs(factory, kwargs):
    """The direct factory call for a torch config: torch's names, minus its implementation switches."""
    accepted = inspect.signature(factory).parameters
    out = {}
    for k, v in kwargs.items():
        if k in core_convert.IMPLEMENTATION_KEYS and k not in accepted:
            continue
        out[k] = float(v) if isinstance(v, torch.Tensor) else v
    return out


class _Run:
    """One configuration: the torch reference run and what the JAX side needs."""

    def __init__(self, info, oi):
        self.info, self.oi = info, oi
        self.name = info.optim_cls.__name__
        self.flag = _desc_flag(oi.desc)
        self.shapes = _shapes_for(info, oi)
        self.sparse = bool(info.only_supports_sparse_grads)
        self.grads = _grads(self.shapes, seed=len(oi.desc) + 7 * len(self.name), sparse=self.sparse)
        self.w0 = [np.random.default_rng(3).standard_normal(s) for s in self.shapes]
        self.refusal = None
        ps, opt = _make_torch(info, oi, self.shapes, self.w0)
        try:
            self.tx = jo.from_torch(opt)
        except InitError as e:
            self.refusal = str(e)
            return
        self.torch_ps, self.torch_opt = ps, opt
        self.mid_params = self.mid_state = None
        for t in range(STEPS):
            if t == HALF:
                self.mid_params = [p.detach().numpy().copy() for p in ps]
                self.mid_state = opt.state_dict()
                self.mid_state = {"state": {i: {k: (v.clone() if isinstance(v, torch.Tensor) else v)
                                                for k, v in st.items()} for i, st in self.mid_state["state"].items()},
                                  "param_groups": self.mid_state["param_groups"]}
            _torch_step(info, opt, ps, self.grads, t)
        factory_name = core_convert.FACTORY_BY_CLASS.get(self.name)
        self.factory_tx = None
        if factory_name is not None and hasattr(jo, factory_name):
            kw = _factory_kwargs(getattr(jo, factory_name), oi.kwargs)
            if "scalar_dtype" in inspect.signature(getattr(jo, factory_name)).parameters:  # torch's 0-d state dtype
                kw["scalar_dtype"] = core_convert.scalar_dtype(opt)
            self.factory_tx = getattr(jo, factory_name)(**kw)


def _jax_half(runs):
    """One jitted 50-step scan over every run's three JAX trajectories (from_torch, factory, resumed)."""
    def body(carry, gs):
        new = []
        for (run, (trajs)), g in zip(zip(runs, carry), gs):
            out = []
            # sparse gradients: the entries torch's g.to_sparse() keeps (the non-zero ones), element-wise
            extra = {"row_mask": [x != 0 for x in g]} if run.sparse else {}
            for tx, (p, s) in zip((run.tx, run.factory_tx or run.tx, run.tx), trajs):
                u, s = tx.update(g, s, p, **extra)
                out.append((optax.apply_updates(p, u), s))
            new.append(tuple(out))
        return tuple(new), None

    return jax.jit(lambda carry, gs: jax.lax.scan(body, carry, gs)[0])


@pytest.fixture(scope="module")
def results():
    """``results(name)``: every optim_db configuration of one optimizer class run once, a list of
    (run, measured dict). Computed on first use per class, so an xdist worker runs only the classes
    whose tests it was given (a module-wide precomputation ran all 15 classes in every worker).

    torch runs single-threaded here: its fused CPU kernels parallelise even 12-element tensors, which
    on a loaded machine costs seconds per configuration (restored afterwards)."""
    cache: dict[str, list] = {}

    def get(name: str) -> list:
        if name not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                cache[name] = _results(name)
            finally:
                torch.set_num_threads(threads)
        return cache[name]

    return get


def _results(name: str) -> list:
    items = _db()[1][name]
    runs = [_Run(info, oi) for info, oi in items]
    ok = [r for r in runs if r.refusal is None and not r.info.step_requires_closure]
    measured = {id(r): {} for r in runs}
    if ok:
        half = _jax_half(ok)
        carry = []
        for r in ok:
            p0 = [jnp.asarray(w) for w in r.w0]
            carry.append(tuple((p0, tx.init(p0)) for tx in (r.tx, r.factory_tx or r.tx, r.tx)))
        gs1 = [[jnp.asarray(g[:HALF]) for g in r.grads] for r in ok]
        gs2 = [[jnp.asarray(g[HALF:]) for g in r.grads] for r in ok]
        carry = list(half(tuple(carry), gs1))
        for k, r in enumerate(ok):
            pm = [jnp.asarray(x) for x in r.mid_params]
            sm = jo.import_state(r.mid_state, pm, r.tx, step=HALF)
            m = measured[id(r)]
            # the state round trip torch -> JAX -> torch, bitwise
            back = jo.export_state(sm, pm)
            m["roundtrip"] = _bitwise_equal(core_convert.neutral_state(r.mid_state, _np), back["state"])
            # the way back: JAX state at step 50 -> torch, then torch continues
            pj, sj = carry[k][0]
            m["jax_mid"] = ([np.asarray(x) for x in pj], jo.export_state(sj, pj))
            carry[k] = (carry[k][0], carry[k][1], (pm, sm))
        carry = half(tuple(carry), gs2)
        for k, r in enumerate(ok):
            m = measured[id(r)]
            tp = r.torch_ps
            m["from_torch"] = _rel(carry[k][0][0], tp)
            m["factory"] = _rel(carry[k][1][0], tp) if r.factory_tx is not None else None
            m["resume_torch_to_jax"] = _rel(carry[k][2][0], tp)
            m["resume_jax_to_torch"] = _resume_in_torch(r, *m.pop("jax_mid"))
    return [(r, measured[id(r)]) for r in runs]


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _bitwise_equal(a: dict, b: dict) -> bool:
    if set(a) != set(b):
        return False
    for i in a:
        if set(a[i]) != set(b[i]):
            return False
        for k in a[i]:
            x, y = np.asarray(a[i][k]), np.asarray(b[i][k])
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                return False
    return True


def _resume_in_torch(r, params_mid, exported) -> float:
    ps = [torch.tensor(w) for w in params_mid]
    opt = r.info.optim_cls(ps, **r.oi.kwargs)
    to.import_state(exported, opt)
    for t in range(HALF, STEPS):
        _torch_step(r.info, opt, ps, r.grads, t)
    return _rel([p.detach().numpy() for p in ps], r.torch_ps)


@pytest.mark.parametrize("name", sorted(_torch_optimizer_classes()))
def test_optim_db_configuration_equal_or_refused(name, results):
    failures = []
    for r, m in results(name):
        cid = f"{name}[{r.oi.desc}]"
        key = _refusal_key(name, r.oi.desc)
        if r.refusal is not None:
            expected = None if key is None else EXPECTED_REFUSALS[key]
            if expected is None and UNSUPPORTED in r.refusal:
                failures.append(f"{cid}: torch's {name} is neither converted nor refused with a reason; add it to "
                                "the optimizer registry (_jaxinit/optim_registry.py, docs/contributing.md)")
                continue
            if expected is None or not _refusal_text_ok(expected, r.refusal):
                failures.append(f"{cid}: refused unexpectedly (expected {expected!r}): {r.refusal}")
            else:
                record_figure("optim_db", "refused", 1.0, cid)
            continue
        if key is not None:
            failures.append(f"{cid}: expected a refusal ({EXPECTED_REFUSALS[key]!r}), was accepted")
        if r.info.step_requires_closure:
            failures.append(f"{cid}: from_torch accepted a closure-driven optimizer; drive it in this test")
            continue
        tol = TOL
        if name == "Muon":  # bfloat16 Newton-Schulz in torch: see _muon_tol
            lr = r.oi.kwargs.get("lr", inspect.signature(r.info.optim_cls).parameters["lr"].default)
            tol = _muon_tol(float(lr), r.shapes, r.torch_ps)
        for what in ("from_torch", "factory", "resume_torch_to_jax", "resume_jax_to_torch"):
            d = m[what]
            if d is None:
                continue
            record_figure("optim_db", what, d, cid)
            if not d <= tol:
                failures.append(f"{cid}: {what} rel diff {d:.3g} > {tol:.3g}")
        if not m["roundtrip"]:
            failures.append(f"{cid}: state round trip torch -> jax -> torch not bitwise")
    assert not failures, "\n".join(failures)


def test_every_torch_optimizer_is_registered_and_enumerated():
    """Every optimizer of torch.optim is a registry entry (converted, or refused by from_torch with a reason
    that EXPECTED_REFUSALS checks), and torch's optim_db configurations of each are enumerated here: a torch
    release that adds an optimizer fails this test until it is registered."""
    torch_classes = _torch_optimizer_classes()
    registered = {o.torch_class for o in registry.OPTIMIZERS}
    assert len(torch_classes) >= 15, torch_classes
    assert not torch_classes - registered, (
        f"torch.optim optimizers missing from _jaxinit/optim_registry.py: {sorted(torch_classes - registered)}")
    assert not registered - torch_classes, f"registry entries torch.optim lacks: {sorted(registered - torch_classes)}"
    cases, by_class = _db()
    assert torch_classes <= set(by_class), f"optim_db has no configurations of {sorted(torch_classes - set(by_class))}"
    assert any(_desc_flag(oi.desc) == "differentiable" for _, oi in cases)
    for name, reason in registry.refused_classes().items():
        expected = EXPECTED_REFUSALS.get((name, "*"))
        assert expected is not None, f"{name} is refused by the registry; list the refusal in EXPECTED_REFUSALS"
    # every expected refusal names a configuration that exists (no stale entry hiding a typo)
    keys = {_refusal_key(info.optim_cls.__name__, oi.desc) for info, oi in _db()[0]}
    assert set(EXPECTED_REFUSALS) <= keys, set(EXPECTED_REFUSALS) - keys


def test_from_torch_docstrings_list_the_registry():
    """The from_torch docstrings name the classes the registry converts: jaxinit's all but the refused
    ones (named as refused), torchinit's every class (torch's own LBFGS object is copied as it is)."""
    from _jaxinit import optim_codegen as gen

    for package, fn in (("jaxinit", jo.from_torch), ("torchinit", to.from_torch)):
        assert gen.docstring_list(package) in " ".join(fn.__doc__.split()), package


def test_factories_of_the_registry_exist_in_both_packages():
    """Each entry's factory is the public factory of jaxinit.optim and torchinit.optim, its JAX-only names
    are public and in TRANSFORMS, and each state type it names is a public NamedTuple."""
    import importlib

    for o in registry.OPTIMIZERS:
        assert getattr(jo, o.factory) is o.factory_of("jaxinit"), o
        assert getattr(to, o.factory) is o.factory_of("torchinit"), o
        for n in o.jax_names:
            assert n in jo.__all__ and n in jo.TRANSFORMS, (o.torch_class, n)
        for s in o.states:  # a state type the walker knows is a public NamedTuple of jaxinit.optim
            assert s in jo.__all__ and hasattr(getattr(jo, s), "_fields"), (o.torch_class, s)
        assert o.factory in dir(importlib.import_module(o.module_of("torchinit"))), o


@pytest.mark.parametrize("factory_name", ["sgd", "adagrad", "rmsprop", "adam", "adamw", "nadam", "radam", "adamax",
                                          "adadelta", "rprop", "asgd"])
def test_two_element_lr_refused_at_construction(factory_name):
    for make in (lambda: getattr(jo, factory_name)(lr=jnp.array([1e-3, 1e-3])),
                 lambda: getattr(to, factory_name)([torch.nn.Parameter(torch.zeros(2))], lr=torch.tensor([1e-3, 1e-3]))):
        with pytest.raises(InitError, match="Tensor lr must be 1-element"):
            make()


def test_tensor_lr_and_betas_refused_where_torch_uses_float32():
    p = [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))]
    for opt, text in [
        (torch.optim.Adam(p, lr=torch.tensor(1e-3)), "a Tensor lr makes torch's Adam"),
        (torch.optim.NAdam(p, lr=torch.tensor(1e-3)), "a Tensor lr makes torch's NAdam"),
        (torch.optim.Adagrad(p, lr=torch.tensor(0.1), lr_decay=0.1), "a Tensor lr makes torch's Adagrad"),
        (torch.optim.Adam(p, betas=(torch.tensor(0.9), torch.tensor(0.99))), "Tensor betas"),
    ]:
        for conv in (jo.from_torch, to.from_torch):
            with pytest.raises(InitError, match="Fix: pass"):
                conv(opt)
            with pytest.raises(InitError, match=text):
                conv(opt)
    # where torch uses the tensor's value as it is, it converts (SGD, Adagrad without lr_decay: optim_db)
    jo.from_torch(torch.optim.SGD(p, lr=torch.tensor(1e-3)))


def test_registry_lists_are_generated():
    """jaxinit.optim / torchinit.optim's optimizer imports, __all__ and TRANSFORMS, and docs/optimizers.md's
    table are the codegen's output for the current registry (python -m _jaxinit.optim_codegen)."""
    from _jaxinit import optim_codegen as gen

    for path in gen.TARGETS:
        assert (gen.ROOT / path).read_text() == gen.render(path), f"{path} is stale: run python -m _jaxinit.optim_codegen"
    factories = [o.factory for o in registry.OPTIMIZERS]
    assert set(factories) <= set(to.__all__) and set(factories) <= set(jo.__all__) - set(jo.TRANSFORMS)
    assert set(registry.JAX_ONLY_NAMES) <= set(jo.TRANSFORMS)
    assert len(jo.__all__) == len(set(jo.__all__)), "a name is listed twice in jaxinit.optim.__all__"
