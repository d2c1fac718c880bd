"""Keyed dropout: torchinit's torch layers draw flax.linen's masks, and a bound torch model trains
like its Flax twin.

Every reference is Flax's own code run on the same key: ``flax.linen.Dropout``,
``flax.linen.dot_product_attention_weights``, ``Scope.make_rng`` (nested modules, repeated calls),
``nnx.Rngs`` / ``nnx.Dropout``. Masks and outputs are compared bitwise (the claim is bit equality:
same bits, same select, same rounding of the scale); the training twins compare float64 parameters
after 20 AdamW steps within 1e-12 relative (what is left is float64 reduction order in the matmuls
and the optimizer; masks are bitwise, else the difference would be O(1)).
"""
from __future__ import annotations

import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxinit.optim as jopt
import jaxinit.rngs as jrn
import torchinit.nn as fnn
import torchinit.random as tr
import torchinit.rngs as trn
from _jaxinit.errors import InitError
from parity_tests._figures import record_figure

TORCH = {jnp.float32: torch.float32, jnp.float64: torch.float64, jnp.bfloat16: torch.bfloat16,
         jnp.float16: torch.float16}


def _bits(a) -> np.ndarray:
    a = np.asarray(a.detach().cpu().float() if isinstance(a, torch.Tensor) and a.dtype in (torch.bfloat16, torch.float16)
                   else (a.detach().cpu() if isinstance(a, torch.Tensor) else a))
    if a.dtype == np.float64:
        return a.view(np.uint64)
    return a.astype(np.float32).view(np.uint32)


def _x(shape, dt, seed=1):
    # numpy's normal: jax.random.normal eagerly would compile one sampler per shape (0.5 s each)
    return (np.random.RandomState(seed).standard_normal(shape).astype(np.float32) * 3).astype(dt)


def _tk(k):
    return np.asarray(jax.random.key_data(k))


# --------------------------------------------------------------------------- masks, bitwise
# One jitted Flax program per table (eager Flax compiles every primitive per shape: 5x slower here).
_RATES = ((0.1, ()), (0.37, (1,)), (0.5, (0, 2)), (0.9, ()))
_DTYPES = (jnp.float32, jnp.float64, jnp.bfloat16, jnp.float16)


@pytest.mark.parametrize("x64,sweep", [(True, "sampled"), pytest.param(True, "all", marks=pytest.mark.exhaustive),
                                       pytest.param(False, "all", marks=pytest.mark.exhaustive)])
def test_dropout_bitwise_flax(x64, sweep):
    """flax.linen.Dropout (mask dtype: float64 under x64, float32 without) vs torchinit, in every
    dtype and rate family (0.5: exact reciprocal; others rounded), elementwise and broadcast masks;
    and torch's Dropout2d on NCHW == Flax Dropout(broadcast_dims=(1, 2)) on NHWC (in the same
    program: the broadcast-family table runs with `exhaustive`)."""
    md = torch.float64 if x64 else torch.float32
    dts = _DTYPES if x64 else tuple(d for d in _DTYPES if d != jnp.float64)
    with jax.enable_x64(x64):
        xs = {dt.__name__: _x((6, 5, 7), dt) for dt in dts}
        rates = _RATES if sweep == "all" else _RATES[:2]
        nchw = _x((3, 5, 4, 4), np.float32)

        @jax.jit
        def refs(xs, nhwc):
            out = {(n, i): nn.Dropout(r, broadcast_dims=bd).apply({}, x, deterministic=False, rng=jax.random.key(i))
                   for n, x in xs.items() for i, (r, bd) in enumerate(rates)}
            out[("2d", 0)] = nn.Dropout(0.4, broadcast_dims=(1, 2)).apply({}, nhwc, deterministic=False,
                                                                      rng=jax.random.key(2))
            return out

        out = refs({n: jnp.asarray(x) for n, x in xs.items()}, jnp.moveaxis(nchw, 1, -1))
    got2d = fnn.Dropout2d(0.4, mask_dtype=md)(torch.from_numpy(nchw), key=tr.key(2))
    assert (_bits(torch.movedim(got2d, 1, -1)) == _bits(out[("2d", 0)])).all()
    assert bool(((got2d == 0).flatten(2).all(-1) | (got2d != 0).flatten(2).all(-1)).all())  # whole channels
    for dt in dts:
        xt = torch.from_numpy(np.asarray(xs[dt.__name__], np.float32)).to(TORCH[dt])
        for i, (rate, bd) in enumerate(rates):
            ref = out[(dt.__name__, i)]
            got = trn.dropout(xt, rate, key=tr.key(i), broadcast_dims=bd, mask_dtype=md)
            assert got.dtype == xt.dtype
            assert (_bits(got) == _bits(ref)).all(), (dt, rate, bd)
            layer = fnn.Dropout(rate, broadcast_dims=bd, mask_dtype=md)
            assert (_bits(layer(xt, key=tr.key(i))) == _bits(ref)).all()


