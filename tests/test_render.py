"""Rendering with Vital's engine: format, length, pitch, repeatability and argument checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import vita

from converter.vital.parameters import MODULATION_SOURCES, parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE, SETTLE_SECONDS, TAIL_SECONDS, RenderError, RenderSession, render

TIME_EFFECTS = ("chorus", "delay", "flanger", "reverb")


@pytest.fixture(scope="module")
def init_preset() -> dict:
    return preset_from_vector(parameter_space().default_vector(), name="init")


def effects_preset(*effects: str) -> dict:
    space = parameter_space()
    vector = space.default_vector()
    for effect in effects:
        vector[space.index(f"{effect}_on")] = 1.0
    return preset_from_vector(vector, name="effects")


def settled_note(preset: dict) -> np.ndarray:
    """What a producer hears on opening ``preset``: a fresh engine, a silent note, then the note (C4, 0.5 s of 1 s)."""
    synth = vita.Synth()
    assert synth.load_json(json.dumps(preset))
    synth.render(60, 0.0, SETTLE_SECONDS, SETTLE_SECONDS)
    return synth.render(60, 0.8, 0.5, 1.0)


def fundamental(audio: np.ndarray) -> float:
    """Frequency of the strongest spectral peak of a steady stretch (8x zero-padded Hann FFT)."""
    mono = audio.mean(axis=0, dtype=np.float64)[SAMPLE_RATE // 10 : SAMPLE_RATE // 10 + 16384]
    padded = 8 * len(mono)
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)), padded))
    return float(np.fft.rfftfreq(padded, 1.0 / SAMPLE_RATE)[np.argmax(spectrum)])


def test_sample_rate_is_the_engines() -> None:
    """Every length and pitch in vinv is counted at SAMPLE_RATE: a second of Vital's audio must be that long."""
    assert vita.Synth().render(60, 0.8, 0.5, 1.0).shape == (2, SAMPLE_RATE)


def test_render_returns_stereo_float32(init_preset: dict) -> None:
    audio = render(init_preset, pitch=60, note_length=0.5, duration=1.0)
    assert audio.dtype == np.float32 and audio.shape == (2, 44100)
    assert audio.flags["C_CONTIGUOUS"]
    assert np.all(np.isfinite(audio))


@pytest.mark.parametrize(
    ("duration", "samples"),
    [(1.0, 44100), (0.5, 22050), (0.25, 11025), (1 / 3, 14700), (2.5, 110250), (0.99999, 44099), (0.123456, 5444)],
)
def test_length_is_duration_times_rate_rounded_down(init_preset: dict, duration: float, samples: int) -> None:
    assert render(init_preset, note_length=0.1, duration=duration).shape == (2, samples)


def test_default_duration_adds_the_tail(init_preset: dict) -> None:
    assert render(init_preset, note_length=0.5).shape == (2, round((0.5 + TAIL_SECONDS) * SAMPLE_RATE))


def test_render_accepts_json_text(init_preset: dict) -> None:
    as_dict = render(init_preset, duration=0.5)
    as_text = render(json.dumps(init_preset), duration=0.5)
    assert as_text.shape == as_dict.shape == (2, 22050)
    assert np.all(np.isfinite(as_text)) and np.abs(as_text).max() > 0.05


