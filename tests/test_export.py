"""ONNX export: onnxruntime must answer like PyTorch on real Vital renders, with the metadata the
converter checks, for both encoders; the int8 copy's presets must sound as close as fp32's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import converter
from converter.analysis.audio import MODEL_SAMPLE_RATE
from converter.app import cli as app
from converter.matching.decode import output_slices
from converter.matching.model import CLIP_SAMPLES, DEFAULT_MODEL, OUTPUTS
from converter.vital.parameters import Kind, parameter_space
from converter.vital.wavetables import BANK_VERSION
from export.onnx import (
    FP32_TOLERANCE,
    INT8_MARGIN,
    OPSET,
    bounded_columns,
    export_model,
    int8_passes,
    int8_quality,
    main,
    onnx_answers,
    paired_answers,
    preset_differences,
    presets_agree,
    quantize_model,
    recipe_id,
    reference_clips,
    torch_answers,
)
from training.checkpoint import load_checkpoint, save_checkpoint
from training.frontend import prepare_clip
from training.model import ParameterModel

TINY_COMPACT = dict(encoder="compact", embedding_dim=32, head_hidden=32,
                    compact=dict(stem_channels=2, width=16, blocks=1, squeeze=4))
TINY_HUBERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
TINY_MERT = dict(encoder="mert", embedding_dim=32, head_hidden=32, mert=dict(hubert=TINY_HUBERT))
TINY_FLOW = dict(TINY_COMPACT, flow=dict(hidden=32, depth=2, steps=4))
RECIPE = {"command": "test", "seed": 7}


def tiny_checkpoint(folder: Path, config: dict, seed: int = 0) -> Path:
    """A randomly initialised model saved as a checkpoint, with non-trivial normalisation statistics."""
    torch.manual_seed(seed)
    model = ParameterModel(**config)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(model, folder, step=12, recipe=RECIPE)


def max_differences(model: ParameterModel, path: Path, clips: np.ndarray) -> dict[str, float]:
    """Max |onnxruntime - torch| per graph output on ``clips``: a tiny random model's raw outputs stay
    small, so its export must match them exactly, logits included."""
    expected, got = paired_answers(model, path, clips)
    return {name: float(np.abs(got[name] - expected[name]).max()) for name in expected}


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return reference_clips(2)


@pytest.fixture(scope="module")
def compact(tmp_path_factory: pytest.TempPathFactory) -> tuple[ParameterModel, Path]:
    folder = tmp_path_factory.mktemp("compact")
    checkpoint = tiny_checkpoint(folder / "checkpoint", TINY_COMPACT)
    return load_checkpoint(checkpoint), export_model(checkpoint, folder / "model.onnx")


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> tuple[ParameterModel, Path]:
    folder = tmp_path_factory.mktemp("flow")
    checkpoint = tiny_checkpoint(folder / "checkpoint", TINY_FLOW)
    return load_checkpoint(checkpoint), export_model(checkpoint, folder / "model.onnx")


def test_the_exported_graph_takes_the_clips_training_cuts(compact: tuple[ParameterModel, Path]) -> None:
    (audio,) = onnxruntime.InferenceSession(str(compact[1]), providers=["CPUExecutionProvider"]).get_inputs()
    for seconds in (0.3, 7.0):
        clip = prepare_clip(np.ones(round(seconds * MODEL_SAMPLE_RATE), np.float32))
        assert clip.shape == tuple(audio.shape[1:])


def test_reference_clips_are_real_distinct_renders(clips: np.ndarray) -> None:
    assert clips.shape == (2, CLIP_SAMPLES) and clips.dtype == np.float32
    assert np.all(np.abs(clips).max(axis=1) > 0.05)
    assert not np.allclose(clips[0], clips[1])


def test_compact_parity(compact: tuple[ParameterModel, Path], clips: np.ndarray) -> None:
    model, path = compact
    differences = max_differences(model, path, clips)
    assert differences["outputs"] <= FP32_TOLERANCE, differences


def test_check_judges_the_presets_not_raw_logits(compact: tuple[ParameterModel, Path], clips: np.ndarray) -> None:
    """Rounding on a trained model's large logits moves them by a few 1e-4 and changes no preset (the
    check passes); a flipped choice or a knob moved by more than FP32_TOLERANCE fails it."""
    model, path = compact
    expected = torch_answers(model, clips)
    assert presets_agree(preset_differences(expected, onnx_answers(path, clips)))
    space = parameter_space()
    logits = np.setdiff1d(np.arange(space.output_size), bounded_columns())
    shifted = expected[OUTPUTS].copy()
    shifted[:, logits] += 5e-4
    assert presets_agree(preset_differences(expected, {OUTPUTS: shifted}))
    columns = output_slices(space)
    categorical = columns[space.indices(Kind.CATEGORICAL)[0]]
    flipped = expected[OUTPUTS].copy()
    flipped[0, categorical.start + (np.argmax(flipped[0, categorical]) + 1) % 2] += 100.0  # a runner-up wins
    assert preset_differences(expected, {OUTPUTS: flipped})["choices"] == 1
    assert not presets_agree(preset_differences(expected, {OUTPUTS: flipped}))
    moved = expected[OUTPUTS].copy()
    moved[:, columns[space.indices(Kind.CONTINUOUS)[0]]] += 3 * FP32_TOLERANCE
    assert preset_differences(expected, {OUTPUTS: moved})["knobs"] == pytest.approx(3 * FP32_TOLERANCE, rel=0.01)
    assert not presets_agree(preset_differences(expected, {OUTPUTS: moved}))


def test_dynamic_batch(compact: tuple[ParameterModel, Path], clips: np.ndarray) -> None:
    model, path = compact
    three = np.concatenate([clips, clips[:1] * 0.5])
    for batch in (clips[:1], three):
        got = onnx_answers(path, batch)["outputs"]
        assert got.shape == (len(batch), parameter_space().output_size)
        assert np.abs(got - torch_answers(model, batch)["outputs"]).max() <= FP32_TOLERANCE


def test_graph_signature(compact: tuple[ParameterModel, Path]) -> None:
    proto = onnx.load(compact[1])
    assert max(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")) == OPSET
    (audio,), (outputs,) = proto.graph.input, proto.graph.output
    assert audio.name == "audio" and outputs.name == "outputs"
    assert audio.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in audio.type.tensor_type.shape.dim] == ["batch", CLIP_SAMPLES]
    assert [d.dim_param or d.dim_value for d in outputs.type.tensor_type.shape.dim] == [
        "batch", parameter_space().output_size]


def test_metadata(compact: tuple[ParameterModel, Path]) -> None:
    metadata = {prop.key: prop.value for prop in onnx.load(compact[1]).metadata_props}
    space = parameter_space()
    layout = json.loads(metadata.pop("output_layout"))
    assert [tuple(row) for row in layout] == [(p.name, p.kind.value, p.size) for p in space.parameters]
    assert sum(size for _, _, size in layout) == space.output_size
    assert metadata == {
        "vinv_format": "1",
        "parameter_space_version": space.version,
        "output_size": str(space.output_size),
        "n_parameters": str(len(space)),
        "sample_rate": "24000",
        "clip_samples": "120000",
        "wavetable_bank_version": BANK_VERSION,
        "recipe_id": recipe_id(RECIPE),
        "encoder": "compact",
        "has_candidates": "false",
        "sample_dim": "0",
        "vinv_version": converter.__version__,
        "training_step": "12",
        "precision": "fp32",
    }


def test_vinv_version_names_the_exported_models_step(compact: tuple[ParameterModel, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("converter.matching.model.DEFAULT_MODEL", compact[1])
    model_line = app.version_text().splitlines()[1]
    assert model_line == f"model: model.onnx, recipe {recipe_id(RECIPE)} (step 12, encoder compact, precision fp32)"


def test_flow_parity_with_dynamic_batch_and_candidates(flow: tuple[ParameterModel, Path], clips: np.ndarray) -> None:
    model, path = flow
    assert max(max_differences(model, path, clips).values()) <= FP32_TOLERANCE
    rng = np.random.default_rng(3)
    for batch, candidates in ((clips[:1], 1), (np.concatenate([clips, clips[:1]]), 3)):
        noise = rng.standard_normal((len(batch), candidates, model.sample_dim), dtype=np.float32)
        got, expected = onnx_answers(path, batch, noise), torch_answers(model, batch, noise)
        assert got["candidates"].shape == (len(batch), candidates, len(parameter_space()))
        for name in ("outputs", "candidates"):
            assert np.abs(got[name] - expected[name]).max() <= FP32_TOLERANCE, name


def test_flow_graph_and_metadata(flow: tuple[ParameterModel, Path]) -> None:
    model, path = flow
    proto = onnx.load(path)
    assert [tensor.name for tensor in proto.graph.input] == ["audio", "noise"]
    assert [tensor.name for tensor in proto.graph.output] == ["outputs", "candidates"]
    noise = proto.graph.input[1].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in noise] == ["batch", "candidates", model.sample_dim]
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["has_candidates"] == "true" and metadata["sample_dim"] == str(model.sample_dim)


def test_int8_copy(flow: tuple[ParameterModel, Path], clips: np.ndarray, tmp_path: Path) -> None:
    """Unsigned weights: int8 weights saturate in onnxruntime on x86 CPUs without VNNI (see export.onnx)."""
    path = flow[1]
    int8 = quantize_model(path, tmp_path / "model.int8.onnx")
    proto = onnx.load(int8)
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["precision"] == "int8" and metadata["parameter_space_version"] == parameter_space().version
    assert int8.stat().st_size < path.stat().st_size
    weights = {tensor.name: tensor.data_type for tensor in proto.graph.initializer}
    products = [node for node in proto.graph.node if node.op_type == "MatMulInteger"]
    assert products and all(weights[node.input[1]] == onnx.TensorProto.UINT8 for node in products)
    assert any(node.op_type == "DynamicQuantizeLinear" for node in proto.graph.node)
    assert onnx_answers(int8, clips, np.zeros((2, 1, flow[0].sample_dim)))["outputs"].shape == (
        2, parameter_space().output_size)


@pytest.mark.slow
def test_int8_copy_of_the_shipped_model_sounds_like_it(sampled_renders: tuple[np.ndarray, list],
                                                       tmp_path: Path) -> None:
    """What int8 must keep: presets that, rendered, match the sounds as well as fp32's (margin INT8_MARGIN)."""
    int8 = quantize_model(DEFAULT_MODEL, tmp_path / "shipped.int8.onnx")
    quality = int8_quality(DEFAULT_MODEL, int8, *sampled_renders)
    assert int8_passes(quality) and quality["int8_distance"] <= (1 + INT8_MARGIN) * quality["fp32_distance"], quality
    # measured 0.96-0.98: a trained model's choices have margins that int8's small changes rarely cross
    assert quality["categorical_agreement"] >= 0.9, quality