@pytest.mark.exhaustive  # the training twins check gradients through the masks by default
def test_dropout_eager_equals_jit_and_gradient():
    """Flax's eager dropout gives the jitted numbers (the scale is XLA's x * (1/keep) both ways);
    torch's gradient is Flax's (select, then the scale)."""
    x = _x((4, 9), np.float64)
    k = jax.random.key(3)

    def f(x):
        return (nn.Dropout(0.3).apply({}, x, deterministic=False, rng=k) * jnp.arange(9.0)).sum()

    gj, yj = jax.jit(lambda x: (jax.grad(f)(x), nn.Dropout(0.3).apply({}, x, deterministic=False, rng=k)))(jnp.asarray(x))
    ye = nn.Dropout(0.3).apply({}, jnp.asarray(x), deterministic=False, rng=k)
    assert (_bits(ye) == _bits(yj)).all()
    xt = torch.from_numpy(x).requires_grad_()
    y = trn.dropout(xt, 0.3, key=_tk(k), mask_dtype=torch.float64)
    (y * torch.arange(9.0, dtype=torch.float64)).sum().backward()
    assert (_bits(xt.grad) == _bits(gj)).all() and (_bits(y) == _bits(yj)).all()


@pytest.mark.parametrize("sweep", [pytest.param("sampled", marks=pytest.mark.exhaustive),
                                   pytest.param("all", marks=pytest.mark.exhaustive)])
def test_broadcast_families_bitwise(sweep):
    """Channel dropout (torch Dropout1d/2d/3d on NC*, batched and not) == Flax Dropout(broadcast_dims=
    spatial) on the channels-last twin; channels_last elementwise dropout; DropPath / StochasticDepth ==
    Flax Dropout(broadcast_dims=all but batch / all), float32 and bfloat16; attention-weight dropout ==
    dot_product_attention_weights (multiply by keep / keep_prob, not nn.Dropout's select)."""
    # float32 inputs: XLA compiles a float64 dropout 10x slower (0.5 s each); the masks are float64 draws anyway
    # sampled: channel dropout only (the transformer-block twin covers DropPath and attention dropout)
    spatial = (1, 2, 3) if sweep == "all" else (2,)
    bfloat = ("dp32", "dpbf") if sweep == "all" else ()
    broadcast = (True, False) if sweep == "all" else ()
    xs = {f"c{s}": _x((3, 5) + (4,) * s, np.float32) for s in spatial}
    xs["cl"] = _x((2, 3, 4, 5), np.float32)
    xs["dp32"] = _x((8, 3, 5), np.float32)
    xs["dpbf"] = _x((8, 3, 5), jnp.bfloat16)
    xs["q"], xs["k"] = _x((2, 5, 3, 4), np.float32, 1), _x((2, 6, 3, 4), np.float32, 2)

    @jax.jit
    def refs(xs):
        def drop(rate, dims, key, x):
            return nn.Dropout(rate, broadcast_dims=dims).apply({}, x, deterministic=False, rng=jax.random.key(key))

        out = {}
        for s in spatial:
            xf = jnp.moveaxis(xs[f"c{s}"], 1, -1)
            out[f"c{s}"] = drop(0.4, tuple(range(1, 1 + s)), s, xf)
            out[f"u{s}"] = drop(0.4, tuple(range(s)), s, xf[0])
        out["cl"] = drop(0.25, (), 9, jnp.moveaxis(xs["cl"], 1, -1))
        for n in bfloat:
            out[n + "row"] = drop(0.55, (1, 2), 4, xs[n])
            out[n + "batch"] = drop(0.55, (0, 1, 2), 4, xs[n])
        if broadcast:
            out["w"] = nn.dot_product_attention_weights(xs["q"], xs["k"], deterministic=True)
        for b in broadcast:
            out[f"att{b}"] = nn.dot_product_attention_weights(xs["q"], xs["k"], dropout_rng=jax.random.key(11),
                                                              dropout_rate=0.2, broadcast_dropout=b, deterministic=False)
        return out

    out = refs({k: v for k, v in xs.items() if (not k.startswith("dp") or k in bfloat) and (k not in "qk" or broadcast)})
    for s, cls in ((1, fnn.Dropout1d), (2, fnn.Dropout2d), (3, fnn.Dropout3d)):
        if s not in spatial:
            continue
        x = torch.from_numpy(xs[f"c{s}"])
        got = cls(0.4, mask_dtype=torch.float64)(x, key=tr.key(s))  # float32 input, float64 mask (x64)
        assert (_bits(torch.movedim(got, 1, -1)) == _bits(out[f"c{s}"])).all()
        assert bool(((got == 0).flatten(2).all(-1) | (got != 0).flatten(2).all(-1)).all())  # whole channels, as torch
        gotu = cls(0.4, mask_dtype=torch.float64)(x[0], key=tr.key(s))
        assert (_bits(torch.movedim(gotu, 0, -1)) == _bits(out[f"u{s}"])).all()
    got = fnn.Dropout(0.25, channels_last=True, mask_dtype=torch.float64)(torch.from_numpy(xs["cl"]), key=tr.key(9))
    assert (_bits(torch.movedim(got, 1, -1)) == _bits(out["cl"])).all()
    md = torch.float64  # the suite runs jax with x64
    for n, dt in (("dp32", torch.float32), ("dpbf", torch.bfloat16))[:len(bfloat)]:
        xt = torch.from_numpy(np.asarray(xs[n], np.float32)).to(dt)
        row, batch = out[n + "row"], out[n + "batch"]
        assert (_bits(fnn.DropPath(0.55, mask_dtype=md)(xt, key=tr.key(4))) == _bits(row)).all()
        assert (_bits(fnn.StochasticDepth(0.55, "row", mask_dtype=md)(xt, key=tr.key(4))) == _bits(row)).all()
        assert (_bits(trn.stochastic_depth(xt, 0.55, "batch", key=tr.key(4), mask_dtype=md)) == _bits(batch)).all()
        unscaled = trn.drop_path(xt, 0.55, True, scale_by_keep=False, key=tr.key(4), mask_dtype=md)
        assert ((unscaled == 0) == torch.from_numpy(_bits(row) == 0).reshape(unscaled.shape)).all()
        assert ((unscaled == 0) | (unscaled == xt)).all()
    for b in broadcast:
        w = torch.from_numpy(np.array(out["w"]))
        got = trn.attention_dropout(w, 0.2, key=tr.key(11), broadcast_dropout=b, mask_dtype=md)
        assert (_bits(got) == _bits(out[f"att{b}"])).all()


