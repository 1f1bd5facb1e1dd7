"""One sound file in, a Vital preset and its preview out: the converter both CLIs run.

``convert("kick.wav")`` writes ``kick.vital`` and ``kick.preview.wav`` beside the input (or into
``out_dir``). The steps, each a function that can be called and tested alone:

1. ``read_audio``: any file soundfile reads, mixed to mono; only its first 30 s are read, so a
   long recording is analysed from the note that starts there (see ``converter.input_audio``);
2. ``analyse``: the note's onset, pitch and length (``converter.note``), the model's 5 s clip
   and the 44.1 kHz target that previews are scored against;
3. ``predict``: the ONNX model's answer as a parameter vector, ``tune``-d so that playing the
   detected note sounds at the input's pitch, optionally improved by ``converter.refine``;
4. ``render_preview`` at the detected note and length, scored against the target, and
   ``match_loudness``: the preset's volume is set so the preview is as loud as the input;
5. ``write_outputs``: both files appear whole or not at all.

Every way a file can fail raises ``ConversionError`` with a one-line message that starts with the
file's name, and leaves no output behind. A missing or mismatched model raises ``ModelError``: that
is not the file's fault, and no other file would convert either.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import resampy
import soundfile

from converter.audio import MODEL_SAMPLE_RATE, PRE_ROLL_SAMPLES, find_onset, prepare_clip, to_model_rate
from converter.decode import decode_outputs
from converter.distance import prepare_target, similarity
from converter.files import atomic_write_bytes
from converter.input_audio import AudioFileError, InputAudio, read_audio
from converter.model import PresetModel
from converter.note import Note, detect_note
from converter.parameters import OSCILLATORS, ParameterSpace, parameter_space
from converter.preset import preset_from_vector, write_preset
from converter.refine import VELOCITY, refine, runner_up_starts
from converter.render import SAMPLE_RATE, TAIL_SECONDS, RenderError, render

ANALYSIS_SECONDS = 6.0  # of the input after the onset: the longest note (4.5 s) plus its tail
CANDIDATES = 8  # sampled alternatives asked of a model with a flow head, as refinement starts
SEED = 0
PREVIEW_SUBTYPE = "PCM_16"
PEAK_LIMIT = 0.99  # loudness matching never pushes the preview into clipping
VOLUME_RANGE_DB = (-60.0, 6.0)  # Vital's volume knob, kept where it is still audible and below its top
PRESET_SUFFIX, PREVIEW_SUFFIX = ".vital", ".preview.wav"


class ConversionError(ValueError):
    """A file that could not be converted; the message is one line and starts with the file's name."""


@dataclass(frozen=True)
class ConversionResult:
    """What one conversion wrote and how well the preview matches the input."""

    input_path: Path
    preset_path: Path
    preview_path: Path
    note: int  # MIDI note the preview plays (60 for unpitched sounds)
    cents: float  # the input's detune from ``note``, already tuned into the preset
    pitched: bool
    note_length: float  # seconds the key is held
    distance: float  # MR-STFT distance from the input to the preview: 0 is identical
    similarity: float  # the same as a 0-100 score
    refined: bool  # refinement found a better preset than the model's
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    """The note found in the input, and the input as the model and the scoring need it."""

    note: Note
    clip: np.ndarray  # (CLIP_SAMPLES,) 24 kHz, cut by prepare_clip: what the model hears
    target: np.ndarray  # 44.1 kHz mono from the onset, at the input's own level


def analyse(audio: InputAudio) -> Analysis:
    """Find the note and cut the input at its onset, for the model and for scoring."""
    rate = audio.sample_rate
    onset = find_onset(audio.samples)
    lead = min(onset, round(PRE_ROLL_SAMPLES * rate / MODEL_SAMPLE_RATE))
    segment = audio.samples[onset - lead : onset + round(ANALYSIS_SECONDS * rate)]
    at_model_rate = to_model_rate(segment, rate)
    at_vital_rate = segment
    if rate != SAMPLE_RATE:
        at_vital_rate = resampy.resample(segment, rate, SAMPLE_RATE, filter="kaiser_fast")
    note = detect_note(at_model_rate[round(lead * MODEL_SAMPLE_RATE / rate):], MODEL_SAMPLE_RATE)
    target = np.asarray(at_vital_rate[round(lead * SAMPLE_RATE / rate):], dtype=np.float32)
    return Analysis(note, prepare_clip(at_model_rate), target)


