"""One sound file in, a Vital preset and its preview out: the converter both CLIs run.

``convert("kick.wav")`` writes ``kick.vital`` and ``kick.preview.wav`` beside the input (or into
``out_dir``). The steps, each a function that can be called and tested alone:

1. ``read_audio``: any file soundfile reads, mixed to mono; only its first 30 s are read, so a
   long recording is analysed from the note that starts there (see ``converter.analysis.input_audio``);
2. ``analyse``: the note's onset, pitch and length (``converter.analysis.note``), the model's 5 s clip
   and the 44.1 kHz target that previews are scored against;
3. ``build_candidates``: the resynthesis (``converter.matching.resynthesis``: wavetables made from the
   input itself), the ONNX model's patch (``predict``, ``tune``-d
   to the input's pitch) and their ``hybrid_variant``, as the mode allows; in ``patch`` mode also the
   model's patch with the input's own amp envelope (``converter.analysis.amp_envelope``) and the
   bank's tables nearest to the sound with that envelope (``converter.matching.bank_match``), also
   through the model's filters and effects (``matched_model_variants``);
4. ``rank_candidates``: each candidate and variant is rendered once at the detected note and length
   and scored against the target; the closest wins, and a resynthesis has its tables corrected once by
   what Vital played of them, with quieter residuals (``correct_best``); its render is the preview (with a
   refine budget the winner is improved further: a resynthesis's tables by more rounds of
   ``converter.matching.resynthesis.correction``, then its knobs by ``converter.matching.refine``), and
   ``match_loudness`` sets the preset's volume so the preview is as loud as the input;
5. ``write_outputs``: both files appear whole or not at all; variations (``distinct_alternatives``: the
   closest patch of each other kind, the bank's tables included) go to ``<stem>.alt-N.vital``.

Every way a file can fail raises ``ConversionError`` with a one-line message that starts with the
file's name, and leaves no output behind. A missing or mismatched model raises ``ModelError``: that
is not the file's fault, and no other file would convert either.
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

from converter.analysis.amp_envelope import AmpEnvelope, measure_amp_envelope
from converter.analysis.audio import (
    MODEL_SAMPLE_RATE,
    PRE_ROLL_SAMPLES,
    find_onset,
    prepare_clip,
    resample,
    to_model_rate,
)
from converter.analysis.input_audio import AudioFileError, InputAudio, read_audio
from converter.analysis.note import Note, detect_note, midi_to_hz
from converter.files import atomic_write_bytes
from converter.matching.bank_match import KEYFRAMES as MATCH_KEYFRAMES
from converter.matching.bank_match import matched_vectors
from converter.matching.decode import decode_outputs, runner_up_vectors
from converter.matching.distance import similarity
from converter.matching.model import PresetModel
from converter.matching.refine import VELOCITY, refine
from converter.matching.resynthesis import (
    Resynthesis,
    analyse_for_resynthesis,
    correct_resynthesis,
    residual_variants,
    resynthesis_preset,
)
from converter.matching.resynthesis.correction import Player
from converter.matching.scoring import Comparison
from converter.matching.tuning import pitch_offsets, shift_oscillators
from converter.vital.parameters import EFFECT_KNOBS, ParameterSpace, control, parameter_space
from converter.vital.preset import preset_from_vector, write_preset
from converter.vital.render import SAMPLE_RATE, TAIL_SECONDS, RenderError, RenderSession, lent_session

ANALYSIS_SECONDS = 6.0  # of the input after the onset: the longest note (4.5 s) plus its tail
CANDIDATES = 8  # sampled alternatives asked of a model with a flow head when refining in patch mode
SEED = 0
# 24-bit: a 16-bit preview adds a noise floor at -96 dBFS that cuts quiet tails and measured 20 % further
# from the input (median, held-out notes and presets) than the render it holds.
PREVIEW_SUBTYPE = "PCM_24"
PEAK_LIMIT = 0.99  # loudness matching never pushes the preview into clipping
QUIETEST_VOLUME_DB = -60.0  # loudness matching keeps Vital's volume where it is still audible
PRESET_SUFFIX, PREVIEW_SUFFIX = ".vital", ".preview.wav"
MODES = ("resynth", "best", "patch")  # the first is the default; the others ask the model too
RENDER_THREADS = 2
# Rounds of table correction (``correct_best``) every conversion plays on a resynthesis: one took the default
# 23-29 % closer per held-out source for about a quarter more time a file (README); ``--refine`` plays more.
# With none, the quieter residuals are ranked on the measured tables instead, the default until 2026-12-07.
CORRECTION_ROUNDS = 1
METHOD_NAMES = {
    "resynth": "resynthesis: wavetables made from the sound itself",
    "patch": "the model's patch on vinv's own wavetables",
    "hybrid": "resynthesis through the model's filters and effects",
    "matched": "vinv's own wavetable nearest to the sound, with its amp envelope",
    "matched-model": "vinv's own wavetable nearest to the sound, through the model's filters or effects",
}
# The parts of the model's patch that are turned in place on another candidate's engine.
FILTER_PREFIXES, NOISE_PREFIXES = ("filter_",), ("sample_",)
EFFECT_PREFIXES = ("reverb_", "delay_", "chorus_", "flanger_", "phaser_", "distortion_", "compressor_", "eq_")
# What a hybrid takes from the model's patch; the rest (oscillators, sweep, pitch, amp envelope) is the resynthesis.
HYBRID_PREFIXES = FILTER_PREFIXES + NOISE_PREFIXES + EFFECT_PREFIXES


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
    refined: bool  # refinement found a better preset than the chosen candidate
    method: str = "patch"  # which candidate won: a key of METHOD_NAMES
    summary: str = ""  # the settings that matter most, as in the preset's comments
    variations: tuple[Variation, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Variation:
    """Another kind of patch for the sound, written beside the preset as ``<stem>.alt-N.vital``."""

    preset_path: Path
    method: str
    distance: float
    similarity: float


@dataclass(frozen=True)
class Analysis:
    """The note found in the input, and the input as the model and the scoring need it."""

    note: Note
    clip: np.ndarray  # (CLIP_SAMPLES,) 24 kHz, cut by prepare_clip: what the model hears
    target: np.ndarray  # 44.1 kHz mono from the onset, at the input's own level (without DC: read_audio)
    comparison: Comparison  # the target prepared once for every distance (``converter.matching.scoring``)


def analyse(audio: InputAudio) -> Analysis:
    """Find the note and cut the input at its onset, for the model and for scoring."""
    rate = audio.sample_rate
    onset = find_onset(audio.samples)
    lead = min(onset, round(PRE_ROLL_SAMPLES * rate / MODEL_SAMPLE_RATE))
    segment = audio.samples[onset - lead : onset + round(ANALYSIS_SECONDS * rate)]
    at_model_rate = to_model_rate(segment, rate)
    at_vital_rate = resample(segment, rate, SAMPLE_RATE)
    note = detect_note(at_model_rate[round(lead * MODEL_SAMPLE_RATE / rate):], MODEL_SAMPLE_RATE)
    target = np.asarray(at_vital_rate[round(lead * SAMPLE_RATE / rate):], dtype=np.float32)
    return Analysis(note, prepare_clip(at_model_rate), target, Comparison(target, SAMPLE_RATE, note.length))


def tune(vector: np.ndarray, note: Note, space: ParameterSpace | None = None) -> np.ndarray:
    """Shift every oscillator by one interval so the lowest audible one sounds at the input's pitch
    when ``note.pitch`` is played, i.e. ``note.cents`` off it. Unpitched notes leave the vector as it is.

    The model hears pitch as part of the sound, so its oscillators may already carry a transpose or
    detune that the detected note includes. Moving all oscillators together keeps their intervals
    (octave layers, fifths, unison detunes) and puts the fundamental where the input has it.
    """
    vector = np.array(vector, dtype=np.float32)
    if not note.pitched:
        return vector
    shift = note.cents / 100.0 - pitch_offsets(vector, space)
    return shift_oscillators(vector, shift, space)[0]


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one sound, and its alternatives."""

    vector: np.ndarray
    outputs: np.ndarray  # raw model outputs: they rank the runner-up wavetables and filter models
    candidates: tuple[np.ndarray, ...] = ()  # sampled by the model's flow head, when it has one

    def runner_ups(self, space: ParameterSpace | None = None) -> list[np.ndarray]:
        """The answer with the model's second choices of wavetable and filter model swapped in."""
        return runner_up_vectors(self.outputs, self.vector, space)


