"""Our own wavetable bank, generated from formulas, and reading of wavetables from Vital JSON.

Presets we write may only carry wavetables we made ourselves (never Vital's factory tables), so every
table here is computed from code: deterministic, band-limited and small enough to build at start-up.
Foreign wavetables found in presets are projected onto this bank with ``WavetableBank.nearest``.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

FRAME_SIZE = 2048  # samples in one Vital wavetable frame (one cycle)
BANK_VERSION = "1"  # bump whenever a table of the default bank changes: models learn table ids

MAX_KEYFRAMES = 256  # Vital's limit; the bank's own tables use at most 16
MAX_HARMONIC = 1000  # below the frame's Nyquist bin (1024), so frames carry no aliasing
# Vital picks an oscillator's wave frame (the integer part of its position) every 7 ms and crossfades to
# it over the next 7 ms (kWavetableFadeTime): a table swept one frame per pick plays every frame in turn.
FRAME_PICK_SECONDS = 0.007
_OVERSAMPLE = 16  # time-domain shapes are sampled this finely before band-limiting
_VITAL_LAST_POSITION = 256  # Vital's wave-frame axis runs 0..256

_TIMBRE_HARMONICS = 64
_TIMBRE_POSITIONS = 4
_TIMBRE_FLOOR = 1e-3  # -60 dB below a frame's strongest harmonic counts as silence

_PHASE = np.arange(FRAME_SIZE) / FRAME_SIZE
_FINE_PHASE = np.arange(FRAME_SIZE * _OVERSAMPLE) / (FRAME_SIZE * _OVERSAMPLE)


@dataclass(frozen=True, eq=False)
class Wavetable:
    """A named table of 1 to 256 keyframes, each one zero-mean cycle of ``FRAME_SIZE`` samples.

    Keyframes sit evenly along Vital's wave-frame axis and Vital morphs between them, unless the
    table is ``swept``: a modulation plays it frame by frame, so its keyframes sit on consecutive
    positions from 0. Vital builds every frame up to the last keyframe's position when it loads a
    table (about 0.3 ms a frame), so a short swept table loads fast. Vital normalises a table to full
    scale unless ``keep_level``: a resynthesised table keeps its level, so that two oscillators keep
    their balance.
    """

    name: str
    frames: np.ndarray
    keep_level: bool = False
    swept: bool = False

    def __post_init__(self) -> None:
        frames = np.array(self.frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != FRAME_SIZE or not 1 <= len(frames) <= MAX_KEYFRAMES:
            raise ValueError(f"frames must be (1..{MAX_KEYFRAMES}, {FRAME_SIZE}), got {frames.shape}")
        frames.setflags(write=False)
        object.__setattr__(self, "frames", frames)

    def to_vital(self) -> dict:
        """The dict Vital stores in a preset's ``settings["wavetables"][i]``."""
        count = len(self.frames)
        keyframes = [
            {
                "position": i if self.swept else keyframe_position(i, count),
                "wave_data": base64.b64encode(frame.astype("<f4").tobytes()).decode("ascii"),
            }
            for i, frame in enumerate(self.frames)
        ]
        # With a keyframe on (nearly) every frame position there is nothing to morph: Vital loads such a
        # table 40 % faster unmorphed (style 0), and the bank's few-keyframe tables morph (style 1).
        morph = 0 if self.swept or count == MAX_KEYFRAMES else 1
        component = {"interpolation": 1, "interpolation_style": morph, "keyframes": keyframes, "type": "Wave Source"}
        return {
            "author": "vinv",
            "full_normalize": not self.keep_level,
            "groups": [{"components": [component]}],
            "name": self.name,
            "remove_all_dc": True,
            "version": "1.5.3",
        }


