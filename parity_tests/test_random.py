"""torchinit.random vs the real jax.random: same key, same bits, same floats.

Golden comparisons against ``jax.random`` itself (never against a copy of our
formulas). Equality is bitwise (``array_equal`` on the values, every dtype).

The figures docs/same_seed.md states come from :func:`test_large_draws_match_the_documented_figures`:
``2**20 + 3`` draws per sampler x dtype for each of three keys (one jitted jax program per
dtype), with the exact ulp distance of :func:`parity_tests.device_report.compare`; the test
fails if a documented cell and the measured figure differ. The boundary uniforms (the unit
floats next to 0 and 1, where ``erf_inv`` takes its tail branches) are checked through the
samplers' transforms below.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax import lax

import jaxinit.random as jr
import torchinit.random as tr
from _jaxinit.errors import InitError
from parity_tests._figures import record_figure
from torchinit._src import random as tsrc

TDT = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}
JDT = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def _np(x):
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.uint32:
            return x.view(torch.int32).numpy().view(np.uint32)
        if x.dtype == torch.uint64:
            return x.view(torch.int64).numpy().view(np.uint64)
        if x.dtype == torch.uint16:
            return x.view(torch.int16).numpy().view(np.uint16)
        if x.dtype == torch.bfloat16:
            return x.float().numpy()
        return x.numpy()
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype.name == "bfloat16" else x


def _keys():
    """(name, torch key, jax key): seeds, split and fold_in subkeys."""
    out = []
    for seed in (0, 2**31 - 1):
        out.append((f"key({seed})", tr.key(seed), jax.random.key(seed)))
    out.append(("split(key(1))[1]", tr.split(tr.key(1))[1], jax.random.split(jax.random.key(1))[1]))
    out.append(("fold_in(key(3), 2**32-1)", tr.fold_in(tr.key(3), 2**32 - 1),
                jax.random.fold_in(jax.random.key(3), np.uint32(2**32 - 1))))
    return out


KEYS = _keys()
KEY_IDS = [k[0] for k in KEYS]
SHAPES = [(), (7, 13)]  # a scalar and a 2-D array: elements hash their flat index whatever the rank


# --------------------------------------------------------------------------- keys
@pytest.mark.parametrize("seed", [0, 1, 42, 2**31 - 1, 2**31, 2**32 - 1, -1, -(2**31)])
def test_key_matches_jax_32bit_seeding(seed):
    with jax.enable_x64(False):
        want = np.asarray(jax.random.key_data(jax.random.key(seed)))
    assert np.array_equal(_np(tr.key(seed)), want)
    assert np.array_equal(jr.key_to_numpy(jr.key(seed)), want)


@pytest.mark.parametrize("name,tk,jk", KEYS, ids=KEY_IDS)
def test_split_and_fold_in(name, tk, jk):
    for num in (2, 3, (2, 3)):
        assert np.array_equal(_np(tr.split(tk, num)), np.asarray(jax.random.key_data(jax.random.split(jk, num))))
    for data in (0, 1, 12345, 2**32 - 1):
        got = _np(tr.fold_in(tk, data))
        assert np.array_equal(got, np.asarray(jax.random.key_data(jax.random.fold_in(jk, np.uint32(data)))))


def test_key_conversion_round_trips():
    jk = jax.random.fold_in(jax.random.key(9), 77)
    raw = jax.random.PRNGKey(123)
    for obj in (jk, raw, np.asarray(raw), jax.random.key_data(jk)):
        t = tr.as_key(obj)
        assert t.dtype == torch.uint32 and t.shape == (2,)
        data = np.asarray(jax.random.key_data(obj)) if jnp.issubdtype(obj.dtype, jax.dtypes.prng_key) else np.asarray(obj)
        assert np.array_equal(tr.key_to_numpy(t), data)
        back = jax.random.wrap_key_data(tr.key_to_numpy(t))
        assert np.array_equal(np.asarray(jax.random.key_data(back)), data)
        assert np.array_equal(jr.key_to_numpy(jr.as_key(t)), data)
    assert tr.is_key(tr.key(0)) and tr.is_key(jk) and tr.is_key(raw)
    assert not tr.is_key(0) and not tr.is_key(torch.Generator())


@pytest.mark.parametrize("bad", [1.5, True, "0", None, 2**32, -(2**31) - 1])
def test_bad_seeds(bad):
    with pytest.raises(InitError, match="seed"):
        tr.key(bad)
    with pytest.raises(InitError, match="seed"):
        jr.key(bad)


@pytest.mark.parametrize("bad", [np.zeros(3, np.uint32), np.array([1.0, 2.0]), 5, np.array([-1, 0]),
                                 torch.zeros(2, dtype=torch.float32), jax.random.split(jax.random.key(0))])
def test_bad_key_objects(bad):
    with pytest.raises(InitError, match="as_key"):
        tr.as_key(bad)
    with pytest.raises(InitError, match="as_key"):
        jr.as_key(bad)


def test_bad_fold_in_data_and_dtypes():
    for pkg in (tr, jr):
        with pytest.raises(InitError, match="data"):
            pkg.fold_in(pkg.key(0), -1)
        with pytest.raises(InitError, match="data"):
            pkg.fold_in(pkg.key(0), 2**32)
    with pytest.raises(InitError, match="dtype"):
        tr.uniform(tr.key(0), (2,), torch.int32)
    with pytest.raises(InitError, match="mode"):
        tr.bernoulli(tr.key(0), 0.5, (2,), mode="mid")


# --------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("name,tk,jk", KEYS, ids=KEY_IDS)
@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_bits(name, tk, jk, width):
    tdt = {8: torch.uint8, 16: torch.uint16, 32: torch.uint32, 64: torch.uint64}[width]
    jdt = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}[width]
    for shape in SHAPES:
        assert np.array_equal(_np(tr.bits(tk, shape, tdt)), np.asarray(jax.random.bits(jk, shape, jdt)))


@pytest.mark.parametrize("name,tk,jk", KEYS, ids=KEY_IDS)
@pytest.mark.parametrize("dt", list(TDT))
def test_uniform(name, tk, jk, dt):
    for shape in SHAPES:
        for lo, hi in ((0.0, 1.0), (-0.37, 0.55)):
            got = _np(tr.uniform(tk, shape, TDT[dt], lo, hi))
            want = _np(jax.random.uniform(jk, shape, JDT[dt], lo, hi))
            assert np.array_equal(got, want), (shape, lo, hi)


@pytest.mark.parametrize("name,tk,jk", KEYS, ids=KEY_IDS)
@pytest.mark.parametrize("dt", list(TDT))
def test_normal_and_truncated_normal(name, tk, jk, dt):
    for shape in SHAPES:
        pairs = [(tr.normal(tk, shape, TDT[dt]), jax.random.normal(jk, shape, JDT[dt]))]
        for lo, hi in ((-2.0, 1.5), (0.3, 3.0)):
            pairs.append((tr.truncated_normal(tk, lo, hi, shape, TDT[dt]),
                          jax.random.truncated_normal(jk, lo, hi, shape, JDT[dt])))
        for got, want in pairs:
            assert np.array_equal(_np(got), _np(want)), shape


@pytest.mark.parametrize("name,tk,jk", KEYS, ids=KEY_IDS)
def test_bernoulli_and_permutation(name, tk, jk):
    for p in (0.0, 0.3, 0.5, 1.0):
        for mode in ("low", "high"):
            got = tr.bernoulli(tk, p, (7, 9), mode).numpy()
            assert np.array_equal(got, np.asarray(jax.random.bernoulli(jk, jnp.float32(p), (7, 9), mode)))
    p64 = torch.tensor([0.1, 0.7, 0.99], dtype=torch.float64)
    assert np.array_equal(tr.bernoulli(tk, p64).numpy(), np.asarray(jax.random.bernoulli(jk, p64.numpy())))
    for n in (0, 10, 2000):  # 2000 > 1625: two sorting rounds in JAX
        assert np.array_equal(tr.permutation(tk, n).numpy(), np.asarray(jax.random.permutation(jk, n)))
    x = np.arange(24.0).reshape(4, 6)
    for axis in (0, 1):
        for independent in (False, True):
            got = tr.permutation(tk, torch.from_numpy(x), axis, independent).numpy()
            assert np.array_equal(got, np.asarray(jax.random.permutation(jk, x, axis, independent)))


def test_large_draw_crosses_chunks(monkeypatch):
    """Several internal chunks and a partial last one (the chunk size made small: same code path)."""
    monkeypatch.setattr(tsrc, "_CHUNK", 1 << 12)
    tk, jk = tr.key(7), jax.random.key(7)
    shape = (3 * (1 << 12) + 3,)
    assert np.array_equal(_np(tr.uniform(tk, shape)), _np(jax.random.uniform(jk, shape, jnp.float32)))
    assert np.array_equal(_np(tr.normal(tk, shape)), _np(jax.random.normal(jk, shape, jnp.float32)))


def test_mirror_module_is_jax_random():
    k = jr.key(11)
    assert np.array_equal(np.asarray(jr.normal(k, (5,))), np.asarray(jax.random.normal(k, (5,), jnp.float32)))
    assert np.array_equal(_np(tr.normal(tr.as_key(k), (5,))), np.asarray(jr.normal(k, (5,))))
    # set_compile switches torch.compile for torchinit's port; jax.random is always compiled (no mirror)
    assert set(jr.__all__) == set(tr.__all__) - {"set_compile"}
    import inspect
    for name in jr.__all__:
        tp = list(inspect.signature(getattr(tr, name)).parameters)
        jp = list(inspect.signature(getattr(jr, name)).parameters)
        assert [p for p in tp if p != "device"] == jp, name


def test_bernoulli_float32_p_is_one_integer_compare_at_the_edges():
    """A float32 scalar ``p`` is drawn as ``(y0 ^ y1) < 512 * ceil(p * 2**23) - 2**31`` on the raw words
    (no floats): equal to jax's ``uniform < p`` where ``u == p`` exactly (False), one ulp on either
    side, at the smallest and largest p, and for p outside (0, 1) and NaN."""
    tk, jk = KEYS[-1][1], KEYS[-1][2]
    shape = (4099,)
    jb = jax.jit(lambda k, p: jax.random.bernoulli(k, p, shape))
    u = tr.uniform(tk, shape)
    hit = float(u[5])  # a value u takes: u == p must be False there
    ps = [hit, float(np.nextafter(np.float32(hit), np.float32(1))), float(np.nextafter(np.float32(hit), np.float32(0))),
          2.0**-23, 2.0**-24, 1e-30, float(np.nextafter(np.float32(1), np.float32(0))), 1.0, 1.5, 0.0, -0.25,
          float("nan"), float("inf"), float("-inf")]
    for p in ps:
        got = tr.bernoulli(tk, torch.tensor(p, dtype=torch.float32), shape).numpy()
        assert np.array_equal(got, np.asarray(jb(jk, jnp.float32(p)))), p
    assert not bool(tr.bernoulli(tk, hit, shape)[5]) and bool(tr.bernoulli(tk, ps[1], shape)[5])


# --------------------------------------------------------------------------- set_compile
def test_set_compile_is_checked_and_never_falls_back(monkeypatch):
    with pytest.raises(InitError, match="enabled"):
        tr.set_compile(1)

    def broken_compile(fn, **kw):  # a torch.compile whose first call fails (e.g. no C++ compiler)
        def run(*args):
            raise RuntimeError("no compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    monkeypatch.setattr(tsrc, "_COMPILED", {})
    tr.set_compile(True)
    try:
        with pytest.raises(InitError, match="set_compile\\(False\\)"):
            tr.uniform(tr.key(0), (8192,))
    finally:
        tr.set_compile(False)
    assert np.array_equal(_np(tr.uniform(tr.key(0), (8192,))),
                          np.asarray(jax.random.uniform(jax.random.key(0), (8192,), jnp.float32)))


@pytest.mark.exhaustive
def test_compiled_path_is_bitwise():
    """torch.compile'd hash and erf_inv (first call compiles: seconds; needs a C++ compiler)."""
    n = (1 << 14) + 1
    tr.set_compile(True)
    try:
        got = [_np(tr.uniform(tr.key(4), (n,))), _np(tr.normal(tr.key(4), (n,)))]
    finally:
        tr.set_compile(False)
    assert np.array_equal(got[0], np.asarray(jax.random.uniform(jax.random.key(4), (n,), jnp.float32)))
    assert np.array_equal(got[1], np.asarray(jax.random.normal(jax.random.key(4), (n,), jnp.float32)))


