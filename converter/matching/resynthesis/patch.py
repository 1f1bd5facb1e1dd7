"""A playable Vital patch from a resynthesis: the input's own spectra as wavetables, swept in time.

- Oscillator 1 plays the harmonic table at the detected note; oscillator 2 plays the residual
  table on a low comb (``Resynthesis.residual_note``), so it sounds like the input's noise. A sound
  longer than 256 frame picks (1.79 s) has its harmonics on two tables, oscillator 3 playing the
  second (``resynthesis_tables``), so they keep one keyframe every 7 ms for 3.57 s.
- LFO 1 sweeps the tables' wave frame: one shot in Seconds, Vital's *Sustain Envelope* mode, so
  the sweep stops at the frame where the input's key went up for as long as a key is held, and
  plays the input's own tail after key-up. Its drawn shape plays each keyframe when it was measured.
  Tables measured at other instants (a long sound's residual and second table) have LFOs 3 and 4.
- LFO 2, in the same mode, draws the pitch track onto the harmonic tables' transpose when the pitch
  moves (vibrato, glides, the drop of a kick); a steady detune goes to the tune knob instead.
- The amp envelope is open (an 8 ms attack, full sustain); a tail the frames carry is released
  nearly flat until it has played. Other keys transpose the whole patch; velocity stays Vital's.
"""

from __future__ import annotations

import numpy as np

from converter.matching.resynthesis.analysis import Resynthesis
from converter.vital.lfo_shapes import LFOShape
from converter.vital.parameters import control
from converter.vital.preset import add_route, init_preset
from converter.vital.wavetables import FRAME_PICK_SECONDS, MAX_KEYFRAMES, Wavetable, sweep_depth

SUSTAIN_ENVELOPE, SECONDS = 3.0, 0.0  # lfo_N_sync_type and lfo_N_sync options
TRANSPOSE_RANGE = 48.0  # a full bipolar route moves Vital's transpose this many semitones
PITCH_POINTS = 64  # evenly spaced points of the drawn pitch track, on top of the harmonic sweep's own
AUDIBLE_SHARE_DB = -40.0  # an oscillator this far under the other adds nothing
ATTACK = 0.008  # seconds of amp attack, so the first keyframe does not start as a click (``_open_amp_envelope``)
RELEASE_STRETCH, RELEASE_POWER = 2.0, -2.0  # a short tail: the release lasts this many times it, on Vital's curve
CARRIED_TAIL = 0.1  # seconds: a tail this long plays from the frames (``_open_amp_envelope``)
CARRIED_RELEASE_STRETCH, CARRIED_RELEASE_POWER = 1.2, 6.0  # its release: a little longer, held nearly flat
MIN_RELEASE, MAX_RELEASE = 0.03, 30.0  # seconds
SWEEP_LFOS, PITCH_LFO = (1, 3, 4), 2  # one LFO per set of instants the tables were measured at
TABLE_NAMES = {1: "vinv harmonics", 2: "vinv residual", 3: "vinv harmonics, later"}  # the oscillator each plays on
SWEEP_LEAD = 1.25  # frame picks the sweep reaches each keyframe before its time (see ``resynthesis_sweep``)
QUIETER_RESIDUALS = (0.6, 0.0)  # osc 2 levels tried under the one it has (quadratic: 0.6 is -9 dB; 0 is off)


def resynthesis_preset(resynthesis: Resynthesis, *, name: str = "vinv") -> dict:
    """The Vital preset (JSON-ready dict) that plays ``resynthesis`` back at its note.

    Each table's keyframes lie on consecutive wave frames, swept by a one-shot LFO as ``resynthesis_sweep``
    draws it; tables measured at the same instants share one.
    """
    preset = init_preset()
    preset.update(preset_name=name)
    settings = preset["settings"]
    tables = resynthesis_tables(resynthesis)
    sweeps: dict[bytes, int] = {}  # the LFO that sweeps frames due at these times
    for osc in TABLE_NAMES:
        settings[f"osc_{osc}_on"] = 1.0 if osc in tables else 0.0
        settings[f"osc_{osc}_level"] = 1.0
        settings[f"osc_{osc}_random_phase"] = 0.0
        settings[f"osc_{osc}_wave_frame"] = 0.0
        settings[f"osc_{osc}_destination"] = settings["osc_1_destination"]
        if osc not in tables:
            continue
        table, times = tables[osc]
        instants = times.tobytes()
        if instants not in sweeps:
            sweeps[instants] = SWEEP_LFOS[len(sweeps)]
            _one_shot_lfo(settings, sweeps[instants], resynthesis, resynthesis_sweep(times, resynthesis.duration))
        settings["wavetables"][osc - 1] = table
        add_route(settings, f"lfo_{sweeps[instants]}", f"osc_{osc}_wave_frame", sweep_depth(times.size))
    settings["osc_2_transpose"] = float(resynthesis.residual_note - resynthesis.note.pitch)
    _open_amp_envelope(settings, resynthesis)
    _pitch(settings, resynthesis, harmonic_oscillators=tuple(osc for osc in (1, 3) if osc in tables))
    return preset


