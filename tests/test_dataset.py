"""Dataset generation: patch rules, shard safety, determinism, kill + resume, splits by origin."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from converter.vital.parameters import Kind, parameter_space
from training import dataset
from training.dataset import (
    CLIP_SAMPLES,
    META_DTYPE,
    ExampleSet,
    build_dataset,
    load_presets,
    shard_is_complete,
    shard_name,
    split_of,
    temp_name,
    write_shard,
)
from training.sampling import canonical, draw_performance, foreign_frames, lhs_design, patch_from_row, perturb

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PRESETS = sorted((SHARED / "presets").rglob("*.vital"))
TABLES = sorted((SHARED / "wavetables").rglob("*.vitaltable"))
needs_shared = pytest.mark.skipif(len(PRESETS) < 3 or len(TABLES) < 3, reason="needs ../shared presets and tables")

COUNT, SHARD_SIZE, SEED = 12, 4, 17  # seed 17: its three patches are prior-drawn, real and foreign
RATIOS = (0.2, 0.1, 0.1, 0.2, 0.2, 0.2)


def test_split_hash_is_stable_and_near_90_5_5():
    splits = Counter(split_of(f"example:{i}") for i in range(20000))
    assert split_of("preset:a.vital") == split_of("preset:a.vital")
    assert abs(splits[0] / 20000 - 0.90) < 0.01 and abs(splits[1] / 20000 - 0.05) < 0.01


def test_sampled_patches_are_canonical_and_obey_the_rules():
    space = parameter_space()
    design = lhs_design(0, 0, 32, space)
    assert design.shape == (32, len(space)) and np.array_equal(design, lhs_design(0, 0, 32, space))
    cells = space.indices(Kind.MODULATION)
    for i, row in enumerate(design):
        rng = np.random.default_rng([0, i])
        performance = draw_performance(rng)
        vector = patch_from_row(row, rng, performance, space)
        assert np.array_equal(vector, canonical(vector, space))
        levels = [vector[space.index(f"osc_{n}_level")] for n in (1, 2, 3) if vector[space.index(f"osc_{n}_on")]]
        assert levels and max(levels) >= 0.45
        attack = space["env_1_attack"].denormalise(vector[space.index("env_1_attack")]) ** 4
        assert attack < performance.note_length
        assert np.count_nonzero(vector[cells]) <= 4
        assert 36 <= performance.pitch <= 84 and 0.2 <= performance.note_length <= 3.0


def test_variants_stay_in_the_space():
    space = parameter_space()
    base = canonical(space.default_vector(), space)
    variants = [perturb(base, np.random.default_rng(k), space) for k in range(20)]
    for variant in variants:
        assert np.array_equal(variant, canonical(variant, space))
    assert any(not np.array_equal(v, base) for v in variants)


@needs_shared
def test_foreign_tables_fit_our_wavetable_size():
    frames = foreign_frames(str(TABLES[0]))
    assert frames is not None and 1 <= len(frames) <= 16 and frames.shape[1] == 2048


def test_unreadable_preset_is_reported_and_skipped(tmp_path):
    (tmp_path / "broken.vital").write_text("{not json")
    (tmp_path / "no_settings.vital").write_text("{}")
    names, vectors, unreadable = load_presets(tmp_path)
    assert names == [] and vectors.shape == (0, len(parameter_space()))
    assert sorted(problem.split(":")[0] for problem in unreadable) == ["broken.vital", "no_settings.vital"]


def test_failed_shard_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    audio = np.zeros((2, CLIP_SAMPLES), np.int16)
    params = np.zeros((2, len(parameter_space())), np.float32)
    meta = np.zeros(2, META_DTYPE)
    real_save = np.save

    def save_then_fill_disk(handle, array):
        if array.dtype == META_DTYPE:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(handle, array)

    monkeypatch.setattr(dataset.np, "save", save_then_fill_disk)
    with pytest.raises(OSError):
        write_shard(tmp_path, 0, audio, params, meta)
    assert list(tmp_path.iterdir()) == [] and not shard_is_complete(tmp_path, 0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three real presets plus an unreadable one, and three foreign tables, in temp folders."""
    if len(PRESETS) < 3 or len(TABLES) < 3:
        pytest.skip("needs ../shared presets and tables")
    root = tmp_path_factory.mktemp("inputs")
    presets, tables = root / "presets", root / "tables"
    presets.mkdir()
    tables.mkdir()
    for path in PRESETS[:3]:
        shutil.copy(path, presets / path.name)
    (presets / "zz_truncated.vital").write_bytes(PRESETS[0].read_bytes()[:1000])
    for path in TABLES[:3]:
        shutil.copy(path, tables / path.name)
    return presets, tables


