"""Model outputs to parameter vectors.

The model's output row follows the parameter table: each parameter takes ``Parameter.size``
columns, in table order. Continuous and integer values arrive as [0, 1] (after a sigmoid), switches
as on-probabilities, modulation amounts in [-1, 1] (after a tanh) and categoricals as raw logits.
"""

from __future__ import annotations

import numpy as np

from converter.vital.parameters import OSCILLATORS, Kind, ParameterSpace, parameter_space

RUNNER_UPS = 2  # wavetable and filter-model alternatives tried beside the model's answer when refining

MODULATION_THRESHOLD = 0.05  # weaker predicted routes are dropped: silence beats a faint wrong wobble


def output_slices(space: ParameterSpace | None = None) -> list[slice]:
    """The columns of the model's output row that belong to each parameter."""
    space = space or parameter_space()
    slices, start = [], 0
    for parameter in space.parameters:
        slices.append(slice(start, start + parameter.size))
        start += parameter.size
    return slices


def decode_outputs(outputs: np.ndarray, space: ParameterSpace | None = None) -> np.ndarray:
    """(batch, output_size) model outputs -> (batch, n_parameters) vectors, most likely choice each."""
    space = space or parameter_space()
    outputs = np.atleast_2d(np.asarray(outputs, dtype=np.float32))
    if outputs.shape[1] != space.output_size:
        raise ValueError(f"expected {space.output_size} model outputs, got {outputs.shape[1]}")
    vectors = np.empty((outputs.shape[0], len(space)), dtype=np.float32)
    for k, (parameter, columns) in enumerate(zip(space.parameters, output_slices(space))):
        block = outputs[:, columns]
        if parameter.kind is Kind.CATEGORICAL:
            vectors[:, k] = block.argmax(axis=1)
        elif parameter.kind is Kind.SWITCH:
            vectors[:, k] = block[:, 0] >= 0.5
        elif parameter.kind is Kind.MODULATION:
            amount = np.clip(block[:, 0], -1.0, 1.0)
            vectors[:, k] = np.where(np.abs(amount) >= MODULATION_THRESHOLD, amount, 0.0)
        else:
            vectors[:, k] = np.clip(block[:, 0], 0.0, 1.0)
    return vectors


def top_choices(outputs: np.ndarray, name: str, k: int, space: ParameterSpace | None = None) -> np.ndarray:
    """The ``k`` most likely options of one categorical parameter, best first: (batch, k) indices."""
    space = space or parameter_space()
    columns = output_slices(space)[space.index(name)]
    logits = np.atleast_2d(np.asarray(outputs, dtype=np.float32))[:, columns]
    return np.argsort(-logits, axis=1)[:, :k]


def runner_up_vectors(outputs: np.ndarray, vector: np.ndarray, space: ParameterSpace | None = None,
                     count: int = RUNNER_UPS) -> list[np.ndarray]:
    """``vector`` with the model's next-best wavetable (loudest oscillator) or filter model swapped in.

    A categorical choice is all or nothing: when the model hesitates between two tables, the
    runner-up is often the right one, and no knob a search turns could reach it.
    """
    space = space or parameter_space()
    outputs = np.atleast_2d(outputs)
    levels = [vector[space.index(f"osc_{n}_level")] * (vector[space.index(f"osc_{n}_on")] >= 0.5)
              for n in OSCILLATORS]
    swaps = [f"osc_{OSCILLATORS[int(np.argmax(levels))]}_wavetable"]
    if vector[space.index("filter_1_on")] >= 0.5:
        swaps.append("filter_1_model")
    vectors = []
    for rank in range(1, count + 1):
        for name in swaps:
            choice = top_choices(outputs, name, rank + 1, space)[0, rank]
            swapped = np.array(vector, dtype=np.float32)
            swapped[space.index(name)] = choice
            vectors.append(swapped)
    return vectors
