"""Vectors to presets and back through Vital itself, real presets, hostile files and atomic writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import vita

from converter.vital.lfo_shapes import LFO_SHAPES
from converter.vital.parameters import MAX_MODULATIONS, Kind, ParameterSpace, modulation_name
from converter.vital.preset import (
    AUTHOR,
    MAX_PRESET_BYTES,
    PresetError,
    parse_preset,
    preset_from_vector,
    read_preset,
    vector_from_preset,
    write_preset,
)
from converter.vital.render import render
from converter.vital.wavetables import default_bank, frames_from_vital

PRESETS = Path(__file__).resolve().parents[2] / "shared" / "presets"
PRESET_FILES = sorted(PRESETS.rglob("*.vital")) if PRESETS.is_dir() else []
NEEDS_PRESETS = pytest.mark.skipif(
    not PRESET_FILES, reason=f"third-party presets not present at {PRESETS} (shared/presets is not in the repository)"
)
SILENCE_RMS = 1e-3  # -60 dBFS
RELEASED_VITAL = (1, 5)  # Vital refuses presets whose major.minor is newer than its own


def random_vector(space: ParameterSpace, rng: np.random.Generator, routes: int = 6) -> np.ndarray:
    """A valid vector: option indices, 0/1 switches, integers on their grid, a few modulation routes."""
    vector = np.zeros(len(space), dtype=np.float32)
    for k, p in enumerate(space.parameters):
        if p.kind is Kind.CATEGORICAL:
            vector[k] = rng.integers(len(p.choices))
        elif p.kind is Kind.SWITCH:
            vector[k] = rng.integers(2)
        elif p.kind is Kind.INTEGER:
            steps = int(p.high - p.low)
            vector[k] = rng.integers(steps + 1) / steps
        elif p.kind is Kind.CONTINUOUS:
            vector[k] = rng.uniform()
    cells = rng.choice(space.indices(Kind.MODULATION), size=routes, replace=False)
    vector[cells] = rng.uniform(0.1, 1.0, size=routes) * rng.choice([-1.0, 1.0], size=routes)
    return vector


def audible_vector(space: ParameterSpace, rng: np.random.Generator) -> np.ndarray:
    """A random vector whose oscillator 1 is certain to sound.

    Oscillator 1 plays from the start of the note at a sustained level, within an octave of the note,
    through no filter, without ring modulation or FM from oscillators that may be off, without a
    spectral morph that can strip every harmonic, and with no modulation of its own knobs.
    """
    vector = random_vector(space, rng)
    for k in space.indices(Kind.MODULATION):
        if space.parameters[k].name.split("->")[1].startswith("osc_1_"):
            vector[k] = 0.0
    attack = space["env_1_attack"]
    fixed = {
        "osc_1_on": 1.0,
        "osc_1_level": 0.8,
        "env_1_sustain": 1.0,
        "env_1_delay": 0.0,
        "env_1_attack": attack.normalise(attack.default),
        "filter_1_on": 0.0,
        "filter_2_on": 0.0,
        "osc_1_spectral_morph_type": 0.0,
        "osc_1_distortion_type": float(rng.integers(7)),  # None .. Pulse: shapes of its own wave only
        "osc_1_transpose": space["osc_1_transpose"].normalise(float(rng.integers(-12, 13))),
    }
    for name, value in fixed.items():
        vector[space.index(name)] = value
    return vector


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def assert_in_ranges(space: ParameterSpace, vector: np.ndarray, label: str) -> None:
    assert vector.shape == (len(space),) and np.all(np.isfinite(vector)), label
    for p, value in zip(space.parameters, vector):
        if p.kind is Kind.CATEGORICAL:
            assert value == int(value) and 0 <= value < len(p.choices), f"{label}: {p.name} = {value}"
        elif p.kind is Kind.SWITCH:
            assert value in (0.0, 1.0), f"{label}: {p.name} = {value}"
        elif p.kind is Kind.MODULATION:
            assert -1.0 <= value <= 1.0, f"{label}: {p.name} = {value}"
        else:
            assert 0.0 <= value <= 1.0, f"{label}: {p.name} = {value}"


# (a) round trip through Vital


def test_random_vectors_survive_a_round_trip_through_vital(space: ParameterSpace, synth: vita.Synth) -> None:
    rng = np.random.default_rng(20240601)
    for trial in range(8):
        vector = random_vector(space, rng)
        assert synth.load_json(json.dumps(preset_from_vector(vector, space=space)))
        projected = vector_from_preset(json.loads(synth.to_json()), space)
        worst = int(np.argmax(np.abs(projected - vector)))
        assert np.allclose(projected, vector, atol=1e-3), (
            f"trial {trial}: {space.parameters[worst].name} {vector[worst]} -> {projected[worst]}"
        )


def test_vitals_init_patch_projects_onto_the_default_vector(space: ParameterSpace, synth: vita.Synth) -> None:
    synth.load_init_preset()
    projected = vector_from_preset(json.loads(synth.to_json()), space)
    np.testing.assert_allclose(projected, space.default_vector(), atol=1e-6)


def test_vector_must_fit_the_space(space: ParameterSpace) -> None:
    with pytest.raises(ValueError, match="expected a vector"):
        preset_from_vector(np.zeros(len(space) - 1), space=space)
    bad = space.default_vector()
    bad[space.index("osc_1_level")] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        preset_from_vector(bad, space=space)


# (b) written presets play


def test_random_presets_with_an_audible_oscillator_render_sound(space: ParameterSpace) -> None:
    rng = np.random.default_rng(7)
    for trial in range(8):
        vector = audible_vector(space, rng)
        audio = render(preset_from_vector(vector, space=space), pitch=60, note_length=0.5, duration=0.75)
        assert np.all(np.isfinite(audio)), f"trial {trial}: non-finite audio"
        assert rms(audio) > SILENCE_RMS, f"trial {trial}: silent (rms {rms(audio):.2e})"


# (c) our metadata, our data only


def test_presets_carry_our_metadata(space: ParameterSpace, synth: vita.Synth) -> None:
    preset = preset_from_vector(space.default_vector(), name="Glass Pad", comments="from pad.wav", space=space)
    assert (preset["author"], preset["preset_name"], preset["comments"]) == (AUTHOR, "Glass Pad", "from pad.wav")
    assert AUTHOR == "vinv"
    assert synth.load_json(json.dumps(preset))
    loaded = json.loads(synth.to_json())
    assert (loaded["author"], loaded["preset_name"], loaded["comments"]) == ("vinv", "Glass Pad", "from pad.wav")


def test_presets_declare_a_vital_version_that_released_vital_accepts(space: ParameterSpace) -> None:
    """Vital's LoadSave::jsonToState refuses a preset whose major.minor is newer than its own.

    vita reports its version as "99999.9.9"; a preset carrying that would not open in Vital 1.5.
    """
    version = preset_from_vector(space.default_vector(), space=space)["synth_version"]
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) <= RELEASED_VITAL, f"synth_version {version!r} is newer than any released Vital"


def test_presets_hold_only_our_wavetables_lfos_and_sample(space: ParameterSpace) -> None:
    bank = default_bank()
    rng = np.random.default_rng(11)
    for _ in range(3):
        settings = preset_from_vector(random_vector(space, rng), space=space)["settings"]
        assert len(settings["wavetables"]) == 3
        for table in settings["wavetables"]:
            assert table["name"] in bank.names and table["author"] == "vinv"
            assert np.array_equal(frames_from_vital(table), bank[bank.index(table["name"])].frames)
        assert {lfo["name"] for lfo in settings["lfos"]} <= {shape.name for shape in LFO_SHAPES}
        assert settings["sample"]["name"] == "vinv white noise"
        assert settings["sample"]["length"] == settings["sample"]["sample_rate"] == 44100


def test_held_settings_are_written(space: ParameterSpace) -> None:
    settings = preset_from_vector(random_vector(space, np.random.default_rng(5)), space=space)["settings"]
    for held in space.held:
        if held.value is not None:
            assert settings[held.name] == held.value, held.name


# (d) modulation routes


def test_modulation_routes_are_written_strongest_first(space: ParameterSpace) -> None:
    vector = space.default_vector()
    cells = space.indices(Kind.MODULATION)[[3, 40, 17]]
    vector[cells] = [0.2, -0.9, 0.5]
    settings = preset_from_vector(vector, space=space)["settings"]
    routes = [(m["source"], m["destination"]) for m in settings["modulations"]]
    assert len(routes) == MAX_MODULATIONS
    names = [space.parameters[k].name.split("->") for k in cells[[1, 2, 0]]]
    assert routes[:3] == [tuple(name) for name in names]
    assert [settings[f"modulation_{n}_amount"] for n in (1, 2, 3)] == pytest.approx([-0.9, 0.5, 0.2])
    assert routes[3:] == [("", "")] * (MAX_MODULATIONS - 3)
    assert all(settings[f"modulation_{n}_amount"] == 0.0 for n in range(4, MAX_MODULATIONS + 1))


def test_at_most_64_routes_keep_the_strongest(space: ParameterSpace) -> None:
    rng = np.random.default_rng(3)
    cells = space.indices(Kind.MODULATION)[:80]
    amounts = np.linspace(0.06, 1.0, len(cells)) * rng.choice([-1.0, 1.0], size=len(cells))
    rng.shuffle(amounts)
    vector = space.default_vector()
    vector[cells] = amounts
    settings = preset_from_vector(vector, space=space)["settings"]
    written = {
        modulation_name(m["source"], m["destination"]): settings[f"modulation_{slot + 1}_amount"]
        for slot, m in enumerate(settings["modulations"])
    }
    assert len(written) == MAX_MODULATIONS
    strongest = sorted(zip(np.abs(vector[cells]), cells), reverse=True)[:MAX_MODULATIONS]
    assert set(written) == {space.parameters[k].name for _, k in strongest}
    magnitudes = [abs(settings[f"modulation_{n}_amount"]) for n in range(1, MAX_MODULATIONS + 1)]
    assert magnitudes == sorted(magnitudes, reverse=True)
    for name, amount in written.items():
        assert amount == pytest.approx(vector[space.index(name)])


# (e) real presets


# Their oscillators sit at level 0 and sound only through routes the projection cannot keep (random
# sources, an LFO sequencing the level); Vital's glide after a load made them audible until renders settled it.
SILENT_AFTER_PROJECTION = ["v1.0.7__TheWayIAreSequence.vital", "v1.0.8__RobotsInThisGuys.vital"]


@NEEDS_PRESETS
def test_real_presets_project_into_range_and_still_sound(space: ParameterSpace) -> None:
    """Every one, held for a second: the slowest pads (Hyperevolver, LimboStrings) barely start in 0.3 s."""
    silent = []
    for path in PRESET_FILES:
        vector = vector_from_preset(read_preset(path), space)
        assert_in_ranges(space, vector, path.name)
        audio = render(preset_from_vector(vector, space=space), pitch=60, note_length=1.0, duration=1.0)
        assert np.all(np.isfinite(audio)), path.name
        if rms(audio) <= SILENCE_RMS:
            silent.append(path.name)
    assert sorted(silent) == SILENT_AFTER_PROJECTION, f"silent after projection: {silent}"


# (f) hostile input


_GOOD_SETTINGS = {"osc_1_level": 0.5}
HOSTILE = {
    "not JSON": "this is not a preset",
    "a JSON list": "[1, 2, 3]",
    "a JSON string": '"settings"',
    "missing settings": '{"preset_name": "x"}',
    "settings a string": '{"settings": "osc_1_level"}',
    "settings a list": '{"settings": [1, 2]}',
    "a number as a string": '{"settings": {"osc_1_level": "0.5"}}',
    "a boolean for a number": '{"settings": {"filter_1_cutoff": true}}',
    "null for a number": '{"settings": {"filter_1_cutoff": null}}',
    "NaN": '{"settings": {"osc_1_level": NaN}}',
    "Infinity": '{"settings": {"osc_1_level": Infinity}}',
    "-Infinity": '{"settings": {"osc_1_level": -Infinity}}',
    "1e999": '{"settings": {"osc_1_level": 1e999}}',
    "-1e999 as a modulation amount": (
        '{"settings": {"modulations": [{"source": "lfo_1", "destination": "filter_1_cutoff"}],'
        ' "modulation_1_amount": -1e999}}'
    ),
    "an integer of 5000 digits": '{"settings": {"osc_1_level": 1' + "0" * 5000 + "}}",
    "modulations not a list": '{"settings": {"modulations": {"source": "lfo_1"}}}',
    "a modulation entry that is a number": '{"settings": {"modulations": [7]}}',
    "a modulation source that is a number": '{"settings": {"modulations": [{"source": 1, "destination": "x"}]}}',
    "wavetables not a list": '{"settings": {"wavetables": "Saw"}}',
    "lfos not a list": '{"settings": {"lfos": 4}}',
    "deep nesting": "[" * 100_000,
    "deep nesting inside settings": '{"settings": ' + '{"a": ' * 100_000,
    "empty text": "",
    "only whitespace": " \n\t ",
    "a truncated preset": json.dumps({"settings": _GOOD_SETTINGS, "comments": "x" * 100})[:-20],
    "invalid UTF-8": b'{"settings": {"osc_1_level": 0.5, "\xff\xfe\xfa": 1}}',
    "binary noise": bytes(range(256)) * 4,
}


def load(text: str | bytes) -> np.ndarray:
    """What the converter does with a preset it is given: parse it, then project it."""
    return vector_from_preset(parse_preset(text))


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_presets_raise_preset_error(text: str | bytes) -> None:
    for given in (text, text.encode("utf-8")) if isinstance(text, str) else (text,):
        with pytest.raises(PresetError) as caught:
            load(given)
        assert isinstance(caught.value, ValueError)
        assert len(str(caught.value)) > 10


def test_integers_too_large_for_a_float_raise_preset_error() -> None:
    """JSON integers have no size limit; one past float range must not escape as OverflowError."""
    huge = "1" + "0" * 400
    with pytest.raises(PresetError):
        load('{"settings": {"filter_1_cutoff": ' + huge + "}}")
    with pytest.raises(PresetError):
        load(
            '{"settings": {"modulations": [{"source": "lfo_1", "destination": "filter_1_cutoff"}],'
            ' "modulation_1_amount": ' + huge + "}}"
        )


def test_parse_preset_rejects_numbers_that_overflow_to_infinity() -> None:
    """1e999 is JSON for infinity: parse_preset promises no NaN/Infinity, wherever it appears."""
    for text in ('{"settings": {}, "macro1": 1e999}', '{"settings": {"osc_1_pan": -1e999}}'):
        with pytest.raises(PresetError):
            parse_preset(text)


def _one_component(component: dict) -> dict:
    return {"groups": [{"components": [component]}]}


GARBAGE_WAVETABLES = [
    7,
    "Saw",
    None,
    [],
    {"groups": "none"},
    _one_component({"type": "Wave Source", "keyframes": [{"position": 0, "wave_data": "@@not base64"}]}),
    _one_component({"type": "Wave Source", "keyframes": [{"position": 0, "wave_data": 12}]}),
    _one_component({"type": "Wave Source", "keyframes": [{"position": [], "wave_data": "AAAA"}]}),
    _one_component({"type": "Wave Source", "keyframes": "all of them"}),
    _one_component({"type": "Audio File Source", "audio_file": 5, "window_size": "big",
                    "keyframes": [{"position": 0, "start_position": 0}]}),
]


@pytest.mark.parametrize("table", GARBAGE_WAVETABLES, ids=range(len(GARBAGE_WAVETABLES)))
def test_garbage_wavetables_fall_back_to_the_init_table(space: ParameterSpace, table: object) -> None:
    preset = {"settings": {"wavetables": [table, table, table], "lfos": [table] * 4}}
    vector = load(json.dumps(preset))
    assert_in_ranges(space, vector, "garbage wavetable")
    saw = float(default_bank().index("Saw"))
    assert [vector[space.index(f"osc_{n}_wavetable")] for n in (1, 2, 3)] == [saw] * 3
    assert [vector[space.index(f"lfo_{n}_shape")] for n in (1, 2, 3, 4)] == [0.0] * 4


def test_a_sparse_preset_projects_to_defaults(space: ParameterSpace) -> None:
    vector = load('{"settings": {"filter_1_cutoff": 136}}')
    expected = space.default_vector()
    expected[space.index("filter_1_cutoff")] = 1.0
    np.testing.assert_array_equal(vector, expected)


def test_oversized_preset_files_are_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.vital"
    with path.open("wb") as handle:
        handle.write(b'{"settings": {}, "comments": "')
        handle.truncate(70 * 1024 * 1024)
    assert path.stat().st_size > MAX_PRESET_BYTES
    with pytest.raises(PresetError, match="huge.vital.*more than"):
        read_preset(path)
    with pytest.raises(PresetError, match="more than"):
        parse_preset(b" " * (MAX_PRESET_BYTES + 1))


@pytest.mark.parametrize(
    ("label", "content"),
    [
        ("empty", b""),
        ("truncated", b'{"settings": {"osc_1_level": 0.5, "comm'),
        ("invalid-utf8", b'{"settings": {"\xc3\x28": 1}}'),
        ("deep", b"[" * 100_000),
        ("nan", b'{"settings": {"osc_1_level": NaN}}'),
        ("list", b"[]"),
    ],
)
def test_read_preset_names_the_file_in_its_errors(tmp_path: Path, label: str, content: bytes) -> None:
    path = tmp_path / f"{label}.vital"
    path.write_bytes(content)
    with pytest.raises(PresetError, match=f"^{label}.vital: "):
        read_preset(path)


def test_read_preset_refuses_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(PresetError, match="missing.vital: cannot read"):
        read_preset(tmp_path / "missing.vital")
    folder = tmp_path / "folder.vital"
    folder.mkdir()
    with pytest.raises(PresetError, match="folder.vital: cannot read"):
        read_preset(folder)


@NEEDS_PRESETS
def test_truncated_real_preset_is_refused(tmp_path: Path) -> None:
    data = PRESET_FILES[0].read_bytes()
    for cut in (1, len(data) // 2, len(data) - 1):
        path = tmp_path / "cut.vital"
        path.write_bytes(data[:cut])
        with pytest.raises(PresetError):
            read_preset(path)


# (g) atomic writes


def test_write_preset_writes_the_whole_file_and_nothing_else(space: ParameterSpace, tmp_path: Path) -> None:
    preset = preset_from_vector(random_vector(space, np.random.default_rng(1)), name="Written", space=space)
    target = tmp_path / "out.vital"
    assert write_preset(preset, target) == target
    assert os.listdir(tmp_path) == ["out.vital"]
    assert read_preset(target) == preset
    preset["preset_name"] = "Rewritten"
    write_preset(preset, target)
    assert os.listdir(tmp_path) == ["out.vital"]
    assert read_preset(target)["preset_name"] == "Rewritten"


def test_failed_write_leaves_the_old_file_and_no_temp_file(space: ParameterSpace, tmp_path: Path) -> None:
    target = tmp_path / "out.vital"
    write_preset({"settings": _GOOD_SETTINGS}, target)
    before = target.read_bytes()
    with pytest.raises(TypeError):
        write_preset({"settings": {"osc_1_level": object()}}, target)
    circular: dict = {"settings": {}}
    circular["settings"]["self"] = circular
    with pytest.raises(ValueError):
        write_preset(circular, target)
    assert os.listdir(tmp_path) == ["out.vital"]
    assert target.read_bytes() == before


def test_write_onto_a_directory_fails_without_leftovers(tmp_path: Path) -> None:
    """The rename is the step that fails here, after the temp file was written in full."""
    target = tmp_path / "taken.vital"
    target.mkdir()
    (target / "inside").write_text("keep")
    with pytest.raises(OSError):
        write_preset({"settings": _GOOD_SETTINGS}, target)
    assert os.listdir(tmp_path) == ["taken.vital"]
    assert os.listdir(target) == ["inside"]


def test_write_into_a_missing_directory_fails_without_leftovers(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_preset({"settings": _GOOD_SETTINGS}, tmp_path / "absent" / "out.vital")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="folder permissions are POSIX's")
def test_write_into_a_read_only_directory_fails_without_leftovers(tmp_path: Path, read_only) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    with read_only(folder):
        with pytest.raises(PermissionError):
            write_preset({"settings": _GOOD_SETTINGS}, folder / "out.vital")
        assert os.listdir(folder) == []
