"""A small bank of LFO shapes, written into presets as Vital line-generator curves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LFOShape:
    """A closed curve over one LFO cycle: (phase, value) points, value 1 = top, joined by lines."""

    name: str
    points: tuple[tuple[float, float], ...]
    smooth: bool = False

    def to_vital(self) -> dict:
        """The dict Vital stores in ``settings["lfos"][i]`` (Vital's y axis points down)."""
        flat = [c for x, value in self.points for c in (x, 1.0 - value)]
        return {
            "name": self.name,
            "num_points": len(self.points),
            "points": flat,
            "powers": [0.0] * len(self.points),
            "smooth": self.smooth,
        }

    def sample(self, count: int = 64) -> np.ndarray:
        """The curve's value at ``count`` evenly spaced phases (for matching foreign shapes)."""
        x, y = zip(*self.points)
        return np.interp(np.linspace(0.0, 1.0, count), x, y)


LFO_SHAPES: tuple[LFOShape, ...] = (
    LFOShape("Triangle", ((0.0, 0.0), (0.5, 1.0), (1.0, 0.0))),
    LFOShape("Sine", ((0.0, 0.0), (0.5, 1.0), (1.0, 0.0)), smooth=True),
    LFOShape("Ramp Down", ((0.0, 1.0), (1.0, 0.0))),
    LFOShape("Ramp Up", ((0.0, 0.0), (1.0, 1.0))),
    LFOShape("Square", ((0.0, 1.0), (0.5, 1.0), (0.5, 0.0), (1.0, 0.0))),
    LFOShape("Exp Decay", tuple((x, float(np.exp(-5.0 * x))) for x in np.linspace(0.0, 1.0, 9))),
    LFOShape("Steps", ((0.0, 0.25), (0.25, 0.25), (0.25, 1.0), (0.5, 1.0), (0.5, 0.0), (0.75, 0.0),
                       (0.75, 0.6), (1.0, 0.6))),
    LFOShape("Pulse", ((0.0, 1.0), (0.125, 1.0), (0.125, 0.0), (1.0, 0.0))),
)


def nearest_lfo_shape(lfo_json: object) -> int:
    """Index of the bank shape closest to a preset's LFO curve (0, Triangle, if unreadable)."""
    try:
        flat = [float(v) for v in lfo_json["points"]]  # type: ignore[index]
        x = np.asarray(flat[0::2])
        y = 1.0 - np.asarray(flat[1::2])
        if len(x) < 2 or len(x) != len(y) or not np.all(np.isfinite(flat)) or np.any(np.diff(x) < 0):
            return 0
        curve = np.interp(np.linspace(0.0, 1.0, 64), x, y)
        smooth = bool(lfo_json.get("smooth", False))  # type: ignore[union-attr]
    except (TypeError, KeyError, ValueError, IndexError, AttributeError):
        return 0
    # Equal points with a different smoothing flag are different shapes (Triangle vs Sine).
    errors = [float(np.mean((shape.sample() - curve) ** 2)) + 0.01 * (shape.smooth != smooth) for shape in LFO_SHAPES]
    return int(np.argmin(errors))
