"""The generated wavetable bank: its invariants, its Vital JSON, and how Vital actually plays it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import vita

from converter.vital.wavetables import (
    FRAME_SIZE,
    Wavetable,
    WavetableBank,
    bank_names,
    bank_table,
    decode_wave_data,
    default_bank,
    frames_from_vital,
)

SHARED = Path(__file__).parents[2] / "shared"
AUDIO_FILE_TABLE = SHARED / "wavetables" / "KimuraTaroFreeWavetables" / "AMPWM__AMPWM2.vitaltable"

SAMPLE_RATE = 44100
NOTE = 57  # A3
NOTE_HZ = 220.0
STEADY = slice(4410, 4410 + 16384)  # after the init patch's attack, well before the note ends


@pytest.fixture(scope="module")
def bank() -> WavetableBank:
    return default_bank()


def render_table(synth: vita.Synth, table_json: dict, frame: float = 0.0) -> np.ndarray:
    """A steady stretch of one note of the init patch with ``table_json`` as a plain oscillator 1."""
    synth.load_init_preset()
    preset = json.loads(synth.to_json())
    settings = preset["settings"]
    settings["wavetables"][0] = table_json
    settings.update(osc_1_random_phase=0.0, osc_1_unison_voices=1.0, osc_1_wave_frame=frame, filter_1_on=0.0)
    assert synth.load_json(json.dumps(preset))
    return synth.render(NOTE, 1.0, 1.0, 1.0)[0, STEADY].astype(np.float64)


def harmonic_levels(segment: np.ndarray, count: int) -> np.ndarray:
    """Peak magnitudes at the first ``count`` harmonics of the note (8x zero-padded Hann FFT)."""
    padded = 8 * len(segment)
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), padded))
    frequencies = np.fft.rfftfreq(padded, 1.0 / SAMPLE_RATE)
    return np.array([spectrum[np.abs(frequencies - k * NOTE_HZ) < NOTE_HZ / 4].max() for k in range(1, count + 1)])


def frame_harmonics(frame: np.ndarray, count: int) -> np.ndarray:
    return np.abs(np.fft.rfft(frame.astype(np.float64)))[1 : count + 1]


def assert_same_harmonics(rendered: np.ndarray, expected: np.ndarray, tolerance_db: float) -> None:
    """Levels relative to the strongest harmonic agree wherever both are within 40 dB of it."""
    rendered_db = 20 * np.log10(rendered / rendered.max() + 1e-12)
    expected_db = 20 * np.log10(expected / expected.max() + 1e-12)
    audible = (rendered_db > -40) & (expected_db > -40)
    assert audible.sum() >= 1
    np.testing.assert_allclose(rendered_db[audible], expected_db[audible], atol=tolerance_db)


def test_bank_is_large_with_unique_names(bank: WavetableBank) -> None:
    assert len(bank) >= 32
    assert len(set(bank.names)) == len(bank)
    assert all(bank.index(name) == i for i, name in enumerate(bank.names))


def test_first_tables_are_sine_and_saw(bank: WavetableBank) -> None:
    assert (bank[0].name, len(bank[0].frames)) == ("Sine", 1)
    assert (bank[1].name, len(bank[1].frames)) == ("Saw", 1)
    n = np.arange(1, 1001)
    saw = frame_harmonics(bank[1].frames[0], 1000)
    np.testing.assert_allclose(saw / saw[0], 1.0 / n, rtol=1e-3, atol=1e-6)


def test_frames_are_normalised_band_limited_cycles(bank: WavetableBank) -> None:
    for table in bank:
        frames = table.frames
        assert frames.dtype == np.float32 and frames.ndim == 2, table.name
        assert 1 <= len(frames) <= 16 and frames.shape[1] == FRAME_SIZE, table.name
        assert np.all(np.isfinite(frames)), table.name
        np.testing.assert_allclose(frames.mean(axis=1), 0.0, atol=1e-6, err_msg=table.name)
        np.testing.assert_allclose(np.abs(frames).max(axis=1), 1.0, atol=1e-6, err_msg=table.name)
        spectrum = np.abs(np.fft.rfft(frames.astype(np.float64), axis=1))
        assert spectrum[:, 1001:].max() < 1e-4 * spectrum.max(), f"{table.name} has content near Nyquist"


def test_bank_is_deterministic_and_named_without_computing_it(bank: WavetableBank) -> None:
    assert bank_names() == bank.names  # what the parameter table reads, without computing a frame
    rebuilt = [bank_table.__wrapped__(name) for name in bank_names()]
    for table, again in zip(bank, rebuilt, strict=True):
        assert table.frames.tobytes() == again.frames.tobytes(), table.name


def test_to_vital_round_trips(bank: WavetableBank) -> None:
    for table in bank:
        data = json.loads(json.dumps(table.to_vital()))
        assert data["name"] == table.name
        keyframes = data["groups"][0]["components"][0]["keyframes"]
        positions = [keyframe["position"] for keyframe in keyframes]
        assert all(isinstance(position, int) for position in positions)
        assert positions[0] == 0 and positions == sorted(positions)
        if len(positions) > 1:
            assert positions[-1] == 256
        decoded = np.stack([decode_wave_data(keyframe["wave_data"]) for keyframe in keyframes])
        assert np.array_equal(decoded, table.frames), table.name
        assert np.array_equal(frames_from_vital(data), table.frames), table.name


def test_vital_plays_sine_table_as_a_pure_tone(bank: WavetableBank, synth: vita.Synth) -> None:
    levels = harmonic_levels(render_table(synth, bank[0].to_vital()), 10)
    assert np.all(20 * np.log10(levels[1:] / levels[0]) < -60)


def test_vital_plays_saw_table_with_one_over_n_harmonics(bank: WavetableBank, synth: vita.Synth) -> None:
    levels = harmonic_levels(render_table(synth, bank[1].to_vital()), 8)
    n = np.arange(1, 9)
    np.testing.assert_allclose(20 * np.log10(levels / levels[0]), 20 * np.log10(1.0 / n), atol=0.5)


@pytest.mark.parametrize("name", ["Basic Shapes", "Vowels", "Bell"])
def test_vital_plays_each_keyframe_as_stored(bank: WavetableBank, synth: vita.Synth, name: str) -> None:
    table = bank[bank.index(name)]
    data = table.to_vital()
    for keyframe, frame in zip(data["groups"][0]["components"][0]["keyframes"], table.frames):
        rendered = harmonic_levels(render_table(synth, data, keyframe["position"]), 24)
        assert_same_harmonics(rendered, frame_harmonics(frame, 24), tolerance_db=0.5)


def test_wave_frame_position_sweeps_brightness(bank: WavetableBank, synth: vita.Synth) -> None:
    data = bank[bank.index("Bright Sweep")].to_vital()

    def centroid(frame: float) -> float:
        levels = harmonic_levels(render_table(synth, data, frame), 60)
        return float(np.sum(levels * np.arange(1, 61)) / np.sum(levels))

    dark, middle, bright = centroid(0.0), centroid(128.0), centroid(256.0)
    assert dark < 1.5 and dark < middle < bright


@pytest.mark.skipif(not AUDIO_FILE_TABLE.exists(), reason=f"third-party wavetables not present at {SHARED}")
def test_frames_from_vital_reads_audio_file_sources_as_vital_plays_them(synth: vita.Synth) -> None:
    data = json.loads(AUDIO_FILE_TABLE.read_text())
    frames = frames_from_vital(data)
    assert frames is not None and frames.shape == (2, FRAME_SIZE)
    assert np.all(np.isfinite(frames)) and np.abs(frames).max() > 0.1
    for position, frame in zip((0.0, 256.0), frames):
        rendered = harmonic_levels(render_table(synth, data, position), 24)
        assert_same_harmonics(rendered, frame_harmonics(frame, 24), tolerance_db=0.5)


def _wave_source(*keyframes: dict) -> dict:
    return {"groups": [{"components": [{"type": "Wave Source", "keyframes": list(keyframes)}]}]}


_GOOD_WAVE_DATA = base64.b64encode(np.zeros(FRAME_SIZE, "<f4").tobytes()).decode()


@pytest.mark.parametrize(
    "wavetable_json",
    [
        None,
        {},
        [],
        "groups",
        {"groups": 5},
        {"groups": [5]},
        {"groups": [{"components": None}]},
        {"groups": [{"components": [{"type": "Line Source", "keyframes": []}]}]},
        _wave_source(),
        _wave_source({"position": 0}),
        _wave_source({"position": 0, "wave_data": 12}),
        _wave_source({"position": 0, "wave_data": "not base64!"}),
        _wave_source({"position": 0, "wave_data": base64.b64encode(b"\0" * 100).decode()}),
        _wave_source({"position": 0, "wave_data": base64.b64encode(np.full(FRAME_SIZE, np.nan, "<f4")).decode()}),
        _wave_source({"position": "first", "wave_data": _GOOD_WAVE_DATA}, {"position": 1, "wave_data": ""}),
        {"groups": [{"components": [{"type": "Audio File Source", "audio_file": "%%", "window_size": 2048,
                                     "keyframes": [{"position": 0, "start_position": 0}]}]}]},
        {"groups": [{"components": [{"type": "Audio File Source", "audio_file": "AAAAAA==", "window_size": 0,
                                     "keyframes": [{"position": 0, "start_position": 0}]}]}]},
        {"groups": [{"components": [{"type": "Audio File Source", "audio_file": "AAAAAA==", "window_size": 1e-300,
                                     "fade_style": 3, "keyframes": [{"position": 0, "start_position": 1e300}]}]}]},
    ],
)
def test_frames_from_vital_returns_none_for_malformed_input(wavetable_json: object) -> None:
    assert frames_from_vital(wavetable_json) is None  # type: ignore[arg-type]


def test_frames_from_vital_skips_unreadable_components() -> None:
    line = {"type": "Line Source", "keyframes": [{"position": 0}]}
    wave = {"type": "Wave Source", "keyframes": [{"position": 0, "wave_data": _GOOD_WAVE_DATA}]}
    frames = frames_from_vital({"groups": [{"components": [line, wave]}]})
    assert frames is not None and frames.shape == (1, FRAME_SIZE)


def test_decode_wave_data_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        decode_wave_data(base64.b64encode(np.zeros(FRAME_SIZE - 1, "<f4").tobytes()).decode())


def test_wavetable_rejects_bad_frame_shapes() -> None:
    for frames in (np.zeros(FRAME_SIZE), np.zeros((1, 1024)), np.zeros((257, FRAME_SIZE)), np.zeros((0, FRAME_SIZE))):
        with pytest.raises(ValueError):
            Wavetable("bad", frames)


def test_nearest_maps_each_table_to_itself(bank: WavetableBank) -> None:
    assert [bank.nearest(table.frames) for table in bank] == list(range(len(bank)))


def test_nearest_ignores_phase_and_level_and_tolerates_noise(bank: WavetableBank) -> None:
    rng = np.random.default_rng(0)
    saw = bank[bank.index("Saw")].frames[0]
    noisy_saw = 0.3 * np.roll(saw, 700) + 0.01 * rng.standard_normal(FRAME_SIZE)
    assert bank.names[bank.nearest(noisy_saw[None, :])] == "Saw"
    sine = bank[bank.index("Sine")].frames
    assert bank.names[bank.nearest(-5.0 * np.roll(sine, 300, axis=1))] == "Sine"
