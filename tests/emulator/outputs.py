"""Result images: rendering them, the file store behind the result links, and the file server.

``GET /files/<id>.png | <id>.jpg`` needs no auth, like a provider's CDN. The image's colour follows
the seed, so the same seed gives the same bytes. File faults (expired_output, not_image,
huge_output) hit downloads of that provider's files.
"""

from __future__ import annotations

import asyncio
import base64
import io
import random
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from PIL import Image

from tests.emulator.base import Api
from tests.emulator.faults import FILE, HTML

B64_PREFIX = "data:image/png;base64,"
PALETTE = (  # result colours: the seed picks one, so a repeated seed repeats the bytes
    (230, 57, 70), (42, 157, 143), (233, 196, 106), (38, 70, 83),
    (244, 162, 97), (69, 123, 157), (168, 218, 220), (106, 76, 147),
)  # fmt: skip


def make_png(width: int = 32, height: int = 32, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small real PNG, for inputs in tests."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _render(size: tuple[int, int], fmt: str, color: tuple[int, int, int], noise: bool) -> bytes:
    if noise:  # incompressible pixels, so size-limit code meets realistic byte counts
        pixels = random.Random(size[0] * 7919 + size[1]).randbytes(size[0] * size[1] * 3)
        image = Image.frombytes("RGB", size, pixels)
    else:
        image = Image.new("RGB", size, color)
        image.paste((255, 255, 255), (0, 0, max(1, size[0] // 4), max(1, size[1] // 4)))
    buf = io.BytesIO()
    image.save(buf, "PNG" if fmt == "png" else "JPEG", **({"quality": 90} if fmt == "jpeg" else {}))
    return buf.getvalue()


@dataclass(frozen=True)
class _File:
    provider: str
    fmt: Literal["png", "jpeg"]
    color: int
    size: tuple[int, int]


class Outputs(Api):
    """The result files of every provider, and ``GET /files/<name>`` serving them."""

    provider = "files"
    prefix = "/files/"

    def __init__(self, emu: Any) -> None:
        super().__init__(emu)
        self._files: dict[str, _File] = {}
        self._renders: dict[tuple[Any, ...], bytes] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/files/{name}", self._serve)]

    def new_file(self, provider: str, fmt: Literal["png", "jpeg"], color: int) -> str:
        """Register a result image and return its public link."""
        file_id = uuid.uuid4().hex
        width, height = self.emu.output_size
        self._files[file_id] = _File(provider, fmt, color, (width, height))
        return f"{self.emu.url}/files/{file_id}.{'png' if fmt == 'png' else 'jpg'}"

    async def image_bytes(self, fmt: str, color: int, size: tuple[int, int] | None = None) -> bytes:
        size = size or (self.emu.output_size[0], self.emu.output_size[1])
        noise = self.emu.output_noise
        key = (fmt, size, noise, 0 if noise else color)
        data = self._renders.get(key)
        if data is None:  # rendered once per key, off the loop: benches fetch thousands of outputs
            data = await asyncio.to_thread(_render, size, fmt, PALETTE[color], noise)
            self._renders[key] = data
        return data

    async def b64_image(self, color: int) -> str:
        return base64.b64encode(await self.image_bytes("png", color)).decode("ascii")

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        file_id, _, ext = request.match_info["name"].partition(".")
        info = self._files.get(file_id)
        if info is None or ext != ("png" if info.fmt == "png" else "jpg"):
            return web.Response(status=404, text="Not Found")
        fault = self.emu.faults.take(info.provider, FILE)
        kind, opts = (fault.kind, fault.options) if fault else (None, {})
        if kind == "expired_output":
            xml = "<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>expired</Message></Error>"
            return web.Response(status=int(opts.get("status", 404)), text=xml, content_type="application/xml")
        if kind == "not_image":
            return web.Response(body=HTML, content_type="image/png")
        if kind == "huge_output":
            return await self._stream_huge(request, opts)
        data = await self.image_bytes(info.fmt, info.color, info.size)
        return web.Response(body=data, content_type=f"image/{info.fmt}")

    async def _stream_huge(self, request: web.Request, opts: dict[str, Any]) -> web.StreamResponse:
        total = int(float(opts.get("size_mb", 60)) * 1024 * 1024)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if opts.get("declare_length", True):
            response.content_length = total
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        zeros = bytes(1024 * 1024)
        piece = b"\x89PNG\r\n\x1a\n" + zeros[8:]  # looks like a PNG to a sniffer, then is just big
        sent = 0
        try:
            while sent < total and not self.emu.stopping:
                piece = piece[: total - sent]
                await response.write(piece)
                sent += len(piece)
                piece = zeros
            await response.write_eof()
        except ConnectionError:  # the client stopped reading once it saw enough: that is the point
            pass
        return response
