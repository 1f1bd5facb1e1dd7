"""Curves of the parameter table, priors fitted from the real presets, and the patches drawn from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converter.vital.parameters import Kind, control
from converter.vital.preset import preset_from_vector, read_preset, vector_from_preset
from converter.vital.render import render
from training.priors import fit_priors, patch_statistics
from training.sampling import (
    Performance,
    canonical,
    lhs_design,
    patch_from_priors,
    patch_from_row,
    recombined_patch,
)

PRESETS = Path(__file__).resolve().parents[2] / "shared" / "presets"
DRAWS = 300


def test_curves_round_trip_between_knob_and_unit(space):
    attack = space["env_1_attack"]
    assert attack.to_unit(1.0) == pytest.approx(attack.high**4)  # seconds = raw⁴
    assert attack.to_unit(attack.from_unit(0.25)) == pytest.approx(0.25)
    rate = space["lfo_1_frequency"]
    assert rate.from_unit(2.0) == pytest.approx(rate.normalise(1.0))  # Hz = 2^raw
    assert rate.to_unit(rate.from_unit(5.0)) == pytest.approx(5.0)
    cutoff = space["filter_1_cutoff"]
    assert cutoff.to_unit(cutoff.from_unit(69.0)) == pytest.approx(69.0)  # semitones as they are
    assert cutoff.from_unit(500.0) == 1.0  # clipped to the range
    volume = control("volume")
    assert volume.unit_from_raw(volume.raw_from_unit(-12.0)) == pytest.approx(-12.0)
    assert volume.unit_range[1] == pytest.approx(6.02, abs=0.01)


@pytest.fixture(scope="module")
def real(space) -> np.ndarray:
    if not PRESETS.is_dir():
        pytest.skip("no real presets in ../shared/presets")
    return np.stack([vector_from_preset(read_preset(path), space) for path in sorted(PRESETS.rglob("*.vital"))])


@pytest.fixture(scope="module")
def drawn(real, space) -> dict[str, np.ndarray]:
    priors = fit_priors(real, space)
    performance = Performance(pitch=60, velocity=0.8, note_length=1.0)
    rows = lhs_design(0, 0, DRAWS, space)
    return {
        "prior": np.stack([patch_from_priors(np.random.default_rng([1, k]), performance, priors, space)
                           for k in range(DRAWS)]),
        "recombined": np.stack([recombined_patch(np.random.default_rng([2, k]), performance, priors, space)
                                for k in range(DRAWS)]),
        "uniform": np.stack([patch_from_row(row, np.random.default_rng(k), performance, space)
                             for k, row in enumerate(rows)]),
    }


def test_fitting_is_deterministic(real, space):
    assert fit_priors(real, space).summary() == fit_priors(real, space).summary()


@pytest.mark.parametrize("kind", ["prior", "recombined"])
def test_drawn_patches_reproduce_real_preset_statistics(real, drawn, space, kind):
    want, got, uniform = (patch_statistics(v, space) for v in (real, drawn[kind], drawn["uniform"]))
    for effect in ("reverb", "chorus", "delay", "eq", "flanger"):
        assert got[f"{effect}_on_rate"] == pytest.approx(want[f"{effect}_on_rate"], abs=0.08), effect
    assert abs(got["median_routes"] - want["median_routes"]) <= 1  # the real median sits on a 1/2 boundary
    assert got["mean_routes"] == pytest.approx(want["mean_routes"], rel=0.2)
    assert got["no_route_rate"] == pytest.approx(want["no_route_rate"], abs=0.1)
    # The uniform sampler misses the real reverb rate by far more than the tolerance above.
    assert abs(uniform["reverb_on_rate"] - want["reverb_on_rate"]) > 0.3


@pytest.mark.parametrize("kind", ["prior", "recombined"])
def test_drawn_patches_are_valid_canonical_vectors(drawn, space, kind):
    for vector in drawn[kind]:
        np.testing.assert_array_equal(vector, canonical(vector, space))
    vectors = drawn[kind]
    grid = space.indices(Kind.MODULATION)
    knobs = np.setdiff1d(np.arange(len(space)), grid)
    assert np.all(np.abs(vectors[:, grid]) <= 1.0)
    categorical = space.indices(Kind.CATEGORICAL)
    sizes = np.array([space.parameters[k].size for k in categorical])
    assert np.all(vectors[:, categorical] < sizes)
    continuous = np.setdiff1d(knobs, categorical)
    assert np.all((vectors[:, continuous] >= 0.0) & (vectors[:, continuous] <= 1.0))


@pytest.mark.parametrize("kind", ["prior", "recombined"])
def test_drawn_patches_open_within_the_note_and_keep_a_loud_oscillator(drawn, space, kind):
    for vector in drawn[kind]:
        assert space["env_1_delay"].to_unit(vector[space.index("env_1_delay")]) + space["env_1_attack"].to_unit(
            vector[space.index("env_1_attack")]) <= 0.8 + 1e-3
        levels = [vector[space.index(f"osc_{n}_level")] for n in (1, 2, 3) if vector[space.index(f"osc_{n}_on")]]
        assert levels and max(levels) >= 0.45


def test_a_prior_patch_renders_audibly(real, space):
    priors = fit_priors(real, space)
    performance = Performance(pitch=57, velocity=0.8, note_length=0.5)
    vector = patch_from_priors(np.random.default_rng(7), performance, priors, space)
    audio = render(preset_from_vector(vector, space=space), performance.pitch, performance.velocity,
                   performance.note_length, performance.duration)
    assert np.all(np.isfinite(audio))
    assert float(np.max(np.abs(audio[:, : int(0.5 * 44100)]))) > 1e-2
