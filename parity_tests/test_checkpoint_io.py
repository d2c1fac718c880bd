"""Checkpoints at scale (jaxinit.convert_checkpoint / load_torch_checkpoint and the torchinit mirror):
Hugging Face sharded safetensors (written by huggingface_hub.save_torch_state_dict, the library
transformers uses) -> Orbax sharded across 4 devices -> torch again, bitwise, against the in-memory
route (from_torch_state_dict / to_torch_state_dict); arrays created directly in a given
NamedSharding; bad files refused by name with nothing written. The 2-4 GB case with its peak-memory
bound runs under the ``bigcheckpoint`` marker (docs/suite.md)."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest
import torch

import jaxinit
import torchinit
from _jaxinit.errors import InitError
from _jaxinit.sharded import SafetensorsReader

KINDS = {"up": "conv_transpose", "emb": "embed", "att": ("mha", {"num_heads": 2})}


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(12, 8)
        self.conv = torch.nn.Conv2d(4, 8, 3)
        self.up = torch.nn.ConvTranspose2d(8, 4, 3)
        self.bn = torch.nn.BatchNorm2d(8)
        self.ln = torch.nn.LayerNorm(8)
        self.emb = torch.nn.Embedding(10, 8)
        self.att = torch.nn.MultiheadAttention(8, 2)
        self.gru = torch.nn.GRU(8, 4)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    m = _Net().double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))
        m.bn.running_mean.normal_()
        m.bn.num_batches_tracked.fill_(7)
    return m


@pytest.fixture(scope="module")
def hf_dir(net, tmp_path_factory):
    import huggingface_hub

    d = tmp_path_factory.mktemp("ckpt") / "hf"
    d.mkdir()
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    huggingface_hub.save_torch_state_dict(sd, str(d), max_shard_size=2000)
    assert (d / "model.safetensors.index.json").exists() and len(list(d.glob("*.safetensors"))) > 2
    return d


def _mesh4(name, shape):
    """Four of the suite's eight fake devices; each tensor split along its largest axis 4 divides."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("d",))
    spec = [None] * len(shape)
    for a in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[a] % 4 == 0:
            spec[a] = "d"
            break
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))