# --------------------------------------------------------------------------- float32 transforms, over mantissas
# Every float32 normal is sqrt(2) * erf_inv(u(f)) for one of the 2**23 values f of the
# mantissa trick, so checking the transform over all mantissas covers every possible
# output: that full sweep is marked `exhaustive` (deselected by default; run it with
# `pytest -m exhaustive`). The default run checks a sample that keeps every branch of the
# ports: all mantissas in the two tails (the first and last 2**15, where |u| -> 1 and
# erf_inv takes its second polynomial and XLA's log) and every 61st elsewhere (odd stride,
# so both parities of the low bits come up).
_TAIL = 1 << 15
_SAMPLE_STRIDE = 61


def _mantissas(exhaustive: bool) -> np.ndarray:
    if exhaustive:
        return np.arange(1 << 23, dtype=np.uint32)
    return np.unique(np.concatenate([np.arange(_TAIL), np.arange(_TAIL, (1 << 23) - _TAIL, _SAMPLE_STRIDE),
                                     np.arange((1 << 23) - _TAIL, 1 << 23)])).astype(np.uint32)


def _mantissa_floats(m: np.ndarray) -> np.ndarray:
    return (m | np.uint32(0x3F800000)).view(np.float32) - np.float32(1)


_LO = np.nextafter(np.float32(-1), np.float32(0))


