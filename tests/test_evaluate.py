"""vinv-evaluate: its metric helpers, its baselines, and a tiny dataset -> checkpoint -> report run."""

from __future__ import annotations

import math
import re
import shutil
import struct

import numpy as np
import pytest

from converter.analysis.audio import fit_length, to_model_rate
from converter.analysis.note import Note
from converter.matching.decode import decode_outputs
from converter.matching.model import PresetModel
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE, render
from training import evaluate as evaluation
from training import instruments
from training.baselines import NearestNeighbours, init_candidates, random_candidates
from training.evaluate import (
    ORACLE,
    ORACLE_SECTIONS,
    OUT_OF_DOMAIN,
    SET_LABELS,
    Target,
    as_labelled,
    choose,
    heard_notes,
    parameter_errors,
    render_answer,
    rendered_distances,
    with_true_sections,
)
from training.instruments import DEFAULT_SOUNDFONT, FluidsynthMissing, instrument_note, instrument_notes, midi_file
from training.losses import canonical_order
from training.sampling import Performance

HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and DEFAULT_SOUNDFONT.is_file()
NO_FLUIDSYNTH = "out-of-domain notes need the fluidsynth program and timgm6mb-soundfont (apt-get install)"


def _vector(space, **values: float) -> np.ndarray:
    vector = space.default_vector()
    for name, value in values.items():
        vector[space.index(name)] = value
    return vector


# ----------------------------------------------------------------------------------- parameter errors


def test_identical_vectors_have_no_error(space):
    truth = np.stack([_vector(space, osc_2_on=1.0, osc_2_level=0.3, reverb_on=1.0), space.default_vector()])
    errors = parameter_errors(truth, truth.copy(), space)
    assert errors["all"].knob_error == 0.0
    assert errors["all"].categorical_accuracy == 1.0
    assert errors["all"].switch_accuracy == 1.0
    assert errors["all"].knobs > 0 and errors["all"].categoricals > 0 and errors["all"].switches > 0


def test_knobs_of_units_that_are_off_in_the_target_are_not_graded(space):
    truth = _vector(space, reverb_on=0.0, reverb_dry_wet=0.2)
    wrong_but_inaudible = _vector(space, reverb_on=0.0, reverb_dry_wet=0.9)
    assert parameter_errors(truth, wrong_but_inaudible, space)["all"].knob_error == 0.0
    assert parameter_errors(truth, wrong_but_inaudible, space)["effects"].knobs == 0
    truth_on = _vector(space, reverb_on=1.0, reverb_dry_wet=0.2)
    wrong_and_audible = _vector(space, reverb_on=1.0, reverb_dry_wet=0.9)
    effects = parameter_errors(truth_on, wrong_and_audible, space)["effects"]
    assert effects.knob_error > 0.0
    assert effects.knobs > parameter_errors(truth, wrong_but_inaudible, space)["effects"].knobs


def test_a_wrong_switch_and_option_are_counted(space):
    truth = _vector(space, reverb_on=1.0, osc_1_wavetable=3.0)
    predicted = _vector(space, reverb_on=0.0, osc_1_wavetable=5.0)
    errors = parameter_errors(truth, predicted, space)
    assert errors["effects"].switch_accuracy < 1.0
    assert errors["wavetable"].categorical_accuracy == 0.0


def test_swapped_oscillators_are_the_same_sound(space):
    truth = _vector(space, osc_1_on=1.0, osc_1_level=0.9, osc_1_wave_frame=0.2,
                    osc_2_on=1.0, osc_2_level=0.4, osc_2_wave_frame=0.7)
    swapped = truth.copy()
    for knob in ("on", "level", "wave_frame", "wavetable", "transpose", "tune"):
        first, second = space.index(f"osc_1_{knob}"), space.index(f"osc_2_{knob}")
        swapped[[first, second]] = truth[[second, first]]
    assert parameter_errors(truth, swapped, space)["all"].knob_error == 0.0


# ---------------------------------------------------------------------------------------- baselines


def test_random_candidates_are_reproducible_and_differ_per_target(space):
    performance = Performance(60, 0.8, 1.0)
    first = random_candidates(performance, 3, seed=0, key=1, space=space)
    assert first.shape == (3, len(space))
    np.testing.assert_array_equal(first, random_candidates(performance, 3, seed=0, key=1, space=space))
    assert not np.array_equal(first, random_candidates(performance, 3, seed=0, key=2, space=space))
    assert init_candidates(space).shape == (1, len(space))


def test_nearest_neighbour_retrieves_the_most_similar_embedding():
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    index = NearestNeighbours(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), vectors)
    retrieved = index.candidates(np.array([[0.1, 2.0], [3.0, 2.9]]))
    np.testing.assert_array_equal(retrieved[:, 0], vectors[[1, 2]])
    with pytest.raises(ValueError):
        NearestNeighbours(np.zeros((2, 2)), vectors)


# -------------------------------------------------------------------------------------------- scoring