@pytest.mark.exhaustive
def test_jaxinit_functional_forms_are_flax():
    @jax.jit
    def both(x, k):
        row = nn.Dropout(0.55, broadcast_dims=(1, 2)).apply({}, x, deterministic=False, rng=k)
        ref = nn.dot_product_attention_weights(x[..., None], x[..., None], deterministic=True)
        att = nn.dot_product_attention_weights(x[..., None], x[..., None], dropout_rng=k, dropout_rate=0.2,
                                               deterministic=False)
        ours = (jrn.drop_path(x, 0.55, True, key=k), jrn.stochastic_depth(x, 0.55, "row", key=k),
                jrn.dropout(x, 0.55, key=k, broadcast_dims=(1, 2)), jrn.attention_dropout(ref, 0.2, key=k))
        return (row, row, row, att), ours

    theirs, ours = both(jnp.asarray(_x((8, 3, 5), np.float64)), jax.random.key(4))
    for a, b in zip(theirs, ours):
        assert (_bits(a) == _bits(b)).all()
    w = jnp.ones(3)
    assert jrn.dropout(w, 0.3, training=False) is w


def test_rate_zero_one_eval_and_inplace():
    x = torch.randn(3, 4, dtype=torch.float64)
    x4 = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    for layer in (fnn.Dropout(0.0), fnn.DropPath(0.0), fnn.StochasticDepth(0.0, "row")):
        assert layer(x) is x
    assert fnn.Dropout2d(0.0)(x4) is x4 and fnn.Dropout2d(0.5).eval()(x4) is x4  # no key needed, input returned (Flax and torch return it)
    for layer in (fnn.Dropout(0.3), fnn.Dropout1d(0.3), fnn.DropPath(0.3), fnn.StochasticDepth(0.3, "batch")):
        assert layer.eval()(x) is x  # eval(): torch's identity, Flax's deterministic=True
    ref = nn.Dropout(1.0).apply({}, jnp.asarray(x.numpy()), deterministic=False)  # no rng needed at rate 1
    assert (_bits(fnn.Dropout(1.0)(x)) == _bits(ref)).all() and not fnn.Dropout(1.0)(x).any()
    k = jax.random.key(5)
    y = trn.dropout(x, 0.3, key=_tk(k), mask_dtype=torch.float64)
    xc = x.clone()
    out = fnn.Dropout(0.3, inplace=True, mask_dtype=torch.float64)(xc, key=_tk(k))
    assert out is xc and torch.equal(xc, y)


# --------------------------------------------------------------------------- key derivation
class _Inner(nn.Module):
    @nn.compact
    def __call__(self, x):
        a = jax.random.key_data(self.make_rng("dropout"))
        b = jax.random.key_data(self.make_rng("dropout"))
        return x, jnp.stack([a, b])


