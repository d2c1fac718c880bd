"""Mixed precision against torch.amp: GradScaler as an optax transformation (jaxinit.amp.grad_scaler)
against ``torch.amp.GradScaler`` and its kernels."""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxinit.amp as ja
import jaxinit.optim as jo
import torchinit.amp as ta
import torchinit.optim as to
from _jaxinit import InitError
from parity_tests._figures import record_figure

# ---------------------------------------------------------------- GradScaler

_RNG = np.random.default_rng(0)
_W0, _B0 = _RNG.standard_normal((4, 3)), _RNG.standard_normal(3)
_X, _Y = _RNG.standard_normal((8, 4)), _RNG.standard_normal((8, 3))
STEPS = 14
OVERFLOW = {2, 5, 6, 11}  # steps whose loss is multiplied by inf: every gradient non-finite
CFG = {"init_scale": 2.0 ** 10, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2}


def _torch_loop(w, b, opt, scaler, start, stop, clip=None):
    """torch's documented AMP loop; returns per step (scale, growth tracker, scaled grads) after update()."""
    out = []
    for t in range(start, stop):
        opt.zero_grad()
        loss = ((torch.tensor(_X) @ w + b - torch.tensor(_Y)) ** 2).mean()
        if t in OVERFLOW:
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        grads = {"w": w.grad.numpy().copy(), "b": b.grad.numpy().copy()}
        if clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_([w, b], clip)
        scaler.step(opt)
        scaler.update()
        out.append((scaler.get_scale(), scaler._get_growth_tracker(), grads))
    return out


def _torch_setup(clip=None, **cfg):
    w = torch.tensor(_W0, requires_grad=True)
    b = torch.tensor(_B0, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2, foreach=False)
    return w, b, opt, ta.grad_scaler(opt, **{**CFG, **cfg})


def _jax_loop(tx, params, state, grads_seq):
    def body(carry, g):
        p, st = carry
        u, st = tx.update(g, st, p)
        return (optax.apply_updates(p, u), st), (st.scale, st.growth_tracker, st.found_inf)

    stacked = {k: jnp.asarray(np.stack([g[k] for g in grads_seq])) for k in ("w", "b")}
    return jax.jit(lambda c, g: jax.lax.scan(body, c, g))((params, state), stacked)


def test_grad_scaler_twin_forced_overflow():
    """14 steps of Adam under GradScaler (growth_interval=2, inf loss at 4 steps), with
    clip_grad_norm_ after unscale_: the same steps skipped, the same scale and tracker sequence
    (bitwise), Adam's step count and the parameters as torch's (float64, 1e-14: Adam's own tolerance)."""
    w, b, opt, scaler = _torch_setup(clip=0.5)
    seq = _torch_loop(w, b, opt, scaler, 0, STEPS, clip=0.5)
    tx = ja.grad_scaler(optax.chain(jo.clip_grad_norm(0.5), jo.adam(1e-2)), **CFG)
    params = {"w": jnp.asarray(_W0), "b": jnp.asarray(_B0)}
    (params, st), (scales, trackers, found) = _jax_loop(tx, params, tx.init(params), [g for *_, g in seq])
    assert np.asarray(scales).tolist() == [s for s, _, _ in seq]
    assert np.asarray(trackers).tolist() == [t for _, t, _ in seq]
    assert {i for i, f in enumerate(np.asarray(found)) if f} == OVERFLOW
    assert int(st.inner_state[1][2].count) == int(opt.state[w]["step"]) == STEPS - len(OVERFLOW)
    assert np.asarray(scales).tolist()[:4] == [1024.0, 2048.0, 1024.0, 1024.0]  # grows after 2 finite steps
    for k, t in (("w", w), ("b", b)):
        np.testing.assert_allclose(np.asarray(params[k]), t.detach().numpy(), rtol=1e-14, atol=0)
    assert ja.grad_scaler_state_dict(st) == ta.grad_scaler_state_dict(scaler)
    record_figure("amp", "GradScaler twin param rel. diff (float64)",
                  float(np.max(np.abs(np.asarray(params["w"]) - w.detach().numpy()))), "adam+clip")


