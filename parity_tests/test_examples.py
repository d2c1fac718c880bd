"""The examples: LeNet+BatchNorm in both frameworks step by step, resume, and smoke runs of the others.

Run on CPU in CI with the suite's settings (8 faked CPU devices, so the JAX batch
is sharded 8 ways and BatchNorm's statistics are reduced across devices inside
jit; "highest" matmul precision; torch TF32 off). Sizes are small: the whole file
takes about a minute on an idle 2-core machine.
"""
from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import os
import runpy
import struct
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

import jaxinit

from parity_tests._figures import record_figure

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path.insert(0, EXAMPLES)

if importlib.util.find_spec("sklearn") is None:  # the embedded dataset (load_digits); found, not imported,
    pytest.skip("scikit-learn is not installed", allow_module_level=True)  # so collection stays cheap
import bn_ablation  # noqa: E402
import init_variance  # noqa: E402
import lenet_bn  # noqa: E402
import optimizers  # noqa: E402

# Per-step training-loss tolerance, first 50 steps of LeNet+BN (sigmoid, SGD lr 1.0), float32.
# Both frameworks start from the same weights and see the same batches, so the losses differ
# only by float32 rounding: XLA and torch sum the convolutions, BatchNorm reductions and the
# softmax in different orders (~1e-7 relative per op), and lr-1.0 SGD through sigmoid+BN
# amplifies that during the fast first epoch (the difference peaks there and shrinks as the
# loss converges). Measured on CPU: 3.5e-4 (batch 64 over 8 devices, torch on 1 thread),
# 3.1e-4 (batch 256), 6.5e-5 (batch 64, torch on 2 threads). 2e-3 leaves ~6x room for other
# kernels; a semantic difference is far larger (torch BatchNorm eps 1e-3 instead of 1e-5:
# 0.23 within 17 steps).
LOSS_TOL = 2e-3
# Final test accuracy: the logits agree to ~1e-3, so only an image sitting on a decision
# boundary can flip: allow 2 of the 261 test images (measured: 0).
ACC_MARGIN = 2 / 261
# Running variances after training (what eval mode normalizes with), relative: measured
# 1.1e-3 (the weights drift apart by rounding as above). Flax's biased running variance
# instead of torch's unbiased one would be off by 1/63 = 1.6e-2 in the dense layers (n=64).
RUNNING_VAR_RTOL = 5e-3
# Eval logits after training: measured 3.4e-3 (|logits| up to ~10).
LOGIT_TOL = 2e-2


# Same one-thread fixture as test_batchnorm_devices.py: each module pins torch's threads for its own subprocess-free runs.
@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # CI runs pytest -n 2 on 2 cores: two torch threads per worker oversubscribe the
    # cores and slow torch's small convolutions ~20x (spinning OpenMP barriers).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return lenet_bn.load_digits_28()


def test_digits_dataset(digits):
    assert digits.x_train.shape == (1536, 28, 28, 1) and digits.x_test.shape == (261, 28, 28, 1)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    assert set(np.unique(digits.y_test)) == set(range(10))
    again = lenet_bn.load_digits_28()  # deterministic: the same arrays on every machine
    np.testing.assert_array_equal(again.x_train, digits.x_train)
    np.testing.assert_array_equal(again.y_test, digits.y_test)


