"""`vinv-evaluate`: how close do predicted presets *sound*, next to the baselines, per kind of sound.

Each method's preset for a held-out sound is played as the converter plays an answer: tuned to the
note the sound is heard at (``converter.convert.tune``), rendered by Vital at that note, the sound's
velocity and note length, and compared with it by the converter's ``Comparison`` (24 kHz, the note
plus its one-second tail): MR-STFT distance (the headline; RMS-normalised, what the converter scores
and refines with; training grades parameters, not audio), log-spectral distance and MFCC L1. The
heard note of a dataset sound is the one training labels it with (``heard_note_targets``: the played
note moved by its lowest loud oscillator's transpose, which the model cannot hear apart). A method offering several
candidates (the flow head's samples, the random search) keeps the candidate that renders closest
and pays one render per candidate, which is the cost the model must undercut. The baselines of
training/baselines.py run in the same pass on the same sounds, so every number has its yardstick;
dataset sounds also get parameter errors per group against those same labels, and the optional out-of-domain set
(training/instruments.py) shows how the model does on sounds Vital did not make.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from converter.analysis.audio import MODEL_SAMPLE_RATE, fit_length, to_model_rate
from converter.analysis.note import Note
from converter.convert import tune
from converter.files import atomic_write_bytes
from converter.matching.decode import decode_outputs
from converter.matching.distance import log_spectral_distance, mfcc_distance
from converter.matching.scoring import Comparison, score_seconds
from converter.vital.parameters import Kind, ParameterSpace, parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE, RenderError, render
from training.baselines import NearestNeighbours, init_candidates, random_candidates
from training.checkpoint import CheckpointError, load_checkpoint
from training.dataset import SOURCES, DatasetError, ExampleSet
from training.frontend import model_clip
from training.instruments import DEFAULT_SOUNDFONT, FluidsynthMissing, InstrumentNote, instrument_notes
from training.losses import audible_mask, canonical_order, heard_note_targets
from training.model import ParameterModel
from training.sampling import Performance

OUT_OF_DOMAIN = "ood"
ALL = "all"
SET_LABELS = {
    "sampled": "sampled patches",
    "real": "real presets",
    "variant": "real-preset variants",
    "foreign": "foreign wavetables",
    "prior": "patches drawn from the real presets' prior",
    "recombined": "real presets recombined section by section",
    ALL: "all held-out dataset sounds",
    OUT_OF_DOMAIN: "out of domain: General MIDI instrument notes played by fluidsynth",
}
GOALS = {"sampled": 0.45, "real": 0.55, OUT_OF_DOMAIN: 0.55}  # model's median MR-STFT over the init patch's
METHODS = ("model", "model_sample", "model_best_of_k", "init", "random", "nearest_neighbour", "search")
RIVALS = ("nearest_neighbour", "search")  # the model should beat these on every set
# What --oracle hands the model from the truth, one section at a time: the parameter groups of each.
ORACLE_SECTIONS = {
    "oscillators": ("wavetable", "wave_frame", "osc_mix", "osc_pitch", "unison", "spectral_morph", "osc_distortion"),
    "filters": ("filter", "filter_cutoff", "filter_resonance", "filter_envelope", "routing"),
    "envelopes": ("envelope", "amp_attack"),
    "lfos": ("lfo",),
    "modulation": ("modulation",),
    "effects": ("effects",),
}
ORACLE = "model_true_"  # method name prefix: the model's answer with one section taken from the truth
BATCH_SIZE = 16
DEFAULT_NEIGHBOURS = 2000
EMBEDDING_STREAM = 0xE3B  # picks the training examples behind the retrieval baseline


class EvaluationError(RuntimeError):
    """Nothing to evaluate, or inputs that cannot be evaluated as asked."""


# ------------------------------------------------------------------------------------------ targets


@dataclass(frozen=True)
class Target:
    """One sound to match: its 5 s, 24 kHz clip from note-on, the note it is heard at (and held for),
    its velocity, and its true vector restated for that note (what training predicts) if known."""

    set_name: str
    clip: np.ndarray
    note: Note
    velocity: float
    truth: np.ndarray | None = None

    @property
    def performance(self) -> Performance:
        """How every method's answer is played: at the heard note."""
        return Performance(self.note.pitch, self.velocity, self.note.length)


