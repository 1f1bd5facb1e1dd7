"""What the regression heads are graded against, and how.

Targets are put in a canonical order first (``canonical_order``): Vital's three oscillators, four
LFOs and two modulation envelopes are interchangeable, so one sound has several vectors and a point
regression would average them into mush. ``audible_mask`` then drops every target the sound cannot
reveal (the wavetable of a muted or silent oscillator, the knobs of a bypassed effect or filter, an
LFO with no route): grading those would only teach the model noise. ``heard_note_targets`` first
restates pitch in the frame of the note the model hears (the dataset's played note is not audible:
a clip played at C3 with a +12 oscillator is a clip played at C4), as ``converter.convert.tune``
will use the prediction. ``ParameterLoss`` combines perceptually weighted L1
on knobs, cross-entropy on categoricals, BCE on switches and MSE plus an L1 sparsity pull on the
modulation grid.

Filters are left in their order: only filter 1 has a resonance route in the grid and filter 1 can
feed filter 2 (``filter_input``), so swapping them does not always preserve the sound.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from converter.matching.decode import MODULATION_THRESHOLD, output_slices
from converter.matching.tuning import pitch_offsets, raw_column, shift_oscillators
from converter.vital import parameters
from converter.vital.parameters import (
    EFFECT_KNOBS,
    ENVELOPE_KNOBS,
    FILTERS,
    LFOS,
    MODULATION_DESTINATIONS,
    MODULATION_SOURCES,
    OSCILLATORS,
    Kind,
    ParameterSpace,
    modulation_name,
    parameter_space,
)

OSCILLATOR_KNOBS = tuple(knob for knob, _, _ in parameters.OSCILLATOR_KNOBS)
LFO_KNOBS = tuple(knob for knob, _, _ in parameters.LFO_KNOBS)
FILTER_KNOBS = tuple(knob for knob, _, _ in parameters.FILTER_KNOBS if knob != "on")
MODULATION_ENVELOPES = (2, 3)  # envelope 1 is the amplitude envelope; 2 and 3 only feed the grid
# Oscillator distortion options that read another oscillator: option -> (family, which other).
# Vital's "A" is the lower-numbered of the two other oscillators, "B" the higher
# (ProducersModule::getFirstModulationIndex / getSecondModulationIndex).
OSCILLATOR_READERS = {7: ("fm", 0), 8: ("fm", 1), 10: ("rm", 0), 11: ("rm", 1)}
READER_OPTIONS = {reader: option for option, reader in OSCILLATOR_READERS.items()}
NO_OPTION = 0  # "None" spectral morph / distortion, whose amount is then inaudible
MODULATION_SCALE = 20.0  # the grid is mostly zeros, so its per-cell mean is tiny next to knob errors
SPARSITY = 0.05  # relative pull of every predicted route towards zero
CATEGORICAL_SCALE = 0.3  # cross-entropy runs about ten times larger than a knob's L1
SWITCH_SCALE = 0.3
SILENT_AMPLITUDE = 1e-3  # an oscillator or sample level below -60 dB is not heard
KEYTRACK_CENTRE = 60  # Vital's filter cutoff moves by keytrack x (note - 60) semitones (kMidiTrackCenter)


def categorical_gather(space: ParameterSpace) -> np.ndarray:
    """(categoricals, most options) output columns of each categorical's logits, in table order, padded with -1."""
    starts = [s.start for s in output_slices(space)]
    categorical = space.indices(Kind.CATEGORICAL)
    sizes = [space.parameters[k].size for k in categorical]
    gather = np.full((len(categorical), max(sizes)), -1, dtype=np.int64)
    for row, (k, size) in enumerate(zip(categorical, sizes)):
        gather[row, :size] = starts[k] + np.arange(size)
    return gather


def _columns(space: ParameterSpace, names: list[str]) -> np.ndarray:
    return np.array([space.index(name) for name in names], dtype=np.int64)