def resynthesis_sweep(times: np.ndarray, duration: float) -> LFOShape:
    """The drawn shape of a sweep through frames due at ``times`` over a sound of ``duration``: time over the
    sound against the frame played, 0 to 1.

    Vital picks a frame every 7 ms, the integer part of the sweep's position, and crossfades to it over the
    next 7 ms (``FRAME_PICK_SECONDS``). The keyframes lie on that grid (``keyframe_times``), and the sweep
    reaches each ``SWEEP_LEAD`` picks before its time: a pick takes it one pick before it was measured, so
    the crossfade arrives there on time, and Vital plays a line through the keyframes. On the evaluation
    split's short sounds a lead of 1 and 1.25 picks came out alike and closest of 0.5 to 1.5 (0.5 was the
    lead before the keyframes lay on the grid); Vital plays its last frame from there on.
    """
    knots = line_knots(times)
    phases = (times[knots] - SWEEP_LEAD * FRAME_PICK_SECONDS) / duration
    values = knots / (times.size - 1)
    ahead = phases > 0.0
    points = [(0.0, float(np.interp(0.0, phases, values))), *zip(phases[ahead], values[ahead]), (1.0, 1.0)]
    return LFOShape("vinv sweep", tuple(points))


def line_knots(times: np.ndarray) -> np.ndarray:
    """Indices of ``times`` between which they are evenly spaced: the points of a line through them all."""
    picks = np.round(np.diff(times) / FRAME_PICK_SECONDS)
    turns = np.flatnonzero(np.diff(picks)) + 1
    return np.concatenate(([0], turns, [times.size - 1]))


def resynthesis_tables(resynthesis: Resynthesis) -> dict[int, tuple[dict, np.ndarray]]:
    """The Vital wavetables a resynthesis plays, by oscillator (``TABLE_NAMES``), each with when its frames
    are due: each at one scale, so their balance is the input's, and none that sits ``AUDIBLE_SHARE_DB``
    under the other.

    Up to ``MAX_KEYFRAMES`` harmonic keyframes play on oscillator 1. More play in two tables, each silent
    where the other plays: oscillator 1's keyframes up to the last but one of its table, then a silent
    frame; oscillator 3's a silent frame, then the rest. Vital crossfades from frame to frame in each, so
    the pair crossfades from oscillator 1's last keyframe to oscillator 3's first as within one table.
    """
    times, harmonics = resynthesis.times, resynthesis.harmonic_frames
    layout = {1: (harmonics, times), 2: (resynthesis.residual_frames, resynthesis.residual_times)}
    if times.size > MAX_KEYFRAMES:
        silent, split = np.zeros_like(harmonics[:1]), MAX_KEYFRAMES - 1
        layout[1] = (np.concatenate((harmonics[:split], silent)), times[: split + 1])
        layout[3] = (np.concatenate((silent, harmonics[split:])), times[split - 1 :])
    levels = {1: resynthesis.harmonic_level, 2: resynthesis.residual_level, 3: resynthesis.harmonic_level}
    peak = max(float(np.abs(frames).max()) for frames, _ in layout.values())
    if peak <= 0.0:
        raise ValueError("nothing to resynthesise: the sound is silent")
    floor = max(levels.values()) * 10 ** (AUDIBLE_SHARE_DB / 20)
    return {osc: (Wavetable(TABLE_NAMES[osc], frames / peak, keep_level=True, swept=True).to_vital(), due)
            for osc, (frames, due) in layout.items() if levels[osc] > floor}


def with_tables(preset: dict, resynthesis: Resynthesis) -> dict:
    """A copy of ``preset`` (a resynthesis, perhaps with knobs turned) playing ``resynthesis``'s tables
    instead of its own: every other setting stays, so a variant stays that variant (and a table that fell
    ``AUDIBLE_SHARE_DB`` under the other stays as the preset had it)."""
    tables = resynthesis_tables(resynthesis)
    wavetables = [tables[osc][0] if osc in tables and table.get("name") == TABLE_NAMES[osc] else table
                  for osc, table in enumerate(preset["settings"]["wavetables"], start=1)]
    return {**preset, "settings": {**preset["settings"], "wavetables": wavetables}}


