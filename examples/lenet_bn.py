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
    python examples/lenet_bn.py --ranks 2                             # DDP + SyncBatchNorm vs sharded JAX

The file reads top to bottom: data, the two models, the two trainers, checkpoints,
the run, the report, the command line. JAX path: ``jaxinit.BatchNorm`` (PyTorch's
semantics: momentum 0.1, unbiased running variance, num_batches_tracked),
``jaxinit.optim.sgd``; the loop over steps is chosen per backend (``JAX_LOOPS``: one jitted
step per batch on CPU, where XLA keeps its fast convolutions only outside loops, a
``lax.scan`` over groups of steps on GPU/TPU); the batch axis is sharded over the local
devices with a ``NamedSharding``, so BatchNorm reduces over the global batch inside jit (no
``axis_name`` needed). Torch path: ``torchinit.BatchNorm`` (torch's BatchNorm kernel and
semantics), ``torchinit.optim.sgd`` (``torch.optim.SGD``), CUDA when present. ``--ranks N``:
torch DDP over N processes (``torchinit.parallel.ddp``: SyncBatchNorm, gloo on CPU, NCCL on
GPU) against the JAX batch sharded over N devices, each step's global batch split as
DistributedSampler splits it (``jaxinit.parallel.global_batches``). In ``both`` mode JAX matmuls run at "highest"
precision and torch's TF32 is off, so the comparison measures the libraries, not TF32.
The Flax model flattens in torch's (C, H, W) order, so ``jaxinit.to_torch_state_dict``
converts its weights layer by layer (the torch model's attribute names are the Flax
module names). Checkpoints are written with ``jaxinit.save_checkpoint`` /
``torchinit.save_checkpoint`` (safetensors) plus one JSON file.
"""
from __future__ import annotations

import argparse
import functools
import gzip
import importlib
import itertools
import json
import os
import shutil
import struct
import sys
import time
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxinit
import jaxinit.amp
import jaxinit.linen as tl
import jaxinit.optim
import jaxinit.parallel
import jaxinit.rngs
import torchinit
import torchinit.amp
import torchinit.optim
import torchinit.parallel
import torchinit.random
import torchinit.rngs

VARIANTS = ("bn_all", "bn_conv", "dropout")
# A per-step loss difference above this is reported as divergence. Rounding alone gives up to
# ~5e-4 with lr 1.0 (see parity_tests/test_examples.py); a real semantic difference gives > 1e-1.
DIVERGENCE = 1e-2
DIGITS_TRAIN = 1536  # 6 batches of 256; the other 261 digits are the test set


# ---------------------------------------------------------------- data

@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # (N, 28, 28, 1) float32 in [0, 1]
    y_train: np.ndarray  # (N,) int32
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_28() -> Dataset:
    """scikit-learn's digits (inside its wheel: no download), 8x8 -> 28x28 (bilinear,
    deterministic), split once by a fixed permutation into 1536 training and 261 test images."""
    import scipy.ndimage
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = d.images.astype(np.float64) / 16.0  # pixel values are 0..16
    big = scipy.ndimage.zoom(imgs, (1, 3.5, 3.5), order=1)  # (1797, 28, 28)
    big = np.clip(big, 0.0, 1.0).astype(np.float32)[..., None]
    labels = d.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(labels))
    tr, te = perm[:DIGITS_TRAIN], perm[DIGITS_TRAIN:]
    return Dataset("digits (scikit-learn, 8x8 -> 28x28)", big[tr], labels[tr], big[te], labels[te])


def _read_idx(path: str) -> np.ndarray:
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(data_dir: str) -> Dataset:
    """Fashion-MNIST (or MNIST) from the four standard IDX files, gzipped or raw, in ``data_dir``
    or in torchvision's ``FashionMNIST/raw`` (or ``raw``) below it."""
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    arrays = {}
    for key, base in names.items():
        candidates = [os.path.join(data_dir, sub, base + ext) for sub in ("", "FashionMNIST/raw", "raw")
                      for ext in ("", ".gz")]
        path = next((p for p in candidates if os.path.exists(p)), None)
        if path is None:
            raise FileNotFoundError(
                f"--data-dir {data_dir!r}: {base}[.gz] not found (looked in the folder, FashionMNIST/raw and raw). "
                "Put the four Fashion-MNIST IDX files there, or leave --data-dir out to use the embedded digits.")
        arrays[key] = _read_idx(path)
    x_train, x_test = ((arrays[k].astype(np.float32) / 255.0)[..., None] for k in ("x_train", "x_test"))
    return Dataset(f"Fashion-MNIST ({data_dir})", x_train, arrays["y_train"].astype(np.int32),
                   x_test, arrays["y_test"].astype(np.int32))


def load_dataset(data_dir: str | None) -> Dataset:
    return load_fashion_mnist(data_dir) if data_dir else load_digits_28()


def epoch_batches(rng: np.random.Generator, n: int, batch_size: int, max_steps: int | None = None) -> np.ndarray:
    """Index array (steps, batch_size) of one shuffled epoch; the last partial batch is dropped
    (every step has the same shape: one compiled JAX step, one BatchNorm batch size)."""
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"--batch-size {batch_size} is larger than the {n} training examples; use a smaller one")
    idx = rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)
    return idx if max_steps is None else idx[:max_steps]


# ---------------------------------------------------------------- the two models

def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: use one of {VARIANTS}")


