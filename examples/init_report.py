"""Initializer parity report: every PyTorch initializer drawn by torch.nn.init,
by jaxinit (Flax kernel layout) and by torchinit (its factory, Flax layout),
for a Linear, a Conv2d, a grouped Conv2d and a ConvTranspose2d layer.

Prints std per framework, the relative std difference and two-sample KS
p-values against torch, and exits non-zero if any p-value is below 1e-5.
Runs on whatever device jax and torch see.

    python examples/init_report.py [--seed 0] [--json report.json]
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
import torch

import jaxinit
import torchinit

LAYERS = {
    # name: (torch weight shape (out, in, *k) or (in, out, *k), flax kernel shape, flax layout)
    "Linear(512->256)": ((256, 512), (512, 256), jaxinit.FLAX_LAYOUT),
    "Conv2d(64->128, 3x3)": ((128, 64, 3, 3), (3, 3, 64, 128), jaxinit.FLAX_LAYOUT),
    "Conv2d(128->128, 3x3, groups=4)": ((128, 32, 3, 3), (3, 3, 32, 128), jaxinit.FLAX_LAYOUT),
    "ConvTranspose2d(64->128, 3x3)": ((64, 128, 3, 3), (3, 3, 64, 128), jaxinit.FLAX_CONV_TRANSPOSE_LAYOUT),
}
INITS = {
    # name: (factory(pkg, layout), torch.nn.init call)
    "xavier_uniform": (lambda P, L: P.xavier_uniform(**L), lambda t: torch.nn.init.xavier_uniform_(t)),
    "xavier_normal": (lambda P, L: P.xavier_normal(**L), lambda t: torch.nn.init.xavier_normal_(t)),
    "kaiming_uniform(a=sqrt5)": (lambda P, L: P.kaiming_uniform(a=math.sqrt(5), **L),
                                 lambda t: torch.nn.init.kaiming_uniform_(t, a=math.sqrt(5))),
    "kaiming_normal(fan_out,relu)": (lambda P, L: P.kaiming_normal(mode="fan_out", nonlinearity="relu", **L),
                                     lambda t: torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu")),
    "trunc_normal(std=.02)": (lambda P, L: P.trunc_normal(std=0.02), lambda t: torch.nn.init.trunc_normal_(t, std=0.02)),
    "orthogonal": (lambda P, L: P.orthogonal(out_axis=L["out_axis"]), lambda t: torch.nn.init.orthogonal_(t)),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__} on {device}\n")
    header = f"{'layer':34s} {'initializer':30s} {'std torch':>10s} {'std jax':>10s} {'std ti':>10s} {'rel diff':>9s} {'KS p jax':>9s} {'KS p ti':>9s}"
    print(header)
    print("-" * len(header))
    rows, worst = [], 1.0
    for layer, (tshape, fshape, layout) in LAYERS.items():
        for name, (factory, ref) in INITS.items():
            torch.manual_seed(args.seed)
            t = ref(torch.empty(tshape, device=device)).cpu().double().numpy().ravel()
            j = np.asarray(factory(jaxinit, layout)(jax.random.key(args.seed), fshape, jnp.float32), np.float64).ravel()
            ti = factory(torchinit, layout)(args.seed + 1, fshape, torch.float32, device).cpu().double().numpy().ravel()
            pj, pt = scipy.stats.ks_2samp(j, t).pvalue, scipy.stats.ks_2samp(ti, t).pvalue
            rel = max(abs(j.std() - t.std()), abs(ti.std() - t.std())) / t.std()
            worst = min(worst, pj, pt)
            rows.append({"layer": layer, "init": name, "std_torch": t.std(), "std_jaxinit": j.std(),
                         "std_torchinit": ti.std(), "rel_std_diff": rel, "ks_p_jaxinit": pj, "ks_p_torchinit": pt})
            print(f"{layer:34s} {name:30s} {t.std():10.5f} {j.std():10.5f} {ti.std():10.5f} {rel:9.2e} {pj:9.3f} {pt:9.3f}")
    print(f"\nworst KS p-value: {worst:.3g} (threshold 1e-5)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0 if worst >= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
