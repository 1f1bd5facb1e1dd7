"""What real presets look like, fitted from their projections, for drawing patches that sound like music.

Uniform knobs make patches no one would program. ``fit_priors`` measures the CC-BY presets (already
projected into the parameter space by ``vector_from_preset``): which units are on together, how each
unit's knobs are set when it is on, how far cutoffs sit from the note, how many modulation routes a
patch has, which cells they use and with what amounts. Everything is a plain function of the preset
matrix, so fitting is deterministic and cheap (79 presets: milliseconds), done when a dataset is built.
``training.sampling.patch_from_priors`` and ``recombined_patch`` draw from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter.vital.parameters import (
    EFFECT_KNOBS,
    ENVELOPE_KNOBS,
    ENVELOPES,
    FILTER_KNOBS,
    FILTERS,
    LFO_KNOBS,
    LFOS,
    OSCILLATOR_KNOBS,
    OSCILLATORS,
    SAMPLER_KNOBS,
    Kind,
    ParameterSpace,
)

REFERENCE_PITCH = 60  # presets are voiced around middle C, so their cutoffs are measured from it
ROUTE_SMOOTHING = 0.05  # pseudo-count per grid cell: unseen cells stay possible, just rare
OPTION_SMOOTHING = 0.5  # pseudo-count per categorical option


def units(space: ParameterSpace) -> dict[str, tuple[str, ...]]:
    """Every switchable or interchangeable unit of the table and the names of its knobs (on switch first)."""
    table: dict[str, tuple[str, ...]] = {}
    for n in OSCILLATORS:
        table[f"osc_{n}"] = tuple(f"osc_{n}_{knob}" for knob, _, _ in OSCILLATOR_KNOBS)
    table["sample"] = tuple(f"sample_{knob}" for knob, _, _ in SAMPLER_KNOBS)
    for n in FILTERS:
        table[f"filter_{n}"] = tuple(f"filter_{n}_{knob}" for knob, _, _ in FILTER_KNOBS)
    for n in ENVELOPES:
        table[f"env_{n}"] = tuple(f"env_{n}_{stage}" for stage in ENVELOPE_KNOBS)
    for n in LFOS:
        table[f"lfo_{n}"] = tuple(f"lfo_{n}_{knob}" for knob, _, _ in LFO_KNOBS)
    for effect, knobs in EFFECT_KNOBS.items():
        table[effect] = (f"{effect}_on", *(f"{effect}_{k}" for k in knobs))
    assert all(name in space for names in table.values() for name in names)
    return table


# Units whose on switches are drawn together, from one preset, so co-occurrence is kept.
SWITCH_GROUPS = {
    "sources": (*(f"osc_{n}" for n in OSCILLATORS), "sample"),
    "filters": tuple(f"filter_{n}" for n in FILTERS),
    "effects": tuple(EFFECT_KNOBS),
}

# Recombination takes each section from a different preset: what sounds, how it is shaped, what is added.
SECTIONS = {
    "sound": SWITCH_GROUPS["sources"],
    "shape": (*SWITCH_GROUPS["filters"], *(f"env_{n}" for n in ENVELOPES), *(f"lfo_{n}" for n in LFOS)),
    "effects": SWITCH_GROUPS["effects"],
}


def section_columns(space: ParameterSpace) -> dict[str, np.ndarray]:
    """Vector positions of each section; the modulation grid travels with "shape" (its envelopes and LFOs)."""
    table = units(space)
    columns = {section: np.array([space.index(name) for unit in members for name in table[unit]], dtype=np.int64)
               for section, members in SECTIONS.items()}
    columns["shape"] = np.concatenate([columns["shape"], space.indices(Kind.MODULATION)])
    return columns


@dataclass(frozen=True)
class Priors:
    """Statistics of the real presets, in vector units (see ``converter.vital.parameters``)."""

    vectors: np.ndarray  # (presets, P) the projected presets themselves: donors for units and sections
    switches: dict[str, np.ndarray]  # switch group -> (presets, units) on-patterns, one row per preset
    on_rates: dict[str, float]  # unit -> share of presets with it on
    spreads: np.ndarray  # (P,) spread of each continuous/integer column among presets that use the unit
    option_rates: dict[str, np.ndarray]  # categorical name -> smoothed probability of each option
    cutoff_offsets: np.ndarray  # semitones from REFERENCE_PITCH of every switched-on filter's cutoff
    route_counts: np.ndarray  # (presets,) routes in the grid per preset
    route_rates: np.ndarray  # (cells,) smoothed probability that a route uses each grid cell
    route_amounts: tuple[np.ndarray, ...]  # per grid cell, the amounts presets give it
    pooled_amounts: np.ndarray  # every route amount, for cells no preset uses

    @property
    def count(self) -> int:
        return len(self.vectors)

    def summary(self) -> dict[str, float]:
        """Headline numbers: effect and unit on-rates, route counts."""
        numbers = {f"{unit}_on_rate": rate for unit, rate in self.on_rates.items()}
        numbers["median_routes"] = float(np.median(self.route_counts))
        numbers["mean_routes"] = float(np.mean(self.route_counts))
        return numbers


def _on(vectors: np.ndarray, space: ParameterSpace, unit: str) -> np.ndarray:
    """(presets,) whether each preset uses the unit (units without a switch are always in use)."""
    switch = f"{unit}_on"
    if switch not in space:
        return np.ones(len(vectors), dtype=bool)
    return vectors[:, space.index(switch)] >= 0.5


def fit_priors(vectors: np.ndarray, space: ParameterSpace) -> Priors:
    """Fit every statistic from the (presets, P) matrix of projected real presets."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if not len(vectors):
        raise ValueError("priors need at least one real preset")
    table = units(space)
    switches = {group: np.stack([_on(vectors, space, unit) for unit in members], axis=1)
                for group, members in SWITCH_GROUPS.items()}
    on_rates = {unit: float(_on(vectors, space, unit).mean()) for unit in table if f"{unit}_on" in space}
    spreads = np.zeros(len(space))
    option_rates: dict[str, np.ndarray] = {}
    for unit, names in table.items():
        using = vectors[_on(vectors, space, unit)]
        for name in names:
            k, p = space.index(name), space[name]
            if p.kind in (Kind.CONTINUOUS, Kind.INTEGER) and len(using) > 1:
                spreads[k] = float(np.std(using[:, k]))
            elif p.kind is Kind.CATEGORICAL:
                counts = np.bincount(using[:, k].astype(int), minlength=p.size)[: p.size] + OPTION_SMOOTHING
                option_rates[name] = counts / counts.sum()
    cutoffs = [space[f"filter_{n}_cutoff"].denormalise(v) - REFERENCE_PITCH
               for n in FILTERS for v in vectors[_on(vectors, space, f"filter_{n}"), space.index(f"filter_{n}_cutoff")]]
    grid = vectors[:, space.indices(Kind.MODULATION)]
    used = grid != 0.0
    rates = used.sum(axis=0) + ROUTE_SMOOTHING
    amounts = grid[used]
    return Priors(
        vectors=vectors,
        switches=switches,
        on_rates=on_rates,
        spreads=spreads,
        option_rates=option_rates,
        cutoff_offsets=np.asarray(cutoffs, dtype=np.float64),
        route_counts=used.sum(axis=1),
        route_rates=rates / rates.sum(),
        route_amounts=tuple(grid[used[:, c], c] for c in range(grid.shape[1])),
        pooled_amounts=amounts if len(amounts) else np.array([0.5]),
    )


def patch_statistics(vectors: np.ndarray, space: ParameterSpace) -> dict[str, float]:
    """The same headline numbers for any set of vectors (real, drawn from priors, LHS), to compare them."""
    vectors = np.asarray(vectors, dtype=np.float64)
    numbers = {f"{unit}_on_rate": float(_on(vectors, space, unit).mean()) for unit in units(space)
               if f"{unit}_on" in space}
    routes = (vectors[:, space.indices(Kind.MODULATION)] != 0.0).sum(axis=1)
    numbers["median_routes"] = float(np.median(routes))
    numbers["mean_routes"] = float(np.mean(routes))
    numbers["no_route_rate"] = float(np.mean(routes == 0))
    attack = space["env_1_attack"]
    attacks = [attack.to_unit(v) for v in vectors[:, space.index("env_1_attack")]]
    numbers["median_amp_attack_s"] = float(np.median(attacks))
    sustain = vectors[:, space.index("env_1_sustain")]
    numbers["amp_sustain_full_rate"] = float(np.mean(sustain >= 0.99))
    return numbers
