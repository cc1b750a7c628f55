"""Hostile input through the real command paths: JobService (what every face calls), the CLI
``kontext-bot generate`` in a subprocess, and /edit through the fake Discord. Each input gets a
clear refusal or a safe result; nothing crashes and nothing is charged for a refusal.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

import storage
from bot import images
from bot.config import Limits
from bot.errors import UserError
from bot.jobs import JobRequest
from tests.e2e.conftest import MEMBER as DISCORD_MEMBER
from tests.e2e.conftest import OTHER as DISCORD_OTHER
from tests.emulator import ProviderEmulator, make_png
from tests.reliability.conftest import FREE_MODEL, GUILD, MEMBER, books, open_stack, run_cli, stack_env

MB = 1024 * 1024
PNG = make_png(256, 256)
NOT_AN_IMAGE = "This file is not an image (PNG, JPEG, WEBP, BMP or GIF)."
DAMAGED = "This image looks damaged: it could not be read to the end. Save it again and retry."


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims ``width`` x ``height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (200, 200), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


REFUSED = {
    "html-named-png": (b"<!DOCTYPE html><html><body>not a cat</body></html>", NOT_AN_IMAGE),
    "script-named-jpg": (b"#!/bin/sh\nrm -rf /\n", NOT_AN_IMAGE),
    "pdf-named-png": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "PDF images are not supported"),
    "empty": (b"", "This file is empty."),
    "truncated-png": (PNG[: len(PNG) // 2], DAMAGED),
    "corrupt-png": (PNG[:60] + b"\x00" * 300 + PNG[360:], DAMAGED),
    "truncated-jpeg": (encode(Image.new("RGB", (300, 300), "red"), "JPEG")[:200], DAMAGED),
    "bomb-900-megapixels": (png_header_bomb(30_000, 30_000), "This image is too large"),
    "bomb-48-megapixels": (encode(Image.new("1", (8000, 6000)), "PNG"), "48.0 megapixels; the limit is 40"),
    "60-mb": (b"\x89PNG\r\n\x1a\n" + bytes(60 * MB), "This image is larger than 25 MB."),
    "aspect-10-to-1": (make_png(1000, 100), "the models accept at most 4:1"),
}
SAFE = {
    "animated-gif": animated_gif(),
    "cmyk-jpeg": encode(Image.new("CMYK", (300, 200), (0, 255, 255, 0)), "JPEG"),
    "16-bit-png": encode(Image.new("I;16", (300, 200), 40_000), "PNG"),
    "palette-with-transparency": encode(Image.new("P", (200, 200), 3), "PNG", transparency=3),
}


def edit(
    images: list[bytes] | None = None, prompt: str = "make the sky purple", **params: object
) -> JobRequest:
    return JobRequest(
        model=FREE_MODEL,
        prompt=prompt,
        images=[PNG] if images is None else images,
        params=params,
        user_id=MEMBER,
        guild_id=GUILD,
        source="slash",
    )


async def assert_nothing_happened(svc, emulator: ProviderEmulator) -> None:
    assert await svc.jobs.history(MEMBER, GUILD) == []  # refused before anything was recorded
    assert emulator.requests == []
    b = await books(svc)
    assert b.problems == [] and b.free_used == {} and b.guild_spent == 0


@pytest.mark.parametrize("name", REFUSED)
async def test_bad_input_images_are_refused_before_anything_is_recorded(
    name: str, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    data, told = REFUSED[name]
    async with open_stack(emulator, tmp_path) as svc:
        with pytest.raises(UserError) as info:
            await svc.jobs.run(edit([data]))
        assert told in info.value.user_message
        assert info.value.code == "bad_image"
        await assert_nothing_happened(svc, emulator)


@pytest.mark.parametrize("name", SAFE)
async def test_odd_but_valid_images_are_normalised_for_the_provider(
    name: str, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    async with open_stack(emulator, tmp_path) as svc:
        result = await svc.jobs.run(edit([SAFE[name]]))
        assert result.status == "succeeded" and result.charged_to == "free"
        (call,) = [r for r in emulator.requests if r.provider == "modelverse"]
        sent = call.json["image"]
        header, _, b64 = sent.partition(",")
        assert header in ("data:image/jpeg;base64", "data:image/png;base64")
        with Image.open(io.BytesIO(base64.b64decode(b64))) as img:  # one plain 8-bit frame
            assert img.mode in ("RGB", "RGBA") and getattr(img, "n_frames", 1) == 1
        assert (await books(svc)).problems == []


async def test_a_10000_character_prompt_is_refused(emulator: ProviderEmulator, tmp_path: Path) -> None:
    async with open_stack(emulator, tmp_path) as svc:
        with pytest.raises(UserError) as info:
            await svc.jobs.run(edit(prompt="a" * 10_000))
        assert info.value.user_message == (
            f"The prompt is 10000 characters; {FREE_MODEL} takes at most 2000."
        )
        with pytest.raises(UserError, match="negative_prompt is limited to 2000"):
            await svc.jobs.run(edit(negative_prompt="b" * 10_000))
        await assert_nothing_happened(svc, emulator)


CONTROL = "paint \x00it\x07 red\x1b[2J\x1b]0;pwned\x07 now\r\nplease\u202eevil\u200b\ufeff"
SQL = "Robert'); DROP TABLE jobs; DELETE FROM ledger WHERE '1'='1' --"


@pytest.mark.parametrize(
    "prompt", [CONTROL, SQL, "\U0001f600 ünïcødé 中文 " * 50], ids=["control", "sql", "unicode"]
)
async def test_strange_prompts_are_sent_and_stored_verbatim(
    prompt: str, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    async with open_stack(emulator, tmp_path) as svc:
        result = await svc.jobs.run(edit(prompt=prompt, negative_prompt=SQL))
        stored = await svc.jobs.get(result.job_id)
        assert stored.prompt == prompt.strip() and stored.params["negative_prompt"] == SQL
        (call,) = [r for r in emulator.requests if r.provider == "modelverse"]
        assert call.json["prompt"] == prompt.strip() and call.json["negative_prompt"] == SQL
        b = await books(svc)
        assert b.problems == [] and b.free_used == {FREE_MODEL: 1} and b.succeeded == 1
        # Looking things up by hostile text finds nothing and breaks nothing.
        assert await svc.jobs.get("' OR '1'='1") is None
        with pytest.raises(UserError, match="No job"):
            await svc.accounts.refund("x' OR 1=1; --")
        assert len(await svc.jobs.history(MEMBER, GUILD)) == 1


PRIVATE = "Links to private or local network addresses are refused"
PRIVATE_LINKS = [
    "http://127.0.0.1/x.png",
    "http://127.1/x.png",
    "http://2130706433/x.png",
    "http://0x7f000001/x.png",
    "http://0.0.0.0/x.png",
    "http://localhost/x.png",
    "http://10.0.0.8/x.png",
    "http://172.16.5.4/x.png",
    "http://192.168.1.1/x.png",
    "http://100.64.0.1/x.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/x.png",
    "http://[::ffff:127.0.0.1]/x.png",
    "http://[::ffff:169.254.169.254]/x.png",
    "http://[64:ff9b::a9fe:a9fe]/x.png",
    "http://[fe80::1]/x.png",
    "http://[fd00::1]/x.png",
]


@pytest.mark.parametrize("url", PRIVATE_LINKS)
async def test_image_links_to_private_addresses_are_refused(url: str, emulator: ProviderEmulator) -> None:
    """``--image URL`` goes through images.load_source: every spelling of a private address."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(UserError) as info:
            await images.load_source(url, http, Limits())
    assert info.value.user_message.startswith(PRIVATE)


