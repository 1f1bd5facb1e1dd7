"""End to end: sound files made from Vital renders in, loadable presets and previews out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import vita

from converter import convert as convert_module
from converter.analysis.audio import CLIP_SAMPLES, MODEL_SAMPLE_RATE, remove_dc, to_model_rate
from converter.analysis.input_audio import InputAudio, read_audio
from converter.analysis.note import Note, detect_note
from converter.convert import (
    ConversionError,
    analyse,
    convert,
    match_loudness,
    predict,
    summarise,
    tune,
)
from converter.matching.decode import decode_outputs
from converter.matching.distance import similarity
from converter.vital.parameters import parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE, TAIL_SECONDS, render
from converter.vital.wavetables import default_bank

SPACE = parameter_space()


def patch(table: str = "Saw", cutoff: float | None = None, decay: float = 0.45, sustain: float = 0.4) -> np.ndarray:
    vector = SPACE.default_vector()
    vector[SPACE.index("osc_1_wavetable")] = default_bank().index(table)
    vector[SPACE.index("env_1_decay")] = decay
    vector[SPACE.index("env_1_sustain")] = sustain
    if cutoff is not None:
        vector[SPACE.index("filter_1_on")] = 1.0
        vector[SPACE.index("filter_1_cutoff")] = cutoff
    return vector


def write_vital_sound(path: Path, pitch: int = 57, note_length: float = 0.5, lead_in: float = 0.1,
                      gain: float = 0.5, vector: np.ndarray | None = None, **soundfile_options) -> np.ndarray:
    """A Vital render after ``lead_in`` seconds of silence, written with soundfile; returns the stereo audio."""
    vector = patch() if vector is None else vector
    audio = render(preset_from_vector(vector), pitch, 0.8, note_length, note_length + 0.3) * gain
    audio = np.concatenate([np.zeros((2, round(lead_in * SAMPLE_RATE)), np.float32), audio], axis=1)
    soundfile.write(path, audio.T, SAMPLE_RATE, **soundfile_options)
    return audio


def test_converts_a_vital_render_into_a_preset_and_preview(tmp_path, tiny_model):
    source = tmp_path / "lead.wav"
    write_vital_sound(source, pitch=57, note_length=0.5)
    result = convert(source, model=tiny_model, mode="patch")

    assert result.preset_path == tmp_path / "lead.vital"
    assert result.preview_path == tmp_path / "lead.preview.wav"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lead.preview.wav", "lead.vital", "lead.wav"]
    assert result.pitched and result.note == 57 and abs(result.cents) < 5
    assert 0.4 < result.note_length < 0.8
    assert result.similarity == pytest.approx(similarity(result.distance))
    assert result.method in ("patch", "matched") and not result.refined and result.variations == ()
    assert {"read", "analyse", "candidates", "render", "score", "write", "total"} <= set(result.timings)

    text = result.preset_path.read_text()
    assert vita.Synth().load_json(text)
    preset = json.loads(text)
    assert preset["preset_name"] == "lead"
    assert f"{result.similarity:.0f}/100" in preset["comments"] and "A2" in preset["comments"]

    preview, rate = soundfile.read(result.preview_path, dtype="float32")
    assert rate == SAMPLE_RATE and preview.shape[1] == 2
    assert len(preview) == int((result.note_length + TAIL_SECONDS) * SAMPLE_RATE)
    assert np.abs(preview).max() > 0.01
    steps = preview * 32768.0
    assert np.abs(steps - np.round(steps)).max() > 0.01  # finer than 16 bits: quiet tails are kept


def test_the_default_mode_is_the_resynthesis_and_never_asks_a_model(tmp_path, monkeypatch):
    def no_model(threads):
        raise AssertionError("the default mode loaded a model")

    monkeypatch.setattr(convert_module, "_shipped_model", no_model)
    source = tmp_path / "lead.wav"
    write_vital_sound(source)
    result = convert(source)
    assert result.method == "resynth" and vita.Synth().load_json(result.preset_path.read_text())


def test_writes_into_out_dir_and_refuses_to_overwrite_when_asked(tmp_path, tiny_model):
    source = tmp_path / "pluck.flac"
    write_vital_sound(source, format="FLAC")
    out = tmp_path / "out"
    out.mkdir()
    result = convert(source, model=tiny_model, out_dir=out)
    assert result.preset_path.parent == out and result.preview_path.exists()
    with pytest.raises(ConversionError, match=r"^pluck.flac: pluck.vital already exists"):
        convert(source, model=tiny_model, out_dir=out, overwrite=False)


@pytest.mark.parametrize("suffix, options", [
    (".aiff", {"format": "AIFF"}),
    (".flac", {"format": "FLAC"}),
    (".ogg", {"format": "OGG"}),
])
def test_reads_common_formats(tmp_path, tiny_model, suffix, options):
    source = tmp_path / f"tone{suffix}"
    write_vital_sound(source, pitch=64, **options)
    result = convert(source, model=tiny_model)
    assert result.note == 64 and result.preset_path.exists() and result.preview_path.exists()


def test_refinement_keeps_or_improves_the_match(tmp_path, tiny_model):
    source = tmp_path / "bass.wav"
    write_vital_sound(source, pitch=45, note_length=0.4, vector=patch(cutoff=0.35, decay=0.3, sustain=0.0))
    (tmp_path / "plain").mkdir()
    (tmp_path / "refined").mkdir()
    plain = convert(source, model=tiny_model, out_dir=tmp_path / "plain", mode="patch")
    result = convert(source, model=tiny_model, out_dir=tmp_path / "refined", refine_seconds=1.0, mode="patch")
    # Refining also ranks the flow samples, and the search's answer is scored on the preview's own
    # render and window and kept only if closer: never worse than the plain conversion's answer.
    assert result.distance <= plain.distance
    assert vita.Synth().load_json(result.preset_path.read_text())


def test_prediction_is_tuned_and_offers_alternatives(tmp_path, tiny_model):
    source = tmp_path / "key.wav"
    write_vital_sound(source, pitch=62)
    analysis = analyse(read_audio(source))
    prediction = predict(tiny_model, analysis, candidates=3)
    assert len(prediction.candidates) == 3 and prediction.vector.shape == (len(SPACE),)
    assert len(prediction.runner_ups()) >= 1  # at least the runner-up wavetable
    assert predict(tiny_model, analysis).candidates == ()
    answer = decode_outputs(tiny_model.predict(analysis.clip[None, :]))[0]
    np.testing.assert_array_equal(prediction.vector, tune(answer, analysis.note))


def test_analyse_cuts_the_target_at_the_onset():
    silence = np.zeros(4410, np.float32)
    tone = np.sin(2 * np.pi * 220 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    analysis = analyse(InputAudio(np.concatenate([silence, tone]), SAMPLE_RATE))
    assert analysis.note.pitch == 57 and analysis.note.pitched
    assert np.abs(analysis.target[:10] - tone[:10]).max() < 0.05
    assert analysis.clip.shape == (CLIP_SAMPLES,)


def test_remove_dc_drops_an_offset_and_its_drift_and_keeps_the_lowest_bass():
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    bass = 0.5 * np.sin(2 * np.pi * 30 * t)
    drift = 0.3 + 0.2 * (t > 1.0)  # an offset that steps up with the note, as some Vital patches play
    kept = remove_dc((bass + drift).astype(np.float32), SAMPLE_RATE)
    middle = slice(SAMPLE_RATE // 2, SAMPLE_RATE - SAMPLE_RATE // 10)  # away from the step's edge
    assert abs(float(np.mean(kept[middle]))) < 0.01
    assert np.sqrt(np.mean(kept[middle] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.06)  # within 0.5 dB


def test_an_offset_changes_neither_the_match_nor_the_loudness(tmp_path):
    clean, offset = tmp_path / "clean.wav", tmp_path / "offset.wav"
    audio = write_vital_sound(clean, pitch=57, note_length=0.8)
    window = np.ones(2205) / 2205
    follows = np.convolve(np.abs(audio.mean(axis=0)), window, mode="same")  # as loud as the note, as some patches play
    soundfile.write(offset, (audio + 0.1 + follows).T, SAMPLE_RATE)  # and a constant one, as some recordings have
    results = [convert(path, mode="resynth") for path in (clean, offset)]
    assert results[1].note == results[0].note == 57
    assert results[1].distance < 1.5 * results[0].distance  # the offset's onset and end are heard (3x before)
    levels = [10 * np.log10(np.mean(soundfile.read(r.preview_path)[0] ** 2)) for r in results]
    assert levels[1] == pytest.approx(levels[0], abs=1.0)


def test_the_summary_names_the_effects_that_are_on_and_only_those():
    preset = preset_from_vector(patch())
    assert "effects" not in summarise(preset)
    preset["settings"].update(reverb_on=1.0, eq_on=1.0, chorus_on=0.0)
    assert summarise(preset).endswith("; effects: eq, reverb.")


def test_tune_moves_every_oscillator_by_one_interval():
    vector = SPACE.default_vector()
    for n, (on, transpose, cents) in enumerate([(1, 12, 30), (1, 19, -10), (0, 0, 0)], start=1):
        vector[SPACE.index(f"osc_{n}_on")] = on
        vector[SPACE.index(f"osc_{n}_transpose")] = SPACE[f"osc_{n}_transpose"].normalise(transpose)
        vector[SPACE.index(f"osc_{n}_tune")] = SPACE[f"osc_{n}_tune"].normalise(cents / 100)
    tuned = tune(vector, Note(60, -20.0, True, 1.0, 1.0))

    def semitones(n: int) -> float:
        return (SPACE[f"osc_{n}_transpose"].denormalise(tuned[SPACE.index(f"osc_{n}_transpose")])
                + SPACE[f"osc_{n}_tune"].denormalise(tuned[SPACE.index(f"osc_{n}_tune")]))

    assert semitones(1) == pytest.approx(-0.2, abs=1e-4)  # the lowest audible oscillator lands on the note
    assert semitones(2) == pytest.approx(6.4, abs=1e-4)  # a fifth-plus-octave layer keeps its interval
    assert semitones(3) == pytest.approx(-12.5, abs=1e-4)
    unpitched = Note(60, 0.0, False, 0.0, 1.0)
    np.testing.assert_array_equal(tune(vector, unpitched), vector)  # noise keeps the model's tuning


def test_tuned_preset_plays_at_the_input_pitch():
    vector = patch()
    vector[SPACE.index("osc_1_transpose")] = SPACE["osc_1_transpose"].normalise(12)
    tuned = tune(vector, Note(60, 25.0, True, 1.0, 0.5))
    audio = render(preset_from_vector(tuned), 60, 0.8, 0.5, 0.8).mean(axis=0)
    note = detect_note(to_model_rate(audio, SAMPLE_RATE), MODEL_SAMPLE_RATE)
    assert note.pitch == 60 and note.cents == pytest.approx(25, abs=3)


def test_loudness_matching_sets_vitals_volume_like_a_gain():
    preset = preset_from_vector(patch())
    preview = render(preset, 60, 0.8, 0.5, 0.8)
    target = preview.mean(axis=0) * 0.1  # 20 dB quieter than the preview
    matched, scaled = match_loudness(preset, preview, target)
    assert matched["settings"]["volume"] < preset["settings"]["volume"]
    again = render(matched, 60, 0.8, 0.5, 0.8)
    np.testing.assert_allclose(again, scaled, atol=2e-3)
    rms = np.sqrt(np.mean(scaled.mean(axis=0) ** 2))
    assert rms == pytest.approx(np.sqrt(np.mean(target**2)), rel=0.05)


def test_loudness_matching_never_clips():
    preset = preset_from_vector(patch())
    preview = render(preset, 60, 0.8, 0.5, 0.8)
    _, scaled = match_loudness(preset, preview, preview.mean(axis=0) * 50.0)
    assert np.abs(scaled).max() <= convert_module.PEAK_LIMIT + 1e-6
