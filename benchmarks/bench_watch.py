"""How vinv-watch behaves as a daemon: latency, throughput, memory and idle CPU.

Run ``python benchmarks/bench_watch.py [--mode MODE] [--model PATH] [--files 500] [--workers 2]`` from the repo
root (Linux: memory and CPU are read from /proc). It starts the real ``vinv-watch`` command on a
temp folder and prints, asserting nothing:

- start: from launch until the daemon logs that it is watching (its first worker is up, with the model
  where the mode asks for one);
- drop-to-preset latency for one file moved in, with workers warm and after they were let go for
  being idle (``worker_idle_seconds``, 15 s here); a file moved in waits 0.05 s on Linux (nothing
  has it open) and the full 0.5 s settle time elsewhere;
- throughput: a drop of ``--files`` 0.5 s WAVs moved in at once, files/s until every preset exists;
- memory: the summed RSS of the daemon and its workers, idle with workers, idle without them (what
  the daemon costs most of the day), and the peak while busy;
- idle CPU: seconds of CPU used by the whole process tree over 10 s of doing nothing;
- stop: from SIGTERM until the process has exited.

The default mode (``resynth``) asks no model. In ``best`` and ``patch``, without ``--model`` the shipped
model is used, or else a random compact model is exported first (needs torch): its speed is a small
model's, not the shipped one's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from converter.app.jobs import MODES  # noqa: E402

SAMPLE_RATE = 44100
SECONDS = 0.5
IDLE_SECONDS = 10.0
WORKER_IDLE_SECONDS = 15.0  # longer than IDLE_SECONDS: the first idle figures are taken with workers
TICKS = os.sysconf("SC_CLK_TCK")


def tiny_model(folder: Path) -> Path:
    """A random compact model exported as vinv-export does (speed only: its presets are nonsense)."""
    import torch

    from export.onnx import export_model
    from training.checkpoint import save_checkpoint
    from training.model import ParameterModel

    torch.manual_seed(0)
    model = ParameterModel(encoder="compact")
    save_checkpoint(model, folder / "checkpoint", step=0, recipe={"purpose": "bench_watch"})
    return export_model(folder / "checkpoint", folder / "random.onnx")


def write_sounds(folder: Path, count: int) -> list[Path]:
    """``count`` plucked tones on a chromatic scale, as 16-bit WAVs."""
    import numpy as np
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(round(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    paths = []
    for k in range(count):
        hz = 55.0 * 2 ** ((k % 48) / 12)
        audio = 0.5 * np.sin(2 * np.pi * hz * t) * np.exp(-5 * t)
        paths.append(folder / f"tone{k:04d}.wav")
        soundfile.write(paths[-1], audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return paths


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(stat.parent.name))
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in parents.get(parent, [])]
        tree += frontier
    return tree


def tree_rss_mb(pid: int) -> float:
    total = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def tree_cpu_seconds(pid: int) -> float:
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def wait_until(condition, timeout: float, poll: float = 0.005) -> float:
    """Seconds until ``condition()`` holds (polled every ``poll`` s); raises after ``timeout``."""
    start = time.perf_counter()
    while not condition():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"gave up after {timeout:.0f} s")
        time.sleep(poll)
    return time.perf_counter() - start


def converted(path: Path) -> bool:
    return path.with_suffix(".vital").exists() and path.with_suffix(".preview.wav").exists()


def drop_one(source: Path, inbox: Path) -> float:
    """Move one file in; seconds until its preset and preview are there."""
    target = inbox / source.name
    start = time.perf_counter()
    os.replace(source, target)
    wait_until(lambda: converted(target), 300)
    return time.perf_counter() - start


def idle_figures(pid: int) -> str:
    """Processes, summed RSS and CPU seconds used over IDLE_SECONDS, of the process tree."""
    before = tree_cpu_seconds(pid)
    time.sleep(IDLE_SECONDS)
    return (f"{len(process_tree(pid))} processes, {tree_rss_mb(pid):.0f} MB RSS, "
            f"{tree_cpu_seconds(pid) - before:.2f} s CPU in {IDLE_SECONDS:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default=MODES[0], help=f"conversion mode (default: {MODES[0]})")
    parser.add_argument("--model", type=Path, help="exported vinv model (default in best and patch: shipped, "
                                                   "else a random one)")
    parser.add_argument("--files", type=int, default=500, help="files in the big drop (default: 500)")
    parser.add_argument("--workers", type=int, default=2, help="conversions at a time (default: 2)")
    args = parser.parse_args()

    from converter.matching.model import DEFAULT_MODEL

    with tempfile.TemporaryDirectory(prefix="bench-watch-") as temp:
        temp = Path(temp)
        model = args.model or (None if args.mode == "resynth" else
                               DEFAULT_MODEL if DEFAULT_MODEL.is_file() else tiny_model(temp))
        inbox, outside, log = temp / "inbox", temp / "outside", temp / "vinv-watch.log"
        inbox.mkdir()
        singles = write_sounds(outside / "singles", 2)
        drop = write_sounds(outside / "drop", args.files)
        config = temp / "config.json"
        config.write_text(json.dumps({"workers": args.workers, "worker_idle_seconds": WORKER_IDLE_SECONDS,
                                      "log_file": str(log)}))
        named = f"model {model} ({model.stat().st_size / 1e6:.1f} MB)" if model else "no model"
        print(f"mode {args.mode}, {named}; {args.workers} workers; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")

        started = time.perf_counter()
        options = ["--mode", args.mode, *(["--model", str(model)] if model else []), "--config", str(config)]
        daemon = subprocess.Popen([sys.executable, "-m", "converter.app.watch", str(inbox), *options], cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: log.is_file() and "watching" in log.read_text(), 300, poll=0.05)
            print(f"start: {time.perf_counter() - started:.1f} s until watching")

            warm = drop_one(singles[0], inbox)
            last_work = time.perf_counter()
            print(f"latency, workers warm: {warm:.2f} s drop to preset")
            print(f"idle with workers: {idle_figures(daemon.pid)}")
            time.sleep(max(0.0, last_work + WORKER_IDLE_SECONDS + 1 - time.perf_counter()))
            print(f"idle, workers let go: {idle_figures(daemon.pid)}")
            cold = drop_one(singles[1], inbox)
            loads = " and loads the model" if model else ""
            print(f"latency, workers cold: {cold:.2f} s drop to preset (starts a worker{loads})")

            targets = [inbox / path.name for path in drop]
            peak, start = 0.0, time.perf_counter()
            for source, target in zip(drop, targets):
                os.replace(source, target)
            remaining = list(targets)
            while remaining:
                peak = max(peak, tree_rss_mb(daemon.pid))
                remaining = [path for path in remaining if not converted(path)]
                time.sleep(0.2)
            seconds = time.perf_counter() - start
            print(f"throughput: {args.files} files in {seconds:.1f} s = {args.files / seconds:.2f} files/s; "
                  f"busy peak {peak:.0f} MB RSS")

            daemon.send_signal(signal.SIGTERM)
            stopping = time.perf_counter()
            daemon.wait(timeout=60)
            print(f"stop: {time.perf_counter() - stopping:.2f} s from SIGTERM to exit (code {daemon.returncode})")
        finally:
            if daemon.poll() is None:
                daemon.kill()


if __name__ == "__main__":
    main()
