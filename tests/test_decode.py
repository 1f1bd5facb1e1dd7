"""Model outputs to parameter vectors: column layout, per-kind decoding and ranked choices."""

from __future__ import annotations

import numpy as np
import pytest

from converter.matching.decode import (
    MODULATION_THRESHOLD,
    decode_outputs,
    output_slices,
    runner_up_vectors,
    top_choices,
)
from converter.vital.parameters import Kind, ParameterSpace
from converter.vital.preset import preset_from_vector
from converter.vital.wavetables import default_bank


def neutral_row(space: ParameterSpace) -> np.ndarray:
    """Outputs that decode to: first option, switches off, no routes, knobs at 0.5."""
    row = np.zeros(space.output_size, dtype=np.float32)
    for p, columns in zip(space.parameters, output_slices(space)):
        if p.kind is Kind.CATEGORICAL:
            row[columns] = -5.0
            row[columns.start] = 5.0
        elif p.kind is Kind.CONTINUOUS or p.kind is Kind.INTEGER:
            row[columns] = 0.5
    return row


def set_output(space: ParameterSpace, row: np.ndarray, name: str, values: float | list[float]) -> None:
    row[output_slices(space)[space.index(name)]] = values


def test_slices_tile_the_output_row_in_table_order(space: ParameterSpace) -> None:
    slices = output_slices(space)
    assert len(slices) == len(space)
    assert slices[0].start == 0 and slices[-1].stop == space.output_size
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    assert all(s.stop - s.start == p.size for s, p in zip(slices, space.parameters))
    assert slices[space.index("osc_1_wavetable")].stop - slices[space.index("osc_1_wavetable")].start == len(
        space["osc_1_wavetable"].choices
    )


def test_neutral_row_decodes_as_built(space: ParameterSpace) -> None:
    vector = decode_outputs(neutral_row(space), space)
    assert vector.shape == (1, len(space)) and vector.dtype == np.float32
    for p, value in zip(space.parameters, vector[0]):
        expected = 0.5 if p.kind in (Kind.CONTINUOUS, Kind.INTEGER) else 0.0
        assert value == expected, p.name


def test_categoricals_take_the_argmax(space: ParameterSpace) -> None:
    row = neutral_row(space)
    logits = np.full(len(space["filter_1_model"].choices), -1.0)
    logits[5] = 2.5
    logits[2] = 2.4
    set_output(space, row, "filter_1_model", logits.tolist())
    wavetable = np.linspace(-3.0, 3.0, len(space["osc_2_wavetable"].choices))
    set_output(space, row, "osc_2_wavetable", wavetable.tolist())
    vector = decode_outputs(row, space)[0]
    assert vector[space.index("filter_1_model")] == 5.0
    assert vector[space.index("osc_2_wavetable")] == len(wavetable) - 1


def test_switches_turn_on_at_one_half(space: ParameterSpace) -> None:
    rows = np.stack([neutral_row(space)] * 4)
    probabilities = [0.0, 0.49, 0.5, 0.93]
    for row, probability in zip(rows, probabilities):
        set_output(space, row, "reverb_on", probability)
    column = decode_outputs(rows, space)[:, space.index("reverb_on")]
    assert column.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_weak_modulation_routes_are_dropped_and_strong_ones_clipped(space: ParameterSpace) -> None:
    amounts = [0.0, 0.04, -0.049, 0.051, -0.3, 0.8, 1.7, -4.0]
    rows = np.stack([neutral_row(space)] * len(amounts))
    for row, amount in zip(rows, amounts):
        set_output(space, row, "lfo_1->filter_1_cutoff", amount)
    column = decode_outputs(rows, space)[:, space.index("lfo_1->filter_1_cutoff")]
    np.testing.assert_allclose(column, [0.0, 0.0, 0.0, 0.051, -0.3, 0.8, 1.0, -1.0], rtol=1e-6)
    assert 0.04 < MODULATION_THRESHOLD <= 0.051


def test_knobs_are_clipped_to_the_unit_range(space: ParameterSpace) -> None:
    values = [-0.3, 0.0, 0.37, 1.0, 1.4]
    rows = np.stack([neutral_row(space)] * len(values))
    for row, value in zip(rows, values):
        set_output(space, row, "filter_1_cutoff", value)
        set_output(space, row, "osc_1_transpose", value)
    decoded = decode_outputs(rows, space)
    expected = [0.0, 0.0, 0.37, 1.0, 1.0]
    np.testing.assert_allclose(decoded[:, space.index("filter_1_cutoff")], expected, rtol=1e-6)
    np.testing.assert_allclose(decoded[:, space.index("osc_1_transpose")], expected, rtol=1e-6)