def _write_idx(path, arr, gz):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("gz,sub", [(True, ""), (False, "FashionMNIST/raw")])
def test_fashion_mnist_idx_reader(tmp_path, gz, sub):
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
              "train-labels-idx1-ubyte": rng.integers(0, 10, 12),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, 5)}
    (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        _write_idx(str(tmp_path / sub / (name + (".gz" if gz else ""))), a, gz)
    d = lenet_bn.load_dataset(str(tmp_path))
    np.testing.assert_array_equal(d.x_train[..., 0], arrays["train-images-idx3-ubyte"].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert d.x_test.shape == (5, 28, 28, 1)


def test_errors(tmp_path, digits):
    with pytest.raises(FileNotFoundError, match="--data-dir.*train-images-idx3-ubyte"):
        lenet_bn.load_fashion_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="--batch-size 4096"):
        lenet_bn.epoch_batches(np.random.default_rng(0), 1536, 4096)
    with pytest.raises(ValueError, match="framework='tf'"):
        lenet_bn.run("tf", dataset=digits, verbose=False)
    with pytest.raises(ValueError, match="variant='bn_none'"):
        lenet_bn.torch_model("bn_none")
    with pytest.raises(ValueError, match="use 'jax' or 'torch'"):
        bn_ablation.run("both")
    with pytest.raises(ValueError, match="--jax-loop 'while'.*'scan'"):
        lenet_bn.run("jax", dataset=digits, verbose=False, jax_loop="while")
    # --ranks misuse: caught before any process starts
    with pytest.raises(jaxinit.InitError, match="--batch-size`=100 does not split into 3 .*multiple of 3"):
        lenet_bn.run("both", batch_size=100, ranks=3, dataset=digits, verbose=False)
    with pytest.raises(ValueError, match="--ranks with --checkpoint-dir"):
        lenet_bn.run("both", ranks=2, checkpoint_dir=str(tmp_path), dataset=digits, verbose=False)
    with pytest.raises(ValueError, match="--ranks 16: the JAX side needs 16 devices.*xla_force_host_platform"):
        lenet_bn.run("jax", batch_size=64, ranks=16, dataset=digits, verbose=False)


def test_jax_loop_per_backend():
    # XLA:CPU's fast convolutions only outside loops (jax-ml/jax#12868): one jitted step per batch on CPU.
    assert lenet_bn.choose_jax_loop("auto", 17, "cpu") == ("step", 1)
    assert lenet_bn.choose_jax_loop("auto", 24, "gpu") == ("scan", 12)  # largest divisor <= 16: one shape
    assert lenet_bn.choose_jax_loop("unroll", 17, "gpu") == ("unroll", 1)
    assert lenet_bn.choose_jax_loop("step", 24, "gpu") == ("step", 1)


def test_both_mode_per_step_losses_agree(digits, capsys):
    # 3 epochs x 17 steps of 64 = 51 steps; the textbook's lr 1.0.
    r = lenet_bn.run("both", epochs=3, batch_size=64, steps=17, dataset=digits, progress=False, verbose=False)
    s = r["summary"]
    assert s["steps"] == 51 and r["jax"].n_devices == min(8, len(jax.devices()))
    record_figure("examples lenet_bn", "max_dloss50", s["max_dloss_first50"], "both, batch 64, 8 CPU devices")
    assert s["max_dloss_first50"] <= LOSS_TOL, s
    assert s["first_step_over"] is None  # the example's own divergence verdict agrees
    assert abs(s["final_test_acc_jax"] - s["final_test_acc_torch"]) <= ACC_MARGIN, s
    assert s["final_test_acc_jax"] > 0.5  # it learns (10 classes: chance is 0.1)
    # Eval mode uses the running statistics: torch's unbiased running variance must be matched.
    stats, tm = r["jax"].state["batch_stats"], r["torch"].model
    for name in ("bn1", "bn2", "bn3", "bn4"):
        bn = getattr(tm, name)
        rel = float(np.max(np.abs(np.asarray(stats[name]["var"]) / bn.running_var.numpy() - 1)))
        record_figure("examples lenet_bn", "running_var_rel", rel, name)
        assert rel <= RUNNING_VAR_RTOL, (name, rel)
        assert int(stats[name]["num_batches_tracked"]) == int(bn.num_batches_tracked) == 51
    lj = np.asarray(r["jax"].logits(r["jax"].state, digits.x_test))
    r["torch"].model.eval()
    with torch.no_grad():
        lt = r["torch"].model(torch.from_numpy(digits.x_test.transpose(0, 3, 1, 2).copy())).numpy()
    record_figure("examples lenet_bn", "eval_logit_diff", float(np.abs(lj - lt).max()), "after 51 steps")
    np.testing.assert_allclose(lj, lt, rtol=0, atol=LOGIT_TOL)
    for fw in ("jax", "torch"):
        assert [e["epoch"] for e in r["history"][fw]["epochs"]] == [1, 2, 3]
    # what the command line prints for --framework both
    lenet_bn.summarize(r["history"], verbose=True)
    printed = capsys.readouterr().out
    assert "largest step-by-step loss difference" in printed and "do not diverge" in printed


@pytest.mark.exhaustive  # a third LeNet program to compile (~8 s); test_dropout.py's twins run by default
def test_dropout_variant_both_agrees(digits):
    """--variant dropout --framework both: torch is bound to the Flax run's dropout keys
    (torchinit.rngs.bind_rngs), so the masks are the same and the losses agree at float32 rounding."""
    r = lenet_bn.run("both", epochs=2, batch_size=64, steps=6, variant="dropout", dataset=digits, progress=False,
                     verbose=False)
    s = r["summary"]
    record_figure("examples lenet_bn", "max_dloss_dropout", s["max_dloss"], "both, dropout 0.5, 12 steps of 64")
    assert s["steps"] == 12 and s["max_dloss"] <= LOSS_TOL and s["first_step_over"] is None, s


@pytest.mark.parametrize("framework,variant", [("both", "bn_all"), ("torch", "dropout"),
                                               pytest.param("both", "dropout", marks=pytest.mark.exhaustive)])
def test_resume_equals_uninterrupted(tmp_path, digits, monkeypatch, framework, variant):
    # momentum 0.9: the optimizer state must come back too; dropout: torch's RNG state too.
    kw = dict(batch_size=64, steps=3, momentum=0.9, variant=variant, dataset=digits, progress=False, verbose=False)
    fws = ("jax", "torch") if framework == "both" else (framework,)
    full = lenet_bn.run(framework, epochs=2, **kw)

    ck = str(tmp_path / "ck")
    real, calls = lenet_bn.epoch_batches, []

    def interrupt_in_epoch_2(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a crash after epoch 1's checkpoint
        return real(*a, **k)

    monkeypatch.setattr(lenet_bn, "epoch_batches", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        lenet_bn.run(framework, epochs=2, checkpoint_dir=ck, **kw)
    monkeypatch.setattr(lenet_bn, "epoch_batches", real)
    torch.manual_seed(1234)  # a fresh process would not share the global RNG state either
    resumed = lenet_bn.run(framework, epochs=2, checkpoint_dir=ck, resume=True, **kw)

    for fw in fws:
        assert resumed["history"][fw]["step_loss"] == full["history"][fw]["step_loss"]  # bitwise
        assert [e["test_acc"] for e in resumed["history"][fw]["epochs"]] == \
               [e["test_acc"] for e in full["history"][fw]["epochs"]]
    if "jax" in fws:  # params, batch_stats, optax state, step: every array
        a, b = full["jax"].state_arrays(), resumed["jax"].state_arrays()
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for (k, a), b in zip(full["torch"].model.state_dict().items(), resumed["torch"].model.state_dict().values()):
        assert torch.equal(a, b), k
    mom_full = [s["momentum_buffer"] for s in full["torch"].opt.state_dict()["state"].values()]
    mom_res = [s["momentum_buffer"] for s in resumed["torch"].opt.state_dict()["state"].values()]
    n_params = len(list(full["torch"].model.parameters()))
    assert len(mom_full) == n_params and all(torch.equal(a, b) for a, b in zip(mom_full, mom_res))

    with pytest.raises(ValueError, match="other settings.*lr"):
        lenet_bn.run(framework, epochs=2, checkpoint_dir=ck, resume=True, lr=0.5, **kw)


def test_checkpoint_optimizer_roundtrip(tmp_path):
    # The example's optimizer checkpoint (tensors through torchinit.save_checkpoint, the rest JSON):
    # integer parameter ids, tensor step counts, and param_groups come back as torch needs them.
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2, 2))]
    opt = torch.optim.Adam(params, lr=0.1)
    sum(p.sum() for p in params).backward()
    opt.step()
    path = str(tmp_path / "opt.safetensors")
    rest = json.loads(json.dumps(lenet_bn.save_torch_optimizer(path, opt)))  # as it sits in meta.json
    back = lenet_bn.load_torch_optimizer(path, rest)
    assert set(back["state"]) == {0, 1} and back["param_groups"][0]["betas"] == [0.9, 0.999]
    assert torch.equal(back["state"][1]["exp_avg_sq"], opt.state_dict()["state"][1]["exp_avg_sq"])
    fresh = torch.optim.Adam(params, lr=0.1)
    fresh.load_state_dict(back)
    assert torch.equal(fresh.state_dict()["state"][0]["step"], opt.state_dict()["state"][0]["step"])


