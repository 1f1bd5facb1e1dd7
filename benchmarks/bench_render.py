"""Rendering speed: 3 s renders of one 1 s note at MIDI 60, through converter.vital.render.render.

Times the init patch, then every preset under ../shared/presets twice: the original file's JSON as
Vital stores it, and its projection into our parameter space (written back as a vinv preset).
Each time covers the whole call: loading the preset into Vital and rendering it.

Then the search's renders (``RenderSession``, 24 kHz, same length): for a bank patch and for a
resynthesis of examples/pad.wav (two 256-frame tables), a knob change in a warm session against a
full load on a fresh engine (what a table or route change costs).

    python benchmarks/bench_render.py [--repeats N] [--init-renders N] [--presets DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import vita  # noqa: E402

from converter.vital.parameters import parameter_space  # noqa: E402
from converter.vital.preset import PresetError, parse_preset, preset_from_vector, vector_from_preset  # noqa: E402
from converter.vital.render import RenderError, RenderSession, render  # noqa: E402

PITCH = 60
VELOCITY = 0.8
NOTE_SECONDS = 1.0
RENDER_SECONDS = 3.0


def timed_render(preset: dict | str) -> float:
    """Milliseconds for one render() call."""
    start = time.perf_counter()
    render(preset, pitch=PITCH, velocity=VELOCITY, note_length=NOTE_SECONDS, duration=RENDER_SECONDS)
    return 1000.0 * (time.perf_counter() - start)


def timed_fresh_engine_render(text: str) -> float:
    """Milliseconds for building a new vita.Synth, loading and rendering (no state carried over)."""
    start = time.perf_counter()
    synth = vita.Synth()
    synth.load_json(text)
    synth.render(PITCH, VELOCITY, NOTE_SECONDS, RENDER_SECONDS)
    return 1000.0 * (time.perf_counter() - start)


def summary(label: str, times_ms: list[float]) -> str:
    if not times_ms:
        return f"{label:<44} no renders"
    mean = statistics.fmean(times_ms)
    return (
        f"{label:<44} {len(times_ms):4d} renders  {1000.0 / mean:7.2f} renders/s  "
        f"mean {mean:7.1f} ms  median {statistics.median(times_ms):7.1f} ms  "
        f"({RENDER_SECONDS / (mean / 1000.0):5.1f}x real time)"
    )


def search_renders(label: str, preset: dict, count: int = 20) -> None:
    """Knob-only renders in a warm session against fresh full loads, both at 24 kHz."""
    text = json.dumps(preset)
    session = RenderSession(text, sample_rate=24000, pitch=PITCH, note_length=NOTE_SECONDS, duration=RENDER_SECONDS)
    knob_ms, load_ms = [], []
    for k in range(count):
        start = time.perf_counter()
        session.render({"env_1_release": 0.3 + 0.02 * k})
        knob_ms.append(1000.0 * (time.perf_counter() - start))
        start = time.perf_counter()
        RenderSession(text, sample_rate=24000, pitch=PITCH, note_length=NOTE_SECONDS, duration=RENDER_SECONDS)
        load_ms.append(1000.0 * (time.perf_counter() - start))
    print(summary(f"{label}: knob change in a session", knob_ms))
    print(summary(f"{label}: fresh engine, load and play", load_ms))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="renders per preset and form (default 1)")
    parser.add_argument("--init-renders", type=int, default=20, help="renders of the init patch (default 20)")
    parser.add_argument("--presets", type=Path, default=REPO.parent / "shared" / "presets")
    args = parser.parse_args()

    space = parameter_space()
    init = preset_from_vector(space.default_vector(), name="init")
    timed_render(init)  # warm-up: builds the template, the engine and the wavetable bank
    cpu_start = time.process_time()
    wall_start = time.perf_counter()

    print(f"vita {getattr(vita, '__version__', '?')}, {RENDER_SECONDS:g} s renders of a {NOTE_SECONDS:g} s note "
          f"at MIDI {PITCH}, parameter space {space.version}")
    print(summary("init patch", [timed_render(init) for _ in range(args.init_renders)]))
    init_text = json.dumps(init)
    print(summary("init patch, new vita.Synth per render", [
        timed_fresh_engine_render(init_text) for _ in range(args.init_renders)
    ]))

    from converter.analysis.input_audio import read_audio
    from converter.convert import analyse, build_candidates

    print()
    search_renders("bank patch", init)
    pad = analyse(read_audio(REPO / "examples" / "pad.wav"))
    search_renders("resynthesis", build_candidates(pad, None, "resynth")[0].preset)

    files = sorted(args.presets.rglob("*.vital")) if args.presets.is_dir() else []
    if not files:
        print(f"no presets under {args.presets}")
        return
    originals: list[float] = []
    projections: list[float] = []
    failures: list[str] = []
    print()
    print(f"{'preset':<44} {'original ms':>12} {'projection ms':>14}")
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            projection = preset_from_vector(vector_from_preset(parse_preset(text), space), name=path.stem)
            original_ms = [timed_render(text) for _ in range(args.repeats)]
            projection_ms = [timed_render(projection) for _ in range(args.repeats)]
        except (PresetError, RenderError) as error:
            failures.append(f"{path.name}: {error}")
            continue
        originals += original_ms
        projections += projection_ms
        print(f"{path.stem[:44]:<44} {statistics.fmean(original_ms):12.1f} {statistics.fmean(projection_ms):14.1f}")

    print()
    print(summary(f"original presets ({len(files)} files)", originals))
    print(summary("projected presets", projections))
    for failure in failures:
        print(f"failed: {failure}")
    print(f"total: {time.perf_counter() - wall_start:.1f} s wall, {time.process_time() - cpu_start:.1f} s CPU")


if __name__ == "__main__":
    main()
