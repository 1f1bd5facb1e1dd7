"""Drawing plausible Vital patches for the dataset.

Three kinds of drawn patch, besides the real presets themselves:

- uniform (``patch_from_row``): one row of a Latin hypercube (one uniform value per predicted
  parameter) turned by rules into a vector; it covers the whole space, but sounds like no preset;
- prior (``patch_from_priors``): each unit drawn like the real presets set it (``training.priors``):
  on-patterns of whole presets, a real unit's knobs jittered by the presets' spread, cutoffs placed
  from the note as presets place them from middle C, route counts, cells and amounts as presets have;
- recombined (``recombined_patch``): the oscillators of one real preset, the filters, envelopes,
  LFOs and routes of another, the effects of a third.

Prior and recombined patches play another bank table now and then, and every drawn patch is made
audible for the note it will be played at (``make_audible``): an oscillator on and loud enough, an
amp envelope that opens within the note, a filter that does not close over the note's pitch. Real
presets are perturbed into variants, and foreign wavetables are swapped into patches here too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.stats import qmc

from converter.matching.scoring import score_seconds
from converter.vital.parameters import (
    ENVELOPES,
    FILTERS,
    INIT_WAVETABLE,
    OSCILLATORS,
    Kind,
    Parameter,
    ParameterSpace,
    modulation_name,
)
from converter.vital.wavetables import Wavetable, default_bank, frames_from_vital
from training.priors import SWITCH_GROUPS, Priors, section_columns, units

PITCH_RANGE = (36, 84)
VELOCITY_RANGE = (0.6, 1.0)
NOTE_LENGTH_RANGE = (0.2, 3.0)
PLAYED_PITCHES = (PITCH_RANGE[0] - 12, PITCH_RANGE[1] + 24)  # transposed notes stay within these
TRANSPOSE_SPAN = (-24, 24)  # the rare wide transpositions (semitones)
FINE_TUNE = 0.1  # semitones either way that most oscillators are detuned by

OPTIMISED_GROUP_WEIGHT = 1.5  # columns this important get a space-filling (optimised) design
ROUTE_COUNT_PROBABILITIES = (0.2, 0.25, 0.25, 0.15, 0.15)  # 0-4 modulation routes per patch
# Largest route amount per destination kind: a full-scale route moves pitch 48 and cutoff 128 semitones.
ROUTE_LIMITS = {"transpose": 0.25, "cutoff": 0.5}
FILTER_ENVELOPE_ROUTE = modulation_name("env_2", "filter_1_cutoff")
EFFECT_ON_PROBABILITY = 0.25
MAX_WAVETABLE_KEYFRAMES = 16
VARIANT_JITTER = 0.05
LEAD_LEVEL = 0.45  # knob position the loudest oscillator is raised to at least
PRIOR_SWITCH_FLIP = 0.05  # each on switch of a prior patch differs from its donor preset's this often
PRIOR_JITTER = 0.25  # knob jitter of prior patches, as a share of the presets' spread of that knob
PRIOR_OPTION_REDRAW = 0.1  # a categorical is redrawn from the presets' option rates this often
ROUTE_JITTER = 0.1  # relative jitter of a prior route's amount
BANK_SWAP = 0.3  # an audible oscillator of a prior or recombined patch plays another bank table this often


@dataclass(frozen=True)
class Performance:
    """How one note is played: MIDI pitch, velocity, how long the key is held, how long we record."""

    pitch: int
    velocity: float
    note_length: float

    @property
    def duration(self) -> float:
        """What is rendered and compared: the converter's comparison window (``converter.matching.scoring``)."""
        return score_seconds(self.note_length)


def draw_performance(rng: np.random.Generator) -> Performance:
    pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
    velocity = float(rng.uniform(*VELOCITY_RANGE))
    note_length = float(np.exp(rng.uniform(*np.log(NOTE_LENGTH_RANGE))))  # short notes common, long ones kept
    return Performance(pitch, np.float32(velocity).item(), np.float32(note_length).item())