def heard_notes(performances: Sequence[Performance],
                truths: np.ndarray | None = None) -> tuple[list[Note], np.ndarray | None]:
    """The note each played sound is heard at, and its (P,) true vector restated for that note.

    With true vectors, both come from ``heard_note_targets``, training's labels; without them (an
    instrument note, or vectors of unknown origin) the sound is taken to be heard at the played pitch.
    """
    if truths is None:
        return [Note(p.pitch, 0.0, True, 1.0, p.note_length) for p in performances], None
    labels, notes, cents = heard_note_targets(truths, np.array([p.pitch for p in performances]))
    return [Note(int(n), float(c), True, 1.0, p.note_length) for n, c, p in zip(notes, cents, performances)], labels


def dataset_targets(examples: ExampleSet, per_source: int | None) -> list[Target]:
    """The set's examples in index order, at most ``per_source`` of each source (None: all)."""
    positions: list[int] = []
    for source in range(len(SOURCES)):
        mine = np.flatnonzero(examples.meta["source"] == source)
        positions += mine[:per_source].tolist()
    positions.sort()
    targets = []
    for start in range(0, len(positions), BATCH_SIZE):
        batch = positions[start:start + BATCH_SIZE]
        meta = examples.meta[batch]
        performances = [Performance(int(m["pitch"]), float(m["velocity"]), float(m["note_length"])) for m in meta]
        notes, truths = heard_notes(performances, examples.params[batch])
        targets += [Target(SOURCES[int(m["source"])], clip, note, p.velocity, truth)
                    for m, clip, note, p, truth in zip(meta, examples.audio_batch(batch), notes, performances, truths)]
    return targets


def out_of_domain_targets(notes: Sequence[InstrumentNote]) -> list[Target]:
    """General MIDI notes sound at the pitch fluidsynth played them at."""
    return [Target(OUT_OF_DOMAIN, note.audio, Note(note.pitch, 0.0, True, 1.0, note.note_length), note.velocity)
            for note in notes]


# ------------------------------------------------------------------------------- parameter errors


@dataclass(frozen=True)
class GroupError:
    """How far one method's vectors are from the truth in one parameter group (nan: nothing graded)."""

    knob_error: float  # mean |difference| of continuous, integer and modulation values
    categorical_accuracy: float
    switch_accuracy: float
    knobs: int  # how many values of each kind were graded
    categoricals: int
    switches: int


def parameter_errors(truth: np.ndarray, predicted: np.ndarray,
                     space: ParameterSpace | None = None) -> dict[str, GroupError]:
    """Per group (in table order, then ``all``), over the values the true sound can reveal.

    Both sides are put in canonical order first, because swapping two oscillators (or LFOs, or
    modulation envelopes) changes the vector but not the sound; values of units that are off in the
    target (a muted oscillator's wavetable, a bypassed effect's knobs, an unrouted LFO) are skipped.
    """
    space = space or parameter_space()
    truth = canonical_order(np.atleast_2d(truth), space)
    predicted = canonical_order(np.atleast_2d(predicted), space)
    mask = audible_mask(truth, space)
    kinds = np.array([p.kind.value for p in space.parameters])
    groups = np.array([p.group for p in space.parameters])
    knob = np.isin(kinds, [Kind.CONTINUOUS.value, Kind.INTEGER.value, Kind.MODULATION.value])
    categorical, switch = kinds == Kind.CATEGORICAL.value, kinds == Kind.SWITCH.value
    difference = np.abs(predicted - truth)
    same_option = np.round(predicted) == np.round(truth)
    same_state = (predicted >= 0.5) == (truth >= 0.5)

    def graded(values: np.ndarray, columns: np.ndarray) -> tuple[float, int]:
        kept = values[:, columns][mask[:, columns]]
        return (float(kept.mean()) if kept.size else math.nan), int(kept.size)

    errors = {}
    for group in [*dict.fromkeys(groups.tolist()), ALL]:
        in_group = np.ones(len(groups), bool) if group == ALL else groups == group
        knob_error, knobs = graded(difference, in_group & knob)
        categorical_accuracy, categoricals = graded(same_option, in_group & categorical)
        switch_accuracy, switches = graded(same_state, in_group & switch)
        errors[group] = GroupError(knob_error, categorical_accuracy, switch_accuracy, knobs, categoricals, switches)
    return errors


# ---------------------------------------------------------------------------------------- rendering