class FlaxLeNet(nn.Module):
    """LeNet in Flax: ``jaxinit.linen`` layers (torch's default biases) with Xavier kernels,
    ``jaxinit.BatchNorm`` (torch's semantics). ``variant``: BatchNorm after every layer
    (``bn_all``), after the two convolutions only (``bn_conv``), or no BatchNorm and dropout
    after the hidden dense layers (``dropout``)."""

    variant: str = "bn_all"
    dropout: float = 0.5

    @nn.compact
    def __call__(self, x, train: bool):
        xu = jaxinit.xavier_uniform()  # d2l's init_weights; biases keep torch's default U(+-1/sqrt(fan_in))
        # under --precision bf16/fp16: sigmoid and pooling as torch's kernels, in float32 rounded once
        sigmoid = jaxinit.amp.active().pointwise(nn.sigmoid)
        pool = jaxinit.amp.active().pointwise(lambda v: nn.avg_pool(v, (2, 2), strides=(2, 2)))

        def norm(name, x):
            if self.variant == "bn_all" or (self.variant == "bn_conv" and name in ("bn1", "bn2")):
                return jaxinit.BatchNorm(use_running_average=not train, name=name)(x)
            return x

        def drop(x):
            return nn.Dropout(self.dropout, deterministic=not train)(x) if self.variant == "dropout" else x

        x = tl.Conv(6, (5, 5), padding="VALID", kernel_init=xu, name="conv1")(x)
        x = pool(sigmoid(norm("bn1", x)))
        x = tl.Conv(16, (5, 5), padding="VALID", kernel_init=xu, name="conv2")(x)
        x = pool(sigmoid(norm("bn2", x)))
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # torch's (C, H, W) flatten order
        x = drop(sigmoid(norm("bn3", tl.Dense(120, kernel_init=xu, name="fc1")(x))))
        x = drop(sigmoid(norm("bn4", tl.Dense(84, kernel_init=xu, name="fc2")(x))))
        return tl.Dense(10, kernel_init=xu, name="fc3")(x)


def jax_model(variant: str = "bn_all", dropout: float = 0.5) -> FlaxLeNet:
    _check_variant(variant)
    return FlaxLeNet(variant=variant, dropout=dropout)


class TorchLeNet(torch.nn.Module):
    """The same LeNet in torch (torch.nn layers, ``torchinit.BatchNorm``: torch.nn.BatchNorm{1,2}d's
    semantics and kernel, the mirror of jaxinit.BatchNorm); attribute names match the Flax modules."""

    def __init__(self, variant: str = "bn_all", dropout: float = 0.5):
        super().__init__()
        conv_bn, dense_bn = variant in ("bn_all", "bn_conv"), variant == "bn_all"
        self.conv1, self.conv2 = torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(256, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, 10)
        self.bn1 = torchinit.BatchNorm(6) if conv_bn else torch.nn.Identity()
        self.bn2 = torchinit.BatchNorm(16) if conv_bn else torch.nn.Identity()
        self.bn3 = torchinit.BatchNorm(120) if dense_bn else torch.nn.Identity()
        self.bn4 = torchinit.BatchNorm(84) if dense_bn else torch.nn.Identity()
        self.drop = torch.nn.Dropout(dropout) if variant == "dropout" else torch.nn.Identity()

    def forward(self, x):
        x = F.avg_pool2d(torch.sigmoid(self.bn1(self.conv1(x))), 2, 2)
        x = F.avg_pool2d(torch.sigmoid(self.bn2(self.conv2(x))), 2, 2)
        x = torch.flatten(x, 1)
        x = self.drop(torch.sigmoid(self.bn3(self.fc1(x))))
        x = self.drop(torch.sigmoid(self.bn4(self.fc2(x))))
        return self.fc3(x)


def torch_model(variant: str = "bn_all", dropout: float = 0.5) -> TorchLeNet:
    _check_variant(variant)
    return TorchLeNet(variant, dropout)


# ---------------------------------------------------------------- progress bars

def progress(iterable, enabled: bool, **kw):
    """A tqdm bar only when both output streams are terminals: output piped or redirected to a
    file is the plain table, never interleaved with bar frames."""
    if not (enabled and sys.stdout.isatty() and sys.stderr.isatty()):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kw)


# ---------------------------------------------------------------- JAX training

def _init_state(model: FlaxLeNet, tx, image_shape: tuple, seed) -> dict:
    variables = model.init({"params": jax.random.key(seed)}, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {}),
            "opt_state": tx.init(variables["params"]), "step": jnp.zeros((), jnp.int32),
            "seed": jnp.asarray(seed, jnp.int32)}


# ---------------------------------------------------------------- mixed precision (--precision)

PRECISIONS = {"float32": None, "bf16": "bfloat16", "fp16": "float16"}


