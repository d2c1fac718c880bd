"""The benchmarks (benchmarks/README.md), importable from the repository root as ``benchmarks.bench_x``
(the device report reuses them: ``from benchmarks import bench_lenet``).

Each also runs as a script, in either form, from the repository root::

    python benchmarks/bench_lenet.py --examples 6144
    python -m benchmarks.bench_lenet --examples 6144

A script run (``__package__`` empty) puts the repository root first on ``sys.path`` so that
``benchmarks.*`` and the source tree's ``jaxinit``/``torchinit`` import; an import changes nothing.
"""
