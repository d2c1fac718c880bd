"""NNX under torch's autocast (issue 23): ``jaxinit.amp.Autocast.nnx`` runs the Linen rules on the
instances of an NNX graph (jaxinit/_src/amp_nnx.py).

Judged bitwise against the real ``torch.autocast('cpu', torch.bfloat16)`` per op (a float32
``nnx.LayerNorm``: ATen's float32 kernel; ``jaxinit.nnx.BatchNorm`` training on a bf16 input: ATen's
mixed-dtype kernel, output and running statistics; ``nnx.MultiHeadAttention`` self-attention with
non-zero biases, fused and with a mask), eagerly and under ``nnx.jit``; and the NNX twins of the
pre-norm transformer block and the conv net with BatchNorm (parity_tests/_amp_twins.py) against the
Linen twins under the same policy with the same weights: loss, logits, every gradient and the
running statistics bitwise, the NNX step under ``nnx.jit(nnx.value_and_grad(...))``. After the
block the model is plain Flax again (the same numbers as before it, the original classes).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import linen as nn
from flax import nnx

import jaxinit.amp as ja
from _jaxinit.errors import InitError
import jaxinit.nnx as tn
from parity_tests import _amp_twins as twins

AC = ja.Autocast("cpu", jnp.bfloat16)


def _r(seed, *shape, s=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * s).astype(np.float32)


def _eq(a, b):
    np.testing.assert_array_equal(np.asarray(jnp.asarray(a).astype(jnp.float32)),
                                  np.asarray(b.detach().float().numpy() if isinstance(b, torch.Tensor)
                                             else jnp.asarray(b).astype(jnp.float32)))


def _snapshot(module):
    """A copy of the module's state (``nnx.state`` alone shares the Variables' values)."""
    return jax.tree.map(jnp.copy, nnx.state(module))


def _eager_and_jit(module, *args, eager=True):
    """``module(*args)`` under the policy under ``nnx.jit`` and (``eager``) eagerly: the same numbers."""
    state = _snapshot(module)
    with AC.nnx(module):
        if eager:
            out = module(*args)
            nnx.update(module, state)  # the jitted call starts from the same statistics
        jitted = nnx.jit(lambda m, *a: m(*a))(module, *args)
    if eager:
        _eq(out, jitted)
    return jitted


def test_nnx_layer_norm_float32_is_atens_and_bf16_is_linens():
    x, g, b = _r(1, 6, 40, s=3.0), _r(2, 40), _r(3, 40)
    ln = nnx.LayerNorm(40, epsilon=1e-5, rngs=nnx.Rngs(0))
    ln.scale[...], ln.bias[...] = jnp.asarray(g), jnp.asarray(b)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # torch's CPU autocast leaves layer_norm alone
        want = F.layer_norm(torch.tensor(x), (40,), torch.tensor(g), torch.tensor(b), 1e-5)
    _eq(_eager_and_jit(ln, jnp.asarray(x)), want)
    plain = ln(jnp.asarray(x))  # the control: Flax's own order differs from torch's
    assert 0.1 < float((np.asarray(plain) != want.numpy()).mean())
    xb = jnp.asarray(x).astype(jnp.bfloat16)
    with AC:
        linen = nn.LayerNorm(epsilon=1e-5).apply({"params": {"scale": ln.scale[...], "bias": ln.bias[...]}}, xb)
    got = _eager_and_jit(ln, xb, eager=False)
    assert got.dtype == jnp.bfloat16
    _eq(got, linen)


def test_nnx_batch_norm_training_bf16_is_atens():
    """jaxinit.nnx.BatchNorm training on a bf16 NHWC batch: output, running mean and variance and
    the batch count bitwise torch's BatchNorm2d under CPU autocast (eager and jitted)."""
    x, g, b = _r(4, 4, 8, 5, 5, s=2.0) + 0.5, _r(5, 8), _r(6, 8)
    tbn = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(g))
        tbn.bias.copy_(torch.tensor(b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = tbn(torch.tensor(x).to(torch.bfloat16))
    bn = tn.BatchNorm(8)
    bn.scale[...], bn.bias[...] = jnp.asarray(g), jnp.asarray(b)
    got = _eager_and_jit(bn, jnp.asarray(x.transpose(0, 2, 3, 1)).astype(jnp.bfloat16))
    assert got.dtype == jnp.bfloat16
    _eq(got.transpose(0, 3, 1, 2), want)
    _eq(bn.mean[...], tbn.running_mean)
    _eq(bn.var[...], tbn.running_var)
    assert int(bn.num_batches_tracked[...]) == 1


@pytest.mark.parametrize("kind", [pytest.param("group_norm", marks=pytest.mark.exhaustive),
                                  pytest.param("rms_norm", marks=pytest.mark.exhaustive), "flax_batch_norm"])
def test_nnx_normalizations_equal_linens(kind):
    """GroupNorm, RMSNorm and flax's own BatchNorm: the normalization rule, bitwise the Linen module's."""
    xb = jnp.asarray(_r(7, 4, 5, 5, 8, s=2.0)).astype(jnp.bfloat16)
    mods = {"group_norm": (nnx.GroupNorm(8, num_groups=2, rngs=nnx.Rngs(0)), nn.GroupNorm(num_groups=2), {}),
            "rms_norm": (nnx.RMSNorm(8, rngs=nnx.Rngs(0)), nn.RMSNorm(), {}),
            "flax_batch_norm": (nnx.BatchNorm(8, use_running_average=False, rngs=nnx.Rngs(0)),
                                nn.BatchNorm(use_running_average=False), {"mutable": ["batch_stats"]})}
    nmod, lmod, kw = mods[kind]
    variables = lmod.init(jax.random.key(0), xb)
    with AC:
        linen = lmod.apply(variables, xb, **kw)
    linen = linen[0] if kw else linen
    got = _eager_and_jit(nmod, xb, eager=False)
    assert got.dtype == jnp.bfloat16 == linen.dtype
    _eq(got, linen)


@pytest.mark.parametrize("eager", [False, pytest.param(True, marks=pytest.mark.exhaustive)])
def test_nnx_multi_head_attention_self_attention_is_torchs(eager):
    """nnx.MultiHeadAttention against torch's nn.MultiheadAttention(batch_first=True), non-zero in/out
    biases: self-attention (the stacked in-projection rounded twice) and with a mask (Flax's own
    projections), bitwise; under nnx.jit (-m exhaustive: eagerly too)."""
    e, h, length = 16, 2, 10
    x = _r(8, 3, length, e)
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(e, h, batch_first=True)
    with torch.no_grad():
        tm.in_proj_bias.normal_(0, 0.1)
        tm.out_proj.bias.normal_(0, 0.1)
    xt = torch.tensor(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = tm(xt, xt, xt, need_weights=False)[0]
    mha = nnx.MultiHeadAttention(h, e, decode=False, kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0))
    w, b, d = tm.in_proj_weight.detach().numpy(), tm.in_proj_bias.detach().numpy(), e // h
    for i, name in enumerate(("query", "key", "value")):
        getattr(mha, name).kernel[...] = jnp.asarray(w[i * e:(i + 1) * e].T.reshape(e, h, d))
        getattr(mha, name).bias[...] = jnp.asarray(b[i * e:(i + 1) * e].reshape(h, d))
    mha.out.kernel[...] = jnp.asarray(tm.out_proj.weight.detach().numpy().T.reshape(h, d, e))
    mha.out.bias[...] = jnp.asarray(tm.out_proj.bias.detach().numpy())
    got = _eager_and_jit(mha, jnp.asarray(x), eager=eager)
    assert got.dtype == jnp.bfloat16
    _eq(got, want)
    with AC.nnx(mha):
        masked = nnx.jit(lambda m, x: m(x, mask=jnp.ones((length, length), bool)))(mha, jnp.asarray(x))
    _eq(masked, want)


def _linen_step(model, variables, x, y, grads: bool):
    params, stats = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def loss_fn(p):
        with AC:
            logits, new = model.apply({"params": p, **stats}, x, mutable=list(stats))
        (lg,) = AC.cast("cross_entropy_loss", logits)
        return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean(), (logits, new)

    if not grads:
        return jax.jit(loss_fn)(params), None
    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)


def _nnx_loss(m, x, y):
    logits = m(x)
    (lg,) = ja.active().cast("cross_entropy_loss", logits)
    return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean(), logits


def _paths(tree):
    return dict(jax.tree_util.tree_flatten_with_path(tree)[0])


# -m exhaustive (5 s of compilation each; the per-op NNX rules above run by default): the transformer
# block's forward (ATen LayerNorm, fused attention, linears, the restored model), both twins with
# gradients (and the conv net's running statistics)
@pytest.mark.parametrize("name,grads", [
    pytest.param("transformer_block", False, marks=pytest.mark.exhaustive),
    pytest.param("transformer_block", True, marks=pytest.mark.exhaustive),
    pytest.param("conv_bn", True, marks=pytest.mark.exhaustive)])
def test_nnx_twin_equals_linen_twin_bitwise(name, grads):
    """One bf16 training step of the NNX twin under ``ac.nnx(model)`` (``nnx.jit``, with ``grads``
    ``nnx.jit(nnx.value_and_grad)``) against the Linen twin under ``with ac:``: loss, logits,
    gradients, running statistics bitwise; the logits bitwise torch's autocast forward too. After
    the block: plain Flax, as before it."""
    model, variables, nmodel = twins.linen_and_nnx(name)
    _, _, shape, perm = twins.TWINS[name]
    xs, ys = twins._batches(shape, 1, seed=3)[0]
    torch.manual_seed(0)
    tmodel = twins.TWINS[name][0]()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tlogits = tmodel(torch.tensor(xs))
    x, y = jnp.asarray(xs.transpose(perm) if perm else xs), jnp.asarray(ys)
    (lloss, (llogits, lnew)), lgrads = _linen_step(model, variables, x, y, grads)

    plain = nnx.jit(lambda m, x: m(x))
    state = _snapshot(nmodel)
    before = plain(nmodel, x)
    nnx.update(nmodel, state)
    with AC.nnx(nmodel):
        step = nnx.value_and_grad(_nnx_loss, has_aux=True) if grads else _nnx_loss
        out = nnx.jit(step)(nmodel, x, y)
    (loss, logits), ngrads = out if grads else (out, None)
    assert logits.dtype == jnp.bfloat16
    _eq(loss, lloss)
    _eq(logits, llogits)
    _eq(logits, tlogits)
    if grads:
        flat = _paths(lgrads)
        got = _paths(nnx.to_pure_dict(ngrads))
        assert got.keys() == flat.keys()
        for path, g in got.items():
            if path[0].key.startswith("ln") and path[-1].key == "scale":
                # ATen's LayerNorm backward: the scale gradient is a float32 sum over the rows, which
                # XLA orders per program (Linen's differs from torch's in 75% of the elements by ~1e-9
                # too): within 16 float32 ulps of the largest element
                np.testing.assert_allclose(g, flat[path], rtol=0, atol=16 * 2.0 ** -24 * float(jnp.abs(g).max()))
            else:
                _eq(g, flat[path])
    if "batch_stats" in lnew:
        stats = _paths(lnew["batch_stats"])
        got = _paths(nnx.to_pure_dict(nnx.state(nmodel, nnx.BatchStat)))
        assert got.keys() == stats.keys()
        for path, v in got.items():
            _eq(v, stats[path])
    # restored: the original classes, plain Flax numbers (the jit cache entry of the block not reused)
    assert all(type(m) is getattr(type(m), "_autocast_base", type(m)) for _, m in nnx.iter_graph(nmodel))
    nnx.update(nmodel, state)
    after = plain(nmodel, x)
    assert after.dtype == jnp.float32
    _eq(after, before)


def test_nnx_nested_policies_restore_and_attention_dropout_error():
    """``nnx.jit`` keeps one trace per policy across blocks and the plain trace after them; nested
    blocks: the inner policy wins and each exit restores the class the block found; a training-mode
    attention dropout under the policy is refused with the fix named."""
    lin = nnx.Linear(8, 4, rngs=nnx.Rngs(0))
    x = jnp.asarray(_r(9, 2, 8))
    traces = []

    @nnx.jit
    def f(m, x):
        traces.append(type(m))
        return m(x)

    plain = f(lin, x)
    for _ in range(2):  # the second block reuses the first block's trace (one subclass per class and policy)
        with AC.nnx(lin):
            assert f(lin, x).dtype == jnp.bfloat16
    assert len(traces) == 2 and traces[1] is not nnx.Linear

    def dtype():  # traced only (no compilation): the dtype the policy in force gives
        return jax.eval_shape(lambda: lin(x)).dtype

    with AC.nnx(lin):
        assert dtype() == jnp.bfloat16 and ja.active() is AC
        with ja.Autocast("cuda", jnp.float16).nnx(lin):
            assert dtype() == jnp.float16
            with ja.Autocast(enabled=False).nnx(lin):  # torch's enabled=False: plain Flax inside
                assert dtype() == jnp.float32 and type(lin) is nnx.Linear
        assert dtype() == jnp.bfloat16
    assert type(lin) is nnx.Linear and ja.active() is not AC
    _eq(f(lin, x), plain)
    assert len(traces) == 2  # the plain trace reused after the blocks
    mha = nnx.eval_shape(lambda: nnx.MultiHeadAttention(2, 8, dropout_rate=0.1, deterministic=False, decode=False,
                                                        rngs=nnx.Rngs(0)))
    with AC.nnx(mha), pytest.raises(InitError, match="deterministic=True or dropout_rate=0"):
        jax.eval_shape(lambda: mha(x[None]))
    assert type(mha) is nnx.MultiHeadAttention


def test_nnx_products_bias_gradient_and_conv_transpose_bias():
    """The product hooks read the instance being called: under ``nnx.grad`` the Linear bias gradient
    is the Linen Dense's (it was zero when the hook read the module outside the trace), and an
    ``nnx.ConvTranspose`` (no product hook in Flax) adds its bias as the Linen rule does: bitwise."""
    x, xi = jnp.asarray(_r(10, 4, 8)), jnp.asarray(_r(11, 1, 5, 5, 3))
    zeros = {"kernel_init": nnx.initializers.zeros, "bias_init": nnx.initializers.zeros, "rngs": nnx.Rngs(0)}
    lin, ct = nnx.Linear(8, 4, **zeros), nnx.ConvTranspose(3, 4, (3, 3), **zeros)
    lin.kernel[...], lin.bias[...] = jnp.asarray(_r(12, 8, 4)), jnp.asarray(_r(13, 4))
    ct.kernel[...], ct.bias[...] = jnp.asarray(_r(14, 3, 3, 3, 4)), jnp.asarray(_r(15, 4))

    def linen(p, pc):
        with AC:
            y = nn.Dense(4).apply({"params": p}, x)
            return jnp.sum(y.astype(jnp.float32) ** 2), nn.ConvTranspose(4, (3, 3)).apply({"params": pc}, xi)

    pl, pc = ({"kernel": m.kernel[...], "bias": m.bias[...]} for m in (lin, ct))
    want_g, want_ct = jax.jit(jax.grad(linen, has_aux=True))(pl, pc)

    @nnx.jit
    def step(lin, ct):
        g = nnx.grad(lambda m: jnp.sum(m(x).astype(jnp.float32) ** 2))(lin)
        return g, ct(xi)

    with AC.nnx(lin), AC.nnx(ct):
        g, got_ct = step(lin, ct)
    assert float(jnp.abs(want_g["bias"]).min()) > 0
    _eq(g["bias"][...], want_g["bias"])
    _eq(g["kernel"][...], want_g["kernel"])
    assert got_ct.dtype == jnp.bfloat16
    _eq(got_ct, want_ct)