@pytest.mark.slow
def test_mert_parity(tmp_path: Path) -> None:
    """Notes held through the clip: in a random MERT the bias-free, group-normed conv stack leaves
    silent frames at float32 rounding-noise level, which its eps-dominated LayerNorms amplify about
    300-fold, so on silent tails two float32 runtimes differ by ~1e-4 (both drift from float64)."""
    clips = reference_clips(2, note_seconds=4.5)
    checkpoint = tiny_checkpoint(tmp_path / "checkpoint", TINY_MERT)
    path = export_model(checkpoint, tmp_path / "mert.onnx")
    model = load_checkpoint(checkpoint)
    assert max_differences(model, path, clips)["outputs"] <= FP32_TOLERANCE
    three = np.concatenate([clips, clips[:1]])
    assert np.abs(onnx_answers(path, three)["outputs"] - torch_answers(model, three)["outputs"]).max() <= FP32_TOLERANCE
    assert {prop.key: prop.value for prop in onnx.load(path).metadata_props}["encoder"] == "mert"


@pytest.mark.slow
def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = tiny_checkpoint(tmp_path / "checkpoint", TINY_FLOW, seed=1)
    out = tmp_path / "out" / "model.onnx"
    assert main([str(checkpoint), str(out), "--int8", "--check"]) == 0
    printed = capsys.readouterr().out
    for line in ("fp32 presets: 0 choices differ; max |onnx - torch| on knob values",
                 "fp32 candidates: max |onnx - torch|",
                 "int8 presets: mean MR-STFT to the references"):
        assert line in printed
    assert "FAILED" not in printed
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.int8.onnx", "model.onnx"]


def test_refuses_old_opset(compact: tuple[ParameterModel, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_model(compact[1].parent / "checkpoint", tmp_path / "old.onnx", opset=16)
