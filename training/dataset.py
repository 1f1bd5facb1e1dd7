"""Dataset generation: Vital presets rendered to (audio, parameter vector) examples, and reading them back.

Each example is one note of one patch, stored as the model hears it (24 kHz mono, 5 s, int16 scaled
to peak at 0.9 of full scale) beside its parameter vector. Each patch is played at
``PERFORMANCES_PER_PATCH`` performances (pitch, velocity, note length): examples ``4p .. 4p+3`` are
patch ``p``, drawn and serialised once. Every note is still a fresh engine at 44.1 kHz (``render``),
resampled: a note played later in one engine, or a 24 kHz render, measurably differs from it
(see ``benchmarks/bench_dataset.py``), and users' audio comes from Vital at 44.1/48 kHz.

A folder given as a bare name lives in the user cache (``platformdirs``), so a later run on the same
machine extends the set (``--count`` larger) instead of starting again; the manifest records the recipe. Patches come from four sources mixed by
ratio: Latin-hypercube samples of the parameter space, real presets projected into the space,
perturbed variants of those, and sampled patches playing foreign (CC0) wavetables.

Everything about example ``i`` follows from ``(seed, i // 4)`` (and the shard's design, drawn from
``(seed, shard)``), so a set is the same whatever the worker count or ``--shard`` split, and a killed
run resumes by rebuilding only shards whose meta file, renamed into place last, is missing.

Meta ``peak`` is the peak of the 24 kHz mono clip before scaling (int16 / 32767 / 0.9 * peak gives the
render's level back). Splits hash the patch number, or for real presets and their variants the
preset's file name, so a preset keeps its split when presets are added to the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs

from converter.analysis.audio import CLIP_SAMPLES, CLIP_SECONDS, MODEL_SAMPLE_RATE, to_model_rate
from converter.files import atomic_write_bytes
from converter.vital.parameters import parameter_space
from converter.vital.preset import PresetError, preset_from_vector, read_preset, vector_from_preset
from converter.vital.render import SAMPLE_RATE, RenderError, RenderSession
from training.priors import Priors, fit_priors
from training.sampling import (
    Performance,
    draw_performance,
    foreign_frames,
    install_foreign_wavetable,
    lhs_design,
    oscillators_to_replace,
    patch_from_priors,
    patch_from_row,
    perturb,
    recombined_patch,
)

FORMAT_VERSION = 1
# Bump when a change alters what any (seed, index) produces, so resumes refuse mixing. 3: every note
# follows a silent one, so no clip holds Vital's glide after a load (``converter.vital.render``). 4: that
# note is unheard and gone before the played one, whose first ~50 ms no longer start on a fresh voice;
# a patch's notes play on one engine.
GENERATOR_VERSION = 4
AUDIO_PEAK = 0.9  # stored clips peak at this fraction of int16 full scale
INT16_FULL_SCALE = 32767

SOURCES = ("sampled", "real", "variant", "foreign", "prior", "recombined")
SAMPLED, REAL, VARIANT, FOREIGN, PRIOR, RECOMBINED = range(6)
DEFAULT_RATIOS = (0.2, 0.02, 0.08, 0.08, 0.42, 0.2)  # mostly patches shaped like real presets, a uniform share for coverage
SPLITS = ("train", "validation", "test")
SPLIT_SHARES = (0.90, 0.05, 0.05)

SILENT_PEAK = 1e-3
CLIPPED_PEAK = 2.0  # Vital's output saturates at 2.1; real presets peak below 1.7
MAX_ATTEMPTS = 64
PERFORMANCES_PER_PATCH = 4  # notes played per drawn patch: one draw and one preset build serve four examples
CHUNK_SIZE = 8  # examples per worker task (whole patches): fine-grained progress, cheap to ship back

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_PRESETS_DIR = SHARED_DIR / "presets"
DEFAULT_WAVETABLES_DIR = SHARED_DIR / "wavetables"

META_DTYPE = np.dtype([
    ("pitch", np.int16),
    ("velocity", np.float32),
    ("note_length", np.float32),
    ("source", np.uint8),
    ("origin", np.int32),
    ("split", np.uint8),
    ("peak", np.float32),
    ("index", np.int64),
])
SHARD_FILES = ("audio", "params", "meta")  # rename order: meta last marks the shard complete


class DatasetError(RuntimeError):
    """A dataset folder that cannot be built into or read as asked."""


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Sources:
    """What examples are drawn from: the real presets (projected), the foreign tables, the mix."""

    seed: int
    ratios: tuple[float, ...]
    preset_names: tuple[str, ...]
    preset_vectors: np.ndarray
    wavetable_paths: tuple[str, ...]
    unreadable_presets: tuple[str, ...] = ()
    priors: Priors | None = None  # fitted on the training split's presets only, so no test preset leaks in


def load_presets(folder: Path | None) -> tuple[list[str], np.ndarray, list[str]]:
    """Project every readable ``.vital`` under ``folder``; unreadable ones are reported, not fatal."""
    space = parameter_space()
    names: list[str] = []
    vectors: list[np.ndarray] = []
    unreadable: list[str] = []
    paths = sorted(folder.rglob("*.vital")) if folder is not None and folder.is_dir() else []
    for path in paths:
        name = path.relative_to(folder).as_posix()
        try:
            vector = vector_from_preset(read_preset(path), space)
        except (PresetError, ValueError, TypeError, KeyError, IndexError) as error:
            unreadable.append(f"{name}: {str(error).removeprefix(f'{path.name}: ')}")
            continue
        names.append(name)
        vectors.append(vector)
    matrix = np.stack(vectors) if vectors else np.zeros((0, len(space)), dtype=np.float32)
    return names, matrix.astype(np.float32), unreadable


def list_wavetables(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return [str(path) for path in sorted(folder.rglob("*.vitaltable"))]


def effective_ratios(ratios: Sequence[float], presets: int, wavetables: int,
                     training_presets: int | None = None) -> tuple[float, ...]:
    """Normalised ratios; a source with nothing to draw from gives its share to sampled patches.

    Prior and recombined patches need presets of the training split (``training_presets``, default
    ``presets``); real presets and variants need any preset.
    """
    values = [float(r) for r in ratios]
    if len(values) != len(SOURCES) or any(r < 0 or not np.isfinite(r) for r in values) or sum(values) <= 0:
        raise ValueError(f"ratios must be {len(SOURCES)} non-negative numbers ({', '.join(SOURCES)}), got {ratios}")
    if (presets if training_presets is None else training_presets) == 0:
        values[SAMPLED] += values[PRIOR] + values[RECOMBINED]
        values[PRIOR] = values[RECOMBINED] = 0.0
    if presets == 0:
        values[SAMPLED] += values[REAL] + values[VARIANT]
        values[REAL] = values[VARIANT] = 0.0
    if wavetables == 0:
        values[SAMPLED] += values[FOREIGN]
        values[FOREIGN] = 0.0
    total = sum(values)
    return tuple(round(r / total, 6) for r in values)  # type: ignore[return-value]


def load_sources(seed: int, ratios: Sequence[float], presets_dir: Path | None,
                 wavetables_dir: Path | None) -> Sources:
    names, vectors, unreadable = load_presets(presets_dir)
    tables = list_wavetables(wavetables_dir)
    training = [k for k, name in enumerate(names) if split_of(f"preset:{name}") == 0]
    priors = fit_priors(vectors[training], parameter_space()) if training else None
    return Sources(seed, effective_ratios(ratios, len(names), len(tables), len(training)), tuple(names), vectors,
                   tuple(tables), tuple(unreadable), priors)


# ------------------------------------------------------------------------------------------- examples


def split_of(key: str) -> int:
    """0 train, 1 validation, 2 test, from a stable hash of ``key`` (never of the seed)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2.0**64
    return 0 if u < SPLIT_SHARES[0] else 1 if u < SPLIT_SHARES[0] + SPLIT_SHARES[1] else 2


