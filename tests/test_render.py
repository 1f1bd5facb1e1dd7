"""Rendering with Vital's engine: format, length, pitch, repeatability and argument checks."""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
import vita

from converter.convert import with_knobs
from converter.vital.parameters import MODULATION_SOURCES, parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import (
    LENDABLE_NOTES,
    SAMPLE_RATE,
    SETTLE_SECONDS,
    TAIL_SECONDS,
    RenderError,
    RenderSession,
    lent_session,
    render,
)

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


def warmed_up_note(preset: dict, pitch: int = 60, velocity: float = 0.8, note_length: float = 0.5,
                   duration: float = 1.0) -> np.ndarray:
    """What a producer hears on pressing a key of ``preset`` in a Vital that played a note (another key)
    long ago: a fresh engine, a note that rings out in 12 s, then the note."""
    synth = vita.Synth()
    assert synth.load_json(json.dumps(preset))
    synth.render(pitch + 5, 0.8, 0.01, 12.0)
    return synth.render(pitch, velocity, note_length, duration)


def long_release_preset(**settings: float) -> dict:
    """The init patch with a 2 s release (and ``settings``): a note rings long after its key is up."""
    space = parameter_space()
    vector = space.default_vector()
    vector[space.index("env_1_release")] = space["env_1_release"].normalise(2.0 ** 0.25)
    preset = preset_from_vector(vector, name="long release")
    preset["settings"].update(settings)
    return preset


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


