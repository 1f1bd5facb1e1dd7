"""What a recording adds to a sound Vital rendered clean, applied to cached features while training.

The dataset is rendered dry and silent around the note; the sounds users drop are recorded, with a
noise floor and a room. Features are cached once per dataset (training/features.py), so the
augmentation works on them rather than on audio: they are log power (``log(power + LOG_FLOOR)``,
training/frontend.py), so each effect is applied to the power and the log taken again.

- noise: a steady floor of equal power in every mel and CQT bin (pink-like, as the bins are
  spaced logarithmically), ``snr_db`` under the clip's mean bin power;
- room: an exponential power tail (the energy of a diffuse reverb) with a decay time of
  ``room_seconds`` (RT60) and ``room_wet`` of the dry power, convolved along time.

Gain needs nothing (the frontend normalises every clip) and a few cents of detune move the CQT less
than a tenth of a bin. Each clip draws its own effects; validation and checkpoint selection see
clean features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from converter.analysis.audio import MODEL_SAMPLE_RATE
from training.frontend import LOG_FLOOR, FrontendConfig


@dataclass(frozen=True)
class Augmentation:
    """How often and how strongly each effect is drawn."""

    noise_probability: float = 0.5
    snr_db: tuple[float, float] = (15.0, 45.0)
    room_probability: float = 0.4
    room_seconds: tuple[float, float] = (0.2, 1.5)
    room_wet: tuple[float, float] = (0.05, 0.6)
    hop_seconds: float = FrontendConfig().hop_length / MODEL_SAMPLE_RATE

    def __call__(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(batch, bins, frames) log-power features -> the same with each clip's draw applied."""
        batch, _, frames = features.shape
        power = (features.float().exp() - LOG_FLOOR).clamp_min(0.0)
        draws = torch.rand(batch, 4, generator=generator)

        room = draws[:, 0] < self.room_probability
        if room.any():
            rt60 = _between(draws[:, 1], self.room_seconds)
            wet = _between(torch.rand(batch, generator=generator), self.room_wet)
            lag = torch.arange(1, frames, dtype=torch.float32)
            decay = torch.pow(10.0, -6.0 * self.hop_seconds * lag[None, :] / rt60[:, None])  # -60 dB over RT60
            kernel = decay / decay.sum(dim=1, keepdim=True) * wet[:, None]
            tail = _causal_convolution(power, kernel)
            power = torch.where(room[:, None, None], power + tail, power)

        noise = draws[:, 2] < self.noise_probability
        if noise.any():
            floor = power.mean(dim=(1, 2)) * torch.pow(10.0, -_between(draws[:, 3], self.snr_db) / 10.0)
            power = power + torch.where(noise, floor, torch.zeros_like(floor))[:, None, None]
        return torch.log(power + LOG_FLOOR).to(features.dtype)


def _between(unit: torch.Tensor, span: tuple[float, float]) -> torch.Tensor:
    return span[0] + unit * (span[1] - span[0])


def _causal_convolution(power: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``power`` (batch, bins, frames) convolved along time with ``kernel`` (batch, frames - 1), which
    starts one frame after the sound: the tail only, cut to the clip."""
    frames = power.shape[-1]
    size = 2 * frames
    spectrum = torch.fft.rfft(power, n=size) * torch.fft.rfft(kernel, n=size)[:, None, :]
    direct = torch.fft.irfft(spectrum, n=size)[..., : frames - 1].clamp_min(0.0)
    return torch.nn.functional.pad(direct, (1, 0))
