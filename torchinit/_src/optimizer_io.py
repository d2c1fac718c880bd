r"""Optimizer state files at scale, the torch side: the mirror of :mod:`jaxinit._src.optimizer_io`
(the files: :mod:`_jaxinit.optimizer_files`).

* :func:`save_optimizer_state` ``(dst, optimizer)``: torch's ``optimizer.state_dict()`` with its
  class, parameter names (``param_names=model``: found by identity), shapes and dtypes, written
  one tensor at a time as jaxinit's optimizer safetensors (one file, or a Hugging Face-style
  sharded directory: ``optimizer.safetensors.index.json`` + ``optimizer-0000i-of-0000n.safetensors``)
  or as a ``torch.distributed.checkpoint`` directory (``format='dcp'``: torch's DCP writer, the
  state in ``get_optimizer_state_dict``'s FQN-keyed form when names are known).
* :func:`load_optimizer_state` ``(src, optimizer)``: such files, or any DCP directory holding
  ``optimizer.state_dict()`` / ``get_optimizer_state_dict(...)`` (JAX-written ones included),
  loaded with :func:`torchinit.optim.import_state` (matched by name, or by a position that cannot
  swap two parameters). DCP's non-tensor entries are read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from _jaxinit import optimizer_files as _of
from _jaxinit import sharded as _sh
from _jaxinit.arrays import to_numpy
from _jaxinit.errors import InitError
from torchinit._src import optim_convert as _convert
from torchinit._src import training_state as _tsrc


def save_optimizer_state(dst: str | os.PathLike, optimizer: torch.optim.Optimizer, *, param_names: Any = None,
                         format: str = "safetensors", max_shard_size: int | str = "5GB") -> None:
    r"""Write ``optimizer``'s state (every optimizer this project converts) one tensor at a time.

    ``param_names``: the model (or ``model.named_parameters()``) to name an optimizer built from
    plain parameters (by identity); ``format``: ``'safetensors'`` (``dst`` ending in
    ``.safetensors``: one file; else a directory, sharded above ``max_shard_size``) or ``'dcp'``.
    ``dst`` must not exist; a failure leaves nothing there. Read it with
    :func:`jaxinit.optim.load_optimizer_state` (into sharded optax state) or
    :func:`load_optimizer_state`.

    >>> torchinit.optim.save_optimizer_state("opt_ckpt", opt, param_names=model, max_shard_size="2GB")  # doctest: +SKIP
    """
    who = "torchinit.optim.save_optimizer_state"
    if format not in ("safetensors", "dcp"):
        raise InitError(f"{who}: format must be 'safetensors' or 'dcp', got {format!r}.")
    if os.path.exists(os.fspath(dst)):
        raise FileExistsError(f"{who}: {os.fspath(dst)!r} exists; remove it or choose another destination.")
    sd, extra = _tsrc.optimizer_dict(optimizer, param_names, who)
    if format == "safetensors":
        _of.write_optimizer_safetensors(dst, sd, to_numpy, who, extra, _sh.parse_size(max_shard_size, who))
    else:
        _of.write_optimizer_dcp(dst, sd, torch, who, extra, to_numpy)


def load_optimizer_state(src: str | os.PathLike, optimizer: torch.optim.Optimizer, *, param_names: Any = None,
                         optimizer_key: str | None = None) -> torch.optim.Optimizer:
    r"""Load an optimizer state on disk into ``optimizer`` (its own hyperparameters kept).

    ``src``: jaxinit's optimizer safetensors (a file or a sharded directory) or a
    ``torch.distributed.checkpoint`` directory with ``optimizer.state_dict()`` or
    ``get_optimizer_state_dict(...)`` under ``optimizer_key`` (default: the only one there).
    ``param_names``: as in :func:`torchinit.optim.import_state`. Returns ``optimizer``.

    >>> torchinit.optim.load_optimizer_state("dcp_ckpt", opt, param_names=model)  # doctest: +SKIP
    """
    who = "torchinit.optim.load_optimizer_state"
    body = _of.open_optimizer_state(src, who, torch, optimizer_key)
    return _convert.import_state(_of.numpy_state(body["state"]), optimizer, param_names=param_names)