def predict(model: PresetModel, analysis: Analysis, *, candidates: int = 0,
            space: ParameterSpace | None = None) -> Prediction:
    """Run the model on the clip, ``tune`` its answer to the note, and ask for ``candidates`` sampled
    alternatives too."""
    space = space or parameter_space()
    clips = analysis.clip[None, :]
    outputs = model.predict(clips)
    sampled = model.candidates(clips, candidates, SEED) if candidates else None
    return Prediction(
        vector=tune(decode_outputs(outputs, space)[0], analysis.note, space),
        outputs=outputs,
        candidates=() if sampled is None else tuple(tune(vector, analysis.note, space) for vector in sampled[0]),
    )


@dataclass(frozen=True)
class Variant:
    """Knobs worth turning on a loaded candidate (raw values by control name), and the method (a key of
    ``METHOD_NAMES``) the result counts as."""

    method: str
    knobs: dict[str, float]


@dataclass(frozen=True)
class Candidate:
    """One patch the converter may answer with, how it was made (a key of ``METHOD_NAMES``), and knob
    settings worth trying on it too: each of ``variants`` is a candidate of its own, played on the
    same loaded engine (``RenderSession``), which costs a render instead of a load."""

    method: str
    preset: dict
    variants: tuple[Variant, ...] = ()
    resynthesis: Resynthesis | None = None  # what a resynthesis's tables were made from: a refinement corrects them

    def with_variant(self, variant: Variant) -> Candidate:
        """The candidate ``variant`` makes of this one: its knobs set in the preset, its method."""
        return Candidate(variant.method, with_knobs(self.preset, variant.knobs), resynthesis=self.resynthesis)