def autocast_device() -> str:
    """The torch autocast whose op lists both frameworks follow: the device torch trains on."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def jax_precision(precision: str):
    """(``jaxinit.amp.Autocast`` of torch's autocast for ``precision``, loss scaling on/off): fp16 scales."""
    dtype = PRECISIONS[precision]
    return jaxinit.amp.Autocast(autocast_device(), dtype, enabled=dtype is not None), precision == "fp16"


# How the JAX trainer loops over the steps of an epoch, per backend: (loop, most steps per compiled call).
# "step": one jitted step per batch; "unroll": that many steps unrolled in one program; "scan": a
# ``lax.scan`` over them. XLA:CPU rewrites a convolution into its fast (Eigen/oneDNN) form only outside
# a loop (jax-ml/jax#12868): inside ``lax.scan`` the three backward convolutions of this LeNet took 93%
# of the step and the JAX path ran at 0.13-0.34x torch's examples/s; one jitted step per batch runs the
# same maths at full speed (figures: benchmarks/README.md). On GPU a scan keeps the device busy
# without a host round trip per step.
JAX_LOOPS = {"cpu": ("step", 1), "gpu": ("scan", 16), "tpu": ("scan", 16)}
JAX_LOOP_NAMES = ("auto", "step", "unroll", "scan")


def choose_jax_loop(loop: str = "auto", steps: int = 1, platform: str | None = None) -> tuple[str, int]:
    """(loop, steps per compiled call) for ``steps`` steps per epoch: ``loop="auto"`` picks the
    backend's entry of :data:`JAX_LOOPS`; ``"unroll"``/``"scan"`` group the largest divisor of
    ``steps`` up to 16 (one compiled shape for the whole run)."""
    if loop not in JAX_LOOP_NAMES:
        raise ValueError(f"--jax-loop {loop!r}: use one of {JAX_LOOP_NAMES}")
    if loop == "auto":
        loop, limit = JAX_LOOPS.get(platform or jax.default_backend(), ("scan", 16))
    else:
        limit = 1 if loop == "step" else 16
    return loop, _chunk_size(max(steps, 1), limit)


@functools.lru_cache(maxsize=8)
def _jax_programs(model: FlaxLeNet, lr: float, momentum: float, batch_size: int, chunk: int, image_shape: tuple,
                  precision: str = "float32", loop: str = "scan", ranks: int | None = None):
    """(mesh, optimizer, compiled group of ``chunk`` steps, jitted eval logits), cached per setting.
    ``precision``: torch's autocast (``jaxinit.amp.Autocast``; fp16 with loss scaling). ``loop`` is how
    the group is written (see :data:`JAX_LOOPS`); every form computes the same steps.
    ``ranks``: the batch is sharded over exactly that many devices (DDP's world size; rank ``r``'s
    batch is the ``r``-th contiguous block, ``jaxinit.parallel.global_batches``), and BatchNorm
    over the sharded batch is SyncBatchNorm; None: over as many devices as divide the batch."""
    devices = jax.devices()
    if ranks is None:
        n_dev = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    else:
        if len(devices) < ranks:
            raise ValueError(
                f"--ranks {ranks}: the JAX side needs {ranks} devices (one per torch rank) but sees {len(devices)} "
                f"{devices[0].platform} device(s); on CPU run lenet_bn.py's command line (it asks for {ranks} CPU "
                f"devices) or set XLA_FLAGS=--xla_force_host_platform_device_count={ranks} before starting Python")
        jaxinit.parallel.split_batch(batch_size, ranks, "--batch-size")
        n_dev = ranks
    mesh = Mesh(np.array(devices[:n_dev]), ("batch",))
    data, replicated = NamedSharding(mesh, PartitionSpec(None, "batch")), NamedSharding(mesh, PartitionSpec())
    tx = jaxinit.optim.sgd(lr, momentum=momentum)  # torch.optim.SGD's update rule
    policy, scaled = jax_precision(precision)
    if scaled:  # torch.amp.GradScaler's dynamic loss scaling, as an optax transformation
        tx = jaxinit.amp.grad_scaler(tx)

    def step(state, batch):
        x, y = batch
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(state["seed"]), 1), state["step"])  # dropout

        def loss_fn(params):
            with policy:
                logits, upd = model.apply({"params": params, "batch_stats": state["batch_stats"]}, x, train=True,
                                          mutable=["batch_stats"], rngs={"dropout": rng})
            (logits,) = policy.cast("cross_entropy_loss", logits)  # torch's autocast: losses in float32
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return (jaxinit.amp.scale_loss(loss, state["opt_state"]) if scaled else loss), (loss, logits, upd)

        (_, (loss, logits, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "batch_stats": upd.get("batch_stats", {}),
               "opt_state": opt_state, "step": state["step"] + 1, "seed": state["seed"]}
        scale = opt_state.scale if scaled else jnp.ones((), jnp.float32)  # the scale after this step's update
        return new, (loss, jnp.sum(jnp.argmax(logits, -1) == y), scale)

    def train_chunk(state, xs, ys):
        if loop == "scan":
            return jax.lax.scan(step, state, (xs, ys))
        outs = []
        for i in range(chunk):  # "step" (chunk 1) and "unroll": straight-line code, no loop for XLA
            state, out = step(state, (xs[i], ys[i]))
            outs.append(out)
        return state, jax.tree.map(lambda *o: jnp.stack(o), *outs)

    def logits(state, x):
        with policy:
            return model.apply({"params": state["params"], "batch_stats": state["batch_stats"]}, x, train=False)

    abstract = jax.eval_shape(functools.partial(_init_state, model, tx, image_shape), 0)
    abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), abstract)
    xs = jax.ShapeDtypeStruct((chunk, batch_size, *image_shape), jnp.float32, sharding=data)
    ys = jax.ShapeDtypeStruct((chunk, batch_size), jnp.int32, sharding=data)
    # The state is donated: each call updates it in place. Compiled before epoch 1: throughput excludes it.
    compiled = jax.jit(train_chunk, donate_argnums=0).lower(abstract, xs, ys).compile()
    return mesh, tx, compiled, jax.jit(logits)


