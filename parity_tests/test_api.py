"""The mirror: both packages export the same public names; each imports without
the other framework; factories and in-place functions correspond one to one."""
from __future__ import annotations

import inspect
import subprocess
import sys

import jax
import pytest
import torch

import jaxinit
import torchinit


def test_same_public_names():
    jax_names = set(jaxinit.__all__)
    torch_names = set(torchinit.__all__) - set(torchinit.INPLACE) - {"INPLACE"}
    assert jax_names == torch_names, (jax_names ^ torch_names)


def test_every_factory_has_an_inplace_dropin():
    from jaxinit._src.initializers import _FACTORIES as jax_factories
    from torchinit._src.initializers import _FACTORIES as torch_factories

    assert set(jax_factories) == set(torch_factories)
    assert set(jax_factories) <= set(jaxinit.__all__)
    assert {f + "_" for f in jax_factories} == set(torchinit.INPLACE)


# layout defaults differ on purpose: jaxinit reads Flax kernels (in_axis=-2, out_axis=-1),
# torchinit torch's (out, in, *k) (in_axis=1, out_axis=0); docs/initializers.md
_LAYOUT_DEFAULTS = {"in_axis": (-2, 1), "out_axis": (-1, 0)}


@pytest.mark.parametrize("name", [n for n in jaxinit.__all__ if inspect.isfunction(getattr(jaxinit, n))])
def test_same_signatures(name):
    """Same argument names, defaults and kinds in both packages (layout defaults: each framework's own)."""
    js, ts = inspect.signature(getattr(jaxinit, name)), inspect.signature(getattr(torchinit, name))
    assert [(p.name, p.default, p.kind) for p in js.parameters.values()] == \
           [(p.name, _LAYOUT_DEFAULTS[p.name][0] if p.name in _LAYOUT_DEFAULTS else p.default, p.kind)
            for p in ts.parameters.values()]
    for p in ts.parameters.values():
        if p.name in _LAYOUT_DEFAULTS:
            assert p.default == _LAYOUT_DEFAULTS[p.name][1], (name, p.name)


@pytest.mark.parametrize("name", sorted(torchinit.INPLACE))
def test_inplace_signature_mirrors_torch(name):
    """Drop-ins accept torch.nn.init's positional arguments in torch's order."""
    ours = list(inspect.signature(getattr(torchinit, name)).parameters)
    if hasattr(torch.nn.init, name):
        theirs = list(inspect.signature(getattr(torch.nn.init, name)).parameters)
        assert ours[:len(theirs)] == theirs


# jaxinit loads flax (BatchNorm, reinit, nnx helpers) and optax (optim) only when they are used
@pytest.mark.parametrize("pkg,forbidden", [("jaxinit", "torch"), ("jaxinit", "flax"), ("jaxinit", "optax"),
                                           ("torchinit", "jax")])
def test_imports_without_the_other_framework(pkg, forbidden):
    code = f"import sys, {pkg}; bad = [m for m in sys.modules if m == '{forbidden}' or m.startswith('{forbidden}.')]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_repr_and_with_layout():
    for pkg in (jaxinit, torchinit):
        init = pkg.kaiming_uniform(mode="fan_out")
        assert repr(init).startswith(f"{pkg.__name__}.kaiming_uniform(") and "mode='fan_out'" in repr(init)
        relaid = init.with_layout(**pkg.TORCH_LAYOUT)
        assert relaid.args["in_axis"] == 1 and relaid.args["out_axis"] == 0 and relaid.args["mode"] == "fan_out"
        assert relaid == pkg.kaiming_uniform(mode="fan_out", **pkg.TORCH_LAYOUT)
        with pytest.raises(pkg.InitError, match="takes no layout arguments"):
            pkg.zeros().with_layout(**pkg.TORCH_LAYOUT)


def test_layout_constants_equal():
    for name in ("FLAX_LAYOUT", "TORCH_LAYOUT", "FLAX_CONV_TRANSPOSE_LAYOUT"):
        assert getattr(jaxinit, name) == getattr(torchinit, name)