class WavetableBank:
    """An ordered set of wavetables: a table's index is the id presets and models refer to."""

    def __init__(self, tables: Sequence[Wavetable]) -> None:
        self._tables = tuple(tables)
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError("wavetable names must be unique")
        self._levels = [harmonic_levels(table.frames) for table in self._tables]
        self._timbres = np.stack([_timbre(levels) for levels in self._levels])

    def __len__(self) -> int:
        return len(self._tables)

    def __getitem__(self, index: int) -> Wavetable:
        return self._tables[index]

    @property
    def names(self) -> tuple[str, ...]:
        """Table names in id order."""
        return tuple(table.name for table in self._tables)

    def index(self, name: str) -> int:
        """The id of the table called ``name`` (ValueError when there is none)."""
        return self.names.index(name)

    def nearest(self, frames: np.ndarray) -> int:
        """The id of the table that sounds most like ``frames``, a foreign (n, FRAME_SIZE) table.

        Compares harmonic magnitudes only, so phase and level differences do not matter.
        """
        frames = np.atleast_2d(np.asarray(frames, dtype=np.float64))
        if frames.ndim != 2 or frames.shape[1] != FRAME_SIZE or len(frames) == 0:
            raise ValueError(f"frames must be (n, {FRAME_SIZE}), got {frames.shape}")
        if not np.all(np.isfinite(frames)):
            raise ValueError("frames must be finite")
        distances = np.sum((self._timbres - _timbre(harmonic_levels(frames))) ** 2, axis=1)
        return int(np.argmin(distances))

    def closest_frames(self, levels: np.ndarray, count: int = 1) -> list[tuple[int, float]]:
        """The ``count`` tables with a keyframe nearest to ``levels`` (a sound's ``harmonic_levels``, one
        cycle's worth) as (table id, Vital wave-frame position 0..256), nearest first, one per table."""
        levels = np.asarray(levels, dtype=np.float64)
        if levels.shape != (_TIMBRE_HARMONICS,):
            raise ValueError(f"levels must be ({_TIMBRE_HARMONICS},), got {levels.shape}")
        nearest = []
        for table, table_levels in enumerate(self._levels):
            distances = np.sum((table_levels - levels) ** 2, axis=1)
            frame = int(np.argmin(distances))
            nearest.append((float(distances[frame]), table, float(keyframe_position(frame, len(table_levels)))))
        return [(table, position) for _, table, position in sorted(nearest)[:count]]


def keyframe_position(index: int, count: int) -> int:
    """Where keyframe ``index`` of a ``count``-keyframe table sits on Vital's wave-frame axis (0..256):
    evenly spread, the first at 0 and the last at the end."""
    return 0 if count == 1 else round(index * _VITAL_LAST_POSITION / (count - 1))


def sweep_depth(count: int) -> float:
    """The modulation amount (of the whole wave-frame axis) that moves a ``swept`` table of ``count``
    keyframes from its first keyframe to its last: a modulator at value k / (count - 1) plays keyframe k."""
    return (count - 1) / _VITAL_LAST_POSITION


def harmonic_levels(frames: np.ndarray) -> np.ndarray:
    """Per cycle, log10 magnitudes of its first harmonics relative to its strongest, floored at -60 dB:
    how a cycle sounds, whatever its phase and level."""
    magnitudes = np.abs(np.fft.rfft(np.atleast_2d(frames), axis=1)[:, 1 : _TIMBRE_HARMONICS + 1])
    strongest = magnitudes.max(axis=1, keepdims=True)
    strongest[strongest == 0] = 1.0
    return np.log10(np.maximum(magnitudes / strongest, _TIMBRE_FLOOR))


def _timbre(levels: np.ndarray) -> np.ndarray:
    """A table's ``harmonic_levels`` at a few evenly spaced positions through it."""
    positions = np.linspace(0, len(levels) - 1, _TIMBRE_POSITIONS)
    lower = np.floor(positions).astype(int)
    upper = np.minimum(lower + 1, len(levels) - 1)
    weight = (positions - lower)[:, None]
    return ((1 - weight) * levels[lower] + weight * levels[upper]).ravel()


