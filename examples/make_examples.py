"""Make the example sounds in this folder: our own Vital renders of a few hand-set patches.

Run ``python examples/make_examples.py`` to rebuild them (deterministic).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from converter.analysis.audio import to_mono
from converter.vital.parameters import parameter_space
from converter.vital.preset import preset_from_vector
from converter.vital.render import SAMPLE_RATE, render
from converter.vital.wavetables import default_bank

HERE = Path(__file__).resolve().parent


def patch(**knobs: float | str) -> np.ndarray:
    """A vector from the init patch with some knobs set (raw Vital values, or wavetable names)."""
    space = parameter_space()
    vector = space.default_vector()
    for name, value in knobs.items():
        if isinstance(value, str):
            vector[space.index(name)] = default_bank().index(value)
        else:
            vector[space.index(name)] = space[name].normalise(value)
    return vector


EXAMPLES: dict[str, tuple[np.ndarray, int, float]] = {
    "pluck": (patch(osc_1_wavetable="Saw", filter_1_on=1, filter_1_cutoff=50, filter_1_resonance=0.4,
                    env_1_decay=0.9, env_1_sustain=0.0, env_2_decay=0.7, env_2_sustain=0.0,
                    **{"env_2->filter_1_cutoff": 0.45}), 60, 0.6),
    "bass": (patch(osc_1_wavetable="Square", osc_1_transpose=-12, filter_1_on=1, filter_1_cutoff=62,
                   filter_1_model=2, env_1_sustain=0.8), 45, 0.8),
    "pad": (patch(osc_1_wavetable="Saw Stack", osc_1_unison_voices=5, osc_1_unison_detune=3.0,
                  env_1_attack=0.9, env_1_release=1.1, reverb_on=1, reverb_dry_wet=0.35), 64, 1.5),
    "bell": (patch(osc_1_wavetable="Bell", osc_1_wave_frame=90, env_1_decay=1.3, env_1_sustain=0.0), 72, 0.3),
    "kick": (patch(osc_1_wavetable="Sine", env_1_decay=0.75, env_1_sustain=0.0, env_2_decay=0.6,
                   env_2_sustain=0.0, **{"env_2->osc_1_transpose": 0.35}), 36, 0.2),
}


def main() -> None:
    for name, (vector, pitch, note_length) in EXAMPLES.items():
        preset = preset_from_vector(vector, name=name)
        audio = to_mono(render(preset, pitch, 0.9, note_length, duration=note_length + 1.0))
        audio = 0.8 * audio / max(float(np.abs(audio).max()), 1e-9)
        sf.write(HERE / f"{name}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
        print(f"{name}.wav: MIDI {pitch}, {len(audio) / SAMPLE_RATE:.1f} s")


if __name__ == "__main__":
    main()
