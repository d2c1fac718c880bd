"""Checkpoint conversion at scale: throughput (GB/s) and peak resident memory, against plain
safetensors load+save of the same files, measured in the same run.

A torch checkpoint of Linear layers (float32, ``layers.i.weight`` (out, in) + bias) is written as a
Hugging Face sharded directory (1 GB files); then, each in a fresh process with 4 CPU devices:

- ``read_sharded``: the reading half of ``to_flax``: each array built directly in its sharding
  (``sharding='fsdp'``: split over the 4 devices) from sliced reads, then dropped;
- ``to_flax``: ``jaxinit.convert_checkpoint(src, orbax_dir, to='flax', sharding='fsdp')``;
- ``to_torch``: ``jaxinit.convert_checkpoint(orbax_dir, back_dir, to='torch')``;
- ``plain``: every shard ``safetensors.numpy.load_file`` + ``save_file`` (no conversion): the
  upstream floor for moving the same bytes.

Peak memory is the process's ``VmHWM`` (``/proc/self/status``) after resetting it with
``/proc/self/clear_refs`` (and ``malloc_trim``) once the libraries are imported and warmed up, minus
``VmRSS`` at that moment: the memory the conversion itself holds at its peak (file pages mapped by safetensors
included). The round trip is checked bitwise tensor by tensor. Nothing is asserted: speed is
reported, never tested (parity_tests/test_checkpoint_io.py asserts the memory bound).

    python benchmarks/bench_checkpoint.py                  # 2.5 GB, largest tensor 256 MiB
    python benchmarks/bench_checkpoint.py --gb 0.25 --largest-mb 32   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(path: str, total_bytes: int, largest_bytes: int, seed: int = 0) -> dict:
    """A Hugging Face sharded torch checkpoint of float32 Linear layers, written one tensor at a
    time; the first layer's weight is the largest tensor (``largest_bytes``). Returns its shapes."""
    import numpy as np

    from _jaxinit.sharded import SafetensorsWriter

    rng = np.random.default_rng(seed)
    side = int((largest_bytes // 4) ** 0.5)
    side -= side % 8
    shapes: dict = {}
    total, i = 0, 0
    while total < total_bytes:
        out_f, in_f = (side, side) if i == 0 else (side // 2, side)
        shapes[f"layers.{i}.weight"] = (out_f, in_f)
        shapes[f"layers.{i}.bias"] = (out_f,)
        total += 4 * (out_f * in_f + out_f)
        i += 1
    writer = SafetensorsWriter(path, [(k, s, np.float32) for k, s in shapes.items()], max_shard_bytes=10**9)
    try:
        for k, s in shapes.items():
            writer.write(k, rng.standard_normal(s, dtype=np.float32))
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return shapes


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _reset_peak() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``: memory freed earlier and kept by
    the allocator would otherwise be reused unseen), then reset VmHWM to the current RSS."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    with open("/proc/self/clear_refs", "w") as fh:  # '5': reset VmHWM to the current RSS (proc(5))
        fh.write("5")


def child(mode: str, src: str, dst: str) -> dict:
    """Run one conversion in THIS process (4 CPU devices) and measure it."""
    import jax

    import jaxinit
    from _jaxinit.sharded import SafetensorsReader

    jax.config.update("jax_enable_x64", True)
    # warm-up: the import-time and first-call allocations of jax/orbax are not the conversion's
    warm = tempfile.mkdtemp()
    try:
        generate(os.path.join(warm, "w"), 1 << 16, 1 << 14)
        jaxinit.convert_checkpoint(os.path.join(warm, "w"), os.path.join(warm, "o"), to="flax", sharding="fsdp")
        jaxinit.convert_checkpoint(os.path.join(warm, "o"), os.path.join(warm, "b"), to="torch")
    finally:
        shutil.rmtree(warm)
    _reset_peak()
    base = _status("VmRSS")
    t = time.perf_counter()
    if mode == "to_flax":
        jaxinit.convert_checkpoint(src, dst, to="flax", sharding="fsdp")
    elif mode == "read_sharded":  # the reading half of to_flax: every array built in its sharding, then dropped
        from jaxinit._src.checkpoint_io import stream_torch_to_flax, torch_reader

        stream_torch_to_flax(torch_reader(src, "bench"), lambda key, arr: arr.block_until_ready(), sharding="fsdp",
                             who="bench")
    elif mode == "to_torch":
        jaxinit.convert_checkpoint(src, dst, to="torch")
    elif mode == "plain":
        import safetensors.numpy

        os.makedirs(dst)
        for name in sorted(os.listdir(src)):
            if name.endswith(".safetensors"):
                safetensors.numpy.save_file(safetensors.numpy.load_file(os.path.join(src, name)),
                                            os.path.join(dst, name))
            else:
                shutil.copy(os.path.join(src, name), dst)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - t
    peak = _status("VmHWM")
    reader = SafetensorsReader(dst if mode == "to_torch" else src, "bench")
    largest = max(i.nbytes for i in reader.infos.values())
    total = sum(i.nbytes for i in reader.infos.values())
    return {"mode": mode, "seconds": seconds, "bytes": total, "largest": largest, "baseline": base,
            "peak_above_baseline": peak - base, "gb_per_s": total / seconds / 1e9}


def measure(mode: str, src: str, dst: str, devices: int = 4, timeout: float = 1800) -> dict:
    """:func:`child` in a fresh interpreter with ``devices`` CPU devices; its JSON result."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu")
    code = ("import json, sys; sys.path.insert(0, %r); from benchmarks.bench_checkpoint import child; "
            "print('RESULT', json.dumps(child(%r, %r, %r)))" % (ROOT, mode, src, dst))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        raise RuntimeError(f"{mode} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def same_tensors(a: str, b: str) -> bool:
    """Bitwise equality of two torch safetensors checkpoints, one tensor at a time."""
    from _jaxinit.sharded import SafetensorsReader

    ra, rb = SafetensorsReader(a, "compare"), SafetensorsReader(b, "compare")
    if {k: (i.shape, i.dtype) for k, i in ra.infos.items()} != {k: (i.shape, i.dtype) for k, i in rb.infos.items()}:
        return False
    return all(ra.read(k).tobytes() == rb.read(k).tobytes() for k in ra.infos)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=2.5)
    ap.add_argument("--largest-mb", type=float, default=256)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a new temporary one, removed)")
    args = ap.parse_args()
    root = args.dir or tempfile.mkdtemp(prefix="bench_checkpoint_")
    try:
        src, orbax, back, plain = (os.path.join(root, n) for n in ("torch", "orbax", "back", "plain"))
        generate(src, int(args.gb * 1e9), int(args.largest_mb * 2**20))
        rows = [measure("plain", src, plain)]
        shutil.rmtree(plain)
        rows.append(measure("read_sharded", src, ""))
        rows.append(measure("to_flax", src, orbax))
        rows.append(measure("to_torch", orbax, back))
        ok = same_tensors(src, back)
        print(f"checkpoint {rows[0]['bytes'] / 1e9:.2f} GB, largest tensor {rows[0]['largest'] / 2**20:.0f} MiB; "
              f"round trip bitwise: {ok}")
        print("| case | seconds | GB/s | ratio vs plain | peak above baseline | x largest tensor |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['mode']} | {r['seconds']:.1f} | {r['gb_per_s']:.2f} | "
                  f"{r['gb_per_s'] / rows[0]['gb_per_s']:.2f} | {r['peak_above_baseline'] / 2**20:.0f} MiB | "
                  f"{r['peak_above_baseline'] / r['largest']:.2f} |")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
