"""A minimal PNG encoder: 8-bit indexed images from zlib and struct, so the app needs no imaging library."""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def indexed_png(pixels: np.ndarray, palette: np.ndarray) -> bytes:
    """PNG bytes of ``pixels`` ((height, width) palette indices, uint8) drawn with ``palette`` ((n, 3) uint8)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    palette = np.ascontiguousarray(palette, dtype=np.uint8)
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ValueError(f"expected a non-empty 2-D array of palette indices, got shape {pixels.shape}")
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= palette.shape[0] <= 256:
        raise ValueError(f"expected 1 to 256 RGB palette entries, got shape {palette.shape}")
    if int(pixels.max()) >= palette.shape[0]:
        raise ValueError("a pixel uses an index past the end of the palette")
    height, width = pixels.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit, indexed colour, no interlace
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels], axis=1)  # filter type 0 on every row
    return b"".join([
        PNG_SIGNATURE,
        _chunk(b"IHDR", header),
        _chunk(b"PLTE", palette.tobytes()),
        _chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)),
        _chunk(b"IEND", b""),
    ])