class _Outer(nn.Module):
    @nn.compact
    def __call__(self, x):
        _, k1 = _Inner(name="inner")(x)
        sub = _Inner()
        _, k2 = sub(x)
        _, k3 = sub(x)  # a module called twice: its counter goes on (3, 4)
        k0 = jax.random.key_data(self.make_rng("dropout"))
        return k0, k1, k2, k3


@pytest.mark.parametrize("separator", [False, True])
def test_linen_key_is_make_rng(separator):
    root = jax.random.key(123)
    from flax import config as fconfig

    old = fconfig.flax_fix_rng_separator
    fconfig.update("flax_fix_rng_separator", separator)
    try:
        k0, k1, k2, k3 = _Outer().apply({}, jnp.ones(1), rngs={"dropout": root})
    finally:
        fconfig.update("flax_fix_rng_separator", old)
    want = {("", 1): k0, ("inner", 1): k1[0], ("inner", 2): k1[1], ("_Inner_0", 1): k2[0], ("_Inner_0", 2): k2[1],
            ("_Inner_0", 3): k3[0], ("_Inner_0", 4): k3[1]}
    for (path, count), ref in want.items():
        assert np.array_equal(trn.linen_key(_tk(root), path, count, separator).numpy(), np.asarray(ref)), (path, count)
        assert np.array_equal(np.asarray(jax.random.key_data(jrn.linen_key(root, path, count, separator))), np.asarray(ref))
    assert np.array_equal(trn.linen_key(_tk(root), ("a", "b"), 2).numpy(), trn.linen_key(_tk(root), "a/b", 2).numpy())


def test_nnx_key_is_rngs_stream_and_dropout_fork():
    rngs = nnx.Rngs(dropout=7)
    first, second = rngs.dropout(), rngs.dropout()
    base = tr.key(7)
    assert np.array_equal(trn.nnx_key(base, 0).numpy(), np.asarray(jax.random.key_data(first)))
    assert np.array_equal(trn.nnx_key(base, 1).numpy(), np.asarray(jax.random.key_data(second)))
    # nnx.Dropout(rngs=...) forks the stream at construction (its key: the stream's next key), then
    # counts its own calls
    rngs = nnx.Rngs(dropout=7)
    layer = nnx.Dropout(0.3, rngs=rngs)
    x = _x((4, 6), np.float64)
    y0, y1 = layer(jnp.asarray(x)), layer(jnp.asarray(x))
    fork = trn.nnx_key(base, 0)
    for i, ref in enumerate((y0, y1)):
        got = trn.dropout(torch.from_numpy(x), 0.3, key=trn.nnx_key(fork, i), mask_dtype=torch.float64)
        assert (_bits(got) == _bits(ref)).all()


# --------------------------------------------------------------------------- errors
def test_errors_name_the_argument_and_fix():
    x = torch.ones(2, 3)
    with pytest.raises(InitError, match=r"`p` must be in \[0, 1\].*1.5"):
        fnn.Dropout(1.5)
    with pytest.raises(InitError, match="drop_prob"):
        fnn.DropPath(-0.1)
    with pytest.raises(InitError, match="needs a JAX key.*bind_rngs.*eval"):
        fnn.Dropout(0.1)(x)
    with pytest.raises(InitError, match="torch.Generator"):
        trn.dropout(x, 0.1, key=torch.Generator())
    with pytest.raises(InitError, match="not a JAX key.*seed"):
        trn.dropout(x, 0.1, key=3)
    with pytest.raises(InitError, match="mask_dtype"):
        fnn.Dropout(0.1, mask_dtype=torch.float16)
    with pytest.raises(InitError, match="'row' or 'batch'"):
        fnn.StochasticDepth(0.1, "rows")
    with pytest.raises(InitError, match="3-D .* or 4-D"):
        fnn.Dropout2d(0.1)(torch.ones(2, 3), key=tr.key(0))
    with pytest.raises(InitError, match="`count`"):
        trn.linen_key(tr.key(0), "a", 0)

    class TimmDropPath(torch.nn.Module):  # a foreign stochastic-depth module draws torch's masks
        def forward(self, x):
            return x
    TimmDropPath.__name__ = "DropPath"
    with pytest.raises(InitError, match="cannot be bound.*torchinit.nn.DropPath"):
        trn.bind_rngs(torch.nn.Sequential(TimmDropPath()), tr.key(0), [])