def decode_wave_data(b64: str) -> np.ndarray:
    """One frame from a Wave Source keyframe's ``wave_data`` (base64 little-endian float32).

    Raises ValueError when the text is not base64 or does not hold exactly one frame.
    """
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != FRAME_SIZE * 4:
        raise ValueError(f"wave_data holds {len(raw)} bytes, expected {FRAME_SIZE * 4}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def frames_from_vital(wavetable_json: dict) -> np.ndarray | None:
    """The keyframes, (n, FRAME_SIZE), of the first readable source in a Vital wavetable JSON.

    Reads "Wave Source" and "Audio File Source" components as Vital would before normalising;
    returns None for anything else (line sources, malformed or foreign JSON) instead of raising.
    """
    try:
        for group in wavetable_json["groups"]:
            for component in group["components"]:
                if component.get("type") == "Wave Source":
                    frames = _wave_source_frames(component)
                elif component.get("type") == "Audio File Source":
                    frames = _audio_file_frames(component)
                else:
                    continue
                if frames is not None:
                    return frames
    except (TypeError, KeyError, ValueError, AttributeError, OverflowError):
        return None
    return None


def _wave_source_frames(component: dict) -> np.ndarray | None:
    keyframes = sorted(component["keyframes"], key=lambda keyframe: float(keyframe.get("position", 0)))
    if not keyframes:
        return None
    frames = np.stack([decode_wave_data(keyframe["wave_data"]) for keyframe in keyframes])
    return frames if np.all(np.isfinite(frames)) else None


def _audio_file_frames(component: dict) -> np.ndarray | None:
    """Vital plays ``window_size`` samples of the audio from each keyframe's start, stretched to a frame.

    The component's window size wins over the keyframes' own (Vital overrides them when rendering), and
    every fade style but "wave blend" snaps the start down to a whole window.
    """
    raw = base64.b64decode(component["audio_file"], validate=True)
    audio = np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.float64) / 32767.0
    window = float(component["window_size"])
    if len(audio) < 2 or not (math.isfinite(window) and window > 0):
        return None
    snap_to_window = component.get("fade_style", 0) != 0
    keyframes = sorted(component["keyframes"], key=lambda keyframe: float(keyframe.get("position", 0)))
    frames = []
    for keyframe in keyframes:
        start = float(keyframe["start_position"])
        if not math.isfinite(start):
            return None
        if snap_to_window:
            start = math.floor(start / window) * window
        positions = np.clip(start + window * _PHASE, 0, len(audio) - 1)
        frames.append(np.interp(positions, np.arange(len(audio)), audio))
    return np.stack(frames).astype(np.float32) if frames else None


def _normalised(frame: np.ndarray) -> np.ndarray:
    frame = frame - frame.mean()
    return (frame / np.abs(frame).max()).astype(np.float32)


