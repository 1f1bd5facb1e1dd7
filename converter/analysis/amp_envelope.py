"""The sound's loudness contour as Vital's amp envelope: how a patch on our bank should rise, fall
and ring out to follow it.

The attack ends where the level first comes within 1 dB of its peak while the key is held; the
sustain is the level at key-up against the peak; the decay is how long the level takes to get 90 %
of the way from the peak to the sustain; the release is how long it takes to fall 40 dB after
key-up. Vital's envelope shapes amplitude by the square of its value and bends decay and release
(power -2), so the measured times are scaled by what those stages take in Vital's own renders
(``DECAY_SHARE``, ``RELEASE_SHARE``): on Vital renders of known envelopes the measurement gives the
envelope back within about 10 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter.analysis.note import HOP_SECONDS, envelope

ATTACK_REACH = 10 ** (-1 / 20)  # the attack ends 1 dB under the peak
DECAY_REACH = 0.1  # the decay ends this share of the way from the peak to the sustain level
RELEASE_DB = -40.0
DECAY_SHARE = 0.70  # Vital's decay gets 90 % of its way in this share of its time (measured)
DECAY_SMOOTHING = 5  # frames averaged where the decay's end is looked for: a waveform's ripple moved it ±10 %
RELEASE_SHARE = 0.75  # Vital's release falls 40 dB in this share of its time (measured)
SHORTEST = 0.005  # seconds: no stage is measured shorter than this


@dataclass(frozen=True)
class AmpEnvelope:
    """Vital's env 1 for the sound: times in seconds, ``sustain`` as Vital's knob (0-1). ``release``
    is None when the sound had died away before key-up, so its release cannot be heard."""

    attack: float
    decay: float
    sustain: float
    release: float | None


def measure_amp_envelope(audio: np.ndarray, sample_rate: int, note_length: float) -> AmpEnvelope | None:
    """The amp envelope of ``audio`` (mono, from its onset) held for ``note_length`` s; None if silent."""
    level = envelope(np.asarray(audio, dtype=np.float64), sample_rate)
    if level.size == 0:
        return None
    held = min(level.size - 1, max(0, int(note_length / HOP_SECONDS)))
    peak_frame = int(np.argmax(level[: held + 1]))
    peak = float(level[peak_frame])
    if peak <= 0.0:
        return None
    attack_frame = int(np.flatnonzero(level[: peak_frame + 1] >= ATTACK_REACH * peak)[0])
    at_key_up = float(np.median(level[max(peak_frame, held - 5) : held + 1]))
    sustain = float(np.clip(at_key_up / peak, 0.0, 1.0))
    smooth = np.convolve(np.pad(level, DECAY_SMOOTHING // 2, mode="edge"), np.ones(DECAY_SMOOTHING) / DECAY_SMOOTHING,
                         mode="valid")
    near_sustain = np.flatnonzero(smooth[peak_frame : held + 1] <= at_key_up + DECAY_REACH * (peak - at_key_up))
    decay_frames = near_sustain[0] if near_sustain.size else held - peak_frame
    release = None
    if at_key_up >= peak * 10 ** (RELEASE_DB / 20):
        faded = np.flatnonzero(level[held:] <= at_key_up * 10 ** (RELEASE_DB / 20))
        release_frames = faded[0] if faded.size else level.size - held
        release = max(release_frames * HOP_SECONDS / RELEASE_SHARE, SHORTEST)
    return AmpEnvelope(
        attack=attack_frame * HOP_SECONDS,
        decay=max(decay_frames * HOP_SECONDS / DECAY_SHARE, SHORTEST),
        sustain=float(np.sqrt(sustain)),  # Vital's amp envelope scales amplitude by its value squared
        release=release,
    )
