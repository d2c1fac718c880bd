"""The device report's ``precision`` section: the same twin at each precision setting, torch vs JAX.

One row per (twin, setting). A setting is a torch configuration
(``torch.set_float32_matmul_precision`` / ``torch.backends.cuda.matmul.allow_tf32``,
``torch.backends.cudnn.allow_tf32``), applied in torch by ``torchinit.amp.precision_contract(...)``
and in JAX by ``jaxinit.amp.precision_contract(...)`` of the SAME arguments (the library's
precision contract: ``jax.default_matmul_precision`` for dots, Linen convolutions at the conv
level), or an autocast (``torch.autocast(device, dtype)`` vs ``jaxinit.amp.Autocast(device,
dtype)``, under the float32 setting). The twins are ``parity_tests/_amp_twins.py``'s (an MLP, a
conv net with BatchNorm, a transformer block), float32 weights copied from torch, in eval mode;
measured: the forward output, ``max|a - b| / max(1, max|b|)``:

* ``torch vs JAX``: the two frameworks at that setting;
* ``torch vs its float32`` / ``JAX vs its float32``: each framework against its own output in the
  float32 setting (the precision gap the setting opens).

A contract that does its job keeps ``torch vs JAX`` well below both gaps. TF32 settings act on
CUDA GPUs (Ampere and later) only, so on a CPU they are listed as skipped, as is float16 autocast
(torch's CPU autocast accepts it, but no CPU run is the target of this table); the CPU rows are the
float32 setting and bfloat16 autocast.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

# (name, torch configuration = precision_contract arguments, devices where the row is meaningful)
SETTINGS: tuple[tuple[str, dict, tuple[str, ...]], ...] = (
    ("float32: matmul 'highest', cudnn.allow_tf32=False",
     dict(float32_matmul_precision="highest", cudnn_allow_tf32=False), ("cpu", "cuda")),
    ("torch's defaults: matmul 'highest', cudnn.allow_tf32=True",
     dict(float32_matmul_precision="highest", cudnn_allow_tf32=True), ("cuda",)),
    ("matmul.allow_tf32=True, cudnn.allow_tf32=False", dict(allow_tf32=True, cudnn_allow_tf32=False), ("cuda",)),
    ("matmul 'high', cudnn.allow_tf32=True", dict(float32_matmul_precision="high", cudnn_allow_tf32=True),
     ("cuda",)),
    ("matmul 'medium', cudnn.allow_tf32=True", dict(float32_matmul_precision="medium", cudnn_allow_tf32=True),
     ("cuda",)),
)
AUTOCASTS: tuple[tuple[str, tuple[str, ...]], ...] = (("bfloat16", ("cpu", "cuda")), ("float16", ("cuda",)))
FLOAT32 = SETTINGS[0][1]
COLUMNS = ["twin", "setting", "JAX computes", "torch vs JAX", "torch vs JAX, bits", "torch vs its float32",
           "JAX vs its float32"]


def _rel(a, b) -> float:
    a, b = (np.asarray(v.float().numpy() if hasattr(v, "numpy") else v, np.float64) for v in (a, b))
    return float(np.abs(a - b).max(initial=0.0)) / max(1.0, float(np.abs(b).max(initial=0.0)))


def setup(name: str, device: str, seed: int = 0):
    """(torch model on ``device`` in eval mode, Linen model, its variables, torch input, JAX input)."""
    import jax
    import jax.numpy as jnp
    import torch

    import jaxinit
    from parity_tests import _amp_twins as T

    if name not in T.TWINS:
        raise ValueError(f"precision: twin must be one of {sorted(T.TWINS)}, got {name!r}.")
    tcls, lcls, shape, perm = T.TWINS[name]
    torch.manual_seed(seed)
    tmodel = tcls().eval()
    model = lcls()
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    xj = x.transpose(perm) if perm else x
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.asarray(xj)))
    variables = jaxinit.from_torch_state_dict(tmodel, template)
    return tmodel.to(device), model, variables, torch.from_numpy(x).to(device), jnp.asarray(xj)


def torch_forward(tmodel, x, setting: dict, autocast: str | None, device: str):
    """The torch twin's output (its dtype, on the CPU) under ``torchinit.amp.precision_contract(**setting)``
    (and autocast)."""
    import torch

    import torchinit.amp

    ac = torch.autocast(device, getattr(torch, autocast)) if autocast else contextlib.nullcontext()
    # autograd on, as in training (what the policy reproduces): under torch.no_grad() torch's CPU bf16
    # autocast takes other kernels for nn.MultiheadAttention (40% of this block's bf16 logits move by
    # one ulp against the same forward with autograd on)
    with torchinit.amp.precision_contract(**setting), ac:
        return tmodel(x).detach().cpu()


def jax_forward(model, variables, x, setting: dict, autocast: str | None, device: str) -> np.ndarray:
    """The Flax twin's output, traced under ``jaxinit.amp.precision_contract(**setting)`` (and under
    ``jaxinit.amp.Autocast(device, autocast)``), jitted afresh so the setting is the one traced."""
    import jax
    import jax.numpy as jnp

    import jaxinit.amp as ja

    policy = ja.Autocast(device, getattr(jnp, autocast)) if autocast else ja.Autocast(enabled=False)

    def forward(v, x):
        with policy:
            return model.apply(v, x, train=False)

    with ja.precision_contract(**setting):
        out = jax.jit(forward)(variables, x)
    return np.asarray(out)


def section(cfg) -> dict:
    import jax
    import torch

    import jaxinit.amp as ja
    from parity_tests.device_report import compare

    device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = jax.default_backend()
    jb = "gpu" if backend in ("cuda", "rocm", "gpu") else backend
    twins = ("mlp",) if cfg.quick else ("mlp", "conv_bn", "transformer_block")
    rows: list[dict[str, Any]] = []
    for twin in twins:
        tmodel, model, variables, xt, xj = setup(twin, device)
        ref: dict[str, np.ndarray] = {}
        runs = [(name, kw, None, devs) for name, kw, devs in SETTINGS]
        runs += [(f"autocast {dt} ({device}), float32 otherwise", FLOAT32, dt, devs) for dt, devs in AUTOCASTS]
        for name, kw, autocast, devs in runs:
            row: dict[str, Any] = {"twin": twin, "setting": name}
            if device not in devs:
                row["JAX computes"] = "skipped (CUDA only: " + (
                    "torch's TF32 settings act on CUDA GPUs)" if autocast is None else "the CUDA autocast's dtype)")
                rows.append(row)
                continue
            contract = ja.precision_contract(**kw)
            computes = {k: ja.precision_from_jax(getattr(contract, k), backend=jb).matmul for k in ("matmul", "conv")}
            row["JAX computes"] = (f"{contract.matmul} matmul ({computes['matmul']}), {contract.conv} conv "
                                   f"({computes['conv']})") + (f", autocast {autocast}" if autocast else "")
            t = torch_forward(tmodel, xt, kw, autocast, device)
            j = jax_forward(model, variables, xj, kw, autocast, device)
            if not ref:
                ref = {"torch": t, "jax": j}
            row.update({"torch vs JAX": _rel(t, j), "torch vs JAX, bits": compare(t, j, True),
                        "torch vs its float32": _rel(t, ref["torch"]),
                        "JAX vs its float32": _rel(j, ref["jax"])})
            rows.append(row)
    notes = [f"torch on {device} ({torch.__version__}), JAX on {backend}; twins of parity_tests/_amp_twins.py, "
             "float32 weights copied from torch, eval mode, one batch; the forward output compared as "
             "max|a - b| / max(1, max|b|), and bit by bit in the output's dtype (bitwise, or the largest ulp "
             "distance and the share of differing values). Each setting is torch's configuration applied by "
             "torchinit.amp.precision_contract(...) and its JAX twin jaxinit.amp.precision_contract(...) (same "
             "arguments); 'JAX computes' is the contract's level for matmuls and convolutions and, in brackets, "
             "what that level computes on this backend (jaxinit.amp.precision_from_jax). Autocast rows: "
             "torch.autocast(device, dtype) vs jaxinit.amp.Autocast(device, dtype), float32 setting otherwise.",
             "Read: 'torch vs JAX' well below both 'vs its float32' gaps means the contract (or the autocast "
             "policy) makes JAX compute what torch computes at that setting; equal to the gaps means it does not."]
    return {"columns": COLUMNS, "rows": rows, "notes": notes, "cell": _bits_cell}


def _bits_cell(c: dict) -> str:
    from parity_tests.device_report import _cell

    return _cell(c)
