"""Audio as the model hears it: 24 kHz mono float32 (MERT's input format), 5 s from the onset.

Clip policy (``prepare_clip``), shared by training, export and the converter: the clip starts 10 ms
before the onset (the first sample within 40 dB of the peak), keeps 5 s, and zero-pads anything
shorter. Leading silence is dropped, and a longer sound is judged by its first 5 s.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import soxr

MODEL_SAMPLE_RATE = 24000
CLIP_SECONDS = 5
CLIP_SAMPLES = MODEL_SAMPLE_RATE * CLIP_SECONDS
ONSET_DB = -40.0  # a sound starts at its first sample within 40 dB of its peak
PRE_ROLL_SAMPLES = MODEL_SAMPLE_RATE // 100  # keep 10 ms before the onset, so the attack is whole
DC_CUTOFF_HZ = 10.0  # ``remove_dc``'s corner: its one-pole slope takes 1 dB off 20 Hz, the lowest bass heard
DC_MEMORY_SECONDS = 0.25  # of ``remove_dc``'s average: its weights fall 136 dB in that time


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


def remove_dc(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono ``audio`` without what lies under ``DC_CUTOFF_HZ``: an offset, or one that follows the note.

    Nobody hears it, but it counts in a signal's RMS: some Vital patches play an offset as loud as
    their sound, which then set the loudness a preview was matched to and half of what a distance
    normalised. A one-pole high-pass: the audio less its causal one-pole average (applied by FFT).
    Causal, so nothing rings before an onset, and past a sound's end what it leaves dies within tens
    of ms (a zero-phase filter rang on there, and a tail measured 80 dB down grew longer).
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size == 0:
        return audio.astype(np.float32)
    audio = audio - np.mean(audio)  # the constant part exactly, so that the average starts from zero
    taps = min(audio.size, round(DC_MEMORY_SECONDS * sample_rate))
    size = _fast_fft_size(audio.size + taps)
    follows = np.fft.irfft(np.fft.rfft(audio, size) * _one_pole_average(size, sample_rate, taps), size)
    return (audio - follows[: audio.size]).astype(np.float32)


@lru_cache(maxsize=8)
def _one_pole_average(size: int, sample_rate: int, taps: int) -> np.ndarray:
    """The spectrum of ``remove_dc``'s causal average: the same for every render one comparison scores."""
    pole = np.exp(-2.0 * np.pi * DC_CUTOFF_HZ / sample_rate)
    return np.fft.rfft((1.0 - pole) * pole ** np.arange(taps), size)


def _fast_fft_size(samples: int) -> int:
    """The smallest 2^a 3^b 5^c at or above ``samples``: sizes pocketfft transforms fastest."""
    size = samples
    while True:
        rest = size
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 1


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
