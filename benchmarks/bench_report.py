"""How big the report page gets and how fast it loads, for folders of 100 and 500 conversions.

Run ``python benchmarks/bench_report.py [--counts 100 500]`` from the repo root (needs Debian's
``chromium`` for the load times). For each count it builds a temp folder of that many conversions
as vinv leaves them (inputs, previews, presets, records and pictures under ``.vinv/``; the
pictures are drawn by converter.app.report.pictures from synthetic tones), then prints, asserting
nothing:

- page: the size of ``vinv-report.html`` itself, and of everything under ``.vinv/``;
- write: seconds to build and write the page from the records (what the watcher spends per update);
- load: headless Chromium's wall time for ``--dump-dom`` (parse, script, layout) and for a
  ``--screenshot`` (also decodes and paints the pictures in view), each minus the same for an
  empty page, i.e. the browser's start-up; lazy loading keeps pictures below the fold unloaded.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from converter.app.report.page import PAGE_NAME, write_page  # noqa: E402
from converter.app.report.pictures import picture_pair  # noqa: E402
from converter.app.report.records import Record, VariationRecord, record_place  # noqa: E402

RATE = 44100
DISTINCT_PICTURES = 12  # drawn once each, then reused: drawing is not what this measures


def tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * hz * t) * np.exp(-3 * t) + 0.01 * np.random.default_rng(0).normal(size=t.size)
            ).astype(np.float32)


def build_folder(root: Path, count: int) -> None:
    """``count`` conversions with records, pictures and two variations each, in ten subfolders."""
    pictures = []
    for k in range(DISTINCT_PICTURES):
        sound = tone(55.0 * 2 ** (k / 4))
        pictures.append(picture_pair(sound, RATE, np.tanh(3 * sound), RATE))
    sound = tone(220.0, seconds=0.5)
    for k in range(count):
        folder = root / f"kit {k % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"sample {k:04d}"
        soundfile.write(folder / f"{stem}.wav", sound, RATE)
        shutil.copyfile(folder / f"{stem}.wav", folder / f"{stem}.preview.wav")
        for name in (f"{stem}.vital", f"{stem}.alt-1.vital", f"{stem}.alt-2.vital"):
            (folder / name).write_text('{"author": "vinv"}')
        place = record_place(root, folder, stem)
        place.base.parent.mkdir(parents=True, exist_ok=True)
        place.input_picture.write_bytes(pictures[k % DISTINCT_PICTURES][0])
        place.preview_picture.write_bytes(pictures[k % DISTINCT_PICTURES][1])
        place.record.write_bytes(Record(
            "converted", f"{stem}.wav", preset=f"{stem}.vital", preview=f"{stem}.preview.wav", note="A2 +3c",
            similarity=float(k % 97), method=("resynth", "patch", "hybrid")[k % 3],
            summary="osc 1: resynthesis table (96 frames); filter off; amp A 0.00 s D 0.62 s S 0.00 R 0.31 s",
            variations=(VariationRecord(f"{stem}.alt-1.vital", "patch", 40.0),
                        VariationRecord(f"{stem}.alt-2.vital", "hybrid", 35.0)),
            pictures=True, seconds=1.2).to_json())


def chromium_seconds(chromium: str, page: Path, profile: Path, *arguments: str, repeats: int = 3) -> float:
    """The fastest of ``repeats`` headless runs on ``page``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--window-size=1280,900", *arguments, page.as_uri()],
                       capture_output=True, check=True, timeout=300)
        best = min(best, time.perf_counter() - started)
    return best


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 500])
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        empty = temp / "empty.html"
        empty.write_text("<!DOCTYPE html><title>empty</title>")
        baselines = {}
        if chromium:
            baselines = {mode: chromium_seconds(chromium, empty, temp / "profile", *extra)
                         for mode, extra in (("dom", ("--dump-dom",)), ("shot", (f"--screenshot={temp / 's.png'}",)))}
        for count in args.counts:
            root = temp / f"folder-{count}"
            build_folder(root, count)
            started = time.perf_counter()
            page = write_page(root)
            written = time.perf_counter() - started
            line = (f"{count} files: page {page.stat().st_size / 1024:.0f} KiB, .vinv/ "
                    f"{folder_bytes(root / '.vinv') / 1024 / 1024:.1f} MiB; write {written:.3f} s")
            if chromium:
                dom = chromium_seconds(chromium, page, temp / "profile", "--dump-dom") - baselines["dom"]
                shot = chromium_seconds(chromium, page, temp / "profile", f"--screenshot={temp / 's.png'}")
                line += f"; load {dom:.2f} s (dump-dom), {shot - baselines['shot']:.2f} s (screenshot)"
            else:
                line += "; no chromium for load times"
            print(line, flush=True)
            assert (root / PAGE_NAME).is_file()


if __name__ == "__main__":
    main()
