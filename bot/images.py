"""Pillow work: check what users send, turn inputs into data URIs, fit results to Discord's limit.

Decoding and encoding run off the event loop, on the executor the caller passes (the services
own one with fewer threads than cores: Pillow's C loops still take the GIL between chunks, and with
more threads than cores the loop waits for it) or else a default worker thread: a 12 MP decode
takes long enough to stall the gateway heartbeat. ``identify`` (a header parse) and ``render_placeholder`` are
synchronous; callers on the event loop wrap the latter in a thread.

Formats are judged by content, never by file name, and only PNG, JPEG, WEBP, BMP and GIF are
opened at all: every other Pillow plugin is parser surface a hostile upload could reach.
"""

from __future__ import annotations

import asyncio
import base64
import io
import ipaddress
import logging
import math
import random
import socket
import struct
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import httpx
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from bot.config import Limits
from bot.errors import InputImageError

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
# MPO is how Pillow names multi-picture camera JPEGs (stereo, depth maps): still a JPEG file.
_MIME = MappingProxyType(
    {
        "PNG": "image/png",
        "JPEG": "image/jpeg",
        "MPO": "image/jpeg",
        "WEBP": "image/webp",
        "BMP": "image/bmp",
        "GIF": "image/gif",
    }
)
_UPLOAD_EXT = MappingProxyType({"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"})

NOT_AN_IMAGE = "This file is not an image (PNG, JPEG, WEBP, BMP or GIF)."
DAMAGED = "This image looks damaged: it could not be read to the end. Save it again and retry."

MIN_SIDE = 128  # UModelverse refuses inputs with a side under 128 px
MAX_ASPECT = 4  # ... and an aspect ratio over 4:1
# UModelverse limits an input to 10 MB. Base64 grows it by 4/3, so capping the encoded image at
# 7.4 MB keeps even the data URI (prefix included) under 10 MB, whichever one the provider counts.
MAX_PREPARED_BYTES = 7_400_000
OUTPUT_MAX_PIXELS = 100_000_000  # provider results are trusted more than uploads, but not blindly
JPEG_QUALITY = 90
# Measured on a 2048² RGBA image: level 1 takes 0.3 s, the default 6 takes 1.4 s for 16% fewer
# bytes, optimize (9) takes 15 s for 5% more. Bytes are cheaper than a busy worker thread.
PNG_COMPRESS_LEVEL = 1
# JPEG draft mode decodes at 1/2, 1/4 or 1/8 scale in the DCT domain, but only if the result stays
# at least as large as asked. Asking for 5% less than the target lets a 4000 px photo decode at
# 2000 px (one cheap step) instead of decoding all 12 MP to shave 4000 -> 2048.
_DRAFT_SLACK = 0.95
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


@dataclass(frozen=True)
class PreparedImage:
    """An input ready for a provider. ``byte_size`` counts the encoded image before base64."""

    data_uri: str
    mime: str
    width: int
    height: int
    byte_size: int


@dataclass(frozen=True)
class FittedImage:
    """A result ready to upload to Discord as an attachment named ``*.{ext}``."""

    data: bytes
    mime: str
    ext: str
    width: int
    height: int


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
    if fmt not in _MIME:  # cannot happen with formats=..., but a plugin could name itself oddly
        raise InputImageError(NOT_AN_IMAGE)
    return ImageInfo(_MIME[fmt], width, height, max(1, frames))


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


def _decode(data: bytes, draft_to: tuple[int, int] | None = None) -> tuple[Image.Image, int]:
    """Decode the first frame fully; return it with its EXIF orientation (1 = none).

    ``draft_to`` lets a JPEG decode straight at a reduced scale when the caller will shrink it
    anyway; the result is never smaller than ``_DRAFT_SLACK`` of that size.
    """
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
        if draft_to and img.format in ("JPEG", "MPO") and _smaller(draft_to, img.size):
            img.draft(
                "RGB", (max(1, int(draft_to[0] * _DRAFT_SLACK)), max(1, int(draft_to[1] * _DRAFT_SLACK)))
            )
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


def _orient(img: Image.Image, orientation: int) -> Image.Image:
    method = _ORIENTATION.get(orientation)
    return img.transpose(method) if method is not None else img


def _to_rgb_or_rgba(img: Image.Image) -> Image.Image:
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


