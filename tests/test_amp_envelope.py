"""The amp envelope measured from Vital's own renders of known envelopes, and handed to the model's patch."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from converter.analysis.amp_envelope import measure_amp_envelope
from converter.analysis.input_audio import read_audio
from converter.analysis.note import envelope
from converter.convert import analyse, build_candidates, predict, render_preview, with_amp_envelope
from converter.vital.parameters import control
from converter.vital.preset import init_preset, preset_from_vector
from converter.vital.render import SAMPLE_RATE, render

HELD = 1.5


def with_envelope(attack: float, decay: float, sustain: float, release: float) -> dict:
    preset = init_preset()
    preset["settings"].update({f"env_1_{stage}": control(f"env_1_{stage}").raw_from_unit(seconds)
                               for stage, seconds in (("attack", attack), ("decay", decay), ("release", release))})
    preset["settings"]["env_1_sustain"] = sustain
    return preset


@pytest.mark.parametrize("attack, decay, sustain, release", [(0.3, 0.4, 0.5, 0.6), (0.05, 1.0, 0.8, 1.5),
                                                             (0.5, 0.1, 1.0, 0.2)])
def test_the_envelope_of_a_vital_render_is_measured_back(attack, decay, sustain, release):
    audio = render(with_envelope(attack, decay, sustain, release), 60, 0.8, HELD, HELD + 2.5).mean(axis=0)
    measured = measure_amp_envelope(audio, SAMPLE_RATE, HELD)
    assert measured.attack == pytest.approx(attack, abs=0.04)
    assert measured.sustain == pytest.approx(sustain, abs=0.05)
    assert measured.release == pytest.approx(release, rel=0.15)
    if sustain < 1.0:  # with full sustain there is no decay to hear
        assert measured.decay == pytest.approx(decay, rel=0.15)


def test_a_sound_gone_before_key_up_has_no_release_and_silence_no_envelope():
    audio = render(with_envelope(0.01, 0.2, 0.0, 0.3), 60, 0.8, HELD, HELD + 1.0).mean(axis=0)
    measured = measure_amp_envelope(audio, SAMPLE_RATE, HELD)
    assert measured.release is None and measured.sustain == pytest.approx(0.0, abs=0.05)
    assert measure_amp_envelope(np.zeros(SAMPLE_RATE), SAMPLE_RATE, 0.5) is None


def contour_db(audio: np.ndarray, seconds: float) -> np.ndarray:
    level = envelope(np.asarray(audio)[: round(seconds * SAMPLE_RATE)], SAMPLE_RATE)
    return 20 * np.log10(np.maximum(level / level.max(), 1e-3))


def test_patch_mode_also_offers_the_models_patch_with_the_inputs_amp_envelope(tmp_path, tiny_model):
    source = tmp_path / "pad.wav"
    soundfile.write(source, render(with_envelope(0.4, 0.6, 0.6, 0.8), 57, 0.8, HELD, HELD + 2.0).T, SAMPLE_RATE)
    analysis = analyse(read_audio(source))
    answer, enveloped, *matched = build_candidates(analysis, tiny_model, "patch")
    assert answer.preset == preset_from_vector(predict(tiny_model, analysis).vector, name="vinv")
    assert enveloped.method == "patch" and matched and {c.method for c in matched} == {"matched"}
    measured = measure_amp_envelope(analysis.target, SAMPLE_RATE, analysis.note.length)
    assert enveloped.preset == with_amp_envelope(answer.preset, measured)
    changed = {key for key, value in enveloped.preset["settings"].items() if value != answer.preset["settings"][key]}
    assert changed <= {"env_1_attack", "env_1_decay", "env_1_sustain", "env_1_release"} and changed

    seconds = analysis.note.length + 1.0
    target = contour_db(analysis.target, seconds)
    contours = [contour_db(render_preview(c.preset, analysis.note).mean(axis=0), seconds) for c in (answer, enveloped)]
    frames = min(target.size, *(contour.size for contour in contours))  # the input may end a frame sooner
    errors = [np.mean(np.abs(contour[:frames] - target[:frames])) for contour in contours]
    # dB off the input's loudness contour, on average; the patch's random oscillator phases, and so the ratio
    # (0.45-0.51), depend on what the process rendered before
    assert errors[1] < 0.6 * errors[0], errors
    resynthesis, patch = build_candidates(analysis, tiny_model, "best")
    assert (resynthesis.method, patch.method) == ("resynth", "patch")
    assert resynthesis.variants[-1].method == "hybrid"
