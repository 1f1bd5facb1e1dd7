"""Refinement by analysis-by-synthesis: CMA-ES over a preset's audible knobs, judged by Vital itself.

The converter's closest candidate (a resynthesis, a hybrid or a model-made patch) is the start. Its
categorical choices (tables, filter models, which effects are on) stay as the candidates made them;
the search moves the continuous knobs that change how this preset sounds (``search_knobs``: levels,
envelopes, filters, effect mixes, modulation depths), each within its range from the parameter table,
scaled to 0-1 for CMA-ES (pycma). Every candidate is played in one warm ``RenderSession`` at 24 kHz
for exactly the compared window (``converter.matching.scoring``), which makes a render 5-20x cheaper than a
fresh engine with its wavetables loaded. The search is deterministic for a seed and a number of
renders; it stops when the time budget would run out, and keeps the start unless something beats it.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from converter.matching.scoring import SCORE_SAMPLE_RATE, Comparison, score_seconds
from converter.vital.parameters import FILTERS, OSCILLATORS, ParameterSpace, parameter_space
from converter.vital.render import RenderError, RenderSession

VELOCITY = 0.8  # every note vinv plays, in previews and in the search
INITIAL_STEP = 0.15  # CMA-ES's starting step, in 0-1 knob units
EFFECT_MIXES = {
    "reverb": "reverb_dry_wet",
    "delay": "delay_dry_wet",
    "chorus": "chorus_dry_wet",
    "flanger": "flanger_dry_wet",
    "phaser": "phaser_dry_wet",
    "distortion": "distortion_mix",
}
MEASURED_DESTINATIONS = ("_wave_frame", "_transpose")  # a resynthesis's sweep and pitch: measured, not guessed


@dataclass(frozen=True)
class Knob:
    """A Vital control the search may turn, and its raw range."""

    control: str
    low: float
    high: float


@dataclass(frozen=True)
class Refinement:
    """The best preset found, its distance, the start's distance and the renders it took (all in
    the search's session, see ``converter.vital.render.RenderSession``)."""

    preset: dict
    distance: float
    start_distance: float
    renders: int

    @property
    def improved(self) -> bool:
        return self.distance < self.start_distance


def search_knobs(preset: dict, space: ParameterSpace | None = None) -> list[Knob]:
    """The continuous knobs that change how ``preset`` sounds, most audible first.

    Only parts that are switched on count: a filter's cutoff only while the filter is on, a unison
    detune only with two voices or more, an effect's mix only while the effect is on; modulation
    depths of the routes the preset has, except those a resynthesis measured (sweep and pitch).
    """
    space = space or parameter_space()
    settings = preset["settings"]
    names = ["env_1_attack", "env_1_decay", "env_1_sustain", "env_1_release"]
    for n in OSCILLATORS:
        o = f"osc_{n}_"
        if not settings.get(o + "on"):
            continue
        names.append(o + "level")
        if settings.get(o + "unison_voices", 1) > 1:
            names.append(o + "unison_detune")
        for stage in ("spectral_morph", "distortion"):
            if settings.get(o + f"{stage}_type"):
                names.append(o + f"{stage}_amount")
    if settings.get("sample_on"):
        names.append("sample_level")
    for n in FILTERS:
        if settings.get(f"filter_{n}_on"):
            names += [f"filter_{n}_cutoff", f"filter_{n}_resonance"]
    names += [mix for effect, mix in EFFECT_MIXES.items() if settings.get(f"{effect}_on")]
    names = sorted((name for name in names if name in space), key=lambda name: -space[name].weight)
    knobs = [Knob(name, space[name].low, space[name].high) for name in names]
    for slot, route in enumerate(settings.get("modulations", [])):
        destination = route.get("destination", "")
        if route.get("source") and destination and not destination.endswith(MEASURED_DESTINATIONS):
            knobs.append(Knob(f"modulation_{slot + 1}_amount", -1.0, 1.0))
    return knobs


def with_knobs(preset: dict, knobs: Sequence[Knob], values: np.ndarray) -> dict:
    """A copy of ``preset`` with each knob at its raw value."""
    copy = json.loads(json.dumps(preset))
    copy["settings"].update({knob.control: float(value) for knob, value in zip(knobs, values)})
    return copy


def refine(
    comparison: Comparison,
    preset: dict,
    *,
    pitch: int,
    note_length: float,
    seconds: float,
    seed: int = 0,
    velocity: float = VELOCITY,
    max_renders: int | None = None,
    space: ParameterSpace | None = None,
) -> Refinement:
    """Search the knobs of ``preset`` for a render at ``pitch`` closer to the ``comparison``'s target.

    The start is always scored; then CMA-ES asks for candidates until ``seconds`` would be exceeded
    by one more render, or after ``max_renders``. Raises RenderError if Vital cannot load ``preset``.
    """
    space = space or parameter_space()
    deadline = time.perf_counter() + max(seconds, 0.0)
    limit = max_renders if max_renders is not None else np.inf
    knobs = search_knobs(preset, space)
    session = RenderSession(preset, sample_rate=SCORE_SAMPLE_RATE, pitch=pitch, velocity=velocity,
                            note_length=note_length, duration=score_seconds(note_length))
    low = np.array([knob.low for knob in knobs])
    span = np.array([knob.high - knob.low for knob in knobs])
    start = np.array([float(preset["settings"].get(knob.control, knob.low)) for knob in knobs])
    renders, spent = 0, 0.0

    def distance(unit: np.ndarray) -> float:
        nonlocal renders, spent
        began = time.perf_counter()
        renders += 1
        raw = low + np.clip(unit, 0.0, 1.0) * span
        try:
            value = comparison.distance(session.render(dict(zip((k.control for k in knobs), raw))),
                                        SCORE_SAMPLE_RATE)
        except (RenderError, ValueError):  # a NaN render is never the best
            value = float("inf")
        spent += time.perf_counter() - began
        return value if np.isfinite(value) else float("inf")

    def affordable() -> bool:
        return renders < limit and deadline - time.perf_counter() > spent / max(renders, 1)

    origin = np.clip((start - low) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    best, best_distance = origin, distance(origin)
    start_distance = best_distance
    if knobs and affordable():
        cma = _import_cma()
        strategy = cma.CMAEvolutionStrategy(origin, INITIAL_STEP, {
            "bounds": [0.0, 1.0], "seed": seed + 1, "verbose": -9, "CMA_diagonal": True})
        while affordable() and not strategy.stop():
            asked = strategy.ask()
            told = []
            for unit in asked:
                if not affordable():
                    break
                told.append(distance(unit))
                if told[-1] < best_distance:
                    best, best_distance = np.clip(unit, 0.0, 1.0), told[-1]
            if len(told) < len(asked):
                break
            strategy.tell(asked, told)
    return Refinement(with_knobs(preset, knobs, low + best * span), float(best_distance), float(start_distance),
                      renders)


def _import_cma():
    """pycma, imported when a search runs: where scipy is installed it pulls in scipy.stats (~2 s),
    which every worker and watcher start would pay otherwise."""
    with warnings.catch_warnings():  # pycma says it cannot plot without matplotlib: the search never plots
        warnings.simplefilter("ignore")
        import cma
    return cma