def _unit_columns(space: ParameterSpace, prefix: str, numbers: tuple[int, ...], knobs: tuple[str, ...],
                  source: bool) -> np.ndarray:
    """(units, columns) vector positions of interchangeable units: their knobs, then their grid cells."""
    blocks = []
    for n in numbers:
        names = [f"{prefix}_{n}_{k}" for k in knobs]
        if source:
            names += [modulation_name(f"{prefix}_{n}", d) for d in MODULATION_DESTINATIONS]
        else:
            names += [modulation_name(s, d) for s in MODULATION_SOURCES for d in MODULATION_DESTINATIONS
                      if d.startswith(f"{prefix}_{n}_")]
        blocks.append(_columns(space, names))
    return np.stack(blocks)


def _permute(vectors: np.ndarray, blocks: np.ndarray, order: np.ndarray) -> None:
    """In place: unit slot j of each row takes the values of unit ``order[row, j]``."""
    rows = np.arange(len(vectors))[:, None]
    vectors[:, blocks] = vectors[:, blocks][rows, order]


def _route_strength(vectors: np.ndarray, space: ParameterSpace, source: str) -> np.ndarray:
    return np.abs(vectors[:, _columns(space, [modulation_name(source, d) for d in MODULATION_DESTINATIONS])]).sum(1)


def _sort_oscillators(vectors: np.ndarray, space: ParameterSpace) -> None:
    """On before off, then louder first; FM/RM inputs are renumbered so the sound is unchanged."""
    blocks = _unit_columns(space, "osc", OSCILLATORS, OSCILLATOR_KNOBS, source=False)
    knob = {k: blocks[:, OSCILLATOR_KNOBS.index(k)] for k in ("on", "level", "wave_frame", "distortion_type")}
    order = np.lexsort((vectors[:, knob["wave_frame"]], -vectors[:, knob["level"]], -vectors[:, knob["on"]]), axis=1)
    _permute(vectors, blocks, order)
    slot_of = np.argsort(order, axis=1)  # old oscillator -> its new slot
    rows = np.arange(len(vectors))
    units = len(OSCILLATORS)
    for slot in range(units):
        column = knob["distortion_type"][slot]
        source = order[:, slot]
        option = vectors[:, column].round().astype(np.int64)
        for reads, (family, which) in OSCILLATOR_READERS.items():
            hit = option == reads
            if not hit.any():
                continue
            others = np.array([[o for o in range(units) if o != s] for s in range(units)])
            read_slot = slot_of[rows[hit], others[source[hit], which]]
            lower_other = 1 if slot == 0 else 0
            vectors[hit, column] = np.where(read_slot == lower_other, READER_OPTIONS[(family, 0)],
                                            READER_OPTIONS[(family, 1)])


def _sort_sources(vectors: np.ndarray, space: ParameterSpace, prefix: str, numbers: tuple[int, ...],
                  knobs: tuple[str, ...], tie_knob: str) -> None:
    """Modulation sources with stronger routes first (unrouted ones last), then by ``tie_knob``."""
    blocks = _unit_columns(space, prefix, numbers, knobs, source=True)
    strength = np.stack([_route_strength(vectors, space, f"{prefix}_{n}") for n in numbers], axis=1)
    tie = vectors[:, blocks[:, knobs.index(tie_knob)]]
    order = np.lexsort((tie, -strength.round(4)), axis=1)
    _permute(vectors, blocks, order)


def canonical_order(vectors: np.ndarray, space: ParameterSpace | None = None) -> np.ndarray:
    """One representative per family of equivalent vectors: a sorted copy of (n, P) or (P,) vectors.

    Oscillators: on first, then by level (descending), then wave frame; their grid destinations move
    with them. LFOs and modulation envelopes 2/3: by total route strength (descending), then by rate
    or attack. Idempotent, and the same for any reordering of interchangeable units (up to exact ties).
    """
    space = space or parameter_space()
    vectors = np.array(vectors, dtype=np.float32, copy=True)
    single = vectors.ndim == 1
    vectors = np.atleast_2d(vectors)
    _sort_oscillators(vectors, space)
    _sort_sources(vectors, space, "lfo", LFOS, LFO_KNOBS, "frequency")
    _sort_sources(vectors, space, "env", MODULATION_ENVELOPES, ENVELOPE_KNOBS, "attack")
    return vectors[0] if single else vectors


