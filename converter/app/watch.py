"""vinv-watch: a daemon that turns every sample dropped into a folder into a preset and a preview.

A watchdog observer (inotify, FSEvents or ReadDirectoryChangesW: no polling) reports changes; a
file is converted once it has stopped changing for ``settle_seconds`` and opens for reading, so a
slow copy is never read half-written. On Linux, inotify also says when a file is opened and when
its writer closes it, so a file that was closed after writing, or that appeared without anyone
opening it (moved in), is whole: it waits only ``FINISHED_SETTLE_SECONDS``, which takes most of
the settle time off a dropped sample's wait. On start the folder is scanned for what arrived while the
daemon was off. Conversions run in worker processes (see converter.app.jobs.ConversionPool), which are
started when work arrives and let go after ``worker_idle_seconds`` without any, so an idle daemon
holds little memory and uses no CPU. A file that fails gets ``<stem>.vinv-error.txt`` beside it and
is tried again only once it changes; the daemon keeps running. SIGTERM or SIGINT stops it within
seconds; outputs appear whole or not at all, so stopping (or kill -9) leaves nothing partial.

The folder's page, ``vinv-report.html`` (converter.app.report.page), is written on start and again,
at most once a second, as files convert; it reloads itself in an open browser. One watcher per
folder: ``vinv-watch`` holds a lock (converter.app.instance) and a second one on the same folder exits.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    EVENT_TYPE_OPENED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from converter.app.config import ConfigError, WatchSettings, count, positive_int, seconds
from converter.app.instance import WatcherLock, running_watcher
from converter.app.jobs import (
    MODES,
    ConversionPool,
    Job,
    JobOutcome,
    Status,
    WorkerSetup,
    WorkerSetupError,
    find_jobs,
    is_audio_name,
    is_inside,
    plan_job,
    same_stem_siblings,
    size_and_mtime,
)
from converter.app.report.page import write_page

log = logging.getLogger("vinv")

EXIT_OK, EXIT_SETUP = 0, 2
PAGE_INTERVAL_SECONDS = 1.0  # the page is rewritten at most this often while files convert
WRITE_EVENTS = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_CLOSED, EVENT_TYPE_MOVED})
# watchdog's inotify observer reports opens and closes; FSEvents and ReadDirectoryChangesW do not, so
# there every file waits the full settle time. A file created by open() is reported opened right
# after it is created, which brings back the full wait until its writer closes it.
SEES_WRITERS = sys.platform.startswith("linux")
FINISHED_EVENTS = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_CLOSED, EVENT_TYPE_MOVED})
FINISHED_SETTLE_SECONDS = 0.05  # merges the burst of events around a close; a later write restarts the full wait


class WatchedFolder:
    """Converts every audio file that lands in ``folder`` or below, from ``start()`` until ``stop()``.

    ``on_outcome`` is called (from a pool thread) with each file's JobOutcome; ``conversion``
    replaces converter.convert.convert (a stand-in for tests; it gets ``model=None``). With
    ``report_page``, the folder's page is written on start and kept up to date.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        workers: int = 2,
        threads: int = 1,
        model: str | os.PathLike[str] | None = None,
        refine_seconds: float = 0.0,
        mode: str = MODES[0],
        variations: int = 0,
        report_page: bool = True,
        settle_seconds: float = 0.5,
        worker_idle_seconds: float = 60.0,
        stop_grace_seconds: float = 3.0,
        on_outcome: Callable[[JobOutcome], Any] | None = None,
        conversion: Callable[..., Any] | None = None,
    ) -> None:
        self.folder = Path(os.path.realpath(folder))
        self.workers = workers
        self.settle_seconds = settle_seconds
        self.worker_idle_seconds = worker_idle_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.error = ""  # why the folder stopped by itself (the model could not be loaded)
        self._setup = WorkerSetup(
            model=Path(model) if model is not None else None,
            threads=threads,
            refine_seconds=refine_seconds,
            mode=mode,
            variations=variations,
            write_error_reports=True,
            conversion=conversion,
        )
        self._on_outcome = on_outcome
        self._wake = threading.Condition()
        self._settling: dict[Path, tuple[float, tuple[int, int] | None]] = {}  # path -> (due, size and mtime)
        self._ready: dict[Path, None] = {}  # settled, in arrival order
        self._running: set[Path] = set()
        self._changed_while_running: set[Path] = set()
        self._pool: ConversionPool | None = None
        self._last_activity = time.monotonic()
        self._stopping = False
        self._stop_requested = threading.Event()
        self._observer: Any = None
        self._dispatcher: threading.Thread | None = None
        self._report_page = report_page
        self._page_due = threading.Event()
        self._page_closing = threading.Event()
        self._page_writer: threading.Thread | None = None

    def start(self) -> WatchedFolder:
        """Check the model, start watching, then queue what arrived while vinv-watch was off.

        Raises NotADirectoryError for a missing folder and WorkerSetupError when the model cannot load.
        """
        if not self.folder.is_dir():
            raise NotADirectoryError(f"not a folder: {self.folder}")
        pool = ConversionPool(self.workers, self._setup)
        try:
            pool.check()
        except BaseException:
            pool.close(grace_seconds=0)
            raise
        self._pool, self._last_activity = pool, time.monotonic()
        self._observer = Observer()
        self._observer.schedule(_FolderEvents(self), str(self.folder), recursive=True)
        self._observer.start()  # before the scan: nothing that lands during it is missed
        self._dispatcher = threading.Thread(target=self._dispatch, name="vinv-dispatch", daemon=True)
        self._dispatcher.start()
        if self._report_page:
            self._page_due.set()
            self._page_writer = threading.Thread(target=self._write_pages, name="vinv-page", daemon=True)
            self._page_writer.start()
        self._scan(self.folder)
        return self

    def stop(self) -> None:
        """Stop watching; running conversions get ``stop_grace_seconds`` to finish, then are cancelled."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        with self._wake:
            self._stopping = True
            self._settling.clear()
            self._ready.clear()
            pool, self._pool = self._pool, None
            self._wake.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join()
        if pool is not None:
            pool.close(self.stop_grace_seconds)
        if self._page_writer is not None:
            self._page_closing.set()  # one last page, with every outcome in, then the writer ends
            self._page_due.set()
            self._page_writer.join()

    def __enter__(self) -> WatchedFolder:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def request_stop(self) -> None:
        """Make ``wait`` return (safe to call from a signal handler)."""
        self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``request_stop`` is called or the folder stops by itself; False on timeout."""
        return self._stop_requested.wait(timeout)

    def is_idle(self) -> bool:
        """Nothing settling, queued or converting."""
        with self._wake:
            return not (self._settling or self._ready or self._running)

    def notice(self, path: str | os.PathLike[str], *, finished: bool = False) -> None:
        """A file under the folder was written, created or moved in: convert it once it settles, soon
        when the event says the file is ``finished`` (its writer closed it, or it was moved in); an
        empty file never is."""
        path = Path(os.path.abspath(path))
        if not self._is_input(path):
            return
        with self._wake:
            if self._stopping:
                return
            if path in self._running:
                self._changed_while_running.add(path)
                return
            self._ready.pop(path, None)
            seen = size_and_mtime(path)
            finished = finished and seen is not None and seen[0] > 0
            wait = min(FINISHED_SETTLE_SECONDS, self.settle_seconds) if finished else self.settle_seconds
            self._settling[path] = (time.monotonic() + wait, seen)
            if self._pool is None:  # workers let go for idleness start while the file settles, not after
                self._pool = ConversionPool(self.workers, self._setup)
                self._pool.warm()
            self._last_activity = time.monotonic()
            self._wake.notify_all()

    def notice_opened(self, path: str | os.PathLike[str]) -> None:
        """A settling file was opened, maybe by a writer: it waits the full settle time again."""
        path = Path(os.path.abspath(path))
        with self._wake:
            if path in self._settling:
                self._settling[path] = (time.monotonic() + self.settle_seconds, self._settling[path][1])

    def _is_input(self, path: Path) -> bool:
        try:
            relative = path.relative_to(self.folder)
        except ValueError:
            return False
        if any(part.startswith(".") for part in relative.parts) or not is_audio_name(path.name):
            return False
        if not is_inside(path, self.folder):
            log.warning("skipping %s: it links outside %s", path, self.folder)
            return False
        return True

    def notice_gone(self, path: str | os.PathLike[str]) -> None:
        """Something under the folder was deleted or moved away: the page may list or link it, so refresh it."""
        try:
            relative = Path(os.path.abspath(path)).relative_to(self.folder)
        except ValueError:
            return
        if self._report_page and not any(part.startswith(".") for part in relative.parts):  # not vinv's own temp
            self._page_due.set()

    def notice_folder(self, path: str | os.PathLike[str]) -> None:
        """A folder appeared under the watched one (created, moved or copied in): queue what is in it."""
        path = Path(os.path.abspath(path))
        try:
            relative = path.relative_to(self.folder)
        except ValueError:
            return
        if not any(part.startswith(".") for part in relative.parts):
            self._scan(path)

    def _write_pages(self) -> None:
        """The page thread: rewrite the page when asked, at most every PAGE_INTERVAL_SECONDS, until stopped."""
        while True:
            self._page_due.wait()
            self._page_due.clear()
            closing = self._page_closing.is_set()
            try:
                write_page(self.folder, live=True)
            except OSError as error:
                log.warning("could not write the page in %s: %s", self.folder, error.strerror or error)
            if closing:
                return
            self._page_closing.wait(PAGE_INTERVAL_SECONDS)

    def _scan(self, folder: Path) -> None:
        """Queue every input under ``folder`` that is neither converted nor already reported as failed."""
        for job in find_jobs(folder):
            if not (job.is_done() or job.has_current_error_report()):
                self.notice(job.source)

    def _dispatch(self) -> None:
        """The scheduler thread: settle files, hand settled ones to the pool, let idle workers go."""
        with self._wake:
            while not self._stopping:
                now = time.monotonic()
                self._settle(now)
                self._submit_ready()
                if self._pool is not None and not (self._settling or self._ready or self._running):
                    if now - self._last_activity >= self.worker_idle_seconds:
                        self._pool.close(grace_seconds=0)
                        self._pool = None
                self._wake.wait(self._seconds_to_next_wake(now))

    def _settle(self, now: float) -> None:
        for path, (due, seen) in list(self._settling.items()):
            if due > now:
                continue
            current = size_and_mtime(path)
            if current is None:
                del self._settling[path]  # gone (deleted or moved away)
            elif current != seen or not _readable(path):
                self._settling[path] = (now + self.settle_seconds, current)
            else:
                del self._settling[path]
                self._ready[path] = None

    def _submit_ready(self) -> None:
        while self._ready:
            path = next(iter(self._ready))
            del self._ready[path]
            job = self._plan(path)
            if job is None or job.is_done() or job.has_current_error_report():
                continue
            if self._pool is None:
                self._pool = ConversionPool(self.workers, self._setup)
            self._running.add(path)
            self._last_activity = time.monotonic()
            self._pool.submit(job).add_done_callback(partial(self._finished, path))

    def _plan(self, path: Path) -> Job | None:
        """The job for ``path``; also re-queues same-stem siblings, whose output names change with it."""
        try:
            names = os.listdir(path.parent)
        except OSError:
            return None
        for name in same_stem_siblings(path, names):
            sibling = path.parent / name
            if not (sibling in self._settling or sibling in self._ready or sibling in self._running):
                self._settling[sibling] = (time.monotonic(), size_and_mtime(sibling))
        return plan_job(path, path.parent, names, self.folder if self._report_page else None)

    def _seconds_to_next_wake(self, now: float) -> float | None:
        wakes = [due for due, _ in self._settling.values()]
        if self._pool is not None and not self._running:
            wakes.append(self._last_activity + self.worker_idle_seconds)
        return max(0.0, min(wakes) - now) if wakes else None

    def _finished(self, path: Path, future: Future) -> None:
        if future.cancelled():
            return
        error = future.exception()
        outcome = future.result() if error is None else None
        with self._wake:
            self._running.discard(path)
            self._last_activity = time.monotonic()
            if path in self._changed_while_running or (outcome is not None and outcome.status is Status.CHANGED):
                self._changed_while_running.discard(path)
                self._settling[path] = (time.monotonic() + self.settle_seconds, size_and_mtime(path))
            self._wake.notify_all()
        if isinstance(error, WorkerSetupError):
            self.error = str(error)
            log.error("stopping: %s", error)
            self.request_stop()
        elif error is not None:
            log.error("could not convert %s: %s", path, error)
        else:
            _log_outcome(outcome)
            if outcome.status in (Status.CONVERTED, Status.FAILED):
                self._page_due.set()
            if self._on_outcome is not None:
                self._on_outcome(outcome)


