"""Shared drawing helpers: seeded canvas sizes, Pillow's bundled font, shapes and PNG bytes.

Only Pillow's own default font is used (no system fonts), so the same seed gives byte-identical
PNGs wherever the pinned Pillow is installed.
"""

from __future__ import annotations

import math
import random
import struct
import zlib
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

COLORS = {
    "red": (214, 39, 40),
    "blue": (31, 119, 180),
    "green": (44, 160, 44),
    "orange": (255, 127, 14),
    "purple": (148, 103, 189),
    "yellow": (240, 200, 20),
}
INK = (25, 25, 25)
GRID = (215, 215, 215)
WHITE = (255, 255, 255)
HIGHLIGHT = (255, 243, 176)
MIN_SIDE, MAX_SIDE = 224, 640


@lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled default font at ``size`` px."""
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def text_width(text: str, size: int) -> float:
    return font(size).getlength(text)


def canvas_size(
    rng: random.Random,
    lo: int = MIN_SIDE,
    hi: int = MAX_SIDE,
    aspect: tuple[float, float] = (0.6, 1.0),
    landscape: bool | None = None,
) -> tuple[int, int]:
    """(width, height): the longest side uniform in [lo, hi], the other ``aspect`` times it."""
    longest = rng.randint(lo, hi)
    shortest = max(MIN_SIDE // 2, round(longest * rng.uniform(*aspect)))
    if landscape is None:
        landscape = rng.random() < 0.5
    return (longest, shortest) if landscape else (shortest, longest)


def font_size(width: int, height: int, scale: float = 26) -> int:
    """A readable label size for a canvas: about min side / ``scale``, within [11, 20] px."""
    return max(11, min(20, round(min(width, height) / scale)))


def canvas(width: int, height: int, color: tuple[int, int, int] = WHITE) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (width, height), color)
    return image, ImageDraw.Draw(image)


def label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    size: int,
    fill: tuple[int, int, int] = INK,
    anchor: str = "mm",
) -> None:
    """Text anchored at ``xy`` (default: centred)."""
    draw.text((round(xy[0]), round(xy[1])), text, font=font(size), fill=fill, anchor=anchor)


def polygon_points(x: float, y: float, r: float, sides: int, rotation: float = -90) -> list[tuple[float, float]]:
    """Vertices of a regular polygon inscribed in the circle (x, y, r); one vertex at ``rotation``°."""
    step = 360 / sides
    return [
        (x + r * math.cos(math.radians(rotation + i * step)), y + r * math.sin(math.radians(rotation + i * step)))
        for i in range(sides)
    ]


def shape(
    draw: ImageDraw.ImageDraw,
    kind: str,
    x: float,
    y: float,
    r: float,
    fill: tuple[int, int, int],
    outline: tuple[int, int, int] = INK,
) -> None:
    """A circle, square or triangle that fits inside the circle of radius ``r`` around (x, y)."""
    if kind == "circle":
        d = 0.9 * r
        draw.ellipse((x - d, y - d, x + d, y + d), fill=fill, outline=outline, width=2)
    elif kind == "square":
        d = 0.7 * r
        draw.rectangle((x - d, y - d, x + d, y + d), fill=fill, outline=outline, width=2)
    elif kind == "triangle":
        draw.polygon(polygon_points(x, y + 0.15 * r, 0.9 * r, 3), fill=fill, outline=outline, width=2)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def arrow(
    draw: ImageDraw.ImageDraw, x: float, y: float, r: float, direction: int, fill: tuple[int, int, int] = INK
) -> None:
    """An arrow through (x, y) of half-length ``r`` pointing ``direction``° clockwise from up."""
    dx, dy = math.sin(math.radians(direction)), -math.cos(math.radians(direction))
    tip, tail = (x + r * dx, y + r * dy), (x - r * dx, y - r * dy)
    draw.line((tail, tip), fill=fill, width=max(3, round(r / 8)))
    head, wing = 0.45 * r, 0.3 * r
    base = (tip[0] - head * dx, tip[1] - head * dy)
    draw.polygon(
        [tip, (base[0] - wing * dy, base[1] + wing * dx), (base[0] + wing * dy, base[1] - wing * dx)], fill=fill
    )


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def to_png(image: Image.Image) -> bytes:
    """Deterministic 8-bit RGB PNG bytes: IHDR, one IDAT, IEND; no metadata chunks.

    Written directly (no row filters, zlib level 3) because Pillow's adaptive filtering doubles
    the cost of a record; flat synthetic drawings compress almost as well without it.
    """
    width, height = image.size
    raw, stride = image.tobytes(), 3 * width
    rows = b"".join(b"\x00" + raw[i : i + stride] for i in range(0, len(raw), stride))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 3)) + _chunk(b"IEND", b"")
    )
