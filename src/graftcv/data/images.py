"""Image decoding: any PIL-readable file to an upright RGB image, and a cheap decodability check."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

# Modes whose values do not fit 8 bits; "I;16" and its byte-order variants are matched by prefix.
WIDE_MODES = ("I", "F")
# Bumped whenever decoding changes what pixels an image gives: cached features of the old decoding do not match.
DECODER_VERSION = 2


def load_rgb(path: str | Path | BinaryIO, draft_size: int | None = None) -> Image.Image:
    """Open an image (a path, or a binary file object such as a shard sample's BytesIO) as RGB (see `to_rgb`),
    honouring EXIF orientation.

    `draft_size` lets the JPEG decoder scale down by a power of two while keeping both sides at
    least that large: a large photo decodes several times faster and loses nothing we keep.
    """
    with Image.open(path) as im:
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))
        im = ImageOps.exif_transpose(im)
        return im.copy() if im.mode == "RGB" else to_rgb(im)


def to_rgb(image: Image.Image) -> Image.Image:
    """Every decoder's RGB: transparency on white, and 16-bit, 32-bit and float images (PIL modes I;16*, I, F)
    stretched from their own darkest to their brightest value onto 0-255 (PIL's own conversion clips them at 255,
    which turns nearly every pixel of a 16-bit scan white). The image's own range, not the type's, because
    10-, 12- and 14-bit sensors store into 16 bits and would come out nearly black; an image of one value is black.
    """
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_MODES or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        scaled = (
            np.zeros_like(values) if high <= low else (np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low))
        )
        return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def check_image(path: Path) -> str | None:
    """Return None when the file decodes fully, else a short reason why it cannot be used."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (32, 32))  # full entropy decode at 1/8 scale: catches truncation, fast
            im.load()
            if getattr(im, "n_frames", 1) < 1 or min(im.size) < 1:
                return "no pixels"
        return None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return str(error).split("\n")[0][:120] or type(error).__name__
