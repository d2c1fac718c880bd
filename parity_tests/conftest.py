"""Suite-wide settings for the parity tests.

- Output parity needs full-precision matmuls: JAX matmul precision "highest"
  and torch TF32 off (flax#3128; torch docs, "TensorFloat-32 (TF32) on Ampere (and later) devices").
- float64 is switched on in JAX (``jax_enable_x64``) so float64 claims are
  tested in float64; every test passes explicit dtypes.
- The suite runs on whatever device jax and torch see (CPU, GPU, TPU):
  ``TORCH_DEVICE`` is CUDA when present.
- XLA's compiled programs are kept in a persistent compilation cache
  (``jax_compilation_cache_dir``, default ``.jax_cache/`` at the repository root;
  ``JAXINIT_JAX_CACHE=`` (empty) switches it off, another path moves it). The pytest-xdist
  workers share it, so a program one worker compiled is loaded, not recompiled, by the
  other, and a second run of the suite skips most XLA compilation. It changes no result: the
  cache key covers the program, the jax/jaxlib versions, the backend and the XLA flags.
- Under pytest-xdist each worker's torch uses cpu_count / workers intra-op threads.
- Eight CPU devices are faked (``--xla_force_host_platform_device_count=8``,
  as optax and flax do in their own tests) so cross-device code (BatchNorm's
  ``axis_name``, sharded training steps) is tested on any machine. The default
  backend is unchanged: on a GPU machine jax still computes on the GPU.
"""
import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402


def _is_xdist_controller(config) -> bool:
    """The pytest-xdist controller only schedules: it runs no test and needs neither framework."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def _configure_frameworks() -> None:
    import jax
    import torch

    jax.config.update("jax_enable_x64", True)
    cache = os.environ.get("JAXINIT_JAX_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache"))
    if cache:
        jax.config.update("jax_compilation_cache_dir", cache)
        # Programs that took at least 0.1 s to compile (optimizer scans, training steps, random samplers):
        # writing each of the thousands of 10-ms eager-op programs costs more than compiling it again.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
        # No size limit: with one, jax's LRUCache re-lists the whole directory and reads every atime file
        # on each write (jax/_src/lru_cache.py ``_evict_if_needed``), quadratic in the entries: +40% on a
        # cold run of test_batchnorm.py. Without it there is no file lock either; an entry read while the
        # other worker is still writing it is truncated, fails zstd/zlib decompression, and jax warns and
        # compiles instead (jax/_src/compiler.py ``_cache_read``).
        jax.config.update("jax_compilation_cache_max_size", -1)
    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    # Under pytest-xdist, N workers share the cores: each torch gets its share of the intra-op threads
    # (N workers x all-core OpenMP pools oversubscribe the CPU and spin against each other).
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


def pytest_configure(config):
    # Before collection, so before any test module touches jax or torch. The xdist controller skips it:
    # importing both (2 s) there delayed the start of the workers, which import them again.
    if not _is_xdist_controller(config):
        _configure_frameworks()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    # An xdist worker has sent its last report ("workerfinished", in pytest_sessionfinish) when this
    # runs; the controller takes the run's result from the reports, not from the worker's exit code.
    # Leaving without the interpreter's teardown skips freeing the worker's thousands of compiled XLA
    # programs one by one: measured 8 s between the last test and the end of a full run, on 2 cores.
    if hasattr(config, "workerinput") and os.environ.get("JAXINIT_WORKER_FAST_EXIT", "1") != "0":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@pytest.fixture
def torch_device():
    from parity_tests._figures import TORCH_DEVICE
    return TORCH_DEVICE


# Tests record what they measured with parity_tests._figures.record_figure; the
# worst value per family is printed at the end of every run (and so in CI logs).
def pytest_terminal_summary(terminalreporter):
    if "parity_tests._figures" not in sys.modules:  # the xdist controller records none
        return
    from parity_tests._figures import FIGURES
    if not FIGURES:
        return
    tr = terminalreporter
    tr.section("parity figures (worst per family)")
    for (family, metric), (value, case) in sorted(FIGURES.items()):
        tr.write_line(f"{family:28s} {metric:14s} {value:11.3g}   {case}")
