"""Results for Discord: a provider's image fitted under the upload limit, re-encoded (and if need
be downscaled) only when it does not fit as it is or is in a format Discord should not get."""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from types import MappingProxyType

from bot.images.codec import MIME, decode, drop_opaque_alpha, encode_capped, identify, orient, to_rgb_or_rgba

OUTPUT_MAX_PIXELS = 100_000_000  # provider results are trusted more than uploads, but not blindly
_UPLOAD_EXT = MappingProxyType({"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"})


@dataclass(frozen=True)
class FittedImage:
    """A result ready to upload to Discord as an attachment named ``*.{ext}``."""

    data: bytes
    mime: str
    ext: str
    width: int
    height: int


def _fit_sync(data: bytes, limit_bytes: int) -> FittedImage:
    info = identify(data, max_pixels=OUTPUT_MAX_PIXELS)
    if len(data) <= limit_bytes and info.mime in _UPLOAD_EXT:
        return FittedImage(data, info.mime, _UPLOAD_EXT[info.mime], info.width, info.height)
    img, orientation = decode(data)
    # Re-encoding drops EXIF, so its rotation has to be baked into the pixels.
    img = drop_opaque_alpha(orient(to_rgb_or_rgba(img), orientation))
    encoded, fmt, img = encode_capped(img, limit_bytes, min_side=1, lossy_alpha=True)
    mime = MIME[fmt]
    return FittedImage(encoded, mime, _UPLOAD_EXT[mime], img.width, img.height)


async def fit_for_upload(data: bytes, limit_bytes: int, executor: Executor | None = None) -> FittedImage:
    """Return an image Discord will take: as is when it fits, else re-encoded and if need be
    downscaled (alpha kept, as PNG or else WEBP). Always ``<= limit_bytes``, or InputImageError."""
    return await asyncio.get_running_loop().run_in_executor(executor, _fit_sync, data, limit_bytes)
