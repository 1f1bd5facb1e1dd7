"""Dataset throughput: examples/s with all cores, render CPU per example, rejects and bytes per example.

Builds sampled-only patches (the bulk of a set), then a smaller set with the default source mix, into
temp folders. Numbers are printed, not asserted: they depend on the machine and on what else runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from training.dataset import DEFAULT_RATIOS, build_dataset


def report(label: str, summary: dict) -> None:
    print(f"{label}: {summary['examples_built']} examples in {summary['seconds']:.1f} s "
          f"= {summary['examples_per_second']:.2f} examples/s on {os.cpu_count()} cores, "
          f"{summary['render_cpu_seconds_per_example']:.3f} CPU s/example in workers, "
          f"{summary['bytes_per_example']} bytes/example")
    print(f"  per source: {summary['per_source']}")
    print(f"  reject rate: {summary['reject_rate']}")
    print(f"  rejects: {summary['rejects']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=400, help="sampled-only examples")
    parser.add_argument("--mixed-count", type=int, default=128, help="examples with the default source mix")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.count:
            report("sampled", build_dataset(os.path.join(folder, "sampled"), args.count, shard_size=64,
                                            ratios=(1.0, 0.0, 0.0, 0.0, 0.0, 0.0), workers=args.workers))
        if args.mixed_count:
            report("mixed " + ",".join(map(str, DEFAULT_RATIOS)),
                   build_dataset(os.path.join(folder, "mixed"), args.mixed_count, seed=1, shard_size=64,
                                 workers=args.workers))


if __name__ == "__main__":
    main()
