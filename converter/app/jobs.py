"""What to convert, where its outputs go, and the conversion as worker processes run it.

vinv-batch and vinv-watch share these rules (the README lists them for users):

- inputs are ``.wav .wave .aif .aiff .flac .ogg`` files, any case; hidden names, vinv's own outputs
  (``*.preview.wav``, ``*.vinv-error.txt``) and temp entries (``.*.vinv-tmp``) never are; linked
  folders are not entered, and a linked file counts only when it points inside the folder;
- ``kick.wav`` gives ``kick.vital`` and ``kick.preview.wav``. When audio files in one folder share a
  stem (``kick.wav``, ``kick.flac``), each is named after its whole file name (``kick.wav.vital``,
  ``kick.flac.vital``): neither can take the other's preset, whichever arrived first;
- a ``kick.vital`` that vinv did not write (its author is not "vinv") is never replaced: vinv's
  preset goes to ``kick.vinv.vital`` instead, and if that name is taken too the file is not converted;
- an input is done when its preset and preview are at least as new as it is; for vinv-watch an
  error report at least as new as the input means "already tried", so a bad file is retried only
  once it changes;
- ``--variations K`` writes the next best presets as ``kick.alt-1.vital`` ... beside ``kick.vital``
  (never over a file vinv did not write); alternatives left from an earlier run with more are removed;
- every conversion, and every failure, also leaves a record and pictures for the report page under
  the page's hidden ``.vinv/`` folder (see converter.app.report.records).

Each conversion writes into a private hidden staging folder beside its outputs, named after the
worker's process id, and renames the finished files into place (the record last), so a killed
worker leaves no partial output; the staging folders of dead processes are removed when their
folder is next scanned.

This module imports no numpy: the watch daemon imports it and stays small, while the converter
itself (numpy, onnxruntime, vita) is imported in the worker processes only.
"""

from __future__ import annotations

import _thread
import enum
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_connections
from pathlib import Path
from typing import Any

from converter.app.report.records import CONVERTED, FAILED, Record, RecordPlace, VariationRecord, record_place

AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".aif", ".aiff", ".flac", ".ogg"})
PRESET_SUFFIX = ".vital"
ALT_PRESET_INFIX = ".alt-"  # kick.alt-1.vital: the variations
MODES = ("resynth", "best", "patch")  # converter.convert.MODES: kept here so this module needs no numpy
PREVIEW_SUFFIX = ".preview.wav"
ERROR_SUFFIX = ".vinv-error.txt"
TEMP_SUFFIX = ".vinv-tmp"
OWN_PRESET_SUFFIX = ".vinv"  # kick.vinv.vital, when the user's own kick.vital is in the way
VINV_AUTHOR = "vinv"  # converter.vital.preset.AUTHOR: kept here so this module needs no numpy
MAX_PRESET_BYTES = 64 * 1024 * 1024
# Each worker is one conversion at a time: BLAS thread pools sized for the whole machine only fight
# each other (on two busy cores, OpenBLAS's default threads made one scoring step 1.3 s instead of 0.04 s).
BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
STRAY_TEMP_SECONDS = 3600.0  # a temp file without an owner id is older than any atomic write by then

log = logging.getLogger("vinv")


class WorkerSetupError(RuntimeError):
    """A worker could not load the model: no file will convert, so the caller should stop."""


class WorkerStopped(RuntimeError):
    """A job reached a worker after its pool began closing; it was not started."""


class Status(str, enum.Enum):
    CONVERTED = "converted"
    SKIPPED = "skipped"
    FAILED = "failed"
    CHANGED = "changed"  # the input changed while it was converted: results dropped, try again


