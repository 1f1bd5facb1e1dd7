"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import ctypes
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import numpy as np
import pytest
import vita

from converter.matching.model import PresetModel
from converter.vital.parameters import ParameterSpace, parameter_space

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


CAP_DAC_OVERRIDE = 1  # linux/capability.h: what lets root write where permissions say no
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapabilityHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapabilitySet(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextmanager
def _effective_capability_dropped(capability: int) -> Iterator[None]:
    """Linux: this thread loses ``capability`` until the block ends (it stays permitted, so it comes back)."""
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapabilityHeader(LINUX_CAPABILITY_VERSION_3, 0)
    sets = (_CapabilitySet * 2)()
    if libc.capget(ctypes.byref(header), sets) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    saved = sets[0].effective
    sets[0].effective &= ~(1 << capability)
    if libc.capset(ctypes.byref(header), sets) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        sets[0].effective = saved
        libc.capset(ctypes.byref(header), sets)


@pytest.fixture
def read_only() -> Callable[[Path], AbstractContextManager[Path]]:
    """``with read_only(folder):`` nothing can be created in ``folder``, even by root (CI runs as root).

    chmod alone does not stop root, so as root on Linux the test's thread also gives up CAP_DAC_OVERRIDE.
    """
    @contextmanager
    def locked(folder: Path) -> Iterator[Path]:
        folder.chmod(0o555)
        try:
            if os.geteuid() != 0:
                yield folder
            elif sys.platform.startswith("linux"):
                with _effective_capability_dropped(CAP_DAC_OVERRIDE):
                    yield folder
            else:
                pytest.skip("root ignores folder permissions here and only Linux lets a test give that up")
        finally:
            folder.chmod(0o755)

    return locked


@pytest.fixture(scope="module")
def space() -> ParameterSpace:
    return parameter_space()


@pytest.fixture(scope="module")
def synth() -> vita.Synth:
    """An engine of the test's own, for loading presets and reading them back."""
    return vita.Synth()


@pytest.fixture(scope="session")
def sampled_renders() -> tuple[np.ndarray, list]:
    """12 synth patches drawn and rendered as the dataset does, as 5 s clips and how each was played.

    Seed 1: the shipped model was trained on seed 0's draws, so these are sounds it never saw.
    """
    pytest.importorskip("torch")
    from training.dataset import INT16_FULL_SCALE, load_sources, make_patch_examples
    from training.sampling import Performance, lhs_design

    sources = load_sources(1, (1.0, 0.0, 0.0, 0.0, 0.0, 0.0), None, None)
    rows = lhs_design(1, 0, 12, parameter_space())
    examples = [make_patch_examples(sources, index, row, Counter(), notes=1)[0] for index, row in enumerate(rows)]
    clips = np.stack([example.audio for example in examples]).astype(np.float32) / INT16_FULL_SCALE
    return clips, [Performance(int(e.meta[0]), float(e.meta[1]), float(e.meta[2])) for e in examples]