class _FolderEvents(FileSystemEventHandler):
    """Watchdog events to WatchedFolder.notice; a folder moved or copied in is scanned whole."""

    def __init__(self, watched: WatchedFolder) -> None:
        self._watched = watched

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type in (EVENT_TYPE_DELETED, EVENT_TYPE_MOVED):
            self._watched.notice_gone(os.fsdecode(event.src_path))
        if event.event_type == EVENT_TYPE_OPENED and not event.is_directory:
            self._watched.notice_opened(os.fsdecode(event.src_path))
        if event.event_type not in WRITE_EVENTS:
            return
        path = Path(os.fsdecode(event.dest_path if event.event_type == EVENT_TYPE_MOVED else event.src_path))
        if not event.is_directory:
            self._watched.notice(path, finished=SEES_WRITERS and event.event_type in FINISHED_EVENTS)
        elif event.event_type in (EVENT_TYPE_CREATED, EVENT_TYPE_MOVED):
            self._watched.notice_folder(path)


def _log_outcome(outcome: JobOutcome) -> None:
    if outcome.status is Status.CONVERTED:
        note = f"{outcome.note}, " if outcome.note else ""
        log.info("converted %s -> %s (%smatch %.0f%%, %.1f s)", outcome.source, outcome.preset.name, note,
                 outcome.similarity, outcome.seconds)
    elif outcome.status is Status.CHANGED:
        log.info("%s changed while it was converted; converting it again once it settles", outcome.source)
    else:
        log.warning("failed %s: %s", outcome.source, outcome.error)