def with_knobs(preset: dict, knobs: dict[str, float]) -> dict:
    """A copy of ``preset`` with ``knobs`` (raw values by control name) set."""
    return {**preset, "settings": {**preset["settings"], **knobs}}


@dataclass(frozen=True)
class ScoredCandidate:
    """A candidate with its preview at the detected note and that preview's distance to the input."""

    candidate: Candidate
    preview: np.ndarray
    distance: float
    fresh: bool = True  # the preview is what a fresh engine plays (``RenderSession.plays_as_fresh``)


def model_parts(patch: dict, prefixes: tuple[str, ...], method: str) -> Variant:
    """The knobs of the model's ``patch`` whose names start with ``prefixes``, to be turned on another
    candidate's loaded engine; with its filters, every oscillator goes where the model sends its first.
    The model's modulation routes stay out, so such a variant costs a render rather than a load."""
    model = patch["settings"]
    knobs = {key: value for key, value in model.items()
             if key.startswith(prefixes) and not isinstance(value, (list, dict))}
    if set(FILTER_PREFIXES) <= set(prefixes):
        knobs.update({f"osc_{osc}_destination": model["osc_1_destination"] for osc in (1, 2, 3)})
    return Variant(method, knobs)


def hybrid_variant(patch: dict) -> Variant:
    """The resynthesis through the model's filters, noise and effects, turned on the resynthesis's loaded
    engine (a render instead of a load of its wavetables, ~0.4 s)."""
    return model_parts(patch, HYBRID_PREFIXES, "hybrid")


def matched_model_variants(patch: dict) -> tuple[Variant, ...]:
    """A matched patch through the model's filters, through its effects, and through both with its noise.

    A matched patch is one dry table with the input's amp envelope, so what the model hears of filters
    and effects has nothing to double (unlike on a resynthesis, whose tables carry them): on held-out
    sounds these won 20 of 66 and brought ``patch`` 4 % closer on instrument notes and 5 % on public
    presets (README); the filters or the effects alone won most, but without the third, instrument
    notes measured level. The filters play first, so no effect's tail reaches a variant without effects."""
    return tuple(model_parts(patch, prefixes, "matched-model")
                 for prefixes in (FILTER_PREFIXES, EFFECT_PREFIXES, HYBRID_PREFIXES))


