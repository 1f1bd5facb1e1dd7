"""Refinement: CMA-ES finds a better preset when one is near, and never returns a worse one."""

from __future__ import annotations

import numpy as np

from converter.analysis.input_audio import InputAudio
from converter.analysis.note import Note
from converter.convert import Candidate, ScoredCandidate, analyse, refine_best, render_preview, score
from converter.matching.refine import refine, search_knobs
from converter.matching.resynthesis import analyse_for_resynthesis, resynthesis_preset
from converter.matching.scoring import Comparison
from converter.vital.parameters import parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE, render
from converter.vital.wavetables import default_bank

SPACE = parameter_space()
PITCH, NOTE_LENGTH = 48, 0.3


def patch(decay: float, cutoff: float | None = None, table: str = "Saw") -> np.ndarray:
    """A plucked patch on one oscillator, through a filter when ``cutoff`` is given."""
    vector = SPACE.default_vector()
    vector[SPACE.index("osc_1_wavetable")] = default_bank().index(table)
    vector[SPACE.index("env_1_decay")] = decay
    vector[SPACE.index("env_1_sustain")] = 0.0
    if cutoff is not None:
        vector[SPACE.index("filter_1_on")] = 1.0
        vector[SPACE.index("filter_1_cutoff")] = cutoff
    return vector


def comparison_of(vector: np.ndarray) -> Comparison:
    audio = render(preset_from_vector(vector), PITCH, 0.8, NOTE_LENGTH, NOTE_LENGTH + 1.0)
    return Comparison(audio, SAMPLE_RATE, NOTE_LENGTH)


def run(target: np.ndarray, start: np.ndarray, renders: int, seed: int = 0):
    return refine(comparison_of(target), preset_from_vector(start), pitch=PITCH, note_length=NOTE_LENGTH,
                  seconds=600.0, max_renders=renders, seed=seed)


def test_moves_towards_the_target_and_never_worsens():
    result = run(patch(decay=0.25, cutoff=0.3), patch(decay=0.6, cutoff=0.7), renders=40)
    assert result.renders == 40
    assert result.improved and result.distance < 0.7 * result.start_distance
    settings = result.preset["settings"]
    assert settings["filter_1_cutoff"] < preset_from_vector(patch(decay=0.6, cutoff=0.7))["settings"]["filter_1_cutoff"]


def test_a_one_second_budget_never_worsens_the_distance():
    result = refine(comparison_of(patch(decay=0.3)), preset_from_vector(patch(decay=0.5)), pitch=PITCH,
                    note_length=NOTE_LENGTH, seconds=1.0)
    assert result.distance <= result.start_distance and result.renders >= 1


def test_keeps_the_start_when_nothing_beats_it():
    start = patch(decay=0.4)
    result = run(start, start, renders=8)
    assert result.renders == 8 and not result.improved
    assert result.preset["settings"] == preset_from_vector(start)["settings"]
    assert refine(comparison_of(start), preset_from_vector(start), pitch=PITCH, note_length=NOTE_LENGTH,
                  seconds=0.0).renders == 1


def test_is_deterministic_for_a_seed():
    runs = [run(patch(decay=0.25, cutoff=0.3), patch(decay=0.5, cutoff=0.6), renders=12, seed=3) for _ in range(2)]
    assert runs[0].preset == runs[1].preset and runs[0].distance == runs[1].distance


def test_searches_only_parts_that_sound():
    names = {knob.control for knob in search_knobs(preset_from_vector(patch(decay=0.3)))}
    assert {"env_1_attack", "env_1_decay", "osc_1_level"} <= names
    assert not {"osc_2_level", "filter_1_cutoff", "reverb_dry_wet"} & names
    knobs = search_knobs(preset_from_vector(patch(decay=0.3, cutoff=0.5)))
    assert knobs[0].control == "filter_1_cutoff"  # the most audible knob first
    cutoff = SPACE["filter_1_cutoff"]
    assert (knobs[0].low, knobs[0].high) == (cutoff.low, cutoff.high)  # ranges from the parameter table
    assert "filter_1_resonance" in {knob.control for knob in knobs}


def test_leaves_a_resynthesis_sweep_and_pitch_alone():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    audio = (np.sin(2 * np.pi * 220 * 2 ** (t / 12) * t) * np.exp(-3 * t)).astype(np.float32)
    tracked = analyse_for_resynthesis(audio, SAMPLE_RATE, Note(57, 0.0, True, 1.0, 0.8))[0]
    controls = {knob.control for knob in search_knobs(resynthesis_preset(tracked))}
    assert "osc_1_level" in controls and not any(control.startswith("modulation_") for control in controls)


def test_refine_best_keeps_only_a_closer_fresh_render():
    target = render(preset_from_vector(patch(decay=0.25, cutoff=0.3)), PITCH, 0.8, NOTE_LENGTH, NOTE_LENGTH + 1.0)
    analysis = analyse(InputAudio(target.mean(axis=0), SAMPLE_RATE))
    start = preset_from_vector(patch(decay=0.6, cutoff=0.7))
    preview = render_preview(start, analysis.note)
    best = ScoredCandidate(Candidate("patch", start), preview, score(analysis, preview))
    refined, improved = refine_best(best, analysis, seconds=600.0, max_renders=30)
    assert improved and refined.distance < best.distance and refined.candidate.method == "patch"
    assert refined.distance == score(analysis, render_preview(refined.candidate.preset, analysis.note))
    assert refine_best(refined, analysis, seconds=600.0, max_renders=1) == (refined, False)  # only the start played
