"""The Vital parameter space vinv predicts, declared as one table.

Every parameter the model predicts is a row of ``PREDICTED``; every Vital setting we pin to a fixed
value, and why, is a row of ``HELD``. Ranges, defaults and option lists come from vita's own control
details, so the table cannot drift from the engine. Training, export and the converter all read the
``ParameterSpace`` built here.

A parameter vector holds one float per predicted parameter, in *normalised* units:

- continuous and integer: Vital's knob position in [0, 1], i.e. ``(raw - min) / (max - min)`` of the
  raw control value. Vital stores times, frequencies and levels already on perceptual curves (cutoff
  in semitones, LFO rates as log2, envelope times as fourth roots), so this is a log-like curve
  wherever the ear is;
- categorical: the index of the chosen option (stored as a float);
- switch: 0 or 1;
- modulation: the route's amount in [-1, 1], 0 meaning no route.

Each parameter also carries its ``Curve``: how Vital turns the raw value into the unit it shows
(seconds = raw⁴ for envelope times, 2^raw for rates and reverb/LFO times, semitones for cutoffs and
transpose, dB = sqrt(raw) + offset for the master volume). It is read from vita's control details
like the ranges, and ``Parameter.to_unit``/``from_unit`` are the one place that applies it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import numpy as np

from converter.vital.lfo_shapes import LFO_SHAPES
from converter.vital.wavetables import BANK_VERSION, bank_names


class Curve(str, Enum):
    """How a raw control value maps to the unit Vital shows (vita's ``ValueScale``)."""

    LINEAR = "linear"  # unit = raw (semitones, dB, plain fractions)
    QUADRATIC = "quadratic"  # unit = raw²
    QUARTIC = "quartic"  # seconds = raw⁴ (envelope times)
    EXPONENTIAL = "exponential"  # unit = 2^raw (LFO/effect rates in Hz, reverb decay and LFO smoothing in seconds)
    SQUARE_ROOT = "square_root"  # dB = sqrt(raw) + offset (the master volume)


VITA_SCALES = {
    "Linear": Curve.LINEAR,
    "Indexed": Curve.LINEAR,
    "Quadratic": Curve.QUADRATIC,
    "Quartic": Curve.QUARTIC,
    "Exponential": Curve.EXPONENTIAL,
    "SquareRoot": Curve.SQUARE_ROOT,
}


class Kind(str, Enum):
    CONTINUOUS = "continuous"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    SWITCH = "switch"
    MODULATION = "modulation"


@dataclass(frozen=True)
class Parameter:
    """One predicted value: where it goes in a preset, how it is encoded, how much it matters."""

    name: str
    kind: Kind
    group: str
    weight: float
    low: float = 0.0
    high: float = 1.0
    options: tuple[str, ...] = ()
    choices: tuple[float, ...] = ()
    default: float = 0.0
    curve: Curve = Curve.LINEAR
    offset: float = 0.0  # added after the curve (Vital's post offset; only the volume's dB uses one)

    def normalise(self, raw: float) -> float:
        """Raw Vital value -> vector value (nearest option for categoricals)."""
        if self.kind is Kind.SWITCH:
            return 1.0 if raw >= 0.5 else 0.0
        if self.kind is Kind.MODULATION:
            return float(np.clip(raw, -1.0, 1.0))
        if self.kind is Kind.CATEGORICAL:
            return float(np.argmin(np.abs(np.asarray(self.choices) - raw)))
        return float(np.clip((raw - self.low) / (self.high - self.low), 0.0, 1.0))

    def denormalise(self, value: float) -> float:
        """Vector value -> raw Vital value (rounding integers, snapping categoricals)."""
        if self.kind is Kind.SWITCH:
            return 1.0 if value >= 0.5 else 0.0
        if self.kind is Kind.MODULATION:
            return float(np.clip(value, -1.0, 1.0))
        if self.kind is Kind.CATEGORICAL:
            return self.choices[int(np.clip(round(value), 0, len(self.choices) - 1))]
        raw = self.low + float(np.clip(value, 0.0, 1.0)) * (self.high - self.low)
        return float(round(raw)) if self.kind is Kind.INTEGER else raw

    def unit_from_raw(self, raw: float) -> float:
        """Raw Vital value -> the unit Vital shows (seconds, Hz, semitones, dB...)."""
        if self.curve is Curve.QUADRATIC:
            return raw * raw + self.offset
        if self.curve is Curve.QUARTIC:
            return raw**4 + self.offset
        if self.curve is Curve.EXPONENTIAL:
            return 2.0**raw + self.offset
        if self.curve is Curve.SQUARE_ROOT:
            return float(np.sqrt(max(raw, 0.0))) + self.offset
        return raw + self.offset

    def raw_from_unit(self, unit: float) -> float:
        """Inverse of ``unit_from_raw``, clipped to the control's range."""
        shifted = unit - self.offset
        if self.curve is Curve.QUADRATIC:
            raw = float(np.sqrt(max(shifted, 0.0)))
        elif self.curve is Curve.QUARTIC:
            raw = float(max(shifted, 0.0) ** 0.25)
        elif self.curve is Curve.EXPONENTIAL:
            raw = float(np.log2(shifted)) if shifted > 0.0 else self.low
        elif self.curve is Curve.SQUARE_ROOT:
            raw = max(shifted, 0.0) ** 2
        else:
            raw = shifted
        return float(np.clip(raw, self.low, self.high))

    def to_unit(self, value: float) -> float:
        """Vector value -> unit (e.g. an envelope knob -> seconds)."""
        return self.unit_from_raw(self.denormalise(value))

    def from_unit(self, unit: float) -> float:
        """Unit -> vector value (e.g. seconds -> envelope knob), clipped to the range."""
        return self.normalise(self.raw_from_unit(unit))

    @property
    def unit_range(self) -> tuple[float, float]:
        """The unit at the bottom and the top of the control."""
        return self.unit_from_raw(self.low), self.unit_from_raw(self.high)

    @property
    def size(self) -> int:
        """Number of model outputs this parameter needs (logits for categoricals)."""
        return len(self.choices) if self.kind is Kind.CATEGORICAL else 1


@dataclass(frozen=True)
class Held:
    """A Vital setting written into every preset at a fixed value (None: Vital's init value)."""

    name: str
    value: float | None
    reason: str


# Perceptual weights by group: how much an error in this group is heard.
GROUP_WEIGHTS: dict[str, float] = {
    "filter_cutoff": 2.5,
    "wave_frame": 1.75,
    "amp_attack": 1.75,
    "filter_resonance": 1.5,
    "filter_envelope": 1.5,
    "envelope": 1.0,
    "unison": 1.0,
    "effects": 0.65,
}

OSCILLATORS = (1, 2, 3)
FILTERS = (1, 2)
ENVELOPES = (1, 2, 3)
LFOS = (1, 2, 3, 4)

# No "random" source: its routes sound different on every render, so one clip cannot teach them.
MODULATION_SOURCES = ("env_2", "env_3", "lfo_1", "lfo_2", "lfo_3", "lfo_4", "velocity", "note")
MODULATION_DESTINATIONS = (
    "filter_1_cutoff",
    "filter_2_cutoff",
    "filter_1_resonance",
    *(f"osc_{n}_{p}" for n in OSCILLATORS for p in ("wave_frame", "level", "transpose")),
    *(f"osc_{n}_{p}" for n in OSCILLATORS for p in ("spectral_morph_amount", "distortion_amount")),
)
MAX_MODULATIONS = 64  # Vital's modulation slots

# Oscillator and sampler outputs we let the model choose: the filters, both, or straight to effects.
ROUTING_CHOICES = (0.0, 1.0, 2.0, 3.0)
INIT_WAVETABLE = "Saw"  # what Vital's init patch plays
LFO_SYNC_SECONDS = 0.0


def modulation_name(source: str, destination: str) -> str:
    return f"{source}->{destination}"


_C, _I, _CAT, _SW = Kind.CONTINUOUS, Kind.INTEGER, Kind.CATEGORICAL, Kind.SWITCH

# (knob, kind, group) of each unit; a unit's parameter is named "<unit>_<n>_<knob>".
OSCILLATOR_KNOBS: tuple[tuple[str, Kind, str], ...] = (
    ("on", _SW, "osc_mix"),
    ("level", _C, "osc_mix"),
    ("transpose", _I, "osc_pitch"),
    ("tune", _C, "osc_pitch"),
    ("wavetable", _CAT, "wavetable"),
    ("wave_frame", _C, "wave_frame"),
    ("unison_voices", _I, "unison"),
    ("unison_detune", _C, "unison"),
    ("unison_blend", _C, "unison"),
    ("spectral_morph_type", _CAT, "spectral_morph"),
    ("spectral_morph_amount", _C, "spectral_morph"),
    ("distortion_type", _CAT, "osc_distortion"),
    ("distortion_amount", _C, "osc_distortion"),
    ("destination", _CAT, "routing"),
)
SAMPLER_KNOBS: tuple[tuple[str, Kind, str], ...] = (
    ("on", _SW, "osc_mix"),
    ("level", _C, "osc_mix"),
    ("destination", _CAT, "routing"),
)
FILTER_KNOBS: tuple[tuple[str, Kind, str], ...] = (
    ("on", _SW, "filter"),
    ("model", _CAT, "filter"),
    ("style", _CAT, "filter"),
    ("cutoff", _C, "filter_cutoff"),
    ("resonance", _C, "filter_resonance"),
    ("drive", _C, "filter"),
    ("blend", _C, "filter"),
    ("keytrack", _C, "filter"),
    ("filter_input", _SW, "routing"),
)
ENVELOPE_KNOBS = ("delay", "attack", "hold", "decay", "sustain", "release", "attack_power", "decay_power",
                  "release_power")
LFO_KNOBS: tuple[tuple[str, Kind, str], ...] = (
    ("shape", _CAT, "lfo"),
    ("frequency", _C, "lfo"),
    ("fade_time", _C, "lfo"),
    ("smooth_time", _C, "lfo"),
    ("sync_type", _CAT, "lfo"),
)
# Each effect has an on switch plus these knobs (all continuous but the distortion type).
EFFECT_KNOBS: dict[str, tuple[str, ...]] = {
    "chorus": ("dry_wet", "feedback", "frequency", "mod_depth", "delay_1"),
    "compressor": ("mix", "attack", "release"),
    "delay": ("dry_wet", "feedback", "frequency", "filter_cutoff"),
    "distortion": ("type", "drive", "mix"),
    "eq": ("low_gain", "band_gain", "band_cutoff", "high_gain"),
    "flanger": ("dry_wet", "feedback", "frequency", "mod_depth", "center"),
    "phaser": ("dry_wet", "feedback", "frequency", "mod_depth", "center"),
    "reverb": ("dry_wet", "decay_time", "size", "pre_high_cutoff"),
}


def _envelope_group(n: int, stage: str) -> str:
    if (n, stage) == (1, "attack"):
        return "amp_attack"
    if (n, stage) == (2, "decay"):
        return "filter_envelope"
    return "envelope"


def _spec() -> list[tuple[str, Kind, str]]:
    """(name, kind, group) of every predicted parameter, in vector order."""
    rows: list[tuple[str, Kind, str]] = []
    for n in OSCILLATORS:
        rows += [(f"osc_{n}_{knob}", kind, group) for knob, kind, group in OSCILLATOR_KNOBS]
    rows += [(f"sample_{knob}", kind, group) for knob, kind, group in SAMPLER_KNOBS]
    for n in FILTERS:
        rows += [(f"filter_{n}_{knob}", kind, group) for knob, kind, group in FILTER_KNOBS]
    for n in ENVELOPES:
        rows += [(f"env_{n}_{stage}", _C, _envelope_group(n, stage)) for stage in ENVELOPE_KNOBS]
    for n in LFOS:
        rows += [(f"lfo_{n}_{knob}", kind, group) for knob, kind, group in LFO_KNOBS]
    for effect, knobs in EFFECT_KNOBS.items():
        rows.append((f"{effect}_on", _SW, "effects"))
        rows += [(f"{effect}_{k}", _CAT if k == "type" else _C, "effects") for k in knobs]
    for source in MODULATION_SOURCES:
        for destination in MODULATION_DESTINATIONS:
            group = "filter_envelope" if (source, destination) == ("env_2", "filter_1_cutoff") else "modulation"
            rows.append((modulation_name(source, destination), Kind.MODULATION, group))
    return rows


HELD: tuple[Held, ...] = (
    *(Held(f"osc_{n}_pan", None, "the model hears mono audio, so panning is invisible") for n in OSCILLATORS),
    Held("sample_pan", None, "the model hears mono audio, so panning is invisible"),
    *(Held(f"osc_{n}_random_phase", 0.0, "fixed phase makes renders repeatable, so distances compare like for like")
      for n in OSCILLATORS),
    *(Held(f"lfo_{n}_sync", LFO_SYNC_SECONDS,
           "at a fixed tempo a synced and a free rate sound alike; the model predicts the rate in seconds")
      for n in LFOS),
    *(Held(f"{fx}_sync", 0.0, "rate is predicted in seconds, so tempo sync is off")
      for fx in ("chorus", "delay", "flanger", "phaser")),
    *(Held(f"filter_{n}_mix", None, "blend and on/off already span dry to wet") for n in FILTERS),
    Held("volume", None, "model input is loudness-normalised; the converter matches loudness after rendering"),
    Held("polyphony", None, "a single note cannot reveal it; Vital's default suits playing"),
    Held("portamento_time", None, "glide needs two notes; a one-shot cannot show it"),
    Held("legato", None, "needs overlapping notes"),
    Held("voice_priority", None, "needs several notes"),
    Held("velocity_track", None, "one velocity per sound; velocity routes live in the modulation grid"),
    Held("stereo_routing", None, "stereo only"),
    Held("beats_per_minute", None, "rates are predicted in seconds, so tempo does not matter"),
    Held("oversampling", None, "Vital's default quality"),
)


class ParameterSpace:
    """The ordered predicted parameters plus the held settings, with a stable content hash."""

    def __init__(self, parameters: tuple[Parameter, ...], held: tuple[Held, ...]) -> None:
        self.parameters = parameters
        self.held = held
        self._index = {p.name: k for k, p in enumerate(parameters)}

    def __len__(self) -> int:
        return len(self.parameters)

    def __getitem__(self, name: str) -> Parameter:
        return self.parameters[self._index[name]]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        return self._index[name]

    def indices(self, kind: Kind) -> np.ndarray:
        """Vector positions of every parameter of one kind."""
        return np.array([k for k, p in enumerate(self.parameters) if p.kind is kind], dtype=np.int64)

    @property
    def weights(self) -> np.ndarray:
        return np.array([p.weight for p in self.parameters], dtype=np.float32)

    @property
    def output_size(self) -> int:
        """Model outputs needed: one per value, one logit per option for categoricals."""
        return sum(p.size for p in self.parameters)

    @property
    def version(self) -> str:
        """Hash of the whole table: a model trained on another table is refused."""
        rows = [
            (p.name, p.kind.value, p.group, p.weight, p.low, p.high, p.options, p.choices) for p in self.parameters
        ]
        blob = json.dumps({"rows": rows, "held": [(h.name, h.value) for h in self.held], "bank": BANK_VERSION})
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def default_vector(self) -> np.ndarray:
        """Vital's init patch, as a vector."""
        return np.array([p.normalise(p.default) for p in self.parameters], dtype=np.float32)

    def to_markdown(self) -> str:
        """The table as documentation (PARAMETERS.md is generated from it)."""
        lines = [
            f"# Parameter space (version {self.version})",
            "",
            f"{len(self)} predicted parameters, {self.output_size} model outputs "
            f"({len(self.indices(Kind.MODULATION))} of them the modulation grid). "
            "Generated by `python -m converter.vital.parameters`; do not edit by hand.",
            "",
            "Vector values: continuous/integer = Vital knob position in [0, 1] over [min, max]; "
            "categorical = option index; switch = 0/1; modulation = amount in [-1, 1].",
            "",
            "## Predicted",
            "",
            "Curve: how Vital shows the raw value (linear: as is; quadratic: raw²; quartic: raw⁴ seconds; "
            "exponential: 2^raw; square_root: sqrt(raw) + offset dB).",
            "",
            "| # | name | kind | group | weight | min | max | curve | options |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for k, p in enumerate(self.parameters):
            if p.kind is Kind.MODULATION:
                continue
            options = ", ".join(p.options) if len(p.options) <= 16 else f"{len(p.options)} options"
            lines.append(f"| {k} | `{p.name}` | {p.kind.value} | {p.group} | {p.weight} | {p.low:g} | {p.high:g} "
                         f"| {p.curve.value} | {options} |")
        lines += [
            "",
            "## Modulation grid",
            "",
            f"Sources ({len(MODULATION_SOURCES)}): " + ", ".join(f"`{s}`" for s in MODULATION_SOURCES) + ".",
            "",
            f"Destinations ({len(MODULATION_DESTINATIONS)}): "
            + ", ".join(f"`{d}`" for d in MODULATION_DESTINATIONS) + ".",
            "",
            "Every source x destination cell is one value in [-1, 1] (Vital's `modulation_N_amount`); "
            "`env_2->filter_1_cutoff` carries the filter-envelope weight "
            f"{GROUP_WEIGHTS['filter_envelope']}. Routes outside the grid in a user's preset are dropped "
            "when it is projected.",
            "",
            "## Held at a fixed value",
            "",
            "| setting | value | why |",
            "|---|---|---|",
        ]
        for h in self.held:
            lines.append(f"| `{h.name}` | {'init' if h.value is None else h.value} | {h.reason} |")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _ControlDetails:
    """What the table reads of vita's details of a control, as plain values: vita's own objects, kept
    for the life of a process, made nanobind report hundreds of "leaked instances" when a worker exited."""

    name: str
    min: float
    max: float
    default_value: float
    options: tuple[str, ...]
    scale: str
    post_offset: float


@lru_cache(maxsize=1)
def _control_details() -> dict[str, _ControlDetails]:
    import vita

    synth = vita.Synth()
    details = {}
    for name in synth.get_controls():
        d = synth.get_control_details(name)
        details[name] = _ControlDetails(name, float(d.min), float(d.max), float(d.default_value), tuple(d.options),
                                        d.scale.name, float(d.post_offset))
    return details


def _unique_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Vital names both FM/RM sources of an oscillator "<- Osc"; tell them apart as A (lower) and B."""
    counts = Counter(labels)
    seen: Counter[str] = Counter()
    unique = []
    for label in labels:
        if counts[label] > 1:
            unique.append(f"{label} {'AB'[seen[label]]}")
            seen[label] += 1
        else:
            unique.append(label)
    return tuple(unique)


def _parameter(name: str, kind: Kind, group: str, details: dict[str, _ControlDetails]) -> Parameter:
    weight = GROUP_WEIGHTS.get(group, 1.0)
    if name.endswith("_wavetable"):
        names = bank_names()
        return Parameter(name, kind, group, weight, options=names, choices=tuple(map(float, range(len(names)))),
                         default=float(names.index(INIT_WAVETABLE)))
    if name.endswith("_shape") and name.startswith("lfo_"):
        names = tuple(shape.name for shape in LFO_SHAPES)
        return Parameter(name, kind, group, weight, options=names, choices=tuple(map(float, range(len(names)))))
    if kind is Kind.MODULATION:
        return Parameter(name, kind, group, weight, low=-1.0, high=1.0)
    d = details[name]
    if kind is Kind.CATEGORICAL:
        if name.endswith("_destination"):
            labels = tuple(d.options[int(v)] for v in ROUTING_CHOICES)
            return Parameter(name, kind, group, weight, options=labels, choices=ROUTING_CHOICES,
                             default=d.default_value)
        labels = _unique_labels(tuple(d.options))
        return Parameter(name, kind, group, weight, low=d.min, high=d.max, options=labels,
                         choices=tuple(float(d.min + k) for k in range(len(labels))), default=d.default_value)
    return Parameter(name, kind, group, weight, low=d.min, high=d.max, default=d.default_value, **_curve(d))


def _curve(details: _ControlDetails) -> dict[str, object]:
    curve = VITA_SCALES.get(details.scale)
    if curve is None:
        raise RuntimeError(f"vita control {details.name} has an unknown scale {details.scale}")
    return {"curve": curve, "offset": float(details.post_offset) if curve is Curve.SQUARE_ROOT else 0.0}


def control(name: str) -> Parameter:
    """Any vita control (a held one such as ``volume`` too) as a continuous Parameter with its range and curve."""
    d = _control_details()[name]
    return Parameter(name, Kind.CONTINUOUS, "held", 1.0, low=d.min, high=d.max, default=d.default_value, **_curve(d))


@lru_cache(maxsize=1)
def parameter_space() -> ParameterSpace:
    """The space every part of vinv shares (built once per process from vita's control details)."""
    details = _control_details()
    parameters = tuple(_parameter(name, kind, group, details) for name, kind, group in _spec())
    return ParameterSpace(parameters, HELD)


if __name__ == "__main__":
    print(parameter_space().to_markdown(), end="")
