"""Tests for converter.matching.distance: parity with auraloss and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from converter.matching.distance import (
    log_spectral_distance,
    mfcc_distance,
    mrstft_distance,
    prepare_target,
    similarity,
)

SAMPLE_RATES = (24000, 44100)


def _time(sample_rate: int, seconds: float) -> np.ndarray:
    return np.arange(int(sample_rate * seconds)) / sample_rate


def _sine(sample_rate: int, freq: float = 220.0, seconds: float = 0.5) -> np.ndarray:
    return np.sin(2 * np.pi * freq * _time(sample_rate, seconds))


def _saw(sample_rate: int, freq: float = 220.0, seconds: float = 0.5) -> np.ndarray:
    phase = (freq * _time(sample_rate, seconds)) % 1.0
    return 2.0 * phase - 1.0


def _noise(sample_rate: int, seed: int = 0, seconds: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(sample_rate * seconds))


def _one_pole_lowpass(x: np.ndarray, coefficient: float = 0.9) -> np.ndarray:
    y = np.empty_like(x)
    state = 0.0
    for i, sample in enumerate(x):
        state = coefficient * state + (1.0 - coefficient) * sample
        y[i] = state
    return y


def _decaying_tone(sample_rate: int, seconds: float) -> np.ndarray:
    t = _time(sample_rate, seconds)
    return np.sin(2 * np.pi * 440.0 * t) * np.exp(-3.0 * t)


def _pairs(sample_rate: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    noise = _noise(sample_rate)
    return {
        "sine vs saw": (_sine(sample_rate), _saw(sample_rate)),
        "noise vs filtered noise": (noise, _one_pole_lowpass(noise)),
        "decay vs shorter decay": (
            _decaying_tone(sample_rate, 0.5),
            0.3 * _decaying_tone(sample_rate, 0.3),
        ),
        "shorter decay vs decay": (
            _decaying_tone(sample_rate, 0.3),
            _decaying_tone(sample_rate, 0.5),
        ),
    }


def _normalise_and_pad(
    target: np.ndarray, estimate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    def normalise(x: np.ndarray) -> np.ndarray:
        return x / max(float(np.sqrt(np.mean(x**2))), 1e-8)

    length = max(target.size, estimate.size)
    return (
        np.pad(normalise(target), (0, length - target.size)),
        np.pad(normalise(estimate), (0, length - estimate.size)),
    )


@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
def test_mrstft_matches_auraloss(sample_rate: int) -> None:
    torch = pytest.importorskip("torch")
    auraloss = pytest.importorskip("auraloss")
    loss = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[1024, 2048, 8192],
        hop_sizes=[256, 512, 2048],
        win_lengths=[1024, 2048, 8192],
        scale="mel",
        n_bins=128,
        sample_rate=sample_rate,
        perceptual_weighting=True,
    )
    for name, (target, estimate) in _pairs(sample_rate).items():
        target_n, estimate_n = _normalise_and_pad(target, estimate)
        with torch.no_grad():
            expected = float(
                loss(
                    torch.tensor(estimate_n, dtype=torch.float32)[None, None],
                    torch.tensor(target_n, dtype=torch.float32)[None, None],
                )
            )
        ours = mrstft_distance(target, estimate, sample_rate)
        assert abs(ours - expected) <= 1e-3 * max(1.0, expected), (name, ours, expected)


@pytest.mark.parametrize(
    "distance", [mrstft_distance, log_spectral_distance, mfcc_distance]
)
def test_identity_and_loudness_invariance(distance) -> None:
    x = _saw(24000) * np.exp(-_time(24000, 0.5))
    assert abs(distance(x, x, 24000)) <= 1e-6
    assert abs(distance(x, 4.0 * x, 24000)) <= 1e-6
    assert abs(distance(4.0 * x, x, 24000)) <= 1e-6


@pytest.mark.parametrize(
    "distance", [mrstft_distance, log_spectral_distance, mfcc_distance]
)
def test_silence(distance) -> None:
    silence = np.zeros(24000)
    tone = _sine(24000)
    assert distance(silence, silence, 24000) == 0.0
    for target, estimate in [(silence, tone), (tone, silence)]:
        value = distance(target, estimate, 24000)
        assert np.isfinite(value) and value > 0.0


def test_unrelated_sounds_are_further_than_related_ones() -> None:
    saw = _saw(24000)
    near = mrstft_distance(saw, _saw(24000, freq=221.0), 24000)
    far = mrstft_distance(saw, _noise(24000), 24000)
    assert 0.0 < near < far


def test_short_signals_give_finite_distances() -> None:
    short = _sine(24000, seconds=0.002)
    assert np.isfinite(mrstft_distance(short, _saw(24000, seconds=0.003), 24000))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_input_raises(bad: float) -> None:
    x = _sine(24000)
    y = x.copy()
    y[100] = bad
    with pytest.raises(ValueError, match="estimate contains NaN or infinite"):
        mrstft_distance(x, y, 24000)
    with pytest.raises(ValueError, match="target contains NaN or infinite"):
        prepare_target(y, 24000)
    with pytest.raises(ValueError, match="NaN"):
        mfcc_distance(y, x, 24000)


def test_rejects_bad_shapes_and_rates() -> None:
    with pytest.raises(ValueError, match="1-D"):
        mrstft_distance(np.zeros((2, 100)), np.zeros(100), 24000)
    with pytest.raises(ValueError, match="empty"):
        mrstft_distance(np.zeros(0), np.zeros(100), 24000)
    with pytest.raises(ValueError, match="sample_rate"):
        mrstft_distance(np.zeros(100), np.zeros(100), 0)


def test_prepared_target_matches_function() -> None:
    target = _decaying_tone(24000, 0.5)
    prepared = prepare_target(target, 24000)
    for estimate in [_saw(24000), _saw(24000, seconds=0.25), _noise(24000, seconds=0.7), target]:
        assert prepared.distance(estimate) == pytest.approx(
            mrstft_distance(target, estimate, 24000), rel=1e-12, abs=1e-12
        )


def test_similarity_mapping() -> None:
    assert similarity(0.0) == 100.0
    distances = np.linspace(0.0, 50.0, 201)
    scores = [similarity(float(d)) for d in distances]
    assert all(0.0 <= s <= 100.0 for s in scores)
    assert all(a > b for a, b in zip(scores, scores[1:]))
    with pytest.raises(ValueError):
        similarity(float("nan"))