def test_init_patch_sounds_at_middle_c(init_preset: dict) -> None:
    audio = render(init_preset, pitch=60, note_length=1.0, duration=1.5)
    assert np.sqrt(np.mean(np.square(audio, dtype=np.float64))) > 0.01
    assert 0.05 < np.abs(audio).max() <= 2.0
    tail = audio[:, -SAMPLE_RATE // 10 :]
    assert np.abs(tail).max() < 0.1 * np.abs(audio).max(), "the note should have been released"


@pytest.mark.parametrize(("pitch", "hz"), [(69, 440.0), (57, 220.0)])
def test_init_saw_plays_the_requested_pitch(init_preset: dict, pitch: int, hz: float) -> None:
    audio = render(init_preset, pitch=pitch, note_length=1.0, duration=0.6)
    assert fundamental(audio) == pytest.approx(hz, abs=1.0)


def test_held_random_phase_makes_fresh_engines_agree() -> None:
    """Vital starts unison voices at random phases unless told not to; we hold that at 0."""
    space = parameter_space()
    vector = space.default_vector()
    vector[space.index("osc_1_unison_voices")] = space["osc_1_unison_voices"].normalise(4)
    preset = preset_from_vector(vector)

    def two_renders() -> list[np.ndarray]:
        renders = []
        for _ in range(2):
            synth = vita.Synth()
            assert synth.load_json(json.dumps(preset))
            renders.append(synth.render(60, 0.8, 0.3, 0.4))
        return renders

    assert np.array_equal(*two_renders())
    preset["settings"]["osc_1_random_phase"] = 1.0
    assert not np.array_equal(*two_renders())


def test_render_plays_the_note_after_vitals_load_glide(init_preset: dict) -> None:
    """Right after a load Vital glides its smoothed controls up from nothing, so a fresh engine's first
    note fades in; the init saw starts at once when a key is pressed later, and render plays that note."""
    fresh = vita.Synth()
    assert fresh.load_json(json.dumps(init_preset))
    first = fresh.render(60, 0.8, 0.5, 1.0)
    audio = render(init_preset, note_length=0.5, duration=1.0)
    assert np.abs(first[:, :4]).max() < 0.01 < np.abs(audio[:, :4]).max()
    np.testing.assert_array_equal(audio, settled_note(init_preset))


def test_same_preset_renders_identically_whatever_came_before(init_preset: dict) -> None:
    """Vital glides smoothed controls (levels, cutoffs) from their previous values after a load.

    The first render of a preset must not start from the settings of the preset rendered before it.
    """
    space = parameter_space()
    other = space.default_vector()
    other[space.index("osc_1_level")] = 0.2
    expected = settled_note(init_preset)
    for _ in range(2):
        render(preset_from_vector(other), note_length=0.5, duration=1.0)
        audio = render(init_preset, pitch=60, velocity=0.8, note_length=0.5, duration=1.0)
        assert np.array_equal(audio, expected), f"off by up to {np.abs(audio - expected).max():.3f}"
    np.testing.assert_array_equal(render(init_preset, note_length=0.5, duration=1.0), expected)


@pytest.mark.parametrize("effect", TIME_EFFECTS)
def test_time_based_effects_render_the_same_whatever_came_before(effect: str) -> None:
    """Vital's effects keep running state (delay lines, modulation phase) from one note to the next.

    A preset must sound as it does on a fresh engine, or the same preset renders differently
    depending on what was rendered before it.
    """
    preset = effects_preset(effect)
    expected = settled_note(preset)
    for _ in range(2):
        render(effects_preset(*TIME_EFFECTS), note_length=0.5, duration=1.0)
        audio = render(preset, pitch=60, velocity=0.8, note_length=0.5, duration=1.0)
        assert np.array_equal(audio, expected), f"{effect}: off by up to {np.abs(audio - expected).max():.3f}"


@pytest.mark.parametrize("source", MODULATION_SOURCES)
def test_every_modulation_source_plays_the_same_each_time(source: str) -> None:
    """A grid route must not make a preset random: the model hears one render of it.

    Each render runs on its own fresh engine, so only the route itself can make them differ.
    """
    space = parameter_space()
    vector = space.default_vector()
    vector[space.index(f"{source}->osc_1_level")] = 0.7
    text = json.dumps(preset_from_vector(vector))
    renders = []
    for _ in range(2):
        synth = vita.Synth()
        assert synth.load_json(text)
        renders.append(synth.render(60, 0.8, 0.3, 0.4))
    assert np.array_equal(*renders), f"{source}: renders differ by up to {np.abs(renders[0] - renders[1]).max():.3f}"


@pytest.mark.parametrize("pitch", [-1, 128, 1000, float("nan"), float("inf"), float("-inf")])
def test_invalid_pitch_raises_value_error(init_preset: dict, pitch: float) -> None:
    with pytest.raises(ValueError):
        render(init_preset, pitch=pitch)  # type: ignore[arg-type]


@pytest.mark.parametrize("note_length", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_note_length_raises_value_error(init_preset: dict, note_length: float) -> None:
    with pytest.raises(ValueError, match="note_length"):
        render(init_preset, note_length=note_length)


@pytest.mark.parametrize("duration", [0.0, -0.5, float("nan"), float("inf"), float("-inf")])
def test_invalid_duration_raises_value_error(init_preset: dict, duration: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        render(init_preset, duration=duration)


def test_extreme_valid_pitches_render(init_preset: dict) -> None:
    for pitch in (0, 127):
        audio = render(init_preset, pitch=pitch, note_length=0.2, duration=0.3)
        assert audio.shape == (2, 13230) and np.all(np.isfinite(audio))


@pytest.mark.parametrize("knob, value", [("filter_1_cutoff", 40.0), ("env_1_release", 0.5), ("osc_1_level", 0.4)])
def test_a_session_with_a_knob_turned_plays_like_one_loaded_with_it(space, knob: str, value: float) -> None:
    """The search's cheap render: turning a knob in place sounds exactly like loading it turned."""
    vector = space.default_vector()
    vector[space.index("filter_1_on")] = 1.0
    preset = preset_from_vector(vector)
    turned = json.loads(json.dumps(preset))
    turned["settings"][knob] = value
    session = RenderSession(preset, sample_rate=24000, pitch=48, note_length=0.4)
    played = session.render({knob: value})
    loaded = RenderSession(turned, sample_rate=24000, pitch=48, note_length=0.4).render()
    np.testing.assert_array_equal(played, loaded)
    np.testing.assert_allclose(session.render({knob: value}), played, atol=1e-5)  # again: the same but for rounding
    untouched = RenderSession(preset, sample_rate=24000, pitch=48, note_length=0.4).render()
    np.testing.assert_allclose(session.render(), untouched, atol=1e-5)  # a knob not given plays as loaded
    assert np.abs(untouched - played).max() > 0.01
    assert played.shape == (2, round(1.4 * 24000)) and np.abs(played).max() > 0.01


def test_a_session_plays_what_render_plays(space) -> None:
    """At the preview's rate a session's note is the preview's note: the search and the preview judge one sound."""
    vector = space.default_vector()
    vector[space.index("filter_1_on")] = 1.0
    preset = preset_from_vector(vector)
    session = RenderSession(preset, sample_rate=SAMPLE_RATE, pitch=52, note_length=0.4)
    np.testing.assert_array_equal(session.render(), render(preset, pitch=52, note_length=0.4))


def test_a_session_plays_later_notes_as_fresh_ones_except_through_the_chorus(space) -> None:
    """The chorus's LFO runs on the engine's clock, so only a session's first note with it on is a
    fresh engine's note; every other knob change plays exactly as loaded fresh."""
    preset = preset_from_vector(space.default_vector())
    session = RenderSession(preset, pitch=52, note_length=0.4)
    session.render()
    for knobs in ({"filter_1_on": 1.0}, {"chorus_on": 1.0}):
        fresh = render({**preset, "settings": {**preset["settings"], **knobs}}, pitch=52, note_length=0.4)
        expected = session.plays_as_fresh(knobs)
        assert expected == ("chorus_on" not in knobs)
        assert np.array_equal(session.render(knobs), fresh) == expected
    chorused = {**preset, "settings": {**preset["settings"], "chorus_on": 1.0}}
    assert RenderSession(chorused, pitch=52, note_length=0.4).plays_as_fresh()


def test_a_session_refuses_what_vital_cannot_load() -> None:
    with pytest.raises(RenderError):
        RenderSession("{not a preset")
