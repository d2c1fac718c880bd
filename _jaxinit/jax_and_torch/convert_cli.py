"""``python -m jaxinit.convert SRC DST --to flax|torch``: convert a checkpoint on disk, one tensor at a time.

SRC / DST: a ``.safetensors`` file, a Hugging Face sharded directory (``model.safetensors.index.json``),
a torch DCP directory, ``torch.save`` files as a source (``.pt``/``.bin`` or ``pytorch_model.bin.index.json``,
read with ``torch.load(mmap=True, weights_only=True)``), or an Orbax checkpoint directory (the Flax side; a ``.safetensors`` DST with
``--to flax`` gets Flax names). Options:

- ``--options FILE``: JSON ``{"mapping": {"torch.prefix": "flax/path"}, "kinds": {"prefix": kind or
  [kind, {options}]}, "batchnorm": "torch"|"flax", "merge_rnn_biases": bool}`` (the arguments of
  ``from_torch_state_dict``); ``--mapping FILE``: JSON of the mapping alone;
- ``--sharding fsdp|replicated|none``: how the arrays are split over ``jax.devices()`` when written
  to Orbax (``fsdp``: each tensor's largest axis the device count divides);
- ``--format safetensors|dcp`` (torch output), ``--max-shard-size 5GB``, ``--no-progress``;
- ``--optimizer`` (with ``--to torch``): SRC is an optimizer state (a DCP directory holding
  ``optimizer.state_dict()`` or ``get_optimizer_state_dict(...)``, or jaxinit's optimizer
  safetensors, one file or sharded) and DST gets it in the other format (``--format``), one tensor
  at a time; the state stays in torch's layout, which ``jaxinit.optim.load_optimizer_state``
  reads into sharded optax state.

A tqdm bar runs over tensors; at the end a summary says how many source tensors were renamed,
transposed, kept, rebuilt (computed from several, e.g. LSTM gates) or dropped, and names the dropped
ones. Needs jax for Orbax and torch for DCP, each imported only when used; the conversion itself is
``jaxinit.convert_checkpoint`` (or ``torchinit.convert_checkpoint`` for DCP).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from _jaxinit.errors import InitError
from _jaxinit.sharded import summary_lines


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m jaxinit.convert", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--to", required=True, choices=("flax", "torch"))
    ap.add_argument("--options", help="JSON file: mapping, kinds, batchnorm, merge_rnn_biases")
    ap.add_argument("--mapping", help="JSON file {'torch.prefix': 'flax/path'}")
    ap.add_argument("--sharding", default="none", choices=("none", "fsdp", "replicated"))
    ap.add_argument("--format", default=None, choices=("safetensors", "dcp"), help="torch output format")
    ap.add_argument("--max-shard-size", default="5GB")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--optimizer", action="store_true", help="SRC is an optimizer state (DCP or safetensors)")
    return ap


def _load_json(path: str, what: str) -> dict:
    try:
        with open(path) as fh:
            out = json.load(fh)
    except (OSError, ValueError) as err:
        raise InitError(f"--{what} {path!r}: cannot read it as JSON ({err}).") from err
    if not isinstance(out, dict):
        raise InitError(f"--{what} {path!r}: expected a JSON object, got {type(out).__name__}.")
    return out


def _needs_torch(path: str) -> bool:
    """A DCP directory or torch.save files: read by torch."""
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, ".metadata")) or (
            os.path.exists(os.path.join(path, "pytorch_model.bin.index.json"))
            and not os.path.exists(os.path.join(path, "model.safetensors.index.json")))
    return path.endswith((".pt", ".pth", ".bin", ".bin.index.json"))


def _optimizer(args: argparse.Namespace) -> dict:
    """An optimizer state file <-> file, one tensor at a time (DCP and jaxinit's optimizer safetensors)."""
    from _jaxinit import optimizer_files as _of
    from _jaxinit import sharded
    from _jaxinit.arrays import to_numpy

    who = "python -m jaxinit.convert --optimizer"
    if args.to != "torch":
        raise InitError(f"{who}: optimizer state files stay in torch's layout: pass --to torch "
                        "(jaxinit.optim.load_optimizer_state builds the sharded optax state from them).")
    if args.options or args.mapping or args.sharding != "none":
        raise InitError(f"{who}: --options, --mapping and --sharding apply to weights, not to optimizer state.")
    if os.path.exists(args.dst):
        raise FileExistsError(f"{who}: {args.dst!r} exists; remove it or choose another destination.")
    fmt = args.format or ("safetensors" if _of.is_dcp(args.src) else "dcp")  # default: the other format
    torch: Any = None
    if _of.is_dcp(args.src) or fmt == "dcp":
        import torch as torch_module

        torch = torch_module
    body = _of.open_optimizer_state(args.src, who, torch)
    extra = {k: body[k] for k in ("class", "defaults", "shapes", "dtypes", "schedules") if body.get(k) is not None}
    sd = body["state"]
    if fmt == "dcp":
        _of.write_optimizer_dcp(args.dst, sd, torch, who, extra, to_numpy)
    else:
        _of.write_optimizer_safetensors(args.dst, sd, to_numpy, who, extra, sharded.parse_size(args.max_shard_size, who))
    kept = [(f"state/{i}/{k}", f"state/{i}/{k}") for i, entry in sd["state"].items() for k, v in entry.items()
            if hasattr(v, "shape")]
    return {"renamed": [], "transposed": [], "kept": kept, "rebuilt": [], "dropped": []}


def run(args: argparse.Namespace) -> dict:
    if getattr(args, "optimizer", False):
        return _optimizer(args)
    opts = _load_json(args.options, "options") if args.options else {}
    unknown = set(opts) - {"mapping", "kinds", "batchnorm", "merge_rnn_biases"}
    if unknown:
        raise InitError(f"--options: unknown keys {sorted(unknown)}; accepted: mapping, kinds, batchnorm, "
                        "merge_rnn_biases.")
    if args.mapping:
        opts["mapping"] = _load_json(args.mapping, "mapping")
    kinds = {k: tuple(v) if isinstance(v, list) else v for k, v in (opts.get("kinds") or {}).items()}
    common = dict(to=args.to, mapping=opts.get("mapping"), kinds=kinds or None,
                  batchnorm=opts.get("batchnorm", "torch"), progress=not args.no_progress)
    sharding = None if args.sharding == "none" else args.sharding
    if args.to == "flax" and _needs_torch(args.src):
        # torch's DCP reader (or torch.load(mmap=True)) feeds jaxinit's Orbax writer
        from jaxinit._src import checkpoint_io as jio
        from torchinit._src.checkpoint_io import torch_reader

        reader = torch_reader(args.src, "python -m jaxinit.convert")
        return jio.convert_checkpoint(reader, args.dst, sharding=sharding,
                                      merge_rnn_biases=bool(opts.get("merge_rnn_biases", False)), **common)
    if args.to == "torch" and args.format == "dcp":
        # jaxinit's Orbax reader (or a Flax-named .safetensors) feeding torch's DCP writer
        from _jaxinit import sharded
        from torchinit._src.checkpoint_io import DCPWriter

        who = "python -m jaxinit.convert"
        sharded.check_common("torch", "dcp", None, args.dst, who)
        if os.path.isdir(args.src):
            from jaxinit._src.checkpoint_io import OrbaxReader

            flax_reader: Any = OrbaxReader(args.src, who)
        else:
            flax_reader = sharded.FlaxNamedReader(sharded.SafetensorsReader(args.src, who), who)
        plan = sharded.plan_flax_to_torch(flax_reader.infos, template=None, mapping=common["mapping"],
                                          kinds=kinds or None, batchnorm=common["batchnorm"], who=who)
        return DCPWriter(args.dst, who).run(flax_reader, plan, sharded.progress_bar(len(plan.outputs), bool(common["progress"])))
    if args.to == "flax" and args.dst.endswith(".safetensors") and sharding is None:
        import torchinit

        return torchinit.convert_checkpoint(args.src, args.dst,
                                            merge_rnn_biases=bool(opts.get("merge_rnn_biases", False)),
                                            max_shard_size=args.max_shard_size, **common)
    import jaxinit

    return jaxinit.convert_checkpoint(args.src, args.dst, sharding=sharding, format=args.format,
                                      merge_rnn_biases=bool(opts.get("merge_rnn_biases", False)),
                                      max_shard_size=args.max_shard_size, **common)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        summary = run(args)
    except (InitError, FileExistsError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in summary_lines(summary):
        print(line)
    print(f"wrote {args.dst}")
    return 0
