"""bot.images: what is accepted, what is refused and why, and what comes out (inputs prepared for
providers, results fitted for Discord, the sandbox placeholder). Links: tests/test_downloads.py.

Every fixture is made here with Pillow (or by hand, for headers Pillow will not write), in memory.
"""

from __future__ import annotations

import base64
import io
import math
import os
import random
import struct
import zlib
from dataclasses import replace

import httpx
import pytest
from PIL import Image

from bot.config import Limits
from bot.errors import InputImageError
from bot.images import (
    MAX_PREPARED_BYTES,
    NOT_AN_IMAGE,
    fit_for_upload,
    identify,
    load_source,
    prepare_input,
    render_placeholder,
)
from bot.images import prepare as prepare_module

LIMITS = Limits()
MIB = 1024 * 1024


# --- fixtures ----------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def solid(size: tuple[int, int], color: object = (200, 40, 40), mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, color)  # type: ignore[arg-type]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def raw_png(width: int, height: int, *, noise: bool = False, alpha: bool = False) -> bytes:
    """An 8-bit RGB(A) PNG written by hand. Without ``noise`` it is a header with almost no data,
    for sizes Pillow would refuse to write (bombs); nothing may ever decode it. With ``noise``,
    random pixels stored at zlib level 0: a 50 MB fixture in milliseconds, not Pillow's seconds."""
    if noise:
        stride = width * (4 if alpha else 3) + 1
        # A repeated random block: noise to every codec (it does not align with the rows or
        # JPEG's 8x8 blocks) at a fraction of the cost of fresh random bytes.
        block = random.randbytes(1_000_003)
        rows = bytearray((block * (stride * height // len(block) + 1))[: stride * height])
        rows[::stride] = bytes(height)  # each row's filter byte: 0, "none"
        body = zlib.compress(rows, 0)
    else:
        body = zlib.compress(b"\0" * 64)
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def from_uri(uri: str) -> Image.Image:
    header, _, payload = uri.partition(",")
    assert header.startswith("data:image/") and header.endswith(";base64")
    img = Image.open(io.BytesIO(base64.b64decode(payload)))
    img.load()
    return img


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 24) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


# --- identify: accepted by content ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("GIF", "image/gif"),
    ],
)
async def test_every_accepted_format_is_identified_and_prepared(fmt: str, mime: str) -> None:
    data = encode(solid((300, 200)), fmt)
    info = identify(data, max_pixels=LIMITS.max_input_pixels)
    assert (info.mime, info.width, info.height, info.frames) == (mime, 300, 200, 1)
    prepared = await prepare_input(data, LIMITS)
    assert prepared.data_uri.startswith("data:image/jpeg;base64,")  # all opaque: JPEG for speed
    assert (prepared.width, prepared.height) == (300, 200)
    assert close(from_uri(prepared.data_uri).getpixel((150, 100)), (200, 40, 40))