def tune(vector: np.ndarray, note: Note, space: ParameterSpace | None = None) -> np.ndarray:
    """Shift every oscillator by one interval so the lowest audible one sounds at the input's pitch
    when ``note.pitch`` is played, i.e. ``note.cents`` off it. Unpitched notes leave the vector as it is.

    The model hears pitch as part of the sound, so its oscillators may already carry a transpose or
    detune that the detected note includes. Moving all oscillators together keeps their intervals
    (octave layers, fifths, unison detunes) and puts the fundamental where the input has it.
    """
    space = space or parameter_space()
    vector = np.array(vector, dtype=np.float32)
    if not note.pitched:
        return vector

    def raw(name: str) -> float:
        return space[name].denormalise(float(vector[space.index(name)]))

    offsets = {n: raw(f"osc_{n}_transpose") + raw(f"osc_{n}_tune") for n in OSCILLATORS}
    levels = {n: raw(f"osc_{n}_level") * raw(f"osc_{n}_on") for n in OSCILLATORS}
    loudest = max(levels.values())
    if loudest <= 0.0:
        return vector
    reference = min(offsets[n] for n in OSCILLATORS if levels[n] >= 0.5 * loudest)
    shift = note.cents / 100.0 - reference
    for n in OSCILLATORS:
        transpose, tune_ = space[f"osc_{n}_transpose"], space[f"osc_{n}_tune"]
        total = offsets[n] + shift
        semitones = float(np.clip(round(total), transpose.low, transpose.high))
        vector[space.index(transpose.name)] = transpose.normalise(semitones)
        vector[space.index(tune_.name)] = tune_.normalise(total - semitones)
    return vector


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one sound, and the alternatives refinement starts from."""

    vector: np.ndarray
    outputs: np.ndarray  # raw model outputs: they rank the runner-up wavetables and filter models
    candidates: tuple[np.ndarray, ...] = ()  # sampled by the model's flow head, when it has one

    def starts(self, space: ParameterSpace | None = None) -> list[np.ndarray]:
        """Refinement's starting points: the answer first, then the candidates and runner-ups."""
        return [self.vector, *self.candidates, *runner_up_starts(self.outputs, self.vector, space)]


def predict(model: PresetModel, analysis: Analysis, *, candidates: int = 0,
            space: ParameterSpace | None = None) -> Prediction:
    """Run the model on the clip, ``tune`` its answer to the note, and ask for ``candidates`` sampled
    alternatives too (refinement starts from them)."""
    space = space or parameter_space()
    clips = analysis.clip[None, :]
    outputs = model.predict(clips)
    sampled = model.candidates(clips, candidates, SEED) if candidates else None
    return Prediction(
        vector=tune(decode_outputs(outputs, space)[0], analysis.note, space),
        outputs=outputs,
        candidates=() if sampled is None else tuple(tune(vector, analysis.note, space) for vector in sampled[0]),
    )


def render_preview(preset: dict, note: Note) -> np.ndarray:
    """Vital's stereo render of ``preset`` playing the detected note for its length, plus the tail."""
    return render(preset, note.pitch, VELOCITY, note.length, note.length + TAIL_SECONDS)


def score(target: np.ndarray, preview: np.ndarray) -> float:
    """MR-STFT distance from the input (from its onset) to the preview's mono mix, over the preview."""
    mono = preview.mean(axis=0)
    return prepare_target(target[: mono.size], SAMPLE_RATE).distance(mono)


@lru_cache(maxsize=1)
def _volume_offset_db() -> float:
    """Vital shows ``volume`` as sqrt(raw) + post_offset dB; read that offset from vita itself."""
    import vita

    details = vita.Synth().get_control_details("volume")
    if details.scale.name != "SquareRoot" or details.display_units != "dB":
        raise RuntimeError(f"vita's volume control changed scale ({details.scale}); loudness matching needs updating")
    return float(details.post_offset)


def match_loudness(preset: dict, preview: np.ndarray, target: np.ndarray) -> tuple[dict, np.ndarray]:
    """Set the preset's volume so its preview is as loud (RMS) as the input; returns both, adjusted.

    Vital's volume is a plain gain after everything else, so the preview is scaled rather than
    rendered again. The gain stays within ``VOLUME_RANGE_DB`` and never lifts the peak over
    ``PEAK_LIMIT``: a very quiet input gets a quiet preset, not a clipped one.
    """
    offset = _volume_offset_db()
    span = min(preview.shape[1], target.size)
    preview_rms = float(np.sqrt(np.mean(np.square(preview[:, :span], dtype=np.float64))))
    target_rms = float(np.sqrt(np.mean(np.square(target[:span], dtype=np.float64))))
    if preview_rms == 0.0 or target_rms == 0.0:
        return preset, preview
    current_db = float(np.sqrt(preset["settings"]["volume"])) + offset
    wanted_db = current_db + 20.0 * np.log10(target_rms / preview_rms)
    peak = float(np.max(np.abs(preview)))
    ceiling_db = current_db + 20.0 * np.log10(PEAK_LIMIT / peak)
    volume_db = float(np.clip(min(wanted_db, ceiling_db), *VOLUME_RANGE_DB))
    preset = {**preset, "settings": {**preset["settings"], "volume": (volume_db - offset) ** 2}}
    return preset, (preview * np.float32(10.0 ** ((volume_db - current_db) / 20.0))).astype(np.float32)


