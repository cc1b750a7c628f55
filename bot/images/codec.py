"""The Pillow work every image path shares: judging a file by its content, decoding, colour modes,
orientation, resizing and encoding under a byte cap.

Everything here is synchronous and CPU-bound; callers run it off the event loop (see
``bot.images``). Formats are judged by content, never by file name, and only PNG, JPEG, WEBP, BMP
and GIF are opened at all: every other Pillow plugin is parser surface a hostile upload could reach.
"""

from __future__ import annotations

import io
import logging
import math
import struct
from dataclasses import dataclass
from types import MappingProxyType

from PIL import Image

from bot.errors import InputImageError

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# MPO is how Pillow names multi-picture camera JPEGs (stereo, depth maps): still a JPEG file.
MIME = MappingProxyType(
    {
        "PNG": "image/png",
        "JPEG": "image/jpeg",
        "MPO": "image/jpeg",
        "WEBP": "image/webp",
        "BMP": "image/bmp",
        "GIF": "image/gif",
    }
)

NOT_AN_IMAGE = "This file is not an image (PNG, JPEG, WEBP, BMP or GIF)."
DAMAGED = "This image looks damaged: it could not be read to the end. Save it again and retry."

JPEG_QUALITY = 90
# Measured on a 2048² RGBA image: level 1 takes 0.3 s, the default 6 takes 1.4 s for 16% fewer
# bytes, optimize (9) takes 15 s for 5% more. Bytes are cheaper than a busy worker thread.
PNG_COMPRESS_LEVEL = 1
# JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale in the DCT domain, but only if the result stays
# at least as large as asked. Asking for 5% less than the target lets a 4000 px photo decode at
# 2000 px (one cheap step) instead of decoding all 12 MP to shave 4000 -> 2048.
DRAFT_SLACK = 0.95
# Box-reduce by an integer factor first, then filter the last < 2x: visually the same as a full
# convolution (Pillow's docs) at a fraction of the cost.
_REDUCING_GAP = 2.0

# The same mapping as ImageOps.exif_transpose; applied by hand so the transpose runs on the
# downscaled image rather than the full decode.
_ORIENTATION = MappingProxyType(
    {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }
)
_EXIF_ORIENTATION_TAG = 0x0112

# Formats people will try that we refuse: named in the message so the user knows what to convert.
_OTHER_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"qoif", "QOI"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")
_ACCEPTED_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")

# Exceptions Pillow raises for a file that claims a format and then breaks its rules.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says. Dimensions as stored, before any EXIF rotation."""

    mime: str
    width: int
    height: int
    frames: int


# --- identify ----------------------------------------------------------------------------------


