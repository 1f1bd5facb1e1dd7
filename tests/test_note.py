"""Note detection on Vital's own renders, on drums and on noise."""

from __future__ import annotations

import numpy as np
import pytest

from converter.analysis.audio import MODEL_SAMPLE_RATE, find_onset, to_model_rate
from converter.analysis.note import DEFAULT_NOTE, MAX_LENGTH, MIN_LENGTH, Note, detect_note, note_length
from converter.vital.parameters import parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE, render
from converter.vital.wavetables import default_bank

SPACE = parameter_space()
RATE = MODEL_SAMPLE_RATE


def vital_note(table: str, pitch: int, note_length: float = 0.6) -> np.ndarray:
    """One note of Vital's init patch playing ``table``, mono at the model's rate."""
    vector = SPACE.default_vector()
    vector[SPACE.index("osc_1_wavetable")] = default_bank().index(table)
    audio = render(preset_from_vector(vector), pitch, 0.8, note_length, note_length + 0.4)
    return to_model_rate(audio, SAMPLE_RATE)


def with_noise(audio: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(audio.size).astype(np.float32)
    return audio + noise * np.sqrt(np.mean(audio**2)) * np.float32(10 ** (-snr_db / 20))


@pytest.mark.parametrize("table", ["Saw", "Sine"])
@pytest.mark.parametrize("pitch", [36, 48, 60, 72, 84])
def test_finds_the_note_vital_played(table, pitch):
    audio = vital_note(table, pitch)
    note = detect_note(audio[find_onset(audio):], RATE)
    assert note.pitched and note.pitch == pitch
    assert abs(note.cents) < 5
    noisy = with_noise(audio, snr_db=10.0)
    note = detect_note(noisy[find_onset(noisy):], RATE)
    assert note.pitched and note.pitch == pitch and abs(note.cents) < 15


def test_reads_cents_between_notes():
    seconds = np.arange(RATE) / RATE
    frequency = 440.0 * 2 ** (0.3 / 12)  # A4 (MIDI 69) plus 30 cents
    note = detect_note(np.sin(2 * np.pi * frequency * seconds), RATE)
    assert note.pitch == 69 and note.cents == pytest.approx(30, abs=2)


def test_a_kick_is_pitched_where_its_sweep_settles():
    seconds = np.arange(RATE) / RATE
    frequency = 50.0 + 100.0 * np.exp(-seconds / 0.03)  # 150 Hz dropping to 50 Hz (MIDI 31.35)
    kick = np.sin(2 * np.pi * np.cumsum(frequency) / RATE) * np.exp(-seconds / 0.3)
    note = detect_note(kick, RATE)
    assert note.pitched and note.pitch == 31
    assert 0.8 < note.length < 1.2  # the envelope is 30 dB down after 0.3 * ln(31.6) = 1.04 s


@pytest.mark.parametrize("colour", ["white", "brown", "hats"])
def test_noise_is_unpitched_and_plays_the_default_note(colour):
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(RATE)
    if colour == "brown":
        noise = np.cumsum(noise)
        noise -= noise.mean()
    if colour == "hats":
        noise = np.diff(noise, prepend=0.0) * np.exp(-np.arange(RATE) / (0.08 * RATE))
    note = detect_note(noise, RATE)
    assert not note.pitched
    assert (note.pitch, note.cents) == (DEFAULT_NOTE, 0.0)


def test_note_length_follows_the_envelope_and_is_clamped():
    tone = np.sin(2 * np.pi * 220 * np.arange(3 * RATE) / RATE)
    held = np.where(np.arange(tone.size) < 1.5 * RATE, tone, 0.0)
    assert note_length(held, RATE) == pytest.approx(1.5, abs=0.05)
    assert note_length(tone[:100], RATE) == MIN_LENGTH
    assert note_length(np.tile(tone, 3), RATE) == MAX_LENGTH
    assert note_length(np.zeros(RATE), RATE) == MIN_LENGTH


def test_onset_skips_leading_silence():
    audio = np.concatenate([np.zeros(1000), 1e-4 * np.ones(50), np.ones(10)])
    assert find_onset(audio) == 1050
    assert find_onset(np.zeros(10)) == 0


def test_too_short_to_hear_a_pitch_is_unpitched():
    click = np.sin(2 * np.pi * 440 * np.arange(200) / RATE)
    assert not detect_note(click, RATE).pitched


def test_note_names_follow_vital():
    assert Note(60, 0.0, True, 1.0, 1.0).name == "C3"
    assert Note(69, 0.0, True, 1.0, 1.0).name == "A3"
