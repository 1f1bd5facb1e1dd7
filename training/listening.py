"""Choosing a checkpoint by how it sounds, not by its parameter loss.

Many vectors make one sound and the parameter loss weighs them by guesswork, so the checkpoint
kept as ``best`` is the one whose predictions, rendered by Vital, come closest to a fixed
validation subset. Each prediction is played as ``vinv-evaluate`` plays every answer
(``training.evaluate.render_answer``: tuned to the note the clip sounds at, that note, the clip's
velocity and key length) and compared with the stored clip by the converter's own ``Comparison``.
The score is the median over the subset of that distance divided by the init patch's distance to
the same clip (below 1: better than not trying), so a few hard sounds do not decide it.
"""

from __future__ import annotations

import numpy as np
import torch

from converter.analysis.audio import MODEL_SAMPLE_RATE
from converter.matching.decode import decode_outputs
from converter.matching.scoring import Comparison
from converter.vital.parameters import parameter_space
from converter.vital.render import SAMPLE_RATE
from training.baselines import init_candidates
from training.dataset import ExampleSet
from training.evaluate import heard_notes, render_answer
from training.model import ParameterModel
from training.sampling import Performance

DEFAULT_SUBSET = 24  # about 10 s of rendering on one CPU core per check


class RenderedValidation:
    """A fixed subset of validation clips, with what each is compared against, prepared once."""

    def __init__(self, examples: ExampleSet, size: int = DEFAULT_SUBSET) -> None:
        self.positions = np.unique(np.linspace(0, len(examples) - 1, min(size, len(examples))).round().astype(int))
        meta = examples.meta[self.positions]
        performances = [Performance(int(m["pitch"]), float(m["velocity"]), float(m["note_length"])) for m in meta]
        self.notes, _ = heard_notes(performances, examples.params[self.positions])
        self.velocities = [p.velocity for p in performances]
        self.comparisons = [Comparison(clip, MODEL_SAMPLE_RATE, note.length)
                            for clip, note in zip(examples.audio_batch(self.positions), self.notes)]
        init = init_candidates(parameter_space())[0]
        self.init_distances = self._distances([init] * len(self.notes))

    def __len__(self) -> int:
        return len(self.positions)

    def _distances(self, vectors) -> np.ndarray:
        """(n,) distance of each clip to its vector played as the converter plays an answer."""
        return np.array([comparison.distance(render_answer(vector, note, velocity), SAMPLE_RATE)
                         for vector, note, velocity, comparison
                         in zip(vectors, self.notes, self.velocities, self.comparisons)])

    def ratios(self, vectors: np.ndarray) -> np.ndarray:
        """(n,) rendered distance of each predicted (P,) vector over the init patch's, per subset clip."""
        return self._distances(vectors) / np.maximum(self.init_distances, 1e-9)

    @torch.no_grad()
    def score(self, model: ParameterModel, features: torch.Tensor) -> float:
        """Median ratio of the model's regression answers for this subset's (n, ...) encoder features."""
        was_training = model.training
        model.eval()
        outputs = model.activate(model.raw_outputs(model.embed_features(features)))
        model.train(was_training)
        return float(np.median(self.ratios(decode_outputs(outputs.cpu().numpy()))))