def _flat(tree):
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_torch_to_orbax_and_back_bitwise_on_4_devices(net, hf_dir, tmp_path):
    from orbax.checkpoint import v1

    ref = _flat(jaxinit.from_torch_state_dict(net.state_dict(), kinds=KINDS, merge_rnn_biases=True))
    summary = jaxinit.convert_checkpoint(hf_dir, tmp_path / "orbax", to="flax", kinds=KINDS, merge_rnn_biases=True,
                                         sharding=_mesh4)
    # every source tensor is accounted for: weight.T and the ConvTranspose flip read as slices
    assert {n for n, _ in summary["transposed"]} == {"fc.weight", "conv.weight", "up.weight"}
    assert ("ln.weight", "params/ln/scale") in summary["renamed"] and ("fc.bias", "params/fc/bias") in summary["kept"]
    assert not summary["dropped"]
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=_mesh4("", a.shape)),
                            jaxinit.from_torch_state_dict(net.state_dict(), kinds=KINDS, merge_rnn_biases=True))
    got = _flat(v1.load(tmp_path / "orbax", abstract))
    assert ref.keys() == got.keys()
    assert all(_same(ref[k], got[k]) for k in ref), [k for k in ref if not _same(ref[k], got[k])]
    kernel = got["['params']['fc']['kernel']"]
    assert len(kernel.sharding.device_set) == 4 and kernel.addressable_shards[0].data.shape == (3, 8)
    # back to torch: a Hugging Face sharded directory equal to the in-memory route
    jaxinit.convert_checkpoint(tmp_path / "orbax", tmp_path / "back", to="torch", template=net, max_shard_size=3000)
    index = json.loads((tmp_path / "back" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    back = torchinit.load_checkpoint  # noqa: F841  (the files are read by safetensors itself below)
    import safetensors.torch

    tensors = {}
    for f in set(index["weight_map"].values()):
        tensors.update(safetensors.torch.load_file(tmp_path / "back" / f))
    expect = jaxinit.to_torch_state_dict(jaxinit.from_torch_state_dict(net.state_dict(), kinds=KINDS,
                                                                       merge_rnn_biases=True), net)
    assert tensors.keys() == expect.keys()
    assert all(torch.equal(tensors[k], expect[k]) and tensors[k].dtype == expect[k].dtype for k in expect)
    # every tensor that is not a merged GRU bias comes back as it was
    sd = net.state_dict()
    assert [k for k in sd if not torch.equal(tensors[k], sd[k])] == ["gru.bias_ih_l0", "gru.bias_hh_l0"]


def test_bfloat16_round_trip(tmp_path):
    """bfloat16 (ml_dtypes on the numpy side) through Orbax and back, bitwise, with a flip."""
    import huggingface_hub

    torch.manual_seed(1)
    sd = {"up.weight": torch.randn(8, 4, 3, 3).to(torch.bfloat16), "up.bias": torch.randn(4).to(torch.bfloat16),
          "fc.weight": torch.randn(16, 8).to(torch.bfloat16)}
    (tmp_path / "hf").mkdir()
    huggingface_hub.save_torch_state_dict(sd, str(tmp_path / "hf"))
    jaxinit.convert_checkpoint(tmp_path / "hf", tmp_path / "o", to="flax", kinds={"up": "conv_transpose"},
                               sharding=_mesh4)
    jaxinit.convert_checkpoint(tmp_path / "o", tmp_path / "back.safetensors", to="torch",
                               kinds={"up": "conv_transpose"})
    back = torchinit.load_checkpoint(tmp_path / "back.safetensors")
    assert all(back[k].dtype == torch.bfloat16 and torch.equal(back[k], sd[k]) for k in sd)


def test_load_torch_checkpoint_into_template_shardings(net, hf_dir):
    """Arrays are created directly in the template leaves' NamedShardings (sliced reads)."""
    variables = jaxinit.from_torch_state_dict(net.state_dict(), kinds=KINDS, merge_rnn_biases=True)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=_mesh4("", a.shape)),
                            variables)
    got = jaxinit.load_torch_checkpoint(hf_dir, abstract, kinds=KINDS, merge_rnn_biases=True)
    ref, flat = _flat(variables), _flat(got)
    assert all(_same(ref[k], flat[k]) for k in ref)
    assert all(flat[k].sharding == _mesh4("", flat[k].shape) for k in flat)
    # each device's shard is read as its own slice: no read is larger than one shard of its tensor
    from jaxinit._src.checkpoint_io import stream_torch_to_flax

    class Counting(SafetensorsReader):
        def read(self, key, index=None):
            out = super().read(key, index)
            reads.append((key, out.nbytes))
            return out

    reads: list = []
    reader = Counting(hf_dir, "test")
    kernel: dict = {}
    stream_torch_to_flax(reader, kernel.__setitem__, sharding=_mesh4, kinds=KINDS, merge_rnn_biases=True, who="test")
    fc = [n for k, n in reads if k == "fc.weight"]
    assert len(fc) == 4 and sum(fc) == reader.infos["fc.weight"].nbytes  # (12, 8) kernel: four (3, 8) shards
    # the torch mirror returns the same Flax variables as numpy arrays
    mirror = _flat(torchinit.load_torch_checkpoint(hf_dir, kinds=KINDS, merge_rnn_biases=True))
    assert mirror.keys() == ref.keys() and all(_same(ref[k], mirror[k]) for k in ref)


