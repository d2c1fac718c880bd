"""Training throughput (examples/s) of the LeNet+BatchNorm example, JAX path vs torch path.

Runs ``examples/lenet_bn.py``'s training loop (the same code as the main job: JAX's
jit-compiled step(s) with the batch sharded over all local devices, looped over the epoch as
``lenet_bn.JAX_LOOPS`` picks per backend, or as ``--jax-loops`` names; torch's eager loop,
CUDA when present) on the embedded digits tiled to ``--examples`` training images (default
61440, Fashion-MNIST's size rounded to whole batches of 256: the same per-example compute as
Fashion-MNIST, 28x28x1). Each (framework, loop) runs in its own child process, so neither
one's thread pools are live while the other is timed; ``--repeats`` alternates the children
that many times (a loaded machine moves single runs by 2x and more). Reported per child: the
compile time of the JAX program(s), the median examples/s over the epochs after the first
(compilation is done before the first epoch; the first epoch still warms caches); then the
median over repeats and the ratio jax/torch per loop. The textbook (d2l.ai, BatchNorm LeNet on
one GPU) reports about 36k examples/s.

    python benchmarks/bench_lenet.py                     # 61440 images x 3 epochs per framework
    python benchmarks/bench_lenet.py --examples 6144 --epochs 3 --jax-loops auto,scan --repeats 3
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lenet_bn():
    """``examples/lenet_bn.py`` as the module ``lenet_bn`` (the examples folder is not a package): the
    one already imported under that name (the test suite's), else loaded from its file."""
    if "lenet_bn" not in sys.modules:
        spec = importlib.util.spec_from_file_location("lenet_bn", os.path.join(ROOT, "examples", "lenet_bn.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["lenet_bn"] = module  # before running it: its dataclasses look their module up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["lenet_bn"]
            raise
    return sys.modules["lenet_bn"]


def child(framework: str, examples: int, epochs: int, batch_size: int, jax_loop: str = "auto") -> dict:
    import numpy as np

    lenet_bn = _lenet_bn()

    d = lenet_bn.load_digits_28()
    reps = -(-examples // len(d.x_train))
    data = lenet_bn.Dataset(d.name + f" tiled to {examples}", np.tile(d.x_train, (reps, 1, 1, 1))[:examples],
                           np.tile(d.y_train, reps)[:examples], d.x_test, d.y_test)
    r = lenet_bn.run(framework, epochs, batch_size, dataset=data, progress=False, verbose=False, jax_loop=jax_loop)
    eps = [e["ex_per_s"] for e in r["history"][framework]["epochs"]]
    out = {"framework": framework, "epochs_ex_per_s": eps,
           "steady_ex_per_s": statistics.median(eps[1:] if len(eps) > 1 else eps)}
    if framework == "jax":
        import jax

        out.update(device=f"{r['jax'].n_devices} x {jax.devices()[0].device_kind}", loop=r["jax"].loop,
                   steps_per_call=r["jax"].chunk, compile_s=r["jax"].compile_seconds)
    else:
        import torch

        out["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else \
            f"cpu ({torch.get_num_threads()} threads)"
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=61440)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--jax-loops", default="auto",
                   help="comma-separated lenet_bn --jax-loop values to measure (auto, step, unroll, scan)")
    p.add_argument("--repeats", type=int, default=1, help="alternate the children this many times")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--loop", default="auto", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.examples, a.epochs, a.batch_size, a.loop)))
        return 0
    cases = [("torch", "auto")] + [("jax", loop) for loop in a.jax_loops.split(",")]
    runs: dict = {case: [] for case in cases}
    for rep in range(a.repeats):
        for fw, loop in cases:
            out = subprocess.run([sys.executable, __file__, "--child", fw, "--loop", loop, "--examples",
                                  str(a.examples), "--epochs", str(a.epochs), "--batch-size", str(a.batch_size)],
                                 capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            runs[(fw, loop)].append(r)
            name = f"{fw} ({r['loop']} x{r['steps_per_call']})" if fw == "jax" else fw
            comp = f"   compile {r['compile_s']:.1f} s" if fw == "jax" else ""
            print(f"[{rep + 1}/{a.repeats}] {name:18s} {r['device']:22s} steady {r['steady_ex_per_s']:8.0f} ex/s"
                  f"   per epoch " + ", ".join(f"{v:.0f}" for v in r["epochs_ex_per_s"]) + comp)
    med = {case: statistics.median(r["steady_ex_per_s"] for r in rs) for case, rs in runs.items()}
    ratios = {loop: med[("jax", loop)] / med[("torch", "auto")] for fw, loop in cases if fw == "jax"}
    for loop, ratio in ratios.items():
        print(f"jax --jax-loop {loop} / torch throughput ratio: {ratio:.2f} (median of {a.repeats}; "
              f"{a.examples} images of 28x28, batch {a.batch_size})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": {f"{fw}:{loop}": rs for (fw, loop), rs in runs.items()}, "ratios": ratios,
                       "examples": a.examples, "batch_size": a.batch_size}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