@jax.jit
def _jax_normal_transform(f):  # jax.random._normal_real after the bits: uniform then sqrt(2) * erf_inv
    u = lax.max(_LO, f * (np.float32(1) - _LO) + _LO)
    return np.float32(np.sqrt(2)) * lax.erf_inv(u)


@jax.jit
def _jax_truncated_normal_transform(f, lower, upper):  # jax.random._truncated_normal after the bits
    s2 = np.float32(np.sqrt(2))
    a, b = lax.erf(lower / s2), lax.erf(upper / s2)
    u = lax.max(a, f * (b - a) + a)
    out = s2 * lax.erf_inv(u)
    return jnp.clip(out, lax.nextafter(lower, np.float32(np.inf)), lax.nextafter(upper, np.float32(-np.inf)))


def _torch_chunks(f: np.ndarray, fn) -> np.ndarray:
    ft = torch.from_numpy(f.copy())
    got = torch.empty_like(ft)
    for s in range(0, ft.numel(), 1 << 20):
        got[s:s + (1 << 20)] = fn(ft[s:s + (1 << 20)])
    return got.numpy()


def _check_normal_transform(m):
    f = _mantissa_floats(m)
    lo_t, hi_t = torch.tensor(_LO), torch.tensor(np.float32(1))
    s2 = torch.tensor(np.float32(np.sqrt(2)))
    got = _torch_chunks(f, lambda c: s2 * tsrc._erfinv(tsrc._uniform_from_unit(c, lo_t, hi_t)))
    assert np.array_equal(got, np.asarray(_jax_normal_transform(f)))