@pytest.mark.parametrize("direction", ["torch->jax", "jax->torch"])
def test_grad_scaler_resume_across_frameworks(direction):
    """7 steps in one framework, scaler and Adam state exported, 7 more in the other == 14 in torch."""
    w, b, opt, scaler = _torch_setup()
    ref = _torch_loop(w, b, opt, scaler, 0, STEPS)
    inner = jo.adam(1e-2)
    tx = ja.grad_scaler(inner, **CFG)
    half = STEPS // 2
    if direction == "torch->jax":
        w1, b1, o1, s1 = _torch_setup()
        _torch_loop(w1, b1, o1, s1, 0, half)
        params = {"b": jnp.asarray(b1.detach().numpy()), "w": jnp.asarray(w1.detach().numpy())}
        inner_st = jo.import_state(o1, [params["w"], params["b"]], inner)
        st = ja.load_grad_scaler_state_dict(tx.init(params)._replace(inner_state=_by_name(inner_st)),
                                            ta.grad_scaler_state_dict(s1))
        (params, st), (scales, _, _) = _jax_loop(tx, params, st, [g for *_, g in ref[half:]])
        assert np.asarray(scales).tolist() == [s for s, _, _ in ref[half:]]
        final = {k: np.asarray(v) for k, v in params.items()}
    else:
        params = {"w": jnp.asarray(_W0), "b": jnp.asarray(_B0)}
        (params, st), _ = _jax_loop(tx, params, tx.init(params), [g for *_, g in ref[:half]])
        w1, b1, o1, s1 = _torch_setup()
        with torch.no_grad():
            w1.copy_(torch.tensor(np.asarray(params["w"])))
            b1.copy_(torch.tensor(np.asarray(params["b"])))
        to.import_state(jo.export_state(_by_position(st.inner_state), [params["w"], params["b"]]), o1)
        ta.load_grad_scaler_state_dict(s1, ja.grad_scaler_state_dict(st))
        rest = _torch_loop(w1, b1, o1, s1, half, STEPS)
        assert [s for s, _, _ in rest] == [s for s, _, _ in ref[half:]]
        final = {"w": w1.detach().numpy(), "b": b1.detach().numpy()}
    for k, t in (("w", w), ("b", b)):
        np.testing.assert_allclose(final[k], t.detach().numpy(), rtol=1e-14, atol=0)


def _by_name(list_state):
    """jaxinit.optim state over the params list [w, b] -> over the dict {"b", "w"} (leaf order b, w)."""
    return jax.tree.map(lambda x: {"w": x[0], "b": x[1]} if isinstance(x, list) else x, list_state,
                        is_leaf=lambda x: isinstance(x, list))


def _by_position(dict_state):
    return jax.tree.map(lambda x: [x["w"], x["b"]] if isinstance(x, dict) else x, dict_state,
                        is_leaf=lambda x: isinstance(x, dict))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_unscale_bitwise(dtype):
    """``unscale`` == torch._amp_foreach_non_finite_check_and_unscale_ with the inverse scale
    torch's unscale_ forms (scale 3.0: 1/3 is inexact), and found_inf on a single inf."""
    g = np.random.default_rng(1).standard_normal((5, 7)).astype(np.float32) * 1e3
    tg = torch.tensor(g).to(getattr(torch, dtype))
    scale = torch.tensor(3.0)
    found = torch.zeros(())
    torch._amp_foreach_non_finite_check_and_unscale_([tg], found, scale.double().reciprocal().float())
    jg = jnp.asarray(g).astype(dtype)
    ours, jfound = ja.unscale({"g": jg}, jnp.float32(3.0))
    np.testing.assert_array_equal(np.asarray(ours["g"].astype(jnp.float64)), tg.double().numpy())
    assert float(jfound) == float(found) == 0.0
    _, jfound = ja.unscale({"g": jg.at[2, 3].set(jnp.inf)}, jnp.float32(3.0))
    assert float(jfound) == 1.0


def test_reciprocal_in_float32_is_torchs_for_every_scale():
    """``float32(1) / s`` == ``float32(1 / float64(s))`` (torch's ``scale.double().reciprocal().float()``)
    for every float32 significand (2**23 values in [1, 2), so for every normal scale whose reciprocal is
    normal): the float32 path needs no float64."""
    s = (np.arange(2 ** 23, dtype=np.uint32) | np.uint32(127 << 23)).view(np.float32)
    ours = np.asarray(jax.jit(lambda v: jnp.float32(1) / v)(jnp.asarray(s)))
    np.testing.assert_array_equal(ours, (1.0 / s.astype(np.float64)).astype(np.float32))


def test_update_scale_bitwise_against_torch_kernel():
    """``update_scale`` == torch._amp_update_scale_ for random scales, a factor that is not a
    float32 number (1.1, 0.3: products formed in float64 as torch's kernel), growth capped at the
    float32 range, and the growth tracker around growth_interval."""
    rng = np.random.default_rng(3)
    scales = np.concatenate([rng.uniform(1, 2 ** 20, 10), [3.0e38, 1.7e38]]).astype(np.float32)
    for gf, bf, gi in ((1.1, 0.3, 3), (2.0, 0.5, 1)):
        for tracker in (0, gi - 1):
            for found in (0.0, 1.0):
                ts = torch.tensor(scales)
                ref = []
                for s in scales:
                    t_s, t_g = torch.tensor(s), torch.tensor(tracker, dtype=torch.int32)
                    torch._amp_update_scale_(t_s, t_g, torch.tensor(found), gf, bf, gi)
                    ref.append((t_s.item(), t_g.item()))
                st = ja.grad_scaler(jo.sgd(0.1), 1.0, gf, bf, gi).init({})
                new = jax.vmap(lambda s: ja.update_scale(
                    st._replace(scale=s, growth_tracker=jnp.int32(tracker)), jnp.float32(found)))(jnp.asarray(ts))
                assert list(zip(np.asarray(new.scale).tolist(), np.asarray(new.growth_tracker).tolist())) == ref