def test_decoded_random_outputs_make_valid_presets(space: ParameterSpace) -> None:
    outputs = np.random.default_rng(0).normal(0.0, 2.0, size=(4, space.output_size)).astype(np.float32)
    vectors = decode_outputs(outputs, space)
    assert vectors.shape == (4, len(space))
    for vector in vectors:
        for p, value in zip(space.parameters, vector):
            if p.kind is Kind.CATEGORICAL:
                assert value == int(value) and 0 <= value < len(p.choices), p.name
            elif p.kind is Kind.SWITCH:
                assert value in (0.0, 1.0), p.name
            elif p.kind is Kind.MODULATION:
                assert value == 0.0 or MODULATION_THRESHOLD <= abs(value) <= 1.0, p.name
            else:
                assert 0.0 <= value <= 1.0, p.name
        assert preset_from_vector(vector, space=space)["settings"]["modulations"]


@pytest.mark.parametrize("width_change", [-1, 1])
def test_wrong_width_raises(space: ParameterSpace, width_change: int) -> None:
    with pytest.raises(ValueError, match=str(space.output_size)):
        decode_outputs(np.zeros((2, space.output_size + width_change), dtype=np.float32), space)


def test_parameter_count_is_not_an_output_width(space: ParameterSpace) -> None:
    assert space.output_size != len(space)
    with pytest.raises(ValueError):
        decode_outputs(np.zeros((1, len(space))), space)


def test_top_choices_are_ranked_best_first(space: ParameterSpace) -> None:
    rows = np.stack([neutral_row(space)] * 2)
    count = len(space["filter_1_model"].choices)
    first = np.zeros(count)
    first[[6, 1, 3]] = [3.0, 2.0, 1.0]
    second = np.arange(count, dtype=np.float64)
    set_output(space, rows[0], "filter_1_model", first.tolist())
    set_output(space, rows[1], "filter_1_model", second.tolist())
    ranked = top_choices(rows, "filter_1_model", 3, space)
    assert ranked.shape == (2, 3)
    assert ranked[0].tolist() == [6, 1, 3]
    assert ranked[1].tolist() == [count - 1, count - 2, count - 3]
    assert top_choices(rows[0], "filter_1_model", 1, space).tolist() == [[6]]
    assert top_choices(rows, "filter_1_model", count, space)[0, 0] == decode_outputs(rows, space)[
        0, space.index("filter_1_model")
    ]


def test_top_choices_of_a_wavetable_reads_its_own_columns(space: ParameterSpace) -> None:
    row = neutral_row(space)
    logits = np.zeros(len(space["osc_3_wavetable"].choices))
    logits[[12, 30]] = [4.0, 5.0]
    set_output(space, row, "osc_3_wavetable", logits.tolist())
    assert top_choices(row, "osc_3_wavetable", 2, space).tolist() == [[30, 12]]
    assert top_choices(row, "osc_1_wavetable", 1, space).tolist() == [[0]]


def test_runner_up_vectors_swap_in_the_models_second_choices(space: ParameterSpace):
    vector = space.default_vector()
    vector[space.index("osc_1_wavetable")] = default_bank().index("Saw")
    vector[space.index("filter_1_on")] = 1.0
    outputs = np.zeros((1, space.output_size), np.float32)
    slices = output_slices(space)
    wavetable, model = slices[space.index("osc_1_wavetable")], slices[space.index("filter_1_model")]
    outputs[0, wavetable.start + 1] = 3.0  # Saw, the answer
    outputs[0, wavetable.start + 4] = 2.0  # Basic Shapes, the runner-up
    outputs[0, model.start + 2] = 1.0  # Ladder, the answer
    outputs[0, model.start + 5] = 0.5  # Formant, the runner-up
    swapped = runner_up_vectors(outputs, vector, space, count=1)
    assert len(swapped) == 2
    assert swapped[0][space.index("osc_1_wavetable")] == 4
    assert swapped[1][space.index("filter_1_model")] == 5
