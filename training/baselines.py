"""Reference methods the model has to beat, as candidate parameter vectors per target sound.

A method proposes one or more candidates for a sound; the evaluation renders them and keeps the
closest, so a method with many candidates is a search and pays one render per candidate. The
baselines span the obvious alternatives to a trained network: do nothing (Vital's init patch),
guess (a random patch from the dataset's own sampler), remember (the training example whose
embedding is closest) and search (many random patches, judged by ear).
"""

from __future__ import annotations

import numpy as np

from converter.vital.parameters import ParameterSpace
from training.sampling import Performance, lhs_design, patch_from_row

ROUTE_STREAM = 0xBA5E  # keeps the route draws apart from the dataset's streams for the same seed


def init_candidates(space: ParameterSpace) -> np.ndarray:
    """Vital's init patch: the score of doing nothing at all. (1, P)."""
    return space.default_vector()[None, :]


def random_candidates(performance: Performance, count: int, seed: int, key: int, space: ParameterSpace) -> np.ndarray:
    """``count`` patches from the dataset's sampler, shaped for this note: (count, P).

    The rows form one Latin hypercube, so a search over them covers the space evenly. ``key`` (the
    target's number) gives every target its own draws.
    """
    design = lhs_design(seed, key, count, space)
    rng = np.random.default_rng([seed, key, ROUTE_STREAM])
    return np.stack([patch_from_row(row, rng, performance, space) for row in design])


class NearestNeighbours:
    """Retrieval: answer with the training vector whose embedding is most similar (cosine)."""

    def __init__(self, embeddings: np.ndarray, vectors: np.ndarray) -> None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(vectors) or not len(vectors):
            raise ValueError(f"need matching (n, D) embeddings and (n, P) vectors, got {embeddings.shape} "
                             f"and {np.shape(vectors)}")
        self.embeddings = _unit_rows(embeddings)
        self.vectors = np.asarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def nearest(self, embeddings: np.ndarray) -> np.ndarray:
        """Position of the most similar stored example for each query: (n,) int."""
        similarity = _unit_rows(np.asarray(embeddings, dtype=np.float32)) @ self.embeddings.T
        return similarity.argmax(axis=1)

    def candidates(self, embeddings: np.ndarray) -> np.ndarray:
        """The retrieved vector for each query, as one candidate each: (n, 1, P)."""
        return self.vectors[self.nearest(embeddings)][:, None, :]


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
