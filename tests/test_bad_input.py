"""Hostile and unusual inputs: a clear one-line error per file and nothing left behind, or a clean conversion."""

from __future__ import annotations

import errno
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_convert import write_vital_sound

from converter import convert as convert_module
from converter.analysis.input_audio import MAX_SECONDS
from converter.convert import ConversionError, convert

RATE = 44100


def tone(seconds: float = 0.5, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """A decaying 220 Hz tone, (frames, channels)."""
    t = np.arange(round(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-t / 0.3)
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def assert_fails_cleanly(path: Path, model, message: str, **options) -> None:
    """ConversionError naming the file, on one line, and the folder holds exactly what it held before."""
    before = sorted(os.listdir(path.parent))
    with pytest.raises(ConversionError) as caught:
        convert(path, model=model, **options)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"{path.name}: ")
    assert message in text
    assert sorted(os.listdir(path.parent)) == before


def assert_converts(path: Path, model) -> None:
    result = convert(path, model=model)
    assert result.preset_path.is_file() and result.preview_path.is_file()
    assert not [name for name in os.listdir(path.parent) if name.endswith(".vinv-tmp")]


def test_empty_file(tmp_path, tiny_model):
    path = tmp_path / "empty.wav"
    path.touch()
    assert_fails_cleanly(path, tiny_model, "empty file")


def test_missing_file(tmp_path, tiny_model):
    assert_fails_cleanly(tmp_path / "gone.wav", tiny_model, "cannot read the file")


def test_text_file_with_an_audio_name(tmp_path, tiny_model):
    path = tmp_path / "notes.wav"
    path.write_text("this is not a sound\n" * 20)
    assert_fails_cleanly(path, tiny_model, "not an audio file")


@pytest.mark.parametrize("kept", ["header", "half"])
def test_truncated_wav(tmp_path, tiny_model, kept):
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, tone(), RATE, subtype="PCM_16")
    data = whole.read_bytes()
    whole.unlink()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:44] if kept == "header" else data[: len(data) // 2 + 1])
    assert_fails_cleanly(path, tiny_model, "truncated")


def test_damaged_flac(tmp_path, tiny_model):
    whole = tmp_path / "whole.flac"
    soundfile.write(whole, tone(1.0), RATE, format="FLAC")
    data = whole.read_bytes()
    whole.unlink()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 2])
    assert_fails_cleanly(path, tiny_model, "damaged audio file")


def test_silence(tmp_path, tiny_model):
    path = tmp_path / "pad.wav"
    soundfile.write(path, np.zeros(RATE, np.float32), RATE)
    assert_fails_cleanly(path, tiny_model, "silent")


def test_a_constant_offset_is_silence(tmp_path, tiny_model):
    path = tmp_path / "offset.wav"
    soundfile.write(path, np.full(RATE, 0.3, np.float32), RATE)
    assert_fails_cleanly(path, tiny_model, "silent")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinite_samples(tmp_path, tiny_model, bad):
    audio = tone()
    audio[1000] = bad
    path = tmp_path / "x.wav"
    soundfile.write(path, audio, RATE, subtype="FLOAT")
    assert_fails_cleanly(path, tiny_model, "contains NaN or infinite samples")


def test_one_sample(tmp_path, tiny_model):
    path = tmp_path / "one.wav"
    soundfile.write(path, np.array([0.5], np.float32), RATE)
    assert_fails_cleanly(path, tiny_model, "too short (1 sample")


def test_ten_minutes_reads_only_the_start(tmp_path, tiny_model):
    rate, minutes = 8000, 10
    path = tmp_path / "long.wav"
    with soundfile.SoundFile(path, "w", rate, 1, "PCM_16") as sound:
        sound.write(tone(1.0, rate))
        for _ in range(minutes):
            sound.write(np.zeros((60 * rate, 1), np.float32))
    assert soundfile.info(path).duration > minutes * 60 > MAX_SECONDS
    tracemalloc.start()
    try:
        result = convert(path, model=tiny_model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024  # 10 min at 8 kHz is 19 MB as float32: never all of it at once
    assert result.note == 57 and result.preview_path.is_file()


def test_eight_channels(tmp_path, tiny_model):
    audio = np.zeros((RATE // 2, 8), np.float32)
    audio[:, [0, 3, 6]] = tone(channels=3)
    path = tmp_path / "surround.wav"
    soundfile.write(path, audio, RATE)
    assert_converts(path, tiny_model)


def test_192_khz(tmp_path, tiny_model):
    path = tmp_path / "hires.wav"
    soundfile.write(path, tone(rate=192_000), 192_000, subtype="PCM_24")
    assert_converts(path, tiny_model)


def test_eight_bit_unsigned(tmp_path, tiny_model):
    path = tmp_path / "lofi.wav"
    soundfile.write(path, tone(), RATE, subtype="PCM_U8")
    assert soundfile.info(path).subtype == "PCM_U8"
    assert_converts(path, tiny_model)


@pytest.mark.parametrize("name", ["my kick (final).wav", "bässe ☃ 低音.wav", " leading space.aiff"])
def test_names_with_spaces_and_unicode_work(tmp_path, tiny_model, name):
    path = tmp_path / name
    write_vital_sound(path, note_length=0.3)
    result = convert(path, model=tiny_model)
    stem = Path(name).stem
    assert result.preset_path.name == f"{stem}.vital" and result.preset_path.is_file()
    assert result.preview_path.name == f"{stem}.preview.wav" and result.preview_path.is_file()


def test_read_only_folder(tmp_path, tiny_model, read_only):
    path = tmp_path / "kick.wav"
    soundfile.write(path, tone(), RATE)
    with read_only(tmp_path):
        assert_fails_cleanly(path, tiny_model, f"cannot write to {tmp_path}")


def test_a_failed_preview_write_removes_the_preset(tmp_path, tiny_model, monkeypatch):
    path = tmp_path / "kick.wav"
    soundfile.write(path, tone(), RATE)

    def refuse(target, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(target))

    monkeypatch.setattr(convert_module, "atomic_write_bytes", refuse)
    assert_fails_cleanly(path, tiny_model, f"cannot write to {tmp_path} (Permission denied)")