def is_audio_name(name: str) -> bool:
    """Whether a file name is an input: an audio extension, not hidden, not one of vinv's outputs."""
    lowered = name.lower()
    return (
        not name.startswith(".")
        and os.path.splitext(lowered)[1] in AUDIO_EXTENSIONS
        and not lowered.endswith(PREVIEW_SUFFIX)
    )


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path``, with every link resolved, lies inside ``folder`` (also resolved)."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class Job:
    """One input and the paths its outputs go to."""

    source: Path
    preset: Path
    preview: Path
    error_report: Path
    blocked: str = ""  # why no output name is safe to write (both candidate presets are the user's)
    page_root: Path | None = None  # the report page's folder: the record and pictures go under it

    @property
    def output_name(self) -> str:
        """The preset's name without ``.vital``: ``kick``, ``kick.wav`` or ``kick.vinv``."""
        return self.preset.name[: -len(PRESET_SUFFIX)]

    def alt_preset(self, number: int) -> Path:
        """Where variation ``number`` (from 1) goes: ``kick.alt-1.vital`` beside ``kick.vital``."""
        return self.preset.with_name(f"{self.output_name}{ALT_PRESET_INFIX}{number}{PRESET_SUFFIX}")

    def record_place(self) -> RecordPlace | None:
        """Where this input's record and pictures go; None when no page is kept."""
        if self.page_root is None:
            return None
        return record_place(self.page_root, self.preset.parent, self.output_name)

    def is_done(self) -> bool:
        """Preset and preview exist and are at least as new as the input."""
        source = _mtime(self.source)
        return source is not None and all(
            (output := _mtime(path)) is not None and output >= source for path in (self.preset, self.preview)
        )

    def has_current_error_report(self) -> bool:
        """An error report at least as new as the input: this version of the file already failed."""
        source, report = _mtime(self.source), _mtime(self.error_report)
        return source is not None and report is not None and report >= source


@dataclass(frozen=True)
class VariationOutcome:
    """An alternative preset written beside the chosen one, and how close it came."""

    preset: Path
    method: str
    similarity: float


@dataclass(frozen=True)
class JobOutcome:
    """What happened to one input: a row of vinv-batch's report, a line of vinv-watch's log."""

    source: Path
    status: Status
    preset: Path | None = None
    note: str = ""
    similarity: float | None = None
    seconds: float = 0.0
    error: str = ""
    method: str = ""  # which candidate won: resynth, patch or hybrid
    summary: str = ""  # the settings that matter most
    variations: tuple[VariationOutcome, ...] = ()


def same_stem_siblings(source: Path, names: Iterable[str]) -> list[str]:
    """Other inputs in ``names`` (one folder's entries) that would share ``source``'s preset name."""
    stem = os.path.splitext(source.name)[0].casefold()
    return [
        name
        for name in names
        if name != source.name and is_audio_name(name) and os.path.splitext(name)[0].casefold() == stem
    ]


def plan_job(source: Path, out_dir: Path, names: Iterable[str], page_root: Path | None = None) -> Job:
    """Output names for ``source``, given the entries ``names`` of its folder (see the module rules).

    ``page_root``, a folder that holds ``out_dir``, is where the report page goes (None: no page).
    """
    stem = source.name if same_stem_siblings(source, names) else source.stem
    blocked = ""
    if not _written_by_vinv(out_dir / f"{stem}{PRESET_SUFFIX}"):
        user_preset = f"{stem}{PRESET_SUFFIX}"
        stem = f"{stem}{OWN_PRESET_SUFFIX}"
        if not _written_by_vinv(out_dir / f"{stem}{PRESET_SUFFIX}"):
            blocked = (f"{user_preset} and {stem}{PRESET_SUFFIX} are not vinv's presets; "
                       f"rename one to convert {source.name}")
    return Job(
        source=source,
        preset=out_dir / f"{stem}{PRESET_SUFFIX}",
        preview=out_dir / f"{stem}{PREVIEW_SUFFIX}",
        error_report=out_dir / f"{stem}{ERROR_SUFFIX}",
        blocked=blocked,
        page_root=page_root,
    )


