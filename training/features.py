"""The feature cache: an encoder's frozen part run once per dataset split, stored as float16 .npy.

Training the compact encoder from cached log-mel + CQT images, or MERT's heads from cached pooled
layer states, skips the costly part of every step. The cache is computed by the model's own
``features`` module on clips prepared by ``model_clip``, exactly as at inference, and is keyed by what
decides its content: the encoder's feature config, the dataset's manifest and the split's examples.
A killed build resumes from the last flushed batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.frontend import model_clip
from training.model import ParameterModel

CACHE_VERSION = 2  # bump when the clip policy or the storage layout changes (2: offsets removed)
FLUSH_EVERY = 16  # batches between progress flushes


def feature_key(model: ParameterModel, manifest: dict, indices: np.ndarray) -> str:
    """Hash of everything that decides the cached values."""
    encoder = model.config["encoder"]
    settings = model.config[encoder]
    if encoder == "mert":
        settings = {"hubert": settings.get("hubert", {}), "weights": _weights_digest(model)}
    else:
        settings = {"frontend": settings.get("frontend", {}), "defaults": model.encoder.frontend.config.to_dict()}
    blob = json.dumps({"version": CACHE_VERSION, "encoder": encoder, "settings": settings, "manifest": manifest,
                       "examples": hashlib.sha256(np.ascontiguousarray(indices, np.int64).tobytes()).hexdigest()},
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


def cached_features(model: ParameterModel, examples, folder: str | os.PathLike[str], *, batch_size: int = 32,
                    device: torch.device | str = "cpu", progress: bool = True) -> np.ndarray:
    """float16 (n, *feature_shape) features of every example of ``examples`` (an ExampleSet), memory-mapped.

    Built under ``folder`` on first use; a later call with the same key only opens the file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = feature_key(model, examples.manifest, examples.meta["index"])
    final = folder / f"{key}.npy"
    if final.exists():
        return np.load(final, mmap_mode="r")
    partial, done_file = folder / f"{key}.partial.npy", folder / f"{key}.partial.json"
    count = len(examples)
    was_training = model.training
    model.eval()
    shape = tuple(compute_features(model, examples.audio_batch([0]), device).shape[1:])
    done = 0
    if partial.exists() and done_file.exists():
        store = np.load(partial, mmap_mode="r+")
        done = int(json.loads(done_file.read_text())["done"]) if store.shape == (count, *shape) else 0
    if done == 0:
        store = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(count, *shape))
    bar = tqdm(total=count, initial=done, unit="clip", desc="features", disable=not progress, dynamic_ncols=True)
    for batch, start in enumerate(range(done, count, batch_size)):
        stop = min(start + batch_size, count)
        store[start:stop] = compute_features(model, examples.audio_batch(np.arange(start, stop)), device).cpu().numpy()
        bar.update(stop - start)
        if batch % FLUSH_EVERY == FLUSH_EVERY - 1 or stop == count:
            store.flush()
            done_file.write_text(json.dumps({"done": stop}))
    bar.close()
    del store
    os.replace(partial, final)
    done_file.unlink(missing_ok=True)
    model.train(was_training)
    return np.load(final, mmap_mode="r")
