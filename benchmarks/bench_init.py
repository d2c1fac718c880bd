"""Initializer speed, as RATIOS against the upstream equivalent timed in the same run.

Four groups, each a table of (initializer x kernel) cases:

- ``jax-jit``: ``jax.jit(lambda k: init(k, shape, dtype))`` for a jaxinit
  initializer and its ``jax.nn.initializers`` equivalent; shape and dtype are
  static, compilation is excluded (warmup), every call ends in
  ``block_until_ready``.
- ``jax-eager``: the same initializers called directly, ``init(key, shape,
  dtype)``: the path users hit outside ``jit`` (Python in ``Initializer.__call__``,
  op-by-op dispatch, no fusion).
- ``jax-first-call``: an eager call on a shape not seen before, compilation
  included (what a model's first ``init`` costs, one conv kernel per layer): every
  call, warmup included, draws a (3, 3, c, c + 1) kernel with a c of its own, so
  each side compiles every time.
- ``torch-inplace``: ``torchinit.name_(t)`` vs ``torch.nn.init.name_(t)`` on the
  same preallocated torch-layout tensor (global RNG).
- ``torch-factory``: ``torchinit.name(...)(seed, torch_shape, dtype, device)`` vs
  ``torch.empty(torch_shape)`` + ``torch.nn.init.name_(t, generator=g)`` with a
  freshly seeded generator (the same work a factory call does).

Each case alternates ours/upstream calls (so drift hits both alike), drops
``--warmup`` calls and reports the median of ``--repeats``; the ratio is
ours/upstream and cases above ``--target`` (1.1x, the project's stated goal) are
marked ``!``. JAX and torch each run in their own child process (neither one's
thread pools or caches are live while the other is timed; ``--same-process``
opts out). Nothing here asserts a speed: speed is reported, never tested.

    python benchmarks/bench_init.py                 # float32, full sizes
    python benchmarks/bench_init.py --quick         # small sizes, CI smoke
    python benchmarks/bench_init.py --dtype bfloat16 --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Any, Callable, NamedTuple

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

GROUPS = ("jax-jit", "jax-eager", "jax-first-call", "torch-inplace", "torch-factory")


class Result(NamedTuple):
    group: str
    case: str
    kernel: str
    shape: tuple[int, ...]
    ours_ms: float | None
    upstream_ms: float | None
    ours_samples: list[float]
    upstream_samples: list[float]
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours_ms is None or self.upstream_ms is None or self.upstream_ms <= 0:
            return None
        return self.ours_ms / self.upstream_ms


# --------------------------------------------------------------------------- timing
def time_pair(ours: Callable[[int], Any], upstream: Callable[[int], Any], sync: Callable[[Any], None],
              warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Alternate ours(i) and upstream(i), i = 0..warmup+repeats-1; times in ms, warmup dropped.

    ``sync(result)`` waits for the device (``block_until_ready`` /
    ``torch.cuda.synchronize``) and is inside the timed region.
    """
    t_ours, t_up = [], []
    for i in range(warmup + repeats):
        # Alternate which one goes first, so neither always runs on a warm cache.
        order = ((ours, t_ours), (upstream, t_up)) if i % 2 == 0 else ((upstream, t_up), (ours, t_ours))
        for fn, sink in order:
            t0 = time.perf_counter()
            sync(fn(i))
            dt = (time.perf_counter() - t0) * 1e3
            if i >= warmup:
                sink.append(dt)
    return t_ours, t_up


def run_case(group, case, kernel, shape, ours, upstream, sync, args) -> Result:
    try:
        t_ours, t_up = time_pair(ours, upstream, sync, args.warmup, args.repeats)
    except Exception as exc:  # noqa: BLE001 - report which side fails (e.g. QR in bf16) and go on
        note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
        # Time each side alone to tell which one failed.
        sides = []
        for fn in (ours, upstream):
            try:
                sides.append(time_pair(fn, fn, sync, args.warmup, args.repeats)[0])
            except Exception:  # noqa: BLE001
                sides.append(None)
        t_ours, t_up = sides
        who = "ours" if t_ours is None else "upstream" if t_up is None else "?"
        return Result(group, case, kernel, tuple(shape), _median(t_ours), _median(t_up),
                      t_ours or [], t_up or [], f"{who} fails: {note}")
    return Result(group, case, kernel, tuple(shape), _median(t_ours), _median(t_up), t_ours, t_up)


def _median(xs):
    return None if not xs else statistics.median(xs)