@pytest.mark.multiprocess
def test_ranks_2_both_agree(digits):
    """``--ranks 2 --framework both``: torch DDP over 2 gloo processes with SyncBatchNorm (torchinit)
    against the JAX batch sharded over 2 devices: the per-step losses agree at float32 rounding."""
    r = lenet_bn.run("both", epochs=2, batch_size=64, steps=6, dataset=digits, progress=False, verbose=False,
                     ranks=2)
    s = r["summary"]
    record_figure("examples lenet_bn", "max_dloss ranks 2", s["max_dloss"], "DDP+SyncBN vs sharded jax, 12 steps")
    assert s["steps"] == 12 and r["jax"].n_devices == 2
    assert s["max_dloss"] <= LOSS_TOL and s["first_step_over"] is None, s
    stats, tm = r["jax"].state["batch_stats"], r["torch"].model  # rank 0's buffers after the last epoch
    for name in ("bn1", "bn4"):
        rel = float(np.max(np.abs(np.asarray(stats[name]["var"]) / getattr(tm, name).running_var.numpy() - 1)))
        assert rel <= RUNNING_VAR_RTOL, (name, rel)


def test_progress_bars_only_on_a_terminal():
    # Output piped to a file must be the plain table: no tqdm frames (pytest captures both streams,
    # so neither is a terminal here).
    items = list(range(3))
    assert lenet_bn.progress(items, True) is items
    assert lenet_bn.progress(items, False) is items


