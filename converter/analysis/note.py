"""Finding the note in a sound: where it starts, which MIDI note it is, and how long the key was held.

The preset is played back at the detected note for the detected length, so these three numbers
decide whether the preview can line up with the user's sound at all. Pitch comes from YIN (de
Cheveigné & Kawahara, 2002) on the part after the attack, where drums and plucks have settled:
the median over frames that look periodic, so a few noisy or octave-confused frames do not move it.
A sound with too few periodic frames (noise, hats, snares) is unpitched and plays ``DEFAULT_NOTE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_NOTE = 60  # what unpitched sounds are played at: Vital's (and most keyboards') middle C
END_DB = -30.0  # the key is released when the envelope last falls below 30 dB under its peak
MIN_LENGTH, MAX_LENGTH = 0.05, 4.5  # seconds a note is held: the model hears 5 s clips

LOWEST_HZ, HIGHEST_HZ = 30.0, 2500.0  # MIDI 23 to 99: beyond the range any patch is played at
ATTACK_SECONDS = 0.04  # skipped before pitch analysis: attacks are noisy and bend in pitch
ANALYSED_SECONDS = 1.5  # pitch is read from at most this much of the note
WINDOW_SECONDS = 0.025  # YIN integration window
HOP_SECONDS = 0.01
ENVELOPE_WINDOW_SECONDS = 0.02
YIN_THRESHOLD = 0.15  # the first dip below this is the period (YIN's absolute threshold)
PERIODIC_LIMIT = 0.35  # frames whose best dip is deeper than this count as periodic
PITCHED_SHARE = 0.5  # a sound is pitched when at least this share of its loud frames are periodic
QUIET_FRAME_DB = -30.0  # frames this far below the loudest analysed frame are left out


@dataclass(frozen=True)
class Note:
    """The note to play: ``pitch`` (MIDI) detuned by ``cents``, held for ``length`` seconds."""

    pitch: int
    cents: float
    pitched: bool
    confidence: float  # 0-1: share of periodic frames times their mean periodicity
    length: float

    @property
    def name(self) -> str:
        """The note as Vital names it, MIDI 60 being C3: 'A#2'."""
        return note_name(self.pitch)


def note_name(pitch: int) -> str:
    """A MIDI note as Vital (and Ableton) name it, MIDI 60 being C3."""
    names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
    return f"{names[pitch % 12]}{pitch // 12 - 2}"


def hz_to_midi(hz: np.ndarray | float) -> np.ndarray | float:
    """Equal-tempered MIDI pitch (A4 = 69 = 440 Hz) of a frequency, fractional between notes."""
    return 69.0 + 12.0 * np.log2(np.asarray(hz) / 440.0)


def midi_to_hz(pitch: np.ndarray | float) -> np.ndarray | float:
    """The frequency of a MIDI pitch (fractional pitches allowed); Vital's cutoff knob is one too."""
    return 440.0 * 2.0 ** ((np.asarray(pitch) - 69.0) / 12.0)


