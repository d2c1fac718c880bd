"""The device report (``python -m parity_tests.device_report``) runs end to end in its --quick form.

It is the command a lent GPU runs (docs/gpu.md); run here on whatever device the suite has, so
it cannot rot. Beyond "every section ran", the report's own measurements must agree with what
the parity suite proves on CPU: if the report mis-measured (a wrong comparison, a layout slip),
these checks fail.
"""
from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from parity_tests import device_report


def test_quick_report_runs_every_section(tmp_path):
    assert device_report.main(["--out", str(tmp_path), "--quick"]) == 0
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
    assert any(b.startswith("LeNet+BN training, batch") for b in speed)
    assert any(b.startswith("BatchNorm train step") for b in speed)
    assert any(b.startswith("keyed normal") for b in speed)
    assert any(b.startswith("optimizer step") for b in speed)


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