def lhs_design(seed: int, shard_id: int, rows: int, space: ParameterSpace) -> np.ndarray:
    """A (rows, P) Latin hypercube for one shard, fixed by (seed, shard_id).

    Optimising a 295-dimensional design costs seconds per shard, so only the highest-weight
    continuous columns get a centred-discrepancy-optimised design; the rest stay plain LHS.
    """
    rng = np.random.default_rng([seed, shard_id, 0x1A7])
    design = qmc.LatinHypercube(d=len(space), seed=rng).random(rows)
    important = [
        k for k, p in enumerate(space.parameters)
        if p.kind is Kind.CONTINUOUS and p.weight >= OPTIMISED_GROUP_WEIGHT
    ]
    if important and rows > 1:
        design[:, important] = qmc.LatinHypercube(d=len(important), optimization="random-cd", seed=rng).random(rows)
    return design


class _Patch:
    """A vector being built, addressed by parameter name, with the row's uniform value per name."""

    def __init__(self, row: np.ndarray, space: ParameterSpace) -> None:
        self.row = row
        self.space = space
        self.vector = np.zeros(len(space), dtype=np.float64)

    def u(self, name: str) -> float:
        return float(self.row[self.space.index(name)])

    def set_knob(self, name: str, knob: float) -> None:
        self.vector[self.space.index(name)] = float(np.clip(knob, 0.0, 1.0))

    def set_raw(self, name: str, raw: float) -> None:
        self.vector[self.space.index(name)] = self.space[name].normalise(raw)

    def set_option(self, name: str, option: int) -> None:
        self.vector[self.space.index(name)] = float(option)

    def knob(self, name: str) -> float:
        return float(self.vector[self.space.index(name)])

    def raw(self, name: str) -> float:
        return self.space[name].denormalise(self.knob(name))


def _piecewise(u: float, common: float, low: float, high: float, rare_high: float = 1.0) -> float:
    """Map u to [low, high] for the first ``common`` share of draws and to [high, rare_high] for the rest."""
    if u < common:
        return low + (high - low) * u / common
    return high + (rare_high - high) * (u - common) / (1.0 - common)


def _option(u: float, count: int, none_share: float = 0.0) -> int:
    """Option 0 for the first ``none_share`` of draws, else the remaining options uniformly."""
    if none_share <= 0.0:
        return min(int(u * count), count - 1)
    if u < none_share:
        return 0
    return 1 + min(int((u - none_share) / (1.0 - none_share) * (count - 1)), count - 2)


def _oscillators(patch: _Patch, pitch: int) -> None:
    on = []
    for n in OSCILLATORS:
        o = f"osc_{n}_"
        u_on = patch.u(o + "on")
        on.append((u_on, n))
        patch.set_knob(o + "on", 1.0 if u_on < 0.5 else 0.0)
        patch.set_knob(o + "level", patch.u(o + "level"))
        u = patch.u(o + "transpose")
        low, high = TRANSPOSE_SPAN
        wide = round(low + (high - low) * (u - 0.9) / 0.1)
        transpose = 0 if u < 0.6 else 12 if u < 0.75 else -12 if u < 0.9 else wide
        if not PLAYED_PITCHES[0] <= pitch + transpose <= PLAYED_PITCHES[1]:
            transpose = 0
        patch.set_raw(o + "transpose", transpose)
        tune = patch.space[o + "tune"]  # semitones
        u = patch.u(o + "tune")
        patch.set_raw(o + "tune", FINE_TUNE * (2.0 * u / 0.7 - 1.0) if u < 0.7
                      else tune.low + (tune.high - tune.low) * (u - 0.7) / 0.3)
        patch.set_option(o + "wavetable", _option(patch.u(o + "wavetable"), patch.space[o + "wavetable"].size))
        patch.set_knob(o + "wave_frame", patch.u(o + "wave_frame"))
        u = patch.u(o + "unison_voices")
        voices = 1 if u < 0.5 else 2 + int((u - 0.5) / 0.4 * 3) if u < 0.9 else 5 + int((u - 0.9) / 0.1 * 12)
        patch.set_raw(o + "unison_voices", min(voices, 16))
        patch.set_knob(o + "unison_detune", _piecewise(patch.u(o + "unison_detune"), 0.9, 0.0, 0.7))
        patch.set_knob(o + "unison_blend", patch.u(o + "unison_blend"))
        for stage in ("spectral_morph", "distortion"):
            kind = o + f"{stage}_type"
            patch.set_option(kind, _option(patch.u(kind), patch.space[kind].size, none_share=0.6))
            patch.set_knob(o + f"{stage}_amount", patch.u(o + f"{stage}_amount"))
        destination = o + "destination"
        patch.set_option(destination, _option(patch.u(destination), patch.space[destination].size))
    _, lead = min(on)  # the oscillator closest to being switched on carries the sound
    patch.set_knob(f"osc_{lead}_on", 1.0)
    patch.set_knob(f"osc_{lead}_level", 0.45 + 0.55 * patch.u(f"osc_{lead}_level"))
    for n in OSCILLATORS:
        if patch.knob(f"osc_{n}_on") < 0.5:  # inaudible, so one fixed label; Vital also loads it fastest
            patch.set_option(f"osc_{n}_wavetable", default_bank().index(INIT_WAVETABLE))
    patch.set_knob("sample_on", 1.0 if patch.u("sample_on") < 0.1 else 0.0)
    patch.set_knob("sample_level", patch.u("sample_level"))
    routing = patch.space["sample_destination"].size
    patch.set_option("sample_destination", _option(patch.u("sample_destination"), routing))