def _check_truncated_normal_transform(m):
    f = _mantissa_floats(m)
    lower, upper = np.float32(-1.7), np.float32(2.3)
    s2 = torch.tensor(np.float32(np.sqrt(2)))
    inv = torch.tensor(np.float32(1 / np.sqrt(2)))
    a = tsrc._erf(torch.tensor([lower]) * inv)[0]
    b = tsrc._erf(torch.tensor([upper]) * inv)[0]
    lo_c = torch.nextafter(torch.tensor(lower), torch.tensor(np.float32(np.inf)))
    hi_c = torch.nextafter(torch.tensor(upper), torch.tensor(np.float32(-np.inf)))
    got = _torch_chunks(f, lambda c: torch.clamp(s2 * tsrc._erfinv(tsrc._uniform_from_unit(c, a, b)), lo_c, hi_c))
    assert np.array_equal(got, np.asarray(_jax_truncated_normal_transform(f, lower, upper)))


def test_normal_transform_over_sampled_mantissas():
    _check_normal_transform(_mantissas(exhaustive=False))


def test_truncated_normal_transform_over_sampled_mantissas():
    _check_truncated_normal_transform(_mantissas(exhaustive=False))
    # and the same draw through the public API equals jax.random for one key
    assert np.array_equal(_np(tr.truncated_normal(tr.key(5), -1.7, 2.3, (4099,))),
                          np.asarray(jax.random.truncated_normal(jax.random.key(5), -1.7, 2.3, (4099,), jnp.float32)))


