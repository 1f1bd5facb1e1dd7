"""The parameter model: 24 kHz audio -> model outputs in converter/matching/decode.py's layout.

Every encoder splits in two: ``features(audio)``, a frozen part worth computing once per dataset
(the log-mel + CQT frontend for ``compact``, MERT's per-layer pooled hidden states for ``mert``),
and ``embed_features(features)``, the part that trains. ``ParameterModel`` stacks the regression
heads (and, optionally, the flow head of training/flow.py) on the embedding. ``forward`` runs the
whole chain from the waveform, so an exported model computes its features exactly as training did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from converter.matching.decode import output_slices
from converter.vital.parameters import Kind, ParameterSpace, parameter_space
from training.frontend import CLIP_SAMPLES, Frontend, FrontendConfig, normalise_clip, prepare_clip

__all__ = ["CLIP_SAMPLES", "ParameterModel", "prepare_clip", "CompactEncoder", "MertEncoder", "load_mert_weights"]

ENCODERS = ("compact", "mert")


class SeparableBlock(nn.Module):
    """Depthwise (strided) then pointwise 1-D convolution over time: wide reach, little arithmetic."""

    def __init__(self, channels: int, kernel: int = 5, stride: int = 2) -> None:
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)
        self.pointwise = nn.Conv1d(channels, channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.norm(self.pointwise(self.depthwise(x))))


class CompactEncoder(nn.Module):
    """Log-mel + CQT image -> embedding, sized to train on a laptop CPU.

    A small strided 2-D stem reads local spectral shapes (harmonics, formants); its output is then
    folded so every (channel, frequency band) pair becomes a channel of a 1-D network over time,
    which runs as dense matrix products instead of memory-bound 2-D maps. The last time steps are
    kept in order rather than pooled: when things happen (attack, decay, release) is the answer.
    """

    def __init__(self, embedding_dim: int = 256, stem_channels: int = 8, width: int = 192, blocks: int = 3,
                 squeeze: int = 48, frontend: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.frontend = Frontend(FrontendConfig(**(frontend or {})))
        config = self.frontend.config
        self.band_norm = nn.BatchNorm1d(config.bins)
        self.stem = nn.Sequential(nn.Conv2d(1, stem_channels, 5, 2, 2, bias=False), nn.BatchNorm2d(stem_channels),
                                  nn.GELU())
        bins, frames = (config.bins + 1) // 2, (config.frames + 1) // 2
        self.fold = nn.Sequential(nn.Conv1d(stem_channels * bins, width, 3, 2, 1, bias=False), nn.BatchNorm1d(width),
                                  nn.GELU())
        frames = (frames + 1) // 2
        self.blocks = nn.Sequential(*(SeparableBlock(width) for _ in range(blocks)))
        for _ in range(blocks):
            frames = (frames + 1) // 2
        self.squeeze = nn.Sequential(nn.Conv1d(width, squeeze, 1, bias=False), nn.BatchNorm1d(squeeze), nn.GELU())
        self.project = nn.Sequential(nn.Linear(squeeze * frames, embedding_dim), nn.LayerNorm(embedding_dim))
        self.embedding_dim = embedding_dim

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        return self.frontend(audio)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.band_norm(features).unsqueeze(1))
        x = self.fold(x.flatten(1, 2))
        x = self.squeeze(self.blocks(x))
        return self.project(x.flatten(1))


def mert_config(**overrides: Any):
    """transformers' HubertConfig with MERT-v1-95M's shapes (overridable for tiny test models)."""
    from transformers import HubertConfig

    shapes: dict[str, Any] = dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        conv_dim=(512,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_bias=False, feat_extract_norm="group", do_stable_layer_norm=False, num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16, feat_proj_layer_norm=True, apply_spec_augment=False,
        hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
        layerdrop=0.0,
    )
    shapes.update(overrides)
    return HubertConfig(**shapes)


def _mert_key(key: str) -> str | None:
    """A key of MERT's checkpoint (MERTModel) -> HubertModel's key, or None for MERT-only weights."""
    for prefix in ("model.", "mert."):
        if key.startswith(prefix):
            key = key[len(prefix):]
    if key.startswith(("feature_extractor.", "feature_projection.", "encoder.")) or key == "masked_spec_embed":
        key = key.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                          "encoder.pos_conv_embed.conv.weight_g")
        key = key.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original1",
                          "encoder.pos_conv_embed.conv.weight_v")
        return key
    return None


def _read_state(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(str(folder / "model.safetensors"))
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has neither model.safetensors nor pytorch_model.bin")


def load_mert_weights(hubert: nn.Module, folder: str | Path) -> list[str]:
    """Copy a local MERT checkpoint into a HubertModel; returns MERT's keys that had no place (ignored).

    Raises if any HubertModel weight is left unset or a shape disagrees, so a half-loaded MERT
    never trains silently.
    """
    source = _read_state(Path(folder))
    target = hubert.state_dict()
    pos_conv = "encoder.pos_conv_embed.conv."
    wants_parametrized = f"{pos_conv}parametrizations.weight.original0" in target
    mapped, ignored = {}, []
    for key, tensor in source.items():
        name = _mert_key(key)
        if name is not None and wants_parametrized:
            name = name.replace(f"{pos_conv}weight_g", f"{pos_conv}parametrizations.weight.original0")
            name = name.replace(f"{pos_conv}weight_v", f"{pos_conv}parametrizations.weight.original1")
        if name is None or name not in target:
            ignored.append(key)
            continue
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ValueError(f"MERT weight {key} has shape {tuple(tensor.shape)}, "
                             f"model wants {tuple(target[name].shape)}")
        mapped[name] = tensor.float()
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise ValueError(f"MERT checkpoint in {folder} lacks {len(missing)} weights, e.g. {missing[:3]}")
    hubert.load_state_dict(mapped)
    return ignored


class MertEncoder(nn.Module):
    """MERT-v1-95M (as transformers' HubertModel), frozen by default, with learnable layer weights.

    ``features`` returns every hidden state (embedding output plus one per layer) mean-pooled over
    time, (batch, layers + 1, hidden); ``embed_features`` mixes them with softmax weights and projects.
    Always float32: MERT was never validated in bf16 and its group norm drifts there.
    """

    def __init__(self, embedding_dim: int = 256, frozen: bool = True, weights: str | None = None,
                 hubert: dict[str, Any] | None = None) -> None:
        super().__init__()
        from transformers import HubertModel

        self.hubert = HubertModel(mert_config(**(hubert or {})))
        if weights is not None:
            load_mert_weights(self.hubert, weights)
        self.frozen = frozen
        if frozen:
            self.hubert.requires_grad_(False).eval()
        config = self.hubert.config
        self.layer_logits = nn.Parameter(torch.zeros(config.num_hidden_layers + 1))
        self.project = nn.Sequential(nn.LayerNorm(config.hidden_size), nn.Linear(config.hidden_size, embedding_dim),
                                     nn.LayerNorm(embedding_dim))
        self.embedding_dim = embedding_dim

    def train(self, mode: bool = True) -> MertEncoder:
        super().train(mode)
        if self.frozen:
            self.hubert.eval()
        return self

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            states = self.hubert(normalise_clip(audio.float()), output_hidden_states=True).hidden_states
        return torch.stack([state.mean(dim=1) for state in states], dim=1)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        mixed = (torch.softmax(self.layer_logits, dim=0)[None, :, None] * features).sum(dim=1)
        return self.project(mixed)


class ParameterHeads(nn.Module):
    """Embedding -> raw (pre-activation) outputs, one column per decode.py output."""

    def __init__(self, embedding_dim: int, hidden: int, output_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.GELU(), nn.Linear(hidden, output_size))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


def output_kinds(space: ParameterSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output column: (takes a sigmoid, takes a tanh); categorical logits take neither."""
    sigmoid = torch.zeros(space.output_size, dtype=torch.bool)
    tanh = torch.zeros(space.output_size, dtype=torch.bool)
    for parameter, columns in zip(space.parameters, output_slices(space)):
        if parameter.kind is Kind.MODULATION:
            tanh[columns] = True
        elif parameter.kind is not Kind.CATEGORICAL:
            sigmoid[columns] = True
    return sigmoid, tanh


class ParameterModel(nn.Module):
    """Audio -> Vital parameter outputs, built from a JSON-able config (see ``config``)."""

    def __init__(self, encoder: str = "compact", embedding_dim: int = 256, head_hidden: int = 384,
                 compact: dict[str, Any] | None = None, mert: dict[str, Any] | None = None,
                 flow: dict[str, Any] | None = None) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        space = parameter_space()
        self.config: dict[str, Any] = json.loads(json.dumps(dict(
            encoder=encoder, embedding_dim=embedding_dim, head_hidden=head_hidden, compact=compact or {},
            mert={k: v for k, v in (mert or {}).items() if k != "weights"}, flow=flow)))
        if encoder == "compact":
            self.encoder: CompactEncoder | MertEncoder = CompactEncoder(embedding_dim, **(compact or {}))
        else:
            self.encoder = MertEncoder(embedding_dim, **(mert or {}))
        self.heads = ParameterHeads(embedding_dim, head_hidden, space.output_size)
        sigmoid, tanh = output_kinds(space)
        self.register_buffer("sigmoid_columns", sigmoid, persistent=False)
        self.register_buffer("tanh_columns", tanh, persistent=False)
        self.flow = None
        if flow is not None:
            from training.flow import FlowHead

            self.flow = FlowHead(embedding_dim, **flow)

    @property
    def encoder_kind(self) -> str:
        return self.config["encoder"]

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """The frozen, cacheable part of the encoder."""
        return self.encoder.features(audio)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed_features(features)

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, CLIP_SAMPLES) audio -> (B, embedding_dim)."""
        return self.embed_features(self.features(audio))

    def raw_outputs(self, embedding: torch.Tensor) -> torch.Tensor:
        """Pre-activation outputs, what the loss works on."""
        return self.heads(embedding)

    def activate(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> decode.py's layout: sigmoid knobs and switches, tanh routes, raw logits."""
        squashed = torch.where(self.tanh_columns, torch.tanh(raw), raw)
        return torch.where(self.sigmoid_columns, torch.sigmoid(raw), squashed)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, CLIP_SAMPLES) float32 24 kHz audio -> (B, output_size) outputs for decode_outputs."""
        return self.activate(self.raw_outputs(self.embed(audio)))

    @property
    def sample_dim(self) -> int:
        if self.flow is None:
            raise AttributeError("this model was built without a flow head")
        return self.flow.dim

    def sample(self, audio: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """(B, CLIP_SAMPLES) audio and (B, K, sample_dim) noise -> (B, K, P) candidate parameter vectors."""
        if self.flow is None:
            raise AttributeError("this model was built without a flow head")
        return self.flow.sample(self.embed(audio), noise)

