"""Image decoding: any PIL-readable file to an upright RGB image, and a cheap decodability check."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps


def load_rgb(path: str | Path, draft_size: int | None = None) -> Image.Image:
    """Open an image as RGB, honouring EXIF orientation.

    `draft_size` lets the JPEG decoder scale down by a power of two while keeping both sides at
    least that large: a large photo decodes several times faster and loses nothing we keep.
    """
    with Image.open(path) as im:
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))
        im = ImageOps.exif_transpose(im)
        if im.mode == "RGB":
            return im.copy()
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA"):
            background = Image.new("RGB", im.size, (255, 255, 255))
            background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
            return background
        return im.convert("RGB")


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