@pytest.mark.exhaustive
def test_normal_transform_over_all_mantissas():
    _check_normal_transform(_mantissas(exhaustive=True))


@pytest.mark.exhaustive
def test_truncated_normal_transform_over_all_mantissas():
    _check_truncated_normal_transform(_mantissas(exhaustive=True))


# --------------------------------------------------------------------------- figures on 2**20 + 3 draws x 3 keys
# What docs/same_seed.md states for each sampler x dtype is measured here, on samples large
# enough to meet the tails (every |u| up to 1 - 2**-20 comes up), for three keys: a seed, a
# split subkey and fold_in with the largest 32-bit data. One jitted jax program per dtype draws
# everything, with the keys, bounds and p as arguments, as in jax.random's own jitted samplers
# (constant bounds would let XLA fold them and change 16-bit uniforms); the cell is "bitwise"
# or the exact max ulp distance (device_report.compare).
LARGE_N = (1 << 20) + 3
LARGE_KEYS = [k for k in KEYS if k[0] in ("key(0)", "split(key(1))[1]", "fold_in(key(3), 2**32-1)")]
FIGURES_DOC = "docs/same_seed.md"
_FIG_START, _FIG_END = "<!-- same-seed figures: start -->", "<!-- same-seed figures: end -->"
# sampler: (torch draw, jax draw given the traced parameters a); the documented rows name them
LARGE_PARAMS = {"uniform": (-0.37, 0.55), "normal": (), "truncated_normal": (-2.0, 1.5), "bernoulli": (0.3,)}
LARGE_SAMPLERS = {
    "uniform": (lambda k, dt: tr.uniform(k, (LARGE_N,), TDT[dt], -0.37, 0.55),
                lambda k, dt, a: jax.random.uniform(k, (LARGE_N,), JDT[dt], *a)),
    "normal": (lambda k, dt: tr.normal(k, (LARGE_N,), TDT[dt]),
               lambda k, dt, a: jax.random.normal(k, (LARGE_N,), JDT[dt])),
    "truncated_normal": (lambda k, dt: tr.truncated_normal(k, -2.0, 1.5, (LARGE_N,), TDT[dt]),
                         lambda k, dt, a: jax.random.truncated_normal(k, *a, (LARGE_N,), JDT[dt])),
    "bernoulli": (lambda k, dt: tr.bernoulli(k, torch.tensor(0.3, dtype=TDT[dt]), (LARGE_N,)),
                  lambda k, dt, a: jax.random.bernoulli(k, a[0], (LARGE_N,))),
}