def _drop_opaque_alpha(img: Image.Image) -> Image.Image:
    """RGBA whose alpha is 255 everywhere is RGB in disguise: encode it as the smaller JPEG."""
    if img.mode == "RGBA" and img.getchannel("A").getextrema()[0] == 255:
        return img.convert("RGB")
    return img


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    if img.size == size:
        return img
    shrinking = size[0] < img.width
    # BICUBIC with a reducing gap is what a quality downscale costs least; LANCZOS' wider kernel
    # buys nothing visible for a provider that will resample again.
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=_REDUCING_GAP if shrinking else None)


def _encode(img: Image.Image, fmt: str, quality: int = JPEG_QUALITY) -> bytes:
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


def _encode_capped(
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
    encoded = _encode(img, fmt, quality)
    if len(encoded) <= cap:
        return encoded, fmt, img
    if fmt == "PNG" and lossy_alpha:
        fmt = "WEBP"
        encoded = _encode(img, fmt, quality)
    for attempt in range(3):
        if len(encoded) <= cap:
            return encoded, fmt, img
        scale = math.sqrt(cap / len(encoded)) * (0.95 - 0.1 * attempt)
        size = _scaled(img.size, scale, min_side)
        if size == img.size:
            break
        log.debug("encoded %d bytes > %d: shrinking %s -> %s", len(encoded), cap, img.size, size)
        img = _resize(img, size)
        # Same quality on the first shrink keeps the size estimate true; only if that missed
        # does quality give way too.
        quality = JPEG_QUALITY if attempt == 0 else 85
        encoded = _encode(img, fmt, quality)
    if len(encoded) <= cap:
        return encoded, fmt, img
    raise InputImageError(f"This image could not be made smaller than {_mb(cap)} without ruining it.")


def _scaled(size: tuple[int, int], scale: float, min_side: int) -> tuple[int, int]:
    w, h = size
    scale = max(scale, min(1.0, min_side / min(w, h)))
    return max(1, round(w * scale)), max(1, round(h * scale))


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MB"


# --- inputs for providers ----------------------------------------------------------------------


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
    fits = all(_DRAFT_SLACK * t - 1 <= s <= t for s, t in zip(size, target, strict=True))
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
    img, orientation = _decode(data, draft_to=target)
    img = _to_rgb_or_rgba(img)
    if not _draft_is_enough(img.size, (info.width, info.height), target):
        img = _resize(img, target)
    img = _drop_opaque_alpha(_orient(img, orientation))
    # PNG, not WEBP, for alpha: the one lossless format every provider documents.
    encoded, fmt, img = _encode_capped(img, MAX_PREPARED_BYTES, MIN_SIDE, lossy_alpha=False)
    mime = _MIME[fmt]
    uri = f"data:{mime};base64," + base64.b64encode(encoded).decode("ascii")
    return PreparedImage(uri, mime, img.width, img.height, len(encoded))


async def prepare_input(data: bytes, limits: Limits, executor: Executor | None = None) -> PreparedImage:
    """Check, decode, orient, normalise and downscale an input; return it as a data URI."""
    if len(data) > limits.max_input_bytes:
        raise InputImageError(f"This image is larger than {_mb(limits.max_input_bytes)}.")
    return await asyncio.get_running_loop().run_in_executor(executor, _prepare_sync, data, limits)


# --- results for Discord -----------------------------------------------------------------------


def _fit_sync(data: bytes, limit_bytes: int) -> FittedImage:
    info = identify(data, max_pixels=OUTPUT_MAX_PIXELS)
    if len(data) <= limit_bytes and info.mime in _UPLOAD_EXT:
        return FittedImage(data, info.mime, _UPLOAD_EXT[info.mime], info.width, info.height)
    img, orientation = _decode(data)
    # Re-encoding drops EXIF, so its rotation has to be baked into the pixels.
    img = _drop_opaque_alpha(_orient(_to_rgb_or_rgba(img), orientation))
    encoded, fmt, img = _encode_capped(img, limit_bytes, min_side=1, lossy_alpha=True)
    mime = _MIME[fmt]
    return FittedImage(encoded, mime, _UPLOAD_EXT[mime], img.width, img.height)


async def fit_for_upload(data: bytes, limit_bytes: int, executor: Executor | None = None) -> FittedImage:
    """Return an image Discord will take: as is when it fits, else re-encoded and if need be
    downscaled (alpha kept, as PNG or else WEBP). Always ``<= limit_bytes``, or InputImageError."""
    return await asyncio.get_running_loop().run_in_executor(executor, _fit_sync, data, limit_bytes)


# --- fetching user-given links -----------------------------------------------------------------

MAX_REDIRECTS = 3
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# identity: a gzip-encoded "image" could inflate far past max_bytes inside a single chunk.
_FETCH_HEADERS = MappingProxyType({"Accept": "image/*", "Accept-Encoding": "identity"})
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _is_forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for any address that is not plainly on the public internet."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: judge the embedded one.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and _is_forbidden(embedded):
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _shown(url: httpx.URL | str) -> str:
    """The host alone: never userinfo (credentials) or the query (signed tokens)."""
    try:
        host = httpx.URL(url).host if isinstance(url, str) else url.host
    except Exception:
        return "that link"
    if not host:
        return "that link"
    return f"[{host}]" if ":" in host else host


def _parse_url(url: httpx.URL | str) -> httpx.URL:
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
    except Exception:
        raise InputImageError("This is not a valid link.") from None
    if parsed.scheme not in ("http", "https"):
        raise InputImageError("Only http:// and https:// image links are accepted.")
    if not parsed.host:
        raise InputImageError("This link has no host name.")
    return parsed


async def _check_host(url: httpx.URL, allow_private: bool) -> None:
    # Known limit: the check resolves the name and httpx resolves it again when connecting, so a
    # DNS server that answers differently the second time (DNS rebinding) can slip past. Closing
    # that needs connecting to the checked IP itself (Host header + SNI), which a shared client
    # with optional proxies cannot promise; the redirect re-checks and the size cap still apply.
    host = url.raw_host.decode("ascii")  # punycode for IDN; bare (no brackets) for IPv6
    port = url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise InputImageError(f"Could not find the host {_shown(url)}.") from None
    if allow_private:
        return
    for *_, sockaddr in infos:
        try:
            ip = ipaddress.ip_address(str(sockaddr[0]))
        except ValueError:
            raise InputImageError(f"Could not find the host {_shown(url)}.") from None
        if _is_forbidden(ip):
            raise InputImageError(f"Links to private or local network addresses are refused ({_shown(url)}).")


async def _read_capped(resp: httpx.Response, max_bytes: int, where: str) -> bytes:
    too_big = f"The image at {where} is larger than {_mb(max_bytes)}."
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise InputImageError(too_big)
    body = bytearray()
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise InputImageError(too_big)
    return bytes(body)


async def _fetch(
    http: httpx.AsyncClient, url: str, max_bytes: int, request_timeout: float, allow_private: bool
) -> bytes:
    current: httpx.URL | str = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = _parse_url(current)
        where = _shown(target)
        await _check_host(target, allow_private)
        try:
            async with http.stream(
                "GET", target, headers=dict(_FETCH_HEADERS), follow_redirects=False, timeout=request_timeout
            ) as resp:
                if resp.status_code in _REDIRECT_STATUSES:
                    location = resp.headers.get("location")
                    if not location:
                        raise InputImageError(f"The image link at {where} redirects nowhere.")
                    current = target.join(location)
                    continue
                if resp.status_code != 200:
                    raise InputImageError(f"The image link at {where} answered HTTP {resp.status_code}.")
                return await _read_capped(resp, max_bytes, where)
        except httpx.TimeoutException:
            raise InputImageError(f"Downloading the image from {where} took too long.") from None
        except httpx.InvalidURL:
            raise InputImageError("This is not a valid link.") from None
        except httpx.HTTPError as exc:
            # The class name only: httpx messages can quote the full URL, credentials included.
            raise InputImageError(
                f"Could not download the image from {where} ({type(exc).__name__})."
            ) from None
    raise InputImageError(f"The image link redirected more than {MAX_REDIRECTS} times.")


async def fetch_url(
    http: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    timeout: float = 20.0,  # noqa: ASYNC109 - the contract: one deadline for DNS, redirects and body
    allow_private: bool = False,
) -> bytes:
    """Download a user-given image link safely (no private networks, capped size, redirects
    re-checked hop by hop). Raises InputImageError with a message safe to show.

    ``http`` must carry no default credentials (headers, cookies): whatever it sends by default
    goes to the user's host too."""
    try:
        async with asyncio.timeout(timeout):
            return await _fetch(http, url, max_bytes, timeout, allow_private)
    except TimeoutError:
        raise InputImageError(f"Downloading the image from {_shown(url)} took too long.") from None


def _read_file(source: str, max_bytes: int) -> bytes:
    path = Path(source).expanduser()
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)  # never more, whatever the file claims to be
    except FileNotFoundError:
        raise InputImageError(f"No such file: {path}.") from None
    except IsADirectoryError:
        raise InputImageError(f"{path} is a directory, not an image.") from None
    except PermissionError:
        raise InputImageError(f"No permission to read {path}.") from None
    except OSError as exc:
        raise InputImageError(f"Could not read {path} ({exc.strerror or type(exc).__name__}).") from None
    if len(data) > max_bytes:
        raise InputImageError(f"{path} is larger than {_mb(max_bytes)}.")
    return data


