"""How fast converter.matching.distance scores 3 s clips at 24 kHz.

The preset search compares hundreds of rendered candidates against one
target, so the figure that matters is calls per second with a prepared
target.  Run with ``python benchmarks/bench_distance.py`` from the repo root.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converter.matching.distance import (  # noqa: E402
    log_spectral_distance,
    mfcc_distance,
    mrstft_distance,
    prepare_target,
)

SAMPLE_RATE = 24000
SECONDS = 3.0
MIN_SECONDS_PER_CASE = 2.0


def calls_per_second(call: Callable[[], float]) -> float:
    """Best rate over several timed batches, after one warm-up call."""
    call()
    best = 0.0
    deadline = time.perf_counter() + MIN_SECONDS_PER_CASE
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10):
            call()
        best = max(best, 10 / (time.perf_counter() - start))
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    n = int(SAMPLE_RATE * SECONDS)
    t = np.arange(n) / SAMPLE_RATE
    target = np.sin(2 * np.pi * 220.0 * t) * np.exp(-t)
    estimate = 0.5 * rng.standard_normal(n) + ((220.0 * t) % 1.0)
    prepared = prepare_target(target, SAMPLE_RATE)

    cases: dict[str, Callable[[], float]] = {
        "mrstft_distance": lambda: mrstft_distance(target, estimate, SAMPLE_RATE),
        "prepared.distance": lambda: prepared.distance(estimate),
        "log_spectral_distance": lambda: log_spectral_distance(target, estimate, SAMPLE_RATE),
        "mfcc_distance": lambda: mfcc_distance(target, estimate, SAMPLE_RATE),
    }
    print(f"{SECONDS:g} s clips at {SAMPLE_RATE} Hz, numpy {np.__version__}")
    for name, call in cases.items():
        rate = calls_per_second(call)
        print(f"{name:>22}: {rate:7.1f} calls/s ({1000.0 / rate:6.2f} ms/call)")


if __name__ == "__main__":
    main()
