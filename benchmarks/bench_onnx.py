"""How fast the converter's ONNX model answers for one 5 s clip on the CPU, and how big it is.

The converter handles one sound at a time, so the figure that matters is the latency of a batch of
one with 1 and 2 intra-op threads (median of 20 runs after warm-up). Without a path it measures the
shipped default model, or, when none is shipped, a freshly exported randomly initialised ``compact``
model of the default size (same graph and cost as a trained one). ``--int8`` also measures a
dynamically quantised copy. Run with ``python benchmarks/bench_onnx.py [MODEL.onnx] [--int8]``
from the repo root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converter.matching.model import CLIP_SAMPLES, DEFAULT_MODEL, PresetModel  # noqa: E402

RUNS = 20
WARM_UP = 3
THREADS = (1, 2)


def random_compact_model(folder: Path) -> Path:
    """Export an untrained default-size compact model (needs the [train] extra)."""
    import torch

    from export.onnx import export_module
    from training.model import ParameterModel

    torch.manual_seed(0)
    return export_module(ParameterModel("compact"), folder / "random-compact.onnx", recipe="benchmark")


def median_latency(model: PresetModel, clip: np.ndarray) -> float:
    """Median seconds of ``model.predict`` on one clip."""
    for _ in range(WARM_UP):
        model.predict(clip)
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        model.predict(clip)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(path: Path) -> None:
    clip = np.random.default_rng(0).uniform(-0.5, 0.5, (1, CLIP_SAMPLES)).astype(np.float32)
    metadata = PresetModel.load(path).metadata
    print(f"{metadata['encoder']} {metadata['precision']}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    for threads in THREADS:
        model = PresetModel.load(path, threads=threads)
        print(f"  {threads} thread{'s' if threads > 1 else ' '}: {1000 * median_latency(model, clip):7.1f} ms per clip")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", help="exported vinv model (default: the shipped one)")
    parser.add_argument("--int8", action="store_true", help="also measure a dynamically int8-quantised copy")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vinv-bench-") as scratch:
        path = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else random_compact_model(Path(scratch)))
        print(f"batch 1, {CLIP_SAMPLES} samples, median of {RUNS} runs")
        report(path)
        if args.int8:
            from export.onnx import quantize_model

            report(quantize_model(path, Path(scratch) / "model.int8.onnx"))


if __name__ == "__main__":
    main()