async def test_animated_gif_counts_frames_and_uses_the_first() -> None:
    frames = [solid((200, 200), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert identify(data, max_pixels=LIMITS.max_input_pixels).frames == 3
    prepared = await prepare_input(data, LIMITS)
    assert close(from_uri(prepared.data_uri).getpixel((100, 100)), (255, 0, 0))


async def test_text_file_named_png_is_refused(tmp_path) -> None:
    path = tmp_path / "cat.png"
    path.write_text("definitely a cat picture\n" * 20)
    async with httpx.AsyncClient(trust_env=False) as http:
        data = await load_source(str(path), http, LIMITS)
    with pytest.raises(InputImageError) as err:
        await prepare_input(data, LIMITS)
    assert err.value.user_message == NOT_AN_IMAGE


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (encode(solid((64, 64)), "TIFF"), "TIFF"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10"/>', "SVG"),
    ],
)
def test_other_formats_are_refused_by_name(data: bytes, name: str) -> None:
    with pytest.raises(InputImageError, match=f"{name} images are not supported"):
        identify(data, max_pixels=LIMITS.max_input_pixels)


def test_empty_and_zero_size_images_are_refused() -> None:
    with pytest.raises(InputImageError, match="empty"):
        identify(b"", max_pixels=LIMITS.max_input_pixels)
    with pytest.raises(InputImageError):
        identify(raw_png(0, 10), max_pixels=LIMITS.max_input_pixels)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
async def test_truncated_image_is_refused_cleanly(fmt: str) -> None:
    noisy = Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))
    data = encode(noisy, fmt)
    with pytest.raises(InputImageError, match="looks damaged"):
        await prepare_input(data[: len(data) // 2], LIMITS)
    with pytest.raises(InputImageError, match="looks damaged"):
        identify(data[:20], max_pixels=LIMITS.max_input_pixels)  # cut inside the header


def test_decompression_bomb_is_refused_from_the_header() -> None:
    # 50000x50000 RGB would need 7.5 GB; the file is a few dozen bytes and is never decoded.
    with pytest.raises(InputImageError, match="too large"):
        identify(raw_png(50_000, 50_000), max_pixels=LIMITS.max_input_pixels)
    # Under Pillow's own 89 MP guard but over ours: our limit is what refuses it.
    with pytest.raises(InputImageError, match="too large"):
        identify(raw_png(7_000, 7_000), max_pixels=40_000_000)


async def test_prepare_refuses_oversize_bytes_and_pixels_before_decoding() -> None:
    with pytest.raises(InputImageError, match="too large"):
        await prepare_input(raw_png(7_000, 7_000), LIMITS)
    small = replace(LIMITS, max_input_bytes=100)
    with pytest.raises(InputImageError, match="larger than"):
        await prepare_input(encode(solid((300, 300)), "BMP"), small)


# --- prepare_input: orientation, modes, alpha, size --------------------------------------------


async def test_exif_orientation_6_is_applied() -> None:
    img = solid((300, 200), (255, 0, 0))
    img.paste((0, 0, 255), (150, 0, 300, 200))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    prepared = await prepare_input(encode(img, "JPEG", exif=exif), LIMITS)
    assert (prepared.width, prepared.height) == (200, 300)
    out = from_uri(prepared.data_uri)
    assert close(out.getpixel((100, 20)), (255, 0, 0))  # the left edge is now on top
    assert close(out.getpixel((100, 280)), (0, 0, 255))


async def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    data = encode(solid((200, 200), (0, 255, 255, 0), mode="CMYK"), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    prepared = await prepare_input(data, LIMITS)
    out = from_uri(prepared.data_uri)
    assert prepared.mime == "image/jpeg" and out.mode == "RGB"
    assert close(out.getpixel((100, 100)), (255, 0, 0), tolerance=40)


async def test_16_bit_png_is_scaled_not_clipped() -> None:
    data = encode(solid((200, 200), 32768, mode="I;16"), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = from_uri((await prepare_input(data, LIMITS)).data_uri)
    assert out.mode == "RGB"
    assert close(out.getpixel((100, 100)), (128, 128, 128), tolerance=3)  # clipping would give 255


async def test_real_alpha_is_kept_as_png() -> None:
    img = solid((200, 200), (10, 200, 10, 255), mode="RGBA")
    img.paste((10, 200, 10, 60), (0, 0, 100, 200))
    prepared = await prepare_input(encode(img, "PNG"), LIMITS)
    assert prepared.mime == "image/png" and prepared.data_uri.startswith("data:image/png;base64,")
    out = from_uri(prepared.data_uri)
    assert out.mode == "RGBA" and out.getpixel((50, 100))[3] == 60


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
async def test_opaque_alpha_is_dropped_to_jpeg(mode: str) -> None:
    color = (10, 200, 10, 255) if mode == "RGBA" else (90, 255)
    prepared = await prepare_input(encode(solid((200, 200), color, mode=mode), "PNG"), LIMITS)
    assert prepared.mime == "image/jpeg" and from_uri(prepared.data_uri).mode == "RGB"


async def test_palette_transparency_becomes_alpha() -> None:
    img = solid((200, 200), (255, 0, 0, 0), mode="RGBA")
    img.paste((0, 0, 255, 255), (50, 50, 150, 150))
    data = encode(img.convert("P"), "GIF", transparency=0)
    out = from_uri((await prepare_input(data, LIMITS)).data_uri)
    assert out.mode == "RGBA" and out.getpixel((10, 10))[3] == 0 and out.getpixel((100, 100))[3] == 255


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
async def test_large_input_is_downscaled_to_max_side(fmt: str) -> None:
    options = {"compress_level": 1} if fmt == "PNG" else {}
    prepared = await prepare_input(encode(solid((5000, 3000)), fmt, **options), LIMITS)
    assert (prepared.width, prepared.height) == (2048, 1229)
    assert from_uri(prepared.data_uri).size == (2048, 1229)


async def test_jpeg_draft_decode_stays_within_the_limit() -> None:
    # 4000 px decodes at half scale straight to 2000 px: within 5% of 2048 and never over it.
    prepared = await prepare_input(encode(solid((4000, 3000)), "JPEG"), LIMITS)
    assert 0.95 * 2048 <= prepared.width <= 2048
    assert abs(prepared.width / prepared.height - 4 / 3) < 0.01


async def test_small_input_is_upscaled_to_the_provider_minimum() -> None:
    prepared = await prepare_input(encode(solid((50, 60)), "PNG"), LIMITS)
    assert (prepared.width, prepared.height) == (128, 154)


async def test_aspect_ratio_over_4_to_1_is_refused() -> None:
    with pytest.raises(InputImageError, match="at most 4:1"):
        await prepare_input(encode(solid((1000, 100)), "PNG"), LIMITS)
    exactly = await prepare_input(encode(solid((400, 100)), "PNG"), LIMITS)
    assert (exactly.width, exactly.height) == (512, 128)


def test_prepared_cap_keeps_the_data_uri_under_10_mb() -> None:
    assert len("data:image/jpeg;base64,") + math.ceil(MAX_PREPARED_BYTES / 3) * 4 < 10_000_000


async def test_noisy_input_is_shrunk_under_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real cap (7.4 MB) works the same way; a small one keeps the test fast.
    monkeypatch.setattr(prepare_module, "MAX_PREPARED_BYTES", 400_000)
    noisy = raw_png(600, 600, noise=True, alpha=True)  # 1.4 MB of pixels that will not compress
    prepared = await prepare_input(noisy, LIMITS)
    assert prepared.mime == "image/png" and from_uri(prepared.data_uri).mode == "RGBA"
    assert prepared.byte_size <= 400_000
    assert 128 <= prepared.width < 600 and prepared.width == prepared.height


# --- fit_for_upload -----------------------------------------------------------------------------


async def test_fitting_image_is_returned_unchanged() -> None:
    data = encode(solid((640, 480)), "PNG")
    fitted = await fit_for_upload(data, 10 * MIB)
    assert fitted.data is data
    assert (fitted.mime, fitted.ext, fitted.width, fitted.height) == ("image/png", "png", 640, 480)


async def test_noisy_4096_png_is_fitted_under_10_mib() -> None:
    data = raw_png(4096, 4096, noise=True)
    assert len(data) > 10 * MIB
    fitted = await fit_for_upload(data, 10 * MIB)
    assert len(fitted.data) <= 10 * MIB
    assert fitted.mime == "image/jpeg" and fitted.ext == "jpg"
    out = Image.open(io.BytesIO(fitted.data))
    assert out.size == (fitted.width, fitted.height) and out.format == "JPEG"


async def test_fitting_keeps_alpha() -> None:
    noisy = raw_png(512, 512, noise=True, alpha=True)
    fitted = await fit_for_upload(noisy, 200_000)
    assert len(fitted.data) <= 200_000
    out = Image.open(io.BytesIO(fitted.data))
    assert fitted.mime in ("image/png", "image/webp") and out.mode == "RGBA"


async def test_fitting_prefers_webp_at_full_size_to_shrinking_a_png() -> None:
    grain = Image.effect_noise((64, 64), 60).resize((1024, 1024), Image.Resampling.BICUBIC)
    alpha = Image.linear_gradient("L").resize((1024, 1024))
    img = Image.merge("RGBA", (grain, grain.transpose(Image.Transpose.ROTATE_90), grain, alpha))
    data = encode(img, "PNG", compress_level=1)
    assert len(data) > 600_000
    fitted = await fit_for_upload(data, 600_000)
    assert (fitted.mime, fitted.ext, fitted.width, fitted.height) == ("image/webp", "webp", 1024, 1024)
    assert len(fitted.data) <= 600_000 and Image.open(io.BytesIO(fitted.data)).mode == "RGBA"


async def test_fitting_converts_formats_discord_should_not_get() -> None:
    fitted = await fit_for_upload(encode(solid((300, 200)), "BMP"), 10 * MIB)
    assert fitted.mime == "image/jpeg" and Image.open(io.BytesIO(fitted.data)).format == "JPEG"


async def test_fitting_refuses_an_impossible_limit() -> None:
    with pytest.raises(InputImageError, match="could not be made smaller"):
        await fit_for_upload(encode(solid((300, 200)), "BMP"), 50)


# --- render_placeholder -------------------------------------------------------------------------


def test_placeholder_is_deterministic_and_marked() -> None:
    first = render_placeholder("a red fox in the snow " * 30, 42, 512, 384)
    assert first == render_placeholder("a red fox in the snow " * 30, 42, 512, 384)
    assert first != render_placeholder("a red fox in the snow " * 30, 43, 512, 384)
    img = Image.open(io.BytesIO(first))
    assert img.format == "PNG" and img.size == (512, 384)
    assert img.text == {"kontext-bot": "sandbox"}  # type: ignore[attr-defined]
    # The gradient stays within 30..225 per channel: pure white can only be the drawn text.
    assert all(high == 255 for _, high in img.convert("RGB").getextrema())


def test_placeholder_blends_in_the_first_input_and_survives_garbage() -> None:
    plain = render_placeholder("edit", 7, 256, 256)
    photo = encode(solid((400, 300), (0, 0, 0)), "JPEG")
    with_input = render_placeholder("edit", 7, 256, 256, [photo])
    assert with_input != plain
    assert with_input == render_placeholder("edit", 7, 256, 256, [photo])
    centre = Image.open(io.BytesIO(with_input)).convert("RGB").getpixel((128, 128))
    assert max(centre) < max(Image.open(io.BytesIO(plain)).convert("RGB").getpixel((128, 128)))
    assert render_placeholder("edit", 7, 256, 256, [b"not an image"]) == plain


def test_a_combine_placeholder_shows_every_input() -> None:
    # Four inputs of four colours: each colour shows in its own column across the middle.
    colours = [(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]
    photos = [encode(solid((200, 200), c), "PNG") for c in colours]
    img = Image.open(io.BytesIO(render_placeholder("combine", 3, 512, 256, photos))).convert("RGB")
    for i, colour in enumerate(colours):
        pixel = img.getpixel((i * 128 + 64, 128))
        strongest = max(range(3), key=lambda c: pixel[c])
        assert colour[strongest] == 250, (i, pixel)