# --------------------------------------------------------------------------- kernels
def kernels(quick: bool, ortho: int) -> dict[str, dict[str, tuple[int, ...]]]:
    """name -> {"flax": shape, "torch": shape}: the same kernel in both layouts."""
    if quick:
        d, c, k, o = 256, 32, 3, 128
    else:
        d, c, k, o = 4096, 512, 3, ortho
    return {
        f"dense{d}": {"flax": (d, d), "torch": (d, d)},
        f"conv{k}x{k}x{c}": {"flax": (k, k, c, c), "torch": (c, c, k, k)},
        f"square{o}": {"flax": (o, o), "torch": (o, o)},
    }


def _cases_for(name, kern):
    """The kernels each initializer is timed on (QR-based ones skip the big dense one)."""
    names = list(kern)
    if name == "orthogonal":
        return [n for n in names if not n.startswith("dense")]
    return [n for n in names if not n.startswith("square")]


# --------------------------------------------------------------------------- JAX
def jax_pairs():
    """(case, ours factory thunk, upstream factory thunk). Thunks so each case builds fresh objects."""
    import jax.nn.initializers as jnn

    import jaxinit as ji

    return [
        ("kaiming_uniform", lambda: ji.kaiming_uniform(a=0.0, mode="fan_in", nonlinearity="leaky_relu"),
         lambda: jnn.variance_scaling(2.0, "fan_in", "uniform")),
        ("kaiming_normal", lambda: ji.kaiming_normal(), lambda: jnn.variance_scaling(2.0, "fan_in", "normal")),
        ("xavier_uniform", lambda: ji.xavier_uniform(), lambda: jnn.glorot_uniform()),
        ("xavier_normal", lambda: ji.xavier_normal(), lambda: jnn.variance_scaling(1.0, "fan_avg", "normal")),
        # Bounds differ (torch: absolute +-2 = 100 std; JAX: +-2 std): timed as users would call them.
        ("trunc_normal", lambda: ji.trunc_normal(std=0.02), lambda: jnn.truncated_normal(0.02)),
        ("lecun_normal", lambda: ji.lecun_normal(), lambda: jnn.lecun_normal()),
        ("orthogonal", lambda: ji.orthogonal(), lambda: jnn.orthogonal()),
        ("uniform", lambda: ji.uniform(0.0, 0.01), lambda: jnn.uniform(0.01)),
        ("normal", lambda: ji.normal(0.0, 0.01), lambda: jnn.normal(0.01)),
    ]


def bench_jax(args, kern, groups) -> list[Result]:
    import jax
    import jax.numpy as jnp

    dtype = jnp.dtype(args.dtype)
    n = args.warmup + args.repeats
    keys = list(jax.random.split(jax.random.key(0), n))  # one key per call, shared by both sides

    def sync(x):
        x.block_until_ready()

    out = []
    for ci, (case, ours_f, up_f) in enumerate(jax_pairs()):
        if args.filter and args.filter not in case:
            continue
        for kname in _cases_for(case, kern):
            shape = kern[kname]["flax"]
            if "jax-jit" in groups:
                ours, up = ours_f(), up_f()
                j_ours = jax.jit(lambda k, f=ours: f(k, shape, dtype))
                j_up = jax.jit(lambda k, f=up: f(k, shape, dtype))
                r = run_case("jax-jit", case, kname, shape, lambda i: j_ours(keys[i]), lambda i: j_up(keys[i]),
                             sync, args)
                out.append(_show(r))
            if "jax-eager" in groups:
                ours, up = ours_f(), up_f()
                r = run_case("jax-eager", case, kname, shape, lambda i: ours(keys[i], shape, dtype),
                             lambda i: up(keys[i], shape, dtype), sync, args)
                out.append(_show(r))
        if "jax-first-call" in groups:
            # a fresh shape per call, per side and per case (ours: c = 8 + 2j, upstream: c = 9 + 2j), so
            # no call finds a program compiled before (this process has no persistent compilation cache);
            # sharing one compiled sampler between initializers of the same shape is not counted
            ours, up = ours_f(), up_f()
            first = {"ours": lambda i: ours(keys[i], (3, 3, 8 + 2 * (i + ci * n), 9 + 2 * (i + ci * n)), dtype),
                     "up": lambda i: up(keys[i], (3, 3, 9 + 2 * (i + ci * n), 10 + 2 * (i + ci * n)), dtype)}
            r = run_case("jax-first-call", case, "conv3x3xc", (3, 3, "c", "c+1"), first["ours"], first["up"],
                         sync, args)
            out.append(_show(r))
    return out


