"""The model's contract: frontend policy, output layout, canonical targets, masks and loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from converter.matching.decode import decode_outputs, output_slices
from converter.vital.parameters import (
    MODULATION_DESTINATIONS,
    MODULATION_SOURCES,
    OSCILLATORS,
    Kind,
    modulation_name,
    parameter_space,
)
from training.frontend import (
    CLIP_SAMPLES,
    LOG_FLOOR,
    PRE_ROLL_SAMPLES,
    SAMPLE_RATE,
    Frontend,
    normalise_clip,
    prepare_clip,
)
from training.losses import LFO_KNOBS, OSCILLATOR_KNOBS, ParameterLoss, audible_mask, canonical_order
from training.model import ParameterModel

SPACE = parameter_space()


def random_vectors(count: int, seed: int = 0, reader_distortions: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = np.zeros((count, len(SPACE)), np.float32)
    for k, p in enumerate(SPACE.parameters):
        if p.kind is Kind.CATEGORICAL:
            vectors[:, k] = rng.integers(0, p.size, count)
        elif p.kind is Kind.SWITCH:
            vectors[:, k] = rng.integers(0, 2, count)
        elif p.kind is Kind.MODULATION:
            vectors[:, k] = np.where(rng.random(count) < 0.05, rng.uniform(-1, 1, count), 0.0)
        else:
            vectors[:, k] = rng.random(count)
    if not reader_distortions:
        for n in OSCILLATORS:
            column = SPACE.index(f"osc_{n}_distortion_type")
            vectors[:, column] = np.where(np.isin(vectors[:, column], (7, 8, 10, 11)), 0, vectors[:, column])
    return vectors


def swap_units(vectors: np.ndarray, prefix: str, a: int, b: int, knobs: tuple[str, ...]) -> np.ndarray:
    """Exchange two interchangeable units (knobs and their grid cells) the way a user could in Vital."""
    columns = np.arange(len(SPACE))

    def exchange(x: str, y: str) -> None:
        i, j = SPACE.index(x), SPACE.index(y)
        columns[i], columns[j] = j, i

    for knob in knobs:
        exchange(f"{prefix}_{a}_{knob}", f"{prefix}_{b}_{knob}")
    for source in MODULATION_SOURCES:
        for destination in MODULATION_DESTINATIONS:
            if destination.startswith(f"{prefix}_{a}_"):
                exchange(modulation_name(source, destination),
                         modulation_name(source, destination.replace(f"{prefix}_{a}_", f"{prefix}_{b}_")))
            if source == f"{prefix}_{a}":
                exchange(modulation_name(source, destination), modulation_name(f"{prefix}_{b}", destination))
    return vectors[:, columns].copy()


def test_prepare_clip_pads_crops_and_starts_at_the_onset():
    assert prepare_clip(np.zeros(10, np.float32)).shape == (CLIP_SAMPLES,)
    short = np.ones(SAMPLE_RATE, np.float32)
    clip = prepare_clip(short)
    assert clip[:SAMPLE_RATE].min() == 1.0 and not clip[SAMPLE_RATE:].any()
    long = np.random.default_rng(0).uniform(-1, 1, 3 * CLIP_SAMPLES).astype(np.float32)
    np.testing.assert_array_equal(prepare_clip(long), long[:CLIP_SAMPLES])
    lead_in = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), short])
    clip = prepare_clip(lead_in)
    assert not clip[:PRE_ROLL_SAMPLES].any() and clip[PRE_ROLL_SAMPLES] == 1.0
    assert not prepare_clip(np.zeros(CLIP_SAMPLES + 5, np.float32)).any()


def test_frontend_normalises_each_clip_like_mert():
    audio = torch.randn(3, CLIP_SAMPLES) * torch.tensor([[0.01], [1.0], [5.0]]) + 0.3
    normal = normalise_clip(audio)
    torch.testing.assert_close(normal.mean(dim=1), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(normal.std(dim=1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    frontend = Frontend()
    features = frontend(audio)
    assert features.shape == (3, frontend.config.bins, frontend.config.frames)
    torch.testing.assert_close(features[0], frontend(audio[:1] * 40.0)[0], atol=1e-2, rtol=1e-3)


def test_octave_cqt_matches_nnaudio():
    from nnAudio.features import CQT1992v2

    frontend = Frontend()
    config = frontend.config
    reference = CQT1992v2(sr=SAMPLE_RATE, hop_length=config.hop_length, fmin=config.cqt_fmin, n_bins=config.cqt_bins,
                          bins_per_octave=config.bins_per_octave, pad_mode="constant", verbose=False)
    audio = normalise_clip(torch.randn(1, CLIP_SAMPLES))
    with torch.no_grad():
        expected = reference(audio)
        ours = (torch.exp(frontend.cqt(audio)) - LOG_FLOOR).clamp(min=0).sqrt()
    torch.testing.assert_close(ours, expected, atol=1e-3 * float(expected.max()), rtol=1e-3)


def test_outputs_follow_the_decode_layout():
    model = ParameterModel().eval()
    with torch.no_grad():
        outputs = model(torch.randn(2, CLIP_SAMPLES) * 0.1)
        embedding = model.embed(torch.randn(2, CLIP_SAMPLES))
    assert outputs.shape == (2, SPACE.output_size)
    assert embedding.shape == (2, model.config["embedding_dim"])
    for parameter, columns in zip(SPACE.parameters, output_slices(SPACE)):
        block = outputs[:, columns]
        if parameter.kind is Kind.MODULATION:
            assert block.abs().max() <= 1.0
        elif parameter.kind is not Kind.CATEGORICAL:
            assert block.min() >= 0.0 and block.max() <= 1.0
    vectors = decode_outputs(outputs.numpy())
    assert vectors.shape == (2, len(SPACE))


def test_canonical_order_is_idempotent_and_ignores_unit_order():
    vectors = random_vectors(64)
    canonical = canonical_order(vectors)
    np.testing.assert_array_equal(canonical_order(canonical), canonical)
    plain = random_vectors(64, seed=1, reader_distortions=False)
    expected = canonical_order(plain)
    for a, b in ((1, 2), (1, 3), (2, 3)):
        np.testing.assert_array_equal(canonical_order(swap_units(plain, "osc", a, b, OSCILLATOR_KNOBS)), expected)
    for a, b in ((1, 4), (2, 3)):
        np.testing.assert_array_equal(canonical_order(swap_units(plain, "lfo", a, b, LFO_KNOBS)), expected)
    on = [SPACE.index(f"osc_{n}_on") for n in OSCILLATORS]
    level = [SPACE.index(f"osc_{n}_level") for n in OSCILLATORS]
    assert np.all(np.diff(-expected[:, on], axis=1) >= 0)
    both_on = expected[:, on[0]] == expected[:, on[1]]
    assert np.all(expected[both_on, level[0]] >= expected[both_on, level[1]])


def test_canonical_order_renumbers_oscillator_inputs():
    vector = SPACE.default_vector()
    vector[[SPACE.index(f"osc_{n}_on") for n in OSCILLATORS]] = (1, 1, 0)
    vector[[SPACE.index(f"osc_{n}_level") for n in OSCILLATORS]] = (0.3, 0.9, 0.5)
    vector[SPACE.index("osc_1_distortion_type")] = 7  # FM from oscillator 2 ("A" of oscillator 1)
    vector[SPACE.index("osc_2_distortion_type")] = 11  # RM from oscillator 3 ("B" of oscillator 2)
    canonical = canonical_order(vector)
    # oscillator 2 is louder, so it moves to slot 1 and oscillator 1 to slot 2.
    assert canonical[SPACE.index("osc_1_level")] == pytest.approx(0.9)
    assert canonical[SPACE.index("osc_2_distortion_type")] == 7  # reads slot 1: the lower other slot, "A"
    assert canonical[SPACE.index("osc_1_distortion_type")] == 11  # reads slot 3: the higher other slot, "B"


def test_audible_mask_hides_what_cannot_be_heard():
    vector = SPACE.default_vector()
    vector[SPACE.index("osc_2_on")] = 0
    vector[SPACE.index("reverb_on")] = 0
    vector[SPACE.index("osc_1_on")] = 1
    vector[SPACE.index(modulation_name("lfo_1", "filter_1_cutoff"))] = 0.5
    vector[SPACE.index("filter_1_on")] = 1
    mask = audible_mask(vector)[0]
    assert not mask[SPACE.index("osc_2_wavetable")] and mask[SPACE.index("osc_2_on")]
    assert not mask[SPACE.index("reverb_size")] and mask[SPACE.index("reverb_on")]
    assert mask[SPACE.index("lfo_1_frequency")] and not mask[SPACE.index("lfo_2_frequency")]
    assert not mask[SPACE.index(modulation_name("lfo_1", "osc_2_level"))]


def test_loss_ignores_masked_targets():
    vectors = canonical_order(random_vectors(8, seed=2))
    mask = torch.from_numpy(audible_mask(vectors))
    raw = torch.randn(8, SPACE.output_size, requires_grad=True)
    terms = ParameterLoss()(raw, torch.from_numpy(vectors), mask)
    assert set(terms) >= {"total", "knob", "categorical", "switch", "modulation"}
    terms["total"].backward()
    starts = [columns.start for columns in output_slices(SPACE)]
    hidden = ~mask.numpy()
    rows, params = np.nonzero(hidden)
    assert len(rows) > 0
    assert np.all(raw.grad.numpy()[rows, np.array(starts)[params]] == 0)


@pytest.mark.slow
def test_model_exports_to_onnx(tmp_path):
    import onnxruntime

    model = ParameterModel().eval()
    audio = torch.randn(2, CLIP_SAMPLES) * 0.1
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (audio,), str(path), dynamo=False, opset_version=17, input_names=["audio"],
                      output_names=["outputs"], dynamic_axes={"audio": {0: "batch"}, "outputs": {0: "batch"}})
    session = onnxruntime.InferenceSession(str(path))
    (outputs,) = session.run(None, {"audio": audio.numpy()})
    with torch.no_grad():
        expected = model(audio).numpy()
    np.testing.assert_allclose(outputs, expected, atol=2e-4)


def test_flow_head_round_trips_and_samples_deterministically():
    model = ParameterModel(flow={}).eval()
    vectors = torch.from_numpy(canonical_order(random_vectors(16, seed=3)))
    routes = model.flow.is_modulation
    vectors[:, routes] = torch.where(vectors[:, routes].abs() >= 0.05, vectors[:, routes], 0.0)
    torch.testing.assert_close(model.flow.vectors(model.flow.relax(vectors)), vectors, atol=1e-6, rtol=0)
    audio = torch.randn(2, CLIP_SAMPLES) * 0.1
    noise = torch.randn(2, 3, model.sample_dim)
    with torch.no_grad():
        first, second = model.sample(audio, noise), model.sample(audio, noise)
    assert first.shape == (2, 3, len(SPACE))
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    categorical = SPACE.indices(Kind.CATEGORICAL)
    sizes = torch.tensor([SPACE.parameters[k].size for k in categorical])
    assert torch.all(first[..., categorical] == first[..., categorical].round())
    assert torch.all(first[..., categorical] < sizes)
    mask = torch.from_numpy(audible_mask(vectors.numpy()))
    assert model.flow.loss(torch.randn(16, model.config["embedding_dim"]), vectors, mask).isfinite()
