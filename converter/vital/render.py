"""Rendering a preset to audio with Vital's own engine: preview, dataset and evaluation share it.

``render`` builds a fresh engine per call: a preset must sound the same whatever was rendered before
it. Vital glides its smoothed controls (levels, modulation depths) to a preset's values after a load
and after a knob changes, so every note that counts follows a silent one of ``SETTLE_SECONDS``: what
is rendered is what a producer hears on the first key press after opening the preset, not the glide
(it moved a resynthesis's distance by up to 8 %). ``RenderSession`` is the cheap render of a preset's
variations, for the candidates' ranking and the search: one engine, the preset loaded once, then knobs
changed in place; with the same silent note before each played one, a session plays exactly what a
fresh engine loaded with those knobs plays, as long as the previous note has died away (tested, and
always so for a resynthesis, whose tail lives in its tables), except for the chorus, whose LFO runs on
the engine's clock and so sits at another phase after the first note (``plays_as_fresh``). A preset whose
tail outlasts that (long reverb, delay, release) carries some of it into the next note, so the answer a
search keeps is scored again with ``render``.
"""

from __future__ import annotations

import json

import numpy as np

SAMPLE_RATE = 44100
TAIL_SECONDS = 1.0  # rendered after the note is released, so release and reverb tails are heard
SETTLE_SECONDS = 0.3  # the silent note before every played one: Vital's parameter smoothing settles (0.05 s does not)


class RenderError(RuntimeError):
    """Vital refused the preset or produced unusable audio."""


def render(
    preset: dict | str,
    pitch: int = 60,
    velocity: float = 0.8,
    note_length: float = 1.0,
    duration: float | None = None,
) -> np.ndarray:
    """Play one note of ``preset`` and return float32 stereo audio, shape (2, n), at 44.1 kHz.

    ``pitch`` is a MIDI note, ``velocity`` in (0, 1], ``note_length`` how long the key is held and
    ``duration`` the length of the render (default: the note plus a one-second tail).

    Each call uses a new engine (~90 ms, plus loading the preset's wavetables): see the module docstring.
    """
    return RenderSession(preset, pitch=pitch, velocity=velocity, note_length=note_length, duration=duration).render()


class RenderSession:
    """One preset in one warm Vital engine, played again and again with knobs changed in place."""

    def __init__(self, preset: dict | str, *, sample_rate: int = SAMPLE_RATE, pitch: int = 60,
                 velocity: float = 0.8, note_length: float = 1.0, duration: float | None = None) -> None:
        import vita

        self.pitch, self.velocity, self.note_length = _checked_note(pitch, note_length)[0], velocity, note_length
        self.duration = _checked_duration(note_length, duration)
        self._synth = vita.Synth()
        if sample_rate != SAMPLE_RATE:  # costs ~60 ms and raises a worker's memory by ~100 MB: only when needed
            self._synth.set_sample_rate(int(sample_rate))
        if not self._synth.load_json(preset if isinstance(preset, str) else json.dumps(preset)):
            raise RenderError("Vital could not load the preset")
        self._controls = self._synth.get_controls()
        self._loaded: dict[str, float] = {}  # the loaded value of every knob a render has turned
        self._played = False

    def plays_as_fresh(self, knobs: dict[str, float] | None = None) -> bool:
        """Whether ``render(knobs)`` plays now exactly what a fresh engine loaded with those knobs plays:
        the first note always does; later ones do unless the chorus is on, its LFO having run on."""
        if not self._played:
            return True
        return not (knobs or {}).get("chorus_on", self._loaded.get("chorus_on", self._controls["chorus_on"].value()))

    def render(self, knobs: dict[str, float] | None = None) -> np.ndarray:
        """Play the note with ``knobs`` (raw Vital values by control name) turned and every other knob as
        loaded: float32 (2, n)."""
        knobs = knobs or {}
        for name in self._loaded.keys() - knobs.keys():
            self._controls[name].set(self._loaded[name])
        for name, value in knobs.items():
            self._loaded.setdefault(name, self._controls[name].value())
            self._controls[name].set(float(value))
        return self._play()

    def _play(self) -> np.ndarray:
        """The silent settling note, at the same pitch, then the note that counts."""
        self._synth.render(self.pitch, 0.0, SETTLE_SECONDS, SETTLE_SECONDS)
        self._played = True
        audio = self._synth.render(self.pitch, float(np.clip(self.velocity, 0.0, 1.0)), float(self.note_length),
                                   self.duration)
        return np.ascontiguousarray(audio, dtype=np.float32)


def _checked_note(pitch: int, note_length: float) -> tuple[int, float]:
    try:
        note = int(pitch)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"pitch must be a MIDI note 0-127, got {pitch}") from None
    if not 0 <= note <= 127:
        raise ValueError(f"pitch must be a MIDI note 0-127, got {pitch}")
    if not (note_length > 0 and np.isfinite(note_length)):
        raise ValueError(f"note_length must be positive, got {note_length}")
    return note, float(note_length)


def _checked_duration(note_length: float, duration: float | None) -> float:
    duration = note_length + TAIL_SECONDS if duration is None else duration
    if not (duration > 0 and np.isfinite(duration)):
        raise ValueError(f"duration must be positive, got {duration}")
    return float(duration)
