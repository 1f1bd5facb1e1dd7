"""The converter's model runner: loads exported vinv models with onnxruntime alone and refuses
files it cannot trust. Tests that need a model export a tiny one (torch required); the rest also
run in a runtime-only install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converter.matching import model as runtime
from converter.matching.decode import decode_outputs
from converter.matching.model import CLIP_SAMPLES, DEFAULT_MODEL, ModelError, PresetModel
from converter.vital.parameters import parameter_space

ROOT = Path(__file__).parents[1]
TINY = dict(encoder="compact", embedding_dim=32, head_hidden=32,
            compact=dict(stem_channels=2, width=16, blocks=1, squeeze=4))


def exported(folder: Path, **config: object) -> Path:
    """A tiny random model, checkpointed and exported the way a real one is."""
    torch = pytest.importorskip("torch")
    from export.onnx import export_model
    from training.checkpoint import save_checkpoint
    from training.model import ParameterModel

    torch.manual_seed(0)
    checkpoint = save_checkpoint(ParameterModel(**TINY, **config), folder / "checkpoint", step=1, recipe={})
    return export_model(checkpoint, folder / "model.onnx")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported(tmp_path_factory.mktemp("plain"))


@pytest.fixture(scope="module")
def with_flow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return exported(tmp_path_factory.mktemp("flow"), flow=dict(hidden=32, depth=2, steps=2))


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    time = np.arange(CLIP_SAMPLES) / 24000.0
    tone = 0.3 * np.sin(2 * np.pi * 220.0 * time) * np.exp(-time)
    return np.stack([tone, np.sign(tone) * 0.2]).astype(np.float32)


def with_metadata(source: Path, target: Path, **changes: str | None) -> Path:
    """A copy of ``source`` with metadata entries changed (None: removed)."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(source)
    metadata = {prop.key: prop.value for prop in proto.metadata_props} | changes
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {key: value for key, value in metadata.items() if value is not None})
    onnx.save(proto, target)
    return target


def test_predicts(plain: Path, clips: np.ndarray) -> None:
    model = PresetModel.load(plain, threads=1)
    outputs = model.predict(clips)
    assert outputs.shape == (2, parameter_space().output_size) and outputs.dtype == np.float32
    assert np.all(np.isfinite(outputs))
    assert decode_outputs(outputs).shape == (2, len(parameter_space()))
    assert np.allclose(model.predict(clips[1:]), outputs[1:], atol=1e-5)
    assert model.path == plain
    assert model.metadata["encoder"] == "compact"
    assert model.metadata["parameter_space_version"] == parameter_space().version
    assert model.candidates(clips, 4, seed=0) is None and not model.has_candidates


def test_candidates_are_seeded(with_flow: Path, clips: np.ndarray) -> None:
    model = PresetModel.load(with_flow)
    assert model.has_candidates
    first = model.candidates(clips, 3, seed=5)
    assert first.shape == (2, 3, len(parameter_space()))
    assert np.array_equal(first, model.candidates(clips, 3, seed=5))
    assert not np.array_equal(first, model.candidates(clips, 3, seed=6))
    assert model.predict(clips).shape == (2, parameter_space().output_size)


def test_rejects_bad_clips(plain: Path) -> None:
    model = PresetModel.load(plain)
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros(CLIP_SAMPLES, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros((1, CLIP_SAMPLES - 1), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((1, CLIP_SAMPLES), np.nan, dtype=np.float32))


@pytest.mark.parametrize("key", ["parameter_space_version", "wavetable_bank_version", "sample_rate", "clip_samples",
                                 "output_size"])
def test_refuses_a_model_made_for_another_setup(plain: Path, tmp_path: Path, key: str) -> None:
    mismatched = with_metadata(plain, tmp_path / "other.onnx", **{key: "999"})
    with pytest.raises(ModelError, match=f"{key} '999'") as caught:
        PresetModel.load(mismatched)
    assert "\n" not in str(caught.value)


def test_refuses_an_onnx_file_without_vinv_metadata(plain: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a vinv model"):
        PresetModel.load(with_metadata(plain, tmp_path / "foreign.onnx", vinv_format=None))


def test_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"certainly not a protobuf \x00\xff" * 10)
    with pytest.raises(ModelError, match="not a readable ONNX model") as caught:
        PresetModel.load(garbage)
    assert "\n" not in str(caught.value)


def test_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match="not found"):
        PresetModel.load(tmp_path / "absent.onnx")
    monkeypatch.setattr(runtime, "DEFAULT_MODEL", tmp_path / "models" / "vinv-default.onnx")
    with pytest.raises(ModelError, match="vinv-export") as caught:
        PresetModel.load()
    assert str(tmp_path / "models" / "vinv-default.onnx") in str(caught.value)


def run_without_torch(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that fails if torch (or the training stack) gets imported."""
    guard = "\nimport sys\nleaked = {'torch', 'transformers', 'nnAudio'} & set(sys.modules)\nassert not leaked, leaked"
    return subprocess.run([sys.executable, "-c", script + guard], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_runtime_does_not_import_torch(plain: Path) -> None:
    script = (
        "import numpy as np\n"
        "from converter.matching.model import PresetModel\n"
        f"model = PresetModel.load({str(plain)!r}, threads=1)\n"
        "assert model.predict(np.zeros((1, 120000), np.float32)).shape[0] == 1\n"
    )
    result = run_without_torch(script)
    assert result.returncode == 0, result.stderr


def test_shipped_model_loads_without_torch() -> None:
    script = "from converter.matching.model import PresetModel\nprint(PresetModel.load().path)\n"
    result = run_without_torch(script)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == DEFAULT_MODEL
    assert (DEFAULT_MODEL.parent / "MODEL_CARD.md").is_file()
    assert DEFAULT_MODEL.stat().st_size <= 30 * 1024 * 1024
