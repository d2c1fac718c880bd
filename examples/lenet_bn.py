"""LeNet-5 with BatchNorm, trained in JAX/Flax (jaxinit) and in PyTorch side by side.

The textbook experiment (d2l.ai, "Batch Normalization"): LeNet-5 with BatchNorm
after every convolution and hidden dense layer, sigmoid activations, Xavier-uniform
weights, plain SGD with lr 1.0, batch 256, 10 epochs. ``--framework both`` (the
project's main job) starts both frameworks from identical weights, feeds them
identical batches (one numpy shuffling RNG), and prints a side-by-side table per
epoch, the largest step-by-step loss difference and whether the runs diverge.

    python examples/lenet_bn.py --framework both                     # embedded digits
    python examples/lenet_bn.py --framework jax --data-dir ~/fashion  # Fashion-MNIST IDX files
    python examples/lenet_bn.py --checkpoint-dir ck --resume          # continue an interrupted run

JAX path: ``jaxinit.BatchNorm`` (PyTorch's semantics: momentum 0.1, unbiased running
variance, num_batches_tracked), ``jaxinit.optim.sgd``; each group of steps is one
jit-compiled ``lax.scan``; the batch axis is sharded over all local devices with a
``NamedSharding``, so BatchNorm reduces over the global batch inside jit (its
statistics are global, no ``axis_name`` needed). Torch path: ``torchinit.BatchNorm`` (torch's
BatchNorm kernel and semantics), ``torchinit.optim.sgd`` (``torch.optim.SGD``), CUDA when present. In ``both`` mode JAX matmuls run at "highest"
precision and torch's TF32 is off, so the comparison measures the libraries, not TF32.
The Flax model flattens in torch's (C, H, W) order, so ``jaxinit.to_torch_state_dict``
converts its weights layer by layer (the torch model's attribute names are the Flax
module names).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

VARIANTS = ("bn_all", "bn_conv", "dropout")
# A per-step loss difference above this is reported as divergence. Rounding alone gives up to
# ~5e-4 with lr 1.0 (see parity_tests/test_examples.py); a real semantic difference gives > 1e-1.
DIVERGENCE = 1e-2


# ---------------------------------------------------------------- JAX / Flax

@functools.lru_cache(maxsize=None)
def _flax_lenet_class():
    import flax.linen as nn
    import jax.numpy as jnp

    import jaxinit
    import jaxinit.linen as tl

    class LeNet(nn.Module):
        variant: str = "bn_all"
        dropout: float = 0.5

        @nn.compact
        def __call__(self, x, train: bool):
            xu = jaxinit.xavier_uniform()  # d2l's init_weights; biases keep torch's default U(+-1/sqrt(fan_in))

            def norm(name, x):
                if self.variant == "bn_all" or (self.variant == "bn_conv" and name in ("bn1", "bn2")):
                    return jaxinit.BatchNorm(use_running_average=not train, name=name)(x)
                return x

            def drop(x):
                return nn.Dropout(self.dropout, deterministic=not train)(x) if self.variant == "dropout" else x

            x = tl.Conv(6, (5, 5), padding="VALID", kernel_init=xu, name="conv1")(x)
            x = nn.avg_pool(nn.sigmoid(norm("bn1", x)), (2, 2), strides=(2, 2))
            x = tl.Conv(16, (5, 5), padding="VALID", kernel_init=xu, name="conv2")(x)
            x = nn.avg_pool(nn.sigmoid(norm("bn2", x)), (2, 2), strides=(2, 2))
            x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch's (C, H, W) flatten order
            x = drop(nn.sigmoid(norm("bn3", tl.Dense(120, kernel_init=xu, name="fc1")(x))))
            x = drop(nn.sigmoid(norm("bn4", tl.Dense(84, kernel_init=xu, name="fc2")(x))))
            return tl.Dense(10, kernel_init=xu, name="fc3")(x)

    return LeNet


def jax_model(variant: str = "bn_all", dropout: float = 0.5):
    """The Flax LeNet. ``variant``: BatchNorm after every layer (``bn_all``), after the two
    convolutions only (``bn_conv``), or no BatchNorm and dropout after the hidden dense layers."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: use one of {VARIANTS}")
    return _flax_lenet_class()(variant=variant, dropout=dropout)