def _filters(patch: _Patch, pitch: int) -> None:
    for n in FILTERS:
        f = f"filter_{n}_"
        patch.set_knob(f + "on", 1.0 if patch.u(f + "on") < 0.5 else 0.0)
        patch.set_option(f + "model", _option(patch.u(f + "model"), patch.space[f + "model"].size))
        patch.set_option(f + "style", _option(patch.u(f + "style"), patch.space[f + "style"].size))
        patch.set_knob(f + "blend", patch.u(f + "blend"))
        cutoff = f + "cutoff"
        low, high = _cutoff_bounds(patch.space[cutoff], patch.raw(f + "blend"), pitch)
        patch.set_raw(cutoff, low + (high - low) * patch.u(cutoff))
        patch.set_knob(f + "resonance", _piecewise(patch.u(f + "resonance"), 0.95, 0.0, 0.85))
        patch.set_knob(f + "drive", _piecewise(patch.u(f + "drive"), 0.9, 0.0, 0.5))
        patch.set_knob(f + "keytrack", 0.5 + 0.5 * patch.u(f + "keytrack"))
        patch.set_knob(f + "filter_input", 1.0 if patch.u(f + "filter_input") < 0.25 else 0.0)


def _cutoff_bounds(cutoff: Parameter, blend: float, pitch: int) -> tuple[float, float]:
    """Cutoffs (semitones) that keep the note audible: a low-pass stays above it, a high-pass below it.

    ``blend`` is Vital's filter blend: 0 low-pass, 1 band-pass, 2 high-pass.
    """
    if blend < 0.7:
        return pitch - 6.0, cutoff.high
    if blend > 1.3:
        return cutoff.low, pitch + 36.0
    return pitch - 12.0, pitch + 48.0


def _envelopes(patch: _Patch, note_length: float) -> None:
    space = patch.space
    for n in ENVELOPES:
        e = f"env_{n}_"
        for stage in ("delay", "attack", "hold", "decay", "sustain", "release",
                      "attack_power", "decay_power", "release_power"):
            patch.set_knob(e + stage, patch.u(e + stage))
    u = patch.u("env_1_delay")
    delay = 0.0 if u < 0.85 else 0.1 * note_length * (u - 0.85) / 0.15
    patch.set_knob("env_1_delay", space["env_1_delay"].from_unit(delay))
    attack_limit = space["env_1_attack"].from_unit(0.7 * note_length - delay)
    patch.set_knob("env_1_attack", attack_limit * patch.u("env_1_attack"))
    u = patch.u("env_1_hold")
    patch.set_knob("env_1_hold", 0.0 if u < 0.8 else space["env_1_hold"].from_unit(0.5 * (u - 0.8) / 0.2))
    if patch.raw("env_1_sustain") < 0.2:
        shortest = space["env_1_decay"].from_unit(0.08)
        patch.set_knob("env_1_decay", shortest + (1.0 - shortest) * patch.u("env_1_decay"))