async def load_source(
    source: str, http: httpx.AsyncClient, limits: Limits, *, allow_private: bool = False
) -> bytes:
    """For the CLI: read a local file or download an http(s) link, capped at max_input_bytes."""
    if "://" in source:
        return await fetch_url(http, source, max_bytes=limits.max_input_bytes, allow_private=allow_private)
    return await asyncio.to_thread(_read_file, source, limits.max_input_bytes)


# --- the sandbox provider's output -------------------------------------------------------------

SANDBOX_MARK = ("kontext-bot", "sandbox")
_PLACEHOLDER_MAX_SIDE = 4096
_PROMPT_CHARS = 400


def render_placeholder(
    prompt: str, seed: int, width: int, height: int, inputs: Sequence[bytes] = ()
) -> bytes:
    """A deterministic PNG that says SANDBOX, shows prompt and seed over a seed-coloured gradient,
    with the first input (if any) blended in. Marked with the PNG text ``kontext-bot: sandbox``."""
    if not (1 <= width <= _PLACEHOLDER_MAX_SIDE and 1 <= height <= _PLACEHOLDER_MAX_SIDE):
        raise ValueError(f"placeholder size {width}x{height} out of range")
    rng = random.Random(seed)  # a local generator: same seed, same colours, no global state
    top = tuple(rng.randrange(30, 226) for _ in range(3))
    bottom = tuple(rng.randrange(30, 226) for _ in range(3))
    mask = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    img = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    )

    if inputs:
        _blend_thumbnail(img, inputs[0])

    draw = ImageDraw.Draw(img)
    side = min(width, height)
    title = ImageFont.load_default(size=max(10, side // 7))
    body = ImageFont.load_default(size=max(8, side // 24))
    stroke = max(1, side // 256)
    margin = max(4, width // 20)
    y = margin
    draw.text(
        (width / 2, y),
        "SANDBOX",
        font=title,
        fill="white",
        anchor="ma",
        stroke_width=stroke * 2,
        stroke_fill="black",
    )
    y += _font_size(title) * 1.3
    line_height = _font_size(body) * 1.25
    max_lines = max(1, int((height - y - 2 * line_height - margin) // line_height))
    for line in _wrap(prompt[:_PROMPT_CHARS], body, width - 2 * margin, max_lines):
        draw.text((margin, y), line, font=body, fill="white", stroke_width=stroke, stroke_fill="black")
        y += line_height
    draw.text(
        (margin, height - margin),
        f"seed {seed}",
        font=body,
        fill="white",
        anchor="ld",
        stroke_width=stroke,
        stroke_fill="black",
    )

    meta = PngImagePlugin.PngInfo()
    meta.add_text(*SANDBOX_MARK)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=meta)
    return buf.getvalue()


def _font_size(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> float:
    # Without FreeType, load_default() falls back to a fixed bitmap font that has no .size.
    return float(getattr(font, "size", 11))


def _blend_thumbnail(canvas: Image.Image, data: bytes) -> None:
    """Blend a thumbnail of ``data`` into the canvas centre. A bad input is skipped, not fatal:
    the sandbox stands in for a provider, and validation happened before."""
    box = (max(1, canvas.width // 2), max(1, canvas.height // 2))
    try:
        identify(data, max_pixels=Limits().max_input_pixels)
        thumb, orientation = _decode(data, draft_to=box)
    except InputImageError as exc:
        log.debug("sandbox input not drawn: %s", exc.user_message)
        return
    thumb = _orient(_to_rgb_or_rgba(thumb), orientation).convert("RGB")
    thumb.thumbnail(box, Image.Resampling.BICUBIC)
    x, y = (canvas.width - thumb.width) // 2, (canvas.height - thumb.height) // 2
    region = canvas.crop((x, y, x + thumb.width, y + thumb.height))
    canvas.paste(Image.blend(region, thumb, 0.7), (x, y))


def _wrap(
    text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float, max_lines: int
) -> list[str]:
    """Greedy word wrap by rendered width; words longer than a line are cut; '...' marks a cut."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while font.getlength(word) > width and len(word) > 1:
            cut = len(word) - 1
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        current = word
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "...") > width:
            last = last[:-1]
        lines[-1] = last + "..."
    return lines