def heard_note_targets(vectors: np.ndarray, pitches: np.ndarray,
                       space: ParameterSpace | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(targets, heard notes, cents): each (P,) vector restated for the note the clip sounds at.

    The model hears the played MIDI note plus its loud oscillators' transpose, never the two apart,
    and ``converter.convert.tune`` later puts the lowest loud oscillator at the detected note. So the
    oscillators are shifted together until that one is at 0, as ``tune`` does with no cents (both use
    ``converter.matching.tuning``), and the heard note is the played
    note plus the removed interval, rounded as a note detector would (the rest are its cents). One
    note cannot show filter keytracking either, only the cutoff it gives: keytrack becomes the table's
    default and the cutoff the one that sounds the same at the heard note (both are in semitones).
    """
    space = space or parameter_space()
    pitches = np.asarray(pitches, dtype=np.float64)
    shift = -pitch_offsets(vectors, space)
    targets = shift_oscillators(vectors, shift, space)
    heard = pitches - np.nan_to_num(shift)
    notes = np.clip(np.round(heard), 0, 127).astype(np.int64)
    cents = 100.0 * (heard - notes)
    for n in FILTERS:
        cutoff, keytrack = space[f"filter_{n}_cutoff"], space[f"filter_{n}_keytrack"]
        keytracked = raw_column(targets, keytrack, space) * (pitches - KEYTRACK_CENTRE)
        heard_cutoff = raw_column(targets, cutoff, space) + keytracked - keytrack.default * (notes - KEYTRACK_CENTRE)
        targets[:, space.index(cutoff.name)] = np.clip((heard_cutoff - cutoff.low) / (cutoff.high - cutoff.low), 0, 1)
        targets[:, space.index(keytrack.name)] = keytrack.normalise(keytrack.default)
    return targets, notes, cents


def audible_mask(vectors: np.ndarray, space: ParameterSpace | None = None) -> np.ndarray:
    """(n, P) bool: which target values the rendered sound can reveal."""
    space = space or parameter_space()
    vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    mask = np.ones(vectors.shape, dtype=bool)

    def value(name: str) -> np.ndarray:
        return vectors[:, space.index(name)]

    def quiet(name: str) -> np.ndarray:
        return np.vectorize(space[name].to_unit, otypes=[np.float64])(value(name)) < SILENT_AMPLITUDE

    def silence(names: list[str], where: np.ndarray) -> None:
        mask[np.ix_(where, _columns(space, names))] = False

    for n in OSCILLATORS:
        off = value(f"osc_{n}_on") < 0.5
        silent = off | quiet(f"osc_{n}_level")
        grid = [modulation_name(s, d) for s in MODULATION_SOURCES for d in MODULATION_DESTINATIONS
                if d.startswith(f"osc_{n}_")]
        silence([f"osc_{n}_{k}" for k in OSCILLATOR_KNOBS if k not in ("on", "level")] + grid, silent)
        silence([f"osc_{n}_level"], off)
        for kind in ("spectral_morph", "distortion"):
            plain = value(f"osc_{n}_{kind}_type").round() == NO_OPTION
            silence([f"osc_{n}_{kind}_amount"] + [modulation_name(s, f"osc_{n}_{kind}_amount")
                                                   for s in MODULATION_SOURCES], plain)
        voices = space[f"osc_{n}_unison_voices"]
        single_voice = np.array([voices.denormalise(v) <= 1 for v in value(f"osc_{n}_unison_voices")])
        silence([f"osc_{n}_unison_detune", f"osc_{n}_unison_blend"], single_voice)
    sample_off = value("sample_on") < 0.5
    silence(["sample_level", "sample_destination"], sample_off)
    silence(["sample_destination"], quiet("sample_level"))
    # prepare_clip starts every clip at its onset, so a delay before the amplitude envelope opens is never heard.
    silence(["env_1_delay"], np.ones(len(vectors), dtype=bool))
    for n in FILTERS:
        grid = [modulation_name(s, d) for s in MODULATION_SOURCES for d in MODULATION_DESTINATIONS
                if d.startswith(f"filter_{n}_")]
        silence([f"filter_{n}_{k}" for k in FILTER_KNOBS] + grid, value(f"filter_{n}_on") < 0.5)
    for effect, knobs in EFFECT_KNOBS.items():
        silence([f"{effect}_{k}" for k in knobs], value(f"{effect}_on") < 0.5)
    unrouted = {f"lfo_{n}": [f"lfo_{n}_{k}" for k in LFO_KNOBS] for n in LFOS}
    unrouted.update({f"env_{n}": [f"env_{n}_{k}" for k in ENVELOPE_KNOBS] for n in MODULATION_ENVELOPES})
    for source, names in unrouted.items():
        routes = _columns(space, [modulation_name(source, d) for d in MODULATION_DESTINATIONS])
        live = (np.abs(vectors[:, routes]) >= MODULATION_THRESHOLD) & mask[:, routes]
        silence(names, ~live.any(axis=1))
    return mask


class ParameterLoss(nn.Module):
    """Masked, perceptually weighted loss of raw head outputs (pre-activation) against vectors."""

    def __init__(self, space: ParameterSpace | None = None) -> None:
        super().__init__()
        space = space or parameter_space()
        starts = torch.tensor([s.start for s in output_slices(space)])
        self.register_buffer("weights", torch.from_numpy(space.weights), persistent=False)
        for kind, name in ((Kind.SWITCH, "switch"), (Kind.MODULATION, "modulation")):
            self.register_buffer(f"{name}_index", torch.from_numpy(space.indices(kind)), persistent=False)
        knobs = np.concatenate([space.indices(Kind.CONTINUOUS), space.indices(Kind.INTEGER)])
        self.register_buffer("knob_index", torch.from_numpy(np.sort(knobs)), persistent=False)
        self.register_buffer("starts", starts, persistent=False)
        self.register_buffer("categorical_index", torch.from_numpy(space.indices(Kind.CATEGORICAL)), persistent=False)
        self.register_buffer("categorical_gather", torch.from_numpy(categorical_gather(space)), persistent=False)

    @staticmethod
    def _mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (values * weights).sum() / weights.sum().clamp_min(1e-6)

    def forward(self, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms and their ``total`` for (B, output_size) raw outputs and (B, P) targets/mask."""
        weight = self.weights * mask.to(raw.dtype)

        def columns(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return raw[:, self.starts[index]], targets[:, index], weight[:, index]

        out, target, w = columns(self.knob_index)
        knob = self._mean((torch.sigmoid(out) - target).abs(), w)
        out, target, w = columns(self.switch_index)
        switch = self._mean(F.binary_cross_entropy_with_logits(out, target, reduction="none"), w)
        out, target, w = columns(self.modulation_index)
        amount = torch.tanh(out)
        modulation = self._mean((amount - target).pow(2), w)
        sparsity = self._mean(amount.abs(), w)
        logits = raw[:, self.categorical_gather.clamp_min(0)].masked_fill(self.categorical_gather < 0, -1e4)
        choice = targets[:, self.categorical_index].round().long()
        cross_entropy = F.cross_entropy(logits.flatten(0, 1), choice.flatten(), reduction="none")
        categorical = self._mean(cross_entropy.view_as(choice), weight[:, self.categorical_index])
        total = (knob + CATEGORICAL_SCALE * categorical + SWITCH_SCALE * switch
                 + MODULATION_SCALE * (modulation + SPARSITY * sparsity))
        return {"total": total, "knob": knob, "categorical": categorical, "switch": switch,
                "modulation": modulation, "sparsity": sparsity}