def residual_variants(preset: dict) -> tuple[dict[str, float], ...]:
    """Quieter residuals than ``preset`` has, to try on a resynthesis (knob settings, see ``RenderSession``);
    the converter plays them on its corrected tables (``converter.convert.correction_player``).

    The measured residual is an upper bound: what the harmonics leak into their gaps (a detuned
    unison, a fast vibrato, a window's sidelobes) is counted as noise too. Choosing among the measured
    level, -9 dB and none brought the default 10-17 % closer on the held-out instrument notes, public
    presets and sampled patches, and 3-33 % on the evaluation split. A sound that is all residual has
    nothing to balance it against.
    """
    settings = preset["settings"]
    if not (settings.get("osc_1_on") and settings.get("osc_2_on")):
        return ()
    return tuple({"osc_2_level": level} if level else {"osc_2_on": 0.0} for level in QUIETER_RESIDUALS
                 if level < settings["osc_2_level"])


def _open_amp_envelope(settings: dict, resynthesis: Resynthesis) -> None:
    """Full sustain, and a release that leaves the input's tail to the frames; the loudness is in them.

    A tail of ``CARRIED_TAIL`` or more plays from the frames, so the release must not fade it a second
    time: it lasts ``CARRIED_RELEASE_STRETCH`` times the tail on a curve held nearly flat until its end.
    On Vital's own curve a piano-like tail fell 16 dB too far by the time the input was 60 dB down.
    With the tail measured to -80 dB (``sound_duration``), 46 of 66 held-out sounds came closer and 1
    further (1.7 %); the curve, stretch and threshold were chosen on the evaluation split (README).
    A shorter tail (a key-up that cuts the sound) has no frames to carry it: there the release shapes
    the fade itself, on Vital's curve, which sounded closer.

    The first keyframe is measured over a window centred on the onset, and an instant attack would
    play it at that level from the first sample: a step. Real onsets rise over milliseconds. 8 ms
    was the closest of 0 to 26 ms on the evaluation split and the held-out sounds: 110 of 128
    sounds came closer (median 1-6 % per source, the most on public presets), at most 1.6 % further.
    The search's own choice, from an instant attack, was a median 4 ms.
    """
    tail = resynthesis.duration - resynthesis.sustain
    stretch, power = ((CARRIED_RELEASE_STRETCH, CARRIED_RELEASE_POWER) if tail >= CARRIED_TAIL
                      else (RELEASE_STRETCH, RELEASE_POWER))
    release = float(np.clip(stretch * tail, MIN_RELEASE, MAX_RELEASE))
    settings.update(env_1_delay=0.0, env_1_attack=control("env_1_attack").raw_from_unit(ATTACK), env_1_hold=0.0,
                    env_1_decay=1.0, env_1_sustain=1.0, env_1_release=control("env_1_release").raw_from_unit(release),
                    env_1_release_power=power)


def _one_shot_lfo(settings: dict, lfo: int, resynthesis: Resynthesis, shape: LFOShape) -> None:
    """LFO ``lfo`` plays ``shape`` once over the sound, holding where the key went up until it is released."""
    settings.update({
        f"lfo_{lfo}_sync_type": SUSTAIN_ENVELOPE,
        f"lfo_{lfo}_sync": SECONDS,
        f"lfo_{lfo}_frequency": control(f"lfo_{lfo}_frequency").raw_from_unit(1.0 / resynthesis.duration),
        f"lfo_{lfo}_phase": float(np.clip(resynthesis.sustain / resynthesis.duration, 0.0, 1.0)),
        f"lfo_{lfo}_smooth_mode": 0.0,
        f"lfo_{lfo}_delay_time": 0.0,
        f"lfo_{lfo}_fade_time": 0.0,
    })
    settings["lfos"][lfo - 1] = shape.to_vital()


def _pitch(settings: dict, resynthesis: Resynthesis, harmonic_oscillators: tuple[int, ...]) -> None:
    """A moving pitch becomes a drawn LFO on the harmonic tables' transpose; a steady one their tune knob."""
    track = resynthesis.pitch
    if not track.varies:
        for osc in harmonic_oscillators:
            settings[f"osc_{osc}_tune"] = float(np.clip(np.median(track.semitones), -1.0, 1.0))
        return
    knots = line_knots(resynthesis.times)
    times = np.union1d(np.linspace(0.0, resynthesis.duration, PITCH_POINTS), resynthesis.times[knots])
    semitones = track.at(times)
    amount = max(float(np.abs(semitones).max()), 0.01) / TRANSPOSE_RANGE
    values = 0.5 * (semitones / (amount * TRANSPOSE_RANGE) + 1.0)
    shape = LFOShape("vinv pitch", tuple(zip(times / resynthesis.duration, np.clip(values, 0.0, 1.0))))
    _one_shot_lfo(settings, PITCH_LFO, resynthesis, shape)
    for osc in harmonic_oscillators:
        settings[f"osc_{osc}_tune"] = 0.0
        add_route(settings, f"lfo_{PITCH_LFO}", f"osc_{osc}_transpose", amount, bipolar=True)