def identify(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Read the header only: format, size and frame count. Raises InputImageError."""
    if not data:
        raise InputImageError("This file is empty.")
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as img:
            fmt = img.format or ""
            width, height = img.size
            _check_pixels(width, height, max_pixels)
            # GIF counts frames by skipping their data blocks, without decoding them.
            frames = int(getattr(img, "n_frames", 1))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (89 MP warning, 178 MP error) fired before ours could.
        raise InputImageError(
            f"This image is too large (the limit is {max_pixels / 1e6:.0f} megapixels)."
        ) from None
    except Image.UnidentifiedImageError:
        raise InputImageError(_unidentified_message(data)) from None
    except InputImageError:
        raise
    except _DECODE_ERRORS:
        raise InputImageError(DAMAGED) from None
    if fmt not in MIME:  # cannot happen with formats=..., but a plugin could name itself oddly
        raise InputImageError(NOT_AN_IMAGE)
    return ImageInfo(MIME[fmt], width, height, max(1, frames))


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise InputImageError("This image has no pixels (it is 0 pixels wide or high).")
    if width * height > max_pixels:
        raise InputImageError(
            f"This image is too large ({width}×{height}, {width * height / 1e6:.1f} megapixels; "
            f"the limit is {max_pixels / 1e6:.0f} megapixels)."
        )


def _unidentified_message(data: bytes) -> str:
    head = data[:1024]
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return f"{name} images are not supported: send PNG, JPEG, WEBP, BMP or GIF."
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF images are not supported: send PNG, JPEG, WEBP, BMP or GIF."
        if brand in _HEIF_BRANDS:
            return "HEIC images are not supported: send PNG, JPEG, WEBP, BMP or GIF."
    if b"<svg" in head.lower():
        return "SVG images are not supported: send PNG, JPEG, WEBP, BMP or GIF."
    # Right signature, unreadable header: say damaged rather than "not an image".
    if head.startswith(_ACCEPTED_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return DAMAGED
    return NOT_AN_IMAGE


# --- decoding helpers (run in worker threads) --------------------------------------------------


def decode(data: bytes, draft_to: tuple[int, int] | None = None) -> tuple[Image.Image, int]:
    """Decode the first frame fully; return it with its EXIF orientation (1 = none).

    ``draft_to`` lets a JPEG decode straight at a reduced scale when the caller will shrink it
    anyway; the result is never smaller than ``DRAFT_SLACK`` of that size.
    """
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        if draft_to and img.format in ("JPEG", "MPO") and _smaller(draft_to, img.size):
            img.draft("RGB", (max(1, int(draft_to[0] * DRAFT_SLACK)), max(1, int(draft_to[1] * DRAFT_SLACK))))
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputImageError("This image is too large.") from None
    except Image.UnidentifiedImageError:
        raise InputImageError(_unidentified_message(data)) from None
    except _DECODE_ERRORS:
        raise InputImageError(DAMAGED) from None
    return img, _orientation(img)


def _smaller(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] and a[1] < b[1]


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        return int(value) if int(value) in _ORIENTATION else 1
    except Exception:  # a broken EXIF block must not cost the user their image
        log.debug("unreadable EXIF; orientation ignored", exc_info=True)
        return 1


def orient(img: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENTATION.get(orientation)
    return img.transpose(method) if method is not None else img


def to_rgb_or_rgba(img: Image.Image) -> Image.Image:
    """Bring any decoded mode to RGB, or RGBA when the file carries transparency."""
    mode = img.mode
    if mode == "RGBA" or (mode == "RGB" and "transparency" not in img.info):
        return img
    if mode.startswith("I;16"):
        # Pillow's I;16 -> L conversion clips at 255 instead of scaling: a 16-bit grey would turn
        # white. Scale the 0..65535 range down first.
        return img.point(lambda v: v / 256).convert("L").convert("RGB")
    if mode == "I":
        high = float(img.getextrema()[1])  # type: ignore[arg-type]  # one band: (low, high)
        if high > 255:
            divisor = 256 if high <= 65535 else high / 255
            img = img.point(lambda v: v / divisor)
        return img.convert("L").convert("RGB")
    if mode == "F":
        return img.convert("L").convert("RGB")
    if mode in ("LA", "La", "PA", "RGBa") or "transparency" in img.info:
        return img.convert("RGBA")
    try:
        return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, ...
    except ValueError:
        raise InputImageError(f"This image uses a colour mode ({mode}) that cannot be converted.") from None


def drop_opaque_alpha(img: Image.Image) -> Image.Image:
    """RGBA whose alpha is 255 everywhere is RGB in disguise: encode it as the smaller JPEG."""
    if img.mode == "RGBA" and img.getchannel("A").getextrema()[0] == 255:
        return img.convert("RGB")
    return img


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    if img.size == size:
        return img
    shrinking = size[0] < img.width
    # BICUBIC with a reducing gap is what a quality downscale costs least; LANCZOS' wider kernel
    # buys nothing visible for a provider that will resample again.
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=_REDUCING_GAP if shrinking else None)


def encode(img: Image.Image, fmt: str, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        # No optimize=True: a second Huffman pass for ~5% is not worth it on every input.
        img.save(buf, "JPEG", quality=quality)
    elif fmt == "WEBP":
        # method 2 of 0..6: about half the time of the default 4 for ~5% more bytes.
        img.save(buf, "WEBP", quality=quality, method=2)
    else:
        img.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def encode_capped(
    img: Image.Image, cap: int, min_side: int, *, lossy_alpha: bool
) -> tuple[bytes, str, Image.Image]:
    """Encode to at most ``cap`` bytes: JPEG when opaque; PNG when there is alpha, then (if
    ``lossy_alpha``) WEBP, which keeps alpha at a fifth of PNG's size and full resolution.

    Encoded size is close to proportional to the pixel count, so one computed downscale (the
    square root of the overshoot, with a margin) nearly always fits; the loop only guards the
    rare image that compresses worse when smaller. Returns (bytes, Pillow format, image).
    """
    fmt = "PNG" if img.mode == "RGBA" else "JPEG"
    quality = JPEG_QUALITY
    encoded = encode(img, fmt, quality)
    if len(encoded) <= cap:
        return encoded, fmt, img
    if fmt == "PNG" and lossy_alpha:
        fmt = "WEBP"
        encoded = encode(img, fmt, quality)
    for attempt in range(3):
        if len(encoded) <= cap:
            return encoded, fmt, img
        scale = math.sqrt(cap / len(encoded)) * (0.95 - 0.1 * attempt)
        size = _scaled(img.size, scale, min_side)
        if size == img.size:
            break
        log.debug("encoded %d bytes > %d: shrinking %s -> %s", len(encoded), cap, img.size, size)
        img = resize(img, size)
        # Same quality on the first shrink keeps the size estimate true; only if that missed
        # does quality give way too.
        quality = JPEG_QUALITY if attempt == 0 else 85
        encoded = encode(img, fmt, quality)
    if len(encoded) <= cap:
        return encoded, fmt, img
    raise InputImageError(f"This image could not be made smaller than {megabytes(cap)} without ruining it.")


def _scaled(size: tuple[int, int], scale: float, min_side: int) -> tuple[int, int]:
    w, h = size
    scale = max(scale, min(1.0, min_side / min(w, h)))
    return max(1, round(w * scale)), max(1, round(h * scale))


def megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB"