def test_true_sections_cover_the_patch_once_and_replace_only_their_own_values(space):
    groups = [set(members) for members in ORACLE_SECTIONS.values()]
    assert set().union(*groups) == {p.group for p in space.parameters}
    assert sum(map(len, groups)) == len(set().union(*groups))
    truth, answer = random_candidates(Performance(60, 0.8, 1.0), 2, 0, 0, space)
    note = Note(60, 0.0, True, 1.0, 1.0)
    targets = [Target("sampled", np.zeros(8, np.float32), note, 0.8, truth),
               Target(OUT_OF_DOMAIN, np.zeros(8, np.float32), note, 0.8)]
    spliced = with_true_sections(targets, np.stack([answer, answer]), space)
    assert list(spliced) == [ORACLE + section for section in ORACLE_SECTIONS]
    canonical = canonical_order(truth, space)
    column_groups = np.array([p.group for p in space.parameters])
    for section, members in ORACLE_SECTIONS.items():
        labelled, unlabelled = spliced[ORACLE + section]
        own = np.isin(column_groups, members)
        np.testing.assert_array_equal(labelled[0, own], canonical[own].astype(np.float32))
        np.testing.assert_array_equal(labelled[0, ~own], answer[~own].astype(np.float32))
        np.testing.assert_array_equal(unlabelled[0], answer.astype(np.float32))


def test_fit_length_crops_and_pads():
    audio = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(audio, 3), [0, 1, 2])
    np.testing.assert_array_equal(fit_length(audio, 7), [0, 1, 2, 3, 4, 0, 0])


def _clip(audio: np.ndarray) -> np.ndarray:
    """A Vital render as a dataset clip: 24 kHz mono, 5 s from note-on."""
    return fit_length(to_model_rate(audio, SAMPLE_RATE), 5 * 24000)


@pytest.mark.slow
def test_choose_keeps_the_candidate_that_renders_like_the_target(space):
    performance = Performance(57, 0.8, 0.5)
    note = Note(57, 0.0, True, 1.0, 0.5)
    right = _vector(space, filter_1_on=1.0, filter_1_cutoff=0.35)
    wrong = random_candidates(performance, 2, seed=3, key=0, space=space)
    target = Target("sampled", _clip(render_answer(right, note, 0.8)), note, 0.8, right)
    choices = choose([target, target], {"all": [np.stack([wrong[0], right, wrong[1]])] * 2,
                                        "wrong": [wrong[:1], wrong[1:]]})
    np.testing.assert_array_equal(choices["all"].vectors, [right, right])
    best, alone = choices["all"], choices["wrong"]
    np.testing.assert_allclose([best.mrstft, best.lsd, best.mfcc], 0.0, atol=1e-6)  # renders are repeatable
    assert alone.mrstft.min() > 1.0 and alone.render_seconds > 0.0


@pytest.mark.slow
def test_answers_are_played_at_the_note_the_sound_is_heard_at(space):
    """C3 with a +12 oscillator sounds like C4 with none: the label says C4 and 0, and so must the render."""
    played = Performance(48, 0.8, 0.5)
    truth = _vector(space, osc_1_on=1.0, osc_1_level=0.8, osc_1_transpose=space["osc_1_transpose"].normalise(12.0),
                    filter_1_on=1.0, filter_1_cutoff=space["filter_1_cutoff"].normalise(70.0))
    clip = _clip(render(preset_from_vector(truth), played.pitch, played.velocity, played.note_length,
                        played.duration))  # as the dataset renders it
    (note,), labels = heard_notes([played], truth[None])
    transpose = space["osc_1_transpose"]
    assert note.pitch == 60 and transpose.denormalise(float(labels[0, space.index(transpose.name)])) == 0
    target = Target("sampled", clip, note, played.velocity, labels[0])
    choices = choose([target], {"truth": [labels], "init": [init_candidates(space)]})
    assert choices["truth"].mrstft[0] < 0.01 * choices["init"].mrstft[0], choices  # played at C3: about 0.4
    assert parameter_errors(labels, as_labelled(choices["truth"].vectors, [note]), space)["all"].knob_error == 0.0


@pytest.mark.slow
def test_shipped_model_beats_the_init_patch(space, sampled_renders):
    """On patches it never saw; measured: median 0.61-0.66 x init's, closer than init on 8 of the 12."""
    clips, performances = sampled_renders
    ours = rendered_distances(decode_outputs(PresetModel.load(threads=1).predict(clips)), clips, performances)
    init = rendered_distances(np.repeat(init_candidates(space), len(clips), axis=0), clips, performances)
    assert np.median(ours) < np.median(init), (ours, init)
    assert np.sum(ours < init) > len(clips) / 2, (ours, init)


# ------------------------------------------------------------------------------------ out-of-domain set


def _midi_track(data: bytes) -> bytes:
    assert data[:4] == b"MThd"
    length, form, tracks, _ = struct.unpack(">IHHH", data[4:14])
    assert (length, form, tracks) == (6, 0, 1)
    assert data[14:18] == b"MTrk"
    (size,) = struct.unpack(">I", data[18:22])
    assert len(data) == 22 + size
    return data[22:]


