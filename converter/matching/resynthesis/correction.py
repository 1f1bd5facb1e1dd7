"""Correcting a resynthesis by what Vital plays of it: render the tables, hear where the render is too
loud or too quiet against the input, scale each keyframe's partials by that, and play again.

The measurement that made the tables is open loop, and Vital does not play them back as measured: it
crossfades from frame to frame, the residual is a comb of lines where the input has noise, a window of
four periods blurs an attack. The comparison (``converter.matching.scoring``) says, for each moment and
mel band of a render and at each resolution of the distance, how far it is from the input
(``SpectralRatio``). ``corrected`` scales every harmonic and residual line of keyframe k by that ratio
at the keyframe's time and the line's frequency, averaged over the resolutions; ``correct_resynthesis``
plays the corrected tables (and versions of them the caller wants heard: the converter's quieter
residuals) as a fresh engine does and keeps the closest when it lands closer. A round that lands further
is taken back, and the next goes half as far.

A round costs a load of the tables and a render or three, about 0.3-0.6 s. The default plays one round,
the two seconds of ``--refine 2`` hold two to four (README).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from converter.analysis.note import midi_to_hz
from converter.matching.distance import SpectralRatio
from converter.matching.resynthesis.analysis import Resynthesis, cycles, partials
from converter.matching.resynthesis.patch import with_tables
from converter.matching.scoring import Comparison
from converter.vital.render import SAMPLE_RATE, RenderError
from converter.vital.wavetables import MAX_HARMONIC

# Times the measured log ratio, in the first round: a band mixes partials with what lies between them, so
# a plain step falls short. On the evaluation split 1.4 came closest of 1.0, 1.4 and 1.7 after one and after
# three rounds, with 3 smoothing frames (of 1, 3 and 5) and steps of at most 1.5 nepers (or 3).
STRENGTH = 1.4
GIVE_UP = 0.3  # the strength under which the rounds stop: three rounds have landed further
MAX_STEP = 1.5  # nepers (13 dB) the log ratio of one band may say in a round
SMOOTHING_FRAMES = 3  # frames of each resolution averaged in time, so a noise's random dips are not chased

Player = Callable[[dict], Sequence[tuple[dict, np.ndarray]]]
"""Plays a preset with corrected tables: (preset, audio) of it and of any versions of it worth hearing, each
audio what a fresh engine plays at the input's note, at 44.1 kHz."""


@dataclass(frozen=True)
class Correction:
    """The closest tables found, the preset playing them, its preview (a fresh engine's render) and its
    distance, and how many rounds were played in all."""

    resynthesis: Resynthesis
    preset: dict
    preview: np.ndarray
    distance: float
    rounds: int


def corrected(resynthesis: Resynthesis, ratios: tuple[SpectralRatio, ...], strength: float = STRENGTH) -> Resynthesis:
    """``resynthesis`` with each keyframe's partials scaled by ``ratios`` (of a render of it against the
    input) at the keyframe's time and each partial's frequency, raised to ``strength``."""
    lines = np.arange(1, MAX_HARMONIC + 1)
    f0 = midi_to_hz(resynthesis.note.pitch + resynthesis.pitch.at(resynthesis.times))
    harmonic_hz = f0[:, None] * lines
    residual_hz = np.broadcast_to(lines * midi_to_hz(resynthesis.residual_note),
                                  (resynthesis.residual_times.size, MAX_HARMONIC))
    harmonics, harmonic_phases = partials(resynthesis.harmonic_frames)
    residual, residual_phases = partials(resynthesis.residual_frames)
    harmonics *= np.exp(strength * _log_gain(ratios, resynthesis.times, harmonic_hz))
    residual *= np.exp(strength * _log_gain(ratios, resynthesis.residual_times, residual_hz))
    return replace(resynthesis, harmonic_frames=cycles(harmonics, harmonic_phases),
                   residual_frames=cycles(residual, residual_phases))


def correct_resynthesis(resynthesis: Resynthesis, preset: dict, preview: np.ndarray, distance: float,
                        comparison: Comparison, play: Player, *, seconds: float,
                        max_rounds: int | None = None) -> Correction:
    """Rounds of ``corrected`` tables in ``preset`` (which plays ``resynthesis`` as ``preview``, at
    ``distance``), each played by ``play``, for about ``seconds`` or ``max_rounds``, until three rounds
    have landed further. Knobs and routes stay as ``preset`` has them, or as the closest version ``play``
    made of it. A round Vital cannot play ends the rounds."""
    deadline = time.perf_counter() + seconds
    best = Correction(resynthesis, preset, preview, distance, 0)
    ratios = None  # of the best so far's preview, measured when a round needs them and kept while it stays best
    strength, rounds, spent = STRENGTH, 0, 0.0
    limit = np.inf if max_rounds is None else max_rounds
    while strength >= GIVE_UP and rounds < limit and deadline - time.perf_counter() > spent / max(rounds, 1):
        began = time.perf_counter()
        rounds += 1
        ratios = ratios or comparison.spectral_ratios(best.preview, SAMPLE_RATE)
        candidate = corrected(best.resynthesis, ratios, strength)
        try:
            played = play(with_tables(best.preset, candidate))
        except RenderError:
            break
        distance, version, audio = min(((comparison.distance(audio, SAMPLE_RATE), version, audio)
                                        for version, audio in played), key=lambda entry: entry[0])
        if distance < best.distance:
            best, ratios = Correction(candidate, version, audio, distance, 0), None
        else:
            strength /= 2.0
        spent += time.perf_counter() - began
    return replace(best, rounds=rounds)


def _log_gain(ratios: tuple[SpectralRatio, ...], times: np.ndarray, hz: np.ndarray) -> np.ndarray:
    """The mean over ``ratios`` of each one's log ratio, smoothed in time, at keyframe ``times`` and
    ``hz`` (keyframes, partials); beyond the first or last frame or band, that frame's or band's."""
    total = np.zeros(hz.shape)
    for ratio in ratios:
        steps = np.clip(ratio.log_ratio, -MAX_STEP, MAX_STEP)
        padded = np.pad(steps, ((SMOOTHING_FRAMES // 2,) * 2, (0, 0)), mode="edge")
        smoothed = np.lib.stride_tricks.sliding_window_view(padded, SMOOTHING_FRAMES, axis=0).mean(axis=-1)
        rows, row_weights = _neighbours(ratio.frame_seconds, times)
        at_times = smoothed[rows - 1] * (1.0 - row_weights)[:, None] + smoothed[rows] * row_weights[:, None]
        bands, band_weights = _neighbours(ratio.band_hz, hz)
        total += (np.take_along_axis(at_times, bands - 1, axis=1) * (1.0 - band_weights)
                  + np.take_along_axis(at_times, bands, axis=1) * band_weights)
    return total / len(ratios)


def _neighbours(grid: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For linear interpolation on the increasing ``grid``: the index of each point's upper neighbour
    (1 or more) and the weight of that neighbour, clamped at both ends."""
    upper = np.clip(np.searchsorted(grid, points), 1, grid.size - 1)
    weight = (points - grid[upper - 1]) / (grid[upper] - grid[upper - 1])
    return upper, np.clip(weight, 0.0, 1.0)
