"""Rendering a preset to audio with Vital's own engine: preview, dataset and evaluation share it.

``render`` plays as a fresh engine does: a preset must sound the same whatever was rendered before it.
Every note that counts follows ``SETTLE_SECONDS`` in which an unheard note came and went: what is rendered
is what a producer hears on pressing a key of the preset in a Vital that has played before.
A fresh engine's first note sounds otherwise: after a load Vital glides its smoothed controls (levels,
modulation depths) from where they were, the init patch's (that moved a resynthesis's distance by up
to 8 %). The note before must be unheard and gone: Vital plays a velocity-0 note at full level, and a
note that takes over a sounding voice starts 1-2 dB louder for ~50 ms than a key pressed on a free one
(tested against an engine whose last note ended 12 s earlier). Without that blip, which every render
held until 2026-12-01, the default came out level on the held-out sounds and ``patch`` 0-6 % closer.
``RenderSession`` is the cheap render of a preset's variations, for the candidates' ranking and the
search: one engine, the preset loaded once, then knobs changed in place. The unheard note cuts whatever
the last one still rang (its release set to nothing, ``_silence``), so a session plays exactly what a
fresh engine loaded with those knobs plays, except where an effect carries something over: the chorus's,
flanger's and reverb's modulation runs on the engine's clock (``plays_as_fresh``). The answer a search keeps
is scored again with ``render``. The dataset plays a patch's notes one after another on one session
(``play``). A session may also ``load`` another preset, which saves the engine's construction and its
first allocations (~60 ms): a resynthesis loaded after another plays bit for bit what a fresh engine plays,
but an effect's buffers and clock carry over from one preset to the next, so once any played preset had an
effect on, a loaded one no longer plays as fresh (``loads_as_fresh``). ``lent_session`` keeps such an engine
for the next session of the process while it has played few notes (``LENDABLE_NOTES``), and ``render`` and
the converter play on it. Every render of the default conversion of the 66 held-out sounds was bit for bit a
fresh engine's (299 renders, 227 on lent engines). The 79 public presets in ``../shared/presets`` with their
effects off, each rendered after the one before: 10 of the 13 that fresh engines play alike came out bit for
bit, the others within an MR-STFT of 0.003; the 66 with random phases as far from a fresh engine as two fresh
engines are from each other (median 0.48 against 0.52).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from converter.vital.parameters import EFFECT_KNOBS

SAMPLE_RATE = 44100
TAIL_SECONDS = 1.0  # rendered after the note is released, so release and reverb tails are heard
# Effects whose modulation runs on from one note to the next (measured; the phaser, delay and LFOs do not).
FREE_RUNNING_EFFECTS = ("chorus_on", "flanger_on", "reverb_on")
EFFECTS = tuple(f"{effect}_on" for effect in EFFECT_KNOBS)
SETTLE_SECONDS = 0.3  # silence before every played note: Vital's parameter smoothing settles (0.05 s does not)
WARM_UP_KEY_SECONDS = 0.01  # the unheard note before every played one is held this long
# Engines a process keeps for its next session (``lent_session``), ~45 MB each: a conversion's ranking and
# then its correction round take one after the other, so one spares a conversion both constructions.
IDLE_ENGINES = 1
# Notes an engine may have played and still be lent (``lent_session``): after 14 notes over a dozen resynthesis
# presets one played up to 0.03 off a fresh engine's samples (and after 17 of one preset, 2e-6); a
# conversion plays 3 to 6.
LENDABLE_NOTES = 8


class RenderError(RuntimeError):
    """Vital refused the preset or produced unusable audio."""


def render(
    preset: dict | str,
    pitch: int = 60,
    velocity: float = 0.8,
    note_length: float = 1.0,
    duration: float | None = None,
) -> np.ndarray:
    """Play one note of ``preset`` and return float32 stereo audio, shape (2, n), at 44.1 kHz.

    ``pitch`` is a MIDI note, ``velocity`` in (0, 1], ``note_length`` how long the key is held and
    ``duration`` the length of the render (default: the note plus a one-second tail).

    Each call plays on an engine that sounds as a fresh one (``lent_session``), plus the load of the
    preset's wavetables: see the module docstring.
    """
    with lent_session(preset, pitch=pitch, velocity=velocity, note_length=note_length, duration=duration) as session:
        return session.render()


_idle_engines: list[RenderSession] = []
_idle_lock = threading.Lock()


@contextmanager
def lent_session(preset: dict | str, *, pitch: int = 60, velocity: float = 0.8, note_length: float = 1.0,
                 duration: float | None = None) -> Iterator[RenderSession]:
    """A ``RenderSession`` of ``preset`` at 44.1 kHz on an engine this process played before, where ``preset``
    loads into it as into a fresh one (``RenderSession.loads_as_fresh``), or else on a new engine; kept for
    the next session afterwards (up to ``IDLE_ENGINES``) unless it played an effect, ``LENDABLE_NOTES`` notes
    or raised."""
    with _idle_lock:
        fits = [] if isinstance(preset, str) else [engine for engine in _idle_engines if engine.loads_as_fresh(preset)]
        if fits:
            _idle_engines.remove(fits[0])
    if fits:
        session = fits[0]
        session.set_note(pitch, velocity, note_length, duration)
        session.load(preset)
    else:
        session = RenderSession(preset, pitch=pitch, velocity=velocity, note_length=note_length, duration=duration)
    yield session
    with _idle_lock:
        lendable = not session.played_effects and session.notes_played < LENDABLE_NOTES
        if lendable and len(_idle_engines) < IDLE_ENGINES:
            _idle_engines.append(session)


class RenderSession:
    """One preset in one warm Vital engine, played again and again with knobs changed in place."""

    def __init__(self, preset: dict | str, *, sample_rate: int = SAMPLE_RATE, pitch: int = 60,
                 velocity: float = 0.8, note_length: float = 1.0, duration: float | None = None) -> None:
        import vita

        self.set_note(pitch, velocity, note_length, duration)
        self._synth = vita.Synth()
        if sample_rate != SAMPLE_RATE:  # costs ~60 ms and raises a worker's memory by ~100 MB: only when needed
            self._synth.set_sample_rate(int(sample_rate))
        self._reloaded = self._played_effects = False
        self.notes_played = 0  # notes that counted, each after its unheard settling note
        self.load(preset)

    def loads_as_fresh(self, preset: dict) -> bool:
        """Whether ``preset``, once ``load``-ed, plays what a fresh engine loaded with it plays: not after a note
        with an effect on, nor with an effect of its own on (an effect's buffers and clock carry over)."""
        effects = self._played_effects or any(preset["settings"].get(name) for name in EFFECTS)
        return not self.notes_played or not effects

    def load(self, preset: dict | str) -> None:
        """``preset`` in this engine instead of the one it holds, every knob as ``preset`` has it."""
        if not self._synth.load_json(preset if isinstance(preset, str) else json.dumps(preset)):
            raise RenderError("Vital could not load the preset")
        self._controls = self._synth.get_controls()
        self._loaded: dict[str, float] = {}  # the loaded value of every knob a render has turned
        self._reloaded = self.notes_played > 0

    def plays_as_fresh(self, knobs: dict[str, float] | None = None) -> bool:
        """Whether ``render(knobs)`` plays now exactly what a fresh engine loaded with those knobs plays:
        the first note always does; later ones do unless an effect of ``FREE_RUNNING_EFFECTS`` is on, or,
        after a ``load``, unless any effect is on or was on in a note played before."""
        if not self.notes_played:
            return True
        knobs = knobs or {}

        def on(switches: tuple[str, ...]) -> bool:
            return any(knobs.get(name, self._loaded.get(name, self._controls[name].value())) for name in switches)

        if self._reloaded and (self._played_effects or on(EFFECTS)):
            return False
        return not on(FREE_RUNNING_EFFECTS)

    def can_play_fresh_notes(self) -> bool:
        """Whether a later note starts as a fresh engine's does: not where glide is forced, so that every
        note glides in from the pitch of the one before."""
        glides = self._controls["portamento_time"].value() > self._synth.get_control_details("portamento_time").min
        return not (glides and self._controls["portamento_force"].value())

    def play(self, pitch: int, velocity: float, note_length: float, duration: float | None = None) -> np.ndarray:
        """Another note, every knob as loaded: on a preset that ``can_play_fresh_notes`` it is what a fresh
        engine plays (the note before is cut, see ``_silence``), but for what the ``FREE_RUNNING_EFFECTS`` do
        at another phase, their clock having run on: another take of the preset."""
        self.set_note(pitch, velocity, note_length, duration)
        return self.render()

    def render(self, knobs: dict[str, float] | None = None) -> np.ndarray:
        """Play the note with ``knobs`` (raw Vital values by control name) turned and every other knob as
        loaded: float32 (2, n)."""
        knobs = knobs or {}
        for name in self._loaded.keys() - knobs.keys():
            self._controls[name].set(self._loaded[name])
        for name, value in knobs.items():
            self._loaded.setdefault(name, self._controls[name].value())
            self._controls[name].set(float(value))
        return self._play()

    @property
    def played_effects(self) -> bool:
        """Whether a note played with an effect on: its buffers and clock would carry into a preset loaded next."""
        return self._played_effects

    def set_note(self, pitch: int, velocity: float, note_length: float, duration: float | None = None) -> None:
        """The note every later render plays (``duration`` by default the note plus ``TAIL_SECONDS``)."""
        self.pitch, self.note_length = _checked_note(pitch, note_length)
        self.velocity, self.duration = velocity, _checked_duration(note_length, duration)

    def _play(self) -> np.ndarray:
        """Settling silence, then the note that counts."""
        self._silence(SETTLE_SECONDS)
        self.notes_played += 1
        self._played_effects = self._played_effects or any(self._controls[name].value() for name in EFFECTS)
        audio = self._synth.render(self.pitch, float(np.clip(self.velocity, 0.0, 1.0)), float(self.note_length),
                                   self.duration)
        return np.ascontiguousarray(audio, dtype=np.float32)

    def _silence(self, seconds: float) -> None:
        """``seconds`` of the engine after a note that came and went unheard.

        Vital plays a velocity-0 note at full level unless the preset tracks velocity, so the note plays
        with the tracking full up; its release (and the release of any note still ringing) is cut to
        nothing, so no voice is left to sound once the preset's tracking and release are set back."""
        release, velocity_track = self._controls["env_1_release"], self._controls["velocity_track"]
        kept = release.value(), velocity_track.value()
        release.set(0.0)
        velocity_track.set(1.0)
        try:
            self._synth.render(self.pitch, 0.0, min(WARM_UP_KEY_SECONDS, seconds), seconds)
        finally:
            release.set(kept[0])
            velocity_track.set(kept[1])


def _checked_note(pitch: int, note_length: float) -> tuple[int, float]:
    try:
        note = int(pitch)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"pitch must be a MIDI note 0-127, got {pitch}") from None
    if not 0 <= note <= 127:
        raise ValueError(f"pitch must be a MIDI note 0-127, got {pitch}")
    if not (note_length > 0 and np.isfinite(note_length)):
        raise ValueError(f"note_length must be positive, got {note_length}")
    return note, float(note_length)


def _checked_duration(note_length: float, duration: float | None) -> float:
    duration = note_length + TAIL_SECONDS if duration is None else duration
    if not (duration > 0 and np.isfinite(duration)):
        raise ValueError(f"duration must be positive, got {duration}")
    return float(duration)