def example_split(source: int, patch: int, preset_name: str | None) -> int:
    """Real presets and their variants split by preset, others by patch: one sound never straddles splits."""
    return split_of(f"preset:{preset_name}") if source in (REAL, VARIANT) else split_of(f"patch:{patch}")


def pick_source(seed: int, patch: int, ratios: Sequence[float]) -> int:
    """The source of patch ``patch``, from a stream no render attempt uses."""
    u = np.random.default_rng([seed, patch, MAX_ATTEMPTS]).random()
    return int(min(np.searchsorted(np.cumsum(ratios), u, side="right"), len(ratios) - 1))


@dataclass
class Example:
    """One finished example, as its shard rows store it."""

    audio: np.ndarray  # int16 (CLIP_SAMPLES,)
    params: np.ndarray  # float32 (P,)
    meta: tuple


def check_render(audio: np.ndarray) -> str | None:
    """Why a render is unusable, or None."""
    if not np.all(np.isfinite(audio)):
        return "nan"
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak < SILENT_PEAK:
        return "silent"
    if peak >= CLIPPED_PEAK:
        return "clipped"
    return None


def to_clip(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Stereo 44.1 kHz render -> int16 24 kHz mono clip of CLIP_SAMPLES scaled to AUDIO_PEAK, and its peak."""
    mono = to_model_rate(audio, SAMPLE_RATE)[:CLIP_SAMPLES]
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    clip = np.zeros(CLIP_SAMPLES, dtype=np.int16)
    if peak > 0:
        clip[: len(mono)] = np.round(mono * (AUDIO_PEAK * INT16_FULL_SCALE / peak)).astype(np.int16)
    return clip, peak


def draw_patch(sources: Sources, source: int, rng: np.random.Generator, row: np.ndarray,
               performance: Performance) -> tuple[np.ndarray, dict, int] | str:
    """(vector, preset, origin) for one attempt, or a reject reason."""
    space = parameter_space()
    origin = -1
    if source in (REAL, VARIANT):
        origin = int(rng.integers(len(sources.preset_names)))
        vector = sources.preset_vectors[origin]
        if source == VARIANT:
            vector = perturb(vector, rng, space)
    elif source == PRIOR:
        vector = patch_from_priors(rng, performance, sources.priors, space)
    elif source == RECOMBINED:
        vector = recombined_patch(rng, performance, sources.priors, space)
    else:
        vector = patch_from_row(row, rng, performance, space)
    vector = np.array(vector, dtype=np.float32)
    preset = preset_from_vector(vector, space=space)
    if source == FOREIGN:
        for oscillator in oscillators_to_replace(vector, rng, space):
            path = sources.wavetable_paths[int(rng.integers(len(sources.wavetable_paths)))]
            frames = foreign_frames(path)
            if frames is None:
                return "unreadable_wavetable"
            install_foreign_wavetable(preset, vector, oscillator, frames, Path(path).stem, space)
    return vector, preset, origin


def make_patch_examples(sources: Sources, patch: int, row: np.ndarray, rejects: Counter,
                        notes: int = PERFORMANCES_PER_PATCH) -> list[Example]:
    """Examples ``4 * patch ..``: the first attempt whose first ``notes`` performances render cleanly.

    Each attempt's draws follow (seed, patch, attempt); the patch is shaped for its first performance.
    """
    source = pick_source(sources.seed, patch, sources.ratios)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([sources.seed, patch] if attempt == 0 else [sources.seed, patch, attempt])
        performances = [draw_performance(rng) for _ in range(PERFORMANCES_PER_PATCH)]
        attempt_row = row if attempt == 0 else rng.random(len(row))
        drawn = draw_patch(sources, source, rng, attempt_row, performances[0])
        if isinstance(drawn, str):
            rejects[(SOURCES[source], drawn)] += 1
            continue
        vector, preset, origin = drawn
        clips, reason = _play_all(json.dumps(preset), performances[:notes])
        if reason is not None:
            rejects[(SOURCES[source], reason)] += 1
            continue
        preset_name = sources.preset_names[origin] if origin >= 0 else None
        split = example_split(source, patch, preset_name)
        return [Example(clip, vector, (p.pitch, p.velocity, p.note_length, source, origin, split, peak,
                                       patch * PERFORMANCES_PER_PATCH + slot))
                for slot, (p, (clip, peak)) in enumerate(zip(performances, clips))]
    raise DatasetError(f"patch {patch} ({SOURCES[source]}): no clean render in {MAX_ATTEMPTS} attempts")


def _play_all(text: str, performances: Sequence[Performance]) -> tuple[list[tuple[np.ndarray, float]], str | None]:
    """(clip, peak) per performance, each what a fresh engine plays, all on one engine where the patch
    allows (``RenderSession.play``: an engine and a load cost as much as a note); or why the patch is
    unusable."""
    clips: list[tuple[np.ndarray, float]] = []
    session: RenderSession | None = None
    for performance in performances:
        try:
            if session is None or not session.can_play_fresh_notes():
                session = RenderSession(text)
            audio = session.play(performance.pitch, performance.velocity, performance.note_length,
                                 performance.duration)
        except RenderError:
            return clips, "render_error"
        reason = check_render(audio)
        if reason is None:
            clip, peak = to_clip(audio)
            reason = "silent" if peak < SILENT_PEAK else None
        if reason is not None:
            return clips, reason
        clips.append((clip, peak))
    return clips, None


# ---------------------------------------------------------------------------------------------- shards


def shard_name(kind: str, shard: int) -> str:
    return f"{kind}-{shard:05d}.npy"


def temp_name(kind: str, shard: int) -> str:
    return f".{shard_name(kind, shard)}.tmp"


def shard_rows(count: int, shard_size: int, shard: int) -> range:
    return range(shard * shard_size, min((shard + 1) * shard_size, count))


def shard_is_complete(shards_dir: Path, shard: int, rows: int | None = None) -> bool:
    """Complete = meta in place and the three files agree on the row count, ``rows`` if given (headers only)."""
    try:
        arrays = [np.load(shards_dir / shard_name(kind, shard), mmap_mode="r") for kind in SHARD_FILES]
    except (OSError, ValueError):
        return False
    lengths = {len(array) for array in arrays}
    return (len(lengths) == 1 and rows in (None, *lengths) and arrays[0].shape[1:] == (CLIP_SAMPLES,) and arrays[2].dtype == META_DTYPE)


def _complete_shards(shards_dir: Path, manifest: dict) -> list[int]:
    count, size = manifest["count"], manifest["shard_size"]
    return [k for k in range(manifest["shards"]) if shard_is_complete(shards_dir, k, len(shard_rows(count, size, k)))]


def remove_temp_files(shards_dir: Path, shards: Sequence[int]) -> None:
    for shard in shards:
        for kind in SHARD_FILES:
            (shards_dir / temp_name(kind, shard)).unlink(missing_ok=True)


def write_shard(shards_dir: Path, shard: int, audio: np.ndarray, params: np.ndarray, meta: np.ndarray) -> int:
    """Write under temp names, fsync, rename meta last; on any error (disk full) leave no temp behind."""
    arrays = dict(audio=audio, params=params, meta=meta)
    try:
        for kind in SHARD_FILES:
            with open(shards_dir / temp_name(kind, shard), "wb") as handle:
                np.save(handle, arrays[kind])
                handle.flush()
                os.fsync(handle.fileno())
        for kind in SHARD_FILES:
            os.replace(shards_dir / temp_name(kind, shard), shards_dir / shard_name(kind, shard))
        _fsync_dir(shards_dir)
    except BaseException:
        remove_temp_files(shards_dir, [shard])
        raise
    return sum((shards_dir / shard_name(kind, shard)).stat().st_size for kind in SHARD_FILES)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode("utf-8"))
    path.chmod(0o644)  # readable by the trainer's and cluster jobs' users, like the shards


# ---------------------------------------------------------------------------------------------- workers

_SOURCES: Sources | None = None


def _init_worker(sources: Sources) -> None:
    global _SOURCES
    _SOURCES = sources


def _render_chunk(task: tuple[int, int, int, np.ndarray]) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray,
                                                                   Counter, float]:
    """Render examples start..stop, whole patches from ``rows``: (shard, start, audio, params, meta, rejects, CPU s)."""
    start, stop, shard_size, rows = task
    assert _SOURCES is not None
    cpu_started = time.process_time()
    rejects: Counter = Counter()
    first_patch = start // PERFORMANCES_PER_PATCH
    examples = [example for k, row in enumerate(rows)
                for example in make_patch_examples(_SOURCES, first_patch + k, row, rejects)][: stop - start]
    audio = np.stack([e.audio for e in examples])
    params = np.stack([e.params for e in examples])
    meta = np.array([e.meta for e in examples], dtype=META_DTYPE)
    return start // shard_size, start, audio, params, meta, rejects, time.process_time() - cpu_started


def _tasks(seed: int, count: int, shard_size: int,
           shards: Sequence[int]) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """Chunks of whole patches; a shard's design has one row per patch, fixed by (seed, shard) whatever the count."""
    space = parameter_space()
    for shard in shards:
        rows = shard_rows(count, shard_size, shard)
        design = lhs_design(seed, shard, shard_size // PERFORMANCES_PER_PATCH, space)
        for start in range(rows.start, rows.stop, CHUNK_SIZE):
            stop = min(start + CHUNK_SIZE, rows.stop)
            first = (start - rows.start) // PERFORMANCES_PER_PATCH
            yield start, stop, shard_size, design[first: first + -(-(stop - start) // PERFORMANCES_PER_PATCH)]


@dataclass
class _PendingShard:
    """A shard being filled by chunks arriving in any order; written once full."""

    rows: range
    audio: np.ndarray
    params: np.ndarray
    meta: np.ndarray
    filled: int = 0

    @classmethod
    def empty(cls, rows: range, width: int) -> _PendingShard:
        return cls(rows, np.zeros((len(rows), CLIP_SAMPLES), np.int16), np.zeros((len(rows), width), np.float32),
                   np.zeros(len(rows), META_DTYPE))


# ---------------------------------------------------------------------------------------------- builder


def dataset_folder(name_or_path: str | os.PathLike[str]) -> Path:
    """A bare name (no separator) is a set in the user cache, kept between sessions; anything else is a path."""
    text = os.fspath(name_or_path)
    if text and os.sep not in text and "/" not in text and text not in (".", "..") and not text.startswith("~"):
        return Path(platformdirs.user_cache_dir("vinv")) / "datasets" / text
    return Path(text).expanduser()


def _manifest(seed: int, count: int, shard_size: int, sources: Sources, presets_dir: Path | None,
              wavetables_dir: Path | None) -> dict:
    """The recipe: everything that fixes what (seed, index) gives, plus where the sources were read from."""
    space = parameter_space()
    return {
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "performances_per_patch": PERFORMANCES_PER_PATCH,
        "count": count,
        "shard_size": shard_size,
        "shards": -(-count // shard_size),
        "clip_seconds": CLIP_SECONDS,
        "sample_rate": MODEL_SAMPLE_RATE,
        "audio_peak": AUDIO_PEAK,
        "parameter_space_version": space.version,
        "parameters": len(space),
        "ratios": dict(zip(SOURCES, sources.ratios)),
        "splits": dict(zip(SPLITS, SPLIT_SHARES)),
        "presets": len(sources.preset_names),
        "wavetables": len(sources.wavetable_paths),
        "wavetables_digest": hashlib.sha256("\n".join(Path(p).name for p in sources.wavetable_paths)
                                            .encode()).hexdigest()[:16],
        "presets_dir": str(presets_dir) if presets_dir else None,
        "wavetables_dir": str(wavetables_dir) if wavetables_dir else None,
        "runs": [],
    }


IDENTITY_KEYS = ("format_version", "generator_version", "seed", "performances_per_patch", "shard_size", "clip_seconds", "sample_rate",
                 "parameter_space_version", "ratios", "presets", "wavetables", "wavetables_digest")


def _claim_folder(folder: Path, manifest: dict, presets: dict) -> None:
    """Write manifest and preset list, or check that a folder being resumed or extended holds the same dataset.

    Extending keeps the larger count and the record of earlier runs.
    """
    manifest_path, presets_path = folder / "manifest.json", folder / "presets.json"
    if manifest_path.exists():
        existing = {"generator_version": 1, **json.loads(manifest_path.read_text())}  # v1 predates the key
        differing = [k for k in IDENTITY_KEYS if existing.get(k) != manifest.get(k)]
        if differing:
            raise DatasetError(f"{folder} holds a different dataset (differs in {', '.join(differing)}); "
                               "use another folder")
        if presets_path.exists() and json.loads(presets_path.read_text()) != presets:
            raise DatasetError(f"{folder} was built from other presets; use another folder")
        manifest["count"] = max(manifest["count"], existing["count"])
        manifest["shards"] = -(-manifest["count"] // manifest["shard_size"])
        manifest["runs"] = existing.get("runs", [])
    _write_json(presets_path, presets)
    _write_json(manifest_path, manifest)


def _pool(workers: int, sources: Sources):
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["training.dataset"])
    return context.Pool(workers, initializer=_init_worker, initargs=(sources,))


def build_dataset(
    folder: str | os.PathLike[str],
    count: int,
    *,
    seed: int = 0,
    shard_size: int = 256,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    presets_dir: str | os.PathLike[str] | None = DEFAULT_PRESETS_DIR,
    wavetables_dir: str | os.PathLike[str] | None = DEFAULT_WAVETABLES_DIR,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> dict:
    """Build (or resume) examples 0..count-1 into ``folder``; returns the run's summary.

    ``shard=(i, n)`` builds only shards k with k % n == i, so n machines build one set between them.
    """
    if count < 1 or shard_size < 1 or shard_size % PERFORMANCES_PER_PATCH:
        raise ValueError(f"count must be positive and shard_size a positive multiple of {PERFORMANCES_PER_PATCH}")
    part, parts = shard or (0, 1)
    if not 0 <= part < parts:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {part}/{parts}")
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    folder = dataset_folder(folder)
    shards_dir = folder / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    sources = load_sources(seed, ratios, Path(presets_dir) if presets_dir else None,
                           Path(wavetables_dir) if wavetables_dir else None)
    for problem in sources.unreadable_presets:
        print(f"vinv-dataset: skipping unreadable preset {problem}", file=sys.stderr)
    manifest = _manifest(seed, count, shard_size, sources, presets_dir, wavetables_dir)
    _claim_folder(folder, manifest, {str(k): name for k, name in enumerate(sources.preset_names)})
    count = manifest["count"]

    mine = [k for k in range(manifest["shards"]) if k % parts == part]
    todo = [k for k in mine if not shard_is_complete(shards_dir, k, len(shard_rows(count, shard_size, k)))]
    remove_temp_files(shards_dir, todo)
    pending = {k: _PendingShard.empty(shard_rows(count, shard_size, k), len(parameter_space())) for k in todo}
    total = sum(len(p.rows) for p in pending.values())
    rejects: Counter = Counter()
    per_source: Counter = Counter()
    written_bytes = 0
    cpu_seconds = 0.0
    started = time.perf_counter()
    tasks = _tasks(seed, count, shard_size, todo)
    bar = _progress_bar(total, progress)
    pool = _pool(workers, sources) if workers > 1 and total else None
    try:
        if pool is None:
            _init_worker(sources)
        results = pool.imap_unordered(_render_chunk, tasks) if pool else map(_render_chunk, tasks)
        for shard_id, start, audio, params, meta, chunk_rejects, chunk_cpu in results:
            cpu_seconds += chunk_cpu
            target = pending[shard_id]
            offset = start - target.rows.start
            target.audio[offset: offset + len(meta)] = audio
            target.params[offset: offset + len(meta)] = params
            target.meta[offset: offset + len(meta)] = meta
            target.filled += len(meta)
            rejects.update(chunk_rejects)
            per_source.update(SOURCES[s] for s in meta["source"])
            bar.update(len(meta))
            if target.filled == len(target.rows):
                written_bytes += write_shard(shards_dir, shard_id, target.audio, target.params, target.meta)
                del pending[shard_id]
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    seconds = time.perf_counter() - started
    manifest["runs"].append({"command": shlex.join(sys.argv), "count": count, "shard": f"{part}/{parts}",
                             "examples_built": total, "per_source": {s: per_source[s] for s in SOURCES},
                             "seconds": round(seconds, 1)})
    _write_json(folder / "manifest.json", manifest)
    return _summary(folder, manifest, mine, todo, total, seconds, cpu_seconds, per_source, rejects, written_bytes,
                    sources)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="ex", smoothing=0.05, disable=not enabled, dynamic_ncols=True)


def _summary(folder: Path, manifest: dict, mine: list[int], todo: list[int], built: int, seconds: float,
             cpu_seconds: float, per_source: Counter, rejects: Counter, written_bytes: int, sources: Sources) -> dict:
    shards_dir = folder / "shards"
    complete = _complete_shards(shards_dir, manifest)
    on_disk = sum(f.stat().st_size for f in shards_dir.iterdir() if f.is_file())
    examples_on_disk = sum(len(shard_rows(manifest["count"], manifest["shard_size"], k)) for k in complete)
    attempts = {s: per_source[s] + sum(n for (source, _), n in rejects.items() if source == s) for s in SOURCES}
    return {
        "folder": str(folder),
        "count": manifest["count"],
        "shards_this_run": len(todo),
        "shards_already_complete": len(mine) - len(todo),
        "examples_built": built,
        "seconds": round(seconds, 2),
        "examples_per_second": round(built / seconds, 2) if seconds > 0 else 0.0,
        "render_cpu_seconds_per_example": round(cpu_seconds / built, 4) if built else 0.0,
        "per_source": {s: per_source[s] for s in SOURCES},
        "rejects": {f"{s}/{reason}": n for (s, reason), n in sorted(rejects.items())},
        "reject_rate": {s: round(1 - per_source[s] / attempts[s], 4) for s in SOURCES if attempts[s]},
        "unreadable_presets": list(sources.unreadable_presets),
        "ratios": dict(zip(SOURCES, sources.ratios)),
        "bytes_written": written_bytes,
        "complete_shards": len(complete),
        "examples_on_disk": examples_on_disk,
        "bytes_on_disk": on_disk,
        "bytes_per_example": round(on_disk / examples_on_disk) if examples_on_disk else 0,
    }


# ----------------------------------------------------------------------------------------------- reader


class _AudioView:
    """``set.audio[i]``: float32 (CLIP_SAMPLES,) in [-1, 1], read from the memory-mapped shard."""

    def __init__(self, example_set: ExampleSet) -> None:
        self._set = example_set

    def __len__(self) -> int:
        return len(self._set)

    def __getitem__(self, position: int) -> np.ndarray:
        return self._set.audio_batch([position])[0]


class ExampleSet:
    """The complete shards of a dataset (a folder, or a set's name in the user cache), optionally one
    split, ordered by global example index."""

    def __init__(self, folder: str | os.PathLike[str], split: str | None = "train") -> None:
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.folder = dataset_folder(folder)
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.exists():
            raise DatasetError(f"{self.folder} is not a dataset (no manifest.json)")
        self.manifest = json.loads(manifest_path.read_text())
        shards_dir = self.folder / "shards"
        complete = _complete_shards(shards_dir, self.manifest)
        self.shards = complete  # the shard numbers, in the order ``shard_of`` counts them
        self._audio = [np.load(shards_dir / shard_name("audio", k), mmap_mode="r") for k in complete]
        metas = [np.load(shards_dir / shard_name("meta", k), mmap_mode="r") for k in complete]
        params = [np.load(shards_dir / shard_name("params", k), mmap_mode="r") for k in complete]
        shard_of = np.concatenate([np.full(len(m), s, np.int64) for s, m in enumerate(metas)] or [np.zeros(0, int)])
        row_of = np.concatenate([np.arange(len(m)) for m in metas] or [np.zeros(0, int)])
        meta = np.concatenate([np.asarray(m) for m in metas]) if metas else np.zeros(0, META_DTYPE)
        keep = np.ones(len(meta), bool) if split is None else meta["split"] == SPLITS.index(split)
        order = np.argsort(meta["index"][keep], kind="stable")
        self.shard_of = shard_of[keep][order]  # each example's shard, as a position in ``shards``
        self.row_of = row_of[keep][order]  # and its row there
        self.meta = meta[keep][order]
        width = self.manifest.get("parameters", 0)
        all_params = np.concatenate([np.asarray(p) for p in params]) if params else np.zeros((0, width), np.float32)
        self.params = all_params[keep][order]
        self.audio = _AudioView(self)

    def __len__(self) -> int:
        return len(self.meta)

    def audio_batch(self, positions: Sequence[int] | np.ndarray) -> np.ndarray:
        """float32 (b, CLIP_SAMPLES) in [-1, 1] for these positions in the set."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        out = self.gather(self._audio, positions, np.empty((len(positions), CLIP_SAMPLES), dtype=np.float32))
        out *= 1.0 / INT16_FULL_SCALE
        return out

    def gather(self, per_shard: Sequence[np.ndarray], positions: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` filled with the rows of ``per_shard`` (one array per shard of ``shards``, rows as in the
        shard files: the clips, or what is cached beside them) at these positions in the set."""
        for k, position in enumerate(positions):
            out[k] = per_shard[self.shard_of[position]][self.row_of[position]]
        return out

    def shard_length(self, shard: int) -> int:
        """How many examples the ``shard``-th of ``shards`` holds, of every split."""
        return len(self._audio[shard])

    def shard_audio_batch(self, shard: int, rows: slice) -> np.ndarray:
        """float32 (b, CLIP_SAMPLES) in [-1, 1]: ``rows`` of the ``shard``-th of ``shards``, of every split."""
        return self._audio[shard][rows].astype(np.float32) * (1.0 / INT16_FULL_SCALE)


# ---------------------------------------------------------------------------------------------- command


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        part, parts = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected i/n, got {text!r}") from None
    if not 0 <= part < parts:
        raise argparse.ArgumentTypeError(f"need 0 <= i < n, got {text!r}")
    return part, parts


def _parse_ratios(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if len(values) != len(SOURCES):
        raise argparse.ArgumentTypeError(f"expected {len(SOURCES)} ratios: {','.join(SOURCES)}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vinv-dataset", description="Render Vital patches into a training set.")
    parser.add_argument("out_dir", help="a set's name (kept in the user cache folder) or a folder path")
    parser.add_argument("--count", type=int, default=150000, help="build or extend the set to this many examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--shard", type=_parse_shard, default=(0, 1), metavar="I/N",
                        help="build only shards k with k %% N == I (for job arrays); parts merge by index")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--ratios", type=_parse_ratios, default=DEFAULT_RATIOS, metavar="S,R,V,F,P,C",
                        help="mix of sampled, real-preset, variant, foreign-wavetable, prior-drawn and recombined patches")
    parser.add_argument("--presets", type=Path, default=DEFAULT_PRESETS_DIR)
    parser.add_argument("--wavetables", type=Path, default=DEFAULT_WAVETABLES_DIR)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        summary = build_dataset(args.out_dir, args.count, seed=args.seed, shard_size=args.shard_size,
                                ratios=args.ratios, presets_dir=args.presets, wavetables_dir=args.wavetables,
                                workers=args.workers, shard=args.shard, progress=not args.no_progress)
    except (DatasetError, OSError, ValueError) as error:
        print(f"vinv-dataset: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
