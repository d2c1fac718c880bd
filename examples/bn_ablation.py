"""The textbook's BatchNorm exercises: BatchNorm everywhere vs convolutions only vs dropout instead.

Trains the LeNet of ``lenet_bn.py`` (sigmoid, Xavier, SGD lr 1.0, batch 256) three
times with the same weights and batches: ``bn_all`` (BatchNorm after every conv and
hidden dense layer), ``bn_conv`` (after the two convolutions only) and ``dropout``
(no BatchNorm; dropout 0.5 after the hidden dense layers). Prints the per-epoch test
accuracy of each, and the learned gamma (scale) and beta (shift) of the first
BatchNorm layer, as the textbook asks. One framework per run (``--framework jax``
by default; dropout masks differ between frameworks, so runs are not compared
step by step here: ``lenet_bn.py --framework both`` does that).

    python examples/bn_ablation.py [--framework jax|torch] [--epochs 10] [--out bn_ablation.png]
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lenet_bn  # noqa: E402


def bn_params(result: dict, framework: str, layer: str = "bn1"):
    """(gamma, beta) of a BatchNorm layer of a trained run, or None when the variant has none."""
    if framework == "jax":
        p = result["jax"].state["params"].get(layer)
        return None if p is None else (np.asarray(p["scale"]), np.asarray(p["bias"]))
    m = getattr(result["torch"].model, layer)
    if not hasattr(m, "weight"):
        return None
    return m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy()


def run(framework: str = "jax", epochs: int = 10, batch_size: int = 256, lr: float = 1.0,
        data_dir: str | None = None, steps: int | None = None, seed: int = 0, out: str | None = None,
        variants=lenet_bn.VARIANTS, momentum: float = 0.0, progress: bool = True, verbose: bool = True) -> dict:
    if framework not in ("jax", "torch"):
        raise ValueError(f"framework={framework!r}: use 'jax' or 'torch' (dropout masks differ between frameworks)")
    say = print if verbose else (lambda *a, **k: None)
    data = lenet_bn.load_dataset(data_dir)
    results, rows = {}, []
    for v in variants:
        say(f"--- {v}")
        r = lenet_bn.run(framework, epochs, batch_size, lr, steps=steps, seed=seed, variant=v, momentum=momentum,
                         progress=progress, verbose=verbose, dataset=data)
        results[v] = r
        h = r["history"][framework]["epochs"]
        gb = bn_params(r, framework)
        rows.append({"variant": v, "loss": h[-1]["loss"], "train": h[-1]["train_acc"], "test": h[-1]["test_acc"],
                     "best": max(e["test_acc"] for e in h), "gb": gb})
    say(f"\n{framework}, {data.name}, {epochs} epochs, lr {lr}, batch {batch_size}\n")
    say(lenet_bn.table(rows, [("variant", "variant", "<8"), ("loss", "final loss", ".4f"),
                             ("train", "train acc", ".3f"), ("test", "test acc", ".3f"),
                             ("best", "best test", ".3f")]))
    np.set_printoptions(precision=3, suppress=True, linewidth=120)
    for row in rows:
        if row["gb"] is not None:
            say(f"\n{row['variant']}: first BatchNorm layer (after conv1, 6 channels)\n"
                f"  gamma {row['gb'][0]}\n  beta  {row['gb'][1]}")
    if out:
        plt = lenet_bn.pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for i, v in enumerate(results):
            h = results[v]["history"][framework]
            axes[0].plot(np.arange(1, len(h["step_loss"]) + 1), h["step_loss"], color=f"C{i}", label=v)
            axes[1].plot([e["epoch"] for e in h["epochs"]], [e["test_acc"] for e in h["epochs"]], marker="o",
                         color=f"C{i}", label=v)
        axes[0].set(xlabel="step", ylabel="training loss", yscale="log", title="training loss")
        axes[1].set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(f"LeNet (sigmoid, lr {lr}): BatchNorm everywhere / conv only / dropout ({framework})")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        plt.close(fig)
        say(f"plot: {out}")
    return {"results": results, "rows": rows}


def main(argv=None) -> int:
    p = lenet_bn.parser(__doc__.splitlines()[0])
    p.set_defaults(framework="jax")
    p.add_argument("--out", default="bn_ablation.png", help="PNG ('' for none)")
    a = p.parse_args(argv)
    if a.checkpoint_dir or a.resume:
        p.error("--checkpoint-dir/--resume: use lenet_bn.py for checkpointed runs")
    run(a.framework, a.epochs, a.batch_size, a.lr, a.data_dir, a.steps, a.seed, a.out or None,
        momentum=a.momentum, progress=not a.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
