"""Audio as the model hears it: 24 kHz mono float32 (MERT's input format)."""

from __future__ import annotations

import numpy as np
import resampy

MODEL_SAMPLE_RATE = 24000


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average channels; accepts (n,), (channels, n) or (n, channels) with channels <= 64."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise ValueError(f"expected 1-D or 2-D audio, got shape {audio.shape}")
    channel_axis = 0 if audio.shape[0] <= audio.shape[1] else 1
    return audio.mean(axis=channel_axis, dtype=np.float32)


def to_model_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Downmix and resample to the model's 24 kHz."""
    mono = to_mono(audio)
    if sample_rate == MODEL_SAMPLE_RATE:
        return mono
    return resampy.resample(mono, sample_rate, MODEL_SAMPLE_RATE, filter="kaiser_fast").astype(np.float32)