def documented_figures(path: str = FIGURES_DOC) -> dict[tuple[str, str], str]:
    """The same-seed table of docs/same_seed.md: {(sampler, dtype): cell}."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = open(os.path.join(root, path), encoding="utf-8").read()
    assert _FIG_START in text and _FIG_END in text, f"{path} lost its same-seed figures table markers"
    rows = [r.strip() for r in text.split(_FIG_START)[1].split(_FIG_END)[0].strip().splitlines()]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    out = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        sampler = cells[0].split("`")[1].split("(")[0]
        for dt, cell in zip(header[1:], cells[1:]):
            out[(sampler, dt)] = cell
    return out


def _figure(cells: list[dict]) -> str:
    from parity_tests.device_report import _worst

    w = _worst(cells)
    if w["bitwise"]:
        return "bitwise"
    return f"{w['max_ulp']} ulp" if w.get("max_ulp") is not None else f"{100 * w['mismatch']:.2g}% differ"


@pytest.mark.parametrize("dt", list(TDT))
def test_large_draws_match_the_documented_figures(dt):
    from parity_tests.device_report import compare

    documented = documented_figures()
    params = {name: [jnp.asarray(v, JDT[dt]) for v in a] for name, a in LARGE_PARAMS.items()}
    draws = jax.jit(lambda ks, params: {name: [jfn(k, dt, params[name]) for k in ks]
                                        for name, (_, jfn) in LARGE_SAMPLERS.items()})([k[2] for k in LARGE_KEYS], params)
    for name, (tfn, _) in LARGE_SAMPLERS.items():
        cells = [compare(tfn(tk, dt), np.asarray(want), floating=name != "bernoulli")
                 for (_, tk, _), want in zip(LARGE_KEYS, draws[name])]
        measured = _figure(cells)
        record_figure(f"same seed {name}", f"{dt} (2**20+3 draws x 3 keys)", 0.0 if measured == "bitwise" else 1.0,
                      measured)
        assert measured == documented[(name, dt)], (name, dt, measured, documented[(name, dt)])


def test_documented_figures_table_is_complete():
    """Every sampler x dtype measured above has its documented cell, and nothing else is documented;
    the README's and docs/index.md's one-line summary says bitwise only while every cell does."""
    import os

    figures = documented_figures()
    assert set(figures) == {(s, d) for s in LARGE_SAMPLERS for d in TDT}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for page in ("README.md", "docs/index.md"):
        row = [line for line in open(os.path.join(root, page), encoding="utf-8").read().splitlines()
               if line.startswith("| Same seed, same tensor in both frameworks")]
        assert len(row) == 1, page
        claims_bitwise = "bitwise against `jax.random` in float32/bf16/fp16/float64" in row[0]
        assert claims_bitwise == all(v == "bitwise" for v in figures.values()), (page, row[0])
        assert "2^20+3 draws x 3 keys" in row[0] and LARGE_N == (1 << 20) + 3 and len(LARGE_KEYS) == 3, page


# --------------------------------------------------------------------------- float64 transforms at the boundary uniforms
# Every float64 normal is sqrt(2) * erf_inv(u(f)) for one of the 2**52 unit floats f; the ones
# next to 0 and 1 give |u| -> 1, erf_inv's two tail polynomials and glibc's log of tiny
# arguments. The first and last 2**16 of them, and every 2**36-th between, go through the
# transforms jax.random applies after the bits (jitted as jax.random jits them).
_LO64 = np.nextafter(np.float64(-1), np.float64(0))


def _unit_floats64() -> np.ndarray:
    k = np.concatenate([np.arange(1 << 16, dtype=np.uint64),
                        np.arange(1 << 16, (1 << 52) - (1 << 16), 1 << 36, dtype=np.uint64),
                        np.arange((1 << 52) - (1 << 16), 1 << 52, dtype=np.uint64)])
    return (k | np.uint64(0x3FF0000000000000)).view(np.float64) - 1.0


@jax.jit
def _jax_normal_transform64(f):
    u = lax.max(_LO64, f * (np.float64(1) - _LO64) + _LO64)
    return np.float64(np.sqrt(2)) * lax.erf_inv(u)


@jax.jit
def _jax_truncated_normal_transform64(f, lower, upper):
    s2 = np.float64(np.sqrt(2))
    a, b = lax.erf(lower / s2), lax.erf(upper / s2)
    u = lax.max(a, f * (b - a) + a)
    out = s2 * lax.erf_inv(u)
    return jnp.clip(out, lax.nextafter(lower, np.float64(np.inf)), lax.nextafter(upper, np.float64(-np.inf)))


def test_float64_transforms_at_the_boundary_uniforms():
    f = _unit_floats64()
    ft = torch.from_numpy(f)
    lo_t, hi_t = torch.tensor(_LO64), torch.tensor(1.0, dtype=torch.float64)
    s2 = torch.tensor(np.sqrt(2), dtype=torch.float64)
    got = (s2 * tsrc._erfinv(tsrc._uniform_from_unit(ft, lo_t, hi_t))).numpy()
    assert np.array_equal(got, np.asarray(_jax_normal_transform64(f)))
    # finite up to the last unit float on both sides; |x| > 8 means w > 16: all three polynomials ran
    assert np.isfinite(got).all() and got.min() < -8 and got.max() > 8
    for lower, upper in ((-2.0, 1.5), (-9.0, 9.0)):
        lower, upper = np.float64(lower), np.float64(upper)
        a, b = tsrc._erf(torch.tensor([lower * (1 / np.sqrt(2))]))[0], tsrc._erf(torch.tensor([upper * (1 / np.sqrt(2))]))[0]
        u = tsrc._uniform_from_unit(ft, a, b)
        out = torch.clamp(s2 * tsrc._erfinv(u), torch.nextafter(torch.tensor(lower), torch.tensor(np.inf)),
                          torch.nextafter(torch.tensor(upper), torch.tensor(-np.inf))).numpy()
        assert np.array_equal(out, np.asarray(_jax_truncated_normal_transform64(f, lower, upper))), (lower, upper)


# --------------------------------------------------------------------------- the host-dependent paths
def test_emulated_fma_path_is_bitwise(monkeypatch):
    """Where torch.addcmul is not a fused multiply-add (ATen's default, non-AVX2 kernels), the exact
    emulations run instead (fma32: float64 round-to-odd; fma64: Dekker, Knuth, round-to-odd):
    the same bits, float32 and float64, including the tails and glibc's log near 1."""
    from torchinit._src import xla_math, xla_math64

    monkeypatch.setattr(xla_math, "_NATIVE", {("cpu", torch.float32): False, ("cpu", torch.float64): False})
    tk, jk = KEYS[-1][1], KEYS[-1][2]
    for dt in ("float32", "float64"):  # the shapes and bounds test_normal_and_truncated_normal compiles
        assert np.array_equal(_np(tr.normal(tk, (7, 13), TDT[dt])), np.asarray(jax.random.normal(jk, (7, 13), JDT[dt])))
        assert np.array_equal(_np(tr.truncated_normal(tk, -2.0, 1.5, (7, 13), TDT[dt])),
                              np.asarray(jax.random.truncated_normal(jk, -2.0, 1.5, (7, 13), JDT[dt])))
    # every 97th boundary uniform (the branches of the float64 erf_inv and log1p), against the
    # jax transform compiled for the whole set (test_float64_transforms_at_the_boundary_uniforms)
    f = _unit_floats64()
    pick = np.r_[0:f.size:97, f.size - 1]
    s2 = torch.tensor(np.sqrt(2), dtype=torch.float64)
    lo_t, hi_t = torch.tensor(_LO64), torch.tensor(1.0, dtype=torch.float64)
    got = (s2 * tsrc._erfinv(tsrc._uniform_from_unit(torch.from_numpy(f[pick]), lo_t, hi_t))).numpy()
    assert np.array_equal(got, np.asarray(_jax_normal_transform64(f))[pick])
    x = np.linspace(0.9, 1.1, 2001)  # glibc's near-1 branch of log, and the table path around it
    assert np.array_equal(xla_math64.log_f64(torch.from_numpy(x)).numpy(), np.asarray(jax.jit(jnp.log)(x)))


def test_native_fma_probe_and_float16_host_detection():
    from torchinit._src import xla_math

    # the probe's verdict is what addcmul does on a case where one and two roundings differ
    a = torch.tensor([1 + 2.0**-30], dtype=torch.float64)
    fused = bool(torch.addcmul(torch.tensor(-1.0, dtype=torch.float64), a, a)[0] == 2.0**-29 + 2.0**-60)
    assert xla_math.native_fma("cpu", torch.float64) == fused
    assert not xla_math.native_fma("cpu", torch.bfloat16)
    flags = "flags\t\t: fpu sse2 avx2 avx512f avx512_fp16 avx512_bf16\n"
    assert tsrc._host_has_native_f16("", flags)
    assert not tsrc._host_has_native_f16("", flags.replace(" avx512_fp16", ""))
    assert not tsrc._host_has_native_f16("--xla_cpu_max_isa=AVX2", flags)
    assert tsrc._host_has_native_f16("--xla_cpu_max_isa=AVX512", flags)