def test_render_plays_the_note_after_vitals_load_glide() -> None:
    """Right after a load Vital glides its smoothed controls from where they were (the init patch's,
    on a fresh engine): a quiet oscillator's first note starts loud and fades for ~0.1 s. A key pressed
    later plays at the preset's level from the start, and render plays that note."""
    preset = long_release_preset(osc_1_level=0.3)
    fresh = vita.Synth()
    assert fresh.load_json(json.dumps(preset))
    first = fresh.render(60, 0.8, 0.5, 1.0)
    audio = render(preset, note_length=0.5, duration=1.0)
    first_cycles = slice(0, SAMPLE_RATE // 100)
    assert np.abs(first[:, first_cycles]).max() > 2 * np.abs(audio[:, first_cycles]).max()
    np.testing.assert_allclose(audio, warmed_up_note(preset), atol=1e-5)


@pytest.mark.parametrize("settings", [{}, {"delay_on": 1.0}, {"velocity_track": 1.0}, {"polyphony": 1.0}])
def test_render_plays_what_a_warmed_up_vital_plays(settings: dict) -> None:
    """What a producer hears on pressing a key of the preset in a Vital that has played before."""
    preset = long_release_preset(**settings)
    audio = render(preset, velocity=0.6, note_length=0.5, duration=1.0)
    np.testing.assert_allclose(audio, warmed_up_note(preset, velocity=0.6), atol=1e-5)


def test_a_note_that_takes_over_a_velocity_0_settling_note_plays_otherwise() -> None:
    """Vital plays a velocity-0 note at full level, and a note that takes over a sounding voice starts
    otherwise for ~50 ms than a key pressed on a free one: such a settling note is no silence."""
    preset = long_release_preset()
    synth = vita.Synth()
    assert synth.load_json(json.dumps(preset))
    assert np.abs(synth.render(60, 0.0, SETTLE_SECONDS, SETTLE_SECONDS)).max() > 0.1
    taken_over = synth.render(60, 0.6, 0.5, 1.0)
    audio = render(preset, velocity=0.6, note_length=0.5, duration=1.0)
    blip = slice(0, SAMPLE_RATE // 20)
    assert np.abs(taken_over - audio)[:, blip].max() > 0.01
    np.testing.assert_allclose(taken_over[:, SAMPLE_RATE // 10 :], audio[:, SAMPLE_RATE // 10 :], atol=1e-5)


def test_a_session_plays_another_note_as_a_fresh_engine_does() -> None:
    """The dataset's cheap notes: one engine per patch, each note a fresh engine's note, whatever the one
    before still rang (a 2 s release, echoes)."""
    for settings in ({}, {"delay_on": 1.0, "delay_feedback": 0.9}, {"polyphony": 1.0, "portamento_time": 0.0}):
        preset = long_release_preset(**settings)
        session = RenderSession(preset, pitch=60, note_length=0.5, duration=1.0)
        assert session.can_play_fresh_notes()
        session.render()
        again = session.play(67, 0.6, 0.3, 0.8)
        fresh = render(preset, pitch=67, velocity=0.6, note_length=0.3, duration=0.8)
        assert np.abs(fresh).max() > 0.1
        np.testing.assert_allclose(again, fresh, atol=1e-5)


def test_a_session_knows_when_notes_glide_from_the_last_one() -> None:
    """Forced glide: every note glides in from the last one's pitch, so no later note starts fresh."""
    forced = long_release_preset(portamento_time=0.0, portamento_force=1.0)
    session = RenderSession(forced, pitch=60, note_length=0.5, duration=1.0)
    assert not session.can_play_fresh_notes()
    session.render()
    glided = session.play(67, 0.6, 0.3, 0.8)
    assert np.abs(glided - render(forced, pitch=67, velocity=0.6, note_length=0.3, duration=0.8)).max() > 0.1


def test_same_preset_renders_identically_whatever_came_before(init_preset: dict) -> None:
    """Vital glides smoothed controls (levels, cutoffs) from their previous values after a load.

    The first render of a preset must not start from the settings of the preset rendered before it.
    """
    space = parameter_space()
    other = space.default_vector()
    other[space.index("osc_1_level")] = 0.2
    expected = render(init_preset, pitch=60, velocity=0.8, note_length=0.5, duration=1.0)
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
    expected = render(preset, pitch=60, velocity=0.8, note_length=0.5, duration=1.0)
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


@pytest.mark.parametrize("effect", ["chorus", "flanger", "reverb", "delay", "phaser", None])
def test_a_session_plays_later_notes_as_fresh_ones_except_through_free_running_effects(space, effect) -> None:
    """The chorus's, flanger's and reverb's modulation runs on the engine's clock, so with one of them on only
    a session's first note is a fresh engine's note; every other knob change plays exactly as loaded fresh."""
    preset = effects_preset(effect) if effect else preset_from_vector(space.default_vector())
    knobs = {"filter_1_on": 1.0}
    session = RenderSession(preset, pitch=52, note_length=0.4)
    assert session.plays_as_fresh(knobs)
    session.render()
    fresh = render({**preset, "settings": {**preset["settings"], **knobs}}, pitch=52, note_length=0.4)
    expected = session.plays_as_fresh(knobs)
    assert expected == (effect not in ("chorus", "flanger", "reverb"))
    assert np.array_equal(session.render(knobs), fresh) == expected


def test_a_session_refuses_what_vital_cannot_load() -> None:
    with pytest.raises(RenderError):
        RenderSession("{not a preset")


@pytest.mark.parametrize("before", [None, "reverb", "delay"])
def test_a_preset_loaded_into_a_session_plays_as_a_fresh_engine_unless_an_effect_was_on(space, before) -> None:
    """``load`` saves a correction round the engine's construction. After a note that still rings (a 2 s
    release) the loaded preset plays bit for bit as on a fresh engine; after an effect (its buffers, its
    clock) the session says it would not."""
    first = long_release_preset() if before is None else effects_preset(before)
    vector = space.default_vector()
    vector[space.index("osc_1_level")] = 0.5
    vector[space.index("filter_1_on")] = 1.0
    other = preset_from_vector(vector)
    session = RenderSession(first, pitch=52, note_length=0.4, duration=0.6)
    session.render()
    assert session.loads_as_fresh(other) == (before is None)
    session.load(other)
    assert session.plays_as_fresh() == (before is None)
    if before is None:
        np.testing.assert_array_equal(session.render(), render(other, pitch=52, note_length=0.4, duration=0.6))
        assert not session.loads_as_fresh(effects_preset("delay"))
        session.load(effects_preset("delay"))
        assert not session.plays_as_fresh()  # and an effect in the preset loaded after another is not trusted


def test_lent_engines_play_one_conversion_after_another_as_fresh_engines(space) -> None:
    """A conversion's ranking, then its correction round with quieter and silenced second oscillators, then the
    next file at another note: every note a lent engine plays is a fresh engine's, bit for bit, and an engine
    is lent again until it has played ``LENDABLE_NOTES`` notes."""
    presets = []
    for level, release, osc_2 in ((1.0, 2.0, 1.0), (0.5, 0.3, 0.7), (0.8, 1.0, 0.0)):
        preset = long_release_preset(osc_1_level=level, osc_2_on=1.0, osc_2_level=osc_2)
        preset["settings"]["env_1_release"] = space["env_1_release"].raw_from_unit(release)
        presets.append(preset)
    _no_idle_engine(presets[0])
    engines = []
    for conversion in range(6):
        preset, pitch, length = presets[conversion % 3], 40 + 7 * conversion, 0.2 + 0.1 * conversion
        for knobs in ({}, {"osc_2_level": 0.6}, {"osc_2_on": 0.0}):
            with lent_session(preset, pitch=pitch, note_length=length, duration=length + 0.3) as session:
                engines.append(session)
                played = session.render(knobs)
            fresh = RenderSession(with_knobs(preset, knobs), pitch=pitch, note_length=length, duration=length + 0.3)
            np.testing.assert_array_equal(played, fresh.render())
    lent = [later is earlier for earlier, later in zip(engines, engines[1:])]
    assert lent == [(k + 1) % LENDABLE_NOTES != 0 for k in range(len(lent))]


@pytest.mark.parametrize("reason", ["effect", "error"])
def test_an_engine_that_played_an_effect_or_failed_is_not_lent_again(space, reason: str) -> None:
    """An effect's buffers and clock would carry into the next preset, and an engine that raised is in no known
    state: the next session gets a new engine."""
    preset = preset_from_vector(space.default_vector())
    _no_idle_engine(preset)
    with lent_session(preset, note_length=0.2, duration=0.4) as session:
        session.render()
    with pytest.raises(RenderError) if reason == "error" else nullcontext():
        with lent_session(preset, note_length=0.2, duration=0.4) as again:
            assert again is session
            again.render({"delay_on": 1.0} if reason == "effect" else {})
            if reason == "error":
                raise RenderError("Vital could not play the preset")
    with lent_session(preset, note_length=0.2, duration=0.4) as later:
        assert later is not session


def _no_idle_engine(preset: dict) -> None:
    """Whatever engine an earlier test left idle plays an effect, so the next session gets a new one."""
    with lent_session(preset, note_length=0.1, duration=0.2) as session:
        session.render({"delay_on": 1.0})
