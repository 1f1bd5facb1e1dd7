"""Feature augmentation on the real frontend's features of rendered-like clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.augment import Augmentation
from training.frontend import CLIP_SAMPLES, SAMPLE_RATE, Frontend

HOP_SECONDS = Augmentation().hop_seconds


@pytest.fixture(scope="module")
def short_note() -> torch.Tensor:
    """Features of a 0.5 s saw-like note in a 5 s clip, then silence: log power, (1, bins, frames)."""
    t = torch.arange(CLIP_SAMPLES) / SAMPLE_RATE
    audio = sum(torch.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 20)) * (t < 0.5)
    with torch.no_grad():
        return Frontend()(audio[None].float())


def frame(seconds: float) -> int:
    return round(seconds / HOP_SECONDS)


def test_nothing_drawn_leaves_the_features_as_they_are(short_note):
    clean = Augmentation(noise_probability=0.0, room_probability=0.0)(short_note, torch.Generator().manual_seed(0))
    torch.testing.assert_close(clean, short_note, atol=1e-4, rtol=1e-4)


def test_a_room_leaves_a_tail_that_decays_and_lasts_longer_in_a_larger_room(short_note):
    def room(rt60: float) -> torch.Tensor:
        room = Augmentation(noise_probability=0.0, room_probability=1.0, room_seconds=(rt60, rt60), room_wet=(0.5, 0.5))
        return room(short_note, torch.Generator().manual_seed(0))[0]

    in_room = room(0.3)
    small, large, dry = in_room.mean(dim=0), room(1.5).mean(dim=0), short_note[0].mean(dim=0)
    after = frame(0.6)
    assert small[after] > dry[after] + 3.0  # log power: the room is heard after the note
    assert small[frame(0.7)] > small[frame(0.9)]  # and decays
    assert large[frame(1.2)] > small[frame(1.2)] + 1.0
    loud = short_note[0, :, frame(0.3)] > short_note[0, :, frame(0.3)].max() - 3.0
    torch.testing.assert_close(in_room[loud, frame(0.3)], short_note[0, loud, frame(0.3)], atol=0.5, rtol=0)


def test_noise_raises_the_quiet_bins_to_a_floor_and_spares_the_loud_ones(short_note):
    noisy = Augmentation(noise_probability=1.0, room_probability=0.0, snr_db=(30.0, 30.0))(
        short_note, torch.Generator().manual_seed(0))[0]
    silence = noisy[:, frame(2.0):]
    assert silence.std() < 0.05 and silence.mean() > short_note[0, :, frame(2.0):].mean() + 3.0
    loud = short_note[0, :, frame(0.2)] > short_note[0, :, frame(0.2)].max() - 3.0
    torch.testing.assert_close(noisy[loud, frame(0.2)], short_note[0, loud, frame(0.2)], atol=0.05, rtol=0)


def test_each_clip_draws_its_own_effects_repeatably(short_note):
    batch = short_note.repeat(8, 1, 1)
    augmentation = Augmentation()
    first = augmentation(batch, torch.Generator().manual_seed(5))
    again = augmentation(batch, torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again, atol=0, rtol=0)
    assert len({round(float(clip.mean()), 3) for clip in first}) > 2