def find_jobs(root: Path, out_root: Path | None = None, page_root: Path | None = None) -> Iterator[Job]:
    """Every input under ``root``, recursively and sorted, with outputs beside it or mirrored under ``out_root``.

    The report page goes in ``page_root`` (default: ``out_root``, else ``root``). Also removes what
    killed vinv processes left in the folders it visits.
    """
    root = Path(os.path.realpath(root))
    out_root = Path(os.path.realpath(out_root)) if out_root is not None else None
    page_root = Path(os.path.realpath(page_root)) if page_root is not None else out_root or root
    for dirpath, dirnames, filenames in os.walk(root):  # does not enter linked folders
        here = Path(dirpath)
        dirnames[:] = sorted(name for name in dirnames if not name.startswith(".") and here / name != out_root)
        out_dir = here if out_root is None else out_root / here.relative_to(root)
        remove_abandoned_temp(here)
        if out_dir != here:
            remove_abandoned_temp(out_dir)
        for name in sorted(filenames):
            if not is_audio_name(name):
                continue
            source = here / name
            if not is_inside(source, root):
                log.warning("skipping %s: it links outside %s", source, root)
                continue
            yield plan_job(source, out_dir, filenames, page_root)


def remove_abandoned_temp(folder: Path) -> None:
    """Delete the staging folders of dead vinv processes in ``folder``, and temp files nobody finished."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                pid = _staging_pid(entry.name)
                if pid is not None and not _process_alive(pid):
                    shutil.rmtree(entry.path, ignore_errors=True)
            elif time.time() - entry.stat(follow_symlinks=False).st_mtime > STRAY_TEMP_SECONDS:
                os.unlink(entry.path)
        except OSError as error:
            log.warning("could not remove %s: %s", entry.path, error.strerror or error)


@dataclass(frozen=True)
class WorkerSetup:
    """How worker processes convert: sent to each worker once, at its start."""

    model: Path | None = None  # None: the model shipped with vinv
    threads: int = 1  # onnxruntime threads per worker
    refine_seconds: float = 0.0
    mode: str = MODES[0]
    variations: int = 0  # alternative presets to write beside the chosen one
    write_error_reports: bool = False
    conversion: Callable[..., Any] | None = None  # None: converter.convert.convert; a stand-in gets model=None


CRASH_MESSAGE = "the converter crashed on this file (its worker process died)"


class ConversionPool:
    """Worker processes that convert jobs, each loading the model once; a crashed worker costs no file.

    At most ``workers`` jobs are in the workers at a time, the rest wait here. When a worker dies (out
    of memory, a crash in native code) every job that was in the workers is run again, alone: one
    that crashes alone is the culprit and fails with CRASH_MESSAGE, the others convert normally.
    """

    def __init__(self, workers: int, setup: WorkerSetup) -> None:
        self._workers, self._setup = workers, setup
        self._context = multiprocessing.get_context("spawn")
        # Closing the write end tells every worker to stop (a pipe, unlike an Event, survives dead workers).
        self._stop_listener, self._stop_signal = self._context.Pipe(duplex=False)
        self._lock = threading.RLock()
        self._executor = self._new_executor()
        self._waiting: deque[tuple[Job, Future]] = deque()
        self._suspects: deque[tuple[Job, Future]] = deque()
        self._in_flight: dict[Future, tuple[Job, Future, ProcessPoolExecutor, bool]] = {}
        self._crash_folders: set[Path] = set()  # where dead workers may have left a staging folder
        self._retiring: list[threading.Thread] = []
        self._closed = False

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers, mp_context=self._context, initializer=init_worker,
            initargs=(self._setup, self._stop_listener),
        )

    def check(self) -> None:
        """Start a worker and raise WorkerSetupError if it cannot load the model."""
        self._executor.submit(check_worker).result()

    def warm(self) -> None:
        """Start a worker now, without waiting for it: it loads the model while a file settles."""
        self._executor.submit(check_worker)

    def submit(self, job: Job) -> Future:
        """Queue ``job``; the future gives its JobOutcome (or WorkerSetupError), and is cancelled by ``close``."""
        outcome: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the conversion pool is closed")
            self._waiting.append((job, outcome))
            self._pump()
        return outcome

    def close(self, grace_seconds: float = 3.0) -> None:
        """Drop waiting jobs, give running ones ``grace_seconds`` to finish, interrupt the rest, stop the workers.

        An interrupted job leaves nothing behind: its worker removes its staging folder on the way out.
        """
        with self._lock:
            self._closed = True
            dropped = [*self._waiting, *self._suspects]
            self._waiting.clear()
            self._suspects.clear()
            running = list(self._in_flight)
        for _, outcome in dropped:
            outcome.cancel()
        wait(running, timeout=grace_seconds)
        self._stop_signal.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._stop_listener.close()
        for thread in self._retiring:
            thread.join()
        self._remove_crash_leftovers()

    def _pump(self) -> None:
        """Start jobs while workers are free; while there are suspects, run them one at a time."""
        if self._closed:
            return
        if self._suspects:
            if not self._in_flight:
                self._launch(*self._suspects.popleft(), alone=True)
            return
        while self._waiting and len(self._in_flight) < self._workers:
            job, outcome = self._waiting.popleft()
            if not outcome.cancelled():
                self._launch(job, outcome, alone=False)

    def _launch(self, job: Job, outcome: Future, alone: bool) -> None:
        try:
            task = self._executor.submit(run_job, job)
        except BrokenProcessPool:  # broke before its futures told us
            self._replace_executor()
            task = self._executor.submit(run_job, job)
        self._in_flight[task] = (job, outcome, self._executor, alone)
        task.add_done_callback(self._landed)

    def _replace_executor(self) -> None:
        """Swap in a fresh executor; the broken one is shut down in the background (it may be our caller)."""
        retiring = threading.Thread(target=self._retire, args=(self._executor,), name="vinv-retire", daemon=True)
        self._executor = self._new_executor()
        self._retiring.append(retiring)
        retiring.start()

    def _retire(self, broken: ProcessPoolExecutor) -> None:
        broken.shutdown(wait=True)  # reaps its dead workers, whose ids then stop counting as alive
        self._remove_crash_leftovers()

    def _remove_crash_leftovers(self) -> None:
        with self._lock:
            folders, self._crash_folders = self._crash_folders, set()
        for folder in folders:
            remove_abandoned_temp(folder)

    def _landed(self, task: Future) -> None:
        """A task ended: pass its outcome on (outside the lock: the caller's callbacks take their own locks)."""
        with self._lock:
            job, outcome, executor, alone = self._in_flight.pop(task)
            error = None if task.cancelled() else task.exception()
            crashed = isinstance(error, BrokenProcessPool)
            if crashed:
                self._crash_folders.add(job.preset.parent)
            if crashed and executor is self._executor and not self._closed:
                self._replace_executor()
            if crashed and not alone and not self._closed:
                self._suspects.append((job, outcome))
            self._pump()
        if task.cancelled() or (error is not None and self._closed):
            outcome.cancel()
        elif crashed and alone:
            outcome.set_result(fail_job(job, CRASH_MESSAGE, self._setup.write_error_reports))
        elif error is not None and not crashed:
            outcome.set_exception(error)
        elif error is None:
            outcome.set_result(task.result())


class _Worker:
    """This worker process's loaded model and settings (one per process, set by ``init_worker``)."""

    setup = WorkerSetup()
    conversion: Callable[..., Any] | None = None
    model: Any = None
    error = "worker not initialised"
    busy = threading.Lock()  # held while a job runs
    stopping = False  # the pool is closing: start no more jobs
    holding_signals = False
    stop_requested = False


def init_worker(setup: WorkerSetup, stop: Connection) -> None:
    """Worker initializer: load the model once, where the mode asks for one. Never raises: the job that
    follows reports the problem."""
    for variable in BLAS_THREAD_VARIABLES:  # before numpy loads; see BLAS_THREAD_VARIABLES
        os.environ.setdefault(variable, str(setup.threads))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    signal.signal(signal.SIGTERM, _on_terminate)
    threading.Thread(target=_stop_when_told, args=(stop,), name="vinv-stop-watch", daemon=True).start()
    _Worker.setup = setup
    try:
        if setup.conversion is not None:
            _Worker.conversion, _Worker.model = setup.conversion, None
        else:
            from converter.convert import convert
            from converter.matching.model import PresetModel
            from converter.vital.parameters import parameter_space
            from converter.vital.preset import init_preset

            _Worker.conversion = convert
            # The resynthesis asks no model; one named all the same is loaded, so a broken file says so now.
            asks_model = setup.mode != "resynth" or setup.model is not None
            _Worker.model = PresetModel.load(setup.model, threads=setup.threads) if asks_model else None
            parameter_space()  # both are built once per process (~0.25 s): here, not in the first file's time
            init_preset()
        _Worker.error = ""
    except Exception as error:  # ModelError's message is already one line for the user
        _Worker.error = str(error).strip().split("\n")[0] or type(error).__name__


def check_worker() -> None:
    """Raise WorkerSetupError when this worker could not load the model."""
    if _Worker.error:
        raise WorkerSetupError(_Worker.error)


def run_job(job: Job) -> JobOutcome:
    """Worker task: convert one job with this worker's model."""
    check_worker()
    with _Worker.busy:
        if _Worker.stopping:
            raise WorkerStopped("the pool is closing")
        setup = _Worker.setup
        return convert_job(
            job,
            _Worker.conversion,
            model=_Worker.model,
            refine_seconds=setup.refine_seconds,
            threads=setup.threads,
            mode=setup.mode,
            variations=setup.variations,
            write_error_report=setup.write_error_reports,
        )


def convert_job(
    job: Job,
    conversion: Callable[..., Any],
    *,
    model: Any,
    refine_seconds: float,
    threads: int,
    mode: str = MODES[0],
    variations: int = 0,
    write_error_report: bool,
) -> JobOutcome:
    """Convert ``job.source`` in a staging folder, then rename the preview, preset and variations into place.

    A success removes a stale error report; a failure writes one when ``write_error_report``. Either
    leaves a record for the report page when the job has a page; the pictures are made here, in the
    worker, where the input and the preview are at hand and numpy is already loaded.
    """
    started = time.perf_counter()
    if job.blocked:
        return fail_job(job, job.blocked, write_error_report)
    before = size_and_mtime(job.source)
    try:
        with _staging_folder(job) as staging:
            try:
                result = conversion(job.source, model=model, out_dir=staging, refine_seconds=refine_seconds,
                                    threads=threads, mode=mode, variations=variations)
            except Exception as error:
                message = _one_line(error).removeprefix(f"{job.source.name}: ")  # the outcome names the file
                detail = "" if isinstance(error, ValueError) else traceback.format_exc()
                if write_error_report:
                    _write_error_report(job, message, detail, staging)
                failed = JobOutcome(job.source, Status.FAILED, error=message, seconds=time.perf_counter() - started)
                with _signals_held():
                    _place_record(job, failed, staging, pictures=False)
                return failed
            if size_and_mtime(job.source) != before:
                return JobOutcome(
                    job.source, Status.CHANGED, error="the file changed while it was converted; convert it again",
                    seconds=time.perf_counter() - started,
                )
            pictures = job.page_root is not None and _make_pictures(job, result.preview_path, staging)
            alternatives = _alt_preset_targets(job, result.variations)
            outcome = JobOutcome(
                job.source,
                Status.CONVERTED,
                preset=job.preset,
                note=_note_name(result),
                similarity=float(result.similarity),
                seconds=time.perf_counter() - started,
                method=result.method,
                summary=result.summary,
                variations=tuple(VariationOutcome(target, variation.method, float(variation.similarity))
                                 for variation, target in alternatives),
            )
            with _signals_held():
                os.replace(result.preview_path, job.preview)
                os.replace(result.preset_path, job.preset)
                for variation, target in alternatives:
                    os.replace(variation.preset_path, target)
                job.error_report.unlink(missing_ok=True)
                _place_record(job, outcome, staging, pictures)
            _remove_stale_alt_presets(job, len(result.variations))
    except OSError as error:  # the output folder is read-only, full, gone...
        message = f"cannot write to {job.preset.parent} ({error.strerror or error})"
        return JobOutcome(job.source, Status.FAILED, error=message, seconds=time.perf_counter() - started)
    return outcome


def fail_job(job: Job, message: str, write_error_report: bool) -> JobOutcome:
    """A failed outcome for ``job`` without converting it, and its page record; with ``write_error_report``,
    also its error report."""
    outcome = JobOutcome(job.source, Status.FAILED, error=message)
    if write_error_report or job.page_root is not None:
        try:
            with _staging_folder(job) as staging:
                if write_error_report:
                    _write_error_report(job, message, "", staging)
                _place_record(job, outcome, staging, pictures=False)
        except OSError as error:
            log.warning("could not write %s: %s", job.error_report, error.strerror or error)
    return outcome


STAGED_INPUT_PICTURE, STAGED_PREVIEW_PICTURE, STAGED_RECORD = "input.png", "preview.png", "record.json"


def _make_pictures(job: Job, preview: Path, staging: Path) -> bool:
    """Draw the input and preview into the staging folder; False when they cannot be read (the page then has none)."""
    from converter.app.report.pictures import make_pictures  # numpy: only in workers, never in the idle daemon

    try:
        make_pictures(job.source, preview, staging / STAGED_INPUT_PICTURE, staging / STAGED_PREVIEW_PICTURE)
    except (OSError, RuntimeError, ValueError) as error:  # soundfile's errors are RuntimeErrors
        log.warning("no pictures of %s for the report page: %s", job.source, error)
        return False
    return True


def _alt_preset_targets(job: Job, variations: Iterable[Any]) -> list[tuple[Any, Path]]:
    """Each variation with its place, ``kick.alt-N.vital``; a place holding a preset vinv did not write is skipped."""
    targets = []
    for number, variation in enumerate(variations, start=1):
        target = job.alt_preset(number)
        if _written_by_vinv(target):
            targets.append((variation, target))
        else:
            log.warning("not writing %s: a preset vinv did not write has that name", target)
    return targets


def _remove_stale_alt_presets(job: Job, keep: int) -> None:
    """Remove variations numbered past ``keep`` that an earlier run with more variations wrote (up to a gap)."""
    number = keep + 1
    while (stale := job.alt_preset(number)).exists():
        if _written_by_vinv(stale):
            stale.unlink(missing_ok=True)
        number += 1


def _place_record(job: Job, outcome: JobOutcome, staging: Path, pictures: bool) -> None:
    """Put the page's record of ``outcome`` (and the staged pictures) in place; a failure here only logs."""
    if job.page_root is None:
        return
    folder = job.preset.parent
    converted = outcome.status is Status.CONVERTED
    record = Record(
        status=CONVERTED if converted else FAILED,
        input=os.path.relpath(job.source, folder),
        preset=job.preset.name if converted else "",
        preview=job.preview.name if converted else "",
        note=outcome.note,
        similarity=outcome.similarity,
        method=outcome.method,
        summary=outcome.summary,
        variations=tuple(VariationRecord(variation.preset.name, variation.method, variation.similarity)
                         for variation in outcome.variations),
        pictures=pictures,
        error=outcome.error,
        seconds=round(outcome.seconds, 3),
    )
    try:
        place = job.record_place()
        place.base.parent.mkdir(parents=True, exist_ok=True)
        if pictures:
            os.replace(staging / STAGED_INPUT_PICTURE, place.input_picture)
            os.replace(staging / STAGED_PREVIEW_PICTURE, place.preview_picture)
        (staging / STAGED_RECORD).write_bytes(record.to_json())
        os.replace(staging / STAGED_RECORD, place.record)
    except (OSError, ValueError) as error:  # ValueError: the outputs are not under the page's folder
        log.warning("could not update the report page's record of %s: %s", job.source,
                    getattr(error, "strerror", None) or error)


@contextmanager
def _staging_folder(job: Job) -> Iterator[Path]:
    """A hidden folder beside the job's outputs, named with this process id, removed on the way out."""
    job.preset.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{job.source.name[:100]}.{os.getpid()}."  # the process id is what _staging_pid reads back
    folder = None
    try:
        with _signals_held():  # a stop that lands as the folder is made waits until it is ours to remove
            folder = tempfile.mkdtemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=job.preset.parent)
        yield Path(folder)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _write_error_report(job: Job, message: str, detail: str, staging: Path) -> None:
    draft = staging / "error.txt"
    draft.write_text(
        f"vinv could not convert {job.source.name}:\n{message}\n\nvinv tries again when the file changes.\n"
        + (f"\n{detail}" if detail else ""),
        encoding="utf-8",
    )
    with _signals_held():
        os.replace(draft, job.error_report)