class JaxTrainer:
    """The Flax state and the compiled, sharded group of ``chunk`` training steps (written as
    ``loop``: one jitted step, unrolled steps or a ``lax.scan``; see :data:`JAX_LOOPS`), the batch
    sharded over ``ranks`` devices (None: as many as divide it)."""

    def __init__(self, model: FlaxLeNet, lr: float, seed: int, batch_size: int, chunk: int, image_shape,
                 momentum: float = 0.0, precision: str = "float32", loop: str = "scan",
                 ranks: int | None = None):
        t0 = time.perf_counter()
        self.mesh, self.tx, self.train_chunk, self.logits = _jax_programs(
            model, float(lr), float(momentum), batch_size, chunk, tuple(image_shape), precision, loop, ranks)
        self.scales: list[float] = []  # the loss scale after each step (fp16; 1.0 otherwise)
        self.compile_seconds = time.perf_counter() - t0  # ~0 when an identical run compiled it already
        self.loop, self.chunk = loop, chunk
        self.data_sharding = NamedSharding(self.mesh, PartitionSpec(None, "batch"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.n_devices = self.mesh.size
        self.state = jax.device_put(_init_state(model, self.tx, tuple(image_shape), seed), self.replicated)

    def train_epoch(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray, chunk: int, bar: bool):
        losses, correct, scales = [], [], []
        t0 = time.perf_counter()
        for g in progress(idx.reshape(-1, chunk, idx.shape[1]), bar, desc="jax  ", unit="call"):
            xs, ys = jax.device_put(x[g], self.data_sharding), jax.device_put(y[g], self.data_sharding)
            self.state, (loss, corr, scale) = self.train_chunk(self.state, xs, ys)
            losses.append(loss)  # kept on the device: no host round trip between steps
            correct.append(corr)
            scales.append(scale)
        losses_np = np.concatenate(jax.device_get(losses)).astype(np.float64)
        self.scales.extend(np.concatenate(jax.device_get(scales)).tolist())
        return losses_np, int(np.sum(jax.device_get(correct))), time.perf_counter() - t0

    def accuracy(self, x: np.ndarray, y: np.ndarray, chunk: int = 1000) -> float:
        correct = 0
        for i in range(0, len(x), chunk):
            correct += int((np.asarray(self.logits(self.state, x[i:i + chunk])).argmax(-1) == y[i:i + chunk]).sum())
        return correct / len(x)

    def variables(self) -> dict:
        return {"params": self.state["params"], "batch_stats": self.state["batch_stats"]}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The whole state (params, batch_stats, optax state, step, seed) as ``{path: array}``."""
        leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(self.state))
        return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}

    def load_state_arrays(self, arrays: dict) -> None:
        paths, treedef = jax.tree_util.tree_flatten_with_path(self.state)
        leaves = [arrays[jax.tree_util.keystr(path)] for path, _ in paths]
        self.state = jax.device_put(jax.tree_util.tree_unflatten(treedef, leaves), self.replicated)


# ---------------------------------------------------------------- PyTorch training

class TorchTrainer:
    def __init__(self, model: TorchLeNet, lr: float, init_from: dict | None = None, momentum: float = 0.0,
                 precision: str = "float32"):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = PRECISIONS[precision]
        self.autocast = torchinit.amp.autocast(self.device.type, dtype, enabled=dtype is not None)
        if init_from is None:  # torch-only run: d2l's init_weights with torch's RNG
            for m in model.modules():
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                    torchinit.xavier_uniform_(m.weight)
        else:  # the library's converter: per-layer transposes, BatchNorm statistics and counter
            model.load_state_dict(jaxinit.to_torch_state_dict(init_from, model))
        self.model = model.to(self.device)
        # torchinit.optim.sgd: the mirror of jaxinit.optim.sgd; plain settings give torch.optim.SGD(foreach=True)
        self.opt = torchinit.optim.sgd(self.model.parameters(), lr, momentum=momentum)
        self.scaler = torchinit.amp.grad_scaler(self.opt, enabled=precision == "fp16")
        self.scales: list[float] = []  # the loss scale after each step (fp16; 1.0 otherwise)
        self._data_key, self._data = None, None
        self.before_step = None  # called before each step (--variant dropout --framework both: the step's key)

    def _on_device(self, x: np.ndarray, y: np.ndarray):
        if self._data_key != (id(x), id(y)):  # one device copy of the dataset, NCHW
            self._data_key = (id(x), id(y))
            self._data = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device),
                          torch.from_numpy(y.astype(np.int64)).to(self.device))
        return self._data

    def train_epoch(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray, bar: bool):
        X, Y = self._on_device(x, y)
        index = torch.from_numpy(idx).to(self.device)
        self.model.train()
        losses, correct = [], torch.zeros((), dtype=torch.int64, device=self.device)
        t0 = time.perf_counter()
        for i in progress(range(len(idx)), bar, desc="torch", unit="step"):
            xb, yb = X[index[i]], Y[index[i]]
            if self.before_step is not None:
                self.before_step()
            self.opt.zero_grad(set_to_none=True)
            with self.autocast:
                logits = self.model(xb)
                loss = F.cross_entropy(logits, yb)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.scaler.is_enabled():
                self.scales.append(self.scaler.get_scale())
            losses.append(loss.detach())
            correct += (logits.argmax(1) == yb).sum()
        losses_np = torch.stack(losses).double().cpu().numpy()
        return losses_np, int(correct), time.perf_counter() - t0

    def accuracy(self, x: np.ndarray, y: np.ndarray, chunk: int = 1000) -> float:
        self.model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                xb = torch.from_numpy(np.ascontiguousarray(x[i:i + chunk].transpose(0, 3, 1, 2))).to(self.device)
                with self.autocast:
                    correct += int((self.model(xb).argmax(1).cpu().numpy() == y[i:i + chunk]).sum())
        return correct / len(x)


def _ddp_rank(rank: int, world_size: int, port: int, conn, variant: str, dropout: float, lr: float,
              momentum: float, init_state: dict, x: np.ndarray, y: np.ndarray, seed: int) -> None:
    """One DDP rank (a process of :class:`TorchDDPTrainer`): gloo on CPU, NCCL on GPU ``rank``;
    ``torchinit.parallel.ddp`` (SyncBatchNorm for the BatchNorm variants, DDP's
    ``broadcast_buffers``); trains rank ``rank``'s block of each global batch on command."""
    import warnings

    cuda = torch.cuda.is_available()
    if not cuda:  # the ranks share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    # conv1's weight gradient (1 input channel) comes out with other, equally valid strides than DDP's bucket
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world_size)
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(seed + rank)  # dropout masks: each rank its own, as a DDP job
    model = torch_model(variant, dropout)
    model.load_state_dict(init_state)
    ddp = torchinit.parallel.ddp(model.to(device), sync_batchnorm=variant != "dropout",
                                 device_ids=[rank] if cuda else None)
    opt = torchinit.optim.sgd(ddp.parameters(), lr, momentum=momentum)
    X = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)
    Y = torch.from_numpy(y.astype(np.int64)).to(device)
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "epoch":  # arg: (steps, world_size * b) global batches, rank by rank
                b = arg.shape[1] // world_size
                index = torch.from_numpy(arg[:, rank * b:(rank + 1) * b]).to(device)
                ddp.train()
                losses, correct = [], torch.zeros((), dtype=torch.int64, device=device)
                t0 = time.perf_counter()
                for i in range(len(index)):
                    xb, yb = X[index[i]], Y[index[i]]
                    opt.zero_grad(set_to_none=True)
                    logits = ddp(xb)
                    loss = F.cross_entropy(logits, yb)
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach())
                    correct += (logits.argmax(1) == yb).sum()
                total = torch.stack(losses).double()
                torch.distributed.all_reduce(total)  # DDP's objective: the mean over ranks of each rank's loss
                counts = correct.double().reshape(1)
                torch.distributed.all_reduce(counts)
                secs = time.perf_counter() - t0
                conn.send((total.cpu().numpy() / world_size, int(counts.item()), secs) if rank == 0 else None)
            elif cmd == "state":
                conn.send({k: v.cpu() for k, v in model.state_dict().items()} if rank == 0 else None)
            else:
                break
    finally:
        torch.distributed.destroy_process_group()


