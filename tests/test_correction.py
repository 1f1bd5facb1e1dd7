"""Correcting a resynthesis by what Vital plays of it: the ratio lands on the right partials, and a
real render comes closer round by round, never further."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from converter.analysis.input_audio import InputAudio, read_audio
from converter.analysis.note import Note, midi_to_hz
from converter.convert import analyse, build_candidates, convert, rank_candidates, refine_best, render_preview, score
from converter.matching.distance import SpectralRatio, prepare_target
from converter.matching.resynthesis import analyse_for_resynthesis, correct_resynthesis, resynthesis_preset
from converter.matching.resynthesis.analysis import partials
from converter.matching.resynthesis.correction import corrected
from converter.matching.resynthesis.patch import TABLE_NAMES, with_tables
from converter.vital.preset import read_preset
from converter.vital.render import SAMPLE_RATE

SECONDS = np.arange(SAMPLE_RATE) / SAMPLE_RATE
NOTE = Note(57, 0.0, True, 1.0, 0.6)


def vibrato_saw_with_breath() -> np.ndarray:
    """A decaying saw with vibrato and a noisy breath: a sound the open-loop measurement misses a little."""
    phase = 2 * np.pi * np.cumsum(220.0 * (1 + 0.01 * np.sin(2 * np.pi * 5 * SECONDS))) / SAMPLE_RATE
    saw = sum(np.sin(k * phase) / k for k in range(1, 30)) * np.exp(-2 * SECONDS)
    breath = np.random.default_rng(0).standard_normal(SECONDS.size) * 0.05 * np.exp(-6 * SECONDS)
    return (0.4 * saw + breath).astype(np.float32)


def ratio_of(values: np.ndarray, seconds: float = 1.0) -> SpectralRatio:
    """A ratio of ``values`` (frames, bands) over ``seconds``, bands from 100 Hz to 10 kHz."""
    return SpectralRatio(values, np.linspace(0.0, seconds, values.shape[0]), np.geomspace(100.0, 1e4, values.shape[1]))


def test_spectral_ratios_say_where_the_estimate_is_too_quiet():
    noise = np.random.default_rng(1).standard_normal(24000)
    target = prepare_target(noise, 24000)
    for ratio in target.spectral_ratios(3.0 * noise):  # the distance ignores the level, so the ratios do too
        assert np.allclose(ratio.log_ratio, 0.0, atol=1e-9)
    dull = np.convolve(noise, np.ones(8) / 8, mode="same")  # a low-pass: too quiet up high
    for ratio in target.spectral_ratios(dull):
        assert ratio.log_ratio.shape[1] == ratio.band_hz.size == 128
        assert np.mean(ratio.log_ratio[:, ratio.band_hz > 6000]) > 1.0
        assert abs(ratio.frame_seconds[1] - ratio.frame_seconds[0] - 0.5 * ratio.frame_seconds[2]) < 1e-12


def test_each_partial_moves_by_the_ratio_at_its_time_and_frequency():
    resynthesis = analyse_for_resynthesis(vibrato_saw_with_breath(), SAMPLE_RATE, NOTE)[0]
    harmonics, _ = partials(resynthesis.harmonic_frames)
    values = np.zeros((50, 64))
    values[:, ratio_of(values).band_hz > 2000] = 1.0  # one neper too quiet above 2 kHz
    values[25:] += 0.5  # and half a neper more in the second half of the second
    ratio = ratio_of(values)
    louder, _ = partials(corrected(resynthesis, (ratio, ratio), strength=1.0).harmonic_frames)
    audible = harmonics > 1e-6 * harmonics.max()
    gain = np.log(louder[audible] / harmonics[audible])
    hz = np.broadcast_to(midi_to_hz(NOTE.pitch) * np.arange(1, harmonics.shape[1] + 1), harmonics.shape)[audible]
    when = np.broadcast_to(resynthesis.times[:, None], harmonics.shape)[audible]
    assert np.allclose(gain[(hz < 1800) & (when < 0.4)], 0.0, atol=0.02)
    assert np.allclose(gain[(hz > 2400) & (when < 0.4)], 1.0, atol=0.02)
    assert np.allclose(gain[(hz < 1800) & (when > 0.6)], 0.5, atol=0.02)
    assert np.allclose(gain[(hz > 2400) & (when > 0.6)], 1.5, atol=0.02)
    halfway, _ = partials(corrected(resynthesis, (ratio,), strength=0.5).harmonic_frames)
    assert np.allclose(np.log(halfway[audible] / harmonics[audible]), 0.5 * gain, atol=1e-3)


def test_new_tables_keep_every_knob_of_a_variant():
    resynthesis = analyse_for_resynthesis(vibrato_saw_with_breath(), SAMPLE_RATE, NOTE)[0]
    preset = resynthesis_preset(resynthesis)
    preset["settings"]["osc_2_level"] = 0.6  # a quieter-residual variant
    ratio = ratio_of(np.ones((10, 32)))
    swapped = with_tables(preset, corrected(resynthesis, (ratio,)))
    before, after = preset["settings"], swapped["settings"]
    assert {key: value for key, value in after.items() if key != "wavetables"} == \
           {key: value for key, value in before.items() if key != "wavetables"}
    for osc, name in TABLE_NAMES.items():
        assert after["wavetables"][osc - 1]["name"] == name
        assert after["wavetables"][osc - 1] != before["wavetables"][osc - 1]
    assert after["wavetables"][2] == before["wavetables"][2]  # oscillator 3 plays no resynthesis table


def test_rounds_bring_a_real_render_closer_and_never_further():
    analysis = analyse(InputAudio(vibrato_saw_with_breath(), SAMPLE_RATE))
    best = rank_candidates(build_candidates(analysis, None, "resynth"), analysis)[0]
    candidate = best.candidate
    correction = correct_resynthesis(candidate.resynthesis, candidate.preset, best.preview, best.distance,
                                     analysis.comparison, lambda preset: render_preview(preset, analysis.note),
                                     seconds=600.0, max_rounds=3)
    assert correction.rounds == 3
    assert correction.distance < 0.9 * best.distance  # one round alone measured 15 % closer
    assert correction.distance == score(analysis, render_preview(correction.preset, analysis.note))
    assert np.array_equal(correction.preview, render_preview(correction.preset, analysis.note))  # it plays as scored
    refined, improved = refine_best(best, analysis, seconds=600.0, max_renders=2)
    assert improved and refined.candidate.method == "resynth" and refined.distance < best.distance
    assert refined.distance == score(analysis, render_preview(refined.candidate.preset, analysis.note))


def test_a_refined_conversion_writes_the_corrected_tables(tmp_path):
    source = tmp_path / "breath.wav"
    soundfile.write(source, vibrato_saw_with_breath(), SAMPLE_RATE)
    plain = convert(source, out_dir=tmp_path)
    (tmp_path / "refined").mkdir()
    refined = convert(source, out_dir=tmp_path / "refined", refine_seconds=1.5)
    assert refined.refined and refined.method == "resynth" and refined.distance < 0.9 * plain.distance
    analysis = analyse(read_audio(source))
    written = read_preset(refined.preset_path)
    assert score(analysis, render_preview(written, analysis.note)) == pytest.approx(refined.distance, rel=1e-3)
    assert written["settings"]["wavetables"][0] != read_preset(plain.preset_path)["settings"]["wavetables"][0]
