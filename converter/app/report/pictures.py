"""The report's pictures: the input's and the preview's spectrograms on one shared scale, with loudness curves.

Both pictures of a conversion share every scale, so they can be compared at a glance: time from the
input's onset (where the preview starts too) over the preview's length, a log frequency axis from
40 Hz to 16 kHz, colour in dB below the louder sound's peak, and the loudness curves (RMS in dB
below the louder sound's loudest moment). Each picture draws its own curve in white and the other
sound's in blue, so a level mismatch shows on either. Made with numpy and a small PNG encoder
(``converter.app.report.png``): no plotting library in the app.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from converter.analysis.audio import find_onset
from converter.analysis.input_audio import read_audio
from converter.app.report.png import indexed_png
from converter.app.report.records import PICTURE_HEIGHT as HEIGHT
from converter.app.report.records import PICTURE_WIDTH as WIDTH

LOWEST_HZ, HIGHEST_HZ = 40.0, 16000.0
SPECTRUM_RANGE_DB = 80.0
LOUDNESS_RANGE_DB = 60.0
WINDOW_SECONDS = 0.046
MAX_SECONDS = 12.0
LEVELS = 254  # palette entries for the spectrum; the last two are the curves
OWN_CURVE, OTHER_CURVE = 255, 254
# Stops of a dark-to-bright colour map (after matplotlib's "magma"), interpolated to LEVELS entries.
COLOUR_STOPS = np.array([
    (0, 0, 4), (28, 16, 68), (79, 18, 123), (129, 37, 129), (181, 54, 122),
    (229, 80, 100), (251, 135, 97), (254, 194, 135), (252, 253, 191),
], dtype=np.float64)


def palette() -> np.ndarray:
    """(256, 3) uint8: LEVELS spectrum colours, then the other sound's curve (blue) and this one's (white)."""
    positions = np.linspace(0.0, 1.0, len(COLOUR_STOPS))
    steps = np.linspace(0.0, 1.0, LEVELS)
    colours = np.stack([np.interp(steps, positions, COLOUR_STOPS[:, channel]) for channel in range(3)], axis=1)
    return np.concatenate([colours, [(110, 190, 255), (255, 255, 255)]]).round().astype(np.uint8)


def _frames(samples: np.ndarray, rate: int, seconds: float) -> tuple[np.ndarray, int]:
    """WIDTH windows of ``samples`` centred on evenly spaced instants over ``seconds``; zeros past the end."""
    size = 1 << max(8, round(np.log2(WINDOW_SECONDS * rate)))
    centres = np.round((np.arange(WIDTH) + 0.5) * seconds * rate / WIDTH).astype(np.int64)
    index = centres[:, None] + np.arange(size)[None, :] - size // 2
    padded = np.concatenate([samples, [0.0]]).astype(np.float32)  # the last entry is the zero for out-of-range
    index = np.where((index >= 0) & (index < samples.size), index, samples.size)
    return padded[index], size


def spectrogram_db(samples: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """(HEIGHT, WIDTH) power in dB (top row highest), over log-spaced bands from LOWEST_HZ to HIGHEST_HZ."""
    frames, size = _frames(samples, rate, seconds)
    power = np.abs(np.fft.rfft(frames * np.hanning(size).astype(np.float32), axis=1)) ** 2  # (WIDTH, bins)
    edges = np.geomspace(LOWEST_HZ, HIGHEST_HZ, HEIGHT + 1) * size / rate  # band edges in bins
    bands = np.full((HEIGHT, WIDTH), 1e-20)
    for row in range(HEIGHT):
        low, high = int(np.ceil(edges[row])), int(np.floor(edges[row + 1]))
        high = min(high, power.shape[1] - 1)
        if high >= low:
            bands[row] = power[:, low : high + 1].max(axis=1)
        elif low < power.shape[1]:  # a band narrower than one bin: interpolate at its centre
            centre = 0.5 * (edges[row] + edges[row + 1])
            below = int(np.floor(centre))
            weight = centre - below
            bands[row] = (1 - weight) * power[:, below] + weight * power[:, min(below + 1, power.shape[1] - 1)]
    return 10.0 * np.log10(np.maximum(bands, 1e-20))[::-1]


def loudness_db(samples: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """(WIDTH,) RMS level in dB of the window around each column's instant."""
    frames, _ = _frames(samples, rate, seconds)
    return 10.0 * np.log10(np.maximum(np.mean(np.square(frames, dtype=np.float64), axis=1), 1e-20))


def _curve_rows(level_db: np.ndarray, top_db: float) -> np.ndarray:
    """The image row of each column's level: row 0 is ``top_db``, the bottom row LOUDNESS_RANGE_DB below it."""
    fraction = np.clip((top_db - level_db) / LOUDNESS_RANGE_DB, 0.0, 1.0)
    return np.round(fraction * (HEIGHT - 1)).astype(np.int64)


def _draw_curve(pixels: np.ndarray, rows: np.ndarray, colour: int) -> None:
    """A connected line through one row per column, two pixels thick; silence (the bottom row) is not drawn."""
    for column in range(WIDTH):
        previous = rows[max(column - 1, 0)]
        low, high = sorted((previous, rows[column]))
        if low >= HEIGHT - 1:
            continue
        pixels[low : min(high + 2, HEIGHT - 1), column] = colour


def picture_pair(input_audio: np.ndarray, input_rate: int, preview_audio: np.ndarray,
                 preview_rate: int) -> tuple[bytes, bytes]:
    """PNGs of the input and the preview on the same scales, over the preview's length (at most MAX_SECONDS)."""
    seconds = min(MAX_SECONDS, max(preview_audio.size / preview_rate, 1.0 / WIDTH))
    spectra = [spectrogram_db(audio, rate, seconds) for audio, rate in
               ((input_audio, input_rate), (preview_audio, preview_rate))]
    curves = [loudness_db(audio, rate, seconds) for audio, rate in
              ((input_audio, input_rate), (preview_audio, preview_rate))]
    spectrum_top = max(float(spectrum.max()) for spectrum in spectra)
    curve_top = max(float(curve.max()) for curve in curves)
    rows = [_curve_rows(curve, curve_top) for curve in curves]
    colours = palette()
    pictures = []
    for own in (0, 1):
        level = (spectra[own] - (spectrum_top - SPECTRUM_RANGE_DB)) / SPECTRUM_RANGE_DB
        pixels = np.round(np.clip(level, 0.0, 1.0) * (LEVELS - 1)).astype(np.uint8)
        _draw_curve(pixels, rows[1 - own], OTHER_CURVE)
        _draw_curve(pixels, rows[own], OWN_CURVE)
        pictures.append(indexed_png(pixels, colours))
    return pictures[0], pictures[1]


def make_pictures(input_path: str | os.PathLike[str], preview_path: str | os.PathLike[str],
                  input_png: Path, preview_png: Path) -> None:
    """Write the pictures of one conversion: the input from its onset, the preview as rendered."""
    sound, preview = read_audio(input_path), read_audio(preview_path)  # as the converter read them
    onset = find_onset(sound.samples)
    input_picture, preview_picture = picture_pair(sound.samples[onset:], sound.sample_rate, preview.samples,
                                                  preview.sample_rate)
    input_png.write_bytes(input_picture)
    preview_png.write_bytes(preview_picture)