def _user_env():
    """The environment a user has: no faked devices (one CPU device compiles faster), one
    OpenMP thread (the suite's workers share the cores), and the suite's persistent XLA
    compilation cache (conftest.py; jax reads its config from JAX_* variables): a repeated run
    loads the compiled programs instead of compiling them again (most of this test's time),
    and the cache key covers program, versions and flags, so it changes no result."""
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if not f.startswith("--xla_force_host_platform_device_count"))
    env = {**os.environ, "XLA_FLAGS": flags, "OMP_NUM_THREADS": "1"}
    cache = jax.config.jax_compilation_cache_dir
    if cache:
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def test_cli_main_job_smoke(tmp_path):
    """The README's main job as a user runs it: a fresh process, the user's JAX settings (no x64, one
    CPU device), piped output. torch only, so the process compiles nothing; what ``--framework both``
    adds (the per-step comparison and its verdict) is ``run``/``summarize``, checked with both
    frameworks in test_both_mode_per_step_losses_agree."""
    out = tmp_path / "curves.png"
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "lenet_bn.py"), "--framework", "torch",
                        "--epochs", "1", "--steps", "2", "--batch-size", "64", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env=_user_env())
    assert p.returncode == 0, p.stderr[-3000:]
    assert "torch loss" in p.stdout and "jax loss" not in p.stdout
    # Progress bars are on by default, but the output is piped: no tqdm frames in either stream.
    assert "\r" not in p.stdout + p.stderr and "step/s" not in p.stderr and "chunk/s" not in p.stderr
    assert out.stat().st_size > 10_000


