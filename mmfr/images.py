"""Safe image decoding and normalisation: RGB, longest side capped, stored as encoded bytes."""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import NamedTuple

import imagehash
from PIL import Image, ImageOps

MAX_PIXELS = 178_956_970  # PIL's own bomb threshold; config may lower it


class ImageError(ValueError):
    """A record's image cannot be used; ``reason`` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Normalised(NamedTuple):
    data: bytes  # encoded image (PNG or JPEG)
    width: int
    height: int
    phash: str  # 64-bit perceptual hash, 16 hex chars: near-duplicates differ in a few bits


ORIENTATION = 0x0112  # the EXIF tag saying how a camera held the picture


def normalise(data: bytes, max_side: int, max_pixels: int = MAX_PIXELS, min_side: int = 0) -> Normalised:
    """Decode ``data``, turn it upright by its EXIF orientation, convert to RGB, cap the longest side
    at ``max_side`` and raise a short side under ``min_side`` to it (bicubic, aspect kept, the long
    side never past ``max_side``), as MMFineReason's released code defines.

    Bytes are kept as they are when the image is already upright, RGB and within bounds; otherwise
    the result is re-encoded as PNG (lossless, deterministic). The perceptual hash is taken from the
    decoded pixels, so a re-encoded or resized copy of an image hashes (nearly) the same.
    Raises ImageError('image_missing'|'image_too_large'|'image_corrupt'|'image_truncated').
    """
    if not data:
        raise ImageError("image_missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size  # header only: check size before decoding pixels
            if width * height > max_pixels:
                raise ImageError("image_too_large", f"{width}x{height} > {max_pixels} pixels")
            img.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError("image_too_large", str(e)) from None
    except OSError as e:
        reason = "image_truncated" if "truncated" in str(e).lower() else "image_corrupt"
        raise ImageError(reason, str(e)) from None
    except Exception as e:  # PIL raises a zoo of errors on hostile input
        raise ImageError("image_corrupt", f"{type(e).__name__}: {e}") from None
    try:
        orientation = img.getexif().get(ORIENTATION, 1)
    except Exception:  # a broken EXIF block: the pixels are still good, taken as they are
        orientation = 1
    if orientation == 1 and img.mode == "RGB" and min_side <= min(img.size) and max(img.size) <= max_side \
            and img.format in ("PNG", "JPEG"):
        return Normalised(data, width, height, perceptual_hash(img))
    if orientation != 1:
        img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    img = img.convert("RGB")
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
    elif min(img.size) < min_side:
        scale = min(min_side / min(img.size), max_side / max(img.size))
    else:
        scale = 1.0
    if scale != 1.0:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False)
    return Normalised(out.getvalue(), img.width, img.height, perceptual_hash(img))


def perceptual_hash(img: Image.Image) -> str:
    """DCT perceptual hash (``imagehash.phash``) as 16 hex chars. The image is first box-reduced
    to about 128 px on its short side: the hash looks at a 32x32 thumbnail anyway, and resampling
    a full-size picture straight down to it was two thirds of standardise's time."""
    grey = img.convert("L")
    factor = min(grey.size) // 128
    return str(imagehash.phash(grey.reduce(factor) if factor > 1 else grey))


FORMATS = {"png": "PNG", "jpeg": "JPEG"}


def for_model(data: bytes, format: str = "stored", quality: int = 90) -> bytes:
    """A stored (normalised) image as a model is sent it: ``stored`` as it is; ``png`` or ``jpeg``
    (at ``quality``) re-encoded, unless it is already in that format."""
    if format == "stored" or not data:
        return data
    img = Image.open(io.BytesIO(data))
    if img.format == FORMATS[format]:
        return data
    out = io.BytesIO()
    if format == "jpeg":
        img.convert("RGB").save(out, format="JPEG", quality=quality)
    else:
        img.save(out, format="PNG", optimize=False)
    return out.getvalue()


def phash_of(data: bytes) -> str | None:
    """The perceptual hash of encoded image bytes as ``normalise`` would give it (turned upright by
    EXIF), or None when they do not decode. A JPEG is decoded at a reduced scale (its short side
    still at least 128 px, all the hash looks at), which a hash within a few bits does not notice."""
    try:
        img = Image.open(io.BytesIO(data))
        if img.format == "JPEG" and min(img.size) >= 256:
            scale = min(img.size) / 128
            img.draft("RGB", (int(img.width / scale) + 1, int(img.height / scale) + 1))
        img.load()
        try:
            if img.getexif().get(ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block: the pixels as they are
            pass
        if img.mode in ("RGBA", "LA", "P"):  # on white, as normalise composes them
            img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
        return perceptual_hash(img)
    except Exception:  # undecodable: no content to match by
        return None


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex perceptual hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> Image.Image:
    """Decode normalised bytes (already checked by ``normalise``) into an RGB PIL image."""
    return Image.open(io.BytesIO(data)).convert("RGB")


def stack(blobs: list[bytes], gap: int = 8) -> bytes:
    """Several images as one PNG, top to bottom on white with a ``gap`` between them (how a
    multi-image benchmark item reaches a model that takes one image); one image comes back as it is.
    An image that cannot be decoded is left out; nothing decodable gives b""."""
    blobs = [b for b in blobs if b]
    if len(blobs) <= 1:
        return blobs[0] if blobs else b""
    images = []
    for data in blobs:
        try:
            images.append(decode(data).convert("RGB"))
        except Exception:  # one bad image of several: keep the rest
            continue
    if not images:
        return b""
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images) + gap * (len(images) - 1)), "white")
    y = 0
    for im in images:
        canvas.paste(im, (0, y))
        y += im.height + gap
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