def _init_state(model, tx, image_shape, seed):
    import jax
    import jax.numpy as jnp

    key = jax.random.key(seed)
    variables = model.init({"params": key}, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {}),
            "opt_state": tx.init(variables["params"]), "step": jnp.zeros((), jnp.int32),
            "seed": jnp.asarray(seed, jnp.int32)}


@functools.lru_cache(maxsize=8)
def _jax_programs(model, lr: float, momentum: float, batch_size: int, chunk: int, image_shape: tuple):
    """(mesh, optimizer, compiled step group, jitted eval logits, compile seconds), cached per setting."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import jaxinit.optim

    devices = jax.devices()
    n_dev = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    mesh = Mesh(np.array(devices[:n_dev]), ("batch",))
    data, replicated = NamedSharding(mesh, P(None, "batch")), NamedSharding(mesh, P())
    tx = jaxinit.optim.sgd(lr, momentum=momentum)

    def step(state, batch):
        x, y = batch
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(state["seed"]), 1), state["step"])  # dropout

        def loss_fn(params):
            logits, upd = model.apply({"params": params, "batch_stats": state["batch_stats"]}, x, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": rng})
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (logits, upd)

        (loss, (logits, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "batch_stats": upd.get("batch_stats", {}),
               "opt_state": opt_state, "step": state["step"] + 1, "seed": state["seed"]}
        return new, (loss, jnp.sum(jnp.argmax(logits, -1) == y))

    def train_chunk(state, xs, ys):
        return jax.lax.scan(step, state, (xs, ys))

    def logits(state, x):
        return model.apply({"params": state["params"], "batch_stats": state["batch_stats"]}, x, train=False)

    t0 = time.perf_counter()
    abstract = jax.eval_shape(functools.partial(_init_state, model, tx, image_shape), 0)
    abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract)
    xs = jax.ShapeDtypeStruct((chunk, batch_size, *image_shape), jnp.float32, sharding=data)
    ys = jax.ShapeDtypeStruct((chunk, batch_size), jnp.int32, sharding=data)
    compiled = jax.jit(train_chunk).lower(abstract, xs, ys).compile()
    return mesh, tx, compiled, jax.jit(logits), time.perf_counter() - t0


class JaxTrainer:
    """The Flax state and the compiled, sharded group of ``chunk`` training steps (one ``lax.scan``)."""

    def __init__(self, model, lr: float, seed: int, batch_size: int, chunk: int, image_shape, momentum: float = 0.0):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec as P

        t0 = time.perf_counter()
        self.mesh, self.tx, self.train_chunk, self.logits, _ = _jax_programs(
            model, float(lr), float(momentum), batch_size, chunk, tuple(image_shape))
        self.compile_seconds = time.perf_counter() - t0  # ~0 when an identical run compiled it already
        self.data_sharding = NamedSharding(self.mesh, P(None, "batch"))
        self.replicated = NamedSharding(self.mesh, P())
        self.n_devices = self.mesh.size
        self.model = model
        self.state = jax.device_put(_init_state(model, self.tx, tuple(image_shape), seed), self.replicated)

    def train_epoch(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray, chunk: int, bar: bool):
        import jax

        losses, correct = [], 0
        t0 = time.perf_counter()
        groups = idx.reshape(-1, chunk, idx.shape[1])
        for g in _common.progress(groups, bar, desc="jax  ", unit="chunk"):
            xs = jax.device_put(x[g], self.data_sharding)
            ys = jax.device_put(y[g], self.data_sharding)
            self.state, (loss, corr) = self.train_chunk(self.state, xs, ys)
            losses.append(np.asarray(loss))
            correct += int(np.asarray(corr).sum())
        seconds = time.perf_counter() - t0
        return np.concatenate(losses).astype(np.float64), correct, seconds

    def accuracy(self, x: np.ndarray, y: np.ndarray, chunk: int = 1000) -> float:
        correct = 0
        for i in range(0, len(x), chunk):
            correct += int((np.asarray(self.logits(self.state, x[i:i + chunk])).argmax(-1) == y[i:i + chunk]).sum())
        return correct / len(x)

    def to_numpy(self):
        import jax
        from flax import serialization

        return serialization.to_state_dict(jax.device_get(self.state))

    def from_numpy(self, tree) -> None:
        import jax
        from flax import serialization

        self.state = jax.device_put(serialization.from_state_dict(self.state, tree), self.replicated)


# ---------------------------------------------------------------- PyTorch

def torch_model(variant: str = "bn_all", dropout: float = 0.5):
    """The same LeNet in torch (torch.nn layers, torchinit.BatchNorm); attribute names match the Flax modules."""
    import torch
    from torch import nn

    import torchinit

    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: use one of {VARIANTS}")

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            conv_bn = variant in ("bn_all", "bn_conv")
            dense_bn = variant == "bn_all"
            self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)
            # torchinit.BatchNorm: torch.nn.BatchNorm{1,2}d's semantics and kernel, the mirror of jaxinit.BatchNorm
            self.bn1 = torchinit.BatchNorm(6) if conv_bn else nn.Identity()
            self.bn2 = torchinit.BatchNorm(16) if conv_bn else nn.Identity()
            self.bn3 = torchinit.BatchNorm(120) if dense_bn else nn.Identity()
            self.bn4 = torchinit.BatchNorm(84) if dense_bn else nn.Identity()
            self.drop = nn.Dropout(dropout) if variant == "dropout" else nn.Identity()

        def forward(self, x):
            x = nn.functional.avg_pool2d(torch.sigmoid(self.bn1(self.conv1(x))), 2, 2)
            x = nn.functional.avg_pool2d(torch.sigmoid(self.bn2(self.conv2(x))), 2, 2)
            x = torch.flatten(x, 1)
            x = self.drop(torch.sigmoid(self.bn3(self.fc1(x))))
            x = self.drop(torch.sigmoid(self.bn4(self.fc2(x))))
            return self.fc3(x)

    return LeNet()


class TorchTrainer:
    def __init__(self, model, lr: float, seed: int, init_from=None, momentum: float = 0.0):
        import torch

        import torchinit
        import torchinit.optim

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if init_from is None:  # torch-only run: d2l's init_weights with torch's RNG
            for m in model.modules():
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                    torchinit.xavier_uniform_(m.weight)
        else:  # the library's converter: per-layer transposes, BatchNorm statistics and counter
            import jaxinit

            variables = {"params": init_from["params"], "batch_stats": init_from["batch_stats"]}
            model.load_state_dict(jaxinit.to_torch_state_dict(variables, model))
        self.model = model.to(self.device)
        # torchinit.optim.sgd: the mirror of jaxinit.optim.sgd; plain settings give torch.optim.SGD(foreach=True)
        self.opt = torchinit.optim.sgd(self.model.parameters(), lr, momentum=momentum)
        self._x = self._y = None

    def rng_state(self) -> dict:
        """torch's global RNG states (dropout masks), for checkpoints."""
        import torch

        return {"cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def set_rng_state(self, state: dict) -> None:
        import torch

        torch.set_rng_state(state["cpu"])
        if state["cuda"]:
            torch.cuda.set_rng_state_all(state["cuda"])

    def _data(self, x, y):
        import torch

        key = (id(x), id(y))
        if self._x is None or self._x[0] != key:  # one device copy of the dataset, NCHW
            self._x = (key, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device))
            self._y = torch.from_numpy(y.astype(np.int64)).to(self.device)
        return self._x[1], self._y

    def train_epoch(self, x, y, idx, bar: bool):
        import torch
        import torch.nn.functional as F

        X, Y = self._data(x, y)
        index = torch.from_numpy(idx).to(self.device)
        self.model.train()
        losses, correct = [], torch.zeros((), dtype=torch.int64, device=self.device)
        t0 = time.perf_counter()
        for i in _common.progress(range(len(idx)), bar, desc="torch", unit="step"):
            xb, yb = X[index[i]], Y[index[i]]
            self.opt.zero_grad(set_to_none=True)
            logits = self.model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            self.opt.step()
            losses.append(loss.detach())
            correct += (logits.argmax(1) == yb).sum()
        losses = torch.stack(losses).double().cpu().numpy()
        seconds = time.perf_counter() - t0
        return losses, int(correct), seconds

    def accuracy(self, x, y, chunk: int = 1000) -> float:
        import torch

        self.model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + chunk].transpose(0, 3, 1, 2))).to(self.device)
                correct += int((self.model(xb).argmax(1).cpu().numpy() == y[i:i + chunk]).sum())
        return correct / len(x)