def test_piecewise_sliced_reads_equal_the_converters(net, hf_dir):
    """Every output planned as a view (Linear/Conv transposes, the ConvTranspose flip, GRU gate
    blocks are not: values decide there) read back per device block and one source row at a time
    (the path a large tensor takes) equals the in-memory converter's array."""
    from _jaxinit import sharded
    from _jaxinit.arrays import flatten_flax

    reader = SafetensorsReader(hf_dir, "test")
    plan = sharded.plan_torch_to_flax(reader.infos, template=None, mapping=None, kinds=KINDS,
                                      merge_rnn_biases=True, who="test")
    ref = flatten_flax(jaxinit.from_torch_state_dict(net.state_dict(), kinds=KINDS, merge_rnn_biases=True), "test")
    assert len(plan.views) == 14
    for key, view in plan.views.items():
        shape, dtype = plan.outputs[key]
        want = np.asarray(ref[key])
        src_shape = reader.infos[view.key].shape
        whole = view.read(reader, tuple(slice(None) for _ in shape), shape, src_shape, dtype, piece_bytes=1)
        assert _same(whole, want), key
        if shape and shape[-1] % 2 == 0:  # a column block: the source's other axis, in pieces
            half = tuple(slice(None) for _ in shape[:-1]) + (slice(shape[-1] // 2, None),)
            got = view.read(reader, half, shape, src_shape, dtype, piece_bytes=1)
            assert _same(got, want[half]), key


def _corrupt(case: str, src, tmp_path):
    """A copy of the sharded checkpoint ``src`` broken one way; returns its path."""
    import shutil

    d = tmp_path / case
    shutil.copytree(src, d)
    index_path = d / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    files = sorted(set(index["weight_map"].values()))
    if case == "truncated":
        f = d / files[0]
        f.write_bytes(f.read_bytes()[:-5])
    elif case == "wrong index":
        a, b = sorted(index["weight_map"])[:2]
        fa, fb = index["weight_map"][a], index["weight_map"][b]
        if fa == fb:
            fb = next(f for f in files if f != fa)
        index["weight_map"][a] = fb
        index_path.write_text(json.dumps(index))
    elif case == "wrong total_size":
        index["metadata"]["total_size"] += 8
        index_path.write_text(json.dumps(index))
    elif case == "missing shard":
        (d / files[-1]).unlink()
    elif case == "dtype mismatch":  # a header that says F32 over float64 bytes
        f = d / files[0]
        raw = f.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        key = next(k for k in header if k != "__metadata__")
        header[key]["dtype"] = "F32"
        text = json.dumps(header).encode()
        text += b" " * (n - len(text))
        f.write_bytes(raw[:8] + text + raw[8 + n:])
    return d


@pytest.mark.parametrize("case,message", [
    ("truncated", "is truncated"), ("wrong index", "wrong index"), ("wrong total_size", "wrong index"),
    ("missing shard", "missing shard"), ("dtype mismatch", "dtype mismatch")])
@pytest.mark.parametrize("pkg", ["jaxinit", "torchinit"])
def test_bad_files_are_named_and_nothing_is_written(case, message, pkg, hf_dir, tmp_path):
    bad = _corrupt(case, hf_dir, tmp_path)
    dst = tmp_path / ("out" if pkg == "jaxinit" else "out.safetensors")
    convert = jaxinit.convert_checkpoint if pkg == "jaxinit" else torchinit.convert_checkpoint
    with pytest.raises(jaxinit.CheckpointFileError, match=message):
        convert(bad, dst, to="flax", kinds=KINDS, merge_rnn_biases=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [case]  # no dst, no temporary sibling


def test_template_dtype_mismatch_is_refused_before_writing(net, hf_dir, tmp_path):
    template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, np.float32),
                            jaxinit.from_torch_state_dict(net.state_dict(), kinds=KINDS, merge_rnn_biases=True))
    with pytest.raises(jaxinit.ConversionError, match="dtype mismatches"):
        jaxinit.convert_checkpoint(hf_dir, tmp_path / "o", to="flax", template=template, kinds=KINDS,
                                   merge_rnn_biases=True)
    assert not list(tmp_path.iterdir())


def test_a_failure_while_writing_leaves_nothing(net, hf_dir, tmp_path):
    """A value problem found only when the real tensors are read (both GRU biases nonzero without
    merge_rnn_biases) fails the conversion after Orbax has written: the output is removed."""
    with pytest.raises(jaxinit.ConversionError, match="merge_rnn_biases"):
        jaxinit.convert_checkpoint(hf_dir, tmp_path / "o", to="flax", kinds=KINDS)
    assert not list(tmp_path.iterdir())


def test_torchinit_flax_safetensors_round_trip(net, hf_dir, tmp_path):
    """torchinit (no jax): the Flax side is a Flax-named .safetensors, equal to save_checkpoint's."""
    summary = torchinit.convert_checkpoint(hf_dir, tmp_path / "flax.safetensors", to="flax", kinds=KINDS,
                                           merge_rnn_biases=True)
    assert summary["transposed"]
    ref = _flat(torchinit.from_torch_state_dict(net.state_dict(), kinds=KINDS, merge_rnn_biases=True))
    got = _flat(torchinit.load_checkpoint(tmp_path / "flax.safetensors"))
    assert ref.keys() == got.keys() and all(_same(ref[k], got[k]) for k in ref)
    torchinit.convert_checkpoint(tmp_path / "flax.safetensors", tmp_path / "back.safetensors", to="torch",
                                 template=net)
    back = torchinit.load_checkpoint(tmp_path / "back.safetensors")
    expect = torchinit.to_torch_state_dict(torchinit.load_checkpoint(tmp_path / "flax.safetensors"), net)
    assert all(torch.equal(back[k], expect[k]) for k in expect)


def test_torch_save_files_read_with_mmap(net, tmp_path):
    """torch.save files, single and Hugging Face sharded (pytorch_model.bin.index.json, written by
    huggingface_hub with safe_serialization=False), read with torch.load(mmap=True, weights_only=True)."""
    import huggingface_hub

    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save(sd, tmp_path / "m.pt")
    (tmp_path / "bin").mkdir()
    huggingface_hub.save_torch_state_dict(sd, str(tmp_path / "bin"), max_shard_size=2000, safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin.index.json").exists()
    ref = _flat(torchinit.from_torch_state_dict(sd, kinds=KINDS, merge_rnn_biases=True))
    for src, name in ((tmp_path / "m.pt", "a"), (tmp_path / "bin", "b")):
        torchinit.convert_checkpoint(src, tmp_path / f"{name}.safetensors", to="flax", kinds=KINDS,
                                     merge_rnn_biases=True)
        got = _flat(torchinit.load_checkpoint(tmp_path / f"{name}.safetensors"))
        assert ref.keys() == got.keys() and all(_same(ref[k], got[k]) for k in ref)
    first = sorted((tmp_path / "bin").glob("*.bin"))[0]
    first.unlink()
    with pytest.raises(jaxinit.CheckpointFileError, match="missing shard"):
        torchinit.convert_checkpoint(tmp_path / "bin", tmp_path / "c.safetensors", to="flax", kinds=KINDS)
    with pytest.raises(InitError, match="needs torch"):
        jaxinit.convert_checkpoint(tmp_path / "m.pt", tmp_path / "d", to="flax")


def test_dcp_round_trip(net, tmp_path):
    """torch.distributed.checkpoint directories, read and written by torch's own DCP."""
    import torch.distributed.checkpoint as dcp

    sd = {k: v.clone() for k, v in net.state_dict().items()}
    dcp.save(sd, checkpoint_id=str(tmp_path / "dcp"))
    torchinit.convert_checkpoint(tmp_path / "dcp", tmp_path / "flax.safetensors", to="flax", kinds=KINDS,
                                 merge_rnn_biases=True)
    torchinit.convert_checkpoint(tmp_path / "flax.safetensors", tmp_path / "dcp_back", to="torch", template=net,
                                 format="dcp")
    back = {k: torch.empty_like(v) for k, v in sd.items()}
    dcp.load(back, checkpoint_id=str(tmp_path / "dcp_back"))
    expect = torchinit.to_torch_state_dict(torchinit.load_checkpoint(tmp_path / "flax.safetensors"), net)
    assert all(torch.equal(back[k], expect[k]) for k in expect)
    # the command line: torch's DCP reader feeding jaxinit's Orbax writer
    from orbax.checkpoint import v1

    from _jaxinit.jax_and_torch.convert_cli import main

    (tmp_path / "options.json").write_text(json.dumps({"kinds": KINDS, "merge_rnn_biases": True}))
    assert main([str(tmp_path / "dcp"), str(tmp_path / "orbax"), "--to", "flax", "--options",
                 str(tmp_path / "options.json"), "--no-progress"]) == 0
    ref = _flat(torchinit.load_checkpoint(tmp_path / "flax.safetensors"))
    got = _flat(v1.load(tmp_path / "orbax"))
    assert ref.keys() == got.keys() and all(_same(ref[k], got[k]) for k in ref)
    # and back: jaxinit's Orbax reader feeding torch's DCP writer
    assert main([str(tmp_path / "orbax"), str(tmp_path / "dcp_cli"), "--to", "torch", "--format", "dcp",
                 "--options", str(tmp_path / "options.json"), "--no-progress"]) == 0
    names = dcp.FileSystemReader(str(tmp_path / "dcp_cli")).read_metadata().state_dict_metadata
    again = {k: torch.empty_like(expect[k]) for k in names if k in expect}
    dcp.load(again, checkpoint_id=str(tmp_path / "dcp_cli"))
    # no torch template on the command line: names follow the rule, so the GRU (Flax cells) is named
    # differently; every other tensor comes back under its torch name, equal
    assert {k for k in expect if not k.startswith("gru.")} <= set(again)
    assert all(torch.equal(again[k], back[k]) for k in again)


def test_cli_summary_and_mapping_file(net, hf_dir, tmp_path, capsys, monkeypatch):
    from _jaxinit.jax_and_torch.convert_cli import main

    (tmp_path / "kinds.json").write_text(json.dumps({"kinds": KINDS, "merge_rnn_biases": True}))
    main([str(hf_dir), str(tmp_path / "o"), "--to", "flax", "--options", str(tmp_path / "kinds.json"),
          "--sharding", "fsdp", "--no-progress"])
    out = capsys.readouterr().out
    assert "transposed 3" in out and "dropped 0" in out and "wrote" in out
    # errors: named, exit status 2, nothing written
    (tmp_path / "bad.json").write_text(json.dumps({"kind": {}}))
    assert main([str(hf_dir), str(tmp_path / "o2"), "--to", "flax", "--options", str(tmp_path / "bad.json")]) == 2
    assert "unknown keys ['kind']" in capsys.readouterr().err
    assert main([str(hf_dir), str(tmp_path / "o"), "--to", "flax"]) == 2
    assert "exists" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    # relative paths (Orbax itself wants absolute ones)
    monkeypatch.chdir(tmp_path)
    assert main(["o", "back", "--to", "torch", "--options", "kinds.json", "--no-progress"]) == 0
    assert (tmp_path / "back" / "model.safetensors").exists()


@pytest.mark.bigcheckpoint
def test_two_processes_each_read_their_own_slices(tmp_path):
    """jax.distributed with 2 processes x 2 CPU devices: each process reads only the file slices of
    its own devices' shards, Orbax writes one checkpoint collectively, and it holds the torch
    tensors transposed, exactly."""
    import socket
    import subprocess
    import sys

    from safetensors.numpy import save_file

    from jaxinit._src.checkpoint_io import OrbaxReader

    weight = np.arange(32, dtype=np.float32).reshape(4, 8)
    save_file({"fc.weight": weight, "fc.bias": np.arange(4, dtype=np.float32)}, tmp_path / "m.safetensors")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, os.path.join(root, "parity_tests", "_checkpoint_worker.py"), str(i), "2",
                               str(port), str(tmp_path / "m.safetensors"), str(tmp_path / "orbax")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.split("RESULT ", 1)[1]))
    assert all(r["devices"] == 4 for r in results)
    # the (8, 4) kernel is split in four rows of 2 = torch weight columns: process 0 reads columns 0-3
    cols = [sorted(tuple(r[1][1]) for r in res["reads"] if r[0] == "fc.weight") for res in results]
    assert cols == [[(0, 2), (2, 4)], [(4, 6), (6, 8)]]
    reader = OrbaxReader(tmp_path / "orbax", "test")
    assert np.array_equal(reader.read(("params", ("fc", "kernel"))), weight.T)


