"""How fast convert() is on 2 cores, how much memory it takes, and how much refinement buys.

Run ``python benchmarks/bench_convert.py [--model PATH]`` from the repo root. It prints and
asserts nothing. Inputs are 3 s WAVs of patches drawn by the dataset's sampler
(``training.sampling``) and rendered by Vital, so the right answer is always a Vital preset.

- throughput: files/s with two worker processes (one per core, one onnxruntime thread each, like
  vinv-batch) in the default mode (``resynth``) and in ``best`` (which also asks the model), without
  refinement, and in the default mode with ``refine_seconds=2``, and the median seconds of each stage;
- memory: the peak resident set of a worker process;
- refinement: what 2 s of CMA-ES buys from a "near miss", the true patch with every knob jittered
  by up to 0.15. Quality per mode on held-out sounds is ``benchmarks/bench_quality.py``.

Without ``--model`` the shipped model is used, or else a random compact model is exported first
(needs torch).
"""

from __future__ import annotations

import os

# Two workers on two cores: one BLAS thread each (numpy reads this once, at import).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converter.analysis.input_audio import read_audio  # noqa: E402
from converter.convert import MODES, analyse, convert, tune  # noqa: E402
from converter.matching.model import DEFAULT_MODEL, PresetModel  # noqa: E402
from converter.matching.refine import refine  # noqa: E402
from converter.vital.parameters import Kind, parameter_space  # noqa: E402
from converter.vital.preset import preset_from_vector  # noqa: E402
from converter.vital.render import SAMPLE_RATE, render  # noqa: E402

WORKERS = 2
INPUT_SECONDS = 3.0
FILES = 16
REFINED_FILES = 6
REFINE_SECONDS = 2.0
QUALITY_TARGETS = 6
NEAR_MISS = 0.15
SEED = 7


def sampler_patch(rng: np.random.Generator, pitch: int, note_length: float) -> np.ndarray:
    """One patch as the dataset draws them, for this note."""
    from training.sampling import Performance, patch_from_row

    space = parameter_space()
    return patch_from_row(rng.random(len(space)), rng, Performance(pitch, 0.8, note_length), space)


def make_inputs(folder: Path, count: int) -> list[tuple[Path, np.ndarray]]:
    """``count`` 3 s WAVs of sampler patches held 0.5-2 s at MIDI 36-84, with each patch's vector."""
    rng = np.random.default_rng(SEED)
    inputs = []
    while len(inputs) < count:
        pitch, note_length = int(rng.integers(36, 85)), float(rng.uniform(0.5, 2.0))
        vector = sampler_patch(rng, pitch, note_length)
        audio = render(preset_from_vector(vector), pitch, 0.8, note_length, INPUT_SECONDS)
        peak = float(np.abs(audio).max())
        if not 1e-3 < peak < 2.0:  # silent or clipped draws are redrawn, as the dataset does
            continue
        path = folder / f"input-{len(inputs):02d}.wav"
        soundfile.write(path, (audio * (0.5 / peak)).T, SAMPLE_RATE, subtype="PCM_16")
        inputs.append((path, vector))
    return inputs