def _from_harmonics(amplitudes: Sequence[float] | np.ndarray) -> np.ndarray:
    """A frame summing sines: ``amplitudes[k]`` (sign included) scales harmonic k + 1."""
    amplitudes = np.asarray(amplitudes, dtype=np.float64)[:MAX_HARMONIC]
    spectrum = np.zeros(FRAME_SIZE // 2 + 1, dtype=np.complex128)
    spectrum[1 : len(amplitudes) + 1] = -0.5j * FRAME_SIZE * amplitudes
    return _normalised(np.fft.irfft(spectrum, FRAME_SIZE))


def _from_spectrum(spectrum: np.ndarray) -> np.ndarray:
    """A frame from complex harmonic amplitudes, ``spectrum[k]`` for harmonic k + 1."""
    full = np.zeros(FRAME_SIZE // 2 + 1, dtype=np.complex128)
    full[1 : MAX_HARMONIC + 1] = spectrum[:MAX_HARMONIC]
    return _normalised(np.fft.irfft(full, FRAME_SIZE))


def _from_shape(shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A band-limited frame from a waveform formula of phase in [0, 1) (discontinuities allowed).

    The formula is sampled ``_OVERSAMPLE`` times finer than a frame and only its first harmonics
    kept, so hard edges (sync, pulses, quantising) come out without audible aliasing.
    """
    spectrum = np.fft.rfft(shape(_FINE_PHASE))[1 : MAX_HARMONIC + 1]
    return _from_spectrum(spectrum)


def _harmonic_numbers() -> np.ndarray:
    return np.arange(1, MAX_HARMONIC + 1, dtype=np.float64)


def _saw_amplitudes() -> np.ndarray:
    """A rising ramp: harmonic n at 1/n."""
    return -1.0 / _harmonic_numbers()


def _square_amplitudes() -> np.ndarray:
    n = _harmonic_numbers()
    return np.where(n % 2 == 1, 1.0 / n, 0.0)


def _triangle_amplitudes() -> np.ndarray:
    n = _harmonic_numbers()
    return np.where(n % 2 == 1, (-1.0) ** ((n - 1) // 2) / n**2, 0.0)


def _lowpassed_saw(cutoff: float, odd_only: bool = False) -> np.ndarray:
    n = _harmonic_numbers()
    amplitudes = _saw_amplitudes() / (1.0 + (n / cutoff) ** 4)
    if odd_only:
        amplitudes = np.where(n % 2 == 1, amplitudes, 0.0)
    return _from_harmonics(amplitudes)


def _even_boosted_saw(boost: float) -> np.ndarray:
    n = _harmonic_numbers()
    gain = np.where(n % 2 == 0, boost, 1.0 / boost)
    gain[0] = 1.0
    return _from_harmonics(_saw_amplitudes() * gain)


def _saw_to_square(mix: float) -> np.ndarray:
    """A saw plus ``mix`` times its half-cycle-shifted inverse: ``mix`` = 1 is a square."""
    n = _harmonic_numbers()
    return _from_harmonics(_saw_amplitudes() * (1.0 - mix * (-1.0) ** n))


def _harmonic_peak(center: float, octaves_wide: float = 0.25) -> np.ndarray:
    n = _harmonic_numbers()
    return _from_harmonics(np.exp(-0.5 * (np.log2(n / center) / octaves_wide) ** 2))


def _resonance(frequencies: np.ndarray, center: float, bandwidth: float) -> np.ndarray:
    """Magnitude of a two-pole resonator with unity gain at DC."""
    return center**2 / np.sqrt((center**2 - frequencies**2) ** 2 + (bandwidth * frequencies) ** 2)


def _resonant_saw(center: float, quality: float = 8.0) -> np.ndarray:
    n = _harmonic_numbers()
    return _from_harmonics(_saw_amplitudes() * _resonance(n, center, center / quality))


def _vowel(formants: tuple[float, float, float], pitch: float) -> np.ndarray:
    """A voice-like saw source through a cascade of formant resonators, sung at ``pitch`` Hz."""
    frequencies = _harmonic_numbers() * pitch
    gain = np.ones_like(frequencies)
    for formant, bandwidth in zip(formants, _FORMANT_BANDWIDTHS):
        gain *= _resonance(frequencies, formant, bandwidth)
    return _from_harmonics(_saw_amplitudes() * gain)


def _decaying_partials(harmonics: Sequence[int], amplitudes: Sequence[float], count: int = 8) -> list[np.ndarray]:
    """Frames of a struck object: higher partials die away faster from frame to frame."""
    harmonics = np.asarray(harmonics)
    amplitudes = np.asarray(amplitudes, dtype=np.float64)
    decay = 3.0 * harmonics / harmonics.max()
    frames = []
    for time in np.linspace(0.0, 1.0, count):
        spectrum = np.zeros(MAX_HARMONIC)
        np.add.at(spectrum, harmonics - 1, amplitudes * np.exp(-decay * time))
        frames.append(_from_harmonics(spectrum))
    return frames


def _rounded_partials(ratios: Sequence[float], fundamental_harmonic: int) -> list[int]:
    """Inharmonic mode ratios placed on the nearest harmonics of a deeper cycle."""
    return [max(1, round(ratio * fundamental_harmonic)) for ratio in ratios]


def _plate_partials() -> tuple[list[int], list[float]]:
    """Modes (m, n) of a simply supported square plate: frequency grows with m² + n²."""
    modes = [(m, n) for m in range(1, 7) for n in range(1, 7)]
    harmonics = [2 * (m * m + n * n) for m, n in modes]
    amplitudes = [1.0 / (m * n) for m, n in modes]
    return harmonics, amplitudes


def _metallic_partials() -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(1729)
    harmonics = rng.choice(np.arange(7, 241), size=24, replace=False)
    amplitudes = rng.uniform(0.2, 1.0, size=24) / np.sqrt(harmonics / 7.0)
    return harmonics.tolist(), amplitudes.tolist()


def _noise(exponent: float, seed: int, count: int = 8) -> list[np.ndarray]:
    """Random-phase, random-amplitude spectra whose power falls as n ** -exponent."""
    rng = np.random.default_rng(seed)
    envelope = _harmonic_numbers() ** (-exponent / 2.0)
    return [
        _from_spectrum(envelope * (rng.standard_normal(MAX_HARMONIC) + 1j * rng.standard_normal(MAX_HARMONIC)))
        for _ in range(count)
    ]


def _ramp(phase: np.ndarray) -> np.ndarray:
    return 2.0 * phase - 1.0


def _sine(phase: np.ndarray) -> np.ndarray:
    return np.sin(2.0 * np.pi * phase)


def _pulse(width: float) -> np.ndarray:
    return _from_shape(lambda phase: np.where(phase < width, 1.0, -1.0))


def _hard_sync(slave: Callable[[np.ndarray], np.ndarray], ratio: float) -> np.ndarray:
    """A slave oscillator ``ratio`` times faster than the master, restarted every master cycle."""
    return _from_shape(lambda phase: slave(np.mod(ratio * phase, 1.0)))


def _fm(modulator_ratio: float, index: float) -> np.ndarray:
    """Two-operator FM: a carrier at the fundamental, phase-modulated by a sine."""
    return _from_shape(lambda phase: np.sin(2 * np.pi * phase + index * np.sin(2 * np.pi * modulator_ratio * phase)))


def _stacked_saws(harmonics: Sequence[int], gains: Sequence[float]) -> np.ndarray:
    """Saws at integer multiples of the fundamental, summed: stacked octaves, fifths or chords."""
    spectrum = np.zeros(MAX_HARMONIC)
    for harmonic, gain in zip(harmonics, gains):
        n = np.arange(harmonic, MAX_HARMONIC + 1, harmonic)
        spectrum[n - 1] += gain * harmonic / n
    return _from_harmonics(-spectrum)


def _organ(registration: str) -> np.ndarray:
    """A tonewheel organ: nine drawbars (0-8, 3 dB a step) of sines at the drawbars' harmonics."""
    spectrum = np.zeros(MAX_HARMONIC)
    for harmonic, setting in zip(_DRAWBAR_HARMONICS, registration):
        if setting != "0":
            spectrum[harmonic - 1] += 10.0 ** (3.0 * (int(setting) - 8) / 20.0)
    return _from_harmonics(spectrum)


def _bitcrushed(bits: int) -> np.ndarray:
    levels = 2 ** (bits - 1)
    return _from_shape(lambda phase: np.round(_sine(phase) * levels) / levels)


def _downsampled(steps: int) -> np.ndarray:
    """A sine held for ``steps`` equal steps per cycle, sampled mid-step."""
    return _from_shape(lambda phase: _sine((np.floor(phase * steps) + 0.5) / steps))


def _folded(gain: float) -> np.ndarray:
    return _from_shape(lambda phase: np.sin(0.5 * np.pi * gain * _sine(phase)))


def _driven(gain: float) -> np.ndarray:
    return _from_shape(lambda phase: np.tanh(gain * _sine(phase)))


def _combed_saw(delay: float) -> np.ndarray:
    """A saw added to a copy of itself ``delay`` cycles later: notches at odd multiples of 1/(2·delay)."""
    n = _harmonic_numbers()
    return _from_spectrum(-_saw_amplitudes() * 1j * (1.0 + np.exp(-2j * np.pi * n * delay)))


def _resonant_window(ratio: float) -> np.ndarray:
    """Phase-distortion style resonance: a fast sine under a falling-ramp window."""
    return _from_shape(lambda phase: (1.0 - phase) * _sine(ratio * phase))


def _phase_distorted(knee: float) -> np.ndarray:
    """A cosine read through a bent phase: a sine when ``knee`` = 0.5, saw-like as it shrinks."""

    def shape(phase: np.ndarray) -> np.ndarray:
        bent = np.where(phase < knee, 0.5 * phase / knee, 0.5 + 0.5 * (phase - knee) / (1.0 - knee))
        return -np.cos(2.0 * np.pi * bent)

    return _from_shape(shape)


_FORMANT_BANDWIDTHS = (80.0, 90.0, 120.0)
_VOWEL_FORMANTS = (  # F1-F3 in Hz of a, e, i, o, u (Peterson & Barney 1952, men's averages)
    (730.0, 1090.0, 2440.0),
    (530.0, 1840.0, 2480.0),
    (270.0, 2290.0, 3010.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
)
_HIGH_VOICE_FORMANT_SCALE = 1.17  # women's formants sit about this much higher
_DRAWBAR_HARMONICS = (1, 3, 2, 4, 6, 8, 10, 12, 16)  # 16', 5 1/3', 8', 4', 2 2/3', 2', 1 3/5', 1 1/3', 1'
_ORGAN_REGISTRATIONS = ("008000000", "888000000", "868000000", "888800000", "808000008", "800000888",
                        "688600000", "888888888")
_BELL_RATIOS = (0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.2, 5.4)
_BELL_AMPLITUDES = (0.6, 1.0, 0.8, 0.4, 0.7, 0.3, 0.35, 0.2, 0.15)
_BAR_RATIOS = (1.0, 2.756, 5.404, 8.933, 13.344, 18.638)  # free-free bar (marimba, glockenspiel)
_BAR_AMPLITUDES = (1.0, 0.6, 0.35, 0.2, 0.12, 0.08)


def _table_recipes() -> dict[str, Callable[[], list[np.ndarray]]]:
    """The default bank in id order: each table's name and how to compute its frames, so that the names
    (all the parameter table needs) cost nothing and a table is computed only when something plays it."""
    return {
        "Sine": lambda: [_from_harmonics([1.0])],
        "Saw": lambda: [_from_harmonics(_saw_amplitudes())],
        "Triangle": lambda: [_from_harmonics(_triangle_amplitudes())],
        "Square": lambda: [_from_harmonics(_square_amplitudes())],
        "Basic Shapes": lambda: [_from_harmonics(amplitudes) for amplitudes in
                                 ([1.0], _triangle_amplitudes(), _saw_amplitudes(), _square_amplitudes())],
        "PWM": lambda: [_pulse(width) for width in np.linspace(0.5, 0.04, 16)],
        "Saw To Square": lambda: [_saw_to_square(mix) for mix in np.linspace(0.0, 1.0, 8)],
        "Bright Sweep": lambda: [_lowpassed_saw(cutoff) for cutoff in np.geomspace(1.0, 512.0, 16)],
        "Odd Sweep": lambda: [_lowpassed_saw(cutoff, odd_only=True) for cutoff in np.geomspace(1.0, 512.0, 16)],
        "Even Sweep": lambda: [_even_boosted_saw(boost) for boost in np.geomspace(1.0, 8.0, 8)],
        "Harmonic Scan": lambda: [_harmonic_peak(center) for center in np.geomspace(1.0, 64.0, 16)],
        "Formant Sweep": lambda: [_resonant_saw(center) for center in np.geomspace(2.0, 64.0, 16)],
        "Vowels": lambda: [_vowel(formants, 110.0) for formants in _VOWEL_FORMANTS],
        "Vowels High": lambda: [
            _vowel(tuple(f * _HIGH_VOICE_FORMANT_SCALE for f in formants), 220.0) for formants in _VOWEL_FORMANTS
        ],
        "Sync Saw": lambda: [_hard_sync(_ramp, ratio) for ratio in np.linspace(1.0, 8.0, 16)],
        "Sync Sine": lambda: [_hard_sync(_sine, ratio) for ratio in np.linspace(1.0, 8.0, 16)],
        **{f"FM 1:{ratio}": partial(_fm_sweep, ratio) for ratio in (1, 2, 3, 4, 7)},
        "FM Ratio": lambda: [_fm(ratio, 2.0) for ratio in range(1, 17)],
        "Bell": lambda: _decaying_partials(_rounded_partials(_BELL_RATIOS, 10), _BELL_AMPLITUDES),
        "Bar": lambda: _decaying_partials(_rounded_partials(_BAR_RATIOS, 4), _BAR_AMPLITUDES),
        "Plate": lambda: _decaying_partials(*_plate_partials()),
        "Metallic": lambda: _decaying_partials(*_metallic_partials()),
        "White Noise": lambda: _noise(0.0, seed=11),
        "Pink Noise": lambda: _noise(1.0, seed=12),
        "Brown Noise": lambda: _noise(2.0, seed=13),
        "Blue Noise": lambda: _noise(-1.0, seed=14),
        "Saw Stack": lambda: [
            _stacked_saws((1, 2, 3, 4, 6, 8)[:voices], (1.0, 0.7, 0.5, 0.5, 0.35, 0.35)) for voices in range(1, 7)
        ],
        "Chords": lambda: [
            _stacked_saws((4, 5, 6), (1.0, 1.0, 1.0)),
            _stacked_saws((10, 12, 15), (1.0, 1.0, 1.0)),
            _stacked_saws((6, 8, 9), (1.0, 1.0, 1.0)),
            _stacked_saws((4, 5, 6, 7), (1.0, 1.0, 1.0, 1.0)),
        ],
        "Organ": lambda: [_organ(registration) for registration in _ORGAN_REGISTRATIONS],
        "Bitcrush": lambda: [_bitcrushed(bits) for bits in range(8, 0, -1)],
        "Downsample": lambda: [_downsampled(steps) for steps in (64, 32, 16, 12, 8, 6, 4, 2)],
        "Wavefold": lambda: [_folded(gain) for gain in np.linspace(1.0, 8.0, 16)],
        "Drive": lambda: [_driven(gain) for gain in np.geomspace(0.5, 30.0, 8)],
        "Comb": lambda: [_combed_saw(delay) for delay in np.geomspace(1 / 128, 1 / 4, 16)],
        "Reso Saw": lambda: [_resonant_window(ratio) for ratio in np.linspace(1.0, 16.0, 16)],
        "Phase Dist": lambda: [_phase_distorted(knee) for knee in np.linspace(0.5, 0.02, 8)],
    }


def _fm_sweep(ratio: int) -> list[np.ndarray]:
    return [_fm(ratio, index) for index in np.linspace(0.0, 6.0, 16)]


@lru_cache(maxsize=1)
def bank_names() -> tuple[str, ...]:
    """The default bank's table names in id order, without computing any table."""
    return tuple(_table_recipes())


@lru_cache(maxsize=None)
def bank_table(name: str) -> Wavetable:
    """One table of the default bank, computed on first use."""
    return Wavetable(name, np.stack(_table_recipes()[name]()))


@lru_cache(maxsize=1)
def default_bank() -> WavetableBank:
    """The bank presets are written with (ids are stable within one ``BANK_VERSION``).

    Table 0 is "Sine" and table 1 "Saw": other modules rely on those two ids.
    """
    return WavetableBank([bank_table(name) for name in bank_names()])
