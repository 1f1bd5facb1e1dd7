"""A trained checkpoint -> one ONNX file the torch-free converter runs (``vinv-export``).

The graph holds the whole chain, frontend included: 24 kHz waveform in, every head out, so the
converter never re-implements the features training used. Its metadata records what the converter
must agree with (parameter space, wavetable bank, sample rate, clip length, output layout) and
where the model came from (encoder, training recipe). The TorchScript-based exporter is used: it
turns ``torch.stft``, the CQT convolutions and transformers' attention into plain ONNX ops whose
results match PyTorch to float32 rounding.

int8 quantisation is dynamic and touches only matrix products with constant weights (the dense
layers and attention projections): the frontend's fixed STFT/CQT kernels and mel filterbank stay
float32, because quantising a spectrogram's huge dynamic range to 8 bits wipes out its quiet bins.
Weights are unsigned like the activations: onnxruntime multiplies uint8 by int8 weights with
VPMADDUBSW on x86 CPUs without VNNI, which saturates, so an int8-weight file answers differently
from one CPU to the next (a tiny test model moved by 0.16-0.24 on such a CPU, by 0.006 with uint8
weights); uint8 x uint8 products are exact integers everywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

import converter
from converter.analysis.audio import MODEL_SAMPLE_RATE, to_model_rate
from converter.files import atomic_write_bytes
from converter.matching.decode import decode_outputs
from converter.matching.model import (
    AUDIO_INPUT,
    CANDIDATES,
    CLIP_SAMPLES,
    FORMAT_VERSION,
    NOISE_INPUT,
    OUTPUTS,
    PresetModel,
)
from converter.vital.parameters import Kind, parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE as RENDER_SAMPLE_RATE
from converter.vital.render import render
from converter.vital.wavetables import BANK_VERSION, default_bank
from training.checkpoint import CheckpointError, load_checkpoint, read_card
from training.evaluate import rendered_distances
from training.frontend import model_clip
from training.model import ParameterModel
from training.sampling import Performance

OPSET = 18
FP32_TOLERANCE = 1e-4  # max |onnxruntime - torch| on knob values and flow samples: float32 rounding, nothing more
# int8 changes the numbers by design, so it is judged by how its presets sound: rendered, they may
# land at most this much further (mean MR-STFT) from the reference sounds than fp32's. The shipped
# model's int8 copy measured +0.3 to +1.9 % on the tests' 12 sampled patches, a tiny random model +0.1 %.
INT8_MARGIN = 0.05
REFERENCE_TABLES = ("Bell", "Vowels", "FM 1:2")  # with the init patch's Saw: four distinct timbres
REFERENCE_PITCHES = (60, 45, 72, 52)
REFERENCE_VELOCITY = 0.8
CHECK_CANDIDATES = 4


class _ExportGraph(nn.Module):
    """The traced graph: the encoder runs once and feeds both the regression heads and the flow."""

    def __init__(self, model: ParameterModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, audio: torch.Tensor,
                noise: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        embedding = self.model.embed(audio)
        outputs = self.model.activate(self.model.raw_outputs(embedding))
        if noise is None:
            return outputs
        return outputs, self.model.flow.sample(embedding, noise)


def recipe_id(recipe: dict) -> str:
    """Short stable hash of a checkpoint's training recipe (command, seed, dataset summary)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_metadata(model: ParameterModel, *, recipe: str, step: int, precision: str) -> dict[str, str]:
    """The metadata_props of an exported file; converter.matching.model checks the first block of them."""
    space = parameter_space()
    layout = [[p.name, p.kind.value, p.size] for p in space.parameters]
    return {
        "vinv_format": FORMAT_VERSION,
        "parameter_space_version": space.version,
        "output_size": str(space.output_size),
        "n_parameters": str(len(space)),
        "output_layout": json.dumps(layout),
        "sample_rate": str(MODEL_SAMPLE_RATE),
        "clip_samples": str(CLIP_SAMPLES),
        "wavetable_bank_version": BANK_VERSION,
        "recipe_id": recipe,
        "encoder": model.encoder_kind,
        "has_candidates": str(model.flow is not None).lower(),
        "sample_dim": str(model.sample_dim if model.flow is not None else 0),
        "vinv_version": converter.__version__,
        "training_step": str(step),
        "precision": precision,
    }


def _save(proto: onnx.ModelProto, metadata: dict[str, str], out: Path) -> Path:
    """Replace the metadata, validate, and write atomically."""
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(out, proto.SerializeToString())


