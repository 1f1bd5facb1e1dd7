"""Refinement by analysis-by-synthesis: render, compare with the user's sound, nudge, repeat.

The model answers in one pass; Vital can then check that answer. ``refine`` scores a few starting
points (the model's answer, its sampled candidates, its runner-up wavetables and filter models) by
rendering each and measuring the MR-STFT distance to the target, then runs a coordinate pattern
search from the best one over the parameters the ear follows most closely: filter cutoff and
resonance, the amp and filter envelopes, wave frames, levels, unison detune, effect mixes. Each
parameter keeps its own step: a step that helps is taken again and grows, one that does not is
tried the other way and then shrinks. Only a render that beats the best so far replaces it, so the
answer is never worse than the model's.

A render costs 0.1-0.3 s (a fresh Vital engine, the preset's wavetables, the note), so a budget of
2 s buys about ten: enough to fix a cutoff or a decay, never a new patch. To make them count, the
best render's loudness and brightness curves are compared with the target's first (``NoteShape``):
a duller render wants a higher cutoff, a later peak a shorter attack. Knobs with such a hint are
tried first, and in that direction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from converter.decode import top_choices
from converter.distance import prepare_target
from converter.parameters import FILTERS, OSCILLATORS, Kind, ParameterSpace, modulation_name, parameter_space
from converter.preset import preset_from_vector
from converter.render import SAMPLE_RATE, RenderError, render
from converter.wavetables import default_bank

TAIL_SECONDS = 0.5  # rendered after the key is released: enough to hear the release start
MAX_RENDER_SECONDS = 3.0  # longer notes are compared on their first 3 s: the search needs many renders
VELOCITY = 0.8  # every note vinv plays, in previews and in the search
START_SHARE = 0.5  # at most this share of the budget goes to scoring starting points
INITIAL_STEP = 0.12  # in knob units (0-1); modulation amounts (-1 to 1) step twice as far
MIN_STEP = 0.01
GROWTH, SHRINK = 1.6, 0.5
RUNNER_UPS = 2  # wavetable and filter-model alternatives tried as starting points
EFFECT_MIXES = {
    "reverb": "reverb_dry_wet",
    "delay": "delay_dry_wet",
    "chorus": "chorus_dry_wet",
    "flanger": "flanger_dry_wet",
    "phaser": "phaser_dry_wet",
    "distortion": "distortion_mix",
}
FILTER_ENVELOPE = modulation_name("env_2", "filter_1_cutoff")
SHAPE_WINDOW, SHAPE_HOP = 2048, 1024  # 46 ms frames for NoteShape: coarse on purpose, it only gives directions


@dataclass(frozen=True)
class Refinement:
    """The best vector found, its distance, the first start's distance and the renders it took."""

    vector: np.ndarray
    distance: float
    start_distance: float
    renders: int

    @property
    def improved(self) -> bool:
        return self.distance < self.start_distance


def search_parameters(vector: np.ndarray, space: ParameterSpace | None = None) -> list[str]:
    """Names of the perceptual parameters that change this patch's sound, most audible first.

    Only parts that are switched on count: a filter's cutoff matters only while the filter is on,
    a wave frame only in a table with more than one frame, a unison detune only with two voices.
    """
    space = space or parameter_space()
    value = {p.name: p.denormalise(float(vector[k])) for k, p in enumerate(space.parameters)}
    bank = default_bank()
    names = ["env_1_attack", "env_1_decay", "env_1_sustain", "env_1_release"]
    for n in OSCILLATORS:
        o = f"osc_{n}_"
        if not value[o + "on"]:
            continue
        names.append(o + "level")
        if len(bank[int(value[o + "wavetable"])].frames) > 1:
            names.append(o + "wave_frame")
        if value[o + "unison_voices"] > 1:
            names.append(o + "unison_detune")
        for stage in ("spectral_morph", "distortion"):
            if value[o + f"{stage}_type"]:
                names.append(o + f"{stage}_amount")
    if value["sample_on"]:
        names.append("sample_level")
    for n in FILTERS:
        if value[f"filter_{n}_on"]:
            names += [f"filter_{n}_cutoff", f"filter_{n}_resonance"]
    if value["filter_1_on"]:
        names.append(FILTER_ENVELOPE)
    if any(value[p.name] for p in space.parameters if p.name.startswith("env_2->")):
        names += ["env_2_attack", "env_2_decay", "env_2_sustain"]
    names += [mix for effect, mix in EFFECT_MIXES.items() if value[f"{effect}_on"]]
    return sorted(names, key=lambda name: -space[name].weight)


