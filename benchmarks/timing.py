"""The timer every benchmark and the device report share: ``warmup`` untimed calls, then
``repeats`` timed ones (``time.perf_counter``), the seconds of each timed call.

Imported as ``benchmarks.timing`` (by the benchmark scripts and ``python -m parity_tests.device_report``).
"""
from __future__ import annotations

import time
from typing import Callable


def time_calls(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    >>> len(time_calls(lambda: None, repeats=3, warmup=1))
    3
    """
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out