def _readable(path: Path) -> bool:
    """Opens for reading: on Windows a file still being copied does not."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


def setup_logging(log_file: Path) -> None:
    """INFO and above to stderr and to ``log_file`` (rotated at 1 MB, three old files kept)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    to_file = logging.handlers.RotatingFileHandler(log_file, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
    to_stderr = logging.StreamHandler(sys.stderr)
    for handler in (to_file, to_stderr):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vinv-watch",
        description="Watch a folder and turn every sample dropped into it into a Vital preset and a preview.",
        epilog="Settings not given here come from the settings file (see --print-config).",
    )
    parser.add_argument("folder", nargs="?", type=Path, metavar="DIR", help="folder to watch (default: the inbox)")
    parser.add_argument("--config", type=Path, metavar="PATH", help="settings file (default: see --print-config)")
    parser.add_argument("--workers", type=positive_int, metavar="N", help="conversions at a time")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="onnxruntime threads per conversion")
    parser.add_argument("--refine", type=seconds, metavar="SECONDS",
                        help="refinement time per file (as vinv-batch --refine)")
    parser.add_argument("--mode", choices=MODES,
                        help="resynth: the resynthesis of the input; best: the closest of it and the model's "
                             "patches; patch: only classic-synth patches on vinv's own wavetables")
    parser.add_argument("--variations", type=count, metavar="K",
                        help="also write up to K other kinds of patch for the sound, each on other wavetables, as "
                             "NAME.alt-1.vital ...")
    parser.add_argument("--model", type=Path, metavar="PATH",
                        help="exported vinv model, for --mode best and patch (default: the shipped one)")
    parser.add_argument("--log-file", type=Path, metavar="PATH", help="log file")
    parser.add_argument("--print-config", action="store_true", help="show the resolved folders and settings, then exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = WatchSettings.load(args.config)
    except ConfigError as error:
        parser.error(str(error))
    overrides = {
        "inbox": args.folder.resolve() if args.folder else None,
        "workers": args.workers,
        "threads": args.threads,
        "refine_seconds": args.refine,
        "mode": args.mode,
        "variations": args.variations,
        "model": args.model.resolve() if args.model else None,
        "log_file": args.log_file.resolve() if args.log_file else None,
    }
    settings = settings.with_overrides(**{key: value for key, value in overrides.items() if value is not None})
    if args.print_config:
        print(settings.describe())
        return EXIT_OK
    try:
        settings.inbox.mkdir(parents=True, exist_ok=True)
        setup_logging(settings.log_file)
    except OSError as error:
        print(f"vinv-watch: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return EXIT_SETUP
    lock = WatcherLock(settings.inbox)
    if not lock.acquire():
        log.info("%s is already watched (process %s): not starting a second watcher",
                 settings.inbox, running_watcher(settings.inbox))
        return EXIT_OK
    folder = WatchedFolder(
        settings.inbox,
        workers=settings.workers,
        threads=settings.threads,
        model=settings.model,
        refine_seconds=settings.refine_seconds,
        mode=settings.mode,
        variations=settings.variations,
        worker_idle_seconds=settings.worker_idle_seconds,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: folder.request_stop())
    try:
        folder.start()
    except (NotADirectoryError, WorkerSetupError) as error:
        log.error("%s", error)
        lock.release()
        return EXIT_SETUP
    log.info("watching %s (%d workers; log: %s)", folder.folder, settings.workers, settings.log_file)
    try:
        folder.wait()
    finally:
        log.info("stopping")
        folder.stop()
        lock.release()
        log.info("stopped")
    return EXIT_SETUP if folder.error else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
