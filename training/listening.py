"""Choosing a checkpoint by how it sounds, not by its parameter loss.

Many vectors make one sound and the parameter loss weighs them by guesswork, so the checkpoint
kept as ``best`` is the one whose predictions, rendered by Vital, come closest to a fixed
validation subset. Each prediction is played as the converter would play it: tuned to the note
the clip sounds at (``converter.convert.tune``), that note, the clip's velocity and key length, and
compared with the stored clip by the converter's own ``Comparison``. The score is the median over
the subset of that distance divided by the init patch's distance to the same clip (below 1: better
than not trying), so a few hard sounds do not decide it.
"""

from __future__ import annotations

import numpy as np
import torch

from converter.analysis.audio import MODEL_SAMPLE_RATE
from converter.analysis.note import Note
from converter.convert import tune
from converter.matching.decode import decode_outputs
from converter.matching.scoring import Comparison, score_seconds
from converter.vital.preset import init_preset, preset_from_vector
from converter.vital.render import SAMPLE_RATE, RenderError, render
from training.dataset import ExampleSet
from training.losses import heard_note_targets
from training.model import ParameterModel

DEFAULT_SUBSET = 24  # about 10 s of rendering on one CPU core per check


class RenderedValidation:
    """A fixed subset of validation clips, with what each is compared against, prepared once."""

    def __init__(self, examples: ExampleSet, size: int = DEFAULT_SUBSET) -> None:
        self.positions = np.unique(np.linspace(0, len(examples) - 1, min(size, len(examples))).round().astype(int))
        meta = examples.meta[self.positions]
        _, notes, cents = heard_note_targets(examples.params[self.positions], meta["pitch"])
        self.notes = [Note(int(n), float(c), True, 1.0, float(length))
                      for n, c, length in zip(notes, cents, meta["note_length"])]
        self.velocities = meta["velocity"].astype(float)
        self.comparisons = [Comparison(clip, MODEL_SAMPLE_RATE, note.length)
                            for clip, note in zip(examples.audio_batch(self.positions), self.notes)]
        init = init_preset()
        self.init_distances = np.array([self._distance(init, k) for k in range(len(self.notes))])

    def __len__(self) -> int:
        return len(self.positions)

    def _distance(self, preset: dict, k: int) -> float:
        note = self.notes[k]
        try:
            audio = render(preset, note.pitch, self.velocities[k], note.length, score_seconds(note.length))
        except RenderError:
            audio = np.zeros(1, dtype=np.float32)
        if not np.all(np.isfinite(audio)):
            audio = np.zeros(1, dtype=np.float32)
        return self.comparisons[k].distance(audio, SAMPLE_RATE)

    def ratios(self, vectors: np.ndarray) -> np.ndarray:
        """(n,) rendered distance of each predicted (P,) vector over the init patch's, per subset clip."""
        distances = [self._distance(preset_from_vector(tune(vector, note)), k)
                     for k, (vector, note) in enumerate(zip(vectors, self.notes))]
        return np.array(distances) / np.maximum(self.init_distances, 1e-9)

    @torch.no_grad()
    def score(self, model: ParameterModel, features: torch.Tensor) -> float:
        """Median ratio of the model's regression answers for this subset's (n, ...) encoder features."""
        was_training = model.training
        model.eval()
        outputs = model.activate(model.raw_outputs(model.embed_features(features)))
        model.train(was_training)
        return float(np.median(self.ratios(decode_outputs(outputs.cpu().numpy()))))