def _lfos(patch: _Patch) -> None:
    for k, p in enumerate(patch.space.parameters):
        if p.name.startswith("lfo_") and p.kind is not Kind.MODULATION:
            u = patch.row[k]
            patch.vector[k] = _option(u, p.size) if p.kind is Kind.CATEGORICAL else u


def _effects(patch: _Patch) -> None:
    for k, p in enumerate(patch.space.parameters):
        if p.group != "effects":
            continue
        u = float(patch.row[k])
        if p.kind is Kind.SWITCH:
            patch.vector[k] = 1.0 if u < EFFECT_ON_PROBABILITY else 0.0
        elif p.kind is Kind.CATEGORICAL:
            patch.vector[k] = _option(u, p.size)
        else:
            patch.vector[k] = u
    patch.set_knob("distortion_drive", _piecewise(patch.u("distortion_drive"), 0.9, 0.3, 0.7))
    for feedback in ("delay_feedback", "flanger_feedback", "chorus_feedback"):
        patch.set_knob(feedback, 0.1 + 0.8 * patch.u(feedback))
    patch.set_knob("phaser_feedback", 0.8 * patch.u("phaser_feedback"))


def _modulations(patch: _Patch, rng: np.random.Generator) -> None:
    """A few routes: the grid is sparse in real presets, env_2 -> filter 1 cutoff the most common."""
    cells = patch.space.indices(Kind.MODULATION)
    count = int(rng.choice(len(ROUTE_COUNT_PROBABILITIES), p=ROUTE_COUNT_PROBABILITIES))
    filter_envelope = patch.space.index(FILTER_ENVELOPE_ROUTE)
    chosen: list[int] = []
    if count and rng.random() < (0.6 if patch.knob("filter_1_on") else 0.15):
        chosen.append(filter_envelope)
    others = cells[cells != filter_envelope]
    chosen += rng.choice(others, size=count - len(chosen), replace=False).tolist()
    for k in chosen:
        a = 2.0 * float(patch.row[k]) - 1.0
        amount = np.sign(a) * (0.05 + 0.95 * abs(a)) if a else 0.05
        destination = patch.space.parameters[k].name.split("->")[1]
        limit = next((v for suffix, v in ROUTE_LIMITS.items() if destination.endswith(suffix)), 1.0)
        if k == filter_envelope:
            amount = abs(amount) * (1.0 if rng.random() < 0.8 else -1.0)
        patch.vector[k] = amount * limit


def make_audible(vector: np.ndarray, performance: Performance, space: ParameterSpace) -> np.ndarray:
    """The audibility rules of ``patch_from_row`` applied to any vector; returns a canonical copy."""
    v = np.asarray(vector, dtype=np.float64).copy()

    def raw(name: str) -> float:
        return space[name].denormalise(v[space.index(name)])

    def set_unit(name: str, unit: float) -> None:
        v[space.index(name)] = space[name].from_unit(unit)

    on = [n for n in OSCILLATORS if raw(f"osc_{n}_on") >= 0.5]
    levels = {n: v[space.index(f"osc_{n}_level")] for n in (on or OSCILLATORS)}
    lead = max(levels, key=levels.get)
    v[space.index(f"osc_{lead}_on")] = 1.0
    v[space.index(f"osc_{lead}_level")] = max(levels[lead], LEAD_LEVEL)
    for n in OSCILLATORS:
        if not PLAYED_PITCHES[0] <= performance.pitch + raw(f"osc_{n}_transpose") <= PLAYED_PITCHES[1]:
            v[space.index(f"osc_{n}_transpose")] = space[f"osc_{n}_transpose"].normalise(0.0)
        if raw(f"osc_{n}_on") < 0.5:
            v[space.index(f"osc_{n}_wavetable")] = default_bank().index(INIT_WAVETABLE)
    for n in FILTERS:
        cutoff = space[f"filter_{n}_cutoff"]
        low, high = _cutoff_bounds(cutoff, raw(f"filter_{n}_blend"), performance.pitch)
        v[space.index(cutoff.name)] = cutoff.normalise(float(np.clip(cutoff.denormalise(v[space.index(cutoff.name)]),
                                                                     max(low, cutoff.low), min(high, cutoff.high))))
    length = performance.note_length
    delay = min(space["env_1_delay"].to_unit(v[space.index("env_1_delay")]), 0.1 * length)
    set_unit("env_1_delay", delay)
    set_unit("env_1_attack", min(space["env_1_attack"].to_unit(v[space.index("env_1_attack")]), 0.7 * length - delay))
    if raw("env_1_sustain") < 0.2:
        set_unit("env_1_decay", max(space["env_1_decay"].to_unit(v[space.index("env_1_decay")]), 0.08))
    return canonical(v, space)