def _args(folder: Path, inputs, workers: int, shard: str = "0/1") -> list[str]:
    presets, tables = inputs
    return [str(folder), "--count", str(COUNT), "--seed", str(SEED), "--shard-size", str(SHARD_SIZE),
            "--ratios", ",".join(map(str, RATIOS)), "--presets", str(presets), "--wavetables", str(tables),
            "--workers", str(workers), "--shard", shard, "--no-progress"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inputs):
    """An uninterrupted build with two worker processes: the set every other build must equal."""
    folder = tmp_path_factory.mktemp("reference")
    presets, tables = inputs
    summary = build_dataset(folder, COUNT, seed=SEED, shard_size=SHARD_SIZE, ratios=RATIOS, presets_dir=presets,
                            wavetables_dir=tables, workers=2, progress=False)
    return folder, summary


def _assert_same_set(folder: Path, reference_folder: Path) -> None:
    built, expected = ExampleSet(folder, None), ExampleSet(reference_folder, None)
    assert len(built) == len(expected) == COUNT
    assert np.array_equal(built.meta, expected.meta)
    assert np.array_equal(built.params, expected.params)
    assert np.array_equal(built.audio_batch(range(COUNT)), expected.audio_batch(range(COUNT)))


@pytest.mark.slow
def test_build_end_to_end(reference):
    folder, summary = reference
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["count"] == COUNT and manifest["sample_rate"] == 24000 and manifest["clip_seconds"] == 5.0
    assert manifest["parameter_space_version"] == parameter_space().version
    presets = json.loads((folder / "presets.json").read_text())
    assert len(presets) == 3 and not any("truncated" in name for name in presets.values())
    assert len(summary["unreadable_presets"]) == 1 and "zz_truncated.vital" in summary["unreadable_presets"][0]
    assert summary["examples_built"] == COUNT and sum(summary["per_source"].values()) == COUNT

    every = ExampleSet(folder, None)
    assert np.array_equal(every.meta["index"], np.arange(COUNT))
    assert every.params.shape == (COUNT, len(parameter_space())) and every.params.dtype == np.float32
    batch = every.audio_batch([0, 5])
    assert batch.shape == (2, CLIP_SAMPLES) and batch.dtype == np.float32
    assert np.allclose(np.abs(batch).max(axis=1), 0.9, atol=1e-3)
    assert np.array_equal(every.audio[5], batch[1])
    assert set(every.meta["source"]) == {4, 1, 3}
    assert np.all((every.meta["origin"] >= 0) == np.isin(every.meta["source"], (1, 2)))
    assert np.all(every.meta["peak"] > 1e-3) and np.all((every.meta["pitch"] >= 36) & (every.meta["pitch"] <= 84))
    assert sum(len(ExampleSet(folder, split)) for split in ("train", "validation", "test")) == COUNT
    assert not list((folder / "shards").glob(".*"))


@pytest.mark.slow
def test_variants_of_a_preset_never_straddle_splits(reference):
    meta = ExampleSet(reference[0], None).meta
    real = meta[np.isin(meta["source"], (1, 2))]
    for origin in np.unique(real["origin"]):
        assert len(np.unique(real["split"][real["origin"] == origin])) == 1


@pytest.mark.slow
def test_shard_parts_merge_into_the_same_set(tmp_path, inputs, reference):
    merged = tmp_path / "merged"
    for part in ("0/2", "1/2"):
        folder = tmp_path / part.replace("/", "of")
        assert dataset.main(_args(folder, inputs, workers=1, shard=part)) == 0
        if not merged.exists():
            shutil.copytree(folder, merged)
        for path in (folder / "shards").glob("*.npy"):
            shutil.copy(path, merged / "shards" / path.name)
    _assert_same_set(merged, reference[0])


