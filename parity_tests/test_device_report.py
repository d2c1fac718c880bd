"""The device report (``python -m parity_tests.device_report``) runs end to end in its --quick form.

It is the command a lent GPU runs (docs/gpu.md); run here on whatever device the suite has, so
it cannot rot. Beyond "every section ran", the report's own measurements must agree with what
the parity suite proves on CPU: if the report mis-measured (a wrong comparison, a layout slip),
these checks fail.
"""
from __future__ import annotations

import ast
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from parity_tests import _device_precision, device_report
from parity_tests import _device_syncbn as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_report_runs_every_section(tmp_path):
    # the LeNet speed row (7 s of XLA compilation in --quick) is test_quick_report_lenet_speed_row's
    assert device_report.main(["--out", str(tmp_path), "--quick", "--only-speed", "batchnorm", "random", "optim"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    md = (tmp_path / "report.md").read_text()
    sections = report["sections"]
    assert list(sections) == list(device_report.SECTIONS)
    assert all(s["status"] == "ok" and s["rows"] for s in sections.values()), \
        {n: s.get("error") for n, s in sections.items()}
    for title in device_report.TITLES.values():
        assert f"## {title}" in md

    # torchinit.random on the CPU is bitwise jax.random (test_random.py), float64 included, so
    # must the report say: its ulp column agrees (0 ulp, nothing differs)
    assert {r["dtype"] for r in sections["same_seed"]["rows"]} >= {"float32", "float64"}
    for row in sections["same_seed"]["rows"]:
        cpu = row["torchinit cpu"]
        assert cpu["bitwise"] and cpu["mismatch"] == 0.0 and cpu.get("max_ulp") in (None, 0), row
    for row in sections["initializers"]["rows"]:
        assert row["torchinit cpu"]["bitwise"], row
    # float64 parity (test_batchnorm.py, test_optim.py, test_twins.py bounds)
    for row in sections["batchnorm"]["rows"]:
        assert row["dtype"] == "float64" and row["num_batches_tracked equal"]
        assert max(row["train y/dx/dscale/dbias"], row["running mean/var"], row["eval output"]) <= 1e-12, row
    for row in sections["optim"]["rows"]:
        assert max(row["model gradients"], row["injected gradients"]) <= 1e-12, row
    for row in sections["twins"]["rows"]:
        assert max(v for k, v in row.items() if k not in ("model", "dtype") and v is not None) <= 1e-10, row
    speed = {r["benchmark"] for r in sections["speed"]["rows"]}
    assert any(b.startswith("BatchNorm train step") for b in speed)
    assert any(b.startswith("keyed normal") for b in speed)
    assert any(b.startswith("optimizer step") for b in speed)
    _check_syncbn_rows(sections["syncbn"]["rows"], launched=False)
    _check_precision_rows(sections["precision"]["rows"])


@pytest.mark.exhaustive
def test_quick_report_lenet_speed_row(tmp_path):
    """The speed section's LeNet rows (examples/lenet_bn.py's training loops through
    benchmarks/bench_lenet.py), both frameworks, in --quick sizes."""
    report = device_report.run(str(tmp_path), quick=True, only=["speed"], only_speed=["lenet"])
    speed = report["sections"]["speed"]
    assert speed["status"] == "ok", speed.get("error")
    rows = {r["benchmark"]: r for r in speed["rows"]}
    assert any(b.startswith("LeNet+BN training, batch") and r["ratio"] for b, r in rows.items()), rows


def _check_syncbn_rows(rows, launched: bool) -> None:
    """jaxinit.BatchNorm(axis_name) under vmap equals torch.nn.BatchNorm2d on the concatenated batch
    at float64 rounding (what SyncBatchNorm computes by the maths; test_data_parallel.py's bound),
    and every comparison this machine cannot make is a row that says why."""
    by = {(r["ours"].split(",")[0] + (" gloo" if "gloo" in r["ours"] else ""), r["reference"].split(",")[0]): r
          for r in rows}
    concat = [r for r in rows if "concatenated" in r["reference"]]
    assert concat and all(r["dtype"] == "float64" for r in concat)
    for r in concat:
        assert r["num_batches_tracked equal"], r
        assert max(r[c]["rel"] for c in S.GROUPS) <= 1e-12, r
        assert all(r[c]["max_ulp"] is not None for c in S.GROUPS), r
    if not torch.cuda.is_available():
        emulated = [r for r in rows if "emulated" in r["ours"] + r["reference"]]
        assert emulated and all("CUDA" in r["y"]["skipped"] for r in emulated), emulated
        nccl = [r for r in rows if "NCCL" in r["reference"]]
        assert nccl and all(r["y"].get("skipped") for r in nccl), nccl
    gloo = by[("torchinit.BatchNorm(process_group='world') gloo", "jaxinit.BatchNorm(axis_name=...)")]
    if launched:
        assert gloo["dtype"] == "float64" and max(gloo[c]["rel"] for c in S.GROUPS) <= 1e-12, gloo
        assert gloo["num_batches_tracked equal"], gloo
    else:
        assert "starts no rank processes" in gloo["y"]["skipped"], gloo


def _check_precision_rows(rows) -> None:
    """The float32 row agrees at float32 rounding; on CPU the bf16 autocast row (the policy) is
    bitwise torch's for the MLP (test_amp.py's per-op claim) while each framework's own bf16 gap
    is ~1e-3, and the TF32 / float16 rows say they are CUDA-only."""
    f32 = [r for r in rows if r["setting"].startswith("float32")]
    assert f32 and all(r["torch vs JAX"] <= 1e-5 and r["torch vs its float32"] == 0 for r in f32), f32
    if torch.cuda.is_available():
        return
    bf16 = next(r for r in rows if r["twin"] == "mlp" and r["setting"].startswith("autocast bfloat16"))
    assert bf16["torch vs JAX, bits"]["bitwise"], bf16
    assert min(bf16["torch vs its float32"], bf16["JAX vs its float32"]) > 1e-4, bf16
    skipped = [r for r in rows if "skipped" in r["JAX computes"]]
    assert {r["setting"] for r in skipped} == {name for name, _, devs in _device_precision.SETTINGS
                                              if "cpu" not in devs} | {"autocast float16 (cpu), float32 otherwise"}
    assert all("CUDA only" in r["JAX computes"] and "torch vs JAX" not in r for r in skipped)


_LAYOUTS = {  # dtype: (bits, mantissa bits, numpy unsigned view, torch dtype)
    "float64": (64, 52, np.uint64, torch.float64), "float32": (32, 23, np.uint32, torch.float32),
    "float16": (16, 10, np.uint16, torch.float16), "bfloat16": (16, 7, np.uint16, torch.bfloat16),
}


def _pattern(dtype: str, bits: list[int]):
    """A torch tensor of ``dtype`` holding the given unsigned bit patterns (constructed, not computed)."""
    nbits, _, npu, tdt = _LAYOUTS[dtype]
    signed = [b - (1 << nbits) if b >= 1 << (nbits - 1) else b for b in bits]
    ity = {64: torch.int64, 32: torch.int32, 16: torch.int16}[nbits]
    return torch.tensor(signed, dtype=ity).view(tdt)


@pytest.mark.parametrize("dtype", list(_LAYOUTS))
def test_ulp_distance_is_exact_on_constructed_pairs(dtype):
    """Pairs whose distance is known by construction, for every float width: 1 ulp, 2**40 ulp
    (float64; the largest gap the width allows elsewhere), across zero, +-0, inf, NaN payloads."""
    nbits, nmant, _, _ = _LAYOUTS[dtype]
    sign = 1 << (nbits - 1)
    one = ((1 << (nbits - 2 - nmant)) - 1) << nmant  # the pattern of 1.0: exponent bias, mantissa 0
    inf = ((1 << (nbits - 1 - nmant)) - 1) << nmant
    big = 2**40 if nbits == 64 else 1 << (nbits - 2)  # 1.0 to 2**40 ulp above it; narrower widths: to inf
    cases = [  # (a bits, b bits, ulp distance or None for NaN vs number, same value with other bits)
        (one, one + 1, 1, False),  # 1.0 and its successor
        (one + 1, one, 1, False),
        (sign | one, sign | (one + 1), 1, False),  # -1.0 and its predecessor
        (one, one + big, big, False),
        (sign | 1, 1, 2, False),  # the smallest subnormals either side of zero
        (sign | one, one, 2 * one, False),  # -1.0 to 1.0 across zero
        (sign | (inf - 1), inf - 1, 2 * (inf - 1), False),  # -max to +max: 2**64 - 2**53 - 2 ulp in float64
        (sign | inf, inf, 2 * inf, False),  # -inf to +inf
        (inf - 1, inf, 1, False),  # the largest finite value and inf
        (0, sign, 0, True),  # +0 and -0: one point of the line, different bits
        (inf + 1, inf + 2, 0, True),  # two NaNs, different payloads
        (inf + 1, sign | (inf + 3), 0, True),  # and a negative NaN
        (inf + 1, one, None, False),  # NaN vs 1.0: no ulp distance
    ]
    for a_bits, b_bits, want_ulp, same_value in cases:
        a, b = _pattern(dtype, [a_bits]), _pattern(dtype, [b_bits])
        c = device_report.compare(a, b, floating=True)
        assert not c["bitwise"] and c["mismatch"] == 1.0, (hex(a_bits), hex(b_bits))
        assert isinstance(c["max_ulp"], int)
        if want_ulp is None:
            assert (c["nan_mismatch"], c["ulp_mismatch"], c["max_ulp"]) == (1.0, 0.0, 0), hex(a_bits)
        else:
            assert c["max_ulp"] == want_ulp, (hex(a_bits), hex(b_bits), c["max_ulp"], want_ulp)
            assert c["ulp_mismatch"] == (0.0 if same_value else 1.0) and c["nan_mismatch"] == 0.0
            assert c["same_value_mismatch"] == (1.0 if same_value else 0.0)
        # the same pair as a torch tensor against a numpy array (what the report compares)
        b_np = b.view(torch.int16).numpy().view(np.uint16).view(jnp.bfloat16) if dtype == "bfloat16" else b.numpy()
        assert device_report.compare(a, b_np, floating=True) == c
    if dtype == "float64":  # -max to +max needs all 64 bits; a float64 count would have rounded it
        assert 2 * (inf - 1) == 2**64 - 2**53 - 2 and float(2**64 - 2**53 - 2) != 2**64 - 2**53 - 2


def test_ulp_columns_agree():
    """'share differ' and 'max ulp' cannot contradict each other: a cell with differing values
    has a nonzero ulp, and bits that differ at the same value are said to be such."""
    a = torch.tensor([1.0, -2.0, 0.0, 5.0], dtype=torch.float32)
    b = np.array([np.nextafter(np.float32(1), np.float32(2)), -2.0, -0.0, 5.0], np.float32)
    c = device_report.compare(a, b, floating=True)
    assert not c["bitwise"] and c["max_ulp"] == 1 and c["mismatch"] == 0.5
    assert (c["ulp_mismatch"], c["same_value_mismatch"], c["nan_mismatch"]) == (0.25, 0.25, 0.0)
    assert device_report._cell(c) == "1 ulp (25% differ); same values, other bits (+-0 or NaN payloads: 25%)"
    same = device_report.compare(a, a.numpy(), floating=True)
    assert same["bitwise"] and same["max_ulp"] == 0 and device_report._cell(same) == "bitwise"
    # one differing float64 value in 2**20 + 3: a share that must not print as 0%
    x = np.zeros((1 << 20) + 3)
    y = x.copy()
    y[7] = np.nextafter(0.0, 1.0) * 2**52 * 2**10  # far from 0 in ulp, tiny in value
    c = device_report.compare(torch.from_numpy(x), y, floating=True)
    assert c["max_ulp"] == int(y[7:8].view(np.uint64)[0]) and device_report._cell(c).endswith("(<0.01% differ)")
    w = device_report._worst([c, same])
    assert w["max_ulp"] == c["max_ulp"] and w["ulp_mismatch"] == c["ulp_mismatch"] and not w["bitwise"]


# ---------------------------------------------------------------- syncbn: the code paths on CPU


def _cpu_standin_kernels():
    """CPU stand-ins for torch's five SyncBN CUDA kernels, written from their CUDA definitions
    (aten/src/ATen/native/cuda/Normalization.cuh): torch has no CPU kernel for them, so these only
    let the emulation's own code run here (per-rank chunks, the empty rank, the gather and
    all_reduce order, the kernels' argument order). The parity claim is the device report's, on
    CUDA, with torch's kernels."""
    dims = [0, 2, 3]
    v = lambda t: t.reshape(1, -1, 1, 1)  # noqa: E731

    def stats(x, eps):
        var, mean = torch.var_mean(x, dims, correction=0)
        return mean, 1.0 / torch.sqrt(var + eps)

    def gather_stats(x, mean_all, invstd_all, running_mean, running_var, momentum, eps, counts):
        n = counts.sum()
        mean = (mean_all * counts[:, None]).sum(0) / n
        var_n = (((1.0 / invstd_all) ** 2 - eps + (mean_all - mean) ** 2) * counts[:, None]).sum(0)
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var_n / (n - 1))
        return mean, 1.0 / torch.sqrt(var_n / n + eps)

    def elemt(x, weight, bias, mean, invstd, eps):
        return (x - v(mean)) * v(invstd * weight) + v(bias)

    def backward_reduce(g, x, mean, invstd, weight, *needs):
        sum_dy, sum_dy_xmu = g.sum(dims), (g * (x - v(mean))).sum(dims)
        return sum_dy, sum_dy_xmu, sum_dy_xmu * invstd, sum_dy

    def backward_elemt(g, x, mean, invstd, weight, sum_dy, sum_dy_xmu, count):
        n = count.sum().to(x.dtype)
        return (g - v(sum_dy / n) - (x - v(mean)) * v(invstd * invstd * sum_dy_xmu / n)) * v(invstd * weight)

    return dict(zip(S.KERNELS, (stats, gather_stats, elemt, backward_reduce, backward_elemt)))


def test_syncbn_emulation_code_path_on_cpu():
    """The one-process emulation of torch's SyncBatchNorm (4 ranks, unequal batches and an empty
    rank, 2 steps) runs end to end with CPU stand-in kernels and agrees with jaxinit.BatchNorm
    (axis_name) and with torch.nn.BatchNorm2d on the concatenated batch at float64 rounding
    (1e-12, test_data_parallel.py's bound): what the device report runs on CUDA with torch's
    kernels cannot crash there on a slip in its plumbing."""
    data = S.make_data((4, 0, 2, 3), 2)
    emulated = S.emulate_torch_syncbn(data, torch.float64, "cpu", kernels=_cpu_standin_kernels())
    assert [len(r["y"][0]) for r in emulated] == [4, 0, 2, 3]
    assert all(r["num_batches_tracked"] == 2 for r in emulated)
    for other in (S.jax_syncbn(data, "float64"), None):
        got, want = (emulated, other) if other is not None else (S.gather(emulated),
                                                                  S.concat_reference(data, torch.float64, "cpu"))
        row = S.compare_records(got, want)
        assert row["num_batches_tracked equal"] and max(row[c]["rel"] for c in S.GROUPS) <= 1e-12, row
    # the empty rank: no output rows, zero gradients (torch leaves them None)
    assert emulated[1]["dx"][0].shape == (0, S.C, S.H, S.W) and not emulated[1]["dweight"][0].any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch's SyncBN kernels run on CUDA only")
def test_syncbn_emulation_with_torch_kernels_on_cuda():
    """On a CUDA machine: torch's own kernels, emulated ranks, against jaxinit at float64 rounding."""
    data = S.make_data((5, 1, 3, 0), 2)
    row = S.compare_records(S.jax_syncbn(data, "float64"), S.emulate_torch_syncbn(data, torch.float64, "cuda"))
    assert row["num_batches_tracked equal"] and max(row[c]["rel"] for c in S.GROUPS) <= 1e-12, row


def test_syncbn_kernels_probe_names_the_missing_kernel():
    if torch.cuda.is_available():
        assert S.kernels_missing("cuda") is None
    why = S.kernels_missing("cpu")
    assert why is None or ("batch_norm_stats" in why and "cpu" in why)


def test_syncbn_bad_input_errors():
    data = S.make_data((2, 1), 1)
    for call, match in (
            (lambda: S.cases_for(1), r"world must be 2, 3 or 4 ranks"),
            (lambda: S.cases_for(5), r"world must be 2, 3 or 4 ranks"),
            (lambda: S.make_data((6, 1), 1), rf"batch sizes must be in \[0, {S.BMAX}\]"),
            (lambda: S.make_data((0, 0), 1), r"at least one rank needs rows"),
            (lambda: S.launch(2, "mpi", "cpu", ("torchinit",), {"c": data}, ("float64",), 1), r"backend must be"),
            (lambda: S.launch(2, "nccl", "cpu", ("torchinit",), {"c": data}, ("float64",), 1), r"'cuda' for nccl"),
            (lambda: S.launch(2, "gloo", "cpu", ("flax",), {"c": data}, ("float64",), 1), r"impls must be among"),
            (lambda: S.launch(3, "gloo", "cpu", ("torchinit",), {"c": data}, ("float64",), 1),
             r"case 'c' has 2 ranks' batches for world=3"),
            (lambda: S.emulate_torch_syncbn(data, torch.float64, "cpu", kernels={"batch_norm_stats": None}),
             r"kernels must name exactly"),
            (lambda: S.compare_records([{}], [{}, {}]), r"1 ranks vs 2"),
            (lambda: _device_precision.setup("resnet", "cpu"), r"twin must be one of")):
        with pytest.raises(ValueError, match=match):
            call()


def test_syncbn_launch_that_overruns_is_stopped(tmp_path):
    """Ranks past the time limit are killed and the error says which (no hang, no orphan)."""
    with pytest.raises(TimeoutError, match=r"the 2 gloo ranks did not finish within 0 s"):
        S.launch(2, "gloo", "cpu", ("torchinit",), {"c": S.make_data((2, 1), 1)}, ("float64",), 1, timeout=0.0)


@pytest.mark.multiprocess
def test_syncbn_section_with_gloo_ranks(tmp_path):
    """The syncbn section with its rank processes (4 gloo CPU ranks of torchinit.BatchNorm
    (process_group='world')): equal to jaxinit.BatchNorm(axis_name) at float64 rounding; and a
    reference that refuses the device (torch.nn.SyncBatchNorm on CPU ranks) is a row with torch's
    error, not a crashed section."""
    report = device_report.run(str(tmp_path), quick=True, only=["syncbn"], launch_ranks=True)
    sec = report["sections"]["syncbn"]
    assert sec["status"] == "ok", sec.get("error")
    _check_syncbn_rows(sec["rows"], launched=True)
    got = S.launch(2, "gloo", "cpu", S.IMPLS, {"c": S.make_data((3, 1), 1)}, ("float64",), 1)
    assert "GPU" in got["torch.nn.SyncBatchNorm"][("c", "float64")]["error"]
    assert len(got["torchinit"][("c", "float64")]) == 2


# ---------------------------------------------------------------- benchmarks as a package


def _sys_path_uses(path: str) -> list[int]:
    """Lines of ``path`` that touch ``sys.path`` outside an ``if not __package__:`` block (a script run)."""
    tree = ast.parse(open(path).read())
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "not __package__":
            guarded |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if hasattr(n, "lineno")}
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "path"
            and isinstance(n.value, ast.Name) and n.value.id == "sys" and n.lineno not in guarded]


def test_benchmarks_import_as_a_package_without_sys_path_edits():
    """The device report imports the benchmarks as ``benchmarks.bench_x`` (issue 24): neither it nor
    a benchmark module changes ``sys.path`` when imported; a benchmark run as a script
    (``python benchmarks/bench_x.py``) puts the repository root first only then."""
    bench = os.path.join(ROOT, "benchmarks")
    files = [os.path.join(bench, f) for f in sorted(os.listdir(bench)) if f.endswith(".py")]
    assert os.path.join(bench, "__init__.py") in files
    offenders = {f: lines for f in [*files, device_report.__file__] if (lines := _sys_path_uses(f))}
    assert not offenders, offenders
    import sys

    before = list(sys.path)
    from benchmarks import bench_batchnorm, bench_init, bench_lenet  # noqa: F401  (what the report imports)

    assert sys.path == before