def _swap_bank_tables(vector: np.ndarray, rng: np.random.Generator, space: ParameterSpace) -> None:
    """Some audible oscillators play another table of the bank (in place)."""
    for n in OSCILLATORS:
        if vector[space.index(f"osc_{n}_on")] >= 0.5 and rng.random() < BANK_SWAP:
            vector[space.index(f"osc_{n}_wavetable")] = float(rng.integers(space[f"osc_{n}_wavetable"].size))


def _donor(rng: np.random.Generator, priors: Priors, space: ParameterSpace, unit: str) -> np.ndarray:
    """A real preset that uses the unit (any preset if none does or the unit has no switch)."""
    switch = f"{unit}_on"
    rows = priors.vectors
    if switch in space:
        using = rows[rows[:, space.index(switch)] >= 0.5]
        rows = using if len(using) else rows
    return rows[int(rng.integers(len(rows)))]


def _prior_routes(vector: np.ndarray, rng: np.random.Generator, priors: Priors, space: ParameterSpace) -> None:
    """As many routes as a real preset has, on cells and with amounts as real presets use them (in place)."""
    cells = space.indices(Kind.MODULATION)
    count = min(int(priors.route_counts[int(rng.integers(priors.count))]), int(np.count_nonzero(priors.route_rates)))
    for c in rng.choice(len(cells), size=count, replace=False, p=priors.route_rates):
        seen = priors.route_amounts[c]
        if len(seen):
            amount = float(rng.choice(seen)) * (1.0 + rng.normal(0.0, ROUTE_JITTER))
        else:
            destination = space.parameters[cells[c]].name.split("->")[1]
            limit = next((v for suffix, v in ROUTE_LIMITS.items() if destination.endswith(suffix)), 1.0)
            amount = float(rng.choice(priors.pooled_amounts)) * limit
        vector[cells[c]] = float(np.clip(amount, -1.0, 1.0)) or ROUTE_JITTER


def patch_from_priors(rng: np.random.Generator, performance: Performance, priors: Priors,
                      space: ParameterSpace) -> np.ndarray:
    """A new patch drawn unit by unit from the real presets' statistics, audible for this note."""
    vector = np.zeros(len(space), dtype=np.float64)
    for group, members in SWITCH_GROUPS.items():
        pattern = priors.switches[group][int(rng.integers(priors.count))]
        for unit, on in zip(members, pattern ^ (rng.random(len(members)) < PRIOR_SWITCH_FLIP)):
            vector[space.index(f"{unit}_on")] = float(on)
    for unit, names in units(space).items():
        donor = _donor(rng, priors, space, unit)
        for name in names:
            k, p = space.index(name), space[name]
            if p.kind is Kind.SWITCH and name == f"{unit}_on":
                continue
            value = float(donor[k])
            if p.kind in (Kind.CONTINUOUS, Kind.INTEGER):
                value = float(np.clip(value + rng.normal(0.0, PRIOR_JITTER * priors.spreads[k]), 0.0, 1.0))
            elif p.kind is Kind.CATEGORICAL and rng.random() < PRIOR_OPTION_REDRAW:
                value = float(rng.choice(p.size, p=priors.option_rates[name]))
            vector[k] = value
    for n in FILTERS:
        cutoff = space[f"filter_{n}_cutoff"]
        offset = float(rng.choice(priors.cutoff_offsets))
        vector[space.index(cutoff.name)] = cutoff.normalise(performance.pitch + offset)
    _prior_routes(vector, rng, priors, space)
    _swap_bank_tables(vector, rng, space)
    return make_audible(vector, performance, space)