def with_amp_envelope(preset: dict, envelope: AmpEnvelope) -> dict:
    """A copy of ``preset`` whose amp envelope (env 1) is ``envelope``; a release that could not be
    heard stays as it was. The model hears loudness contours worst of all it predicts (``vinv-evaluate
    --oracle``), and the input shows them plainly."""
    settings = {**preset["settings"], "env_1_sustain": envelope.sustain}
    for stage in ("attack", "decay", "release"):
        seconds = getattr(envelope, stage)
        if seconds is not None:
            knob = control(f"env_1_{stage}")
            settings[f"env_1_{stage}"] = knob.raw_from_unit(float(np.clip(seconds, *knob.unit_range)))
    return {**preset, "settings": settings}


def build_candidates(
    analysis: Analysis, model: PresetModel | None, mode: str, *, name: str = "vinv", samples: int = 0,
    runner_ups: bool = False, quieter_residuals: bool = False, space: ParameterSpace | None = None,
) -> list[Candidate]:
    """The patches ``mode`` allows, best guess first: the resynthesis (in ``best`` with the hybrid as its
    variant; with ``quieter_residuals`` also its quieter residuals on the measured tables, the choice where
    no correction round follows, which otherwise plays them on its corrected tables), the model's patch
    (in ``patch`` mode also with the input's amp envelope), then ``samples`` of the model's flow samples
    and, with ``runner_ups``, its answer with its second-choice wavetable or filter model; in ``patch``
    mode last the ``matched_candidates``, with the model's filters and effects as variants."""
    _check_mode(mode)
    space = space or parameter_space()
    candidates: list[Candidate] = []
    measurements: list[Resynthesis] = []
    asks_model = mode in ("best", "patch") and model is not None
    with ThreadPoolExecutor(1) as pool:  # onnxruntime lets go of Python's lock: the model runs beside the analysis
        predicted = pool.submit(predict, model, analysis, candidates=samples, space=space) if asks_model else None
        if mode in ("best", "resynth"):
            measurements = analyse_for_resynthesis(analysis.target, SAMPLE_RATE, analysis.note)
        prediction = predicted.result() if predicted is not None else None
    # The input's amp envelope and its match in the bank are measured only where used: the default never is.
    envelope = measure_amp_envelope(analysis.target, SAMPLE_RATE, analysis.note.length) if mode == "patch" else None
    patch = preset_from_vector(prediction.vector, name=name, space=space) if prediction is not None else None
    for k, measured in enumerate(measurements):
        preset = resynthesis_preset(measured, name=name)
        quieter = tuple(Variant("resynth", knobs) for knobs in residual_variants(preset)) if quieter_residuals else ()
        # The hybrid plays last on the first resynthesis's engine: its effects' tails reach no other variant.
        hybrid = (hybrid_variant(patch),) if patch is not None and k == 0 else ()
        candidates.append(Candidate("resynth", preset, quieter + hybrid, measured))
    if prediction is not None:
        candidates.append(Candidate("patch", patch))
        if envelope is not None:
            candidates.append(Candidate("patch", with_amp_envelope(patch, envelope)))
        alternatives = [*prediction.candidates, *(prediction.runner_ups(space) if runner_ups else ())]
        candidates += [Candidate("patch", preset_from_vector(vector, name=name, space=space))
                       for vector in alternatives]
    if envelope is not None:
        candidates += matched_candidates(analysis, envelope, patch, name=name, space=space)
    return candidates


def matched_candidates(analysis: Analysis, envelope: AmpEnvelope, patch: dict | None = None, *, name: str = "vinv",
                       space: ParameterSpace | None = None) -> list[Candidate]:
    """The bank's tables nearest to the sound, with its amp ``envelope`` (``converter.matching.bank_match``):
    editable classic-synth patches, each with the model's filters and effects as variants when there is a
    model's ``patch``."""
    space = space or parameter_space()
    measurement = analyse_for_resynthesis(analysis.target, SAMPLE_RATE, analysis.note, MATCH_KEYFRAMES)[0]
    with_model = matched_model_variants(patch) if patch is not None else ()
    matches = [with_amp_envelope(preset_from_vector(tune(vector, analysis.note, space), name=name, space=space),
                                 envelope) for vector in matched_vectors(measurement, space=space)]
    played = [matched["settings"] for matched in matches]
    return [Candidate("matched", matched, _new_variants(with_model, matched, played)) for matched in matches]