class TorchDDPTrainer:
    """``ranks`` DDP processes (torch.multiprocessing; ``torchinit.parallel.ddp``: SyncBatchNorm
    on gloo/CPU too), driven epoch by epoch like :class:`TorchTrainer`: each trains its block
    of every global batch (``jaxinit.parallel.global_batches``: DistributedSampler's shards).
    ``model`` holds rank 0's weights and buffers after each epoch (for evaluation)."""

    def __init__(self, model: TorchLeNet, lr: float, ranks: int, x: np.ndarray, y: np.ndarray, variant: str,
                 dropout: float, init_from: dict | None = None, momentum: float = 0.0, seed: int = 0):
        import socket

        import torch.multiprocessing as mp

        if init_from is None:
            for m in model.modules():
                if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                    torchinit.xavier_uniform_(m.weight)
        else:
            model.load_state_dict(jaxinit.to_torch_state_dict(init_from, model))
        self.model, self.ranks = model, ranks
        cuda = torch.cuda.is_available()
        if cuda and torch.cuda.device_count() < ranks:
            raise ValueError(f"--ranks {ranks}: only {torch.cuda.device_count()} GPU(s) for the torch ranks "
                             "(NCCL, one GPU per rank); use --ranks <= the GPU count")
        self.device = torch.device("cpu")  # where ``model`` (rank 0's copy) evaluates
        self.autocast = torchinit.amp.autocast("cpu", None, enabled=False)  # float32 (--ranks refuses --precision)
        self.backend = f"{ranks} DDP ranks ({'nccl, cuda' if cuda else 'gloo, cpu'})"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        # fork on CPU (the ranks start in a second; jax's threads stay idle in them), spawn with CUDA.
        ctx = mp.get_context("spawn" if cuda else "fork")
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        self._conns, self._procs = [], []
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fork.*")
            importlib.import_module("torch._dynamo")  # DDP's constructor imports it: once here, not in every rank

            for rank in range(ranks):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_ddp_rank, args=(rank, ranks, port, child, variant, dropout, lr, momentum,
                                                        state, x, y, seed), daemon=True)
                p.start()
                self._conns.append(parent)
                self._procs.append(p)

    def _all(self, cmd: str, arg=None):
        for c in self._conns:
            c.send((cmd, arg))
        return [c.recv() for c in self._conns][0]

    def train_epoch(self, x: np.ndarray, y: np.ndarray, idx: np.ndarray, bar: bool):
        out = self._all("epoch", idx)
        self.model.load_state_dict(self._all("state"))
        return out

    def accuracy(self, x: np.ndarray, y: np.ndarray, chunk: int = 1000) -> float:
        return TorchTrainer.accuracy(self, x, y, chunk)  # type: ignore[arg-type]

    def close(self) -> None:
        for c in self._conns:
            c.send(("stop", None))
        for p in self._procs:
            p.join(timeout=60)
def bind_dropout(torch_tr: TorchTrainer, jax_tr: JaxTrainer, model: FlaxLeNet, seed: int, batch_size: int,
                 image_shape, first_step: int = 0) -> None:
    """Torch draws the Flax run's dropout masks: the torch model is bound to the Flax twin's
    ``make_rng('dropout')`` calls (torchinit.rngs.bind_rngs), and each step gets the key the jitted
    Flax step folds in: ``fold_in(fold_in(key(seed), 1), step)``."""
    calls = jaxinit.rngs.rng_calls(model, jnp.zeros((batch_size, *image_shape), jnp.float32), train=True,
                                   variables=jax_tr.variables())
    binding = torchinit.rngs.bind_rngs(torch_tr.model, None, calls)
    base, step = torchinit.random.fold_in(torchinit.random.key(seed), 1), itertools.count(first_step)
    torch_tr.before_step = lambda: binding.set_key(torchinit.random.fold_in(base, next(step)))


# ---------------------------------------------------------------- checkpoints

