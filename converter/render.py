"""Rendering a preset to audio with Vital's own engine: preview, dataset and evaluation share it."""

from __future__ import annotations

import json

import numpy as np

SAMPLE_RATE = 44100
TAIL_SECONDS = 1.0  # rendered after the note is released, so release and reverb tails are heard


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

    Each call uses a new engine (~50 ms): Vital carries glides, LFO phases and effect tails from one
    render into the next, and a preset must sound the same whatever was rendered before it.
    """
    try:
        note = int(pitch)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"pitch must be a MIDI note 0-127, got {pitch}") from None
    if not 0 <= note <= 127:
        raise ValueError(f"pitch must be a MIDI note 0-127, got {pitch}")
    if not (note_length > 0 and np.isfinite(note_length)):
        raise ValueError(f"note_length must be positive, got {note_length}")
    duration = note_length + TAIL_SECONDS if duration is None else duration
    if not (duration > 0 and np.isfinite(duration)):
        raise ValueError(f"duration must be positive, got {duration}")
    text = preset if isinstance(preset, str) else json.dumps(preset)
    import vita

    synth = vita.Synth()
    if not synth.load_json(text):
        raise RenderError("Vital could not load the preset")
    audio = synth.render(note, float(np.clip(velocity, 0.0, 1.0)), float(note_length), float(duration))
    return np.ascontiguousarray(audio, dtype=np.float32)