def test_bn_ablation_smoke(tmp_path, capsys):
    r = bn_ablation.run("torch", epochs=1, batch_size=64, steps=2, out=str(tmp_path / "a.png"), progress=False)
    assert [row["variant"] for row in r["rows"]] == list(lenet_bn.VARIANTS)
    gamma, beta = r["rows"][0]["gb"]
    assert gamma.shape == beta.shape == (6,) and not np.allclose(gamma, 1.0)  # trained, not the init
    assert r["rows"][2]["gb"] is None  # the dropout variant has no BatchNorm
    assert "gamma" in capsys.readouterr().out and (tmp_path / "a.png").exists()
    rj = bn_ablation.run("jax", epochs=1, batch_size=64, steps=2, variants=("dropout",), progress=False,
                         verbose=False)
    assert np.isfinite(rj["rows"][0]["loss"]) and rj["rows"][0]["gb"] is None


def test_init_variance_regimes(tmp_path):
    r = init_variance.run(depth=20, width=64, batch=128, out=str(tmp_path / "v.png"), verbose=False)
    res = r["results"]
    for fw in ("jax", "torch"):
        assert all(v == 0 for v in res[("tanh", "zeros")][f"{fw}_act"])  # nothing flows
        relu_normal = res[("relu", "normal(std=1)")][f"{fw}_act"]
        assert relu_normal[-1] > 1e10 * relu_normal[0]  # explodes (x ~5.7 per layer at width 64)
        xavier = res[("relu", "xavier_uniform")][f"{fw}_act"]
        assert xavier[-1] < 1e-2 * xavier[0]  # vanishes (x ~1/sqrt(2) per layer)
        kaiming = res[("relu", "kaiming_normal(relu)")][f"{fw}_act"]
        assert 0.1 < kaiming[-1] / kaiming[0] < 10  # preserved
    # Independent draws: the jax-vs-torch spread is of the size of a jax reseed (both about 0.3 in
    # log10 at this depth and width; exploding/vanishing regimes differ by 10-1000x in the same units).
    assert r["worst_cross"] < 1.0 and r["mismatches"] <= 2
    assert (tmp_path / "v.png").exists()


def test_optimizers_agree(tmp_path):
    r = optimizers.run(steps=40, out=str(tmp_path / "o.png"), verbose=False)
    # Same weights, same batches, jaxinit.optim vs torch.optim in float32: the losses differ by
    # rounding only; measured <= 7.5e-6 over 300 steps (Adam's early steps are the most
    # sensitive: its update is sign-like while v is small). 1e-4 = 10x headroom; a wrong update
    # rule (optax.adagrad's 0.1 initial accumulator, eps inside the root) moves them by >1e-2.
    for row in r["rows"]:
        record_figure("examples optimizers", "max_dloss", row["d"], row["opt"])
        assert row["d"] <= 1e-4, row
        assert row["jl"] < r["curves"][row["opt"]]["jax"][0]  # it trains
    assert (tmp_path / "o.png").exists()


def test_quickstart_runs_and_agrees():
    # README's quickstart (the README holds a verbatim copy, checked by test_docs.py). Float32, 10
    # full-batch AdamW steps from identical weights: measured 6.1e-6 (losses) and 2.4e-6 (weights,
    # BatchNorm running statistics). 1e-4 leaves ~16x for other kernels; a semantic difference is
    # larger (Flax's biased running variance: 1/127 relative = 2e-2 on variances of ~2.6).
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        g = runpy.run_path(os.path.join(EXAMPLES, "quickstart.py"), run_name="__main__")
    assert g["same"] is True, out.getvalue()  # one key, the same kernels in both frameworks, bitwise
    record_figure("examples quickstart", "max_dloss", max(g["loss_diffs"]), "10 AdamW steps, float32")
    record_figure("examples quickstart", "max_dweight", g["weight_diff"], "10 AdamW steps, float32")
    assert len(g["loss_diffs"]) == 10 and max(g["loss_diffs"]) <= 1e-4, out.getvalue()
    assert g["weight_diff"] <= 1e-4, out.getvalue()
    assert "largest loss difference" in out.getvalue()