def render_answer(vector: np.ndarray, note: Note, velocity: float) -> np.ndarray:
    """Vital's render (its rate, (2, n)) of a vector played as the converter plays an answer: tuned so
    its lowest loud oscillator sounds at ``note`` (``tune``), at that note, as long as it is compared.
    Silence if Vital refuses it."""
    try:
        audio = render(preset_from_vector(tune(vector, note)), note.pitch, velocity, note.length,
                       score_seconds(note.length))
    except RenderError:
        return np.zeros(1, dtype=np.float32)
    return audio if np.all(np.isfinite(audio)) else np.zeros(1, dtype=np.float32)


def rendered_distances(vectors: np.ndarray, clips: Sequence[np.ndarray], performances: Sequence[Performance],
                       truths: np.ndarray | None = None) -> np.ndarray:
    """MR-STFT distance from each 24 kHz clip (from its onset) to its vector played as the converter plays it.

    The note comes from the clip's true vector when given (``heard_notes``), else the played pitch.
    """
    notes, _ = heard_notes(performances, truths)
    return np.array([Comparison(clip, MODEL_SAMPLE_RATE, note.length).distance(
        render_answer(vector, note, performance.velocity), SAMPLE_RATE)
        for vector, clip, note, performance in zip(vectors, clips, notes, performances)])


@dataclass(frozen=True)
class _Task:
    """One target and every method's candidates for it: the target's spectra are computed once."""

    clip: np.ndarray
    note: Note
    velocity: float
    candidates: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Scored:
    kept: int
    mrstft: float
    lsd: float
    mfcc: float
    seconds: float  # CPU time of rendering and scoring all the method's candidates


def _score_task(task: _Task) -> dict[str, _Scored]:
    """Per method: render each candidate, keep the closest by MR-STFT, add its LSD and MFCC L1."""
    comparison = Comparison(task.clip, MODEL_SAMPLE_RATE, task.note.length)
    reference = fit_length(task.clip, comparison.samples)
    scored = {}
    for method, options in task.candidates.items():
        started = time.process_time()
        renders = [render_answer(vector, task.note, task.velocity) for vector in options]
        distances = [comparison.distance(audio, SAMPLE_RATE) for audio in renders]
        kept = int(np.argmin(distances))
        seconds = time.process_time() - started
        heard = fit_length(to_model_rate(renders[kept], SAMPLE_RATE), comparison.samples)
        scored[method] = _Scored(kept, distances[kept], log_spectral_distance(reference, heard, MODEL_SAMPLE_RATE),
                                 mfcc_distance(reference, heard, MODEL_SAMPLE_RATE), seconds)
    return scored


def _pool(workers: int):
    """Render workers: vita engines are not thread-safe, so parallel renders need processes."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["training.evaluate"])
    return context.Pool(workers)


@dataclass(frozen=True)
class Choice:
    """What one method gave every target: the kept vector and how its render scored."""

    vectors: np.ndarray
    mrstft: np.ndarray
    lsd: np.ndarray
    mfcc: np.ndarray
    render_seconds: float  # CPU time of all the method's renders, every target together


def choose(targets: Sequence[Target], candidates: dict[str, Sequence[np.ndarray]], imap: Callable = map,
           progress: bool = False) -> dict[str, Choice]:
    """Render every method's candidates ((C, P) per target) and keep, per target, the closest one."""
    tasks = (_Task(t.clip, t.note, t.velocity, {m: options[n] for m, options in candidates.items()})
             for n, t in enumerate(targets))
    results = list(tqdm(imap(_score_task, tasks), total=len(targets), unit="sound", disable=not progress))
    choices = {}
    for method, options in candidates.items():
        scored = [result[method] for result in results]
        choices[method] = Choice(np.stack([o[s.kept] for o, s in zip(options, scored)]),
                                 np.array([s.mrstft for s in scored]), np.array([s.lsd for s in scored]),
                                 np.array([s.mfcc for s in scored]), sum(s.seconds for s in scored))
    return choices


# ---------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelAnswers:
    """Everything the network says about the targets, and the wall time of each part."""

    vectors: np.ndarray  # (n, P) from the regression heads
    samples: np.ndarray | None  # (n, K, P) flow samples, None without a flow head
    first_samples: np.ndarray | None  # (n, 1, P) one flow sample each
    embeddings: np.ndarray  # (n, D)
    embed_seconds: float
    heads_seconds: float
    flow_seconds: float
    first_flow_seconds: float