def recombined_patch(rng: np.random.Generator, performance: Performance, priors: Priors,
                     space: ParameterSpace) -> np.ndarray:
    """Oscillators of one real preset, filters/envelopes/LFOs/routes of another, effects of a third."""
    vector = np.zeros(len(space), dtype=np.float64)
    for columns in section_columns(space).values():
        vector[columns] = priors.vectors[int(rng.integers(priors.count)), columns]
    _swap_bank_tables(vector, rng, space)
    return make_audible(vector, performance, space)


def canonical(vector: np.ndarray, space: ParameterSpace) -> np.ndarray:
    """The vector exactly as a preset written from it reads back: integers and options snapped."""
    out = np.empty(len(space), dtype=np.float32)
    for k, p in enumerate(space.parameters):
        out[k] = p.normalise(p.denormalise(float(vector[k])))
    return out


def patch_from_row(row: np.ndarray, rng: np.random.Generator, performance: Performance,
                   space: ParameterSpace) -> np.ndarray:
    """Turn one design row into an audible, plausible parameter vector for this note."""
    patch = _Patch(np.asarray(row, dtype=np.float64), space)
    _oscillators(patch, performance.pitch)
    _filters(patch, performance.pitch)
    _envelopes(patch, performance.note_length)
    _lfos(patch)
    _effects(patch)
    _modulations(patch, rng)
    return canonical(patch.vector, space)


def perturb(vector: np.ndarray, rng: np.random.Generator, space: ParameterSpace) -> np.ndarray:
    """A variant of a real preset: jittered knobs, sometimes another option, sometimes a moved route."""
    variant = np.asarray(vector, dtype=np.float64).copy()
    continuous = space.indices(Kind.CONTINUOUS)
    variant[continuous] = np.clip(
        variant[continuous] + rng.uniform(-VARIANT_JITTER, VARIANT_JITTER, len(continuous)), 0.0, 1.0)
    if rng.random() < 0.5:
        categoricals = [k for k in space.indices(Kind.CATEGORICAL) if space.parameters[k].size > 1]
        k = int(rng.choice(categoricals))
        others = [option for option in range(space.parameters[k].size) if option != int(variant[k])]
        variant[k] = float(rng.choice(others))
    if rng.random() < 0.5:
        cells = space.indices(Kind.MODULATION)
        used = cells[variant[cells] != 0.0]
        free = cells[variant[cells] == 0.0]
        target = int(rng.choice(free))
        if len(used):
            source = int(rng.choice(used))
            variant[target], variant[source] = variant[source], 0.0
        else:
            variant[target] = rng.uniform(0.1, 1.0) * rng.choice((-1.0, 1.0))
    return canonical(variant, space)


@lru_cache(maxsize=32)
def foreign_frames(path: str) -> np.ndarray | None:
    """Keyframes of a ``.vitaltable`` file, thinned to what our Wavetable holds; None if unreadable."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    frames = frames_from_vital(table) if isinstance(table, dict) else None
    if frames is None or not len(frames) or not np.all(np.isfinite(frames)) or not np.any(frames):
        return None
    if len(frames) > MAX_WAVETABLE_KEYFRAMES:
        frames = frames[np.linspace(0, len(frames) - 1, MAX_WAVETABLE_KEYFRAMES).round().astype(int)]
    return frames


def oscillators_to_replace(vector: np.ndarray, rng: np.random.Generator, space: ParameterSpace) -> list[int]:
    """The switched-on oscillators that get a foreign table: at least one, each other one half the time."""
    on = [n for n in OSCILLATORS if vector[space.index(f"osc_{n}_on")] >= 0.5]
    first = int(rng.choice(on))
    return [n for n in on if n == first or rng.random() < 0.5]


def install_foreign_wavetable(preset: dict, vector: np.ndarray, oscillator: int, frames: np.ndarray,
                              name: str, space: ParameterSpace) -> None:
    """Put a foreign table into the preset, and its nearest bank table into the vector (in place)."""
    preset["settings"]["wavetables"][oscillator - 1] = Wavetable(name, frames).to_vital()
    vector[space.index(f"osc_{oscillator}_wavetable")] = float(default_bank().nearest(frames))