def test_bind_rngs_refuses_mismatches():
    calls = [trn.RngCall("Dropout_0", "dropout", 1, "dropout", 0.2, (2, 3), "float64")]
    model = torch.nn.Sequential(torch.nn.Dropout(0.3))
    b = trn.bind_rngs(model, tr.key(0), calls)
    with pytest.raises(InitError, match=r"p=0.3 .* rate=0.2"):
        model(torch.ones(2, 3))
    b.unbind()
    model = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Dropout(0.2))
    trn.bind_rngs(model, tr.key(0), calls)
    with pytest.raises(InitError, match="more dropout calls than its Flax twin"):
        model(torch.ones(2, 3))

    class Sdpa(torch.nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.1)
    m = Sdpa()
    trn.bind_rngs(m, tr.key(0), calls)
    with pytest.raises(InitError, match="attn_implementation='eager'"):
        m(torch.ones(1, 2, 3))
    assert torch.nn.functional.scaled_dot_product_attention is not None
    assert torch.nn.functional.dropout.__module__ == "torch.nn.functional"  # patches removed after the error
    with pytest.raises(InitError, match="flax_inputs"):
        trn.bind_rngs(torch.nn.Dropout(0.1), tr.key(0), nn.Dropout(0.1))


def test_mirror_surface():
    # bind_rngs / RngBinding bind torch modules (a Flax model takes its keys natively); Rngs / RngStream
    # are flax.nnx's own classes
    assert set(jrn.__all__) == set(trn.__all__) - {"bind_rngs", "RngBinding", "Rngs", "RngStream"}
    for cls, base in ((fnn.Dropout, torch.nn.Dropout), (fnn.Dropout1d, torch.nn.Dropout1d),
                      (fnn.Dropout2d, torch.nn.Dropout2d), (fnn.Dropout3d, torch.nn.Dropout3d)):
        assert issubclass(cls, base)
        assert cls(0.2).p == base(0.2).p


# --------------------------------------------------------------------------- training twins
class FMlp(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(nn.Dense(16, name="fc1")(x))
        x = nn.Dropout(0.3)(x, deterministic=not train)
        x = nn.relu(nn.Dense(16, name="fc2")(x))
        x = nn.Dropout(0.1, broadcast_dims=(0,))(x, deterministic=not train)
        return nn.Dense(3, name="out")(x)


def _tmlp():
    return torch.nn.ModuleDict({"fc1": torch.nn.Linear(6, 16), "d1": torch.nn.Dropout(0.3),
                                "fc2": torch.nn.Linear(16, 16), "d2": fnn.Dropout(0.1, broadcast_dims=(0,)),
                                "out": torch.nn.Linear(16, 3)})


class TMlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.m = _tmlp()

    def forward(self, x):
        m = self.m
        x = m["d1"](torch.relu(m["fc1"](x)))
        return m["out"](m["d2"](torch.relu(m["fc2"](x))))


class FBlock(nn.Module):
    """Pre-norm transformer block: attention dropout (dot_product_attention_weights, as HF Flax),
    residual dropout (nn.Dropout), DropPath (nn.Dropout broadcast over all but the batch)."""
    heads: int = 2

    @nn.compact
    def __call__(self, x, train: bool):
        b, s, d = x.shape
        h = nn.LayerNorm(epsilon=1e-5, name="ln1")(x)
        # no key bias: its gradient is zero up to rounding (softmax ignores a per-row shift), which Adam would
        # amplify into lr-sized steps of noise in both frameworks
        q, k, v = (nn.Dense(d, name=n, use_bias=n != "k")(h).reshape(b, s, self.heads, d // self.heads)
                   for n in ("q", "k", "v"))
        rng = self.make_rng("dropout") if train else None
        w = nn.dot_product_attention_weights(q, k, dropout_rng=rng, dropout_rate=0.2, deterministic=not train)
        a = jnp.einsum("bhqk,bkhd->bqhd", w, v).reshape(b, s, d)
        a = nn.Dropout(0.1, name="resid")(nn.Dense(d, name="o")(a), deterministic=not train)
        x = x + nn.Dropout(0.25, broadcast_dims=(1, 2), name="path1")(a, deterministic=not train)
        h = nn.Dense(d, name="fc")(nn.LayerNorm(epsilon=1e-5, name="ln2")(x))
        return x + nn.Dropout(0.25, broadcast_dims=(1, 2), name="path2")(jnp.tanh(h), deterministic=not train)


class TBlock(torch.nn.Module):
    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.q, self.k, self.v, self.o, self.fc = (torch.nn.Linear(d, d, bias=n != "k") for n in "qkvof")
        self.resid = torch.nn.Dropout(0.1)
        self.path1, self.path2 = fnn.DropPath(0.25), fnn.DropPath(0.25)

    def forward(self, x):
        b, s, d = x.shape
        h = self.ln1(x)
        q, k, v = (m(h).reshape(b, s, self.heads, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        w = torch.softmax((q / q.shape[-1] ** 0.5) @ k.transpose(-1, -2), dim=-1)  # scaled first, as Flax
        w = torch.nn.functional.dropout(w, 0.2, self.training)  # as Hugging Face's eager attention
        a = (w @ v).transpose(1, 2).reshape(b, s, d)
        x = x + self.path1(self.resid(self.o(a)))
        return x + self.path2(torch.tanh(self.fc(self.ln2(x))))


class FConv(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(nn.Conv(4, (3, 3), padding=1, name="conv")(x))
        x = nn.Dropout(0.3, broadcast_dims=(1, 2))(x, deterministic=not train)
        return nn.Dense(2, name="head")(x.mean(axis=(1, 2)))


class TConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.drop, self.head = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Dropout2d(0.3), torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.conv(x))).mean(dim=(2, 3)))


def _flax_params(tm: torch.nn.Module, names: dict) -> dict:
    """torch Linear / Conv2d / LayerNorm weights in Flax's layout, by Flax name."""
    out = {}
    for fname, mod in names.items():
        m = tm.get_submodule(mod)
        w = m.weight.detach().numpy()
        if isinstance(m, torch.nn.LayerNorm):
            out[fname] = {"scale": w}
        else:
            out[fname] = {"kernel": w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T}
        if m.bias is not None:
            out[fname]["bias"] = m.bias.detach().numpy()
    return out


TWINS = {
    "mlp": (FMlp, TMlp, (8, 6), {"fc1": "m.fc1", "fc2": "m.fc2", "out": "m.out"}, lambda x: x),
    "transformer_block": (FBlock, TBlock, (3, 5, 8), {n: n for n in ("ln1", "ln2", "q", "k", "v", "o", "fc")},
                          lambda x: x),
    "conv_dropout2d": (FConv, TConv, (4, 3, 6, 6), {"conv": "conv", "head": "head"},
                       lambda x: np.moveaxis(x, 1, -1)),
}


# float32: XLA's and torch's float32 kernels round differently (reduction order, fused multiply-adds);
# Adam divides by sqrt(v), so the rounding grows over the steps: 1e-4 relative after 20 steps bounds it
# (measured below 2e-5; a single different mask moves parameters by 1e-2 or more).
_TWIN_RTOL = {"float64": 1e-12, "float32": 1e-4}


@pytest.mark.parametrize("dtype", ["float64", pytest.param("float32", marks=pytest.mark.exhaustive)])
@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n == "transformer_block" else pytest.mark.exhaustive)
                                  for n in sorted(TWINS)])