# --------------------------------------------------------------------------- torch
def torch_pairs(torch):
    """(case, ours in-place, upstream in-place, ours factory thunk).

    Upstream in-place functions take ``generator=`` so the factory group can
    seed them. lecun_normal has no torch.nn.init counterpart; its upstream is
    ``trunc_normal_`` with JAX's parameters (std = sqrt(1/fan_in)/0.8796, +-2 std).
    """
    import torchinit as ti

    nn = torch.nn.init

    def lecun_normal_upstream(t, generator=None):
        fan_in, _ = nn._calculate_fan_in_and_fan_out(t)
        std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
        return nn.trunc_normal_(t, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)

    return [
        ("kaiming_uniform", ti.kaiming_uniform_, nn.kaiming_uniform_, lambda: ti.kaiming_uniform()),
        ("kaiming_normal", ti.kaiming_normal_, nn.kaiming_normal_, lambda: ti.kaiming_normal()),
        ("xavier_uniform", ti.xavier_uniform_, nn.xavier_uniform_, lambda: ti.xavier_uniform()),
        ("xavier_normal", ti.xavier_normal_, nn.xavier_normal_, lambda: ti.xavier_normal()),
        ("trunc_normal",
         lambda t, generator=None: ti.trunc_normal_(t, std=0.02, generator=generator),
         lambda t, generator=None: nn.trunc_normal_(t, std=0.02, generator=generator),
         lambda: ti.trunc_normal(std=0.02)),
        ("lecun_normal", ti.lecun_normal_, lecun_normal_upstream, lambda: ti.lecun_normal()),
        ("orthogonal", ti.orthogonal_, nn.orthogonal_, lambda: ti.orthogonal()),
        ("uniform",
         lambda t, generator=None: ti.uniform_(t, 0.0, 0.01, generator=generator),
         lambda t, generator=None: nn.uniform_(t, 0.0, 0.01, generator=generator),
         lambda: ti.uniform(0.0, 0.01)),
        ("normal",
         lambda t, generator=None: ti.normal_(t, 0.0, 0.01, generator=generator),
         lambda t, generator=None: nn.normal_(t, 0.0, 0.01, generator=generator),
         lambda: ti.normal(0.0, 0.01)),
    ]


def bench_torch(args, kern, groups, device) -> list[Result]:
    import torch

    dtype = getattr(torch, args.dtype)
    cuda = device.type == "cuda"

    def sync(_):
        if cuda:
            torch.cuda.synchronize()

    out = []
    for case, ours_, up_, ours_f in torch_pairs(torch):
        if args.filter and args.filter not in case:
            continue
        for kname in _cases_for(case, kern):
            tshape = kern[kname]["torch"]
            if "torch-inplace" in groups:
                t = torch.empty(tshape, dtype=dtype, device=device)
                r = run_case("torch-inplace", case, kname, tshape, lambda i: ours_(t), lambda i: up_(t), sync, args)
                out.append(_show(r))
                del t
            if "torch-factory" in groups:
                init = ours_f()

                def upstream(i, up_=up_, tshape=tshape):
                    g = torch.Generator(device=device).manual_seed(i)
                    return up_(torch.empty(tshape, dtype=dtype, device=device), generator=g)

                r = run_case("torch-factory", case, kname, tshape,  # torchinit reads torch's layout
                             lambda i: init(i, tshape, dtype, device), upstream, sync, args)
                out.append(_show(r))
    return out


# --------------------------------------------------------------------------- report
_HEADER = f"{'group':<14} {'case':<16} {'kernel':<12} {'ours ms':>10} {'upstream ms':>12} {'ratio':>7}"
_TARGET = [1.1]


def _fmt_ms(x):
    return "n/a" if x is None else f"{x:.3f}" if x < 10 else f"{x:.2f}"


def _row(r: Result) -> str:
    ratio = r.ratio
    flag = "" if ratio is None else "  !" if ratio > _TARGET[0] else ""
    rs = "n/a" if ratio is None else f"{ratio:.2f}x"
    line = f"{r.group:<14} {r.case:<16} {r.kernel:<12} {_fmt_ms(r.ours_ms):>10} {_fmt_ms(r.upstream_ms):>12} {rs:>7}{flag}"
    return line + (f"  ({r.note})" if r.note else "")


def _show(r: Result) -> Result:
    print(_row(r), flush=True)
    return r


def environment(framework: str | None = None) -> dict[str, Any]:
    """Versions and devices; ``framework`` ('jax'/'torch') limits it to one (imports only that one)."""
    env: dict[str, Any] = {}
    if framework is None:
        env.update(python=platform.python_version(), platform=platform.platform(), cpu_count=os.cpu_count())
    if framework in (None, "jax"):
        try:
            import flax
            import jax

            env.update(jax=jax.__version__, jaxlib=_jaxlib_version(), flax=flax.__version__,
                       jax_devices=[str(d) for d in jax.devices()], jax_backend=jax.default_backend(),
                       jax_x64=bool(jax.config.jax_enable_x64))
        except ImportError:
            env["jax"] = None
    if framework in (None, "torch"):
        try:
            import torch

            env.update(torch=torch.__version__, torch_cuda_available=torch.cuda.is_available(),
                       torch_device="cuda" if torch.cuda.is_available() else "cpu",
                       torch_threads=torch.get_num_threads())
            if torch.cuda.is_available():
                env["torch_cuda_device"] = torch.cuda.get_device_name(0)
        except ImportError:
            env["torch"] = None
    return env