def rank_candidates(candidates: list[Candidate], analysis: Analysis) -> list[ScoredCandidate]:
    """Render every candidate and its variants once at the detected note and sort them, closest to
    the input first.

    Each candidate is loaded once; its variants play on the same engine, which sounds exactly like
    ``render_preview`` for a preset whose last note has died away (``RenderSession``), the chorus,
    flanger and reverb aside: a closest candidate that played with one of them is played again on a
    fresh engine. Candidates render ``RENDER_THREADS`` at a time (Vital lets go of Python's lock while
    it loads and plays, so a single dropped file converts about a third faster). A candidate Vital
    cannot play is dropped; if none can, the first one's RenderError is raised.
    """
    def attempt(candidate: Candidate) -> list[ScoredCandidate] | RenderError:
        try:
            with preview_session(candidate.preset, analysis.note) as session:
                scored = []
                for variant in (Variant(candidate.method, {}), *candidate.variants):
                    fresh = session.plays_as_fresh(variant.knobs)
                    preview = session.render(variant.knobs)
                    distance = score(analysis, preview)
                    scored.append(ScoredCandidate(candidate.with_variant(variant), preview, distance, fresh))
        except RenderError as error:
            return error
        return scored

    with ThreadPoolExecutor(RENDER_THREADS) as pool:
        outcomes = list(pool.map(attempt, candidates))
    scored = [entry for outcome in outcomes if not isinstance(outcome, RenderError) for entry in outcome]
    if not scored:
        raise next((outcome for outcome in outcomes if isinstance(outcome, RenderError)),
                   RenderError("no candidate to render"))
    ranked = sorted(scored, key=lambda entry: entry.distance)
    while not ranked[0].fresh:  # the preview must be what the preset plays: the closest is played again, fresh
        preview = render_preview(ranked[0].candidate.preset, analysis.note)
        ranked[0] = ScoredCandidate(ranked[0].candidate, preview, score(analysis, preview))
        ranked.sort(key=lambda entry: entry.distance)
    return ranked


def refine_best(best: ScoredCandidate, analysis: Analysis, *, seconds: float, max_renders: int | None = None,
                space: ParameterSpace | None = None) -> tuple[ScoredCandidate, bool]:
    """Spend ``seconds`` (or ``max_renders``, whichever ends first; a correction round counts as one) on a
    closer version of the closest candidate; a resynthesis first has its tables corrected by what Vital
    plays of them (``correct_best``), then whatever time is left searches its knobs
    (``converter.matching.refine``). Every answer is rendered fresh and scored like every candidate, and
    kept only if closer."""
    started = time.perf_counter()
    refined, start_cost = False, 0.0
    if best.candidate.resynthesis is not None:
        corrected, rounds = correct_best(best, analysis, seconds=seconds, max_rounds=max_renders)
        best, refined = corrected, corrected is not best
        max_renders = None if max_renders is None else max_renders - rounds
        start_cost = (time.perf_counter() - started) / max(rounds, 1)  # a round is a load and renders, as the start
    left = started + seconds - time.perf_counter()
    if left <= start_cost or max_renders == 0:  # the knob search could not get past its start
        return best, refined
    note = analysis.note
    try:
        refinement = refine(analysis.comparison, best.candidate.preset, pitch=note.pitch, note_length=note.length,
                            seconds=left, seed=SEED, velocity=VELOCITY, max_renders=max_renders, space=space)
        if not refinement.improved:
            return best, refined
        preview = render_preview(refinement.preset, note)
    except RenderError:
        return best, refined
    distance = score(analysis, preview)
    if distance >= best.distance:
        return best, refined
    candidate = Candidate(best.candidate.method, refinement.preset, resynthesis=best.candidate.resynthesis)
    return ScoredCandidate(candidate, preview, distance), True


def correct_best(best: ScoredCandidate, analysis: Analysis, *, seconds: float,
                 max_rounds: int | None = None) -> tuple[ScoredCandidate, int]:
    """A closest candidate that is a resynthesis with its tables corrected by what Vital plays of them, for
    about ``seconds`` (``correct_resynthesis``), each round also with quieter residuals: the closer of the
    two, and the rounds it took."""
    candidate = best.candidate
    correction = correct_resynthesis(candidate.resynthesis, candidate.preset, best.preview, best.distance,
                                     analysis.comparison, correction_player(analysis.note),
                                     seconds=seconds, max_rounds=max_rounds)
    if correction.distance >= best.distance:
        return best, correction.rounds
    corrected = Candidate(candidate.method, correction.preset, resynthesis=correction.resynthesis)
    return ScoredCandidate(corrected, correction.preview, correction.distance), correction.rounds