def test_training_twin_20_adamw_steps(name, dtype):
    """20 AdamW steps, the dropout key split per step as a Flax loop does; float64 params within 1e-12."""
    fcls, tcls, xshape, names, to_flax = TWINS[name]
    rtol = _TWIN_RTOL[dtype]
    torch.manual_seed(0)
    tm = tcls().to(getattr(torch, dtype)).train()
    fm = fcls()
    params = jax.tree.map(jnp.asarray, _flax_params(tm, names))
    rs = np.random.RandomState(0)
    xs = rs.randn(20, *xshape).astype(dtype)
    ys = rs.randn(20, *([xshape[0], 3] if name == "mlp" else [xshape[0], 2] if name == "conv_dropout2d" else xshape)).astype(dtype)
    tx = jopt.adamw(1e-2, weight_decay=1e-2)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y, dkey):
        def loss_fn(p):
            return jnp.mean((fm.apply({"params": p}, x, True, rngs={"dropout": dkey}) - y) ** 2)
        loss, g = jax.value_and_grad(loss_fn)(params)
        upd, opt_state = tx.update(g, opt_state, params)
        return jax.tree.map(lambda a, b: a + b, params, upd), opt_state, loss

    calls = jrn.rng_calls(fm, jnp.asarray(to_flax(xs[0])), True, variables={"params": params})
    assert len(calls) == {"mlp": 2, "transformer_block": 4, "conv_dropout2d": 1}[name]
    binding = trn.bind_rngs(tm, None, calls)
    topt = torch.optim.AdamW(tm.parameters(), lr=1e-2, weight_decay=1e-2)
    key_j, key_t = jax.random.key(0), tr.key(0)
    for i in range(20):
        key_j, dk_j = jax.random.split(key_j)
        key_t, dk_t = tr.split(key_t)
        params, opt_state, loss_j = step(params, opt_state, jnp.asarray(to_flax(xs[i])), jnp.asarray(ys[i]), dk_j)
        binding.set_key(dk_t)
        topt.zero_grad()
        loss_t = torch.mean((tm(torch.from_numpy(xs[i])) - torch.from_numpy(ys[i])) ** 2)
        loss_t.backward()
        topt.step()
        assert abs(loss_t.item() - float(loss_j)) <= rtol * abs(float(loss_j)), (i, loss_t.item(), float(loss_j))
    want = _flax_params(tm, names)
    worst = 0.0
    for (path, ref), got in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(want)):
        ref = np.asarray(ref)
        rel = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
        worst = max(worst, rel)
        assert rel <= rtol, path
    record_figure("dropout twins", f"param_rel_{dtype}_20_steps", worst, name)
    binding.unbind()
    tm.eval()
    x = torch.from_numpy(xs[0])
    assert torch.equal(tm(x), tm(x))  # unbound, eval: plain torch again


