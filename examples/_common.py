"""Shared helpers of the examples: datasets, batching, tables, plots, checkpoints.

Framework-free on purpose (numpy only; jax/torch/matplotlib/tqdm/safetensors are
imported where they are used), so both training paths read exactly the same arrays.

Datasets (images NHWC float32 in [0, 1], labels int32):

- ``digits``: scikit-learn's handwritten digits (1797 images of 8x8, shipped inside
  the scikit-learn wheel, no download), bilinearly upsampled to 28x28 with
  ``scipy.ndimage.zoom(order=1)`` and split once with a fixed permutation into
  1536 training images (6 batches of 256) and 261 test images.
- ``fashion_mnist``: the standard IDX files (``train-images-idx3-ubyte[.gz]`` ...)
  in ``--data-dir`` (or in torchvision's ``FashionMNIST/raw`` below it).
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from dataclasses import dataclass

import numpy as np

DIGITS_TRAIN = 1536


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # (N, 28, 28, 1) float32
    y_train: np.ndarray  # (N,) int32
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int = 10


def load_digits_28() -> Dataset:
    """scikit-learn's digits, 8x8 -> 28x28 (bilinear, deterministic), fixed 1536/261 split."""
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
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(data_dir: str) -> Dataset:
    """Fashion-MNIST (or MNIST) from the four standard IDX files, gzipped or raw."""
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    found = {}
    for key, base in names.items():
        for sub in ("", "FashionMNIST/raw", "raw"):
            for ext in ("", ".gz"):
                p = os.path.join(data_dir, sub, base + ext)
                if os.path.exists(p):
                    found[key] = p
                    break
            if key in found:
                break
        if key not in found:
            raise FileNotFoundError(
                f"--data-dir {data_dir!r}: {base}[.gz] not found (looked in the folder, FashionMNIST/raw and raw). "
                "Put the four Fashion-MNIST IDX files there, or leave --data-dir out to use the embedded digits.")
    arr = {k: _read_idx(p) for k, p in found.items()}
    xs = {k: (arr[k].astype(np.float32) / 255.0)[..., None] for k in ("x_train", "x_test")}
    return Dataset(f"Fashion-MNIST ({data_dir})", xs["x_train"], arr["y_train"].astype(np.int32),
                   xs["x_test"], arr["y_test"].astype(np.int32))


def load_dataset(data_dir: str | None) -> Dataset:
    return load_digits_28() if not data_dir else load_fashion_mnist(data_dir)


def epoch_batches(rng: np.random.Generator, n: int, batch_size: int, max_steps: int | None = None) -> np.ndarray:
    """Index array (steps, batch_size) of one shuffled epoch; the last partial batch is dropped
    (every step has the same shape: one compiled JAX step, one BatchNorm batch size)."""
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"--batch-size {batch_size} is larger than the {n} training examples; use a smaller one")
    idx = rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)
    return idx if max_steps is None else idx[:max_steps]


# ---------------------------------------------------------------- tables and plots

def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Format rows as a fixed-width table; columns are (key, header, format spec; ``<N`` left-aligns text)."""
    cells = [["-" if r.get(k) is None else format(r[k], f) for k, _, f in columns] for r in rows]
    widths = [max([len(h), 9] + [len(c[i]) for c in cells]) for i, (_, h, _) in enumerate(columns)]
    left = [f.startswith("<") for _, _, f in columns]

    def line(items):
        return "  ".join(c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(items, widths, left)).rstrip()

    head = line([h for _, h, _ in columns])
    return "\n".join([head, "-" * len(head)] + [line(c) for c in cells])


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (works headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def progress(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, leave=False, dynamic_ncols=True, **kw)


# ---------------------------------------------------------------- checkpoints

def _split_tensors(obj, prefix: str, tensors: dict):
    """Nested dict/list/tuple -> JSON skeleton; array leaves move to ``tensors`` under a path key."""
    if isinstance(obj, dict):
        return {str(k): _split_tensors(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if hasattr(obj, "shape") and hasattr(obj, "dtype"):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    return obj


def _join_tensors(skel, tensors: dict, keys_are_ints: bool):
    if isinstance(skel, dict):
        if set(skel) == {"__tensor__"}:
            return tensors[skel["__tensor__"]]
        return {(int(k) if keys_are_ints and k.lstrip("-").isdigit() else k): _join_tensors(v, tensors, keys_are_ints)
                for k, v in skel.items()}
    if isinstance(skel, list):
        return [_join_tensors(v, tensors, keys_are_ints) for v in skel]
    return skel


def save_numpy_tree(path: str, tree) -> None:
    """Nested dict of numpy arrays (and JSON scalars) -> ``path.safetensors`` + ``path.json``."""
    from safetensors.numpy import save_file

    tensors: dict = {}
    skel = _split_tensors(tree, "", tensors)
    save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, path + ".safetensors")
    with open(path + ".json", "w") as f:
        json.dump(skel, f)


def load_numpy_tree(path: str):
    from safetensors.numpy import load_file

    with open(path + ".json") as f:
        skel = json.load(f)
    return _join_tensors(skel, load_file(path + ".safetensors"), keys_are_ints=False)


def save_torch_tree(path: str, tree) -> None:
    """Nested dict of torch tensors (a state_dict, an optimizer state_dict) -> safetensors + JSON."""
    from safetensors.torch import save_file

    tensors: dict = {}
    skel = _split_tensors(tree, "", tensors)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path + ".safetensors")
    with open(path + ".json", "w") as f:
        json.dump(skel, f)


def load_torch_tree(path: str, device="cpu"):
    """Inverse of :func:`save_torch_tree`; integer-looking keys come back as ints (optimizer state ids)."""
    from safetensors.torch import load_file

    with open(path + ".json") as f:
        skel = json.load(f)
    return _join_tensors(skel, load_file(path + ".safetensors", device=str(device)), keys_are_ints=True)


def commit_dir(tmp: str, final: str) -> None:
    """Atomically replace ``final`` by the fully written ``tmp`` folder (a crash leaves the old one)."""
    if os.path.exists(final):
        old = final + ".old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
