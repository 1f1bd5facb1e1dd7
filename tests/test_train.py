"""vinv-train end to end on a tiny rendered dataset: train, checkpoint, resume, reload."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile
import torch

from converter.analysis.audio import MODEL_SAMPLE_RATE
from converter.analysis.input_audio import read_audio
from converter.convert import analyse

from training.checkpoint import CheckpointError, load_checkpoint, read_card, save_checkpoint
from training.dataset import SPLITS, ExampleSet, build_dataset, shard_name
from training.features import cached_features, compute_features
from training.frontend import CLIP_SAMPLES
from training.model import ParameterModel
from training.train import Batches, TrainingStep, main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-set")
    build_dataset(folder, 24, seed=3, shard_size=12, workers=1, progress=False)
    return folder


@torch.no_grad()
def training_loss(model: ParameterModel, dataset) -> float:
    """What the optimiser minimises (train mode, flow noise fixed), over the run's training clips.

    Train mode, because in eval mode the batch-norm statistics that every forward pass updates
    would lower the loss without a single optimiser step.
    """
    examples = ExampleSet(dataset, "train")
    batches = Batches(examples, cached_features(model, examples, dataset / "features", progress=False), model, 8, 0, 1,
                      torch.device("cpu"))
    step = TrainingStep(model).train()
    torch.manual_seed(0)
    return float(np.mean([float(step(*batches.load(rows))["total"]) for rows in batches.in_order()]))


def test_train_resume_and_reload(dataset, tmp_path):
    run = tmp_path / "run"
    common = [str(dataset), "--out", str(run), "--batch-size", "8", "--seed", "1", "--no-progress", "--threads", "2",
              "--flow"]
    torch.manual_seed(1)  # as vinv-train --seed 1 starts
    losses = [training_loss(ParameterModel(encoder="compact", flow={}), dataset)]
    assert main([*common, "--epochs", "1"]) == 0
    first = read_card(run / "latest")
    assert first["step"] >= 1 and first["recipe"]["encoder"] == "compact"
    losses.append(training_loss(load_checkpoint(run / "latest"), dataset))
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    second = read_card(run / "latest")
    assert second["step"] == 2 * first["step"]
    assert "epoch 2" in (run / "train.log").read_text()
    losses.append(training_loss(load_checkpoint(run / "latest"), dataset))
    assert losses[0] > losses[1] > losses[2], losses  # measured 3.620 > 3.586 > 3.543

    model = load_checkpoint(run / "latest")
    audio = torch.randn(2, CLIP_SAMPLES) * 0.1
    with torch.no_grad():
        expected = model(audio)
    save_checkpoint(model, tmp_path / "copy", step=second["step"], recipe=second["recipe"])
    with torch.no_grad():
        torch.testing.assert_close(load_checkpoint(tmp_path / "copy")(audio), expected, rtol=0, atol=0)

    card = json.loads((tmp_path / "copy" / "config.json").read_text())
    card["space_version"] = "not-this-space"
    (tmp_path / "copy" / "config.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="parameter space"):
        load_checkpoint(tmp_path / "copy")


def test_feature_cache_matches_the_model_and_grows_with_the_set(dataset, tmp_path):
    """Features are cached per shard: a shard that joins the set is computed, the ones before are kept."""
    model = ParameterModel().eval()
    folder = tmp_path / "set"
    shutil.copytree(dataset, folder, ignore=shutil.ignore_patterns("features", shard_name("audio", 1)))
    half = ExampleSet(folder, None)
    assert half.shards == [0]
    cache = cached_features(model, half, tmp_path / "cache", batch_size=8, progress=False)
    assert cache.dtype == np.float16 and len(cache) == len(half) == 12
    (written,) = (tmp_path / "cache").glob("*/features-00000.npy")
    first_write = written.stat().st_mtime_ns

    shutil.copy(dataset / "shards" / shard_name("audio", 1), folder / "shards")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(count=36, shards=3)  # as `vinv-dataset --count 36` records it before rendering shard 2
    (folder / "manifest.json").write_text(json.dumps(manifest))
    examples = ExampleSet(folder, "train")
    grown = cached_features(model, examples, tmp_path / "cache", batch_size=8, progress=False)
    assert examples.shards == [0, 1] and len(grown) == len(examples)
    assert written.stat().st_mtime_ns == first_write
    assert (written.parent / shard_name("features", 1)).exists()
    positions = [int(np.flatnonzero(examples.shard_of == shard)[-1]) for shard in (0, 1)]
    direct = compute_features(model, examples.audio_batch(positions)).numpy()
    np.testing.assert_allclose(grown[positions].astype(np.float32), direct, atol=0.02, rtol=0.002)
    again = cached_features(model, examples, tmp_path / "cache", progress=False)
    np.testing.assert_array_equal(again[np.arange(len(examples))], grown[np.arange(len(examples))])


def test_cache_only_fills_the_cache_and_trains_nothing(dataset, tmp_path):
    run = tmp_path / "run"
    assert main([str(dataset), "--out", str(run), "--cache-only", "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress", "--threads", "2"]) == 0
    assert sorted(path.name for path in (tmp_path / "cache").glob("*/*.npy")) == [
        shard_name("features", 0), shard_name("features", 1)]
    assert not (run / "latest").exists()


def test_a_training_clip_is_heard_as_the_converter_hears_the_same_sound(dataset, tmp_path):
    """Train/inference parity: a clip with a slow offset (as some Vital patches play) gives the same
    features in training as the converter's clip of it read from a file, which is offset-free."""
    model = ParameterModel().eval()
    clip = ExampleSet(dataset, "train").audio_batch([0])[0]
    drift = (0.3 * np.exp(-np.arange(clip.size) / (0.8 * MODEL_SAMPLE_RATE))).astype(np.float32)
    soundfile.write(tmp_path / "note.wav", clip + drift, MODEL_SAMPLE_RATE, subtype="FLOAT")
    heard = analyse(read_audio(tmp_path / "note.wav")).clip
    with torch.no_grad():
        at_inference = model.features(torch.from_numpy(heard[None])).numpy()
    np.testing.assert_allclose(compute_features(model, (clip + drift)[None]).numpy(), at_inference, atol=1e-4)


def test_best_checkpoint_is_chosen_by_how_it_sounds(dataset, tmp_path):
    """Every epoch logs the rendered validation score; ``best`` is the epoch where it was lowest."""
    folder = tmp_path / "set"
    shutil.copytree(dataset, folder, ignore=shutil.ignore_patterns("features"))
    meta_path = folder / "shards" / shard_name("meta", 0)
    meta = np.load(meta_path)
    meta["split"][:4] = SPLITS.index("validation")  # whatever the split hash gave this tiny set
    np.save(meta_path, meta)
    run = tmp_path / "run"
    assert main([str(folder), "--out", str(run), "--batch-size", "4", "--epochs", "3", "--render-subset", "2",
                 "--no-progress", "--threads", "2"]) == 0
    epochs = [line for line in (run / "train.log").read_text().splitlines() if line.startswith("epoch ")]
    rendered = [float(re.search(r"\| render ([0-9.]+)", line).group(1)) for line in epochs]
    steps = [int(re.search(r"step (\d+)", line).group(1)) for line in epochs]
    assert len(rendered) == 3 and all(r > 0 for r in rendered)
    best = read_card(run / "best")
    assert best["step"] == steps[int(np.argmin(rendered))]
    assert best["recipe"]["select_by"] == "render (2 clips)"
    assert best["recipe"]["trainer"]["best_render"] == pytest.approx(min(rendered), abs=1e-4)
