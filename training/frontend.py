"""The model's ears: a raw 24 kHz clip -> a stacked log-mel + log-CQT image.

The frontend is a module of the model, so ONNX export traces the very computation training used;
the feature cache runs this same module once per dataset. Everything here is built from plain
``torch.stft`` and ``conv1d`` so it exports at opset 17. The CQT uses nnAudio's own kernels
(``CQT1992v2`` with librosa normalisation, zero padding), cut into one short convolution per octave:
the same numbers at a fraction of the cost, because a high bin's kernel is mostly zeros.

The clip policy (``prepare_clip``, 5 s from 10 ms before the onset) lives in ``converter.analysis.audio`` so
training, export and the converter cut clips identically; ``model_clip`` hands a stored clip to the model
as the converter hands it an input.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from nnAudio.librosa_functions import get_mel as mel_filterbank
from nnAudio.utils import create_cqt_kernels
from torch import nn
from torch.nn import functional as F

from converter.analysis.audio import CLIP_SAMPLES, MODEL_SAMPLE_RATE, PRE_ROLL_SAMPLES, prepare_clip, remove_dc

__all__ = ["CLIP_SAMPLES", "PRE_ROLL_SAMPLES", "SAMPLE_RATE", "Frontend", "FrontendConfig", "model_clip",
           "normalise_clip", "prepare_clip"]

SAMPLE_RATE = MODEL_SAMPLE_RATE
NORMALISE_EPSILON = 1e-7  # MERT's feature extractor: (x - mean) / sqrt(var + 1e-7)
LOG_FLOOR = 1e-4  # ~80 dB of range, well above float32 rounding of the STFT/CQT sums (ONNX parity)


def model_clip(audio: np.ndarray) -> np.ndarray:
    """A 24 kHz clip (a dataset's render, as stored) as the converter hands the model an input: without
    what lies under 10 Hz (``read_audio`` removes it from every input) and cut by ``prepare_clip``. Some
    Vital patches play an offset as loud as their sound; the model never hears one at inference."""
    return prepare_clip(remove_dc(audio, SAMPLE_RATE))


def normalise_clip(audio: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit variance per clip, as MERT's feature extractor does."""
    mean = audio.mean(dim=-1, keepdim=True)
    variance = (audio - mean).pow(2).mean(dim=-1, keepdim=True)
    return (audio - mean) / torch.sqrt(variance + NORMALISE_EPSILON)


@dataclass(frozen=True)
class FrontendConfig:
    """Everything that decides the features; its dict keys the feature cache."""

    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 64
    mel_fmin: float = 20.0
    mel_fmax: float = 12000.0
    cqt_fmin: float = 32.70
    cqt_bins: int = 84
    bins_per_octave: int = 12

    @property
    def bins(self) -> int:
        return self.n_mels + self.cqt_bins

    @property
    def frames(self) -> int:
        return CLIP_SAMPLES // self.hop_length + 1

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class LogMel(nn.Module):
    """Log mel power spectrogram through ``torch.stft`` (exports as ONNX STFT)."""

    def __init__(self, config: FrontendConfig) -> None:
        super().__init__()
        self.n_fft, self.hop_length = config.n_fft, config.hop_length
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        filters = mel_filterbank(sr=SAMPLE_RATE, n_fft=config.n_fft, n_mels=config.n_mels,
                                 fmin=config.mel_fmin, fmax=config.mel_fmax, htk=False, norm=1)
        self.register_buffer("filters", torch.tensor(filters, dtype=torch.float32), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        padded = F.pad(audio.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2)).squeeze(1)
        with warnings.catch_warnings():  # real-valued output is what ONNX export (opset 17) supports
            warnings.simplefilter("ignore", UserWarning)
            spectrum = torch.stft(padded, self.n_fft, self.hop_length, window=self.window, center=False,
                                  return_complex=False)
        power = spectrum.pow(2).sum(dim=-1)
        return torch.log(torch.matmul(self.filters, power) + LOG_FLOOR)


class OctaveCQT(nn.Module):
    """Log CQT power, equal to nnAudio's ``CQT1992v2`` (constant padding) squared.

    nnAudio convolves every bin with a kernel as long as the lowest bin's; here each octave gets a
    convolution only as long as its own longest kernel, applied at the matching offset.
    """

    def __init__(self, config: FrontendConfig) -> None:
        super().__init__()
        quality = 1.0 / (2 ** (1 / config.bins_per_octave) - 1)
        kernels, width, lengths, _ = create_cqt_kernels(quality, SAMPLE_RATE, config.cqt_fmin, config.cqt_bins,
                                                        config.bins_per_octave, 1, "hann", None)
        self.hop_length, self.pad, self.frames = config.hop_length, width // 2, config.frames
        self.offsets: list[int] = []
        for number, first in enumerate(range(0, config.cqt_bins, config.bins_per_octave)):
            block = kernels[first:first + config.bins_per_octave]
            support = np.flatnonzero(np.abs(block).sum(axis=0) > 0)
            low, high = int(support[0]), int(support[-1]) + 1
            weight = np.concatenate([block.real[:, low:high], -block.imag[:, low:high]])
            self.register_buffer(f"kernel_{number}", torch.tensor(weight, dtype=torch.float32).unsqueeze(1),
                                 persistent=False)
            self.offsets.append(low)
        self.register_buffer("lengths", torch.as_tensor(lengths, dtype=torch.float32).view(-1, 1), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        padded = F.pad(audio.unsqueeze(1), (self.pad, self.pad))
        octaves = []
        for number, offset in enumerate(self.offsets):
            kernel = getattr(self, f"kernel_{number}")
            span = (self.frames - 1) * self.hop_length + kernel.shape[-1]
            response = F.conv1d(padded[..., offset:offset + span], kernel, stride=self.hop_length)
            real, imaginary = response.chunk(2, dim=1)
            octaves.append(real.pow(2) + imaginary.pow(2))
        return torch.log(torch.cat(octaves, dim=1) * self.lengths + LOG_FLOOR)


class Frontend(nn.Module):
    """(batch, CLIP_SAMPLES) waveform -> (batch, n_mels + cqt_bins, frames) log features, mel first."""

    def __init__(self, config: FrontendConfig | None = None) -> None:
        super().__init__()
        self.config = config or FrontendConfig()
        self.mel = LogMel(self.config)
        self.cqt = OctaveCQT(self.config)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        audio = normalise_clip(audio)
        return torch.cat([self.mel(audio), self.cqt(audio)], dim=1)