# --- the CLI --------------------------------------------------------------------------------------


async def test_cli_refuses_hostile_files_links_and_prompts(
    emulator: ProviderEmulator, tmp_path: Path
) -> None:
    env = stack_env(emulator.env(), tmp_path)
    async with open_stack(emulator, tmp_path):  # the database exists before the commands race to open it
        pass
    files = {name: tmp_path / f"{name}.png" for name in ("html", "truncated", "bomb", "huge")}
    files["html"].write_bytes(REFUSED["html-named-png"][0])
    files["truncated"].write_bytes(REFUSED["truncated-png"][0])
    files["bomb"].write_bytes(REFUSED["bomb-900-megapixels"][0])
    files["huge"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(60 * MB))
    cases = {
        "html": ([str(files["html"])], NOT_AN_IMAGE),
        "truncated": ([str(files["truncated"])], DAMAGED),
        "bomb": ([str(files["bomb"])], "This image is too large"),
        "huge": ([str(files["huge"])], "is larger than 25 MB."),
        "directory": ([str(tmp_path)], "is a directory, not an image."),
        "loopback": ([f"{emulator.url}/files/secret.png"], f"{PRIVATE} (127.0.0.1)."),
        "ten-net": (["http://10.1.2.3/x.png"], f"{PRIVATE} (10.1.2.3)."),
        "metadata": (["http://169.254.169.254/latest/meta-data/iam/"], f"{PRIVATE} (169.254.169.254)."),
        "file-scheme": (["file:///etc/passwd"], "Only http:// and https:// image links are accepted."),
        "with-credentials": (["http://admin:hunter2@127.0.0.1/x.png"], f"{PRIVATE} (127.0.0.1)."),
    }
    (tmp_path / "ok.png").write_bytes(PNG)

    async def generate(images: list[str], prompt: str = "make it blue") -> object:
        args = ["generate", "--model", FREE_MODEL, "--prompt", prompt, "--user", str(MEMBER)]
        args += ["--guild", str(GUILD), "--out", str(tmp_path / "out")]
        for image in images:
            args += ["--image", image]
        return await run_cli(env, *args)

    names = list(cases)
    *runs, long_prompt = await asyncio.gather(
        *(generate(cases[n][0]) for n in names), generate([str(tmp_path / "ok.png")], prompt="a" * 10_000)
    )
    for name, run in zip(names, runs, strict=True):
        assert run.code == 1, (name, run)
        assert run.out == ""
        line = run.err.strip()
        assert line.startswith("kontext-bot: ") and cases[name][1] in line, (name, line)
        assert "\n" not in line and "Traceback" not in run.err  # one clear line
        assert "hunter2" not in run.err
    assert long_prompt.code == 2  # a catalog rule broken as typed: bad usage
    assert (
        long_prompt.err.strip()
        == f"kontext-bot: The prompt is 10000 characters; {FREE_MODEL} takes at most 2000."
    )
    assert emulator.requests == []  # no link was fetched, not even the loopback one that exists
    async with open_stack(emulator, tmp_path, budget=None) as svc:
        await assert_nothing_happened(svc, emulator)