# --------------------------------------------------------------------------- Hugging Face, train mode
HF = {
    "bert": ("BertConfig", "BertModel", "FlaxBertModel",
             dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
                  max_position_embeddings=16)),
    "gpt2": ("GPT2Config", "GPT2Model", "FlaxGPT2Model", dict(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=16)),
}


def _hf_twin_train(name):
    """A tiny Hugging Face model (default dropout 0.1 everywhere, eager attention) in both frameworks,
    float64, bound as docs/dropout.md says; train-mode outputs and parameter gradients compared."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    cfg_name, tname, fname, cfg = HF[name]
    config = getattr(transformers, cfg_name)(**cfg, attn_implementation="eager")
    torch.manual_seed(0)
    tm = getattr(transformers, tname)(config).double().train()
    fm = getattr(transformers, fname)(config, dtype=jnp.float64, _do_init=False)
    ids = np.random.RandomState(0).randint(1, 50, (2, 7))  # no pad id: torch's padding_idx row has no gradient
    shapes = jax.eval_shape(lambda k: fm.init_weights(k, ids.shape), jax.random.key(0))
    from transformers.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax

    # Hugging Face's own torch -> Flax converter (names, Conv1D/Dense transposes), for weights and gradients
    template = types.SimpleNamespace(params=jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes),
                                     base_model_prefix=fm.base_model_prefix)

    def to_flax(tensors):
        return convert_pytorch_state_dict_to_flax({k: v.detach() for k, v in tensors.items()}, template)

    params = to_flax(dict(tm.named_parameters()))
    key = jax.random.key(3)
    calls = jrn.rng_calls(fm, ids, variables={"params": params}, train=True)
    cot = np.random.RandomState(1).randn(2, 7, 16)

    def loss(p):
        out = fm(ids, params=p, dropout_rng=key, train=True).last_hidden_state
        return jnp.sum(out * cot), out

    (_, out_f), g_f = jax.value_and_grad(loss, has_aux=True)(params)
    binding = trn.bind_rngs(tm, _tk(key), calls)
    out_t = tm(torch.from_numpy(ids)).last_hidden_state
    (out_t * torch.from_numpy(cot)).sum().backward()
    binding.unbind()
    scale = np.max(np.abs(np.asarray(out_f)))
    diff = np.max(np.abs(out_t.detach().numpy() - np.asarray(out_f)))
    record_figure("dropout hugging face", "train_output_rel_f64", diff / scale, name)
    assert diff <= 1e-13 * scale
    g_t = to_flax({k: torch.zeros_like(p) if p.grad is None else p.grad for k, p in tm.named_parameters()})  # pooler: unused
    # relative to the largest gradient: the attention key bias's gradient is zero up to rounding (1e-19)
    gscale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(g_f))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_f), jax.tree.leaves(g_t)):
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-12 * gscale, path
    return len(calls)


@pytest.mark.exhaustive  # transformers' import and two HF models: ~10 s
def test_hugging_face_bert_train_mode_bound():
    assert _hf_twin_train("bert") == 7  # embeddings, and per layer: attention weights, attention output, output


@pytest.mark.exhaustive
def test_hugging_face_gpt2_train_mode_bound():
    assert _hf_twin_train("gpt2") == 7


def test_bind_rngs_mapping_pairs_by_scope():
    """mapping={torch path: Flax scope}: calls pair per scope in order, the others in call order;
    a module used twice takes the scope's next calls (make_rng's counter 1, 2)."""
    shape = (2, 5)
    calls = [trn.RngCall("a/drop", "dropout", 1, "dropout", 0.3, shape, "float32"),
             trn.RngCall("b", "dropout", 1, "dropout", 0.2, (1, 5), "float32"),
             trn.RngCall("a/drop", "dropout", 2, "dropout", 0.3, shape, "float32")]

    class Twice(torch.nn.Module):  # the torch twin runs `second` first, then `first` twice
        def __init__(self):
            super().__init__()
            self.first, self.second = torch.nn.Dropout(0.3), fnn.Dropout(0.2)

        def forward(self, x):
            return self.first(self.first(self.second(x)))

    model = Twice()
    root = tr.key(8)
    binding = trn.bind_rngs(model, root, calls, mapping={"first": "a/drop"})
    x = torch.randn(shape)
    want = trn.dropout(x, 0.2, key=trn.linen_key(root, "b", 1), broadcast_dims=(0,))
    want = trn.dropout(want, 0.3, key=trn.linen_key(root, "a/drop", 1))
    want = trn.dropout(want, 0.3, key=trn.linen_key(root, "a/drop", 2))
    assert torch.equal(model(x), want)
    assert torch.equal(model(x), want)  # each forward is one Flax apply: the pairing restarts
    with binding.key(tr.key(9)):
        assert not torch.equal(model(x), want)
    assert torch.equal(model(x), want)
    model.eval()
    assert model(x) is not None and torch.equal(model(x), x)  # eval: no dropout, no key drawn
    binding.unbind()
    assert fnn.Dropout(0.2).rng_source is None and model.second.rng_source is None
    model.train()
    with trn.bind_rngs(model, root, calls, mapping={"first": "a/drop"}):  # a block: unbound at its end
        assert torch.equal(model(x), want)
    assert model.second.rng_source is None


def test_nnx_rngs_layers_draw_nnx_dropout_keys():
    """torchinit.nn layers built with torchinit.rngs.Rngs draw, call after call, the masks of
    nnx.Dropout layers built in the same order from nnx.Rngs with the same seeds."""
    x = _x((4, 6), np.float32)
    rngs = nnx.Rngs(0, dropout=3)
    a, b = nnx.Dropout(0.3, rngs=rngs), nnx.Dropout(0.5, rngs=rngs)
    trngs = trn.Rngs(0, dropout=3)
    ta, tb = fnn.Dropout(0.3, rngs=trngs, mask_dtype=torch.float64), fnn.DropPath(0.5, rngs=trngs, mask_dtype=torch.float64)
    xt = torch.from_numpy(x)
    for _ in range(2):
        assert (_bits(ta(xt)) == _bits(a(jnp.asarray(x)))).all()
    # nnx has no DropPath: its twin is Dropout(broadcast_dims=(1,)) on b's forked stream (first call: count 0)
    ref_b = nn.Dropout(0.5, broadcast_dims=(1,)).apply({}, jnp.asarray(x), deterministic=False,
                                                        rng=jax.random.fold_in(b.rngs.key[...], 0))
    assert (_bits(tb(xt)) == _bits(ref_b)).all()
    assert trngs.params.tag == "default" and trngs().shape == (2,)  # fallback to 'default', as nnx
    with pytest.raises(InitError, match="`rngs` must be"):
        fnn.Dropout(0.1, rngs=3)


@pytest.mark.exhaustive
@pytest.mark.parametrize("dt", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_attention_dropout_dtypes(dt):
    """The attention-weight formula (keep.astype(dt) / dt(keep_prob), then a multiply) in 32/16-bit."""
    q, k = jnp.asarray(_x((2, 5, 3, 4), np.float32, 1), dt), jnp.asarray(_x((2, 6, 3, 4), np.float32, 2), dt)
    f = jax.jit(lambda q, k, r: (nn.dot_product_attention_weights(q, k, deterministic=True),
                                 nn.dot_product_attention_weights(q, k, dropout_rng=r, dropout_rate=0.3,
                                                                  deterministic=False)))
    w, ref = f(q, k, jax.random.key(11))
    got = trn.attention_dropout(torch.from_numpy(np.array(w, np.float32)).to(TORCH[dt]), 0.3, key=tr.key(11),
                                mask_dtype=torch.float64)
    assert (_bits(got) == _bits(ref)).all()


def test_bind_rngs_pairs_by_name_before_order():
    """Two dropouts of one rate and shape that the torch twin runs in the other order: the Flax
    calls of the same name ("a.drop" == "a/drop") pair with them, whatever the order; a call order
    alone would swap their masks silently."""
    shape = (3, 6)
    calls = [trn.RngCall("a/drop", "dropout", 1, "dropout", 0.5, shape, "float32"),
             trn.RngCall("b/drop", "dropout", 1, "dropout", 0.5, shape, "float32")]

    class Sub(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(0.5)

    class Reversed(torch.nn.Module):  # Flax runs a then b; this twin runs b then a
        def __init__(self):
            super().__init__()
            self.a, self.b = Sub(), Sub()

        def forward(self, x, y):
            return self.b.drop(y), self.a.drop(x)

    root = tr.key(4)
    model = Reversed()
    trn.bind_rngs(model, root, calls)
    x, y = torch.randn(shape), torch.randn(shape)
    out_b, out_a = model(x, y)
    assert torch.equal(out_a, trn.dropout(x, 0.5, key=trn.linen_key(root, "a/drop", 1)))
    assert torch.equal(out_b, trn.dropout(y, 0.5, key=trn.linen_key(root, "b/drop", 1)))
    assert not torch.equal(out_b, trn.dropout(y, 0.5, key=trn.linen_key(root, "a/drop", 1)))