def near_miss(vector: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The true patch with every knob off by up to ``NEAR_MISS`` of its range: a stand-in for a decent model."""
    space = parameter_space()
    missed = np.array(vector, dtype=np.float32)
    knobs = space.indices(Kind.CONTINUOUS)
    missed[knobs] = np.clip(missed[knobs] + rng.uniform(-NEAR_MISS, NEAR_MISS, len(knobs)), 0.0, 1.0)
    return missed


def random_model(folder: Path) -> Path:
    """A randomly initialised compact model of the default size, exported to ONNX."""
    import torch

    from export.onnx import export_model
    from training.checkpoint import save_checkpoint
    from training.model import ParameterModel

    torch.manual_seed(0)
    save_checkpoint(ParameterModel(encoder="compact"), folder / "checkpoint", step=0, recipe={"bench": True})
    return export_model(folder / "checkpoint", folder / "random.onnx")


class _Worker:
    model: PresetModel | None = None
    out: Path | None = None


def _start_worker(model_path: str, out: str, warm_up: str, mode: str, ready) -> None:
    _Worker.model = PresetModel.load(model_path, threads=1) if mode != "resynth" else None  # as vinv-batch loads it
    _Worker.out = Path(out)
    convert(warm_up, model=_Worker.model, out_dir=_Worker.out, mode=mode)  # first-call caches
    ready.wait()


def peak_rss_mb() -> float:
    """This process's peak resident set. Linux's VmHWM, not ru_maxrss: a spawned worker's ru_maxrss
    starts at its parent's peak at fork time, torch and all."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _convert(job: tuple[str, float, str]) -> tuple[dict[str, float], float]:
    path, refine_seconds, mode = job
    result = convert(path, model=_Worker.model, out_dir=_Worker.out, refine_seconds=refine_seconds, mode=mode)
    return result.timings, peak_rss_mb()


def throughput(model_path: Path, paths: list[Path], refine_seconds: float, out: Path, mode: str = MODES[0]) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(WORKERS + 1)
    setup = (str(model_path), str(out), str(paths[0]), mode, ready)
    with context.Pool(WORKERS, initializer=_start_worker, initargs=setup) as pool:
        ready.wait()  # every worker is set up (with the model where the mode asks) and has converted one file
        started = time.perf_counter()
        results = pool.map(_convert, [(str(path), refine_seconds, mode) for path in paths], chunksize=1)
        elapsed = time.perf_counter() - started
    stages = {name: np.median([timings[name] for timings, _ in results]) for name in results[0][0]}
    label = f"{mode}, " + (f"refine {refine_seconds:g} s" if refine_seconds else "no refinement")
    print(f"{label:>22}: {len(paths) / elapsed:5.2f} files/s on {WORKERS} cores "
          f"({len(paths)} files in {elapsed:.1f} s); peak RSS per worker {max(rss for _, rss in results):.0f} MB")
    print(" " * 24 + "median seconds per file: " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))


def quality(inputs: list[tuple[Path, np.ndarray]]) -> None:
    """What CMA-ES refinement adds to a decent start: the true patch with every knob off by up to
    ``NEAR_MISS`` (the converter's own quality per mode is benchmarks/bench_quality.py's job)."""
    space = parameter_space()
    rng = np.random.default_rng(SEED + 1)
    starts, refined, renders = [], [], []
    for path, truth in inputs:
        analysis = analyse(read_audio(path))
        note = analysis.note
        miss = preset_from_vector(tune(near_miss(truth, rng), note, space), space=space)
        result = refine(analysis.comparison, miss, pitch=note.pitch, note_length=note.length,
                        seconds=REFINE_SECONDS)
        starts.append(result.start_distance)
        refined.append(result.distance)
        renders.append(result.renders)
    start, end = float(np.median(starts)), float(np.median(refined))
    print(f"refinement from a near miss (truth ±{NEAR_MISS:g}) on {len(inputs)} sampler targets, "
          f"median MR-STFT distance: {start:.3f} -> {end:.3f} in {REFINE_SECONDS:g} s "
          f"({100 * (1 - end / start):.0f}% below; median {np.median(renders):.0f} renders)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported vinv model (default: shipped, else a random one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vinv-bench-") as scratch:
        folder = Path(scratch)
        model_path = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
        if model_path is None:
            print("no shipped model: exporting a random compact model (speed is real, quality is not)")
            model_path = random_model(folder)
        PresetModel.load(model_path, threads=1)  # a stale model fails here, not in every worker
        out = folder / "out"
        out.mkdir()
        inputs = make_inputs(folder, FILES)
        paths = [path for path, _ in inputs]
        print(f"{FILES} inputs of {INPUT_SECONDS:g} s, model {model_path.name}, numpy {np.__version__}, "
              f"{os.cpu_count()} CPUs visible")
        throughput(model_path, paths, 0.0, out)
        throughput(model_path, paths, 0.0, out, "best")
        throughput(model_path, paths[:REFINED_FILES], REFINE_SECONDS, out)
        quality(inputs[:QUALITY_TARGETS])
        print(f"peak RSS of this process (inputs, quality runs): {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
