"""Parameter vectors to ``.vital`` presets and back, and safe reading of presets users give us.

Every preset we write starts from Vital's init patch with our own wavetables and our own noise
sample in it (never Vital's factory data); the vector then sets each predicted parameter, the held
settings are pinned, and the non-zero cells of the modulation grid become modulation routes.

A user's preset projects into the same space: settings are read and clipped to our ranges,
categoricals snap to the nearest allowed option, each oscillator's wavetable maps to the bank table
with the closest harmonic spectrum (a table we cannot decode, such as one built from Vital's line
or audio-file sources without wave frames, maps to "Saw", Vital's own init table), each LFO curve to
the closest shape of our LFO bank, and modulation routes outside our grid are dropped.
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from converter.files import atomic_write_bytes
from converter.vital.lfo_shapes import LFO_SHAPES, nearest_lfo_shape
from converter.vital.parameters import (
    INIT_WAVETABLE,
    MAX_MODULATIONS,
    Kind,
    ParameterSpace,
    parameter_space,
)
from converter.vital.wavetables import bank_table, default_bank, frames_from_vital

AUTHOR = "vinv"
MAX_PRESET_BYTES = 64 * 1024 * 1024  # real presets with embedded samples stay well under this
NOISE_SEED = 20240601
VITAL_VERSION = "1.5.5"  # Vital refuses presets claiming a newer version than its own (vita says 99999.9.9)


class PresetError(ValueError):
    """A preset file that is not a readable Vital preset."""


@lru_cache(maxsize=1)
def _template() -> str:
    """Vital's init patch with our wavetables and noise sample, as JSON text (copied per preset)."""
    import vita

    preset = json.loads(vita.Synth().to_json())  # a new engine holds the init patch
    preset["synth_version"] = VITAL_VERSION
    preset["author"] = AUTHOR  # how vinv knows its own presets, and never replaces a user's
    init_table = bank_table(INIT_WAVETABLE).to_vital()
    preset["settings"]["wavetables"] = [copy.deepcopy(init_table) for _ in range(3)]
    noise = np.random.default_rng(NOISE_SEED).integers(-32767, 32768, size=44100, dtype=np.int16)
    preset["settings"]["sample"] = {
        "length": len(noise),
        "name": "vinv white noise",
        "sample_rate": 44100,
        "samples": base64.b64encode(noise.astype("<i2").tobytes()).decode("ascii"),
    }
    return json.dumps(preset)


def init_preset() -> dict:
    """A fresh copy of Vital's init patch with our wavetables and noise sample: every preset starts here."""
    return json.loads(_template())


def add_route(settings: dict, source: str, destination: str, amount: float, bipolar: bool = False) -> None:
    """Connect ``source`` to ``destination`` in the first free modulation slot of ``settings``."""
    routes = settings["modulations"]
    for slot, route in enumerate(routes):
        if not route.get("source") and not route.get("destination"):
            routes[slot] = {"source": source, "destination": destination}
            settings[f"modulation_{slot + 1}_amount"] = float(amount)
            settings[f"modulation_{slot + 1}_bipolar"] = 1.0 if bipolar else 0.0
            return
    raise ValueError(f"no free modulation slot for {source}->{destination}")


