"""The device report (``python -m parity_tests.device_report``) runs end to end in its --quick form.

It is the command a lent GPU runs (docs/gpu.md); run here on whatever device the suite has, so
it cannot rot. Beyond "every section ran", the report's own measurements must agree with what
the parity suite proves on CPU: if the report mis-measured (a wrong comparison, a layout slip),
these checks fail.
"""
from __future__ import annotations

import json

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

    # torchinit.random on the CPU is bitwise jax.random (test_random.py), so must the report say
    for row in sections["same_seed"]["rows"]:
        assert row["torchinit cpu"]["bitwise"], row
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


def test_ulp_comparison():
    import numpy as np
    import torch

    a = torch.tensor([1.0, -2.0, 0.0], dtype=torch.float32)
    b = np.array([np.nextafter(np.float32(1), np.float32(2)), -2.0, -0.0], np.float32)
    c = device_report.compare(a, b, floating=True)
    # 1.0 and its successor: 1 ulp; +0 and -0: the same point of the ordered line (0 ulp) but different bits
    assert not c["bitwise"] and c["max_ulp"] == 1.0 and abs(c["mismatch"] - 2 / 3) < 1e-12
    assert device_report.compare(a, a.numpy(), floating=True) == {"bitwise": True, "mismatch": 0.0, "max_ulp": 0.0}
