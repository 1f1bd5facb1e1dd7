"""Targets the audio can show: pitch in the heard note's frame, and no loss on what is not heard."""

from __future__ import annotations

import numpy as np
import torch

from converter.analysis.note import Note
from converter.convert import tune
from converter.matching.decode import output_slices
from converter.matching.scoring import Comparison
from converter.vital.parameters import parameter_space
from converter.vital.preset import init_preset, preset_from_vector, vector_from_preset
from converter.vital.render import SAMPLE_RATE, render
from training.losses import ParameterLoss, audible_mask, heard_note_targets

SPACE = parameter_space()


def _vector(**raw: float) -> np.ndarray:
    vector = vector_from_preset(init_preset(), SPACE)
    for name, value in raw.items():
        vector[SPACE.index(name)] = SPACE[name].normalise(value)
    return vector


def test_heard_note_targets_sound_as_the_played_patch():
    """A +12 oscillator played at 50 is the same sound as the relabelled patch played at 62, keytracked filter too."""
    played = _vector(osc_1_transpose=12.0, osc_2_on=1.0, osc_2_level=0.5, osc_2_transpose=19.0, filter_1_on=1.0,
                     filter_1_cutoff=70.0, filter_1_keytrack=1.0, filter_1_resonance=0.6)
    targets, notes, cents = heard_note_targets(played[None], np.array([50]))
    target = targets[0]
    assert notes[0] == 62 and cents[0] == 0.0
    assert SPACE["osc_1_transpose"].denormalise(target[SPACE.index("osc_1_transpose")]) == 0.0
    assert SPACE["osc_2_transpose"].denormalise(target[SPACE.index("osc_2_transpose")]) == 7.0
    assert SPACE["filter_1_keytrack"].denormalise(target[SPACE.index("filter_1_keytrack")]) == 0.0

    comparison = Comparison(render(preset_from_vector(played), 50, 0.8, 0.5, 1.5), SAMPLE_RATE, 0.5)
    relabelled = comparison.distance(render(preset_from_vector(target), 62, 0.8, 0.5, 1.5), SAMPLE_RATE)
    keytrack_ignored = target.copy()
    keytrack_ignored[SPACE.index("filter_1_cutoff")] = played[SPACE.index("filter_1_cutoff")]
    without = comparison.distance(render(preset_from_vector(keytrack_ignored), 62, 0.8, 0.5, 1.5), SAMPLE_RATE)
    assert relabelled < 0.3 * without, (relabelled, without)


def _loss_change(vector: np.ndarray, knobs: list[str]) -> float:
    """How much the loss moves when the raw outputs of ``knobs`` are pushed far from their targets."""
    loss = ParameterLoss()
    targets = torch.from_numpy(vector[None])
    mask = torch.from_numpy(audible_mask(vector[None]))
    raw = torch.zeros(1, SPACE.output_size)
    base = float(loss(raw, targets, mask)["total"])
    for name in knobs:
        raw[0, output_slices(SPACE)[SPACE.index(name)]] = 5.0
    return float(loss(raw, targets, mask)["total"]) - base


def test_no_loss_on_an_oscillator_that_is_off_or_silent():
    knobs = ["osc_2_transpose", "osc_2_wave_frame", "osc_2_unison_voices", "osc_2_wavetable", "osc_2_distortion_type"]
    heard = _vector(osc_2_on=1.0, osc_2_level=0.5)
    assert _loss_change(heard, knobs) > 0.01
    assert _loss_change(_vector(osc_2_on=0.0, osc_2_level=0.5), knobs) == 0.0
    assert _loss_change(_vector(osc_2_on=1.0, osc_2_level=0.02), knobs) == 0.0
    assert _loss_change(_vector(osc_2_on=1.0, osc_2_level=0.02), ["osc_2_level"]) > 0.0


def test_no_loss_on_a_filter_that_is_off():
    knobs = ["filter_1_cutoff", "filter_1_resonance", "filter_1_model"]
    assert _loss_change(_vector(filter_1_on=1.0), knobs) > 0.01
    assert _loss_change(_vector(filter_1_on=0.0), knobs) == 0.0


def test_flow_learns_only_audible_dimensions():
    """Changing an off oscillator's knobs leaves the flow loss exactly as it was; changing a heard one does not."""
    from training.model import ParameterModel

    flow = ParameterModel(flow={}).flow
    embedding = torch.randn(1, 256)

    @torch.no_grad()
    def flow_loss(vector: np.ndarray) -> float:
        torch.manual_seed(0)
        return float(flow.loss(embedding, torch.from_numpy(vector[None]), torch.from_numpy(audible_mask(vector[None]))))

    off = _vector(osc_2_on=0.0)
    moved = _vector(osc_2_on=0.0, osc_2_transpose=-24.0, osc_2_wave_frame=200.0, osc_2_unison_voices=7.0)
    assert flow_loss(off) == flow_loss(moved)
    heard = _vector(osc_2_on=1.0, osc_2_level=0.5)
    assert flow_loss(heard) != flow_loss(_vector(osc_2_on=1.0, osc_2_level=0.5, osc_2_transpose=-24.0))


def test_heard_note_targets_follow_the_converters_tune():
    """The dataset-wide shift is ``converter.convert.tune``'s rule: equal on real dataset-like vectors."""
    from training.sampling import draw_performance, patch_from_row

    rng = np.random.default_rng(5)
    vectors = np.stack([patch_from_row(rng.random(len(SPACE)), rng, draw_performance(rng), SPACE) for _ in range(40)])
    targets, _, _ = heard_note_targets(vectors, np.full(len(vectors), 60))
    oscillator_columns = [SPACE.index(f"osc_{n}_{k}") for n in (1, 2, 3) for k in ("transpose", "tune")]
    for vector, target in zip(vectors, targets):
        expected = tune(vector, Note(60, 0.0, True, 1.0, 1.0))
        np.testing.assert_allclose(target[oscillator_columns], expected[oscillator_columns], atol=1e-6)