async def test_cli_stores_sql_looking_text_verbatim(emulator: ProviderEmulator, tmp_path: Path) -> None:
    env = stack_env(emulator.env(), tmp_path)
    image = tmp_path / "in.png"
    image.write_bytes(PNG)
    run = await run_cli(
        env, "generate", "--model", FREE_MODEL, "--prompt", SQL, "--negative-prompt", SQL,
        "--image", str(image), "--user", str(MEMBER), "--guild", str(GUILD),
        "--out", str(tmp_path / "out"), "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    job_id = json.loads(run.out)["job_id"]
    async with open_stack(emulator, tmp_path, budget=None) as svc:
        job = await svc.jobs.get(job_id)
        assert job.prompt == SQL and job.params["negative_prompt"] == SQL
        assert await storage.check(svc.db) == []
    usage = await run_cli(env, "usage", "--guild", str(GUILD), "--format", "json")
    assert usage.code == 0 and json.loads(usage.out)[0]["succeeded"] == 1


# --- Discord -------------------------------------------------------------------------------------


def _no_pings(message) -> bool:
    am = message.allowed_mentions
    return am is not None and am.get("parse") == [] and not am.get("roles") and not am.get("users")


async def test_discord_edit_never_pings_everyone_roles_or_users(
    make_stack, emulator: ProviderEmulator
) -> None:
    stack = await make_stack(emulator)
    prompt = f"@everyone @here <@&777> <@{DISCORD_OTHER}> <@!{DISCORD_OTHER}> look: {SQL}"
    rec = await stack.fake.slash(
        "edit", {"prompt": prompt}, user_id=DISCORD_MEMBER, attachments={"image": stack.png()}
    )
    await rec.wait_for("files", timeout=20)
    sent = [m for m in stack.fake.messages.values() if m.allowed_mentions is not None or m.content]
    assert sent, "the bot posted nothing"
    for message in stack.fake.messages.values():
        assert _no_pings(message), (message.content, message.allowed_mentions)
    job_id = rec.original.custom_ids[0].rsplit(":", 1)[1]
    assert (await stack.svc.jobs.get(job_id)).prompt == prompt
    assert await storage.check(stack.svc.db) == []


@pytest.mark.parametrize(
    ("data", "told"),
    [
        (REFUSED["html-named-png"][0], NOT_AN_IMAGE),
        (b"\x89PNG\r\n\x1a\n" + bytes(60 * MB), "the limit is 25 MB"),
    ],
    ids=["not-an-image", "60-mb"],
)
async def test_discord_edit_refuses_bad_attachments_privately(
    make_stack,
    emulator: ProviderEmulator,
    data: bytes,
    told: str,
) -> None:
    stack = await make_stack(emulator)
    attachment = stack.fake.add_attachment("cat.png", data, "image/png")
    rec = await stack.fake.slash(
        "edit", {"prompt": "hat"}, user_id=DISCORD_MEMBER, attachments={"image": attachment}
    )
    await rec.wait_for(lambda r: any(told in m.content for m in r.messages), timeout=20)
    (message,) = [m for m in rec.messages if told in m.content]
    # Refused before anything was recorded: a reference to quote, and no word about money.
    assert (
        message.ephemeral and f"(reference {rec.id})" in message.content and "charged" not in message.content
    )
    assert await stack.svc.jobs.history(DISCORD_MEMBER, stack.fake.guild_id) == []
    assert [r for r in emulator.requests if r.provider != "files"] == []
