"""Out-of-domain targets: real-instrument notes played by fluidsynth from a General MIDI soundfont.

Every other evaluation target is a Vital render, so a model can score well there by learning
Vital's own fingerprints. Sampled instruments (piano, guitar, brass...) are sounds Vital can only
approximate, which is what users will actually bring. The soundfont is a Debian package
(``timgm6mb-soundfont``), played through the ``fluidsynth`` program; each note is written as a
minimal standard MIDI file here, so no MIDI library is needed.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from converter.analysis.audio import to_model_rate
from training.frontend import prepare_clip

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
GM_PROGRAMS: dict[str, int] = {  # General MIDI program numbers, counted from 0
    "piano": 0,
    "electric piano": 4,
    "organ": 16,
    "guitar": 24,
    "bass": 33,
    "strings": 48,
    "brass": 61,
    "flute": 73,
}
PITCHES = (48, 60, 72)
NOTE_SECONDS = 1.5
MIDI_VELOCITY = 100
TAIL_SECONDS = 2.0  # silence kept in the MIDI file after note-off, so fluidsynth renders the release
RENDER_SAMPLE_RATE = 44100
PEAK = 0.9  # the dataset's clips are peak-normalised to this too
TICKS_PER_QUARTER = 480
MICROSECONDS_PER_QUARTER = 500_000  # 120 bpm: one quarter note is half a second


class FluidsynthMissing(RuntimeError):
    """The fluidsynth program or the soundfont is not installed."""


@dataclass(frozen=True)
class InstrumentNote:
    """One played note: a 5 s, 24 kHz mono clip from its onset, and how it was played."""

    name: str
    pitch: int
    velocity: float
    note_length: float
    audio: np.ndarray


def _variable_length(value: int) -> bytes:
    """MIDI's variable-length quantity: 7 bits per byte, most significant first."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(groups))


def midi_file(program: int, pitch: int, velocity: int, note_seconds: float,
              tail_seconds: float = TAIL_SECONDS) -> bytes:
    """A format-0 standard MIDI file playing one note on channel 1 with a General MIDI program."""
    for name, value in (("program", program), ("pitch", pitch), ("velocity", velocity)):
        if not 0 <= value <= 127:
            raise ValueError(f"{name} must be 0-127, got {value}")
    ticks_per_second = TICKS_PER_QUARTER * 1_000_000 / MICROSECONDS_PER_QUARTER
    note_ticks = max(1, round(note_seconds * ticks_per_second))
    tail_ticks = max(0, round(tail_seconds * ticks_per_second))
    events = [
        (0, bytes([0xFF, 0x51, 0x03]) + MICROSECONDS_PER_QUARTER.to_bytes(3, "big")),
        (0, bytes([0xC0, program])),
        (0, bytes([0x90, pitch, velocity])),
        (note_ticks, bytes([0x80, pitch, 0])),
        (tail_ticks, bytes([0xFF, 0x2F, 0x00])),
    ]
    track = b"".join(_variable_length(delta) + event for delta, event in events)
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def fluidsynth_program() -> str:
    """Path of the fluidsynth program, or FluidsynthMissing saying how to install it."""
    program = shutil.which("fluidsynth")
    if program is None:
        raise FluidsynthMissing("the out-of-domain set needs the fluidsynth program "
                                "(Debian: apt-get install fluidsynth timgm6mb-soundfont)")
    return program


def play(midi: bytes, soundfont: Path) -> np.ndarray:
    """Render a MIDI file with fluidsynth, dry (no reverb or chorus): (n, 2) float32 at 44.1 kHz."""
    program = fluidsynth_program()
    if not soundfont.is_file():
        raise FluidsynthMissing(f"soundfont {soundfont} not found (Debian: apt-get install timgm6mb-soundfont)")
    with tempfile.TemporaryDirectory(prefix="vinv-fluidsynth-") as folder:
        midi_path, wav_path = Path(folder, "note.mid"), Path(folder, "note.wav")
        midi_path.write_bytes(midi)
        command = [program, "-ni", "-g", "0.8", "-R", "0", "-C", "0", "-r", str(RENDER_SAMPLE_RATE),
                   "-F", str(wav_path), str(soundfont), str(midi_path)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0 or not wav_path.is_file():
            raise RuntimeError(f"fluidsynth failed ({result.returncode}): {result.stderr.strip()[-500:]}")
        audio, sample_rate = soundfile.read(wav_path, dtype="float32", always_2d=True)
    if sample_rate != RENDER_SAMPLE_RATE:
        raise RuntimeError(f"fluidsynth wrote {sample_rate} Hz audio, asked for {RENDER_SAMPLE_RATE}")
    return audio


def instrument_note(name: str, program: int, pitch: int, soundfont: Path = DEFAULT_SOUNDFONT) -> InstrumentNote:
    """One General MIDI note, trimmed to its onset and cut or padded to 5 s like every model input."""
    audio = play(midi_file(program, pitch, MIDI_VELOCITY, NOTE_SECONDS), soundfont)
    clip = prepare_clip(to_model_rate(audio, RENDER_SAMPLE_RATE))
    peak = float(np.abs(clip).max())
    if peak == 0.0:
        raise RuntimeError(f"fluidsynth rendered silence for {name} at pitch {pitch} from {soundfont}")
    return InstrumentNote(f"{name} {pitch}", pitch, MIDI_VELOCITY / 127, NOTE_SECONDS, clip * (PEAK / peak))


def instrument_notes(soundfont: Path = DEFAULT_SOUNDFONT, programs: dict[str, int] = GM_PROGRAMS,
                     pitches: tuple[int, ...] = PITCHES) -> list[InstrumentNote]:
    """Every program at every pitch: the out-of-domain evaluation set."""
    return [instrument_note(name, program, pitch, soundfont) for name, program in programs.items() for pitch in pitches]
