"""Reading the user's sound: any file soundfile opens, checked and mixed down to mono.

WAV, AIFF, FLAC, OGG and the other formats libsndfile knows are read at any sample rate, bit depth
and channel count. The file is read in blocks and mixed to mono as it goes, and only its first
``MAX_SECONDS`` are read, so a ten-minute or eight-channel 192 kHz file costs no more memory than
a short mono one. Every way a file can be unusable raises ``AudioFileError`` with a one-line reason.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from converter.analysis.audio import remove_dc

MAX_SECONDS = 30.0  # longer files are analysed from their first 30 s: the note must start in them
MIN_SECONDS = 0.01  # shorter than this holds no note worth matching
SILENT_PEAK = 1e-4  # -80 dBFS: below a few 16-bit steps there is nothing to hear
MAX_SAMPLE_RATE = 768_000
BLOCK_FRAMES = 65_536
SHORT_READ_TOLERANCE = 0.1  # seconds: compressed formats may estimate their length slightly

# libsndfile notes "data : 88200 (should be 20000)" when a file ends before its audio chunk does;
# streaming writers leave 0 or 0xFFFFFFFF there on purpose, which is not truncation.
_CHUNK_SIZE_MISMATCH = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZES = (0, 0xFFFFFFFF)
_OPENING_PREFIX = re.compile(r"^Error opening .*?>: ")  # soundfile names the file object first


class AudioFileError(ValueError):
    """A file that cannot be used as a sound; the message is one line, without the file name."""


@dataclass(frozen=True)
class InputAudio:
    """Mono float32 samples at the file's own rate (only the first ``MAX_SECONDS`` of the file), without
    what lies under 10 Hz (``remove_dc``)."""

    samples: np.ndarray
    sample_rate: int


def read_audio(path: str | os.PathLike[str]) -> InputAudio:
    """Read, check and mix down one audio file; raises ``AudioFileError`` saying why it is unusable."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise AudioFileError("empty file")
        with open(path, "rb") as handle, soundfile.SoundFile(handle) as sound:
            return _read(sound)
    except soundfile.LibsndfileError as error:
        if "Format not recognised" in str(error):
            raise AudioFileError("not an audio file (soundfile could not read it)") from None
        raise AudioFileError(f"damaged audio file ({_reason(error)})") from None
    except OSError as error:
        raise AudioFileError(f"cannot read the file ({error.strerror or error})") from None


def _read(sound: soundfile.SoundFile) -> InputAudio:
    sample_rate = int(sound.samplerate)
    if not 0 < sample_rate <= MAX_SAMPLE_RATE:
        raise AudioFileError(f"unsupported sample rate {sample_rate} Hz")
    truncated = _truncation(sound.extra_info)
    if truncated:
        raise AudioFileError(truncated)
    if sound.frames <= 0:
        raise AudioFileError("contains no audio")
    wanted = min(sound.frames, int(MAX_SECONDS * sample_rate))
    mono = np.empty(wanted, dtype=np.float32)
    filled = 0
    while filled < wanted:
        block = sound.read(min(BLOCK_FRAMES, wanted - filled), dtype="float32", always_2d=True)
        if len(block) == 0:
            break
        mono[filled:filled + len(block)] = block.mean(axis=1, dtype=np.float64)
        filled += len(block)
    if wanted - filled > SHORT_READ_TOLERANCE * sample_rate:
        missing = (wanted - filled) / sample_rate
        raise AudioFileError(f"truncated (the file ends {missing:.2f} s before its header says)")
    mono = mono[:filled]
    _check_samples(mono, sample_rate)
    mono = remove_dc(mono, sample_rate)  # an offset nobody hears would hide where the sound starts, and how loud
    if float(np.max(np.abs(mono))) < SILENT_PEAK:
        raise AudioFileError(f"silent (nothing above {20 * np.log10(SILENT_PEAK):.0f} dBFS)")
    return InputAudio(mono, sample_rate)


def _check_samples(mono: np.ndarray, sample_rate: int) -> None:
    if len(mono) < MIN_SECONDS * sample_rate:
        count = f"{len(mono)} sample{'s' if len(mono) != 1 else ''}"
        raise AudioFileError(f"too short ({count}; at least {MIN_SECONDS * 1000:.0f} ms needed)")
    if not np.all(np.isfinite(mono)):
        raise AudioFileError("contains NaN or infinite samples")


def _truncation(log: str) -> str | None:
    """Why libsndfile's parse log says the file stops before its audio does, or None."""
    for declared, actual in _CHUNK_SIZE_MISMATCH.findall(log):
        declared, actual = int(declared), int(actual)
        if declared not in _STREAMING_SIZES and actual < declared:
            return (f"truncated (its header promises {declared} bytes of audio, the file holds {actual}; "
                    "still being copied?)")
    return None


def _reason(error: soundfile.LibsndfileError) -> str:
    """libsndfile's own words, without the path soundfile puts in front of them."""
    text = _OPENING_PREFIX.sub("", " ".join(str(error).split()))
    return text.removeprefix("Error : ").rstrip(".") or type(error).__name__