def preset_from_vector(
    vector: np.ndarray,
    *,
    name: str = "vinv",
    comments: str = "",
    space: ParameterSpace | None = None,
) -> dict:
    """Build a complete Vital preset (JSON-ready dict) from a parameter vector."""
    space = space or parameter_space()
    vector = np.asarray(vector, dtype=np.float64)
    if vector.shape != (len(space),):
        raise ValueError(f"expected a vector of {len(space)} values, got shape {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise ValueError("parameter vector contains NaN or infinity")
    preset = init_preset()
    preset.update(preset_name=name, comments=comments, preset_style="")
    settings = preset["settings"]
    bank = default_bank()
    routes: list[tuple[float, str, str]] = []
    for parameter, value in zip(space.parameters, vector):
        if parameter.kind is Kind.MODULATION:
            amount = parameter.denormalise(value)
            if amount != 0.0:
                source, destination = parameter.name.split("->")
                routes.append((amount, source, destination))
        elif parameter.name.endswith("_wavetable"):
            slot = int(parameter.name.split("_")[1]) - 1
            settings["wavetables"][slot] = bank[int(parameter.denormalise(value))].to_vital()
        elif parameter.name.startswith("lfo_") and parameter.name.endswith("_shape"):
            slot = int(parameter.name.split("_")[1]) - 1
            settings["lfos"][slot] = LFO_SHAPES[int(parameter.denormalise(value))].to_vital()
        else:
            settings[parameter.name] = parameter.denormalise(value)
    for held in space.held:
        if held.value is not None:
            settings[held.name] = held.value
    routes.sort(key=lambda route: -abs(route[0]))
    modulations = [{"source": "", "destination": ""} for _ in range(MAX_MODULATIONS)]
    for slot in range(MAX_MODULATIONS):
        settings[f"modulation_{slot + 1}_amount"] = 0.0
    for slot, (amount, source, destination) in enumerate(routes[:MAX_MODULATIONS]):
        modulations[slot] = {"source": source, "destination": destination}
        settings[f"modulation_{slot + 1}_amount"] = amount
    settings["modulations"] = modulations
    return preset


def vector_from_preset(preset: dict, space: ParameterSpace | None = None) -> np.ndarray:
    """Project any Vital preset into the parameter space (see the module docstring for the rules)."""
    space = space or parameter_space()
    settings = _settings(preset)
    wavetables = _list(settings, "wavetables")
    lfos = _list(settings, "lfos")
    routes = _routes(settings)
    bank = default_bank()
    vector = np.zeros(len(space), dtype=np.float32)
    for k, parameter in enumerate(space.parameters):
        if parameter.kind is Kind.MODULATION:
            vector[k] = parameter.normalise(routes.get(parameter.name, 0.0))
        elif parameter.name.endswith("_wavetable"):
            slot = int(parameter.name.split("_")[1]) - 1
            frames = frames_from_vital(wavetables[slot]) if slot < len(wavetables) else None
            vector[k] = bank.nearest(frames) if frames is not None else parameter.normalise(parameter.default)
        elif parameter.name.startswith("lfo_") and parameter.name.endswith("_shape"):
            slot = int(parameter.name.split("_")[1]) - 1
            vector[k] = nearest_lfo_shape(lfos[slot]) if slot < len(lfos) else 0.0
        else:
            vector[k] = parameter.normalise(_number(settings, parameter.name, parameter.default))
    return vector


def parse_preset(text: str | bytes) -> dict:
    """Parse preset JSON defensively: size-limited, no NaN/Infinity, clear errors, never a crash."""
    if len(text) > MAX_PRESET_BYTES:
        raise PresetError(f"preset is {len(text)} bytes, more than the {MAX_PRESET_BYTES} allowed")

    def reject_constant(token: str) -> float:
        raise PresetError(f"preset contains {token}, which is not a number Vital can use")

    def finite_float(token: str) -> float:
        number = float(token)
        if not math.isfinite(number):
            raise PresetError(f"preset contains {token}, which overflows to infinity")
        return number

    try:
        preset = json.loads(text, parse_constant=reject_constant, parse_float=finite_float)
    except PresetError:
        raise
    except RecursionError:
        raise PresetError("preset JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise PresetError(f"not a Vital preset (invalid JSON: {error})") from None
    _settings(preset)
    return preset


def read_preset(path: str | os.PathLike[str]) -> dict:
    """Read and validate a ``.vital`` file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PRESET_BYTES:
            raise PresetError(f"{path.name}: {size} bytes, more than the {MAX_PRESET_BYTES} allowed")
        data = path.read_bytes()
    except OSError as error:
        raise PresetError(f"{path.name}: cannot read ({error.strerror or error})") from None
    try:
        return parse_preset(data)
    except PresetError as error:
        raise PresetError(f"{path.name}: {error}") from None


def write_preset(preset: dict, path: str | os.PathLike[str]) -> Path:
    """Write a preset atomically (it appears whole or not at all)."""
    return atomic_write_bytes(path, json.dumps(preset, allow_nan=False).encode("utf-8"))


def _settings(preset: object) -> dict:
    if not isinstance(preset, dict):
        raise PresetError("not a Vital preset (top level is not an object)")
    settings = preset.get("settings")
    if not isinstance(settings, dict):
        raise PresetError("not a Vital preset (no 'settings' object)")
    return settings


def _list(settings: dict, key: str) -> list:
    value = settings.get(key, [])
    if not isinstance(value, list):
        raise PresetError(f"settings.{key}: expected a list, got {type(value).__name__}")
    return value


def _number(settings: dict, key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f"settings.{key}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PresetError(f"settings.{key}: not a finite number")
    return number


def _routes(settings: dict) -> dict[str, float]:
    """Modulation amounts by ``source->destination`` name (repeated routes add up)."""
    routes: dict[str, float] = {}
    for slot, route in enumerate(_list(settings, "modulations")[:MAX_MODULATIONS]):
        if not isinstance(route, dict):
            raise PresetError(f"settings.modulations[{slot}]: expected an object")
        source, destination = route.get("source", ""), route.get("destination", "")
        if not isinstance(source, str) or not isinstance(destination, str):
            raise PresetError(f"settings.modulations[{slot}]: source and destination must be strings")
        if source and destination:
            name = f"{source}->{destination}"
            routes[name] = routes.get(name, 0.0) + _number(settings, f"modulation_{slot + 1}_amount", 0.0)
    return routes