@pytest.mark.slow
def test_killed_build_resumes_to_the_same_set(tmp_path, inputs, reference):
    folder = tmp_path / "killed"
    command = [sys.executable, "-m", "training.dataset", *_args(folder, inputs, workers=2)]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    first_meta = folder / "shards" / shard_name("meta", 0)
    deadline = time.monotonic() + 120
    while not first_meta.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    partial = ExampleSet(folder, None)
    complete = [k for k in range(COUNT // SHARD_SIZE) if shard_is_complete(folder / "shards", k)]
    assert 0 in complete and len(partial) == len(complete) * SHARD_SIZE
    assert set(partial.meta["index"] // SHARD_SIZE) == set(complete)

    assert dataset.main(_args(folder, inputs, workers=1)) == 0
    assert not list((folder / "shards").glob(".*"))
    _assert_same_set(folder, reference[0])


@pytest.mark.slow
def test_half_written_shard_is_ignored_then_rebuilt(tmp_path, inputs, reference):
    folder = tmp_path / "half"
    shutil.copytree(reference[0], folder)
    shards = folder / "shards"
    (shards / shard_name("meta", 1)).unlink()
    for kind in ("audio", "params", "meta"):
        (shards / temp_name(kind, 1)).write_bytes(b"partial")
    partial = ExampleSet(folder, None)
    assert len(partial) == COUNT - SHARD_SIZE and not np.any(partial.meta["index"] // SHARD_SIZE == 1)

    summary = build_dataset(folder, COUNT, seed=SEED, shard_size=SHARD_SIZE, ratios=RATIOS,
                            presets_dir=inputs[0], wavetables_dir=inputs[1], workers=1, progress=False)
    assert summary["shards_this_run"] == 1 and summary["examples_built"] == SHARD_SIZE
    assert not list(shards.glob(".*"))
    _assert_same_set(folder, reference[0])


@pytest.mark.slow
def test_folder_of_another_dataset_is_refused(reference, inputs):
    with pytest.raises(dataset.DatasetError, match="seed"):
        build_dataset(reference[0], COUNT, seed=SEED + 1, shard_size=SHARD_SIZE, ratios=RATIOS,
                      presets_dir=inputs[0], wavetables_dir=inputs[1], workers=1, progress=False)


def test_a_bare_name_is_a_set_in_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert dataset.dataset_folder("synth-150k") == tmp_path / "cache" / "vinv" / "datasets" / "synth-150k"
    assert dataset.dataset_folder(tmp_path / "here") == tmp_path / "here"
    assert dataset.dataset_folder("./here") == Path("here")


@pytest.mark.slow
def test_each_patch_is_played_at_several_performances(reference):
    every = ExampleSet(reference[0], None)
    per_patch = dataset.PERFORMANCES_PER_PATCH
    for first in range(0, COUNT, per_patch):
        group = slice(first, first + per_patch)
        assert np.all(every.params[group] == every.params[first])
        assert len(set(every.meta["source"][group])) == len(set(every.meta["split"][group])) == 1
        assert len(set(zip(every.meta["pitch"][group], every.meta["note_length"][group]))) == per_patch
    assert not np.array_equal(every.params[0], every.params[per_patch])


@pytest.mark.slow
def test_a_smaller_set_is_extended_to_the_same_set(tmp_path, inputs, reference):
    folder = tmp_path / "grown"
    presets, tables = inputs
    common = dict(seed=SEED, shard_size=SHARD_SIZE, ratios=RATIOS, presets_dir=presets, wavetables_dir=tables,
                  workers=1, progress=False)
    build_dataset(folder, COUNT - SHARD_SIZE - 2, **common)
    kept = (folder / "shards" / shard_name("audio", 0)).stat().st_mtime_ns
    summary = build_dataset(folder, COUNT, **common)
    assert summary["shards_this_run"] == 2 and summary["shards_already_complete"] == 1
    assert (folder / "shards" / shard_name("audio", 0)).stat().st_mtime_ns == kept
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["count"] == COUNT and [run["count"] for run in manifest["runs"]] == [COUNT - SHARD_SIZE - 2, COUNT]
    assert manifest["seed"] == SEED and manifest["generator_version"] == dataset.GENERATOR_VERSION
    assert build_dataset(folder, SHARD_SIZE, **common)["count"] == COUNT
    _assert_same_set(folder, reference[0])
