"""Patches on our own bank matched to the sound by analysis: an editable answer without the model.

The sound's loud cycles (a resynthesis measurement's harmonic frames) are averaged as harmonic levels
and compared with every keyframe of the bank. Each of the ``MATCHES`` nearest tables, at its nearest
keyframe, makes one patch from Vital's init patch; the nearest also comes with the input's noise
(its residual's level against its harmonics') at a few ``NOISE_SHARES``. The converter tunes them,
gives them the input's amp envelope and renders them beside the model's patch: a handful of renders
of small presets, and on held-out sounds closer than the model's answer or the best of 64 random
patches (README).
"""

from __future__ import annotations

import numpy as np

from converter.matching.resynthesis import Resynthesis
from converter.vital.parameters import ParameterSpace, parameter_space
from converter.vital.wavetables import WavetableBank, default_bank, harmonic_levels

MATCHES = 3  # nearest tables, one patch each
NOISE_SHARES = (0.5, 1.0)  # of the residual-to-harmonics level ratio, as the noise's level beside the nearest table
LOUD_SHARE = 0.1  # cycles this far (-20 dB) under the loudest one are the sound's fading tail: not matched
KEYFRAMES = 32  # of the measurement: enough cycles for an average timbre, a fifth of a resynthesis's time


def matched_vectors(measurement: Resynthesis, *, space: ParameterSpace | None = None,
                    bank: WavetableBank | None = None) -> list[np.ndarray]:
    """Parameter vectors (Vital's init patch otherwise, untuned) playing the bank's nearest tables,
    nearest first, then the nearest with noise."""
    space, bank = space or parameter_space(), bank or default_bank()
    frames = measurement.harmonic_frames if measurement.harmonic_level > 0.0 else measurement.residual_frames
    loudness = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    loud = frames[loudness >= LOUD_SHARE * loudness.max()] if loudness.max() > 0.0 else frames
    matches = bank.closest_frames(harmonic_levels(loud).mean(axis=0), MATCHES)
    vectors = [_playing(space, table, position) for table, position in matches]
    noise = measurement.residual_level / measurement.harmonic_level if measurement.harmonic_level > 0.0 else 0.0
    for share in NOISE_SHARES if noise > 0.0 else ():
        vector = vectors[0].copy()
        vector[space.index("sample_on")] = space["sample_on"].normalise(1.0)
        vector[space.index("sample_level")] = space["sample_level"].normalise(min(1.0, share * noise))
        vectors.append(vector)
    return vectors


def _playing(space: ParameterSpace, table: int, position: float) -> np.ndarray:
    vector = space.default_vector()
    vector[space.index("osc_1_wavetable")] = space["osc_1_wavetable"].normalise(table)
    vector[space.index("osc_1_wave_frame")] = space["osc_1_wave_frame"].normalise(position)
    return vector