def test_jax_key_forms():
    """Typed keys and raw uint32 keys both work."""
    a = jaxinit.normal()(jax.random.key(3), (4,))
    b = jaxinit.normal()(jax.random.PRNGKey(3), (4,))
    assert (a == b).all()


# Layer submodules: jaxinit.linen / jaxinit.nnx give Flax layers PyTorch's defaults; torchinit.nn
# gives torch layers Flax's defaults. Names differ by framework; this is the one-to-one map.
LAYER_MIRROR = {
    # torchinit.nn name: (jaxinit.linen name, jaxinit.nnx name)
    "Linear": ("Dense", "Linear"),
    "Conv1d": ("Conv", "Conv"),
    "Conv2d": ("Conv", "Conv"),
    "Conv3d": ("Conv", "Conv"),
    "ConvTranspose1d": ("ConvTranspose", "ConvTranspose"),
    "ConvTranspose2d": ("ConvTranspose", "ConvTranspose"),
    # A table of mirrored names: the repetition is the data.
    "ConvTranspose3d": ("ConvTranspose", "ConvTranspose"),
    "Embedding": ("Embed", "Embed"),
    "LayerNorm": ("LayerNorm", "LayerNorm"),
    "LSTMCell": ("LSTMCell", "LSTMCell"),
    "GRUCell": ("GRUCell", "GRUCell"),
    "MultiheadAttention": ("MultiHeadDotProductAttention", "MultiHeadAttention"),
    "BatchNorm": ("BatchNorm", "BatchNorm"),
}
# Our own modules (PyTorch's BatchNorm for Flax, Flax's conventions for torch): no upstream class to subclass.
OWN_LAYERS = {"BatchNorm"}
# torch layers drawing Flax's masks from a JAX key: their twin is Flax's own layer (jaxinit adds nothing);
# parity_tests/test_dropout.py holds them to it.
KEYED_LAYERS = {"Dropout": "flax.linen.Dropout", "Dropout1d": "flax.linen.Dropout(broadcast_dims=...)",
                "Dropout2d": "flax.linen.Dropout(broadcast_dims=...)", "Dropout3d": "flax.linen.Dropout(broadcast_dims=...)",
                "DropPath": "flax.linen.Dropout(broadcast_dims=...)", "StochasticDepth": "flax.linen.Dropout(broadcast_dims=...)"}


def test_layer_submodules_mirror():
    import flax.linen
    from flax import nnx as flax_nnx

    import jaxinit.linen
    import jaxinit.nnx
    import torchinit.nn

    assert set(torchinit.nn.__all__) == set(LAYER_MIRROR) | set(KEYED_LAYERS)
    assert set(jaxinit.linen.__all__) == {v[0] for v in LAYER_MIRROR.values()}
    assert set(jaxinit.nnx.__all__) == {v[1] for v in LAYER_MIRROR.values()}
    for tname, (lname, nname) in LAYER_MIRROR.items():
        if tname in OWN_LAYERS:
            continue
        assert issubclass(getattr(torchinit.nn, tname), getattr(torch.nn, tname))
        assert issubclass(getattr(jaxinit.linen, lname), getattr(flax.linen, lname))
        assert issubclass(getattr(jaxinit.nnx, nname), getattr(flax_nnx, nname))


@pytest.mark.parametrize("module", ["jaxinit", "jaxinit.linen", "jaxinit.nnx", "jaxinit.optim", "jaxinit.random",
                                    "torchinit", "torchinit.nn", "torchinit.optim", "torchinit.random"])
def test_dir_lists_every_public_name(module):
    """dir() shows every name of __all__, also those a module-level __getattr__ provides (PEP 562: such a
    module needs __dir__ too, or dir(jaxinit) lacks BatchNorm)."""
    import importlib

    mod = importlib.import_module(module)
    assert not set(mod.__all__) - set(dir(mod)), sorted(set(mod.__all__) - set(dir(mod)))
    assert hasattr(mod, "__dir__") or not hasattr(mod, "__getattr__"), f"{module} has __getattr__ without __dir__"