# ---------------------------------------------------------------- the run

def _chunk_size(steps: int, limit: int = 16) -> int:
    """Largest divisor of ``steps`` up to ``limit``: one compiled scan shape for the whole run."""
    return max(d for d in range(1, min(steps, limit) + 1) if steps % d == 0)


def _save(ckdir, epoch, rng, history, config, jax_tr, torch_tr):
    tmp = os.path.join(ckdir, f".tmp-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    if jax_tr is not None:
        _common.save_numpy_tree(os.path.join(tmp, "jax_state"), jax_tr.to_numpy())
    if torch_tr is not None:
        _common.save_torch_tree(os.path.join(tmp, "torch_model"), torch_tr.model.state_dict())
        _common.save_torch_tree(os.path.join(tmp, "torch_optimizer"), torch_tr.opt.state_dict())
        _common.save_torch_tree(os.path.join(tmp, "torch_rng"), torch_tr.rng_state())
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump({"epoch": epoch, "rng": rng.bit_generator.state, "history": history, "config": config}, f)
    _common.commit_dir(tmp, os.path.join(ckdir, "last"))


def _restore(ckdir, config, rng, jax_tr, torch_tr):
    last = os.path.join(ckdir, "last")
    with open(os.path.join(last, "meta.json")) as f:
        meta = json.load(f)
    if meta["config"] != config:
        diff = {k: (meta["config"].get(k), v) for k, v in config.items() if meta["config"].get(k) != v}
        raise ValueError(f"--resume: the checkpoint in {ckdir!r} was made with other settings {diff} "
                         "(checkpoint, now); rerun with the checkpoint's settings or another --checkpoint-dir")
    rng.bit_generator.state = meta["rng"]
    if jax_tr is not None:
        jax_tr.from_numpy(_common.load_numpy_tree(os.path.join(last, "jax_state")))
    if torch_tr is not None:
        torch_tr.model.load_state_dict(_common.load_torch_tree(os.path.join(last, "torch_model"), torch_tr.device))
        torch_tr.opt.load_state_dict(_common.load_torch_tree(os.path.join(last, "torch_optimizer"), torch_tr.device))
        torch_tr.set_rng_state(_common.load_torch_tree(os.path.join(last, "torch_rng")))
    return meta["epoch"], meta["history"]


def run(framework: str = "both", epochs: int = 10, batch_size: int = 256, lr: float = 1.0,
        data_dir: str | None = None, steps: int | None = None, checkpoint_dir: str | None = None,
        resume: bool = False, out: str | None = None, seed: int = 0, variant: str = "bn_all",
        dropout: float = 0.5, momentum: float = 0.0, progress: bool = True, verbose: bool = True,
        dataset=None) -> dict:
    """Train and return ``{"history": {fw: {"step_loss": [...], "epochs": [rows]}}, "summary": {...},
    "jax": JaxTrainer|None, "torch": TorchTrainer|None}``. ``steps`` caps the steps per epoch."""
    if framework not in ("jax", "torch", "both"):
        raise ValueError(f"framework={framework!r}: use 'jax', 'torch' or 'both'")
    if framework == "both" and variant == "dropout":
        raise ValueError("variant='dropout' with framework='both': the two frameworks draw different dropout "
                         "masks, so the runs cannot be compared step by step; pick 'jax' or 'torch'")
    say = print if verbose else (lambda *a, **k: None)
    data = dataset if dataset is not None else _common.load_dataset(data_dir)
    n_steps = len(data.x_train) // batch_size if steps is None else min(steps, len(data.x_train) // batch_size)
    chunk = _chunk_size(max(n_steps, 1))
    fws = ("jax", "torch") if framework == "both" else (framework,)
    config = {"framework": framework, "batch_size": batch_size, "lr": lr, "dataset": data.name, "steps": steps,
              "seed": seed, "variant": variant, "dropout": dropout, "momentum": momentum}

    jax_tr = torch_tr = None
    if "jax" in fws:
        import jax

        jax_tr = JaxTrainer(jax_model(variant, dropout), lr, seed, batch_size, chunk, data.x_train.shape[1:],
                            momentum)
        say(f"jax {jax.__version__}: {jax_tr.n_devices} {jax.devices()[0].platform} device(s), batch sharded over "
            f"them; compiled {chunk} steps per call in {jax_tr.compile_seconds:.1f} s")
    if "torch" in fws:
        import torch

        init = jax_tr.to_numpy() if jax_tr is not None else None  # identical starting weights
        torch.manual_seed(seed)  # torch-only weights (default biases, Xavier kernels) and dropout masks
        torch_tr = TorchTrainer(torch_model(variant, dropout), lr, seed, init_from=init, momentum=momentum)
        say(f"torch {torch.__version__} on {torch_tr.device}" + ("; weights copied from the Flax init" if init else ""))
    say(f"{data.name}: {len(data.x_train)} train / {len(data.x_test)} test images; {n_steps} steps of {batch_size} "
        f"per epoch, lr {lr}, {epochs} epochs, LeNet variant {variant}")

    rng = np.random.default_rng(seed)  # the one shuffling RNG both frameworks share
    history = {fw: {"step_loss": [], "epochs": []} for fw in fws}
    start = 0
    if resume and checkpoint_dir and os.path.exists(os.path.join(checkpoint_dir, "last", "meta.json")):
        start, history = _restore(checkpoint_dir, config, rng, jax_tr, torch_tr)
        say(f"resumed from {checkpoint_dir} after epoch {start}")

    columns = [("epoch", "epoch", "d")]
    for fw in fws:
        columns += [(f"{fw}_loss", f"{fw} loss", ".4f"), (f"{fw}_train_acc", f"{fw} train", ".3f"),
                    (f"{fw}_test_acc", f"{fw} test", ".3f"), (f"{fw}_ex_per_s", f"{fw} ex/s", ".0f")]
    if framework == "both":
        columns.append(("max_dloss", "max|dloss|", ".2e"))
    def row_of(i: int) -> dict:  # table row of the i-th epoch in the history
        row = {"epoch": history[fws[0]]["epochs"][i]["epoch"]}
        for fw in fws:
            row.update({f"{fw}_{k}": v for k, v in history[fw]["epochs"][i].items() if k != "epoch"})
        if framework == "both":
            per = len(history["jax"]["step_loss"]) // len(history["jax"]["epochs"])  # every epoch has `per` steps
            d = np.abs(np.subtract(history["jax"]["step_loss"][i * per:(i + 1) * per],
                                   history["torch"]["step_loss"][i * per:(i + 1) * per]))
            row["max_dloss"] = float(d.max())
        return row

    lines = _common.table([], columns).splitlines()
    say("\n" + "\n".join(lines[:2]))
    for i in range(start):  # epochs restored from the checkpoint
        say(_common.table([row_of(i)], columns).splitlines()[2] + "   (checkpoint)")
    for epoch in range(start + 1, epochs + 1):
        idx = _common.epoch_batches(rng, len(data.x_train), batch_size, steps)
        for fw in fws:
            if fw == "jax":
                losses, correct, secs = jax_tr.train_epoch(data.x_train, data.y_train, idx, chunk, progress)
                test_acc = jax_tr.accuracy(data.x_test, data.y_test)
            else:
                losses, correct, secs = torch_tr.train_epoch(data.x_train, data.y_train, idx, progress)
                test_acc = torch_tr.accuracy(data.x_test, data.y_test)
            rec = {"epoch": epoch, "loss": float(losses.mean()), "train_acc": correct / idx.size,
                   "test_acc": test_acc, "ex_per_s": idx.size / secs, "seconds": secs}
            history[fw]["epochs"].append(rec)
            history[fw]["step_loss"].extend(losses.tolist())
        say(_common.table([row_of(epoch - 1)], columns).splitlines()[2])
        if checkpoint_dir:
            _save(checkpoint_dir, epoch, rng, history, config, jax_tr, torch_tr)

    summary = summarize(history, verbose=verbose)
    if out:
        plot(history, out, title=f"LeNet + BatchNorm ({variant}), {data.name}")
        say(f"plot: {out}")
    return {"history": history, "summary": summary, "jax": jax_tr, "torch": torch_tr}


def summarize(history: dict, verbose: bool = True) -> dict:
    """Worst step-by-step loss difference and the plain divergence statement (``both`` runs)."""
    if set(history) != {"jax", "torch"} or not history["jax"]["step_loss"]:
        return {}
    a, b = np.asarray(history["jax"]["step_loss"]), np.asarray(history["torch"]["step_loss"])
    d = np.abs(a - b)
    first50 = float(d[:50].max())
    worst, at = float(d.max()), int(d.argmax()) + 1
    over = np.nonzero(d > DIVERGENCE)[0]
    ja, ta = history["jax"]["epochs"][-1]["test_acc"], history["torch"]["epochs"][-1]["test_acc"]
    s = {"max_dloss_first50": first50, "max_dloss": worst, "max_dloss_step": at, "steps": len(d),
         "first_step_over": int(over[0]) + 1 if len(over) else None,
         "final_test_acc_jax": ja, "final_test_acc_torch": ta}
    if verbose:
        print(f"\nlargest step-by-step loss difference: {worst:.2e} at step {at} of {len(d)} "
              f"(first {min(50, len(d))} steps: {first50:.2e})")
        print(f"final test accuracy: jax {ja:.4f}, torch {ta:.4f} (difference {abs(ja - ta):.4f})")
        if len(over):
            print(f"DIVERGED: from step {over[0] + 1} the per-step losses differ by more than {DIVERGENCE:g} "
                  f"(worst {worst:.2e}). Both runs start from the same weights and batches; float32 rounding "
                  f"differences between XLA and torch kernels are amplified by training.")
        else:
            print(f"The runs do not diverge: every per-step loss difference is below {DIVERGENCE:g} "
                  "(float32 rounding between XLA and torch kernels).")
    return s


def plot(history: dict, out: str, title: str = "") -> None:
    plt = _common.pyplot()
    fws = list(history)
    fig, axes = plt.subplots(1, 3 if len(fws) == 2 else 2, figsize=(15 if len(fws) == 2 else 10, 4))
    style = {"jax": dict(color="C0"), "torch": dict(color="C3", linestyle="--")}
    for fw in fws:
        axes[0].plot(np.arange(1, len(history[fw]["step_loss"]) + 1), history[fw]["step_loss"], label=fw, **style[fw])
        ep = [r["epoch"] for r in history[fw]["epochs"]]
        axes[1].plot(ep, [r["train_acc"] for r in history[fw]["epochs"]], marker="o", label=f"{fw} train", **style[fw])
        axes[1].plot(ep, [r["test_acc"] for r in history[fw]["epochs"]], marker="s", label=f"{fw} test",
                     **{**style[fw], "alpha": 0.6})
    axes[0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss per step")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    if len(fws) == 2:
        d = np.abs(np.subtract(history["jax"]["step_loss"], history["torch"]["step_loss"]))
        axes[2].semilogy(np.arange(1, len(d) + 1), np.maximum(d, 1e-12), color="k")
        axes[2].axhline(DIVERGENCE, color="grey", linestyle=":", label=f"divergence threshold {DIVERGENCE:g}")
        axes[2].set(xlabel="step", ylabel="|loss jax - loss torch|", title="step-by-step difference")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def parity_precision() -> None:
    """Full-precision matmuls/convs in both frameworks (no TF32), for a like-for-like comparison."""
    import jax
    import torch

    jax.config.update("jax_default_matmul_precision", "highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def parser(description: str = __doc__.splitlines()[0]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--framework", choices=("jax", "torch", "both"), default="both")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (the textbook uses none)")
    p.add_argument("--data-dir", help="folder with the Fashion-MNIST IDX files (default: embedded digits)")
    p.add_argument("--steps", type=int, help="at most this many training steps per epoch (smoke tests)")
    p.add_argument("--checkpoint-dir", help="save a checkpoint here after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint-dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv=None) -> int:
    p = parser()
    p.add_argument("--variant", choices=VARIANTS, default="bn_all")
    p.add_argument("--out", default="lenet_bn.png", help="PNG of the curves ('' for none)")
    a = p.parse_args(argv)
    if a.framework == "both":
        parity_precision()
    run(a.framework, a.epochs, a.batch_size, a.lr, a.data_dir, a.steps, a.checkpoint_dir, a.resume, a.out or None,
        a.seed, a.variant, momentum=a.momentum, progress=not a.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
