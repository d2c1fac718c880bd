"""Weight conversion and checkpoint speed, as RATIOS against the upstream way timed in the same run.

Cases (a VGG-like torch model: 8 convs, 8 BatchNorms and a Linear head, 5.2M parameters by default):

- ``from_torch``: ``jaxinit.from_torch_state_dict(model, template)`` vs the hand-written
  conversion users write today: a dict of ``jnp.asarray(w.numpy().transpose(...))`` per key
  (no naming rule, no checks) -- the floor for the same copies.
- ``to_torch``: ``jaxinit.to_torch_state_dict(variables, model)`` vs the hand-written reverse
  from the same jax arrays (``torch.from_numpy(np.ascontiguousarray(np.asarray(k).transpose(...)))``).
- ``load_np`` / ``load_torch``: ``jaxinit.load_checkpoint`` / ``torchinit.load_checkpoint`` vs
  ``safetensors.numpy.load_file`` / ``safetensors.torch.load_file`` on the same float32 file.

Median of ``--repeats`` alternating calls after ``--warmup``; ratio = ours / upstream. Nothing is
asserted: speed is reported, never tested.

    python benchmarks/bench_convert.py            # width 64 (5.2M parameters, 50 tensors)
    python benchmarks/bench_convert.py --quick    # width 16, CI smoke
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

if not __package__:  # `python benchmarks/bench_convert.py`: the repository root, for `benchmarks.*` and the source tree
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.timing import time_calls  # noqa: E402

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def _model(width: int):
    import torch

    layers, c = [], 3
    for i, w in enumerate((width, width * 2, width * 4, width * 8)):
        layers += [torch.nn.Conv2d(c, w, 3, padding=1, bias=False), torch.nn.BatchNorm2d(w), torch.nn.ReLU(),
                   torch.nn.Conv2d(w, w, 3, padding=1, bias=False), torch.nn.BatchNorm2d(w), torch.nn.ReLU()]
        c = w
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c, 1000)]
    return torch.nn.Sequential(*layers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if args.quick:
        args.width, args.repeats = 16, 5

    import jax
    import numpy as np
    import safetensors.numpy
    import safetensors.torch
    import torch

    import jaxinit
    import torchinit

    tm = _model(args.width)
    sd = tm.state_dict()
    n_params = sum(p.numel() for p in tm.parameters())
    template = jaxinit.from_torch_state_dict(tm)  # literal names: no Flax model needed here

    def perm(k, t):
        return (2, 3, 1, 0) if t.ndim == 4 else (1, 0) if t.ndim == 2 and "weight" in k else None

    def by_hand_from():
        out = {k: jax.numpy.asarray(t.numpy().transpose(perm(k, t)) if perm(k, t) else t.numpy())
               for k, t in sd.items()}
        jax.block_until_ready(out)

    def ours_from():
        jax.block_until_ready(jaxinit.from_torch_state_dict(tm, template))

    leaves = jax.tree_util.tree_leaves(template)

    def by_hand_to():  # the same jax arrays back to tensors, kernels transposed (names aside)
        [torch.from_numpy(np.ascontiguousarray(np.asarray(v).transpose((3, 2, 0, 1) if v.ndim == 4 else (1, 0)))
                          if v.ndim in (2, 4) else np.array(v)) for v in leaves]

    def ours_to():
        jaxinit.to_torch_state_dict(template, tm)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.safetensors")
        safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, path)
        cases = [
            ("from_torch", ours_from, by_hand_from),
            ("to_torch", ours_to, by_hand_to),
            ("load_np", lambda: jaxinit.load_checkpoint(path), lambda: safetensors.numpy.load_file(path)),
            ("load_torch", lambda: torchinit.load_checkpoint(path), lambda: safetensors.torch.load_file(path)),
        ]
        print(f"torch {torch.__version__}, jax {jax.__version__}, {jax.devices()[0].platform}; "
              f"model width {args.width}: {n_params / 1e6:.1f}M parameters, {len(sd)} tensors")
        print(f"{'case':12s} {'ours ms':>9s} {'upstream ms':>12s} {'ratio':>7s}")
        for name, ours, theirs in cases:
            a, b = [], []
            for _ in range(args.repeats):  # alternate, so drift hits both alike
                a += time_calls(ours, 1, 0 if a else args.warmup)
                b += time_calls(theirs, 1, 0 if b else args.warmup)
            ma, mb = statistics.median(a) * 1e3, statistics.median(b) * 1e3
            print(f"{name:12s} {ma:9.1f} {mb:12.1f} {ma / mb:7.2f}")


if __name__ == "__main__":
    main()
