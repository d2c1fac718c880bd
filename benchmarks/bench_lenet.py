"""Training throughput (examples/s) of the LeNet+BatchNorm example, JAX path vs torch path.

Runs ``examples/lenet_bn.py``'s training loop (the same code as the main job: JAX's
jit-compiled ``lax.scan`` over groups of steps with the batch sharded over all local
devices; torch's eager loop, CUDA when present) on the embedded digits tiled to
``--examples`` training images (default 61440, Fashion-MNIST's size rounded to whole
batches of 256: the same per-example compute as Fashion-MNIST, 28x28x1). Each framework
runs in its own child process, so neither one's thread pools are live while the other is
timed. Reported: the median examples/s over the epochs after the first (compilation is
done before the first epoch; the first epoch still warms caches), and the ratio jax/torch.
The textbook (d2l.ai, BatchNorm LeNet on one GPU) reports about 36k examples/s.

    python benchmarks/bench_lenet.py                     # 61440 images x 3 epochs per framework
    python benchmarks/bench_lenet.py --examples 6144 --epochs 3 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))


def child(framework: str, examples: int, epochs: int, batch_size: int) -> dict:
    import numpy as np

    import lenet_bn

    d = lenet_bn.load_digits_28()
    reps = -(-examples // len(d.x_train))
    data = lenet_bn.Dataset(d.name + f" tiled to {examples}", np.tile(d.x_train, (reps, 1, 1, 1))[:examples],
                           np.tile(d.y_train, reps)[:examples], d.x_test, d.y_test)
    r = lenet_bn.run(framework, epochs, batch_size, dataset=data, progress=False, verbose=False)
    eps = [e["ex_per_s"] for e in r["history"][framework]["epochs"]]
    if framework == "jax":
        import jax

        device = f"{r['jax'].n_devices} x {jax.devices()[0].device_kind}"
    else:
        import torch

        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    return {"framework": framework, "device": device, "epochs_ex_per_s": eps,
            "steady_ex_per_s": statistics.median(eps[1:] if len(eps) > 1 else eps)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=61440)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.examples, a.epochs, a.batch_size)))
        return 0
    res = {}
    for fw in ("jax", "torch"):
        out = subprocess.run([sys.executable, __file__, "--child", fw, "--examples", str(a.examples), "--epochs",
                              str(a.epochs), "--batch-size", str(a.batch_size)],
                             capture_output=True, text=True, check=True).stdout
        res[fw] = json.loads(out.strip().splitlines()[-1])
        r = res[fw]
        print(f"{fw:6s} {r['device']:32s} steady {r['steady_ex_per_s']:10.0f} ex/s   per epoch "
              + ", ".join(f"{v:.0f}" for v in r["epochs_ex_per_s"]))
    ratio = res["jax"]["steady_ex_per_s"] / res["torch"]["steady_ex_per_s"]
    print(f"jax/torch throughput ratio: {ratio:.2f} ({a.examples} images of 28x28, batch {a.batch_size})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": res, "ratio": ratio, "examples": a.examples, "batch_size": a.batch_size}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
