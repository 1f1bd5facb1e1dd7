"""How close the converter lands, per source and per mode, on held-out sounds nobody tuned for.

Run ``python benchmarks/bench_quality.py [--modes resynth patch best] [--refine 2 [--refine-modes best patch]]
[--refine-renders 30] [--random 64] [--truth] [--model M [--against M]]`` from the repo
root (needs the ``[train]`` extra for the sampler, fluidsynth and timgm6mb-soundfont for the
instrument notes, and ``../shared/presets``). It prints a table and asserts nothing.

The held-out set is written once as WAV files into the user cache folder, so later runs and later
sessions compare like with like:

- ``instrument``: General MIDI notes played by fluidsynth (8 programs x 3 pitches), sounds no
  Vital patch made;
- ``preset``: every third public preset in ``../shared/presets`` rendered whole by Vital (not
  projected into our space), at a pitch and note length that vary with the preset;
- ``sampled``: random patches from ``training.sampling`` with a seed no dataset uses.

Each figure is the median over a source of the MR-STFT distance from the input to the preview that
``convert()`` wrote (``ConversionResult.distance``), divided by the distance of Vital's init patch
played at the same note for the same time: 1.0 is no better than init, lower is better.
``--refine-renders N`` runs best with a refinement of exactly N renders instead of a time budget (a
resynthesis's correction rounds count among them, one each though a round also plays its quieter
residuals, the knob search has the rest): its figures do not
depend on how busy the machine is, so refinement changes compare like with like.
``--modes patch-without-model`` is patch mode without the model's candidates (the ablation).
``--random N`` adds the search baseline: the closest of N random sampler patches, each rendered once
at the detected note (N renders per sound). ``--truth`` adds the floor: each preset and sampled
sound's own preset played again as it was played for the WAV, on a fresh engine (Vital's random
phases, noise and free-running LFOs differ from take to take; a fluidsynth note does not).
``--against MODEL`` also runs every mode that asks a model with that one and prints, per source, the
geometric mean over sounds of ``--model``'s distance over its distance and how many sounds came more
than ``CLEAR_GAIN`` closer or further: finer than a median, which moves only with the median sound,
so it is how a new model is judged against the shipped one (``git show REV:converter/models/vinv-default.onnx``
gives an earlier one).
``--split NAME`` judges the test split of the set vinv-dataset built instead (one clip of each of
the first ``SPLIT_COUNT`` patches per source, written once as WAVs beside the held-out set): the
evaluation split, our own sampler's sounds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
from platformdirs import user_cache_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SOURCES = ("instrument", "preset", "sampled")
SAMPLED_SEED = 0x5EED_0FF  # no dataset is built with this seed
SAMPLED_COUNT = 18
PRESET_STRIDE = 3
SHARED_PRESETS = Path(__file__).resolve().parents[2] / "shared" / "presets"
SPLIT_COUNT = 12
WITHOUT_MODEL = "patch-without-model"  # a --modes entry: patch mode's candidates less the model's
TRUTH = "truth"  # the run --truth adds: each held-out sound's own preset, played again on a fresh engine
MODEL_FREE = ("resynth", TRUTH, "random-")  # runs no model takes part in: --against skips them
CLEAR_GAIN = 0.02  # --against counts a sound closer or further past this share


def heldout_folder() -> Path:
    """v2: the Vital renders played as a warmed-up Vital plays them (``converter.vital.render``)."""
    return Path(user_cache_dir("vinv")) / "heldout-v2"


def split_folder(name: str) -> Path:
    return Path(user_cache_dir("vinv")) / f"test-split-{Path(name).name}"


def build_split(name: str, folder: Path) -> tuple[str, ...]:
    """Write one performance of each of the first ``SPLIT_COUNT`` test-split patches of each source of set
    ``name`` (once); its sources."""
    from converter.analysis.audio import MODEL_SAMPLE_RATE
    from training.dataset import SOURCES as SPLIT_SOURCES
    from training.dataset import ExampleSet

    if not folder.exists():
        examples = ExampleSet(name, "test")
        for number, source in enumerate(SPLIT_SOURCES):
            mine = np.flatnonzero(examples.meta["source"] == number)
            patches = examples.meta["index"][mine] // examples.manifest["performances_per_patch"]
            positions = mine[np.sort(np.unique(patches, return_index=True)[1])][:SPLIT_COUNT]
            (folder / source).mkdir(parents=True, exist_ok=True)
            for position, clip in zip(positions, examples.audio_batch(positions)):
                soundfile.write(folder / source / f"{source}-{position:05d}.wav", clip, MODEL_SAMPLE_RATE)
    return tuple(source for source in SPLIT_SOURCES if any((folder / source).glob("*.wav")))


def build_heldout(folder: Path) -> None:
    """Write the held-out WAVs (once; existing files are kept)."""
    from converter.vital.render import SAMPLE_RATE, render
    from training.instruments import (
        DEFAULT_SOUNDFONT,
        GM_PROGRAMS,
        MIDI_VELOCITY,
        NOTE_SECONDS,
        PITCHES,
        midi_file,
        play,
    )

    def write(source: str, name: str, audio: np.ndarray) -> None:
        path = folder / source / f"{name}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() and np.abs(audio).max() > 1e-3:  # a sampled patch may be silent at its note
            soundfile.write(path, np.asarray(audio).T if audio.shape[0] == 2 else audio, SAMPLE_RATE)

    for name, program in GM_PROGRAMS.items():
        for pitch in PITCHES:
            if not (folder / "instrument" / f"{name}-{pitch}.wav").exists():
                audio = play(midi_file(program, pitch, MIDI_VELOCITY, NOTE_SECONDS), DEFAULT_SOUNDFONT)
                write("instrument", f"{name}-{pitch}", audio.T)
    for (source, name), (preset, pitch, velocity, length) in heldout_presets().items():
        if not (folder / source / f"{name}.wav").exists():
            write(source, name, render(preset, pitch, velocity, length, length + 1.5))


@lru_cache(maxsize=1)
def heldout_presets() -> dict[tuple[str, str], tuple[dict, int, float, float]]:
    """The presets behind the held-out ``preset`` and ``sampled`` sounds, by (source, name): each with
    the pitch, velocity and note length it was played at."""
    from converter.vital.parameters import parameter_space
    from converter.vital.preset import preset_from_vector, read_preset
    from training.sampling import draw_performance, patch_from_row

    presets = {}
    for k, path in enumerate(sorted(SHARED_PRESETS.rglob("*.vital"))[::PRESET_STRIDE]):
        pitch, length = 48 + 7 * (k % 4), (0.5, 1.0, 2.0)[k % 3]
        presets["preset", path.stem.split("__")[-1]] = (read_preset(path), pitch, 0.8, length)
    space = parameter_space()
    rng = np.random.default_rng(SAMPLED_SEED)
    for k in range(SAMPLED_COUNT):
        performance = draw_performance(rng)
        vector = patch_from_row(rng.random(len(space)), rng, performance, space)
        presets["sampled", f"patch-{k:02d}"] = (preset_from_vector(vector, space=space), performance.pitch,
                                                performance.velocity, performance.note_length)
    return presets


@lru_cache(maxsize=2)
def _model(path: Path | None):
    """The model the conversions use: ``path``, or the shipped one; loaded once per worker (both, with --against)."""
    from converter.matching.model import PresetModel

    return PresetModel.load(path, threads=1)


def _measure(task: tuple[Path, str, float, Path | None]) -> tuple[float, float, float, str]:
    """(distance, init distance, seconds, method) of one conversion, of best refined with exactly N
    renders when the mode is ``renders-N``, of the best of N random sampler patches played at the
    detected note when the mode is ``random-N`` (the search baseline), or of patch mode's candidates
    less the model's when the mode is ``WITHOUT_MODEL``."""
    path, mode, refine_seconds, model_path = task
    from converter.analysis.input_audio import read_audio
    from converter.convert import analyse, convert, render_preview, score
    from converter.vital.preset import init_preset
    from converter.vital.render import SAMPLE_RATE, render

    analysis = analyse(read_audio(path))
    started = time.perf_counter()
    if mode == TRUTH:
        preset, pitch, velocity, length = heldout_presets()[path.parent.name, path.stem]
        distance, method = analysis.comparison.distance(render(preset, pitch, velocity, length, length + 1.5),
                                                        SAMPLE_RATE), TRUTH
    elif mode.startswith("random-"):
        distance, method = _random_search(analysis, int(mode.split("-")[1])), "random"
    elif mode == WITHOUT_MODEL:
        distance, method = _patch_without_model(analysis, path.stem, _model(model_path))
    else:
        renders = int(mode.split("-")[1]) if mode.startswith("renders-") else None
        if renders is not None:
            mode, refine_seconds = "best", float("inf")
        with tempfile.TemporaryDirectory() as out:
            result = convert(path, model=_model(model_path), out_dir=out, mode=mode, refine_seconds=refine_seconds,
                             refine_renders=renders, threads=1)
        distance, method = result.distance, result.method
    seconds = time.perf_counter() - started
    init = score(analysis, render_preview(init_preset(), analysis.note))
    return distance, init, seconds, method