def envelope(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS amplitude per ``HOP_SECONDS`` frame over ``ENVELOPE_WINDOW_SECONDS``."""
    audio = np.asarray(audio, dtype=np.float64)
    hop = max(1, round(HOP_SECONDS * sample_rate))
    window = max(hop, round(ENVELOPE_WINDOW_SECONDS * sample_rate))
    energy = np.concatenate(([0.0], np.cumsum(audio * audio)))
    starts = np.arange(0, max(len(audio) - window, 0) + 1, hop)
    ends = np.minimum(starts + window, len(audio))
    return np.sqrt((energy[ends] - energy[starts]) / np.maximum(ends - starts, 1))


def last_loud_frame(audio: np.ndarray, sample_rate: int, floor_db: float) -> int | None:
    """The last ``envelope`` frame within ``floor_db`` (negative) of the peak; None when silent."""
    levels = envelope(audio, sample_rate)
    if levels.size == 0 or levels.max() == 0.0:
        return None
    return int(np.nonzero(levels >= levels.max() * 10 ** (floor_db / 20))[0][-1])


def note_length(audio: np.ndarray, sample_rate: int) -> float:
    """Seconds from the start of ``audio`` until its envelope last sits within ``END_DB`` of its peak."""
    last = last_loud_frame(audio, sample_rate, END_DB)
    if last is None:
        return MIN_LENGTH
    return float(np.clip(last * HOP_SECONDS + ENVELOPE_WINDOW_SECONDS, MIN_LENGTH, MAX_LENGTH))


def yin(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame YIN: (period in samples, aperiodicity 0-1 at that period, frame RMS).

    Frames start every ``HOP_SECONDS``; each needs a window plus the longest period of audio.
    """
    audio = np.asarray(audio, dtype=np.float64)
    window = round(WINDOW_SECONDS * sample_rate)
    longest = int(np.ceil(sample_rate / LOWEST_HZ))
    shortest = max(2, int(sample_rate / HIGHEST_HZ))
    span = window + longest
    hop = max(1, round(HOP_SECONDS * sample_rate))
    if len(audio) < span:
        empty = np.empty(0)
        return empty, empty, empty
    frames = np.lib.stride_tricks.sliding_window_view(audio, span)[::hop]
    size = 1 << int(np.ceil(np.log2(span + window)))
    # d(tau) = sum (x_j - x_{j+tau})^2 over the window = e_0 + e_tau - 2 r(tau), r by FFT.
    spectrum = np.fft.rfft(frames, size) * np.conj(np.fft.rfft(frames[:, :window], size))
    correlation = np.fft.irfft(spectrum, size)[:, : longest + 1]
    squares = np.concatenate((np.zeros((len(frames), 1)), np.cumsum(frames * frames, axis=1)), axis=1)
    lags = np.arange(longest + 1)
    shifted_energy = squares[:, lags + window] - squares[:, lags]
    difference = np.maximum(shifted_energy[:, :1] + shifted_energy - 2.0 * correlation, 0.0)
    # Cumulative mean normalised difference: d'(0) = 1, d'(tau) = d(tau) * tau / sum_{k<=tau} d(k).
    running = np.cumsum(difference[:, 1:], axis=1)
    normalised = np.ones_like(difference)
    normalised[:, 1:] = difference[:, 1:] * lags[1:] / np.maximum(running, 1e-12)
    periods, dips = np.array([_period(row, shortest) for row in normalised]).T
    rms = np.sqrt(squares[:, window] / window)
    return periods, np.clip(dips, 0.0, 1.0), rms


def _period(normalised: np.ndarray, shortest: int) -> tuple[float, float]:
    """(period, depth of its dip): the deepest point of the first dip below YIN_THRESHOLD (else the
    deepest point overall), refined by a parabola through its neighbours."""
    candidates = normalised[shortest:-1]
    below = candidates < YIN_THRESHOLD
    if below.any():
        first = int(np.argmax(below))
        run = int(np.argmin(below[first:])) or len(below) - first
        tau = shortest + first + int(np.argmin(candidates[first:first + run]))
    else:
        tau = shortest + int(np.argmin(candidates))
    left, centre, right = normalised[tau - 1], normalised[tau], normalised[tau + 1]
    curvature = left - 2.0 * centre + right
    offset = float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) if curvature > 0 else 0.0
    return tau + offset, centre - 0.25 * (left - right) * offset


def estimate_pitch(audio: np.ndarray, sample_rate: int) -> tuple[float | None, float]:
    """(MIDI pitch as a float, or None when unpitched; confidence 0-1) of a sound starting at its onset."""
    audio = np.asarray(audio, dtype=np.float64)
    skip = round(ATTACK_SECONDS * sample_rate)
    span = round((WINDOW_SECONDS + 1.0 / LOWEST_HZ) * sample_rate) + 1
    start = skip if len(audio) - skip >= span else 0
    periods, aperiodicity, rms = yin(audio[start : start + round(ANALYSED_SECONDS * sample_rate) + span], sample_rate)
    if periods.size == 0 or rms.max() == 0.0:
        return None, 0.0
    loud = rms >= rms.max() * 10 ** (QUIET_FRAME_DB / 20)
    periodic = loud & (aperiodicity <= PERIODIC_LIMIT)
    share = periodic.sum() / loud.sum()
    confidence = float(share * (1.0 - aperiodicity[periodic].mean())) if periodic.any() else 0.0
    if share < PITCHED_SHARE:
        return None, confidence
    midi = hz_to_midi(sample_rate / periods[periodic])
    return float(np.median(midi)), confidence


def detect_note(audio: np.ndarray, sample_rate: int) -> Note:
    """The note of a mono sound that starts at its onset (see ``converter.analysis.audio.find_onset``)."""
    midi, confidence = estimate_pitch(audio, sample_rate)
    length = note_length(audio, sample_rate)
    if midi is None:
        return Note(DEFAULT_NOTE, 0.0, False, confidence, length)
    pitch = int(np.clip(round(midi), 0, 127))
    cents = float(np.clip((midi - pitch) * 100.0, -50.0, 50.0))
    return Note(pitch, cents, True, confidence, length)