def describe(note: Note, distance: float, source: str) -> str:
    """The preset's comments: where it came from, how it is played, how well it matches."""
    played = (f"played at {note.name} {note.cents:+.0f} cents" if note.pitched
              else f"unpitched, played at {note.name}")
    return (f"Made by vinv from {source}: {played}, held {note.length:.2f} s. "
            f"Match {similarity(distance):.0f}/100 (MR-STFT distance {distance:.3f}).")


def write_outputs(preset: dict, preview: np.ndarray, preset_path: Path, preview_path: Path) -> None:
    """Write the preset, then the preview; if the preview fails the preset is removed again."""
    buffer = io.BytesIO()
    soundfile.write(buffer, preview.T, SAMPLE_RATE, format="WAV", subtype=PREVIEW_SUBTYPE)
    write_preset(preset, preset_path)
    try:
        atomic_write_bytes(preview_path, buffer.getvalue())
    except BaseException:
        preset_path.unlink(missing_ok=True)
        raise


@lru_cache(maxsize=4)
@lru_cache(maxsize=2)
def _shipped_model(threads: int | None) -> PresetModel:
    """Loaded once per process: a loop of convert() calls must not re-read the model each time."""
    return PresetModel.load(threads=threads)


def convert(
    path: str | os.PathLike[str],
    *,
    model: PresetModel | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    refine_seconds: float = 0.0,
    threads: int | None = None,
    overwrite: bool = True,
) -> ConversionResult:
    """Convert one audio file into ``<stem>.vital`` and ``<stem>.preview.wav``.

    ``model`` defaults to the shipped one, loaded once per process with ``threads`` onnxruntime
    threads. ``refine_seconds`` > 0 spends about that long searching for a better preset than the
    model's. Outputs go beside the input unless ``out_dir`` is given; with ``overwrite=False``
    existing outputs are an error.
    """
    started = time.perf_counter()
    path = Path(path)
    folder = Path(out_dir) if out_dir is not None else path.parent
    preset_path, preview_path = folder / f"{path.stem}{PRESET_SUFFIX}", folder / f"{path.stem}{PREVIEW_SUFFIX}"
    _check_destination(path, folder, (preset_path, preview_path), overwrite)
    model = model or _shipped_model(threads)
    space = parameter_space()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name], clock = now - clock, now

    try:
        audio = read_audio(path)
    except AudioFileError as error:
        raise ConversionError(f"{path.name}: {error}") from None
    lap("read")
    analysis = analyse(audio)
    note = analysis.note
    lap("analyse")
    prediction = predict(model, analysis, candidates=CANDIDATES if refine_seconds > 0 else 0, space=space)
    vector, refined = prediction.vector, False
    lap("model")
    if refine_seconds > 0:
        refinement = refine(analysis.target, prediction.starts(space), pitch=note.pitch, note_length=note.length,
                            seconds=refine_seconds, seed=SEED, velocity=VELOCITY, space=space)
        vector, refined = refinement.vector, refinement.improved
        lap("refine")
    preset = preset_from_vector(vector, name=path.stem, space=space)
    try:
        preview = render_preview(preset, note)
    except RenderError as error:
        raise ConversionError(f"{path.name}: {error}") from None
    lap("render")
    distance = score(analysis.target, preview)
    preset, preview = match_loudness(preset, preview, analysis.target)
    preset["comments"] = describe(note, distance, path.name)
    lap("score")
    try:
        write_outputs(preset, preview, preset_path, preview_path)
    except OSError as error:
        raise ConversionError(f"{path.name}: cannot write to {folder} ({error.strerror or error})") from None
    lap("write")
    timings["total"] = time.perf_counter() - started
    return ConversionResult(
        input_path=path,
        preset_path=preset_path,
        preview_path=preview_path,
        note=note.pitch,
        cents=note.cents,
        pitched=note.pitched,
        note_length=note.length,
        distance=distance,
        similarity=similarity(distance),
        refined=refined,
        timings=timings,
    )


def _check_destination(source: Path, folder: Path, outputs: tuple[Path, ...], overwrite: bool) -> None:
    """Fail before any work when the outputs could not be written."""
    if not folder.is_dir():
        raise ConversionError(f"{source.name}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConversionError(f"{source.name}: cannot write to {folder} (read-only folder)")
    if not overwrite:
        for output in outputs:
            if output.exists():
                raise ConversionError(f"{source.name}: {output.name} already exists (overwrite is off)")
