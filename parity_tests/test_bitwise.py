"""torchinit's in-place drop-ins are bitwise torch.nn.init under the same seed."""
from __future__ import annotations

import math

import pytest
import torch

import torchinit
from parity_tests._figures import TORCH_DEVICE

CASES = [
    ("uniform_", (-0.3, 0.7)),
    ("normal_", (0.5, 2.0)),
    ("trunc_normal_", ()),
    ("trunc_normal_", (0.0, 0.02)),
    ("trunc_normal_", (0.0, 1.0, 0.5, 1.5)),
    ("trunc_normal_", (1.0, 0.5, -1.0, 1.2)),
    ("constant_", (0.3,)),
    ("zeros_", ()),
    ("ones_", ()),
    ("xavier_uniform_", ()),
    ("xavier_uniform_", (1.7,)),
    ("xavier_normal_", (0.5,)),
    ("kaiming_uniform_", ()),
    ("kaiming_uniform_", (math.sqrt(5),)),
    ("kaiming_uniform_", (0, "fan_out", "relu")),
    ("kaiming_uniform_", (0.2, "FAN_IN", "leaky_relu")),
    ("kaiming_normal_", ()),
    ("kaiming_normal_", (0, "fan_out", "tanh")),
    ("orthogonal_", ()),
    ("orthogonal_", (2.0,)),
]
SHAPES = [(7, 5), (5, 7), (16, 8, 3), (8, 4, 3, 3), (4, 6, 2, 3, 3)]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _run(fn, shape, dtype, args, seed, use_generator):
    t = torch.empty(shape, dtype=dtype, device=TORCH_DEVICE)
    if use_generator:
        fn(t, *args, generator=torch.Generator(TORCH_DEVICE).manual_seed(seed)) if _takes_gen(fn) else fn(t, *args)
    else:
        torch.manual_seed(seed)
        fn(t, *args)
    return t


def _takes_gen(fn):
    return "generator" in fn.__code__.co_varnames


def _runnable(name, dtype):
    # torch.nn.init.orthogonal_ has no 16-bit QR on CPU (geqrf_cpu): there is no reference to
    # compare with, so those cases are not generated; ours is tested in test_structure.
    return not (name == "orthogonal_" and dtype in (torch.bfloat16, torch.float16) and TORCH_DEVICE.type == "cpu")


@pytest.mark.parametrize("use_generator", [False, True], ids=["manual_seed", "generator"])
@pytest.mark.parametrize("name,args,shape,dtype", [
    pytest.param(name, args, shape, dtype, id=f"{name}{args}-{shape}-{dtype}")
    for name, args in CASES for shape in SHAPES for dtype in DTYPES if _runnable(name, dtype)
])
def test_inplace_bitwise_equal_to_torch(name, args, shape, dtype, use_generator):
    ref = _run(getattr(torch.nn.init, name), shape, dtype, args, 11, use_generator)
    ours = _run(getattr(torchinit, name), shape, dtype, args, 11, use_generator)
    assert ours.dtype == ref.dtype
    assert torch.equal(ours, ref), f"{name}{args} differs from torch.nn.init"


@pytest.mark.parametrize("shape,groups", [((6, 4, 5), 1), ((8, 4, 3, 3), 2), ((4, 8, 2, 3, 3), 1), ((9, 3, 4, 4), 3)])
def test_dirac_bitwise(shape, groups):
    assert torch.equal(torchinit.dirac_(torch.empty(shape), groups), torch.nn.init.dirac_(torch.empty(shape), groups))


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (1, 1)])
def test_eye_bitwise(shape):
    assert torch.equal(torchinit.eye_(torch.empty(shape)), torch.nn.init.eye_(torch.empty(shape)))


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9])
def test_sparse_bitwise_under_manual_seed(sparsity):
    """torch draws sparse_'s zero pattern from the global RNG; with generator=None we do too."""
    torch.manual_seed(4)
    ref = torch.nn.init.sparse_(torch.empty(30, 20), sparsity)
    torch.manual_seed(4)
    ours = torchinit.sparse_(torch.empty(30, 20), sparsity)
    assert torch.equal(ours, ref)


def test_sparse_generator_drives_zero_pattern_too():
    """Documented difference: with generator=, the zero pattern is reproducible
    from the generator alone (torch's ignores it)."""
    a = torchinit.sparse_(torch.empty(30, 20), 0.5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)  # the global RNG must not matter
    b = torchinit.sparse_(torch.empty(30, 20), 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_svd_scalar_bitwise_orthogonal():
    torch.manual_seed(2)
    ref = torch.nn.init.orthogonal_(torch.empty(12, 20), 1.5)
    torch.manual_seed(2)
    assert torch.equal(torchinit.svd_(torch.empty(12, 20), 1.5), ref)


def test_factory_uses_inplace_path():
    """A torchinit factory (torch layout by default) and a seed equals the in-place drop-in
    with a generator seeded alike (float32: no cast involved)."""
    init = torchinit.kaiming_normal(mode="fan_out")  # torch's layout is torchinit's default
    ref = torch.nn.init.kaiming_normal_(torch.empty(8, 4, 3, 3), mode="fan_out", generator=torch.Generator().manual_seed(9))
    assert torch.equal(init(9, (8, 4, 3, 3)), ref)
    assert torch.equal(init(torch.Generator().manual_seed(9), (8, 4, 3, 3)), ref)
