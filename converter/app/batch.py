"""vinv-batch: convert every audio file under one or more folders, such as a whole sample pack.

Inputs whose preset and preview are already newer than them are skipped (``--force`` converts them
again), so a run stopped with Ctrl-C continues where it stopped when started again. Workers are
processes (vita and onnxruntime want one engine per process), each loading the model once; every
output appears whole or not at all, so stopping leaves nothing partial behind.

Besides the CSV report, each run writes ``vinv-report.html`` (converter.app.report.page) in ``--out``,
or else in each DIR: the page shows every conversion under its folder, this run's and earlier ones.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from converter.app.config import count, positive_int, seconds
from converter.app.jobs import (
    MODES,
    ConversionPool,
    Job,
    JobOutcome,
    Status,
    VariationOutcome,
    WorkerSetup,
    WorkerSetupError,
    find_jobs,
)
from converter.app.report.page import write_page
from converter.app.report.records import CONVERTED, Record
from converter.files import atomic_write_bytes

REPORT_NAME = "vinv-report.csv"
REPORT_COLUMNS = ("file", "status", "note", "match", "method", "variations", "seconds", "preset", "summary", "error")
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class BatchReport:
    """The outcome of every input of one run, skipped ones included."""

    outcomes: list[JobOutcome] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    def count(self, *statuses: Status) -> int:
        return sum(outcome.status in statuses for outcome in self.outcomes)

    @property
    def failures(self) -> list[JobOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status in (Status.FAILED, Status.CHANGED)]

    def summary(self) -> str:
        """Counts, then each failure with its reason: what a user reads at the end of a run."""
        lines = [
            f"{self.count(Status.CONVERTED)} converted, {self.count(Status.SKIPPED)} skipped (already converted), "
            f"{len(self.failures)} failed in {self.seconds:.1f} s"
        ]
        if self.interrupted:
            lines.append("stopped before the end: run the same command again to continue")
        lines += [f"failed: {outcome.source}: {outcome.error}" for outcome in self.failures]
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per input, written atomically: file, status, note, match 0-100, the method that won, the
        variations (``kick.alt-1.vital 64.0; ...``), seconds, preset, the preset's summary and the error."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        for outcome in sorted(self.outcomes, key=lambda outcome: str(outcome.source)):
            writer.writerow([
                outcome.source,
                outcome.status.value,
                outcome.note,
                "" if outcome.similarity is None else f"{outcome.similarity:.1f}",
                outcome.method,
                "; ".join(f"{variation.preset.name} {variation.similarity:.1f}" for variation in outcome.variations),
                f"{outcome.seconds:.2f}" if outcome.status is not Status.SKIPPED else "",
                outcome.preset or "",
                outcome.summary,
                outcome.error,
            ])
        return atomic_write_bytes(path, text.getvalue().encode("utf-8"))


def page_folders(
    folders: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Where the report pages go: ``out_dir`` when given (it holds every output), else each folder."""
    return [Path(out_dir)] if out_dir is not None else [Path(folder) for folder in folders]


def plan_batch(
    folders: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None, force: bool = False
) -> tuple[list[Job], list[JobOutcome]]:
    """The jobs to run and the skipped inputs, for ``folders`` (each mirrored under ``out_dir`` if given).

    With several folders and ``out_dir``, each folder's tree goes under ``out_dir/<folder name>``.
    A skipped input's outcome carries what its page record says about its last conversion.
    """
    folders = [Path(folder) for folder in folders]
    out_roots: list[Path | None] = [None] * len(folders)
    page_roots = [Path(out_dir)] * len(folders) if out_dir is not None else folders
    if out_dir is not None:
        out = Path(out_dir)
        out_roots = [out] if len(folders) == 1 else [out / Path(os.path.realpath(folder)).name for folder in folders]
    jobs, skipped, seen = [], [], set()
    for folder, out_root, page_root in zip(folders, out_roots, page_roots):
        for job in find_jobs(folder, out_root, page_root):
            if job.source in seen:  # nested folders on the command line
                continue
            seen.add(job.source)
            if not force and job.is_done():
                skipped.append(_skipped(job))
            else:
                jobs.append(job)
    return jobs, skipped


def _skipped(job: Job) -> JobOutcome:
    """The outcome of an input that is already converted, with its last conversion's details when recorded."""
    try:
        place = job.record_place()
        record = Record.from_json(place.record.read_bytes()) if place is not None else None
    except (OSError, ValueError, RecursionError):
        record = None
    if record is None or record.status != CONVERTED:
        return JobOutcome(job.source, Status.SKIPPED, preset=job.preset)
    return JobOutcome(
        job.source, Status.SKIPPED, preset=job.preset, note=record.note, similarity=record.similarity,
        method=record.method, summary=record.summary,
        variations=tuple(VariationOutcome(job.preset.with_name(variation.preset), variation.method,
                                          variation.similarity) for variation in record.variations),
    )