def save_torch_optimizer(path: str, opt: torch.optim.Optimizer) -> dict:
    """The optimizer's tensors (``'<param id>.<name>'`` keys) to ``path`` with
    ``torchinit.save_checkpoint``; returns the rest of its state dict (JSON-able)."""
    sd = opt.state_dict()
    tensors = {f"{pid}.{k}": v for pid, s in sd["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    other = {f"{pid}.{k}": v for pid, s in sd["state"].items() for k, v in s.items() if not torch.is_tensor(v)}
    torchinit.save_checkpoint(path, tensors)
    return {"param_groups": sd["param_groups"], "other": other}


def load_torch_optimizer(path: str, rest: dict) -> dict:
    """Inverse of :func:`save_torch_optimizer`: the optimizer's state dict."""
    state: dict = {}
    for key, value in [*torchinit.load_checkpoint(path).items(), *rest["other"].items()]:
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    # In parameter order, as torch writes it (the file lists its keys alphabetically: 0, 1, 10, 11, 2, ...).
    return {"state": dict(sorted(state.items())), "param_groups": rest["param_groups"]}


def save(ckdir: str, epoch: int, rng: np.random.Generator, history: dict, config: dict,
         jax_tr: JaxTrainer | None, torch_tr: TorchTrainer | None) -> None:
    """Write the checkpoint of the end of ``epoch`` to ``ckdir/last``, atomically (a crash
    leaves the previous one)."""
    tmp = os.path.join(ckdir, f".tmp-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    meta = {"epoch": epoch, "rng": rng.bit_generator.state, "history": history, "config": config}
    if jax_tr is not None:
        jaxinit.save_checkpoint(os.path.join(tmp, "jax_state.safetensors"), jax_tr.state_arrays())
    if torch_tr is not None:
        torchinit.save_checkpoint(os.path.join(tmp, "torch_model.safetensors"), torch_tr.model.state_dict())
        meta["torch_optimizer"] = save_torch_optimizer(os.path.join(tmp, "torch_optimizer.safetensors"),
                                                       torch_tr.opt)
        rng_state = {"cpu": torch.get_rng_state()}  # torch's global RNG draws the dropout masks
        rng_state.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        torchinit.save_checkpoint(os.path.join(tmp, "torch_rng.safetensors"), rng_state)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f)
    final = os.path.join(ckdir, "last")
    if os.path.exists(final):
        shutil.rmtree(final + ".old", ignore_errors=True)
        os.rename(final, final + ".old")
    os.rename(tmp, final)
    shutil.rmtree(final + ".old", ignore_errors=True)


def restore(ckdir: str, config: dict, rng: np.random.Generator, jax_tr: JaxTrainer | None,
            torch_tr: TorchTrainer | None) -> tuple[int, dict]:
    """Load ``ckdir/last`` into the trainers and ``rng``; returns (epoch, history)."""
    last = os.path.join(ckdir, "last")
    with open(os.path.join(last, "meta.json")) as f:
        meta = json.load(f)
    if meta["config"] != config:
        diff = {k: (meta["config"].get(k), v) for k, v in config.items() if meta["config"].get(k) != v}
        raise ValueError(f"--resume: the checkpoint in {ckdir!r} was made with other settings {diff} "
                         "(checkpoint, now); rerun with the checkpoint's settings or another --checkpoint-dir")
    rng.bit_generator.state = meta["rng"]
    if jax_tr is not None:
        jax_tr.load_state_arrays(jaxinit.load_checkpoint(os.path.join(last, "jax_state.safetensors")))
    if torch_tr is not None:
        torch_tr.model.load_state_dict(torchinit.load_checkpoint(os.path.join(last, "torch_model.safetensors")))
        torch_tr.opt.load_state_dict(load_torch_optimizer(os.path.join(last, "torch_optimizer.safetensors"),
                                                          meta["torch_optimizer"]))
        rng_state = torchinit.load_checkpoint(os.path.join(last, "torch_rng.safetensors"))
        torch.set_rng_state(rng_state.pop("cpu"))
        if rng_state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([rng_state[f"cuda{i}"] for i in range(len(rng_state))])
    return meta["epoch"], meta["history"]


# ---------------------------------------------------------------- the run

def _chunk_size(steps: int, limit: int = 16) -> int:
    """Largest divisor of ``steps`` up to ``limit``: one compiled scan shape for the whole run."""
    return max(d for d in range(1, min(steps, limit) + 1) if steps % d == 0)


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Format rows as a fixed-width table; columns are (key, header, format spec; ``<N`` left-aligns text)."""
    cells = [["-" if r.get(k) is None else format(r[k], f) for k, _, f in columns] for r in rows]
    widths = [max([len(h), 9] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(columns)]
    left = [f.startswith("<") for _, _, f in columns]

    def line(items):
        return "  ".join(c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(items, widths, left)).rstrip()

    head = line([h for _, h, _ in columns])
    return "\n".join([head, "-" * len(head)] + [line(c) for c in cells])


def run(framework: str = "both", epochs: int = 10, batch_size: int = 256, lr: float = 1.0,
        data_dir: str | None = None, steps: int | None = None, checkpoint_dir: str | None = None,
        resume: bool = False, out: str | None = None, seed: int = 0, variant: str = "bn_all",
        dropout: float = 0.5, momentum: float = 0.0, progress: bool = True, verbose: bool = True,
        dataset: Dataset | None = None, precision: str = "float32", jax_loop: str = "auto",
        ranks: int | None = None) -> dict:
    """Train and return ``{"history": {fw: {"step_loss": [...], "epochs": [rows]}}, "summary": {...},
    "jax": JaxTrainer|None, "torch": TorchTrainer|None}``. ``steps`` caps the steps per epoch;
    ``jax_loop`` is how the JAX trainer loops over them (:func:`choose_jax_loop`). ``ranks``: data
    parallel over that many ranks: torch DDP processes (:class:`TorchDDPTrainer`, SyncBatchNorm) and
    the JAX batch sharded over that many devices; each step's global batch of ``batch_size`` is
    split into ``ranks`` per-rank batches as DistributedSampler assigns them."""
    if framework not in ("jax", "torch", "both"):
        raise ValueError(f"framework={framework!r}: use 'jax', 'torch' or 'both'")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: use one of {list(PRECISIONS)}")
    if ranks is not None:
        if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
            raise ValueError(f"--ranks {ranks!r}: use a positive number of data-parallel ranks")
        if checkpoint_dir:
            raise ValueError("--ranks with --checkpoint-dir: checkpoints are written by the one-process run; "
                             "leave out --checkpoint-dir or --ranks")
        if precision != "float32":
            raise ValueError(f"--ranks with --precision {precision}: the DDP run trains in float32; leave out "
                             "--precision or --ranks")
        if framework == "both" and variant == "dropout":
            raise ValueError("--ranks with --variant dropout --framework both: the torch ranks are not bound to "
                             "the Flax run's dropout keys (bind_dropout binds one process); leave out --ranks")
        jaxinit.parallel.split_batch(batch_size, ranks, "--batch-size")
    say = print if verbose else (lambda *a, **k: None)
    data = dataset if dataset is not None else load_dataset(data_dir)
    n_steps = len(data.x_train) // batch_size if steps is None else min(steps, len(data.x_train) // batch_size)
    loop, chunk = choose_jax_loop(jax_loop, n_steps)
    fws = ("jax", "torch") if framework == "both" else (framework,)
    config = {"framework": framework, "batch_size": batch_size, "lr": lr, "dataset": data.name, "steps": steps,
              "seed": seed, "variant": variant, "dropout": dropout, "momentum": momentum}
    if precision != "float32":  # (a float32 run's checkpoints keep their config)
        config["precision"] = precision

    jax_tr = torch_tr = None
    if "jax" in fws:
        jax_tr = JaxTrainer(jax_model(variant, dropout), lr, seed, batch_size, chunk, data.x_train.shape[1:],
                            momentum, precision, loop, ranks)
        say(f"jax {jax.__version__}: {jax_tr.n_devices} {jax.devices()[0].platform} device(s), batch sharded over "
            f"them; compiled {chunk} step(s) per call ({loop}) in {jax_tr.compile_seconds:.1f} s")
    if "torch" in fws:
        init = jax_tr.variables() if jax_tr is not None else None  # identical starting weights
        torch.manual_seed(seed)  # torch-only weights (default biases, Xavier kernels) and dropout masks
        if ranks is None:
            torch_tr = TorchTrainer(torch_model(variant, dropout), lr, init_from=init, momentum=momentum,
                                    precision=precision)
        else:
            torch_tr = TorchDDPTrainer(torch_model(variant, dropout), lr, ranks, data.x_train, data.y_train, variant,
                                       dropout, init_from=init, momentum=momentum, seed=seed)
        where = torch_tr.backend if ranks is not None else torch_tr.device
        say(f"torch {torch.__version__} on {where}" + ("; weights copied from the Flax init" if init else ""))
    ref_tr = None  # --precision bf16/fp16 --framework both: torch in float32 too, for the precision gap
    if framework == "both" and precision != "float32":
        ref_tr = TorchTrainer(torch_model(variant, dropout), lr, init_from=init, momentum=momentum)
        say(f"autocast {precision} ({autocast_device()} op lists) in both; torch also in float32 for the gap")
    say(f"{data.name}: {len(data.x_train)} train / {len(data.x_test)} test images; {n_steps} steps of {batch_size} "
        f"per epoch, lr {lr}, {epochs} epochs, LeNet variant {variant}")

    rng = np.random.default_rng(seed)  # the one shuffling RNG both frameworks share
    history: dict = {fw: {"step_loss": [], "epochs": []} for fw in fws}
    start = 0
    if resume and checkpoint_dir and os.path.exists(os.path.join(checkpoint_dir, "last", "meta.json")):
        start, history = restore(checkpoint_dir, config, rng, jax_tr, torch_tr)
        say(f"resumed from {checkpoint_dir} after epoch {start}")

    if framework == "both" and variant == "dropout":
        for tr in (torch_tr, ref_tr) if ref_tr is not None else (torch_tr,):  # the float32 reference too
            bind_dropout(tr, jax_tr, jax_model(variant, dropout), seed, batch_size, data.x_train.shape[1:],
                         first_step=start * n_steps)

    columns = [("epoch", "epoch", "d")]
    for fw in fws:
        columns += [(f"{fw}_loss", f"{fw} loss", ".4f"), (f"{fw}_train_acc", f"{fw} train", ".3f"),
                    (f"{fw}_test_acc", f"{fw} test", ".3f"), (f"{fw}_ex_per_s", f"{fw} ex/s", ".0f")]
    if framework == "both":
        columns.append(("max_dloss", "max|dloss|", ".2e"))

    def row_of(i: int) -> str:  # the table line of the i-th epoch in the history
        row = {"epoch": history[fws[0]]["epochs"][i]["epoch"]}
        for fw in fws:
            row.update({f"{fw}_{k}": v for k, v in history[fw]["epochs"][i].items() if k != "epoch"})
        if framework == "both":
            per = len(history["jax"]["step_loss"]) // len(history["jax"]["epochs"])  # every epoch has `per` steps
            d = np.abs(np.subtract(history["jax"]["step_loss"][i * per:(i + 1) * per],
                                   history["torch"]["step_loss"][i * per:(i + 1) * per]))
            row["max_dloss"] = float(d.max())
        return table([row], columns).splitlines()[2]

    say("\n" + "\n".join(table([], columns).splitlines()[:2]))
    for i in range(start):  # epochs restored from the checkpoint
        say(row_of(i) + "   (checkpoint)")

    def train_epoch(epoch: int) -> None:  # both frameworks on the same batches, then the table row
        if ranks is None:
            idx = epoch_batches(rng, len(data.x_train), batch_size, steps)
        else:  # DistributedSampler's shards, each step's global batch laid out rank by rank
            order = rng.permutation(len(data.x_train))
            idx = jaxinit.parallel.global_batches(order, ranks, batch_size // ranks)[:steps]
        for fw in fws:
            if fw == "jax":
                losses, correct, secs = jax_tr.train_epoch(data.x_train, data.y_train, idx, chunk, progress)
                test_acc = jax_tr.accuracy(data.x_test, data.y_test)
            else:
                losses, correct, secs = torch_tr.train_epoch(data.x_train, data.y_train, idx, progress)
                test_acc = torch_tr.accuracy(data.x_test, data.y_test)
            history[fw]["epochs"].append({"epoch": epoch, "loss": float(losses.mean()),
                                          "train_acc": correct / idx.size, "test_acc": test_acc,
                                          "ex_per_s": idx.size / secs, "seconds": secs})
            history[fw]["step_loss"].extend(losses.tolist())
        if ref_tr is not None:
            history.setdefault("reference", {"step_loss": []})["step_loss"].extend(
                ref_tr.train_epoch(data.x_train, data.y_train, idx, progress)[0].tolist())
        say(row_of(epoch - 1))
        if checkpoint_dir:
            save(checkpoint_dir, epoch, rng, history, config, jax_tr, torch_tr)

    try:
        for epoch in range(start + 1, epochs + 1):
            train_epoch(epoch)
    finally:
        if isinstance(torch_tr, TorchDDPTrainer):
            torch_tr.close()

    reference = history.pop("reference", None)
    summary = summarize(history, verbose=verbose)
    if reference is not None:
        summary.update(precision_report(history, reference["step_loss"], jax_tr, torch_tr, verbose))
    if out:
        plot(history, out, title=f"LeNet + BatchNorm ({variant}), {data.name}")
        say(f"plot: {out}")
    return {"history": history, "summary": summary, "jax": jax_tr, "torch": torch_tr}


# ---------------------------------------------------------------- the report

def summarize(history: dict, verbose: bool = True) -> dict:
    """Worst step-by-step loss difference and the plain divergence statement (``both`` runs)."""
    if set(history) != {"jax", "torch"} or not history["jax"]["step_loss"]:
        return {}
    d = np.abs(np.asarray(history["jax"]["step_loss"]) - np.asarray(history["torch"]["step_loss"]))
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


def precision_report(history: dict, reference: list, jax_tr, torch_tr, verbose: bool = True) -> dict:
    """--precision bf16/fp16: the frameworks' largest per-step loss difference next to torch's own
    low-precision-vs-float32 gap in the same run; fp16: skipped steps and scale sequences."""
    low = np.asarray(history["torch"]["step_loss"])
    gap = float(np.abs(low - np.asarray(reference)).max())
    diff = float(np.abs(np.asarray(history["jax"]["step_loss"]) - low).max())
    s = {"max_dloss_low_precision": diff, "torch_low_vs_float32_gap": gap}
    if torch_tr.scaler.is_enabled():
        js, ts = np.asarray(jax_tr.scales), np.asarray(torch_tr.scales)
        skipped = {fw: [i + 1 for i in range(len(sc)) if sc[i] < (sc[i - 1] if i else 2.0 ** 16)]
                   for fw, sc in (("jax", js), ("torch", ts))}
        s.update({"scales_jax": js.tolist(), "scales_torch": ts.tolist(), "skipped_jax": skipped["jax"],
                  "skipped_torch": skipped["torch"], "same_scale_sequence": bool(np.array_equal(js, ts))})
    if verbose:
        print(f"mixed precision: largest per-step loss difference jax vs torch {diff:.2e}; torch's own "
              f"low-precision-vs-float32 gap {gap:.2e} ({gap / max(diff, 1e-30):.1f}x the difference)")
        if "scales_jax" in s:
            print(f"fp16 loss scaling: skipped steps jax {s['skipped_jax']}, torch {s['skipped_torch']}; "
                  f"same scale sequence: {s['same_scale_sequence']} (last scale jax {js[-1]:g}, torch {ts[-1]:g})")
    return s


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (works headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(history: dict, out: str, title: str = "") -> None:
    plt = pyplot()
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


# ---------------------------------------------------------------- the command line

def parity_precision() -> None:
    """Full-precision matmuls/convs in both frameworks (no TF32), for a like-for-like comparison."""
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
    p.add_argument("--no-progress", action="store_true", help="no progress bars (none either when not on a terminal)")
    return p


def main(argv=None) -> int:
    p = parser()
    p.add_argument("--variant", choices=VARIANTS, default="bn_all")
    p.add_argument("--precision", choices=tuple(PRECISIONS), default="float32",
                   help="torch.autocast / jaxinit.amp.Autocast in bf16 or fp16 (fp16 with loss scaling)")
    p.add_argument("--ranks", type=int, help="data parallel over N ranks: torch DDP processes (gloo on CPU, NCCL on "
                   "GPU; SyncBatchNorm) and the JAX batch sharded over N devices (N CPU devices are made on CPU)")
    p.add_argument("--jax-loop", choices=JAX_LOOP_NAMES, default="auto",
                   help="how the JAX trainer loops over steps (auto: one jitted step per batch on CPU, "
                        "a lax.scan over up to 16 steps on GPU/TPU)")
    p.add_argument("--out", default="lenet_bn.png", help="PNG of the curves ('' for none)")
    a = p.parse_args(argv)
    if a.ranks and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        jax.config.update("jax_num_cpu_devices", a.ranks)  # one JAX CPU device per rank (before jax starts)
    if a.framework == "both":
        parity_precision()
    run(a.framework, a.epochs, a.batch_size, a.lr, a.data_dir, a.steps, a.checkpoint_dir, a.resume, a.out or None,
        a.seed, a.variant, momentum=a.momentum, progress=not a.no_progress, precision=a.precision,
        jax_loop=a.jax_loop, ranks=a.ranks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
