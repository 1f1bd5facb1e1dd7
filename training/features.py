"""The feature cache: an encoder's frozen part run once per dataset shard, stored as float16 .npy.

Training the compact encoder from cached log-mel + CQT images, or MERT's heads from cached pooled
layer states, skips the costly part of every step. The cache is computed by the model's own
``features`` module on clips prepared by ``model_clip``, exactly as at inference, and is keyed by what
decides its content: the encoder's feature config and the dataset's identity (not its count). One
file per shard holds every split's examples, so a set that ``vinv-dataset`` extends, or a split that
changes, costs only the shards not seen before; a killed build resumes at the first shard not written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from converter.files import atomic_write_bytes
from training.dataset import IDENTITY_KEYS, ExampleSet, shard_name
from training.frontend import model_clip
from training.model import ParameterModel

CACHE_VERSION = 3  # bump when the clip policy or the storage layout changes (3: one file per shard)


def feature_key(model: ParameterModel, manifest: dict) -> str:
    """Hash of everything that decides the cached values of a shard."""
    encoder = model.config["encoder"]
    settings = model.config[encoder]
    if encoder == "mert":
        settings = {"hubert": settings.get("hubert", {}), "weights": _weights_digest(model)}
    else:
        settings = {"frontend": settings.get("frontend", {}), "defaults": model.encoder.frontend.config.to_dict()}
    dataset = {key: manifest.get(key) for key in IDENTITY_KEYS}
    blob = json.dumps({"version": CACHE_VERSION, "encoder": encoder, "settings": settings, "dataset": dataset},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _weights_digest(model: ParameterModel) -> str:
    """MERT's frozen weights decide its features, so they are part of the key."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.encoder.hubert.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().flatten()[:4096].numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def compute_features(model: ParameterModel, audio: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(b, samples) float32 audio -> the encoder's frozen features, clip policy applied."""
    clips = torch.from_numpy(np.stack([model_clip(a) for a in audio])).to(device)
    return model.features(clips)


class CachedFeatures:
    """float16 features of an ExampleSet's examples by position, read from the memory-mapped shard files."""

    def __init__(self, shards: list[np.ndarray], examples: ExampleSet) -> None:
        self._shards, self._examples = shards, examples
        self.dtype = np.dtype(np.float16)
        self.shape = (len(examples), *(shards[0].shape[1:] if shards else ()))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, positions) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        return self._examples.gather(self._shards, positions, np.empty((len(positions), *self.shape[1:]), self.dtype))


def cached_features(model: ParameterModel, examples: ExampleSet, folder: str | os.PathLike[str], *,
                    batch_size: int = 32, device: torch.device | str = "cpu", progress: bool = True) -> CachedFeatures:
    """The features of every example of ``examples``, computed for the shards not yet under ``folder``."""
    folder = Path(folder) / feature_key(model, examples.manifest)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / shard_name("features", shard) for shard in examples.shards]
    missing = [k for k, path in enumerate(paths) if not path.exists()]
    was_training = model.training
    model.eval()
    bar = tqdm(total=sum(examples.shard_length(k) for k in missing), unit="clip", desc="features",
               disable=not progress, dynamic_ncols=True)
    for k in missing:
        rows = examples.shard_length(k)
        parts = [compute_features(model, examples.shard_audio_batch(k, slice(start, start + batch_size)), device)
                 .cpu().numpy().astype(np.float16) for start in range(0, rows, batch_size)]
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate(parts))
        atomic_write_bytes(paths[k], buffer.getvalue())
        bar.update(rows)
    bar.close()
    model.train(was_training)
    return CachedFeatures([np.load(path, mmap_mode="r") for path in paths], examples)
