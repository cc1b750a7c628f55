"""The built-in sandbox provider: every model, on this machine, free, no network.

It lets a new server owner try every command before paying anyone. Its images are rendered
locally (``bot.images.render_placeholder``), say SANDBOX on their face and carry a PNG text tag,
so nobody mistakes them for a model's work.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
from concurrent.futures import Executor

from bot import images
from bot.providers.base import GenerationRequest, OutputImage, ProviderOutput

NAME = "sandbox"
BASE_SIDE = 512  # small on purpose: it is a placeholder, and fast to render


def output_size(params: dict) -> tuple[int, int]:
    size = params.get("size")
    if isinstance(size, str) and "x" in size:
        w, h = (int(x) for x in size.split("x"))
        scale = BASE_SIDE / max(w, h)
        return max(64, int(w * scale)), max(64, int(h * scale))
    ratio = params.get("aspect_ratio") or "1:1"
    rw, rh = (int(x) for x in ratio.split(":"))
    if rw >= rh:
        return BASE_SIDE, max(64, BASE_SIDE * rh // rw)
    return max(64, BASE_SIDE * rw // rh), BASE_SIDE


def _decode_data_uri(uri: str) -> bytes | None:
    if not uri.startswith("data:"):
        return None
    try:
        return base64.b64decode(uri.split(",", 1)[1], validate=True)
    except (binascii.Error, IndexError):
        return None


def _render_all(req: GenerationRequest) -> tuple[OutputImage, ...]:
    params = dict(req.params)
    seed = int(params.get("seed", -1))
    if seed < 0:
        seed = random.randrange(2**31)
    width, height = output_size(params)
    inputs = [b for b in (_decode_data_uri(u) for u in req.images) if b is not None]
    count = int(params.get("n", 1) or 1)
    out = []
    for i in range(count):
        data = images.render_placeholder(req.prompt, seed + i, width, height, inputs)
        out.append(OutputImage(data=data, mime="image/png", width=width, height=height))
    return tuple(out)


async def run(req: GenerationRequest, executor: Executor | None = None) -> ProviderOutput:
    rendered = await asyncio.get_running_loop().run_in_executor(executor, _render_all, req)
    return ProviderOutput(
        images=rendered,
        task_id=None,
        cost_usd="0",
        seed=int(req.params.get("seed", -1)),
        provider=NAME,
    )