def _note_name(result: Any) -> str:
    """The detected note as Vital names it (MIDI 60 is C3), with cents; empty for unpitched sounds."""
    if not result.pitched:
        return ""
    from converter.analysis.note import note_name  # here, not at the top: the idle daemon never loads numpy

    cents = round(result.cents)
    return note_name(int(result.note)) + (f" {cents:+d}c" if cents else "")


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(error, ValueError) and message else f"{type(error).__name__}: {message}".rstrip(": ")


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def size_and_mtime(path: Path) -> tuple[int, int] | None:
    """What tells a file changed: (size, mtime in ns), None when it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _written_by_vinv(preset: Path) -> bool:
    """True when ``preset`` is absent (free to write) or a preset whose author is vinv."""
    try:
        if os.stat(preset).st_size > MAX_PRESET_BYTES:
            return False
        data = json.loads(preset.read_bytes())
    except FileNotFoundError:
        return True
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("author") == VINV_AUTHOR


def _staging_pid(name: str) -> int | None:
    """The process id in a staging folder's name: ``.kick.wav.<pid>.<random>.vinv-tmp``."""
    parts = name[: -len(TEMP_SUFFIX)].rsplit(".", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _process_alive(pid: int) -> bool:
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _on_terminate(signum: int, frame: object) -> None:
    """SIGTERM in a worker: leave now (the staging folder is removed on the way out), unless renaming."""
    if _Worker.holding_signals:
        _Worker.stop_requested = True
        return
    raise SystemExit(128 + signum)


@contextmanager
def _signals_held() -> Iterator[None]:
    """A stop request waits until the block is done: preview and preset are renamed into place
    together, and a staging folder is made and owned in one step."""
    _Worker.holding_signals = True
    try:
        yield
    finally:
        _Worker.holding_signals = False
    if _Worker.stop_requested:
        raise SystemExit(128 + signal.SIGTERM)


def _stop_when_told(stop: Connection) -> None:
    """Interrupt the job in progress, as SIGTERM would, when the pool closes or the parent dies.

    An orphaned worker then exits: nobody would collect its results, and a restarted vinv-watch
    converts the file again.
    """
    parent = multiprocessing.parent_process()
    wait_for_connections([stop, *([parent.sentinel] if parent is not None else [])])
    _Worker.stopping = True
    if _Worker.busy.locked():
        _thread.interrupt_main(signal.SIGTERM)
    if parent is not None and not parent.is_alive():
        with _Worker.busy:
            os._exit(0)
