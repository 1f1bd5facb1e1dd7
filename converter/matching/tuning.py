"""Where a patch's pitch sits, for one parameter vector or a whole batch of them.

A patch sounds at the played note plus the offset (transpose + tune) of its lowest loud oscillator,
the one heard as the fundamental. The converter moves all oscillators together so that offset lands
on the input's cents (``converter.convert.tune``); training restates its labels the same way for a
whole dataset at once (``training.losses.heard_note_targets``). This module is that one rule.
"""

from __future__ import annotations

import numpy as np

from converter.vital.parameters import OSCILLATORS, Kind, Parameter, ParameterSpace, parameter_space

LOUD_SHARE = 0.5  # an oscillator at least this share of the loudest one's level can be the fundamental


def raw_column(vectors: np.ndarray, parameter: Parameter, space: ParameterSpace) -> np.ndarray:
    """``Parameter.denormalise`` of a whole column (switches, levels and semitones are plain ranges)."""
    values = parameter.low + np.clip(vectors[:, space.index(parameter.name)], 0, 1) * (parameter.high - parameter.low)
    return np.round(values) if parameter.kind in (Kind.INTEGER, Kind.SWITCH) else values


def pitch_offsets(vectors: np.ndarray, space: ParameterSpace | None = None) -> np.ndarray:
    """(n,) semitones the lowest loud oscillator of each (P,) row sounds above the played note; NaN
    where no oscillator makes a sound."""
    space = space or parameter_space()
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))

    def column(name: str) -> np.ndarray:
        return raw_column(vectors, space[name], space)

    offsets = np.stack([column(f"osc_{n}_transpose") + column(f"osc_{n}_tune") for n in OSCILLATORS], axis=1)
    levels = np.stack([column(f"osc_{n}_level") * column(f"osc_{n}_on") for n in OSCILLATORS], axis=1)
    loudest = levels.max(axis=1)
    reference = np.where(levels >= LOUD_SHARE * loudest[:, None], offsets, np.inf).min(axis=1)
    return np.where(loudest > 0.0, reference, np.nan)


def shift_oscillators(vectors: np.ndarray, shifts: np.ndarray, space: ParameterSpace | None = None) -> np.ndarray:
    """Each row with every oscillator moved by its row's ``shifts`` semitones (whole ones to transpose,
    the rest to tune), keeping their intervals; rows whose shift is NaN are returned as they are."""
    space = space or parameter_space()
    out = np.array(np.atleast_2d(vectors), dtype=np.float32)
    shifts = np.broadcast_to(np.asarray(shifts, dtype=np.float64), (len(out),))
    rows = np.isfinite(shifts)
    for n in OSCILLATORS:
        transpose, tune = space[f"osc_{n}_transpose"], space[f"osc_{n}_tune"]
        total = raw_column(out, transpose, space) + raw_column(out, tune, space) + np.where(rows, shifts, 0.0)
        semitones = np.clip(np.round(total), transpose.low, transpose.high)
        for parameter, raw in ((transpose, semitones), (tune, total - semitones)):
            normalised = np.clip((raw - parameter.low) / (parameter.high - parameter.low), 0.0, 1.0)
            out[rows, space.index(parameter.name)] = normalised[rows]
    return out