@pytest.mark.bigcheckpoint
def test_big_checkpoint_round_trip_and_peak_memory(tmp_path):
    """2.5 GB of float32 (largest tensor 256 MiB) torch -> Orbax (4 devices) -> torch, each step in a
    fresh process: bitwise round trip. Peak resident memory above the warmed-up baseline, as a
    multiple of the largest tensor: building every array in its sharding from sliced reads
    (``read_sharded``), torch -> Orbax (uncompressed chunks: Orbax then writes the CPU shards from
    their own buffers) and writing torch files from Orbax each stay within 1.5x. Figures:
    docs/checkpoints.md."""
    from benchmarks.bench_checkpoint import generate, measure, same_tensors

    src, orbax, back = tmp_path / "torch", tmp_path / "orbax", tmp_path / "back"
    generate(str(src), int(2.5e9), 256 * 2**20)
    read = measure("read_sharded", str(src), "")
    to_flax = measure("to_flax", str(src), str(orbax))
    to_torch = measure("to_torch", str(orbax), str(back))
    print(json.dumps([read, to_flax, to_torch]))
    assert same_tensors(str(src), str(back))
    largest = read["largest"]
    assert read["peak_above_baseline"] <= 1.5 * largest, read
    assert to_torch["peak_above_baseline"] <= 1.5 * largest, to_torch
    assert to_flax["peak_above_baseline"] <= 1.5 * largest, to_flax