def convert_folders(
    folders: Sequence[str | os.PathLike[str]],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    threads: int = 1,
    model: str | os.PathLike[str] | None = None,
    refine_seconds: float = 0.0,
    mode: str = MODES[0],
    variations: int = 0,
    force: bool = False,
    progress: bool = True,
    conversion: Callable[..., Any] | None = None,
) -> BatchReport:
    """Convert every input under ``folders`` with ``workers`` processes (default: one per core).

    ``mode`` chooses which candidates may win (see converter.convert.MODES); ``variations`` more
    presets are written beside each chosen one.

    ``conversion`` replaces converter.convert.convert (a stand-in for tests; it gets ``model=None``).
    KeyboardInterrupt stops the workers and returns the report so far, marked interrupted. Raises
    WorkerSetupError when the model cannot be loaded.
    """
    started = time.perf_counter()
    jobs, skipped = plan_batch(folders, out_dir, force)
    report = BatchReport(outcomes=list(skipped))
    if jobs:
        setup = WorkerSetup(
            model=Path(model) if model is not None else None,
            threads=threads,
            refine_seconds=refine_seconds,
            mode=mode,
            variations=variations,
            conversion=conversion,
        )
        pool = ConversionPool(max(1, min(workers or os.cpu_count() or 1, len(jobs))), setup)
        try:
            with tqdm(total=len(jobs), unit="file", disable=not progress, dynamic_ncols=True) as bar:
                pool.check()
                for done in as_completed([pool.submit(job) for job in jobs]):
                    outcome = done.result()
                    report.outcomes.append(outcome)
                    if outcome.status is not Status.CONVERTED:
                        bar.write(f"failed: {outcome.source}: {outcome.error}", file=sys.stderr)
                    bar.set_postfix(failed=len(report.failures), refresh=False)
                    bar.update()
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            pool.close(grace_seconds=0)  # running jobs are interrupted and leave nothing behind
    report.seconds = time.perf_counter() - started
    return report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vinv-batch",
        description="Convert every audio file under each DIR (recursively) into a Vital preset and a preview.",
        epilog="Exit status: 0 all converted or skipped, 1 some failed, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="folder of samples to convert")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write outputs into DIR, mirroring the input tree (default: beside each input)")
    parser.add_argument("--force", action="store_true", help="convert inputs whose preset is already newer too")
    parser.add_argument("--refine", type=seconds, default=0.0, metavar="SECONDS",
                        help="time per file to improve on the closest candidate: a resynthesis's tables corrected "
                             "further by what Vital plays of them (every conversion corrects them once), then its "
                             "knobs searched (default: 0)")
    parser.add_argument("--mode", choices=MODES, default=MODES[0],
                        help="resynth: the resynthesis of the input (default); best: the closest of it and the "
                             "model's patches; patch: only classic-synth patches on vinv's own wavetables")
    parser.add_argument("--variations", type=count, default=0, metavar="K",
                        help="also write up to K other kinds of patch for the sound, each on other wavetables, as "
                             "NAME.alt-1.vital ... (default: 0)")
    parser.add_argument("--workers", type=positive_int, metavar="N", help="worker processes (default: one per core)")
    parser.add_argument("--threads", type=positive_int, default=1, metavar="N",
                        help="onnxruntime threads per worker (default: 1)")
    parser.add_argument("--model", type=Path, metavar="PATH",
                        help="exported vinv model, for --mode best and patch (default: the shipped one)")
    parser.add_argument("--report", type=Path, metavar="PATH",
                        help=f"CSV report (default: {REPORT_NAME} in --out, or else in the first DIR); the "
                             "page, vinv-report.html, is always written in --out, or else in each DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder")
    if args.out is not None and len(args.folders) > 1:
        names = [Path(os.path.realpath(folder)).name for folder in args.folders]
        if len(set(names)) != len(names):
            parser.error("with --out, the folders must have different names (each goes into --out/<name>)")
    if args.model is not None and not args.model.is_file():
        parser.error(f"model file not found: {args.model}")
    report_path = args.report or (args.out or args.folders[0]) / REPORT_NAME
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C does
    try:
        report = convert_folders(
            args.folders,
            out_dir=args.out,
            workers=args.workers,
            threads=args.threads,
            model=args.model,
            refine_seconds=args.refine,
            mode=args.mode,
            variations=args.variations,
            force=args.force,
            progress=not args.quiet,
        )
    except WorkerSetupError as error:
        print(f"vinv-batch: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report.write_csv(report_path)
    print(f"{report.summary()}\nreport: {report_path}")
    for folder in page_folders(args.folders, args.out):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            print(f"page: {write_page(folder)}")
        except OSError as error:
            print(f"vinv-batch: no page in {folder}: {error.strerror or error}", file=sys.stderr)
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILURES if report.failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