def model_inputs(clips: Sequence[np.ndarray]) -> torch.Tensor:
    """Clips as training fed them (``model_clip``): offset-free, from the onset, exactly 5 s."""
    return torch.from_numpy(np.stack([model_clip(clip) for clip in clips]))


@torch.no_grad()
def embed_clips(model: ParameterModel, clips: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([model.embed(model_inputs(clips[s:s + BATCH_SIZE])).numpy()
                           for s in range(0, len(clips), BATCH_SIZE)])


@torch.no_grad()
def ask_model(model: ParameterModel, clips: Sequence[np.ndarray], k: int, seed: int) -> ModelAnswers:
    """Run the encoder once per clip; the heads and the flow share its embedding."""
    generator = torch.Generator().manual_seed(seed)
    seconds = np.zeros(4)  # embed, heads, flow (K samples), flow (one sample)
    vectors, samples, first, embeddings = [], [], [], []
    clock = time.perf_counter
    for start in range(0, len(clips), BATCH_SIZE):
        audio = model_inputs(clips[start:start + BATCH_SIZE])
        ticks = [clock()]
        embedding = model.embed(audio)
        ticks.append(clock())
        outputs = model.activate(model.raw_outputs(embedding))
        ticks.append(clock())
        embeddings.append(embedding.numpy())
        vectors.append(decode_outputs(outputs.numpy()))
        if model.flow is not None:
            noise = torch.randn(len(audio), k, model.sample_dim, generator=generator)
            ticks.append(clock())
            samples.append(model.flow.sample(embedding, noise).numpy())
            ticks.append(clock())
            first.append(model.flow.sample(embedding, noise[:, :1]).numpy())
            ticks.append(clock())
            seconds[2:] += np.diff(ticks[3:])
        seconds[:2] += np.diff(ticks[:3])
    with_flow = model.flow is not None
    return ModelAnswers(np.concatenate(vectors), np.concatenate(samples) if with_flow else None,
                        np.concatenate(first) if with_flow else None, np.concatenate(embeddings), *seconds.tolist())


def neighbour_index(model: ParameterModel, examples: ExampleSet, count: int, seed: int) -> NearestNeighbours:
    """Embeddings of up to ``count`` training examples (a seeded random subset), with their vectors as
    training labels them (``heard_note_targets``), so a retrieved vector is an answer like the model's."""
    if not len(examples):
        raise EvaluationError(f"{examples.folder} has no training examples for the nearest-neighbour baseline")
    rng = np.random.default_rng([seed, EMBEDDING_STREAM])
    chosen = np.sort(rng.permutation(len(examples))[:count])
    embeddings = [embed_clips(model, examples.audio_batch(chosen[s:s + BATCH_SIZE]))  # a batch in memory at a time
                  for s in range(0, len(chosen), BATCH_SIZE)]
    labels, _, _ = heard_note_targets(examples.params[chosen], examples.meta["pitch"][chosen])
    return NearestNeighbours(np.concatenate(embeddings), labels)


# ------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class MethodScores:
    median_mrstft: float
    ratio_to_init: float  # median over the init patch's median, on the same sounds
    mean_lsd: float
    mean_mfcc: float
    renders_per_sound: int  # Vital renders spent choosing the preset
    seconds_per_sound: float  # inference or sampling (wall) plus the renders that choose (CPU): the work per sound


@dataclass(frozen=True)
class SetReport:
    name: str
    count: int
    methods: dict[str, MethodScores]

    def verdict(self, rival: str) -> str:
        """'better' or 'worse' (or 'tie'): the model's median MR-STFT against a rival's."""
        ours, theirs = self.methods["model"].median_mrstft, self.methods[rival].median_mrstft
        return "better" if ours < theirs else "worse" if ours > theirs else "tie"


@dataclass(frozen=True)
class Report:
    """Per set and method, the sound scores; per method and group, the parameter errors."""

    checkpoint: str
    dataset: str
    split: str
    per_source: int | None
    workers: int
    method_labels: dict[str, str]
    sets: dict[str, SetReport]
    parameter_errors: dict[str, dict[str, GroupError]]
    index_seconds: float

    def to_markdown(self) -> str:
        limit = "all examples" if self.per_source is None else f"at most {self.per_source} per source"
        lines = [
            "# vinv evaluation",
            "",
            f"Checkpoint `{self.checkpoint}` on `{self.dataset}` (split `{self.split}`, {limit}); "
            f"{self.workers} render workers.",
            "",
            "Every preset is played as the converter plays an answer: tuned to the note the sound is heard at "
            "(for dataset sounds the note training labels it with), rendered with Vital at that note, the sound's "
            "velocity and note length, and compared over the note plus its one-second tail at 24 kHz. MR-STFT: "
            "RMS-normalised multi-resolution STFT distance (auraloss's; the converter's match score), median over "
            "sounds; × init: that median over the init patch's on the same notes; LSD: log-spectral distance (dB); "
            "MFCC: mean |difference| of 20 MFCCs. Renders and seconds are what choosing the preset costs per sound: "
            "model inference or patch sampling (wall time) plus, for methods that pick among candidates, the CPU "
            "time of rendering and scoring them (embedding the retrieval "
            f"index took {self.index_seconds:.1f} s once).",
        ]
        for report in self.sets.values():
            sounds = f"{report.count} sound" + ("" if report.count == 1 else "s")
            lines += ["", f"## {SET_LABELS[report.name]} ({sounds})", "",
                      "| method | median MR-STFT | × init | mean LSD (dB) | mean MFCC L1 | renders/sound | s/sound |",
                      "|---|---|---|---|---|---|---|"]
            for method, s in report.methods.items():
                lines.append(f"| {self.method_labels[method]} | {_number(s.median_mrstft, 3)} | "
                             f"{_number(s.ratio_to_init, 2)} | {_number(s.mean_lsd, 2)} | {_number(s.mean_mfcc, 2)} | "
                             f"{s.renders_per_sound} | {_number(s.seconds_per_sound, 3)} |")
            lines += ["", _summary_line(report, self.method_labels)]
        if self.parameter_errors:
            lines += _parameter_tables(self.parameter_errors, self.method_labels)
        return "\n".join(lines) + "\n"


def _number(value: float, digits: int) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _summary_line(report: SetReport, labels: dict[str, str]) -> str:
    model = report.methods["model"]
    parts = [f"model vs {labels[rival]}: {report.verdict(rival)} "
             f"({_number(model.median_mrstft, 3)} vs {_number(report.methods[rival].median_mrstft, 3)})"
             for rival in RIVALS]
    if report.name in GOALS:
        goal = GOALS[report.name]
        met = "met" if model.ratio_to_init <= goal else "not met"
        parts.append(f"goal ≤ {goal:.2f} × init: {met} ({_number(model.ratio_to_init, 2)})")
    return "; ".join(parts) + "."


def _parameter_tables(errors: dict[str, dict[str, GroupError]], labels: dict[str, str]) -> list[str]:
    methods = list(errors)
    groups = list(next(iter(errors.values())))
    lines = ["", "## Parameter error on the held-out dataset sounds", "",
             "Against training's labels (oscillators restated for the heard note, filter keytracking folded into "
             "the cutoff), each answer with its overall transposition removed as the converter's tuning removes "
             "it; vectors in canonical unit order; values the target's sound cannot reveal (units that are off, "
             "unrouted modulators) are not graded."]
    header = "| group | graded values | " + " | ".join(labels[m] for m in methods) + " |"
    rule = "|---|---|" + "---|" * len(methods)
    for title, field, count in (("Knob error (mean |difference|, lower is better)", "knob_error", "knobs"),
                                ("Categorical accuracy", "categorical_accuracy", "categoricals"),
                                ("Switch accuracy", "switch_accuracy", "switches")):
        lines += ["", f"### {title}", "", header, rule]
        for group in groups:
            graded = getattr(errors[methods[0]][group], count)
            if graded:
                values = " | ".join(_number(getattr(errors[m][group], field), 3) for m in methods)
                lines.append(f"| {group} | {graded} | {values} |")
    return lines


def _set_report(name: str, members: np.ndarray, choices: dict[str, Choice], renders: dict[str, int],
                seconds: dict[str, float]) -> SetReport:
    init = float(np.median(choices["init"].mrstft[members]))
    methods = {}
    for method, choice in choices.items():
        median = float(np.median(choice.mrstft[members]))
        methods[method] = MethodScores(median, median / init if init > 0 else math.nan,
                                       float(np.mean(choice.lsd[members])), float(np.mean(choice.mfcc[members])),
                                       renders[method], seconds[method])
    return SetReport(name, int(members.size), methods)


# ----------------------------------------------------------------------------------------- evaluate


def as_labelled(vectors: np.ndarray, notes: Sequence[Note]) -> np.ndarray:
    """(n, P) answers stated as training labels them: all oscillators shifted so the lowest loud one is at
    0 (``tune`` without cents, ``heard_note_targets``' rule), the transposition the converter discards."""
    return np.stack([tune(vector, replace(note, cents=0.0)) for vector, note in zip(vectors, notes)])


def propose(targets: Sequence[Target], answers: ModelAnswers, index: NearestNeighbours, search: int, seed: int,
            space: ParameterSpace) -> tuple[dict[str, list[np.ndarray]], dict[str, float]]:
    """Every method's (C, P) candidates per target, in METHODS order, and the wall time of proposing them."""
    count = len(targets)
    candidates: dict[str, list[np.ndarray]] = {"model": list(answers.vectors[:, None, :])}
    seconds = {"model": answers.embed_seconds + answers.heads_seconds}
    if answers.samples is not None and answers.first_samples is not None:
        candidates["model_sample"] = list(answers.first_samples)
        candidates["model_best_of_k"] = list(answers.samples)
        seconds["model_sample"] = answers.embed_seconds + answers.first_flow_seconds
        seconds["model_best_of_k"] = answers.embed_seconds + answers.flow_seconds
    candidates["init"] = [init_candidates(space)] * count
    seconds["init"] = 0.0
    for method, size in (("random", 1), ("search", search)):
        started = time.perf_counter()
        candidates[method] = [random_candidates(t.performance, size, seed, number, space)
                              for number, t in enumerate(targets)]
        seconds[method] = time.perf_counter() - started
    started = time.perf_counter()
    candidates["nearest_neighbour"] = list(index.candidates(answers.embeddings))
    seconds["nearest_neighbour"] = answers.embed_seconds + time.perf_counter() - started
    return {m: candidates[m] for m in METHODS if m in candidates}, seconds


def with_true_sections(targets: Sequence[Target], vectors: np.ndarray,
                       space: ParameterSpace) -> dict[str, list[np.ndarray]]:
    """Per ``ORACLE_SECTIONS`` entry, each (1, P) model answer with that section's values taken from the
    target's label (canonical unit order, as the model is trained to answer): what the model loses
    in each section, heard. A target without a label keeps the model's answer."""
    groups = np.array([p.group for p in space.parameters])
    truths = [None if t.truth is None else canonical_order(t.truth, space) for t in targets]
    spliced = {}
    for section, members in ORACLE_SECTIONS.items():
        columns = np.isin(groups, members)
        answers = []
        for truth, vector in zip(truths, vectors):
            answer = np.array(vector, dtype=np.float32)
            if truth is not None:
                answer[columns] = truth[columns]
            answers.append(answer[None, :])
        spliced[ORACLE + section] = answers
    return spliced


def evaluate_model(
    model: ParameterModel,
    dataset_dir: str | os.PathLike[str],
    *,
    checkpoint_name: str = "(in memory)",
    split: str = "test",
    per_source: int | None = None,
    search: int = 64,
    k: int = 8,
    out_of_domain: Sequence[InstrumentNote] = (),
    workers: int | None = None,
    seed: int = 0,
    neighbours: int = DEFAULT_NEIGHBOURS,
    oracle: bool = False,
    progress: bool = False,
) -> Report:
    """Score a model (left in eval mode) and every baseline on one split, and on ``out_of_domain`` notes.

    With ``oracle``, also the model's answer with each section of the patch taken from the truth
    (``with_true_sections``): which sections limit it."""
    if search < 1 or k < 1 or neighbours < 1:
        raise ValueError("search, k and neighbours must be positive")
    space = parameter_space()
    model.eval()
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    examples = ExampleSet(dataset_dir, split)
    if examples.manifest.get("parameter_space_version") != space.version:
        raise EvaluationError(f"{dataset_dir} was built for parameter space "
                              f"{examples.manifest.get('parameter_space_version')}, this vinv uses {space.version}")
    targets = dataset_targets(examples, per_source) + out_of_domain_targets(out_of_domain)
    if not targets:
        raise EvaluationError(f"no {split} examples in {dataset_dir}")

    started = time.perf_counter()
    index = neighbour_index(model, ExampleSet(dataset_dir, "train"), neighbours, seed)
    index_seconds = time.perf_counter() - started
    answers = ask_model(model, [t.clip for t in targets], k, seed)
    candidates, proposal_seconds = propose(targets, answers, index, search, seed, space)
    if oracle:
        spliced = with_true_sections(targets, answers.vectors, space)
        candidates.update(spliced)
        proposal_seconds.update(dict.fromkeys(spliced, proposal_seconds["model"]))
    pool = _pool(min(workers, len(targets))) if workers > 1 and len(targets) > 1 else None
    try:
        choices = choose(targets, candidates, pool.imap if pool else map, progress)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()

    renders = {m: len(options[0]) if len(options[0]) > 1 else 0 for m, options in candidates.items()}
    seconds = {m: (proposal_seconds[m] + (choices[m].render_seconds if renders[m] else 0.0)) / len(targets)
               for m in choices}
    set_names = np.array([t.set_name for t in targets])
    sets = {}
    for name in [*SOURCES, ALL, OUT_OF_DOMAIN]:
        members = np.flatnonzero(set_names != OUT_OF_DOMAIN if name == ALL else set_names == name)
        if members.size:
            sets[name] = _set_report(name, members, choices, renders, seconds)
    known = np.flatnonzero(set_names != OUT_OF_DOMAIN)
    errors = {}
    if known.size:
        truth = np.stack([targets[n].truth for n in known])
        errors = {m: parameter_errors(truth, as_labelled(choice.vectors[known], [targets[n].note for n in known]),
                                      space) for m, choice in choices.items()}
    labels = {
        "model": "model (regression heads)",
        "model_sample": "model, one flow sample",
        "model_best_of_k": f"model, best of {k} flow samples",
        "init": "Vital's init patch",
        "random": "random patch",
        "nearest_neighbour": f"nearest of {len(index)} training sounds",
        "search": f"best of {search} random patches",
        **{ORACLE + section: f"model with the true {section}" for section in ORACLE_SECTIONS},
    }
    return Report(checkpoint_name, str(dataset_dir), split, per_source, workers,
                  {m: labels[m] for m in choices}, sets, errors, index_seconds)


def evaluate(checkpoint: str | os.PathLike[str], dataset_dir: str | os.PathLike[str], *, ood: bool = False,
             soundfont: str | os.PathLike[str] = DEFAULT_SOUNDFONT, **options) -> Report:
    """``evaluate_model`` on a saved checkpoint, with the General MIDI notes if ``ood``.

    ``options`` are evaluate_model's keywords.
    """
    notes = instrument_notes(Path(soundfont)) if ood else []
    return evaluate_model(load_checkpoint(checkpoint), dataset_dir, checkpoint_name=str(checkpoint),
                          out_of_domain=notes, **options)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vinv-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("dataset_dir", type=Path, help="a set vinv-dataset built: its name (user cache) or folder")
    parser.add_argument("--split", choices=("train", "validation", "test"), default="test")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help=f"at most N sounds of each source ({', '.join(SOURCES)})")
    parser.add_argument("--search", type=int, default=64, metavar="N",
                        help="random patches the search baseline renders")
    parser.add_argument("--k", type=int, default=8, help="flow samples behind 'best of K'")
    parser.add_argument("--neighbours", type=int, default=DEFAULT_NEIGHBOURS,
                        help="training sounds the nearest-neighbour baseline retrieves from")
    parser.add_argument("--ood", action="store_true", help="also score real-instrument notes (needs fluidsynth)")
    parser.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT)
    parser.add_argument("--out", type=Path, default=Path("report.md"))
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oracle", action="store_true",
                        help="also the model's answer with each section (oscillators, filters, ...) from the truth")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = evaluate(args.checkpoint, args.dataset_dir, split=args.split, per_source=args.limit,
                          search=args.search, k=args.k, ood=args.ood, soundfont=args.soundfont,
                          workers=args.workers, seed=args.seed, neighbours=args.neighbours, oracle=args.oracle,
                          progress=not args.no_progress)
    except (EvaluationError, CheckpointError, DatasetError, FluidsynthMissing, OSError, ValueError) as error:
        print(f"vinv-evaluate: {error}", file=sys.stderr)
        return 1
    text = report.to_markdown()
    atomic_write_bytes(args.out, text.encode("utf-8"))
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
