"""Benchmark 3: the image pipeline.

Input path: a 12 MP camera JPEG (4000x3000, q90, EXIF orientation 6, ~3.4 MB) to the data URI a
provider gets, through ``bot.images.prepare_input`` (awaited, so its thread hop is included).
Baseline, same run, doing the same work: the plain Pillow way a seed user would write -- open,
apply the EXIF rotation (ImageOps.exif_transpose), convert("RGB"), resize to the same target size
(Pillow's default filter), encode in the bot's format and quality (JPEG q90 for an opaque photo),
base64. (An earlier baseline wrote PNG where the bot writes JPEG, which flattered the bot ~6x.)
Target (unchanged): the bot >= 3x faster.

Output path: a 4096x4096 provider result as PNG (photo content, ~38 MB) fitted under Discord's
10 MiB by ``bot.images.fit_for_upload``; and the same with an alpha channel. Encodes are counted by
wrapping ``PIL.Image.Image.save``. Target: under the limit in one or two encodes. Baseline: the
plain loop writing the bot's format (JPEG q90 when opaque, PNG with alpha) -- save, halve the pixel
count until it fits.

Peak memory: each path once in a fresh interpreter, RSS sampled every 5 ms on a thread (Pillow's
pixel buffers are C allocations tracemalloc cannot see), reported as the rise over the RSS before
the call, with the input bytes already loaded.

    python -m bench.images [--reps 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.common import (
    MB,
    Result,
    RssSampler,
    big_png,
    camera_jpeg,
    finite,
    median,
    print_results,
    rss_mb,
    run_worker,
)

UPLOAD_LIMIT = 10 * MB
MEMORY_CASES = ("input-bot", "input-plain", "output-bot", "output-bot-rgba")


# --- counting encodes --------------------------------------------------------------------------


@contextlib.contextmanager
def count_encodes() -> Iterator[list[str]]:
    """Every Image.save while active appends its format (worker threads included)."""
    from PIL import Image

    seen: list[str] = []
    lock = threading.Lock()
    original = Image.Image.save

    def save(img: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
        with lock:
            seen.append(str(format))
        original(img, fp, format, **params)

    Image.Image.save = save  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Image.Image.save = original  # type: ignore[method-assign]


# --- the two ways, input -----------------------------------------------------------------------


def bot_prepare(data: bytes) -> str:
    from bot import images
    from bot.config import Limits

    async def go() -> str:
        return (await images.prepare_input(data, Limits())).data_uri

    return asyncio.run(go())


def plain_prepare(data: bytes, max_side: int = 2048) -> str:
    """The same work as the bot, the plain way: full decode, rotate, resize, JPEG q90 (the bot's
    format and quality for an opaque photo), base64."""
    from PIL import Image, ImageOps

    from bot.images.codec import JPEG_QUALITY

    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    scale = max_side / max(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --- the two ways, output ----------------------------------------------------------------------


def bot_fit(data: bytes, limit: int = UPLOAD_LIMIT) -> tuple[int, str]:
    from bot import images

    async def go() -> tuple[int, str]:
        fitted = await images.fit_for_upload(data, limit)
        return len(fitted.data), f"{fitted.width}x{fitted.height} {fitted.ext}"

    return asyncio.run(go())


def plain_fit(data: bytes, limit: int = UPLOAD_LIMIT) -> tuple[int, str]:
    """Save in the bot's format (JPEG q90 when opaque, PNG with alpha), shrink until it fits."""
    from PIL import Image

    from bot.images.codec import JPEG_QUALITY

    img = Image.open(io.BytesIO(data))
    img.load()
    fmt = "PNG" if "A" in img.getbands() else "JPEG"
    if fmt == "JPEG":
        img = img.convert("RGB")
    while True:
        buf = io.BytesIO()
        img.save(buf, fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
        if buf.tell() <= limit:
            return buf.tell(), f"{img.width}x{img.height} {fmt.lower().replace('jpeg', 'jpg')}"
        img = img.resize((round(img.width / 2**0.5), round(img.height / 2**0.5)))


# --- measuring ---------------------------------------------------------------------------------


def timed(fn: Callable[[bytes], Any], data: bytes, reps: int) -> tuple[float, list[str], Any]:
    """One counted call (encodes, and a warm-up), then the median seconds of ``reps`` more."""
    with count_encodes() as seen:
        result = fn(data)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn(data)
        times.append(time.perf_counter() - t0)
    return median(times), seen, result


def timed_once(fn: Callable[[bytes], Any], data: bytes) -> tuple[float, list[str], Any]:
    """For the multi-second paths: one call, counted and timed."""
    with count_encodes() as seen:
        t0 = time.perf_counter()
        result = fn(data)
        seconds = time.perf_counter() - t0
    return seconds, seen, result


def memory_case(case: str) -> dict[str, float]:
    """Run one path once in this (fresh) process; peak RSS rise in MiB."""
    fns: dict[str, tuple[Callable[[bytes], Any], Callable[[], bytes]]] = {
        "input-bot": (bot_prepare, camera_jpeg),
        "input-plain": (plain_prepare, camera_jpeg),
        "output-bot": (bot_fit, big_png),
        "output-bot-rgba": (bot_fit, lambda: big_png(alpha=True)),
    }
    fn, load = fns[case]
    data = load()
    import PIL.Image  # noqa: F401

    import bot.images  # noqa: F401 - imports are not the operation's memory

    before = rss_mb()
    with RssSampler() as sampler:
        fn(data)
    return {"before_mb": before, "peak_mb": sampler.peak, "rise_mb": sampler.peak - before}


def measure(reps: int = 5, memory: bool = True) -> dict[str, Any]:
    jpeg = camera_jpeg()
    png, rgba = big_png(), big_png(alpha=True)
    bot_in, in_encodes, bot_uri = timed(bot_prepare, jpeg, reps)
    plain_in, _, plain_uri = timed(plain_prepare, jpeg, max(1, reps // 2))
    bot_out, out_encodes, bot_res = timed(bot_fit, png, max(1, reps // 2))
    bot_rgba, rgba_encodes, rgba_res = timed_once(bot_fit, rgba)
    plain_out, plain_encodes, plain_res = timed_once(plain_fit, png)
    mem = {case: run_worker("bench.images", ["--memory", case]) for case in MEMORY_CASES} if memory else {}
    return {
        "input": {
            "bytes": len(jpeg),
            "bot_s": bot_in,
            "plain_s": plain_in,
            "bot_uri_mb": len(bot_uri) / MB,
            "plain_uri_mb": len(plain_uri) / MB,
            "bot_encodes": in_encodes,
        },
        "output": {
            "bytes": len(png),
            "bot_s": bot_out,
            "bot_result": bot_res,
            "bot_encodes": out_encodes,
            "plain_s": plain_out,
            "plain_result": plain_res,
            "plain_encodes": plain_encodes,
        },
        "output_rgba": {
            "bytes": len(rgba),
            "bot_s": bot_rgba,
            "bot_result": rgba_res,
            "encodes": rgba_encodes,
        },
        "memory": mem,
    }


def _mem(m: dict[str, Any], case: str) -> str:
    got = m["memory"].get(case)
    return f"peak RSS +{got['rise_mb']:.0f} MiB" if got else "memory not measured"


def results(m: dict[str, Any]) -> list[Result]:
    i, o, a = m["input"], m["output"], m["output_rgba"]
    speedup = i["plain_s"] / i["bot_s"]
    return [
        Result(
            "image input 12 MP JPEG -> data URI",
            i["bot_s"] * 1000,
            "ms",
            i["plain_s"] * 1000,
            "plain Pillow",
            "ratio <= 0.333 (>= 3x faster)",
            speedup >= 3,
            f"{speedup:.1f}x faster; input {i['bytes'] / MB:.1f} MiB; URI {i['bot_uri_mb']:.2f} MiB "
            f"(plain JPEG {i['plain_uri_mb']:.2f} MiB); encodes {i['bot_encodes']}; "
            f"bot {_mem(m, 'input-bot')}, plain {_mem(m, 'input-plain')}",
        ),
        Result(
            "image output 4096² PNG -> <= 10 MiB: encodes",
            len(o["bot_encodes"]),
            "",
            len(o["plain_encodes"]),
            "plain loop, same format",
            "<= 2 encodes",
            len(o["bot_encodes"]) <= 2,
            f"{o['bot_s'] * 1000:.0f} ms vs plain {o['plain_s'] * 1000:.0f} ms; "
            f"input {o['bytes'] / MB:.1f} MiB -> {o['bot_result'][0] / MB:.2f} MiB {o['bot_result'][1]} "
            f"via {o['bot_encodes']} "
            f"(plain: {o['plain_result'][0] / MB:.2f} MiB {o['plain_result'][1]}); {_mem(m, 'output-bot')}",
        ),
        Result(
            "image output 4096² PNG -> <= 10 MiB: time",
            o["bot_s"] * 1000,
            "ms",
            o["plain_s"] * 1000,
            "plain loop, same format",
            "info",
            None,
        ),
        Result(
            "image output 4096² RGBA PNG: encodes",
            len(a["encodes"]),
            "",
            None,
            "—",
            "<= 2 encodes",
            len(a["encodes"]) <= 2,
            f"{a['bot_s'] * 1000:.0f} ms; input {a['bytes'] / MB:.1f} MiB -> "
            f"{a['bot_result'][0] / MB:.2f} MiB {a['bot_result'][1]} via {a['encodes']}; "
            f"{_mem(m, 'output-bot-rgba')}",
        ),
    ]


def run(reps: int = 5, memory: bool = True) -> list[Result]:
    m = measure(reps, memory)
    assert finite(m["input"]["bot_s"], m["input"]["plain_s"], m["output"]["bot_s"])
    return results(m)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.images", description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--memory", choices=MEMORY_CASES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory:
        print(json.dumps(memory_case(args.memory)))
    else:
        print_results(run(args.reps))


if __name__ == "__main__":
    main()
