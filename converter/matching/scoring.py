"""The one comparison vinv makes, wherever it compares: the converter's choice of candidate, the
search, the preview's 0-100 score, the reports and vinv-evaluate.

Mono at 24 kHz (the model's rate: a search renders a third cheaper there, and the similarity scale
was calibrated there), from the note's onset for as long as the key is held plus the render tail
(``TAIL_SECONDS``), capped at the model's 5 s clip; anything shorter is padded with silence, which
a preview must then match too. What nobody hears, under 10 Hz (``remove_dc``), is left out. The
distance is ``converter.matching.distance``'s MR-STFT.
"""

from __future__ import annotations

import numpy as np

from converter.analysis.audio import CLIP_SECONDS, MODEL_SAMPLE_RATE, fit_length, remove_dc, resample, to_mono
from converter.matching.distance import SpectralRatio, prepare_target
from converter.vital.render import TAIL_SECONDS

SCORE_SAMPLE_RATE = MODEL_SAMPLE_RATE


def score_seconds(note_length: float) -> float:
    """How much of a sound is compared: the held note and its tail, at most one model clip."""
    return min(note_length + TAIL_SECONDS, CLIP_SECONDS)


class Comparison:
    """A target sound prepared once, to be compared with many renders of the same note."""

    def __init__(self, target: np.ndarray, sample_rate: int, note_length: float) -> None:
        self.samples = round(score_seconds(note_length) * SCORE_SAMPLE_RATE)
        self._target = prepare_target(self._cut(target, sample_rate), SCORE_SAMPLE_RATE)

    def distance(self, audio: np.ndarray, sample_rate: int) -> float:
        """MR-STFT distance from the target to ``audio`` (mono or (channels, n), from note-on)."""
        return self._target.distance(self._cut(audio, sample_rate))

    def spectral_ratios(self, audio: np.ndarray, sample_rate: int) -> tuple[SpectralRatio, ...]:
        """Where ``audio`` is too quiet or too loud against the target, per resolution of the distance
        (``SpectralRatio``; frame times from note-on)."""
        return self._target.spectral_ratios(self._cut(audio, sample_rate))

    def _cut(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        mono = to_mono(audio)[: int(np.ceil(self.samples * sample_rate / SCORE_SAMPLE_RATE)) + 64]
        return remove_dc(fit_length(resample(mono, sample_rate, SCORE_SAMPLE_RATE), self.samples), SCORE_SAMPLE_RATE)
