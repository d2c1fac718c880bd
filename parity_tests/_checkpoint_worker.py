"""One process of parity_tests/test_checkpoint_io.py's multi-process case (``jax.distributed`` on CPU,
2 devices per process): converts a torch checkpoint into Orbax sharded over every process's devices
and prints, as JSON, which slices of the file this process read.

    python parity_tests/_checkpoint_worker.py PROCESS_ID NUM_PROCESSES PORT SRC DST
"""
from __future__ import annotations

import json
import os
import sys


def main() -> None:
    pid, n, port, src, dst = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=n, process_id=pid)
    import numpy as np

    from _jaxinit.sharded import SafetensorsReader
    from jaxinit._src.checkpoint_io import OrbaxWriter, stream_torch_to_flax

    reads: list = []

    class Counting(SafetensorsReader):
        def read(self, key, index=None):
            out = super().read(key, index)
            reads.append([key, [[s.start, s.stop] for s in index] if index else None])
            return out

    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))

    def sharding(name, shape):
        spec = [None] * len(shape)
        if shape and shape[0] % len(jax.devices()) == 0:
            spec[0] = "d"
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))

    writer = OrbaxWriter(dst, "worker")
    try:
        stream_torch_to_flax(Counting(src, "worker"), writer.add, sharding=sharding, who="worker")
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    print("RESULT", json.dumps({"process": pid, "devices": jax.device_count(), "reads": reads}))


if __name__ == "__main__":
    main()
