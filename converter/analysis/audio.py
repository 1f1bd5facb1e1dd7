"""Audio as the model hears it: 24 kHz mono float32 (MERT's input format), 5 s from the onset.

Clip policy (``prepare_clip``), shared by training, export and the converter: the clip starts 10 ms
before the onset (the first sample within 40 dB of the peak), keeps 5 s, and zero-pads anything
shorter. Leading silence is dropped, and a longer sound is judged by its first 5 s.
"""

from __future__ import annotations

import numpy as np
import soxr

MODEL_SAMPLE_RATE = 24000
CLIP_SECONDS = 5
CLIP_SAMPLES = MODEL_SAMPLE_RATE * CLIP_SECONDS
ONSET_DB = -40.0  # a sound starts at its first sample within 40 dB of its peak
PRE_ROLL_SAMPLES = MODEL_SAMPLE_RATE // 100  # keep 10 ms before the onset, so the attack is whole


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
    return resample(to_mono(audio), sample_rate, MODEL_SAMPLE_RATE)


def resample(audio: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 audio at ``target_rate``: soxr, the one resampler of training, export and converter."""
    audio = np.asarray(audio, dtype=np.float32)
    if sample_rate == target_rate or audio.size == 0:
        return audio
    return np.asarray(soxr.resample(audio, sample_rate, target_rate, quality="HQ"), dtype=np.float32)


def fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Crop or zero-pad mono audio to exactly ``samples`` float32 samples."""
    out = np.zeros(samples, dtype=np.float32)
    kept = np.asarray(audio, dtype=np.float32)[:samples]
    out[: kept.size] = kept
    return out


def find_onset(audio: np.ndarray, onset_db: float = ONSET_DB) -> int:
    """Index of the first sample within ``onset_db`` of the peak: leading silence ends there."""
    magnitude = np.abs(np.asarray(audio, dtype=np.float32))
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak == 0.0:
        return 0
    return int(np.argmax(magnitude >= peak * 10 ** (onset_db / 20)))


def prepare_clip(audio: np.ndarray) -> np.ndarray:
    """Mono 24 kHz audio of any length -> exactly ``CLIP_SAMPLES`` float32 samples, from the onset."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {audio.shape}")
    if audio.size and not np.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples")
    return fit_length(audio[max(0, find_onset(audio) - PRE_ROLL_SAMPLES):], CLIP_SAMPLES)