def correction_player(note: Note) -> Player:
    """Plays a corrected resynthesis as previews are played, and its quieter residuals
    (``residual_variants``): the balance of harmonics and residual is chosen on the corrected tables.
    Choosing it there, instead of on the measured ones before a round, came as close on held-out notes and
    presets at two renders fewer (README). The ranking's engine plays the rounds while it plays as a fresh
    one (``lent_session``)."""
    def play(preset: dict) -> list[tuple[dict, np.ndarray]]:
        with preview_session(preset, note) as session:
            played = [(preset, session.render())]
            for knobs in residual_variants(preset):
                if session.plays_as_fresh(knobs):
                    played.append((with_knobs(preset, knobs), session.render(knobs)))
        return played

    return play


def preview_session(preset: dict, note: Note) -> AbstractContextManager[RenderSession]:
    """``preset`` loaded to play the detected note for its length, plus the tail, as previews are played,
    on an engine that plays as a fresh one (``lent_session``)."""
    return lent_session(preset, pitch=note.pitch, velocity=VELOCITY, note_length=note.length,
                        duration=note.length + TAIL_SECONDS)


def render_preview(preset: dict, note: Note) -> np.ndarray:
    """Vital's stereo render of ``preset`` playing the detected note for its length, plus the tail."""
    with preview_session(preset, note) as session:
        return session.render()


def score(analysis: Analysis, preview: np.ndarray) -> float:
    """Distance from the input to a 44.1 kHz preview, as every part of vinv compares
    (``converter.matching.scoring``)."""
    return analysis.comparison.distance(preview, SAMPLE_RATE)


def match_loudness(preset: dict, preview: np.ndarray, target: np.ndarray) -> tuple[dict, np.ndarray]:
    """Set the preset's volume so its preview is as loud (RMS) as the input; returns both, adjusted.

    Vital's volume is a plain gain after everything else, so the preview is scaled rather than
    rendered again. The gain stays between ``QUIETEST_VOLUME_DB`` and the knob's top (its dB curve is
    the parameter table's) and never lifts the peak over ``PEAK_LIMIT``: a very quiet input gets a
    quiet preset, not a clipped one.
    """
    volume = control("volume")
    span = min(preview.shape[1], target.size)
    preview_rms = float(np.sqrt(np.mean(np.square(preview[:, :span], dtype=np.float64))))
    target_rms = float(np.sqrt(np.mean(np.square(target[:span], dtype=np.float64))))
    if preview_rms == 0.0 or target_rms == 0.0:
        return preset, preview
    current_db = volume.unit_from_raw(preset["settings"]["volume"])
    wanted_db = current_db + 20.0 * np.log10(target_rms / preview_rms)
    peak = float(np.max(np.abs(preview)))
    ceiling_db = current_db + 20.0 * np.log10(PEAK_LIMIT / peak)
    volume_db = float(np.clip(min(wanted_db, ceiling_db), QUIETEST_VOLUME_DB, volume.unit_range[1]))
    preset = {**preset, "settings": {**preset["settings"], "volume": volume.raw_from_unit(volume_db)}}
    return preset, (preview * np.float32(10.0 ** ((volume_db - current_db) / 20.0))).astype(np.float32)


def describe(note: Note, distance: float, source: str, method: str, summary: str) -> str:
    """The preset's comments: where it came from, how it is played, how well it matches, what to tweak."""
    played = (f"played at {note.name} {note.cents:+.0f} cents" if note.pitched
              else f"unpitched, played at {note.name}")
    return (f"Made by vinv from {source} ({METHOD_NAMES[method]}): {played}, held {note.length:.2f} s. "
            f"Match {similarity(distance):.0f}/100 (MR-STFT distance {distance:.3f}). {summary}")


