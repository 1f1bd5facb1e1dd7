"""The MERT encoder: MERT-v1-95M's shapes, its checkpoint layout mapped onto HubertModel, frozen use."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from training.frontend import CLIP_SAMPLES, SAMPLE_RATE
from training.model import MertEncoder, ParameterModel, load_mert_weights, mert_config

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
MERT_ONLY_KEYS = ("feature_extractor_cqt.conv.weight", "label_embs_concat", "final_proj.weight")


def mert_layout_state(seed: int) -> dict[str, torch.Tensor]:
    """A random tiny checkpoint keyed as MERTModel saves it (weight-norm as weight_g / weight_v)."""
    from transformers import HubertModel

    torch.manual_seed(seed)
    state = {}
    for key, tensor in HubertModel(mert_config(**TINY)).state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        key = key.replace("parametrizations.weight.original1", "weight_v")
        state[key] = torch.randn_like(tensor)
    for key in MERT_ONLY_KEYS:
        state[key] = torch.randn(4, 4)
    return state


@pytest.mark.slow
def test_full_size_encoder_answers_like_mert_v1_95m():
    """MERT-v1-95M hears 24 kHz audio as 75 frames a second; 12 layers plus the embedding, 768 wide, are pooled."""
    encoder = MertEncoder(embedding_dim=32)
    with torch.no_grad():
        frames = [encoder.hubert(torch.randn(1, seconds * SAMPLE_RATE) * 0.1).last_hidden_state.shape[1]
                  for seconds in (1, 2)]
        features = encoder.features(torch.randn(1, SAMPLE_RATE) * 0.1)
        embedding = encoder.embed_features(features)
    assert SAMPLE_RATE == 24000 and frames[1] - frames[0] == 75
    assert features.shape == (1, 13, 768) and embedding.shape == (1, 32)


@pytest.mark.parametrize("file_name", ["pytorch_model.bin", "model.safetensors"])
def test_every_mert_weight_lands(tmp_path, file_name):
    state = mert_layout_state(seed=1)
    if file_name.endswith(".bin"):
        torch.save(state, tmp_path / file_name)
    else:
        save_file(state, str(tmp_path / file_name))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mert_model"}))
    encoder = MertEncoder(weights=str(tmp_path), hubert=TINY)
    loaded = encoder.hubert.state_dict()
    for key, tensor in state.items():
        if key in MERT_ONLY_KEYS:
            continue
        name = key.replace("weight_g", "parametrizations.weight.original0")
        name = name.replace("weight_v", "parametrizations.weight.original1")
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0, msg=key)


def test_incomplete_mert_checkpoint_is_refused(tmp_path):
    state = mert_layout_state(seed=2)
    del state["encoder.layers.1.attention.k_proj.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="lacks"):
        load_mert_weights(MertEncoder(hubert=TINY).hubert, tmp_path)


def test_mert_model_is_frozen_float32_and_pools_every_layer():
    model = ParameterModel(encoder="mert", mert={"hubert": TINY})
    assert not any(p.requires_grad for p in model.encoder.hubert.parameters())
    assert model.encoder.layer_logits.requires_grad
    audio = torch.randn(2, CLIP_SAMPLES) * 0.1
    features = model.features(audio)
    assert features.shape == (2, TINY["num_hidden_layers"] + 1, TINY["hidden_size"])
    assert features.dtype == torch.float32 and not features.requires_grad
    model.train()
    assert not model.encoder.hubert.training
    outputs = model(audio)
    assert outputs.shape == (2, 568)
    outputs.sum().backward()
    assert model.encoder.layer_logits.grad is not None