def test_midi_file_is_one_track_with_one_note():
    track = _midi_track(midi_file(program=24, pitch=60, velocity=100, note_seconds=1.5))
    assert bytes([0xC0, 24]) in track
    assert bytes([0x90, 60, 100]) in track
    assert bytes([0x80, 60, 0]) in track
    assert track.endswith(bytes([0xFF, 0x2F, 0x00]))
    long = _midi_track(midi_file(program=0, pitch=60, velocity=100, note_seconds=16384 / 960))
    assert bytes([0x81, 0x80, 0x00, 0x80, 60, 0]) in long  # 16384 ticks: the spec's three-byte example
    with pytest.raises(ValueError):
        midi_file(program=128, pitch=60, velocity=100, note_seconds=1.0)


def test_missing_fluidsynth_is_explained(monkeypatch, capsys):
    monkeypatch.setattr(instruments.shutil, "which", lambda name: None)
    with pytest.raises(FluidsynthMissing, match="apt-get install fluidsynth"):
        instrument_note("piano", 0, 60)
    assert evaluation.main(["no-checkpoint", "no-dataset", "--ood"]) == 1
    assert "fluidsynth" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason=NO_FLUIDSYNTH)
def test_fluidsynth_plays_the_midi_file():
    note = instrument_note("flute", 73, 72)
    assert note.audio.shape == (120000,)
    assert abs(float(np.abs(note.audio).max()) - 0.9) < 1e-4
    assert np.abs(note.audio[:240]).max() > 0.0  # starts at the onset, not after leading silence


# --------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 24-example dataset (every source the checkout can supply) and a model trained on it for one epoch."""
    from training.dataset import build_dataset
    from training.train import main as train

    folder = tmp_path_factory.mktemp("evaluate")
    build_dataset(folder / "data", 24, seed=0, shard_size=24, ratios=(0.2, 0.2, 0.2, 0.2, 0.1, 0.1), workers=2,
                  progress=False)
    assert train([str(folder / "data"), "--out", str(folder / "run"), "--epochs", "1", "--batch-size", "8", "--flow",
                  "--threads", "2", "--no-progress"]) == 0
    return folder


def _table_rows(markdown: str, heading: str) -> list[list[str]]:
    section = markdown.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ")]
    return rows[1:]


@pytest.mark.slow
def test_tiny_evaluation_reports_every_method_and_set(tiny_run, monkeypatch, capsys):
    from training.dataset import SOURCES, ExampleSet

    reports = []
    real_evaluate = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **kw: reports.append(real_evaluate(*a, **kw)) or reports[-1])
    out = tiny_run / "report.md"
    code = evaluation.main([str(tiny_run / "run" / "latest"), str(tiny_run / "data"), "--split", "train",
                            "--limit", "1", "--search", "2", "--k", "2", "--neighbours", "8", "--workers", "2",
                            "--oracle", "--out", str(out), "--no-progress"])
    assert code == 0
    markdown = out.read_text()
    assert markdown == capsys.readouterr().out
    (report,) = reports

    present = {SOURCES[s] for s in np.unique(ExampleSet(tiny_run / "data", "train").meta["source"])}
    assert set(report.sets) == present | {"all"}
    expected_methods = {"model", "model_sample", "model_best_of_k", "init", "random", "nearest_neighbour", "search",
                        *(ORACLE + section for section in ORACLE_SECTIONS)}
    for name, scores in report.sets.items():
        assert set(scores.methods) == expected_methods
        for method in scores.methods.values():
            numbers = (method.median_mrstft, method.ratio_to_init, method.mean_lsd, method.mean_mfcc,
                       method.seconds_per_sound)
            assert all(math.isfinite(x) for x in numbers), (name, method)
        assert scores.methods["init"].ratio_to_init == pytest.approx(1.0)
        assert scores.methods["search"].renders_per_sound == 2
        assert scores.methods["model"].renders_per_sound == 0
        assert scores.methods["model_best_of_k"].renders_per_sound == 2
        rows = _table_rows(markdown, SET_LABELS[name])
        assert [r[0] for r in rows] == [report.method_labels[m] for m in scores.methods]
        assert all(math.isfinite(float(cell)) for row in rows for cell in row[1:])
    assert len(re.findall(r"model vs best of 2 random patches: (better|worse|tie)", markdown)) == len(report.sets)
    assert report.parameter_errors["model"]["all"].knobs > 0
    assert "## Parameter error" in markdown


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason=NO_FLUIDSYNTH)
def test_out_of_domain_notes_are_scored(tiny_run):
    from training.checkpoint import load_checkpoint

    notes = instrument_notes(programs={"organ": 16}, pitches=(60,))
    report = evaluation.evaluate_model(load_checkpoint(tiny_run / "run" / "latest"), tiny_run / "data", per_source=0,
                                       out_of_domain=notes, search=2, k=2, neighbours=4, workers=1)
    assert set(report.sets) == {OUT_OF_DOMAIN}
    assert report.sets[OUT_OF_DOMAIN].count == 1
    assert all(math.isfinite(m.median_mrstft) for m in report.sets[OUT_OF_DOMAIN].methods.values())
    assert report.parameter_errors == {}
    assert "goal ≤ 0.55 × init" in report.to_markdown()
