"""Inputs for providers: check an upload, decode it (bomb guard first), apply its EXIF rotation,
normalise its colours and size to what every provider takes, and hand it over as a data URI.

The decode and encode run on the executor the caller passes (the services own one with fewer
threads than cores: Pillow's C loops still take the GIL between chunks) or else a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import math
from concurrent.futures import Executor
from dataclasses import dataclass

from bot.config import Limits
from bot.errors import InputImageError
from bot.images.codec import (
    DRAFT_SLACK,
    MIME,
    decode,
    drop_opaque_alpha,
    encode_capped,
    identify,
    megabytes,
    orient,
    resize,
    to_rgb_or_rgba,
)

MIN_SIDE = 128  # UModelverse refuses inputs with a side under 128 px
MAX_ASPECT = 4  # ... and an aspect ratio over 4:1
# UModelverse limits an input to 10 MB. Base64 grows it by 4/3, so capping the encoded image at
# 7.4 MB keeps even the data URI (prefix included) under 10 MB, whichever one the provider counts.
MAX_PREPARED_BYTES = 7_400_000


@dataclass(frozen=True)
class PreparedImage:
    """An input ready for a provider. ``byte_size`` counts the encoded image before base64."""

    data_uri: str
    mime: str
    width: int
    height: int
    byte_size: int


def _input_target(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Longest side at most ``max_side`` (never upscaled for that), shortest at least MIN_SIDE."""
    long_side, short_side = max(width, height), min(width, height)
    scale = min(1.0, max_side / long_side)
    if short_side * scale < MIN_SIDE:
        scale = MIN_SIDE / short_side  # only upscales: a ratio <= 4:1 and 2048 px leave room
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    # Rounding must not push a 4:1 image over 4:1 or a side under the provider's minimum.
    if w < h:
        w = max(w, MIN_SIDE, math.ceil(h / MAX_ASPECT))
    else:
        h = max(h, MIN_SIDE, math.ceil(w / MAX_ASPECT))
    return w, h


def _draft_is_enough(size: tuple[int, int], original: tuple[int, int], target: tuple[int, int]) -> bool:
    """A draft decode lands up to 5% under the target: keep it rather than resample a second time,
    as long as it still meets the provider's minimum side and ratio."""
    if size == target:
        return True
    if size == original:  # no draft happened (not a JPEG, or no shrink needed)
        return False
    fits = all(DRAFT_SLACK * t - 1 <= s <= t for s, t in zip(size, target, strict=True))
    return fits and min(size) >= MIN_SIDE and max(size) <= MAX_ASPECT * min(size)


def _prepare_sync(data: bytes, limits: Limits) -> PreparedImage:
    info = identify(data, max_pixels=limits.max_input_pixels)
    long_side, short_side = max(info.width, info.height), min(info.width, info.height)
    if long_side > MAX_ASPECT * short_side:
        raise InputImageError(
            f"This image is {info.width}×{info.height}, an aspect ratio of {long_side / short_side:.1f}:1; "
            f"the models accept at most {MAX_ASPECT}:1. Crop it and try again."
        )
    target = _input_target(info.width, info.height, limits.max_input_side)
    img, orientation = decode(data, draft_to=target)
    img = to_rgb_or_rgba(img)
    if not _draft_is_enough(img.size, (info.width, info.height), target):
        img = resize(img, target)
    img = drop_opaque_alpha(orient(img, orientation))
    # PNG, not WEBP, for alpha: the one lossless format every provider documents.
    encoded, fmt, img = encode_capped(img, MAX_PREPARED_BYTES, MIN_SIDE, lossy_alpha=False)
    mime = MIME[fmt]
    uri = f"data:{mime};base64," + base64.b64encode(encoded).decode("ascii")
    return PreparedImage(uri, mime, img.width, img.height, len(encoded))


async def prepare_input(data: bytes, limits: Limits, executor: Executor | None = None) -> PreparedImage:
    """Check, decode, orient, normalise and downscale an input; return it as a data URI."""
    if len(data) > limits.max_input_bytes:
        raise InputImageError(f"This image is larger than {megabytes(limits.max_input_bytes)}.")
    return await asyncio.get_running_loop().run_in_executor(executor, _prepare_sync, data, limits)