def runner_up_starts(outputs: np.ndarray, vector: np.ndarray, space: ParameterSpace | None = None,
                     count: int = RUNNER_UPS) -> list[np.ndarray]:
    """``vector`` with the model's next-best wavetable (loudest oscillator) or filter model swapped in.

    A categorical choice is all or nothing: when the model hesitates between two tables, the
    runner-up is often the right one, and no small step of the search could reach it.
    """
    space = space or parameter_space()
    outputs = np.atleast_2d(outputs)
    levels = [vector[space.index(f"osc_{n}_level")] * (vector[space.index(f"osc_{n}_on")] >= 0.5)
              for n in OSCILLATORS]
    swaps = [f"osc_{OSCILLATORS[int(np.argmax(levels))]}_wavetable"]
    if vector[space.index("filter_1_on")] >= 0.5:
        swaps.append("filter_1_model")
    starts = []
    for rank in range(1, count + 1):
        for name in swaps:
            choice = top_choices(outputs, name, rank + 1, space)[0, rank]
            start = np.array(vector, dtype=np.float32)
            start[space.index(name)] = choice
            starts.append(start)
    return starts


@dataclass(frozen=True)
class NoteShape:
    """What the ear follows in a note, measured cheaply: brightness and loudness over time.

    Comparing the target's shape with a render's tells the search which way to turn a knob before
    it spends a render on it: a duller render wants a higher cutoff, a later peak a faster attack.
    """

    brightness: float  # energy-weighted mean of the log spectral centroid
    brightness_fall: float  # log centroid just after the peak minus late in the held note
    peak_time: float  # seconds
    held_level: float  # dB under the peak late in the held note
    tail_level: float  # dB under the peak after the key is released

    @classmethod
    def of(cls, audio: np.ndarray, note_length: float) -> NoteShape:
        frames = np.lib.stride_tricks.sliding_window_view(
            np.pad(np.asarray(audio, dtype=np.float64), (0, SHAPE_WINDOW)), SHAPE_WINDOW)[::SHAPE_HOP]
        power = np.abs(np.fft.rfft(frames * np.hanning(SHAPE_WINDOW), axis=1)) ** 2
        energy = power.sum(axis=1) + 1e-12
        centroid = np.log((power @ np.fft.rfftfreq(SHAPE_WINDOW, 1.0 / SAMPLE_RATE) + 1e-3) / energy + 1.0)
        level = 10.0 * np.log10(energy / energy.max())
        times = np.arange(len(frames)) * SHAPE_HOP / SAMPLE_RATE
        peak = int(np.argmax(energy))
        held = (times >= max(0.6 * note_length, times[peak])) & (times <= note_length)
        early = (times >= times[peak]) & (times <= times[peak] + 0.1)
        tail = times >= note_length + 0.05
        audible = level > -60.0

        def mean(values: np.ndarray, where: np.ndarray, fallback: float) -> float:
            return float(values[where].mean()) if where.any() else fallback

        return cls(
            brightness=float(np.average(centroid, weights=energy)),
            brightness_fall=mean(centroid, early & audible, 0.0) - mean(centroid, held & audible, 0.0),
            peak_time=float(times[peak]),
            held_level=mean(level, held, -60.0),
            tail_level=mean(level, tail, -60.0),
        )

    def hints(self, render: NoteShape) -> dict[str, float]:
        """Which way (+1 or -1) to move knobs so ``render`` sounds more like this shape."""
        hints: dict[str, float] = {}

        def hint(names: Sequence[str], difference: float, threshold: float) -> None:
            if abs(difference) > threshold:
                hints.update(dict.fromkeys(names, float(np.sign(difference))))

        hint(("filter_1_cutoff", "filter_2_cutoff"), self.brightness - render.brightness, 0.05)
        hint((FILTER_ENVELOPE,), self.brightness_fall - render.brightness_fall, 0.1)
        hint(("env_1_attack",), self.peak_time - render.peak_time, 1.5 * SHAPE_HOP / SAMPLE_RATE)
        hint(("env_1_decay", "env_1_sustain"), self.held_level - render.held_level, 1.5)
        hint(("env_1_release",), self.tail_level - render.tail_level, 1.5)
        return hints


