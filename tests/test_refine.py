"""Refinement: it finds a better preset when one is near, and never returns a worse one."""

from __future__ import annotations

import numpy as np
import pytest

from converter.decode import output_slices
from converter.parameters import parameter_space
from converter.preset import preset_from_vector
from converter.refine import FILTER_ENVELOPE, refine, runner_up_starts, search_parameters
from converter.render import render
from converter.wavetables import default_bank

SPACE = parameter_space()
PITCH, NOTE_LENGTH = 48, 0.3


def patch(decay: float, frame: float = 0.0, table: str = "Saw") -> np.ndarray:
    """A plucked patch on one oscillator."""
    vector = SPACE.default_vector()
    vector[SPACE.index("osc_1_wavetable")] = default_bank().index(table)
    vector[SPACE.index("osc_1_wave_frame")] = frame
    vector[SPACE.index("env_1_decay")] = decay
    vector[SPACE.index("env_1_sustain")] = 0.0
    return vector


def target_of(vector: np.ndarray) -> np.ndarray:
    return render(preset_from_vector(vector), PITCH, 0.8, NOTE_LENGTH, NOTE_LENGTH + 0.5).mean(axis=0)


def test_moves_towards_the_target_and_never_worsens():
    target = target_of(patch(decay=0.25, frame=0.7, table="Bright Sweep"))
    start = patch(decay=0.55, frame=0.3, table="Bright Sweep")
    result = refine(target, [start], pitch=PITCH, note_length=NOTE_LENGTH, seconds=60.0, max_renders=14)
    assert result.renders == 14
    assert result.improved and result.distance < 0.8 * result.start_distance


def test_a_one_second_budget_never_worsens_the_distance():
    target = target_of(patch(decay=0.3))
    result = refine(target, [patch(decay=0.3)], pitch=PITCH, note_length=NOTE_LENGTH, seconds=1.0)
    assert result.distance <= result.start_distance
    assert result.renders >= 1


def test_keeps_the_start_when_nothing_beats_it():
    start = patch(decay=0.4)
    result = refine(target_of(start), [start], pitch=PITCH, note_length=NOTE_LENGTH, seconds=60.0, max_renders=5)
    assert result.renders == 5 and not result.improved
    assert result.distance == result.start_distance == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(result.vector, start)
    assert refine(target_of(start), [start], pitch=PITCH, note_length=NOTE_LENGTH, seconds=0.0).renders == 1


def test_picks_the_best_starting_point():
    target = target_of(patch(decay=0.3, table="Square"))
    starts = [patch(decay=0.3, table="Sine"), patch(decay=0.3, table="Square")]
    result = refine(target, starts, pitch=PITCH, note_length=NOTE_LENGTH, seconds=60.0, max_renders=2)
    assert result.improved and result.distance == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(result.vector, starts[1])


def test_is_deterministic_for_a_seed():
    target = target_of(patch(decay=0.25, frame=0.6, table="Bright Sweep"))
    start = patch(decay=0.5, frame=0.2, table="Bright Sweep")
    runs = [refine(target, [start], pitch=PITCH, note_length=NOTE_LENGTH, seconds=60.0, max_renders=6, seed=3)
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].vector, runs[1].vector)
    assert runs[0].distance == pytest.approx(runs[1].distance, rel=1e-6)


def test_searches_only_parts_that_sound():
    vector = patch(decay=0.3)  # Saw has one frame; filters and oscillators 2-3 are off
    names = search_parameters(vector)
    assert {"env_1_attack", "env_1_decay", "osc_1_level"} <= set(names)
    assert not {"osc_1_wave_frame", "osc_2_level", "filter_1_cutoff", FILTER_ENVELOPE} & set(names)
    vector[SPACE.index("filter_1_on")] = 1.0
    vector[SPACE.index("osc_1_wavetable")] = default_bank().index("PWM")
    names = search_parameters(vector)
    assert names[0] == "filter_1_cutoff"  # the most audible parameter is tried first
    assert {"osc_1_wave_frame", "filter_1_resonance", FILTER_ENVELOPE} <= set(names)


def test_runner_up_starts_swap_in_the_models_second_choices():
    vector = patch(decay=0.3)
    vector[SPACE.index("filter_1_on")] = 1.0
    outputs = np.zeros((1, SPACE.output_size), np.float32)
    slices = output_slices(SPACE)
    wavetable, model = slices[SPACE.index("osc_1_wavetable")], slices[SPACE.index("filter_1_model")]
    outputs[0, wavetable.start + 1] = 3.0  # Saw, the answer
    outputs[0, wavetable.start + 4] = 2.0  # Basic Shapes, the runner-up
    outputs[0, model.start + 2] = 1.0  # Ladder, the answer
    outputs[0, model.start + 5] = 0.5  # Formant, the runner-up
    starts = runner_up_starts(outputs, vector, count=1)
    assert len(starts) == 2
    assert starts[0][SPACE.index("osc_1_wavetable")] == 4
    assert starts[1][SPACE.index("filter_1_model")] == 5
