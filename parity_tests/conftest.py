"""Suite-wide settings for the parity tests.

- Output parity needs full-precision matmuls: JAX matmul precision "highest"
  and torch TF32 off (REFERENCE.md section 5, flax#3128).
- float64 is switched on in JAX (``jax_enable_x64``) so float64 claims are
  tested in float64; every test passes explicit dtypes.
- The suite runs on whatever device jax and torch see (CPU, GPU, TPU):
  ``TORCH_DEVICE`` is CUDA when present.
- Eight CPU devices are faked (``--xla_force_host_platform_device_count=8``,
  as optax and flax do in their own tests) so cross-device code (BatchNorm's
  ``axis_name``, sharded training steps) is tested on any machine. The default
  backend is unchanged: on a GPU machine jax still computes on the GPU.
"""
import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

from parity_tests._figures import TORCH_DEVICE  # noqa: E402


@pytest.fixture
def torch_device():
    return TORCH_DEVICE


# Tests record what they measured with parity_tests._figures.record_figure; the
# worst value per family is printed at the end of every run (and so in CI logs).
from parity_tests._figures import FIGURES  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("parity figures (worst per family)")
    for (family, metric), (value, case) in sorted(FIGURES.items()):
        tr.write_line(f"{family:28s} {metric:14s} {value:11.3g}   {case}")