def _patch_without_model(analysis, name: str, model) -> tuple[float, str]:
    """Patch mode's candidates less the model's patches and parts: what the model adds to patch mode (ablation)."""
    from converter.convert import Candidate, build_candidates, rank_candidates

    candidates = [Candidate(c.method, c.preset) for c in build_candidates(analysis, model, "patch", name=name)
                  if c.method != "patch"]
    best = rank_candidates(candidates, analysis)[0]
    return best.distance, best.candidate.method


def _random_search(analysis, count: int) -> float:
    """The closest of ``count`` patches from the dataset's sampler, each rendered once at the note."""
    from converter.convert import render_preview, score, tune
    from converter.vital.parameters import parameter_space
    from converter.vital.preset import preset_from_vector
    from converter.vital.render import RenderError
    from training.sampling import Performance, patch_from_row

    space, note = parameter_space(), analysis.note
    rng = np.random.default_rng(SAMPLED_SEED + note.pitch)
    best = float("inf")
    for _ in range(count):
        vector = patch_from_row(rng.random(len(space)), rng, Performance(note.pitch, 0.8, note.length), space)
        try:
            preview = render_preview(preset_from_vector(tune(vector, note, space), space=space), note)
        except RenderError:
            continue
        best = min(best, score(analysis, preview))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="*", default=["resynth", "patch", "best"],
                        help=f"converter modes, or {WITHOUT_MODEL}")
    parser.add_argument("--refine", type=float, default=0.0,
                        help="also run --refine-modes with this many seconds of search")
    parser.add_argument("--refine-modes", nargs="*", default=["best"], metavar="MODE")
    parser.add_argument("--refine-renders", type=int, default=0, metavar="N",
                        help="also run best with a refinement of exactly N renders (independent of machine load)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", type=Path, help="an exported vinv model to judge instead of the shipped one")
    parser.add_argument("--against", type=Path, metavar="MODEL",
                        help="also compare --model with this exported model, sound by sound")
    parser.add_argument("--limit", type=int, help="sounds per source")
    parser.add_argument("--split", metavar="SET", help="judge the test split of this vinv-dataset set instead")
    parser.add_argument("--random", type=int, default=0, metavar="N",
                        help="also the baseline: the best of N random sampler patches per sound")
    parser.add_argument("--truth", action="store_true",
                        help="also the floor: each held-out preset or sampled sound's own preset, played again")
    args = parser.parse_args()
    if args.truth and args.split:
        parser.error("--truth judges the held-out set only")
    if args.split:
        folder = split_folder(args.split)
        sources = build_split(args.split, folder)
    else:
        folder, sources = heldout_folder(), SOURCES
        build_heldout(folder)
    runs = [(mode, 0.0) for mode in args.modes] + [(mode, args.refine) for mode in args.refine_modes if args.refine]
    runs += [(f"renders-{args.refine_renders}", 0.0)] if args.refine_renders else []
    runs += [(f"random-{args.random}", 0.0)] if args.random else []
    runs += [(TRUTH, 0.0)] if args.truth else []
    against = f"; against: {args.against}" if args.against else ""
    print(f"sounds: {folder}; model: {args.model or 'shipped'}{against}")
    print("| run | " + " | ".join(sources) + " | s/file | winners |")
    print("|---|" + "---|" * (len(sources) + 2))
    with ProcessPoolExecutor(args.workers) as pool:
        for mode, refine_seconds in runs:
            cells, against_cells, seconds, winners = [], [], [], {}
            compared = args.against is not None and not mode.startswith(MODEL_FREE)
            for source in sources:
                if mode == TRUTH and source == "instrument":  # fluidsynth plays a note the same way every time
                    cells.append("0")
                    continue
                files = sorted((folder / source).glob("*.wav"))[: args.limit]
                results = list(pool.map(_measure, [(path, mode, refine_seconds, args.model) for path in files]))
                ratios = [distance / init for distance, init, _, _ in results]
                seconds += [s for _, _, s, _ in results]
                for *_, method in results:
                    winners[method] = winners.get(method, 0) + 1
                cells.append(f"{np.median(ratios):.3f} (n={len(ratios)})")
                if compared:
                    theirs = pool.map(_measure, [(path, mode, refine_seconds, args.against) for path in files])
                    against_cells.append(_comparison([r[0] for r in results], [r[0] for r in theirs]))
            label = mode + (f" --refine {refine_seconds:g}" if refine_seconds else "")
            label = f"best --refine-renders {mode.split('-')[1]}" if mode.startswith("renders-") else label
            won = ", ".join(f"{method} {count}" for method, count in sorted(winners.items()))
            print(f"| {label} | " + " | ".join(cells) + f" | {np.mean(seconds):.2f} | {won} |", flush=True)
            if compared:
                print(f"| {label}: × against, per sound (closer / further) | " + " | ".join(against_cells)
                      + " | | |", flush=True)


def _comparison(ours: list[float], theirs: list[float]) -> str:
    """Geometric mean of our distance over theirs, sound by sound, and how many sounds moved clearly each way."""
    change = np.asarray(ours) / np.asarray(theirs)
    closer, further = int(np.sum(change < 1 - CLEAR_GAIN)), int(np.sum(change > 1 + CLEAR_GAIN))
    return f"{np.exp(np.mean(np.log(change))):.3f} ({closer} / {further})"


if __name__ == "__main__":
    main()