def _jaxlib_version():
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:  # noqa: BLE001
        return None


def _worker(args, groups, framework: str) -> list[Result]:
    """Run one framework's groups in this process (a child of :func:`main`)."""
    env = environment(framework)
    if env.get(framework) is None:
        print(f"# {framework} not installed: its groups are skipped", flush=True)
        return []
    for k, v in env.items():
        print(f"# {k}: {v}", flush=True)
    kern = kernels(args.quick, args.ortho)
    if framework == "jax":
        return bench_jax(args, kern, groups)
    import torch

    return bench_torch(args, kern, groups, torch.device(env["torch_device"]))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--repeats", type=int, default=None, help="timed calls per side (default 15; 5 with --quick)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per side first (compiles jit)")
    p.add_argument("--quick", action="store_true", help="small kernels and few repeats: a CI smoke run")
    p.add_argument("--ortho", type=int, default=1024, help="side of the square kernel for QR cases (default 1024)")
    p.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    p.add_argument("--filter", default="", help="only cases whose name contains this (e.g. lecun)")
    p.add_argument("--target", type=float, default=1.1, help="mark ratios above this (default 1.1)")
    p.add_argument("--json", metavar="PATH", help="write environment and all samples here")
    p.add_argument("--same-process", action="store_true",
                   help="run JAX and torch in this process (default: one child process each, see README)")
    p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    if args.repeats < 1 or args.warmup < 1:
        p.error("--repeats and --warmup must be >= 1 (warmup excludes jit compilation)")
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        p.error(f"--groups: unknown {bad}; choose from {list(GROUPS)}")
    _TARGET[0] = args.target
    warnings.simplefilter("ignore")  # e.g. zero-element warnings; none expected at these sizes
    frameworks = [fw for fw in ("jax", "torch") if any(g.startswith(fw) for g in groups)]

    if args.worker:  # child: run, then hand the results to the parent as JSON
        results = _worker(args, groups, args.worker)
        with open(args.worker_out, "w") as f:
            json.dump({"environment": environment(args.worker), "results": [r._asdict() for r in results]}, f)
        return 0

    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                           "cpu_count": os.cpu_count()}  # frameworks report from their workers
    print("# jaxinit/torchinit initializer benchmark: ratio = ours / upstream (median of repeats)")
    for k, v in env.items():
        print(f"# {k}: {v}")
    print(f"# dtype={args.dtype} repeats={args.repeats} warmup={args.warmup} quick={args.quick} "
          f"target={args.target}x ('!' marks ratios above it)")
    kern = kernels(args.quick, args.ortho)
    print("# kernels: " + ", ".join(f"{k}=flax{v['flax']}/torch{v['torch']}" for k, v in kern.items()))
    print(_HEADER)
    print("-" * len(_HEADER), flush=True)

    results: list[Result] = []
    for fw in frameworks:
        if args.same_process:
            results += _worker(args, groups, fw)
            env.update(environment(fw))
            continue
        # One process per framework, so neither one's thread pools, allocator or compile
        # caches are live while the other is timed.
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, f"{fw}.json")
            cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", fw, "--worker-out", out]
            rc = subprocess.call(cmd)
            if rc != 0 or not os.path.exists(out):
                print(f"# {fw} worker failed (exit {rc}); its groups are missing", flush=True)
                continue
            with open(out) as f:
                got = json.load(f)
        env.update(got["environment"])
        results += [Result(**{**r, "shape": tuple(r["shape"])}) for r in got["results"]]

    over = [r for r in results if r.ratio is not None and r.ratio > args.target]
    ratios = [r.ratio for r in results if r.ratio is not None]
    if ratios:
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        print(f"# {len(results)} cases; geometric-mean ratio {geo:.2f}x; "
              f"{len(over)} above {args.target}x: " + (", ".join(f"{r.group}/{r.case}/{r.kernel}" for r in over) or "none"))
    if args.json:
        payload = {
            "environment": env,
            "settings": {k: getattr(args, k) for k in ("dtype", "repeats", "warmup", "quick", "ortho", "target")},
            "kernels": {k: {"flax": list(v["flax"]), "torch": list(v["torch"])} for k, v in kern.items()},
            "results": [
                {"group": r.group, "case": r.case, "kernel": r.kernel, "shape": list(r.shape),
                 "ours_ms": r.ours_ms, "upstream_ms": r.upstream_ms, "ratio": r.ratio,
                 "above_target": r.ratio is not None and r.ratio > args.target, "note": r.note,
                 "ours_samples_ms": r.ours_samples, "upstream_samples_ms": r.upstream_samples}
                for r in results
            ],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