def summarise(preset: dict) -> str:
    """The settings a producer reaches for first: which tables play, the filter, the amp envelope."""
    settings = preset["settings"]
    parts = []
    for osc in (1, 2, 3):
        if settings.get(f"osc_{osc}_on"):
            table = settings["wavetables"][osc - 1].get("name", "?")
            parts.append(f"osc {osc}: {table}")
    routes = {(route.get("source"), route.get("destination")) for route in settings.get("modulations", [])}
    sweeps = sorted({source for source, destination in routes
                     if str(source).startswith("lfo_") and str(destination).endswith("_wave_frame")})
    if sweeps:
        sweep_hz = control(f"{sweeps[0]}_frequency").unit_from_raw(settings[f"{sweeps[0]}_frequency"])
        numbers = [source.removeprefix("lfo_") for source in sweeps]
        lfos = (f"LFO {numbers[0]} sweeps" if len(numbers) == 1
                else f"LFOs {', '.join(numbers[:-1])} and {numbers[-1]} sweep")
        parts.append(f"{lfos} the tables over {1.0 / sweep_hz:.2f} s")
    if ("lfo_2", "osc_1_transpose") in routes:
        parts.append("LFO 2 draws the pitch")
    if settings.get("sample_on"):
        parts.append("noise on")
    for n in (1, 2):
        if settings.get(f"filter_{n}_on"):
            parts.append(f"filter {n} at {midi_to_hz(settings[f'filter_{n}_cutoff']):.0f} Hz")
    times = [control(f"env_1_{stage}").unit_from_raw(settings[f"env_1_{stage}"])
             for stage in ("attack", "decay", "release")]
    parts.append("amp envelope A {:.2f} s D {:.2f} s S {:.0%} R {:.2f} s".format(
        times[0], times[1], settings["env_1_sustain"], times[2]))
    effects = [effect for effect in EFFECT_KNOBS if settings.get(f"{effect}_on")]
    if effects:
        parts.append("effects: " + ", ".join(effects))
    return "; ".join(parts) + "."


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
    refine_renders: int | None = None,
    threads: int | None = None,
    overwrite: bool = True,
    mode: str = MODES[0],
    variations: int = 0,
) -> ConversionResult:
    """Convert one audio file into ``<stem>.vital`` and ``<stem>.preview.wav``.

    ``mode`` picks the candidates: ``resynth`` (default) the resynthesis and its variants; ``best``
    also the model's patch and their hybrid, and keeps the closest of all (the same answer on every
    held-out and split sound measured, about a quarter slower: README); ``patch`` only patches on
    vinv's own wavetables (the editable classic-synth answer: the model's, the model's with the
    input's amp envelope, and the bank's tables nearest to the sound, dry and through the model's
    filters and effects). ``variations`` > 0 also writes up to that many other kinds of patch for the
    sound, closest first, as ``<stem>.alt-1.vital``, ...: in every mode the bank's nearest tables (editable
    patches beside a resynthesis), never another version of the answer's own tables. ``model`` (for
    ``best`` and ``patch``) defaults to the shipped one, loaded once per process with ``threads``
    onnxruntime threads.
    ``refine_seconds`` > 0 spends about that long searching for a better preset than the closest
    candidate; ``refine_renders`` also ends that search after so many renders (a correction round counts
    as one): with time to spare, a budget that gives the same preset on a slow machine as on a fast one.
    Outputs go beside the input unless ``out_dir`` is given; with ``overwrite=False`` existing outputs are
    an error.
    """
    started = time.perf_counter()
    _check_mode(mode)
    path = Path(path)
    folder = Path(out_dir) if out_dir is not None else path.parent
    preset_path, preview_path = folder / f"{path.stem}{PRESET_SUFFIX}", folder / f"{path.stem}{PREVIEW_SUFFIX}"
    alternative_paths = [folder / f"{path.stem}.alt-{k}{PRESET_SUFFIX}" for k in range(1, variations + 1)]
    _check_destination(path, folder, (preset_path, preview_path, *alternative_paths), overwrite)
    if mode != "resynth":
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
    # Refining a model-made patch also tries the model's other ideas: its flow samples, its second choices.
    searching_patches = refine_seconds > 0 and mode == "patch"
    candidates = build_candidates(analysis, model, mode, name=path.stem, runner_ups=searching_patches,
                                  samples=CANDIDATES if searching_patches else 0,
                                  quieter_residuals=not CORRECTION_ROUNDS, space=space)
    lap("candidates")
    try:
        ranked = rank_candidates(candidates, analysis)
    except RenderError as error:
        raise ConversionError(f"{path.name}: {error}") from None
    lap("render")
    best, refined = ranked[0], False
    if refine_seconds > 0:
        best, refined = refine_best(best, analysis, seconds=refine_seconds, max_renders=refine_renders, space=space)
        lap("refine")
    elif best.candidate.resynthesis is not None:
        best = correct_best(best, analysis, seconds=float("inf"), max_rounds=CORRECTION_ROUNDS)[0]
        lap("correct")

    def finished(entry: ScoredCandidate) -> tuple[dict, np.ndarray, str]:
        """The preset at the input's loudness, with its comments; its preview at that loudness; its summary."""
        preset, preview = match_loudness(entry.candidate.preset, entry.preview, analysis.target)
        summary = summarise(preset)
        preset["comments"] = describe(note, entry.distance, path.name, entry.candidate.method, summary)
        return preset, preview, summary

    others = ranked[1:]
    if variations:
        others += editable_alternatives(analysis, mode, name=path.stem, space=space)
        lap("variations")
    preset, preview, summary = finished(best)
    alternatives = list(zip(distinct_alternatives(best, others)[:variations], alternative_paths))
    alternative_presets = [finished(entry)[0] for entry, _ in alternatives]
    lap("score")
    try:
        write_outputs(preset, preview, preset_path, preview_path)
        for alternative, (_, destination) in zip(alternative_presets, alternatives):
            write_preset(alternative, destination)
    except OSError as error:
        for destination in (preset_path, preview_path, *alternative_paths):
            destination.unlink(missing_ok=True)
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
        distance=best.distance,
        similarity=similarity(best.distance),
        refined=refined,
        method=best.candidate.method,
        summary=summary,
        variations=tuple(Variation(destination, entry.candidate.method, entry.distance, similarity(entry.distance))
                         for entry, destination in alternatives),
        timings=timings,
    )


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def _new_variants(variants: tuple[Variant, ...], preset: dict, played: list[dict]) -> tuple[Variant, ...]:
    """The ``variants`` of ``preset`` that make settings not in ``played``, which they join: one that turns
    no knob would only play it again, and the model's noise makes one preset of a matched table and of
    its noisy copies."""
    new = []
    for variant in variants:
        settings = {**preset["settings"], **variant.knobs}
        if settings not in played:
            played.append(settings)
            new.append(variant)
    return tuple(new)


