"""The parameter table: what it covers, that it matches Vital's own controls, and its encoding."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import vita

from converter.vital.lfo_shapes import LFO_SHAPES
from converter.vital.parameters import (
    MODULATION_DESTINATIONS,
    MODULATION_SOURCES,
    Held,
    Kind,
    Parameter,
    ParameterSpace,
    modulation_name,
)
from converter.vital.preset import preset_from_vector
from converter.vital.wavetables import default_bank

REPO = Path(__file__).resolve().parents[1]

OSCILLATOR_KNOBS = (
    "on", "level", "transpose", "tune", "wavetable", "wave_frame", "unison_voices", "unison_detune",
    "unison_blend", "spectral_morph_type", "spectral_morph_amount", "distortion_type", "distortion_amount",
    "destination",
)
FILTER_KNOBS = ("on", "model", "style", "cutoff", "resonance", "drive", "blend", "keytrack", "filter_input")
ENVELOPE_KNOBS = (
    "delay", "attack", "hold", "decay", "sustain", "release", "attack_power", "decay_power", "release_power",
)
LFO_KNOBS = ("shape", "frequency", "fade_time", "smooth_time", "sync_type")
EFFECT_KNOBS = {
    "chorus": ("dry_wet", "feedback", "frequency", "mod_depth"),
    "compressor": ("mix", "attack", "release"),
    "delay": ("dry_wet", "feedback", "frequency"),
    "distortion": ("type", "drive", "mix"),
    "eq": ("low_gain", "band_gain", "high_gain"),
    "flanger": ("dry_wet", "feedback", "frequency", "mod_depth"),
    "phaser": ("dry_wet", "feedback", "frequency", "mod_depth"),
    "reverb": ("dry_wet", "decay_time", "size"),
}
REQUIRED = (
    *(f"osc_{n}_{knob}" for n in (1, 2, 3) for knob in OSCILLATOR_KNOBS),
    "sample_on", "sample_level", "sample_destination",
    *(f"filter_{n}_{knob}" for n in (1, 2) for knob in FILTER_KNOBS),
    *(f"env_{n}_{knob}" for n in (1, 2, 3) for knob in ENVELOPE_KNOBS),
    *(f"lfo_{n}_{knob}" for n in (1, 2, 3, 4) for knob in LFO_KNOBS),
    *(f"{effect}_on" for effect in EFFECT_KNOBS),
    *(f"{effect}_{knob}" for effect, knobs in EFFECT_KNOBS.items() for knob in knobs),
)
REQUIRED_HELD = (
    "osc_1_pan", "osc_2_pan", "osc_3_pan", "volume", "polyphony", "portamento_time",
    "osc_1_random_phase", "osc_2_random_phase", "osc_3_random_phase",
)


def is_special(parameter: Parameter) -> bool:
    """Rows that are not one Vital control: bank choices and modulation-grid cells."""
    return (
        parameter.kind is Kind.MODULATION
        or parameter.name.endswith("_wavetable")
        or (parameter.name.startswith("lfo_") and parameter.name.endswith("_shape"))
    )


def test_table_covers_the_required_parameters(space: ParameterSpace) -> None:
    missing = [name for name in REQUIRED if name not in space]
    assert not missing


def test_modulation_grid_is_every_source_times_every_destination(space: ParameterSpace) -> None:
    grid = {p.name for p in space.parameters if p.kind is Kind.MODULATION}
    expected = {modulation_name(s, d) for s in MODULATION_SOURCES for d in MODULATION_DESTINATIONS}
    assert grid == expected
    assert {"env_2", "lfo_1", "velocity"} <= set(MODULATION_SOURCES)
    assert {"filter_1_cutoff", "osc_1_wave_frame", "osc_1_level"} <= set(MODULATION_DESTINATIONS)
    assert all(space[name].group in {"modulation", "filter_envelope"} for name in grid)


def test_total_size_is_within_bounds(space: ParameterSpace) -> None:
    assert 150 <= len(space) <= 300
    assert len({p.name for p in space.parameters}) == len(space)
    assert space.output_size == sum(p.size for p in space.parameters)


def test_held_settings_cover_the_invisible_controls_with_reasons(space: ParameterSpace, synth: vita.Synth) -> None:
    held = {h.name: h for h in space.held}
    assert set(REQUIRED_HELD) <= set(held)
    controls = synth.get_controls()
    for h in space.held:
        assert h.name in controls, h.name
        assert h.name not in space, f"{h.name} is both held and predicted"
        assert isinstance(h.reason, str) and len(h.reason.strip()) >= 10, h.name
        if h.value is not None:
            details = synth.get_control_details(h.name)
            assert details.min <= h.value <= details.max, h.name
    assert all(held[f"osc_{n}_random_phase"].value == 0.0 for n in (1, 2, 3))


def test_every_plain_row_is_a_vita_control_with_its_range_and_options(
    space: ParameterSpace, synth: vita.Synth
) -> None:
    controls = synth.get_controls()
    for p in space.parameters:
        if is_special(p):
            continue
        assert p.name in controls, p.name
        details = synth.get_control_details(p.name)
        assert p.default == pytest.approx(details.default_value), p.name
        options = list(details.options)
        if p.kind is Kind.CATEGORICAL:
            assert details.is_discrete, p.name
            assert all(details.min <= choice <= details.max for choice in p.choices), p.name
            vital_labels = [options[int(choice)] for choice in p.choices]
            assert len(set(p.options)) == len(p.options) == len(vital_labels), p.name
            for ours, vitals in zip(p.options, vital_labels):
                # Vital repeats some labels ("FM <- Osc" twice); ours may add a suffix to tell them apart.
                assert ours == vitals or (vital_labels.count(vitals) > 1 and ours.startswith(vitals + " ")), p.name
            if not p.name.endswith("_destination"):
                assert (p.low, p.high) == (details.min, details.max), p.name
                assert len(p.options) == len(options), p.name
        elif p.kind is Kind.SWITCH:
            assert (details.min, details.max) == (0.0, 1.0) and options == ["Off", "On"], p.name
        else:
            assert (p.low, p.high) == (details.min, details.max), p.name
            assert (p.kind is Kind.INTEGER) == bool(details.is_discrete), p.name
            assert p.low < p.high, p.name


def test_special_rows_use_our_banks_and_real_modulation_targets(space: ParameterSpace, synth: vita.Synth) -> None:
    controls = synth.get_controls()
    bank = default_bank()
    for n in (1, 2, 3):
        table = space[f"osc_{n}_wavetable"]
        assert table.kind is Kind.CATEGORICAL and table.options == bank.names
        assert table.choices == tuple(float(k) for k in range(len(bank)))
        assert table.options[int(table.default)] == "Saw"
    for n in (1, 2, 3, 4):
        shape = space[f"lfo_{n}_shape"]
        assert shape.kind is Kind.CATEGORICAL and shape.options == tuple(s.name for s in LFO_SHAPES)
    assert all(destination in controls for destination in MODULATION_DESTINATIONS)


def test_vital_keeps_every_modulation_route_of_the_grid(space: ParameterSpace, synth: vita.Synth) -> None:
    """Vital silently drops routes with an unknown source or destination when it loads a preset."""
    grid = space.indices(Kind.MODULATION)
    for batch in (grid[:64], grid[64:128], grid[128:]):
        vector = space.default_vector()
        vector[batch] = 0.5
        assert synth.load_json(json.dumps(preset_from_vector(vector, space=space)))
        kept = {
            modulation_name(route["source"], route["destination"])
            for route in json.loads(synth.to_json())["settings"]["modulations"]
            if route["source"]
        }
        assert kept == {space.parameters[k].name for k in batch}


# From most to least heard; the names on one rank must weigh the same.
WEIGHT_RANKS = (
    ("filter_1_cutoff", "filter_2_cutoff"),
    ("osc_1_wave_frame", "osc_2_wave_frame", "osc_3_wave_frame", "env_1_attack"),
    ("filter_1_resonance", "filter_2_resonance", "env_2_decay", "env_2->filter_1_cutoff"),
    ("env_1_decay", "osc_1_unison_detune", "osc_1_level", "lfo_1->osc_1_level"),
)


def test_perceptual_weights_rank_errors_by_how_much_they_are_heard(space: ParameterSpace) -> None:
    ranks = [{space[name].weight for name in names} for names in WEIGHT_RANKS]
    assert all(len(rank) == 1 for rank in ranks), ranks
    weights = [rank.pop() for rank in ranks]
    assert weights == sorted(weights, reverse=True) and len(set(weights)) == len(weights)


def test_effects_weigh_least_and_the_loss_reads_every_weight(space: ParameterSpace) -> None:
    is_effect = [p.name.split("_")[0] in EFFECT_KNOBS for p in space.parameters]
    effects = [p for p, effect in zip(space.parameters, is_effect) if effect]
    others = [p for p, effect in zip(space.parameters, is_effect) if not effect]
    assert len(effects) >= 30 and {p.group for p in effects} == {"effects"}
    assert max(p.weight for p in effects) < min(p.weight for p in others)
    assert space.weights.dtype == np.float32
    np.testing.assert_array_equal(space.weights, np.array([p.weight for p in space.parameters], np.float32))


def test_continuous_round_trip(space: ParameterSpace) -> None:
    for p in (space["filter_1_cutoff"], space["env_1_attack_power"], space["lfo_1_smooth_time"]):
        raw = np.linspace(p.low, p.high, 17)
        values = [p.normalise(r) for r in raw]
        np.testing.assert_allclose(values, np.linspace(0.0, 1.0, 17), atol=1e-12)
        np.testing.assert_allclose([p.denormalise(v) for v in values], raw, rtol=1e-12, atol=1e-12)
        assert p.normalise(p.high + 100.0) == 1.0 and p.normalise(p.low - 100.0) == 0.0
        assert p.denormalise(1.5) == p.high and p.denormalise(-0.5) == p.low


def test_integer_round_trip(space: ParameterSpace) -> None:
    p = space["osc_1_transpose"]
    for raw in range(-48, 49):
        value = p.normalise(raw)
        assert 0.0 <= value <= 1.0
        assert p.denormalise(value) == raw
    step = 1.0 / (p.high - p.low)
    assert p.denormalise(p.normalise(7) + 0.4 * step) == 7.0
    assert p.denormalise(p.normalise(7) + 0.6 * step) == 8.0
    voices = space["osc_1_unison_voices"]
    assert [voices.denormalise(voices.normalise(v)) for v in range(1, 17)] == list(map(float, range(1, 17)))


def test_categorical_round_trip(space: ParameterSpace) -> None:
    for name in ("filter_1_model", "osc_1_destination", "osc_2_wavetable", "lfo_3_shape", "distortion_type"):
        p = space[name]
        for index, choice in enumerate(p.choices):
            assert p.normalise(choice) == index
            assert p.denormalise(index) == choice
        assert p.denormalise(len(p.choices) + 5) == p.choices[-1] and p.denormalise(-3) == p.choices[0]
        assert p.denormalise(1.4) == p.choices[1]
    destination = space["osc_1_destination"]
    assert destination.normalise(4.0) == 3  # Vital's "DIRECT OUT" snaps to the nearest allowed routing


def test_switch_round_trip(space: ParameterSpace) -> None:
    p = space["reverb_on"]
    assert [p.normalise(raw) for raw in (0.0, 1.0, 0.49, 0.5)] == [0.0, 1.0, 0.0, 1.0]
    assert [p.denormalise(value) for value in (0.0, 1.0, 0.3, 0.7)] == [0.0, 1.0, 0.0, 1.0]


def test_modulation_round_trip(space: ParameterSpace) -> None:
    p = space["lfo_1->filter_1_cutoff"]
    for amount in (-1.0, -0.25, 0.0, 0.6, 1.0):
        assert p.denormalise(p.normalise(amount)) == amount
    assert p.normalise(3.0) == 1.0 and p.denormalise(-2.0) == -1.0


def test_default_vector_is_valid_and_in_range(space: ParameterSpace) -> None:
    vector = space.default_vector()
    assert vector.shape == (len(space),) and vector.dtype == np.float32
    for p, value in zip(space.parameters, vector):
        if p.kind is Kind.CATEGORICAL:
            assert value == int(value) and 0 <= value < len(p.choices), p.name
        elif p.kind is Kind.MODULATION:
            assert value == 0.0, p.name
        else:
            assert 0.0 <= value <= 1.0, p.name


def test_version_is_stable_and_tracks_every_row(space: ParameterSpace) -> None:
    """Exported models carry the version: another process (another hash seed) must compute the same one."""
    script = "from converter.vital.parameters import parameter_space\nprint(parameter_space().version)"
    for seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True,
                                env=os.environ | {"PYTHONHASHSEED": seed})
        assert result.stdout.strip() == space.version
    assert ParameterSpace(space.parameters, space.held).version == space.version
    k = space.index("filter_1_cutoff")
    reweighted = list(space.parameters)
    reweighted[k] = dataclasses.replace(reweighted[k], weight=reweighted[k].weight + 0.25)
    assert ParameterSpace(tuple(reweighted), space.held).version != space.version
    reheld = (*space.held[:-1], Held(space.held[-1].name, 1.0, space.held[-1].reason))
    assert ParameterSpace(space.parameters, reheld).version != space.version


def test_parameters_md_is_generated_from_the_table(space: ParameterSpace) -> None:
    document = (REPO / "PARAMETERS.md").read_text(encoding="utf-8")
    assert document == space.to_markdown(), "regenerate: python -m converter.vital.parameters > PARAMETERS.md"
    assert space.version in document
