"""The sandbox provider's output: a deterministic placeholder that says SANDBOX on its face.

Synchronous (Pillow drawing); callers on the event loop run it in a worker thread.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from bot.config import Limits
from bot.errors import InputImageError
from bot.images.codec import decode, identify, orient, to_rgb_or_rgba

log = logging.getLogger(__name__)

SANDBOX_MARK = ("kontext-bot", "sandbox")
_PLACEHOLDER_MAX_SIDE = 4096
_PROMPT_CHARS = 400


def render_placeholder(
    prompt: str, seed: int, width: int, height: int, inputs: Sequence[bytes] = ()
) -> bytes:
    """A deterministic PNG that says SANDBOX, shows prompt and seed over a seed-coloured gradient,
    with every input blended in side by side (a combine of four shows all four). Marked with the
    PNG text ``kontext-bot: sandbox``."""
    if not (1 <= width <= _PLACEHOLDER_MAX_SIDE and 1 <= height <= _PLACEHOLDER_MAX_SIDE):
        raise ValueError(f"placeholder size {width}x{height} out of range")
    rng = random.Random(seed)  # a local generator: same seed, same colours, no global state
    top = tuple(rng.randrange(30, 226) for _ in range(3))
    bottom = tuple(rng.randrange(30, 226) for _ in range(3))
    mask = Image.linear_gradient("L").resize((width, height), Image.Resampling.BILINEAR)
    img = Image.composite(
        Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), mask
    )

    for i, data in enumerate(inputs):
        _blend_thumbnail(img, data, i, len(inputs))

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


def _blend_thumbnail(canvas: Image.Image, data: bytes, index: int = 0, count: int = 1) -> None:
    """Blend a thumbnail of ``data`` into the ``index``-th of ``count`` equal columns across the
    canvas middle. A bad input is skipped, not fatal: the sandbox stands in for a provider, and
    validation happened before."""
    column = canvas.width // max(1, count)
    box = (max(1, min(column - 4, canvas.width // 2)), max(1, canvas.height // 2))
    try:
        identify(data, max_pixels=Limits().max_input_pixels)
        thumb, orientation = decode(data, draft_to=box)
    except InputImageError as exc:
        log.debug("sandbox input not drawn: %s", exc.user_message)
        return
    thumb = orient(to_rgb_or_rgba(thumb), orientation).convert("RGB")
    thumb.thumbnail(box, Image.Resampling.BICUBIC)
    x = index * column + (column - thumb.width) // 2
    y = (canvas.height - thumb.height) // 2
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