def test_grad_scaler_state_dict_round_trip_and_disabled():
    tx = ja.grad_scaler(jo.sgd(0.1), init_scale=3.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=7)
    st = tx.init({"w": jnp.zeros(2)})
    sd = {"scale": 96.0, "growth_factor": 1.5, "backoff_factor": 0.125, "growth_interval": 3, "_growth_tracker": 2}
    st2 = ja.load_grad_scaler_state_dict(st, sd)
    assert ja.grad_scaler_state_dict(st2) == sd
    scaler = ta.grad_scaler(torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1))
    assert ta.grad_scaler_state_dict(ta.load_grad_scaler_state_dict(scaler, ja.grad_scaler_state_dict(st2))) == sd
    assert ja.grad_scaler_state_dict(ja.load_grad_scaler_state_dict(st, ta.grad_scaler_state_dict(scaler))) == sd
    # loss scaling with torch's promotion: a 0-d bfloat16 loss gives a float32 product, as torch's
    loss = ja.scale_loss(jnp.asarray(1.5, jnp.bfloat16), st2)
    tloss = ta.scale_loss(torch.tensor(1.5, dtype=torch.bfloat16), scaler)
    assert loss.dtype == jnp.float32 and tloss.dtype == torch.float32 and float(loss) == float(tloss) == 144.0
    # disabled: no scaling, no skipping, torch's empty state_dict
    off = ja.grad_scaler(jo.sgd(1.0), enabled=False)
    p = {"w": jnp.ones(2)}
    ost = off.init(p)
    u, ost = off.update({"w": jnp.array([jnp.inf, 1.0])}, ost, p)
    assert ja.grad_scaler_state_dict(ost) == {} == ta.grad_scaler_state_dict(
        ta.grad_scaler(torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1), enabled=False))
    assert float(u["w"][1]) == -1.0 and ja.scale_loss(jnp.float32(2.0), ost) == 2.0


def test_grad_scaler_errors():
    for kw, match in (({"growth_factor": 1.0}, "growth_factor must be > 1.0"),
                      ({"backoff_factor": 1.0}, r"backoff_factor must be in \(0, 1\)"),
                      ({"backoff_factor": 0.0}, r"backoff_factor must be in \(0, 1\)"),
                      ({"init_scale": -1.0}, "init_scale must be > 0"),
                      ({"growth_interval": 0}, r"growth_interval must be an int in \[1"),
                      ({"enabled": 1}, "enabled must be True or False")):
        with pytest.raises(InitError, match=match):
            ja.grad_scaler(jo.sgd(0.1), **kw)
        with pytest.raises(InitError, match=match):
            ta.grad_scaler(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), **kw)
    st = ja.grad_scaler(jo.sgd(0.1)).init({})
    scaler = ta.grad_scaler(torch.optim.SGD([torch.zeros(1, requires_grad=True)]))
    bad = {"scale": 1.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 3, "growth_tracker": 0}
    for load, target in ((ja.load_grad_scaler_state_dict, st), (ta.load_grad_scaler_state_dict, scaler)):
        with pytest.raises(InitError, match=r"unknown torch version.*missing \['_growth_tracker'\], unknown "
                                            r"\['growth_tracker'\]|missing \['_growth_tracker'\], unknown"):
            load(target, bad)
        with pytest.raises(InitError, match="saved from a disabled instance"):
            load(target, {})
    with pytest.raises(InitError, match="Attempting to unscale FP16 gradients"):
        tx = ja.grad_scaler(jo.sgd(0.1))
        tx.update({"w": jnp.ones(2, jnp.float16)}, tx.init({"w": jnp.ones(2, jnp.float16)}))
    with pytest.raises(InitError, match="inner must be an optax.GradientTransformation"):
        ja.grad_scaler(torch.optim.SGD)
    with jax.enable_x64(False):
        with pytest.raises(InitError, match="growth_factor=1.1 is not a float32 number.*jax_enable_x64"):
            ja.grad_scaler(jo.sgd(0.1), growth_factor=1.1)


def test_amp_mirror():
    jax_names = set(ja.__all__) - set(ja.TRANSFORMS) - {"TRANSFORMS"}
    assert jax_names == set(ta.__all__)
    for name in ta.__all__:
        js, ts = inspect.signature(getattr(ja, name)), inspect.signature(getattr(ta, name))
        assert [(p.name, p.default) for p in js.parameters.values()] == \
               [(p.name, p.default) for p in ts.parameters.values()], name
