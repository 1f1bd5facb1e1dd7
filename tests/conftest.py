"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import vita

from converter.model import PresetModel
from converter.parameters import ParameterSpace, parameter_space

# Small enough to build and export in seconds; random weights give nonsense presets, real plumbing.
TINY_MODEL = {
    "encoder": "compact",
    "embedding_dim": 16,
    "head_hidden": 16,
    "compact": {"stem_channels": 2, "width": 16, "blocks": 1, "squeeze": 4},
    "flow": {"hidden": 16, "depth": 1, "steps": 2},
}


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny random model with a flow head, checkpointed and exported the way vinv-export does it."""
    torch = pytest.importorskip("torch")
    from export.onnx import export_model
    from training.checkpoint import save_checkpoint
    from training.model import ParameterModel

    folder = tmp_path_factory.mktemp("tiny-model")
    torch.manual_seed(0)
    save_checkpoint(ParameterModel(**TINY_MODEL), folder / "checkpoint", step=0, recipe={"purpose": "vinv tests"})
    return export_model(folder / "checkpoint", folder / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path) -> PresetModel:
    """The tiny model as the converter loads it: a real onnxruntime session."""
    return PresetModel.load(tiny_model_path, threads=1)


@pytest.fixture(scope="module")
def space() -> ParameterSpace:
    return parameter_space()


@pytest.fixture(scope="module")
def synth() -> vita.Synth:
    """An engine of the test's own, for loading presets and reading them back."""
    return vita.Synth()
