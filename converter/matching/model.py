"""Running an exported vinv model with onnxruntime: the converter's only way to use a network.

A vinv ONNX file carries, in its metadata, everything the converter must agree with: the parameter
space's version hash, the wavetable bank version, the sample rate, the clip length and the output
size. A model trained for another table or bank would turn its outputs into the wrong presets
without any visible error, so ``PresetModel.load`` refuses it. The default model ships inside this
package; a user may point to any other exported file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

from converter.analysis.audio import CLIP_SAMPLES, MODEL_SAMPLE_RATE
from converter.vital.parameters import parameter_space
from converter.vital.wavetables import BANK_VERSION

FORMAT_VERSION = "1"  # bump when the metadata keys or the graph's inputs/outputs change meaning
DEFAULT_MODEL = Path(__file__).parents[1] / "models" / "vinv-default.onnx"
AUDIO_INPUT, NOISE_INPUT = "audio", "noise"
OUTPUTS, CANDIDATES = "outputs", "candidates"


class ModelError(RuntimeError):
    """A model file the converter cannot use: missing, not a vinv ONNX model, or made for another setup."""


def _check_metadata(metadata: dict[str, str], path: Path) -> None:
    """Refuse a model whose outputs would not mean what this converter thinks they mean."""
    if metadata.get("vinv_format") != FORMAT_VERSION:
        found = metadata.get("vinv_format")
        detail = "no vinv metadata" if found is None else f"vinv format {found}, expected {FORMAT_VERSION}"
        raise ModelError(f"{path}: not a vinv model ({detail}); export one with vinv-export")
    space = parameter_space()
    expected = {
        "parameter_space_version": space.version,
        "wavetable_bank_version": BANK_VERSION,
        "sample_rate": str(MODEL_SAMPLE_RATE),
        "clip_samples": str(CLIP_SAMPLES),
        "output_size": str(space.output_size),
    }
    for key, value in expected.items():
        if metadata.get(key) != value:
            raise ModelError(
                f"{path}: model was made for {key} {metadata.get(key)!r} but this converter has {value!r}; "
                "use a model exported for this version of vinv"
            )


class PresetModel:
    """One loaded vinv ONNX model: audio clips in, model outputs (and optional candidates) out."""

    def __init__(self, session: onnxruntime.InferenceSession, path: Path, metadata: dict[str, str]) -> None:
        self._session = session
        self._path = path
        self._metadata = metadata
        self._inputs = {tensor.name for tensor in session.get_inputs()}
        self._sample_dim = int(metadata.get("sample_dim") or 0)

    @classmethod
    def load(cls, path: str | Path | None = None, *, threads: int | None = None) -> PresetModel:
        """Open ``path`` (default: the model shipped with vinv) on the CPU with ``threads`` intra-op threads."""
        if path is None:
            path = DEFAULT_MODEL
            if not path.is_file():
                raise ModelError(
                    f"no default model at {path}: train one (vinv-train) and export it with "
                    f"`vinv-export CHECKPOINT {path}`, or pass the path of an exported model"
                )
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own unexported exception types
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelError(f"{path}: not a readable ONNX model ({reason})") from None
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        _check_metadata(metadata, path)
        return cls(session, path, metadata)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def metadata(self) -> dict[str, str]:
        """The model's metadata (copy): versions, layout, encoder kind, recipe id."""
        return dict(self._metadata)

    @property
    def has_candidates(self) -> bool:
        """Whether the model has a flow head that samples alternative parameter vectors."""
        return NOISE_INPUT in self._inputs

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """(batch, CLIP_SAMPLES) 24 kHz clips -> (batch, output_size) outputs in converter.matching.decode's layout."""
        clips = self._checked(clips)
        feeds = {AUDIO_INPUT: clips}
        if self.has_candidates:  # the graph needs every input; one flow sample is cheap beside the encoder
            feeds[NOISE_INPUT] = np.zeros((len(clips), 1, self._sample_dim), dtype=np.float32)
        return self._session.run([OUTPUTS], feeds)[0]

    def candidates(self, clips: np.ndarray, k: int, seed: int) -> np.ndarray | None:
        """``k`` sampled parameter vectors per clip, (batch, k, n_parameters); None without a flow head.

        The same ``seed`` gives the same candidates for the same clips.
        """
        if not self.has_candidates:
            return None
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        clips = self._checked(clips)
        noise = np.random.default_rng(seed).standard_normal((len(clips), k, self._sample_dim), dtype=np.float32)
        return self._session.run([CANDIDATES], {AUDIO_INPUT: clips, NOISE_INPUT: noise})[0]

    @staticmethod
    def _checked(clips: np.ndarray) -> np.ndarray:
        clips = np.ascontiguousarray(clips, dtype=np.float32)
        if clips.ndim != 2 or clips.shape[1] != CLIP_SAMPLES or len(clips) == 0:
            raise ValueError(f"expected clips of shape (batch, {CLIP_SAMPLES}), got {clips.shape}")
        if not np.all(np.isfinite(clips)):
            raise ValueError("clips contain NaN or infinity")
        return clips
