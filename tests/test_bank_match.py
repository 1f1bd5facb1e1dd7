"""Patch mode's analysis-made patches: the bank's nearest keyframes to a sound, played by Vital."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from converter.analysis.input_audio import read_audio
from converter.convert import (
    EFFECT_PREFIXES,
    Candidate,
    ScoredCandidate,
    analyse,
    build_candidates,
    convert,
    distinct_alternatives,
    matched_model_variants,
    rank_candidates,
    render_preview,
    score,
)
from converter.matching.bank_match import KEYFRAMES, MATCHES, NOISE_SHARES, matched_vectors
from converter.matching.resynthesis import analyse_for_resynthesis
from converter.vital.parameters import control, parameter_space
from converter.vital.preset import init_preset, preset_from_vector
from converter.vital.render import SAMPLE_RATE, render
from converter.vital.wavetables import default_bank, harmonic_levels

HELD = 1.2


def frame_at(table: int, wave_frame: float) -> np.ndarray:
    """The keyframe of a bank table that Vital plays at ``wave_frame`` (0..256)."""
    frames = default_bank()[table].frames
    return frames[round(wave_frame * (len(frames) - 1) / 256)]


def test_every_keyframe_of_the_bank_is_found_whatever_its_phase_and_level():
    bank = default_bank()
    for table in range(len(bank)):
        frames = bank[table].frames
        for k, frame in enumerate(frames):
            found = bank.closest_frames(harmonic_levels(-0.3 * np.roll(frame, 700))[0])[0]
            # tables share some frames (Basic Shapes starts with Sine): the one found sounds the same
            np.testing.assert_allclose(harmonic_levels(frame_at(*found)), harmonic_levels(frame), atol=1e-6)


def test_closest_frames_are_one_per_table_nearest_first():
    bank = default_bank()
    levels = harmonic_levels(bank[bank.index("Vowels")].frames[3])[0]
    matches = bank.closest_frames(levels, 5)
    assert matches[0][0] == bank.index("Vowels") and len({table for table, _ in matches}) == 5
    with pytest.raises(ValueError):
        bank.closest_frames(levels[:10])


def playing(table: str, wave_frame: float, noise: float = 0.0) -> dict:
    """Vital's init patch on one of the bank's tables, with a plucked envelope."""
    space, bank = parameter_space(), default_bank()
    vector = space.default_vector()
    vector[space.index("osc_1_wavetable")] = space["osc_1_wavetable"].normalise(bank.index(table))
    vector[space.index("osc_1_wave_frame")] = space["osc_1_wave_frame"].normalise(wave_frame)
    preset = preset_from_vector(vector, space=space)
    preset["settings"].update(env_1_decay=control("env_1_decay").raw_from_unit(0.5), env_1_sustain=0.3,
                              sample_on=float(noise > 0.0), sample_level=noise)
    return preset


@pytest.mark.parametrize("table, wave_frame", [("Square", 0.0), ("Vowels", 128.0), ("Organ", 256.0)])
def test_a_sound_played_on_the_bank_is_matched_to_its_table(tmp_path, table, wave_frame):
    source = tmp_path / "pluck.wav"
    soundfile.write(source, render(playing(table, wave_frame), 50, 0.8, HELD, HELD + 1.5).T, SAMPLE_RATE)
    analysis = analyse(read_audio(source))
    measurement = analyse_for_resynthesis(analysis.target, SAMPLE_RATE, analysis.note, KEYFRAMES)[0]
    space, bank = parameter_space(), default_bank()
    vectors = matched_vectors(measurement, space=space)
    assert len(vectors) == MATCHES + len(NOISE_SHARES)
    played = [(int(space["osc_1_wavetable"].denormalise(v[space.index("osc_1_wavetable")])),
               space["osc_1_wave_frame"].denormalise(v[space.index("osc_1_wave_frame")])) for v in vectors]
    assert len({found for found, _ in played[:MATCHES]}) == MATCHES and set(played[MATCHES:]) == {played[0]}
    assert all(v[space.index("sample_on")] == space["sample_on"].normalise(1.0) for v in vectors[MATCHES:])
    # The nearest is the played frame, or one that sounds the same (Odd Sweep passes through Square).
    truth = harmonic_levels(frame_at(bank.index(table), wave_frame))
    off = np.sum((harmonic_levels(frame_at(*played[0])) - truth) ** 2)
    assert off < 0.01 * np.sum((harmonic_levels(frame_at(bank.index("Saw"), 0.0)) - truth) ** 2)


def test_patch_mode_answers_with_a_matched_patch_closer_than_init(tmp_path, tiny_model):
    source = tmp_path / "reed.wav"
    soundfile.write(source, render(playing("Odd Sweep", 96.0, noise=0.2), 45, 0.8, HELD, HELD + 1.5).T, SAMPLE_RATE)
    analysis = analyse(read_audio(source))
    candidates = build_candidates(analysis, tiny_model, "patch")
    assert [c.method for c in candidates] == ["patch", "patch"] + ["matched"] * (MATCHES + len(NOISE_SHARES))
    offered = matched_model_variants(candidates[0].preset)
    assert len(offered) == 3 and all(variant.method == "matched-model" for variant in offered)
    # each part of the model that makes a preset not yet played plays on the matched patch: none twice
    played = [candidate.preset["settings"] for candidate in candidates[2:]]
    for candidate in candidates[2:]:
        assert all(variant in offered for variant in candidate.variants)
        played += [candidate.with_variant(variant).preset["settings"] for variant in candidate.variants]
    assert all(played.index(settings) == k for k, settings in enumerate(played))
    nearest = candidates[2].preset["settings"]
    assert candidates[2].variants == tuple(variant for variant in offered
                                           if any(nearest[name] != value for name, value in variant.knobs.items()))
    assert sum(len(candidate.variants) for candidate in candidates[3:]) < 3 * (len(candidates) - 3)

    result = convert(source, model=tiny_model, out_dir=tmp_path, mode="patch")
    init = score(analysis, render_preview(init_preset(), analysis.note))
    assert result.method == "matched" and result.distance < 0.6 * init, (result.distance, init)


def test_a_filtered_sound_is_matched_through_the_models_filter(tmp_path):
    source = tmp_path / "muted.wav"
    filtered = playing("Saw", 0.0)
    filtered["settings"].update(filter_1_on=1.0, filter_1_cutoff=62.0, filter_1_resonance=0.6, reverb_on=0.0)
    soundfile.write(source, render(filtered, 50, 0.8, HELD, HELD + 1.5).T, SAMPLE_RATE)
    analysis = analyse(read_audio(source))
    variants = matched_model_variants(filtered)
    filters, effects, both = (set(variant.knobs) for variant in variants)
    assert "filter_1_on" in filters and all(name.startswith("filter_") or name.endswith("_destination")
                                            for name in filters)
    assert all(name.startswith(EFFECT_PREFIXES) for name in effects) and "reverb_on" in effects
    assert filters | effects < both and "sample_on" in both

    ranked = rank_candidates([Candidate("matched", playing("Saw", 0.0), variants)], analysis)
    dry = next(entry.distance for entry in ranked if entry.candidate.method == "matched")
    best = ranked[0]
    assert best.candidate.method == "matched-model" and best.candidate.preset["settings"]["filter_1_on"] == 1.0
    # played in place on the dry patch's engine, it sounds as the same preset does on a fresh one
    fresh = score(analysis, render_preview(best.candidate.preset, analysis.note))
    assert best.distance < 0.3 * dry and fresh < 0.3 * dry, (best.distance, fresh, dry)


def test_variations_play_other_tables_than_the_answer_and_each_other():
    """Another version of the answer's table (the same preset at another random phase, or with the model's
    filters) is no choice; the closest version of each other table is, closest first."""
    saw, square, sine = (playing(table, 0.0) for table in ("Saw", "Square", "Sine"))
    preview = np.zeros((2, 10), np.float32)
    answer = ScoredCandidate(Candidate("matched", saw), preview, 0.50)
    others = [ScoredCandidate(Candidate("matched", sine), preview, 0.70),
              ScoredCandidate(Candidate("matched-model", saw), preview, 0.51),
              ScoredCandidate(Candidate("matched", square), preview, 0.65),
              ScoredCandidate(Candidate("matched-model", square), preview, 0.60)]
    assert [entry.distance for entry in distinct_alternatives(answer, others)] == [0.60, 0.70]