class _Scorer:
    """Renders vectors at the detected note and measures their distance to the target."""

    def __init__(self, target: np.ndarray, pitch: int, note_length: float, velocity: float,
                 space: ParameterSpace) -> None:
        self.duration = min(note_length + TAIL_SECONDS, MAX_RENDER_SECONDS)
        target = np.asarray(target)[: round(self.duration * SAMPLE_RATE)]
        self.prepared = prepare_target(target, SAMPLE_RATE)
        self.shape = NoteShape.of(target, note_length)
        self.pitch, self.note_length, self.velocity, self.space = pitch, note_length, velocity, space
        self.renders = 0
        self.seconds = 0.0
        self.last_audio = np.zeros(0, dtype=np.float32)

    def __call__(self, vector: np.ndarray) -> float:
        started = time.perf_counter()
        self.renders += 1
        try:
            audio = render(preset_from_vector(vector, space=self.space), self.pitch, self.velocity,
                           self.note_length, self.duration).mean(axis=0)
            distance = self.prepared.distance(audio)
        except (RenderError, ValueError):  # unloadable preset, or a NaN render: never the best
            audio, distance = np.zeros(0, dtype=np.float32), float("inf")
        self.last_audio = audio
        self.seconds += time.perf_counter() - started
        return distance if np.isfinite(distance) else float("inf")

    def hints(self, audio: np.ndarray) -> dict[str, float]:
        """Directions that bring a render with this ``audio`` closer to the target."""
        return self.shape.hints(NoteShape.of(audio, self.note_length)) if audio.size else {}

    @property
    def mean_seconds(self) -> float:
        return self.seconds / max(self.renders, 1)


def refine(
    target: np.ndarray,
    starts: Sequence[np.ndarray],
    *,
    pitch: int,
    note_length: float,
    seconds: float,
    seed: int = 0,
    velocity: float = VELOCITY,
    max_renders: int | None = None,
    space: ParameterSpace | None = None,
) -> Refinement:
    """Search for a vector whose render at ``pitch`` sounds closer to ``target`` than ``starts[0]``.

    ``target`` is mono audio at 44.1 kHz starting at the note's onset. ``starts[0]`` (the model's
    answer) is always scored; the other starts are scored while half the budget lasts. The search
    stops when ``seconds`` would be exceeded by one more render, or after ``max_renders``. The order
    of moves depends only on ``seed`` and the renders seen, so two runs that make the same number
    of renders return the same vector.
    """
    if not starts:
        raise ValueError("refine needs at least one starting vector")
    space = space or parameter_space()
    deadline = time.perf_counter() + max(seconds, 0.0)
    limit = max_renders if max_renders is not None else np.inf
    score = _Scorer(target, pitch, note_length, velocity, space)

    def affordable(share_of_budget: float = 1.0) -> bool:
        left = deadline - time.perf_counter() - (1.0 - share_of_budget) * seconds
        return score.renders < limit and left > score.mean_seconds

    best = np.array(starts[0], dtype=np.float32)
    best_distance = start_distance = score(best)
    best_audio = score.last_audio
    for start in starts[1:]:
        if not affordable(START_SHARE):
            break
        distance = score(start)
        if distance < best_distance:
            best, best_distance, best_audio = np.array(start, dtype=np.float32), distance, score.last_audio

    rng = np.random.default_rng(seed)
    names = search_parameters(best, space)
    steps = {name: INITIAL_STEP * (2.0 if space[name].kind is Kind.MODULATION else 1.0) for name in names}
    directions = {name: float(rng.choice((-1.0, 1.0))) for name in names}
    hinted = {name: way for name, way in score.hints(best_audio).items() if name in directions}
    directions.update(hinted)
    names.sort(key=lambda name: name not in hinted)  # a knob with a known direction is the best bet
    misses = dict.fromkeys(names, 0)
    position = 0
    while names and affordable():
        name = names[position % len(names)]
        k = space.index(name)
        low = -1.0 if space[name].kind is Kind.MODULATION else 0.0
        trial = best.copy()
        trial[k] = np.clip(best[k] + directions[name] * steps[name], low, 1.0)
        moved = trial[k] != best[k]
        distance = score(trial) if moved else float("inf")
        if distance < best_distance:
            best, best_distance = trial, distance
            steps[name] *= GROWTH  # keep going this way, further, before moving on
            directions.update({n: way for n, way in score.hints(score.last_audio).items() if n in directions})
            continue
        directions[name] = -directions[name]
        misses[name] += 1
        if misses[name] % 2 == 0:  # both ways failed: look closer next time
            steps[name] *= SHRINK
        if steps[name] < MIN_STEP:
            names.remove(name)
            continue
        position += 1
    return Refinement(best, float(best_distance), float(start_distance), score.renders)