def distinct_alternatives(answer: ScoredCandidate, others: list[ScoredCandidate]) -> list[ScoredCandidate]:
    """The closest of ``others`` of each kind of patch but the answer's, closest first: what a producer gets as
    a choice. A kind is the resynthesis, or the tables a patch on vinv's bank plays (``patch_kind``): another
    version of the answer's own tables (as measured, with other knobs) sounds like it, only further."""
    kinds, kept = {patch_kind(answer.candidate)}, []
    for entry in sorted(others, key=lambda entry: entry.distance):
        kind = patch_kind(entry.candidate)
        if kind not in kinds:
            kinds.add(kind)
            kept.append(entry)
    return kept


def patch_kind(candidate: Candidate) -> tuple[str | None, ...]:
    """What ``candidate`` is a version of: the resynthesis, or the tables its oscillators play."""
    if candidate.resynthesis is not None:
        return ("resynthesis",)
    settings = candidate.preset["settings"]
    return tuple(settings["wavetables"][osc - 1].get("name") if settings.get(f"osc_{osc}_on") else None
                 for osc in (1, 2, 3))


def editable_alternatives(analysis: Analysis, mode: str, *, name: str = "vinv",
                          space: ParameterSpace | None = None) -> list[ScoredCandidate]:
    """The bank's nearest tables with the input's amp envelope (``matched_candidates``), ranked, to offer as
    variations beside a mode that does not rank them itself (all but ``patch``); none that Vital can play
    is no error, only no variation."""
    if mode == "patch":
        return []
    envelope = measure_amp_envelope(analysis.target, SAMPLE_RATE, analysis.note.length)
    try:
        return rank_candidates(matched_candidates(analysis, envelope, name=name, space=space), analysis)
    except RenderError:
        return []


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