def export_module(model: ParameterModel, out: str | os.PathLike[str], *, recipe: str, step: int = 0,
                  opset: int = OPSET) -> Path:
    """Trace ``model`` (eval mode, float32) into ``out`` with dynamic batch (and candidate count)."""
    if opset < 17:
        raise ValueError(f"opset {opset} has no STFT: use 17 or later")
    model = model.float().eval()
    audio = torch.zeros(2, CLIP_SAMPLES)
    inputs, input_names, output_names = (audio,), [AUDIO_INPUT], [OUTPUTS]
    dynamic_axes = {AUDIO_INPUT: {0: "batch"}, OUTPUTS: {0: "batch"}}
    if model.flow is not None:
        inputs += (torch.zeros(2, CHECK_CANDIDATES, model.sample_dim),)
        input_names.append(NOISE_INPUT)
        output_names.append(CANDIDATES)
        dynamic_axes |= {NOISE_INPUT: {0: "batch", 1: "candidates"}, CANDIDATES: {0: "batch", 1: "candidates"}}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape arithmetic on fixed sizes
        torch.onnx.export(_ExportGraph(model), inputs, buffer, dynamo=False, opset_version=opset,
                          input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
    proto = onnx.load_from_string(buffer.getvalue())
    return _save(proto, model_metadata(model, recipe=recipe, step=step, precision="fp32"), Path(out))


def quantize_model(fp32_path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Dynamic int8 copy of an exported fp32 model (weights of dense layers uint8), same metadata."""
    fp32_path, out = Path(fp32_path), Path(out)
    metadata = {prop.key: prop.value for prop in onnx.load(fp32_path, load_external_data=False).metadata_props}
    with tempfile.TemporaryDirectory(prefix="vinv-int8-") as scratch:
        quantized = Path(scratch) / "int8.onnx"
        quantize_dynamic(fp32_path, quantized, op_types_to_quantize=["MatMul", "Gemm"],
                         weight_type=QuantType.QUInt8)
        proto = onnx.load(quantized)
    return _save(proto, metadata | {"precision": "int8"}, out)


def export_model(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], *, int8: bool = False,
                 opset: int = OPSET) -> Path:
    """Export the checkpoint at ``checkpoint`` to ``out`` (int8-quantised when ``int8``)."""
    model = load_checkpoint(checkpoint)
    card = read_card(checkpoint)
    identity = {"recipe": recipe_id(card.get("recipe", {})), "step": int(card.get("step", 0))}
    if not int8:
        return export_module(model, out, opset=opset, **identity)
    with tempfile.TemporaryDirectory(prefix="vinv-export-") as scratch:
        fp32 = export_module(model, Path(scratch) / "fp32.onnx", opset=opset, **identity)
        return quantize_model(fp32, out)


def reference_performances(count: int = 4, *, note_seconds: float = 1.0) -> list[Performance]:
    """How each reference clip is played: pitches in turn, each key held ``note_seconds``."""
    return [Performance(REFERENCE_PITCHES[number % len(REFERENCE_PITCHES)], REFERENCE_VELOCITY, note_seconds)
            for number in range(count)]


def reference_clips(count: int = 4, *, note_seconds: float = 1.0) -> np.ndarray:
    """(count, CLIP_SAMPLES) real Vital renders, cut as the model is fed: init Saw, then bank tables.

    Each key is held ``note_seconds``; by default the release leaves the clip's end silent, as with
    most plucked or short user sounds.
    """
    space = parameter_space()
    bank = default_bank()
    clips = []
    for number, performance in enumerate(reference_performances(count, note_seconds=note_seconds)):
        vector = space.default_vector()
        if number > 0:
            table = REFERENCE_TABLES[(number - 1) % len(REFERENCE_TABLES)]
            vector[space.index("osc_1_wavetable")] = bank.index(table)
        audio = render(preset_from_vector(vector), pitch=performance.pitch, velocity=performance.velocity,
                       note_length=performance.note_length, duration=CLIP_SAMPLES / MODEL_SAMPLE_RATE)
        clips.append(model_clip(to_model_rate(audio, RENDER_SAMPLE_RATE)))
    return np.stack(clips)


def onnx_answers(path: str | os.PathLike[str], clips: np.ndarray,
                 noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run an exported file on ``clips`` (and ``noise`` when it has a flow head) with onnxruntime."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {AUDIO_INPUT: clips.astype(np.float32)}
    if noise is not None:
        feeds[NOISE_INPUT] = noise.astype(np.float32)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@torch.no_grad()
def torch_answers(model: ParameterModel, clips: np.ndarray, noise: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The same answers from PyTorch, through the model's public ``forward`` and ``sample``."""
    audio = torch.from_numpy(clips.astype(np.float32))
    answers = {OUTPUTS: model.eval()(audio).numpy()}
    if noise is not None:
        answers[CANDIDATES] = model.sample(audio, torch.from_numpy(noise.astype(np.float32))).numpy()
    return answers


def check_noise(model: ParameterModel, batch: int, seed: int = 0) -> np.ndarray | None:
    """Fixed flow noise for a parity check, None for a model without a flow head."""
    if model.flow is None:
        return None
    return np.random.default_rng(seed).standard_normal((batch, CHECK_CANDIDATES, model.sample_dim), dtype=np.float32)


def paired_answers(model: ParameterModel, path: str | os.PathLike[str],
                   clips: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """PyTorch's and the exported file's answers on ``clips``, flow heads fed the same fixed noise."""
    noise = check_noise(model, len(clips))
    return torch_answers(model, clips, noise), onnx_answers(path, clips, noise)


def preset_differences(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, float]:
    """How two runtimes' answers differ where the converter looks: the presets they decode to.

    ``choices``: categorical and switch settings that differ; ``knobs``: max |difference| of every
    other decoded value (each in [0, 1] or [-1, 1] of its range); ``candidates``: max |difference| of
    the flow samples, when there are any. Raw categorical logits are not compared: they are unbounded
    (a trained model's reach 11), so float32 rounding moves them by a few 1e-4 while every choice stays.
    """
    space = parameter_space()
    before, after = decode_outputs(expected[OUTPUTS], space), decode_outputs(got[OUTPUTS], space)
    chosen = np.array([p.kind in (Kind.CATEGORICAL, Kind.SWITCH) for p in space.parameters])
    differences = {"choices": float((before[:, chosen] != after[:, chosen]).sum()),
                   "knobs": float(np.abs(before[:, ~chosen] - after[:, ~chosen]).max())}
    if CANDIDATES in expected:
        differences["candidates"] = float(np.abs(got[CANDIDATES] - expected[CANDIDATES]).max())
    return differences


def presets_agree(differences: dict[str, float]) -> bool:
    return (differences["choices"] == 0 and differences["knobs"] <= FP32_TOLERANCE
            and differences.get("candidates", 0.0) <= FP32_TOLERANCE)


def bounded_columns() -> np.ndarray:
    """Output columns holding activated values in [-1, 1] (everything but categorical logits)."""
    space = parameter_space()
    kinds = np.repeat([p.kind is Kind.CATEGORICAL for p in space.parameters], [p.size for p in space.parameters])
    return np.flatnonzero(~kinds)


def int8_quality(fp32_path: str | os.PathLike[str], int8_path: str | os.PathLike[str], clips: np.ndarray,
                 performances: Sequence[Performance]) -> dict[str, float]:
    """The int8 copy next to its fp32 original, both run as the converter runs them, on ``clips``.

    ``fp32_distance`` and ``int8_distance``: mean MR-STFT from the clips to the renders of each
    one's presets (what int8 must not make worse); also the categorical choices int8 keeps and its
    largest change on the bounded columns.
    """
    fp32 = PresetModel.load(fp32_path, threads=1).predict(clips)
    int8 = PresetModel.load(int8_path, threads=1).predict(clips)
    vectors = decode_outputs(fp32), decode_outputs(int8)
    categorical = parameter_space().indices(Kind.CATEGORICAL)
    columns = bounded_columns()
    return {"fp32_distance": float(rendered_distances(vectors[0], clips, performances).mean()),
            "int8_distance": float(rendered_distances(vectors[1], clips, performances).mean()),
            "categorical_agreement": float((vectors[0][:, categorical] == vectors[1][:, categorical]).mean()),
            "max_bounded_difference": float(np.abs(int8[:, columns] - fp32[:, columns]).max())}


def int8_passes(quality: dict[str, float]) -> bool:
    return quality["int8_distance"] <= (1.0 + INT8_MARGIN) * quality["fp32_distance"]


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.2f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vinv-export",
                                     description="Export a vinv checkpoint to one ONNX file the converter runs.")
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder (or a file inside it)")
    parser.add_argument("out", type=Path, help="ONNX file to write")
    parser.add_argument("--int8", action="store_true",
                        help="also write a dynamically int8-quantised copy beside OUT (OUT.int8.onnx)")
    parser.add_argument("--check", action="store_true",
                        help="compare onnxruntime's presets with PyTorch's on real Vital renders, and int8's "
                             "with fp32's when rendered; fail beyond tolerance")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset, 17 or later (default {OPSET})")
    args = parser.parse_args(argv)
    try:
        fp32 = export_model(args.checkpoint, args.out, opset=args.opset)
    except CheckpointError as error:
        print(f"vinv-export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {fp32} ({_megabytes(fp32)})")
    int8 = None
    if args.int8:
        int8 = quantize_model(fp32, fp32.with_suffix(".int8.onnx"))
        print(f"wrote {int8} ({_megabytes(int8)})")
    if not args.check:
        return 0
    model = load_checkpoint(args.checkpoint)
    clips = reference_clips()
    differences = preset_differences(*paired_answers(model, fp32, clips))
    passed = presets_agree(differences)
    print(f"fp32 presets: {differences['choices']:.0f} choices differ; max |onnx - torch| on knob values = "
          f"{differences['knobs']:.3g} (tolerance {FP32_TOLERANCE:g})")
    if "candidates" in differences:
        print(f"fp32 candidates: max |onnx - torch| = {differences['candidates']:.3g} (tolerance {FP32_TOLERANCE:g})")
    if int8 is not None:
        quality = int8_quality(fp32, int8, clips, reference_performances())
        passed &= int8_passes(quality)
        print(f"int8 presets: mean MR-STFT to the references {quality['int8_distance']:.3f} vs fp32 "
              f"{quality['fp32_distance']:.3f} (at most +{INT8_MARGIN:.0%}); categorical choices kept: "
              f"{quality['categorical_agreement']:.1%}; max |int8 - fp32| on bounded columns = "
              f"{quality['max_bounded_difference']:.3g}")
    if not passed:
        print("parity check FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
