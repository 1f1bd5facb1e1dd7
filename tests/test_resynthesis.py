"""Resynthesis through real Vital renders: tables hold the input's harmonics, sweeps keep its time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile
import vita

from converter.analysis.input_audio import InputAudio
from converter.analysis.note import HOP_SECONDS, WINDOW_SECONDS, Note, yin
from converter.convert import Variant, analyse, build_candidates, convert, rank_candidates, render_preview, summarise
from converter.matching.resynthesis import analyse_for_resynthesis, resynthesis_preset
from converter.matching.scoring import Comparison
from converter.vital.render import SAMPLE_RATE, render
from converter.vital.wavetables import FRAME_PICK_SECONDS, FRAME_SIZE, decode_wave_data

SECONDS = np.arange(SAMPLE_RATE) / SAMPLE_RATE


def tone(frequency, seconds: float = 1.0, harmonics: int = 1, amplitude=0.5) -> np.ndarray:
    """Band-limited sawtooth partials 1..harmonics (1/n) at ``frequency`` (Hz, scalar or per sample)."""
    n = round(seconds * SAMPLE_RATE)
    frequency = np.broadcast_to(np.asarray(frequency, dtype=np.float64), (n,))
    phase = 2 * np.pi * np.cumsum(frequency) / SAMPLE_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return (np.broadcast_to(amplitude, (n,)) * wave).astype(np.float32)


def harmonic_levels(frame: np.ndarray, count: int) -> np.ndarray:
    """dB of harmonics 1..count of one table frame, relative to the strongest."""
    magnitude = np.abs(np.fft.rfft(frame))[1 : count + 1]
    return 20 * np.log10(magnitude / magnitude.max() + 1e-12)


def measured(audio: np.ndarray, pitch: int, length: float, cents: float = 0.0):
    """The first measurement: along the pitch track."""
    return analyse_for_resynthesis(audio, SAMPLE_RATE, Note(pitch, cents, True, 1.0, length))[0]


def levels_db(audio: np.ndarray, times: np.ndarray, window: float = 0.02) -> np.ndarray:
    half = round(window * SAMPLE_RATE / 2)
    return np.array([10 * np.log10(np.mean(audio[max(0, round(t * SAMPLE_RATE) - half):
                                                 round(t * SAMPLE_RATE) + half] ** 2) + 1e-12) for t in times])


def test_a_sine_gives_a_one_harmonic_table():
    resynthesis = measured(tone(220.0), 57, 0.8)
    middle = resynthesis.times.size // 2
    steady = resynthesis.harmonic_frames[middle]
    assert np.all(harmonic_levels(steady, 40)[1:] < -40)  # the window's own leakage stays under -40 dB
    residual = np.sqrt(np.mean(resynthesis.residual_frames[middle] ** 2))
    assert residual < 0.01 * np.sqrt(np.mean(steady**2))  # no noise under a steady sine


def test_keyframes_sit_on_vitals_frame_pick_grid_every_7_ms_as_far_as_two_tables_reach():
    short, long = measured(tone(220.0, 0.5), 57, 0.4), measured(tone(220.0, 3.0), 57, 2.8)
    for resynthesis in (short, long):  # harmonics every 7 ms, read, and swept, to the last pick
        np.testing.assert_allclose(np.diff(resynthesis.times), FRAME_PICK_SECONDS)
        assert resynthesis.harmonic_frames.shape == (resynthesis.times.size, FRAME_SIZE)
        assert resynthesis.duration == pytest.approx(max(resynthesis.times[-1], resynthesis.residual_times[-1]))
    assert 2.98 <= long.times[-1] <= 3.05  # the last at the sound's end, or a few picks after it
    np.testing.assert_array_equal(short.residual_times, short.times)
    picks = np.diff(long.residual_times) / FRAME_PICK_SECONDS  # 3 s need more than 255: some residual frames hold two
    assert long.residual_times.size == 256 and np.allclose(picks, np.round(picks)) and set(np.round(picks)) >= {1, 2}
    component = resynthesis_preset(short)["settings"]["wavetables"][0]["groups"][0]["components"][0]
    assert [keyframe["position"] for keyframe in component["keyframes"]] == list(range(short.times.size))


def test_a_long_sounds_harmonics_play_on_two_tables_each_silent_where_the_other_plays():
    resynthesis = measured(tone(220.0, 3.0), 57, 2.8)
    settings = resynthesis_preset(resynthesis)["settings"]
    assert settings["osc_3_on"] == 1.0 and settings["osc_3_destination"] == settings["osc_1_destination"]
    first, later = (frames(settings["wavetables"][osc - 1]) for osc in (1, 3))
    assert len(first) == 256 and len(first) + len(later) == resynthesis.times.size + 2
    assert not first[-1].any() and not later[0].any() and first[-2].any() and later[1].any()
    sweeps = {route["destination"]: route["source"] for route in settings["modulations"]
              if route["destination"].endswith("wave_frame")}
    assert sweeps == {"osc_1_wave_frame": "lfo_1", "osc_2_wave_frame": "lfo_3", "osc_3_wave_frame": "lfo_4"}
    summary = summarise(resynthesis_preset(resynthesis))
    assert "osc 3: vinv harmonics, later" in summary and "LFOs 1, 3 and 4 sweep the tables over 3.00 s" in summary


def frames(table: dict) -> list[np.ndarray]:
    keyframes = table["groups"][0]["components"][0]["keyframes"]
    return [decode_wave_data(keyframe["wave_data"]) for keyframe in keyframes]


def test_a_tremolo_plays_back_without_noise_between_its_partials():
    """Vital picks a frame every 7 ms: keyframes off that grid, or held for one pick here and two there, are
    picked irregularly, which spreads a tremolo's partials into the gaps between them. The harmonics'
    tables alone (the measured residual is an upper bound, ``residual_variants``), on a 3 s note: 59 dB
    under the partials on oscillator 1's table, across the hand-over and on oscillator 3's; 25 dB with 256
    keyframes over the note on one table (33 dB with 240 keyframes off the grid over 1.2 s)."""
    t = np.arange(round(3.0 * SAMPLE_RATE)) / SAMPLE_RATE
    audio = tone(220.0, 3.0, harmonics=8, amplitude=0.3 * (1 + 0.8 * np.sin(2 * np.pi * 6 * t)))
    preset = resynthesis_preset(measured(audio, 57, 3.0))
    preset["settings"]["osc_2_on"] = 0.0
    rendered = render(preset, 57, 0.8, 3.0, 3.3).mean(axis=0)

    def between_partials_db(signal: np.ndarray, start: float, end: float) -> float:
        segment = signal[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
        power = np.abs(np.fft.rfft(segment * np.hanning(segment.size), 1 << 17)) ** 2
        harmonic = np.fft.rfftfreq(1 << 17, 1 / SAMPLE_RATE) / 220.0
        off = np.abs(harmonic - np.round(harmonic))
        inside = (harmonic > 0.5) & (harmonic < 8.5)
        return 10 * np.log10(power[inside & (off > 0.1)].sum() / power[inside & (off < 0.05)].sum())

    for start, end in ((0.2, 1.5), (1.5, 2.1), (2.1, 2.9)):
        assert between_partials_db(audio, start, end) < -70 and between_partials_db(rendered, start, end) < -50


def test_a_saw_falls_as_one_over_n_in_the_table_and_in_vitals_render():
    resynthesis = measured(tone(110.0, harmonics=60), 45, 0.8)
    levels = harmonic_levels(resynthesis.harmonic_frames[resynthesis.times.size // 2], 20)
    np.testing.assert_allclose(levels, -20 * np.log10(np.arange(1, 21)), atol=1.0)

    rendered = render(resynthesis_preset(resynthesis), 45, 0.8, 0.8, 1.0).mean(axis=0)
    spectrum = np.abs(np.fft.rfft(rendered[11025:11025 + 16384] * np.hanning(16384)))
    bins = np.round(np.arange(1, 11) * 110.0 * 16384 / SAMPLE_RATE).astype(int)
    peaks = np.array([spectrum[b - 3 : b + 4].max() for b in bins])
    np.testing.assert_allclose(20 * np.log10(peaks / peaks[0]), -20 * np.log10(np.arange(1, 11)), atol=1.5)


def test_loudness_curve_and_pitch_glide_render_back():
    """A tone that decays 24 dB/s while gliding from A3 up a fifth is played back with both, in time."""
    seconds = 1.2
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    frequency = 220.0 * 2 ** (np.clip(t / 0.6, 0, 1) * 7 / 12)
    audio = tone(frequency, seconds, harmonics=8, amplitude=0.5 * 10 ** (-24 * t / 20))
    tracked, steady = analyse_for_resynthesis(audio, SAMPLE_RATE, Note(57, 0.0, True, 1.0, seconds))
    assert not steady.pitch.varies  # the other hypothesis: the pitch does not move at all
    resynthesis = tracked
    assert resynthesis.pitch.varies
    rendered = render(resynthesis_preset(resynthesis), 57, 0.8, seconds, seconds + 0.2).mean(axis=0)

    times = np.array([0.1, 0.3, 0.5, 0.7, 0.9, 1.1])
    expected = levels_db(audio, times)
    got = levels_db(rendered, times)
    np.testing.assert_allclose(got - got[0], expected - expected[0], atol=2.0)  # within 2 dB of the curve

    periods, _, _ = yin(rendered.astype(np.float64), SAMPLE_RATE)
    track = 12 * np.log2(SAMPLE_RATE / periods / 220.0)
    glide = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
    frames = np.round((glide - WINDOW_SECONDS / 2) / HOP_SECONDS).astype(int)  # YIN frames integrate their start
    wanted = 12 * np.log2(frequency[np.round(glide * SAMPLE_RATE).astype(int)] / 220.0)
    np.testing.assert_allclose(track[frames], wanted, atol=0.3)  # within 30 cents along the glide


def test_a_held_key_keeps_sounding_and_the_release_is_the_inputs_tail():
    """An organ-like note held 0.5 s then fading over 0.3 s: a key held 2 s still sounds at the end."""
    t = np.arange(round(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.where(t < 0.5, 1.0, 10 ** (-60 * (t - 0.5) / 0.3 / 20))
    resynthesis = measured(tone(196.0, 0.8, harmonics=5, amplitude=0.5 * envelope), 55, 0.5)
    preset = resynthesis_preset(resynthesis)
    held = render(preset, 55, 0.8, 2.0, 2.6).mean(axis=0)
    level = levels_db(held, np.array([0.3, 1.0, 1.9, 2.5]))
    assert abs(level[1] - level[0]) < 3 and abs(level[2] - level[0]) < 3  # sustains while held
    assert level[3] < level[0] - 30  # and fades once released
    higher = render(preset, 67, 0.8, 0.4, 0.5).mean(axis=0)  # another key transposes
    periods, _, _ = yin(higher[4410:].astype(np.float64), SAMPLE_RATE)
    assert 12 * np.log2(SAMPLE_RATE / np.median(periods) / 196.0) == pytest.approx(12, abs=0.3)


def test_the_tail_keeps_ringing_as_long_as_the_inputs():
    """A piano-like tail falls 80 dB over 0.8 s after key-up. Where the input is 60 dB under its held
    level it still rings, and so must the render, within 5 dB: a tail measured only to -50 dB, or
    faded a second time by the amp release on Vital's own curve, is 16-19 dB further down there."""
    t = np.arange(round(1.2 * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.where(t < 0.3, 1.0, 10 ** (-80 * (t - 0.3) / 0.8 / 20))
    audio = tone(220.0, 1.2, harmonics=5, amplitude=0.5 * envelope)
    rendered = render(resynthesis_preset(measured(audio, 57, 0.3)), 57, 0.8, 0.3, 1.2).mean(axis=0)
    wanted = levels_db(audio, np.array([0.2, 0.9]))
    played = levels_db(rendered, np.array([0.2, 0.9]))
    assert wanted[1] - wanted[0] == pytest.approx(-60, abs=2)
    assert played[1] - played[0] == pytest.approx(wanted[1] - wanted[0], abs=5)


def test_each_frame_is_heard_when_it_was_measured():
    """A sine that gains its third harmonic at 0.4 s: the render gains it at 0.4 s too."""
    t = np.arange(round(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * 220.0 * t
    audio = (0.5 * np.sin(phase) + 0.5 * (t >= 0.4) * np.sin(3 * phase)).astype(np.float32)
    resynthesis = measured(audio, 57, 0.8)
    rendered = render(resynthesis_preset(resynthesis), 57, 0.8, 0.8, 0.9).mean(axis=0)

    def third_harmonic_share(at: float) -> float:
        start = round(at * SAMPLE_RATE)
        spectrum = np.abs(np.fft.rfft(rendered[start : start + 2048] * np.hanning(2048)))
        first, third = (spectrum[round(k * 220.0 * 2048 / SAMPLE_RATE)] for k in (1, 3))
        return third / first

    onset = next(at for at in np.arange(0.2, 0.7, 0.005) if third_harmonic_share(at) > 0.5)
    assert onset + 2048 / SAMPLE_RATE / 2 == pytest.approx(0.4, abs=0.03)


def test_a_resynthesis_fades_in_instead_of_starting_as_a_step():
    """The first keyframe is measured over a window centred on the onset; played from the first
    sample, it would start at that window's level, 5 dB under the held one (a click). A tone that
    rises over 5 ms starts at least 8 dB under its held level in the render's first 3 ms."""
    t = np.arange(round(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    audio = tone(880.0, 0.5, harmonics=4, amplitude=0.5 * np.minimum(1.0, t / 0.005))
    rendered = render(resynthesis_preset(measured(audio, 81, 0.4)), 81, 0.8, 0.4, 0.5).mean(axis=0)
    start, held = levels_db(rendered, np.array([0.002, 0.05]), window=0.002)
    assert start < held - 8


def test_noise_is_resynthesised_from_the_residual(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(round(0.5 * SAMPLE_RATE)) / SAMPLE_RATE
    hats = (rng.standard_normal(t.size) * np.exp(-t / 0.08) * 0.5).astype(np.float32)
    analysis = analyse(InputAudio(hats, SAMPLE_RATE))
    assert not analysis.note.pitched
    [resynthesis] = analyse_for_resynthesis(analysis.target, SAMPLE_RATE, analysis.note)
    assert resynthesis.harmonic_level == 0.0 and resynthesis.residual_level > 0.0
    preset = resynthesis_preset(resynthesis)
    assert preset["settings"]["osc_1_on"] == 0.0 and preset["settings"]["osc_2_on"] == 1.0
    preview = render_preview(preset, analysis.note).mean(axis=0)
    assert levels_db(preview, np.array([0.05]))[0] > levels_db(preview, np.array([0.45]))[0] + 20  # it decays


@pytest.mark.parametrize("mode, methods", [("resynth", {"resynth"}), ("patch", {"patch", "matched", "matched-model"}),
                                           ("best", {"resynth", "patch", "hybrid"})])
def test_modes_choose_among_their_own_candidates_and_write_variations(tmp_path, tiny_model, mode, methods):
    source = tmp_path / "lead.wav"
    soundfile.write(source, tone(220.0, 0.6, harmonics=10), SAMPLE_RATE)
    result = convert(source, model=tiny_model, mode=mode, variations=2)
    assert result.method in methods
    assert {variation.method for variation in result.variations} <= methods | {"matched"}
    assert [v.distance for v in result.variations] == sorted(v.distance for v in result.variations)
    assert all(result.distance <= v.distance for v in result.variations)
    assert len(result.variations) == 2
    preset = json.loads(result.preset_path.read_text())
    kinds = [[table["name"] for table in preset["settings"]["wavetables"]]]
    for k, variation in enumerate(result.variations, start=1):
        assert variation.preset_path == tmp_path / f"lead.alt-{k}.vital"
        assert vita.Synth().load_json(variation.preset_path.read_text())
        other = json.loads(variation.preset_path.read_text())
        assert other["author"] == "vinv"  # vinv may replace it later
        kinds.append([table["name"] for table in other["settings"]["wavetables"]])
    assert preset["author"] == "vinv"
    assert result.summary in preset["comments"] and f"{result.similarity:.0f}/100" in preset["comments"]
    if mode == "resynth":  # beside the resynthesis, editable patches on the bank's nearest tables
        assert kinds[0][0] == "vinv harmonics"
        assert [variation.method for variation in result.variations] == ["matched", "matched"]
        assert all("vinv harmonics" not in tables for tables in kinds[1:])
    assert len({tuple(tables) for tables in kinds}) == len(kinds)  # each plays other tables


@pytest.mark.parametrize("mode", ["resynth", "best"])
def test_variants_play_on_the_loaded_engine_as_fresh_renders_of_them(tiny_model, mode):
    """The ranking plays a resynthesis's variants (quieter residuals; in ``best`` the hybrid, with the
    model's filters and effects) on one engine: each must sound exactly like its own preset loaded
    fresh, the long tail of the note before it included."""
    rng = np.random.default_rng(3)
    t = np.arange(round(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    breathy = tone(220.0, 1.5, harmonics=12) + 0.05 * rng.standard_normal(t.size).astype(np.float32)
    analysis = analyse(InputAudio((breathy * np.exp(-t / 0.5)).astype(np.float32), SAMPLE_RATE))
    [candidate, *_] = build_candidates(analysis, tiny_model, mode, quieter_residuals=True)
    assert build_candidates(analysis, tiny_model, mode)[0].variants == candidate.variants[2:]
    quieter = [Variant("resynth", {"osc_2_level": 0.6}), Variant("resynth", {"osc_2_on": 0.0})]
    assert list(candidate.variants[:2]) == quieter
    assert [variant.method for variant in candidate.variants[2:]] == (["hybrid"] if mode == "best" else [])
    ranked = rank_candidates([candidate], analysis)
    assert len({entry.distance for entry in ranked}) == len(candidate.variants) + 1
    assert ranked[0].fresh
    for entry in ranked:
        fresh = render_preview(entry.candidate.preset, analysis.note)
        if entry.fresh:
            np.testing.assert_array_equal(entry.preview, fresh)
        else:  # a hybrid with the model's chorus, at another phase of its LFO
            assert entry.candidate.preset["settings"]["chorus_on"]
            assert Comparison(fresh, SAMPLE_RATE, analysis.note.length).distance(entry.preview, SAMPLE_RATE) < 0.02


def test_the_preview_is_the_winners_render(tmp_path, tiny_model):
    source = tmp_path / "lead.wav"
    soundfile.write(source, tone(220.0, 0.6, harmonics=10), SAMPLE_RATE)
    result = convert(source, model=tiny_model, mode="best")
    preview, _ = soundfile.read(result.preview_path, dtype="float32")
    again = render_preview(json.loads(result.preset_path.read_text()), Note(result.note, result.cents, True, 1.0,
                                                                           result.note_length))
    assert np.abs(preview.T - again).max() < 2e-3  # same preset, same note: the same sound, 16-bit rounded


def _awkward(kind: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    if kind == "shorter than three periods":
        return np.sin(2 * np.pi * 55.0 * t[: round(0.04 * SAMPLE_RATE)]).astype(np.float32)
    if kind == "noise":
        return (0.3 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
    if kind == "silence inside":
        return (0.5 * np.sin(2 * np.pi * 220.0 * t) * ((t < 0.3) | (t > 0.7))).astype(np.float32)
    if kind == "clipped":
        return np.clip(3.0 * np.sin(2 * np.pi * 110.0 * t), -1.0, 1.0).astype(np.float32)
    return (0.6 + 0.2 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)  # "DC"


@pytest.mark.parametrize("kind", ["shorter than three periods", "noise", "silence inside", "clipped", "DC"])
def test_awkward_sounds_still_give_a_playable_resynthesis(tmp_path, kind):
    source = tmp_path / "awkward.wav"
    soundfile.write(source, _awkward(kind), SAMPLE_RATE)
    result = convert(source, mode="resynth")
    assert result.method == "resynth" and np.isfinite(result.distance)
    assert vita.Synth().load_json(result.preset_path.read_text())
    preview, _ = soundfile.read(result.preview_path, dtype="float32")
    assert np.isfinite(preview).all() and np.abs(preview).max() > 1e-3
