"""Request validation the emulated APIs share: parameter types and ranges, input images.

Every check raises ``Reject``; each API words it in its own error shape. Present-but-null counts as
invalid, since no provider documents null.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import re
from typing import Any

from PIL import Image, UnidentifiedImageError

SEED_MAX = 9_999_999_999
ASPECT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
SIZE = re.compile(r"(\d+)x(\d+)")

_IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP"})
_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,(.*)", re.DOTALL)
_THREAD_BYTES = 256 * 1024  # larger base64 inputs are checked off the event loop


class Reject(Exception):
    """A request that fails validation; each provider words it in its own error shape."""

    def __init__(self, message: str, *, missing: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing
        self.code = code


def unknown(body: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise Reject(f"unsupported parameter(s) for {where}: {', '.join(extra)}")


def integer(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    if name not in body:
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Reject(f"{name} must be an integer in [{lo}, {hi}]")
    return value


def number(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    value = body.get(name, lo)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise Reject(f"{name} must be a number in [{lo:g}, {hi:g}]")


def choice(body: dict[str, Any], name: str, choices: tuple[str, ...]) -> None:
    if name in body and body[name] not in choices:
        raise Reject(f"{name} must be one of {', '.join(choices)}")


def text(body: dict[str, Any], name: str, required: bool = False) -> None:
    if name not in body:
        if required:
            raise Reject(f"{name} is required", missing=True)
        return
    if not isinstance(body[name], str) or (required and not body[name].strip()):
        raise Reject(f"{name} must be a non-empty string")


def flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise Reject(f"{name} must be a boolean")
    return value


async def verify_images(refs: list[tuple[str, Any]], *, bare_ok: bool, max_mb: int, strict: bool) -> None:
    """Every (name, value) must be an http(s) URL or base64 of a real image within the limits.
    ``bare_ok``: base64 without a data: prefix is taken; ``strict``: the older modelverse limits."""
    args = (refs, bare_ok, max_mb * 1024 * 1024, strict)
    if sum(len(v) for _, v in refs if isinstance(v, str)) > _THREAD_BYTES:
        await asyncio.to_thread(_verify_refs, *args)  # big base64: keep the loop free
    else:
        _verify_refs(*args)


def _verify_refs(refs: list[tuple[str, Any]], bare_ok: bool, max_bytes: int, strict: bool) -> None:
    for name, value in refs:
        raw = _decode_ref(value, name, bare_ok)
        if raw is not None:
            _check_image(raw, name, max_bytes, strict)


def _decode_ref(value: Any, name: str, bare_ok: bool) -> bytes | None:
    """The image bytes of a data URI (or bare base64 where allowed); None for an http(s) URL."""
    if not isinstance(value, str) or not value:
        raise Reject(f"{name} must be a non-empty string")
    if value.startswith(("http://", "https://")):
        return None
    match = _DATA_URI.fullmatch(value)
    if match is None and not bare_ok:
        raise Reject(f"{name} must be an http(s) URL or a data:image/<fmt>;base64,... URI")
    try:
        return base64.b64decode(match.group(1) if match else value, validate=True)
    except (binascii.Error, ValueError):
        raise Reject(f"{name} is not valid base64") from None


def _check_image(raw: bytes, name: str, max_bytes: int, strict: bool) -> None:
    if len(raw) > max_bytes:
        raise Reject(f"{name} is larger than {max_bytes // (1024 * 1024)} MB")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            fmt, (width, height) = image.format, image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Reject(f"{name} is not a readable image") from None
    if fmt not in _IMAGE_FORMATS:
        raise Reject(f"{name}: format {fmt} is not supported (PNG, JPEG, WEBP, BMP)")
    if strict and (min(width, height) < 128 or max(width, height) > 4 * min(width, height)):
        raise Reject(f"{name}: sides must be at least 128 px and the aspect ratio at most 4:1")
