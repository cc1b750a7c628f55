"""The fake Discord drives the real discord.py client: login, gateway, commands, components, modals.

A tiny commands.Bot lives in this file; every test talks to it only through the fake, the way Discord
would. Nothing sleeps: tests wait on the fake's records or on futures the bot resolves.

The second half is what a bot spread over processes needs (issue 13): gateway shards (GET
/gateway/bot, IDENTIFY ``shard``, each guild's events on its shard, DMs on shard 0) with the real
``AutoShardedBot``, delivery from a ``Client`` that only logged in (the interaction webhook by token,
channel messages by bot token, the token's 15 minutes, 429s with ``Via``), and the counters the
scale tests assert on (edits per message, calls per second).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import re
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fake_discord import FakeDiscord, guild_on_shard, shard_of

USER_ID = 4242
ARTIST_ROLE = 777
PNG = b"\x89PNG\r\n\x1a\n" + b"fake-image-bytes" * 8


class JobButton(discord.ui.DynamicItem[discord.ui.Button], template=r"job:(?P<job_id>\d+):rerun"):
    """Survives restarts: the job id lives in the custom_id, not in process memory."""

    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Re-run", custom_id=f"job:{job_id}:rerun"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> JobButton:
        return cls(int(match["job_id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"re-running job {self.job_id}", ephemeral=True)


class PromptModal(discord.ui.Modal, title="Describe the edit"):
    prompt = discord.ui.TextInput(label="Prompt", custom_id="prompt")

    def __init__(self) -> None:
        super().__init__(custom_id="prompt-modal")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"prompt={self.prompt.value}")


class TinyBot(commands.Bot):
    """Just enough of a bot to exercise every path the real one needs."""

    def __init__(self, guild_id: int) -> None:
        # guild_ready_timeout: on_ready fires that long after the last GUILD_CREATE; keep tests quick.
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
        )
        self.guild_obj = discord.Object(guild_id)
        self.release = asyncio.Event()  # lets a test expire the token while the command waits
        self.errors: asyncio.Queue[BaseException] = asyncio.Queue()
        self._add_commands()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(JobButton)

    def _add_commands(self) -> None:
        guild = self.guild_obj

        @self.tree.command(name="edit", description="Edit an image", guild=guild)
        @app_commands.describe(image="The image to edit", prompt="What to change")
        async def edit(interaction: discord.Interaction, image: discord.Attachment, prompt: str) -> None:
            await interaction.response.defer(thinking=True)
            data = await image.read()  # read at once: CDN links expire
            view = discord.ui.View(timeout=None).add_item(JobButton(7))
            await interaction.edit_original_response(
                content=f"{prompt}: {interaction.channel.nsfw}",  # type: ignore[union-attr]
                attachments=[discord.File(io.BytesIO(data[::-1]), "out.png")],
                view=view,
                allowed_mentions=discord.AllowedMentions.none(),
            )

        @self.tree.command(name="slow", description="Deliver after the token expired", guild=guild)
        async def slow(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self.release.wait()
            try:
                await interaction.edit_original_response(content="done")
            except discord.HTTPException as exc:
                await self.errors.put(exc)
                # The fallback a long job must take: a channel message that mentions the user.
                await interaction.channel.send(f"{interaction.user.mention} done")  # type: ignore[union-attr]

        @self.tree.command(name="big", description="Upload too much", guild=guild)
        async def big(interaction: discord.Interaction, size: int) -> None:
            await interaction.response.defer()
            try:
                await interaction.followup.send(file=discord.File(io.BytesIO(b"x" * size), "big.png"))
            except discord.HTTPException as exc:
                await self.errors.put(exc)

        @self.tree.command(name="describe", description="Open a modal", guild=guild)
        async def describe(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(PromptModal())

        async def model_choices(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            models = ["flux-kontext-pro", "flux-kontext-max", "seedream"]
            return [app_commands.Choice(name=m, value=m) for m in models if current in m]

        @self.tree.command(name="create", description="Create from text", guild=guild)
        @app_commands.autocomplete(model=model_choices)
        async def create(
            interaction: discord.Interaction, model: str, steps: app_commands.Range[int, 1, 50] = 20
        ) -> None:
            await interaction.response.send_message(f"{model} {steps}")

        admin = app_commands.Group(name="kontext-admin", description="Admin tools", guild_ids=[guild.id])

        @admin.command(name="budget", description="Set the server budget")
        async def budget(interaction: discord.Interaction, usd: int) -> None:
            await interaction.response.send_message(f"budget {usd}", ephemeral=True)

        self.tree.add_command(admin)

        @self.tree.context_menu(name="Edit with Kontext", guild=guild)
        async def edit_menu(interaction: discord.Interaction, message: discord.Message) -> None:
            data = await message.attachments[0].read()
            await interaction.response.send_message(
                f"got {len(data)} bytes", file=discord.File(io.BytesIO(data), "copy.png")
            )


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as fake:
        fake.add_role(ARTIST_ROLE, "artist", permissions=0)
        fake.add_member(USER_ID, name="alice", roles=[ARTIST_ROLE])
        restore = fake.configure_discord_py()
        try:
            yield fake
        finally:
            restore()


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[TinyBot]:
    bot = TinyBot(fake.guild_id)
    runner = asyncio.create_task(bot.start(fake.token))
    await fake.wait_ready(timeout=5)
    await bot.tree.sync(guild=bot.guild_obj)
    yield bot
    await bot.close()
    await asyncio.wait_for(runner, 5)  # a clean shutdown returns instead of raising


async def test_login_ready_and_sync(fake: FakeDiscord, bot: TinyBot) -> None:
    await asyncio.wait_for(bot.wait_until_ready(), 5)
    assert bot.user is not None and bot.user.id == fake.bot_user_id
    assert bot.application_id == fake.app_id
    guild = bot.get_guild(fake.guild_id)
    assert guild is not None and guild.get_channel(fake.nsfw_channel_id).nsfw  # type: ignore[union-attr]
    names = {c["name"] for c in fake.registered_commands}
    assert {"edit", "slow", "kontext-admin", "Edit with Kontext"} <= names
    assert all(c["guild_id"] == str(fake.guild_id) for c in fake.registered_commands)
    # Re-syncing keeps ids stable, as Discord does for unchanged names.
    ids = {c["name"]: c["id"] for c in fake.registered_commands}
    synced = await bot.tree.sync(guild=bot.guild_obj)
    assert {c.name: str(c.id) for c in synced} == ids
    assert fake.identify_payloads[0]["intents"] == discord.Intents.default().value


async def test_slash_defer_then_edit_with_file_and_button(fake: FakeDiscord, bot: TinyBot) -> None:
    att = fake.add_attachment("cat.png", PNG, "image/png")
    rec = await fake.slash(
        "edit",
        {"prompt": "hat"},
        user_id=USER_ID,
        channel_id=fake.nsfw_channel_id,
        attachments={"image": att},
    )
    await rec.wait_for("files")
    assert rec.callback_type == 5 and not rec.ephemeral
    assert rec.original is not None and rec.original.content == "hat: True"
    assert [(f.filename, f.data) for f in rec.files] == [("out.png", PNG[::-1])]
    assert rec.original.allowed_mentions == {"parse": []}
    assert rec.original.custom_ids == ["job:7:rerun"]
    # The uploaded output is served back like a CDN attachment.
    async with aiohttp.ClientSession() as http, http.get(rec.files[0].attachment["url"]) as resp:
        assert await resp.read() == PNG[::-1]

    click = await fake.click(rec, "job:7:rerun", user_id=USER_ID)
    await click.wait_for("responded")
    assert click.callback_type == 4 and click.ephemeral and click.original is not None
    assert click.original.content == "re-running job 7"


async def test_modal_submit(fake: FakeDiscord, bot: TinyBot) -> None:
    opened = await fake.slash("describe", user_id=USER_ID)
    await opened.wait_for("modal")
    assert opened.modal is not None and opened.modal["title"] == "Describe the edit"
    submitted = await fake.submit_modal("prompt-modal", {"prompt": "add a hat"}, user_id=USER_ID)
    await submitted.wait_for("responded")
    assert submitted.original is not None and submitted.original.content == "prompt=add a hat"


async def test_message_context_menu_reads_attachment(fake: FakeDiscord, bot: TinyBot) -> None:
    att = fake.add_attachment("dog.png", PNG, "image/png")
    message = fake.post_user_message(USER_ID, content="look", attachments=[att])
    rec = await fake.context_menu("Edit with Kontext", message, user_id=USER_ID)
    await rec.wait_for("files")
    assert rec.original is not None and rec.original.content == f"got {len(PNG)} bytes"
    assert rec.files[0].data == PNG


async def test_expired_token_surfaces_as_http_exception(fake: FakeDiscord, bot: TinyBot) -> None:
    rec = await fake.slash("slow", user_id=USER_ID)
    await rec.wait_for("deferred")
    assert rec.ephemeral
    fake.expire_token(rec.token)
    bot.release.set()
    exc = await asyncio.wait_for(bot.errors.get(), 5)
    assert isinstance(exc, discord.HTTPException) and (exc.status, exc.code) == (401, 50027)
    await rec.wait_for("error")
    sent = await fake.wait_for_message(lambda m: m.content.endswith(" done") and m.interaction_id is None)
    assert sent.content == f"<@{USER_ID}> done" and sent.channel_id == fake.channel_id


async def test_upload_limit_answers_413(fake: FakeDiscord, bot: TinyBot) -> None:
    fake.upload_limit = 1000
    rec = await fake.slash("big", {"size": 2000}, user_id=USER_ID)
    exc = await asyncio.wait_for(bot.errors.get(), 5)
    assert isinstance(exc, discord.HTTPException) and (exc.status, exc.code) == (413, 40005)
    assert rec.payload["attachment_size_limit"] == 1000
    ok = await fake.slash("big", {"size": 500}, user_id=USER_ID)
    await ok.wait_for("files")
    # The first follow-up after a thinking defer replaces the loading message, as on Discord.
    assert ok.original is not None and not ok.original.loading and not ok.followups


async def test_autocomplete_group_and_option_checks(fake: FakeDiscord, bot: TinyBot) -> None:
    choices = await fake.autocomplete("create", {"model": "kontext"}, "model", user_id=USER_ID)
    assert [c["value"] for c in choices] == ["flux-kontext-pro", "flux-kontext-max"]
    rec = await fake.slash("create", {"model": "seedream", "steps": 4}, user_id=USER_ID)
    await rec.wait_for("responded")
    assert rec.original is not None and rec.original.content == "seedream 4"
    admin = await fake.slash("kontext-admin budget", {"usd": 25}, user_id=fake.owner_id)
    await admin.wait_for("responded")
    assert admin.original is not None and admin.original.content == "budget 25" and admin.ephemeral
    with pytest.raises(ValueError, match="outside"):
        await fake.slash("create", {"model": "x", "steps": 99}, user_id=USER_ID)
    with pytest.raises(LookupError):
        await fake.slash("nope", user_id=USER_ID)


async def test_rest_details(fake: FakeDiscord, bot: TinyBot) -> None:
    headers = {"Authorization": f"Bot {fake.token}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{fake.api_base}/users/@me", headers=headers) as resp:
            assert resp.headers["Content-Type"] == "application/json"  # no charset: discord.py needs this
        async with http.get(f"{fake.api_base}/users/@me") as resp:
            assert resp.status == 401
    channel = await bot.fetch_channel(fake.nsfw_channel_id)
    assert isinstance(channel, discord.TextChannel) and channel.nsfw
    sent = await channel.send("hi", files=[discord.File(io.BytesIO(PNG), f"{i}.png") for i in range(3)])
    edited = await sent.edit(content="bye", attachments=sent.attachments[:1])
    assert [a.filename for a in edited.attachments] == ["0.png"]
    assert fake.messages[sent.id].edits == 1 and fake.messages[sent.id].content == "bye"
    assert (await channel.fetch_message(sent.id)).content == "bye"
    member = await bot.get_guild(fake.guild_id).fetch_member(USER_ID)  # type: ignore[union-attr]
    assert [r.id for r in member.roles if not r.is_default()] == [ARTIST_ROLE]
    assert any(
        c.method == "PATCH" and c.path == f"/channels/{channel.id}/messages/{sent.id}" for c in fake.calls
    )


ROOT = Path(__file__).resolve().parents[1]


async def test_standalone_process_and_control_api() -> None:
    """``python -m tests.fake_discord`` serves the same fake plus JSON control endpoints."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fake_discord",
        "--port",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        url = line.removeprefix("FAKE_DISCORD_URL=")
        assert line.startswith("FAKE_DISCORD_URL=http://127.0.0.1:")
        async with aiohttp.ClientSession(base_url=url) as http:
            state = await (await http.get("/_fake/state")).json()
            assert state["ready"] is False
            att = await (
                await http.post(
                    "/_fake/attachments",
                    json={
                        "filename": "a.png",
                        "data_b64": base64.b64encode(PNG).decode(),
                        "content_type": "image/png",
                    },
                )
            ).json()
            async with http.get(att["url"].removeprefix(url)) as resp:
                assert await resp.read() == PNG
            resp = await http.post("/_fake/slash", json={"name": "edit", "user_id": 1})
            assert resp.status == 400  # nothing is registered and no bot is connected
            ready = await http.get("/_fake/ready", params={"timeout": "0.05"})
            assert ready.status == 504
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_control_api_drives_a_connected_bot(fake: FakeDiscord, bot: TinyBot) -> None:
    async with aiohttp.ClientSession(base_url=fake.url) as http:
        assert (await (await http.get("/_fake/ready", params={"timeout": "1"})).json())["ready"]
        att = await (
            await http.post(
                "/_fake/attachments",
                json={
                    "filename": "a.png",
                    "data_b64": base64.b64encode(PNG).decode(),
                },
            )
        ).json()
        rec: dict[str, Any] = await (
            await http.post(
                "/_fake/slash",
                json={
                    "name": "edit",
                    "options": {"prompt": "p"},
                    "user_id": USER_ID,
                    "attachments": {"image": att},
                },
            )
        ).json()
        done = await (await http.get(f"/_fake/interactions/{rec['id']}", params={"until": "files"})).json()
        assert base64.b64decode(done["original"]["files"][0]["data_b64"]) == PNG[::-1]
        click = await (
            await http.post(
                "/_fake/click",
                json={
                    "message_id": done["original"]["payload"]["id"],
                    "custom_id": "job:7:rerun",
                    "user_id": USER_ID,
                },
            )
        ).json()
        clicked = await (
            await http.get(f"/_fake/interactions/{click['id']}", params={"until": "responded"})
        ).json()
        assert clicked["original"]["payload"]["content"] == "re-running job 7"


async def test_reconnect_resumes_the_session(fake: FakeDiscord, bot: TinyBot) -> None:
    session = fake.identify_payloads[-1]
    fake.request_reconnect()
    await fake.wait_until(lambda: fake.resumes == 1 and fake.gateway_sessions == 1, timeout=5)
    assert fake.identify_payloads[-1] is session  # resumed, not re-identified
    rec = await fake.slash("create", {"model": "seedream"}, user_id=USER_ID)
    await rec.wait_for("responded")
    assert rec.original is not None and rec.original.content == "seedream 20"


# ---- many processes: shards, workers without a gateway, counters ---------------------------------

GUILD_0 = guild_on_shard(0, 2)  # (id >> 22) % 2 == 0
GUILD_1 = guild_on_shard(1, 2)
GUILD_3 = guild_on_shard(1, 2, index=1)  # joined later


class ShardBot(commands.AutoShardedBot):
    """A gateway process serving some shards: /where says which, /handoff queues the job for a worker
    (the application id, token, channel and response message id are all a worker gets)."""

    def __init__(self, **shards: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            guild_ready_timeout=0.05,
            **shards,
        )
        self.handoffs: asyncio.Queue[tuple[int, str, int, int]] = asyncio.Queue()

        @self.tree.command(name="where", description="Which process answered")
        async def where(interaction: discord.Interaction) -> None:
            await interaction.response.send_message(f"shards {self.shard_ids} guild {interaction.guild_id}")

        @self.tree.command(name="handoff", description="Queue the job for a worker")
        async def handoff(interaction: discord.Interaction) -> None:
            resp = await interaction.response.defer(thinking=True)
            assert resp.message_id is not None and interaction.channel_id is not None
            job = (interaction.application_id, interaction.token, interaction.channel_id, resp.message_id)
            await self.handoffs.put(job)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause between a process's IDENTIFYs: the fake does not enforce max_concurrency."""


@contextlib.asynccontextmanager
async def running(fake: FakeDiscord, *bots: ShardBot, shard_ids: Iterable[int]) -> AsyncIterator[None]:
    """Start the bots, wait until every shard in ``shard_ids`` is in and each bot is ready; close them."""
    runners = [asyncio.create_task(b.start(fake.token)) for b in bots]
    try:
        await fake.wait_ready(timeout=10, shard_ids=shard_ids)
        for b in bots:
            await asyncio.wait_for(b.wait_until_ready(), 10)
        yield
    finally:
        for b, runner in zip(bots, runners, strict=True):
            await b.close()
            await asyncio.wait_for(runner, 5)


@pytest.fixture
async def sharded_fake() -> AsyncIterator[FakeDiscord]:
    """A fake whose primary guild is on shard 0 of 2."""
    async with FakeDiscord(guild_id=GUILD_0) as fake:
        fake.add_member(USER_ID, name="alice")
        restore = fake.configure_discord_py()
        try:
            yield fake
        finally:
            restore()


async def test_auto_sharded_bot_takes_the_shard_count_from_gateway_bot() -> None:
    async with FakeDiscord(shards=3, max_concurrency=2) as fake:
        restore = fake.configure_discord_py()
        try:
            headers = {"Authorization": f"Bot {fake.token}"}
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{fake.api_base}/gateway/bot", headers=headers) as r,
            ):
                info = await r.json()
            limit = {"total": 1000, "remaining": 1000, "reset_after": 86_400_000, "max_concurrency": 2}
            assert info == {"url": fake.gateway_url, "shards": 3, "session_start_limit": limit}
            bot = ShardBot()  # no shard_count: discord.py asks GET /gateway/bot
            async with running(fake, bot, shard_ids=[0, 1, 2]):
                assert bot.shard_count == 3 and sorted(bot.shards) == [0, 1, 2]
                assert sorted(p["shard"] for p in fake.identify_payloads) == [[0, 3], [1, 3], [2, 3]]
                assert fake.gateway_shards == [(0, 3), (1, 3), (2, 3)]
                guild = bot.get_guild(fake.guild_id)
                assert guild is not None and guild.shard_id == shard_of(fake.guild_id, 3)
            assert fake.stats()["identifies"] == 3
        finally:
            restore()


async def test_two_gateway_processes_each_get_only_their_shards_guilds(sharded_fake: FakeDiscord) -> None:
    fake = sharded_fake
    fake.add_guild(GUILD_1)
    first, second = ShardBot(shard_count=2, shard_ids=[0]), ShardBot(shard_count=2, shard_ids=[1])
    async with running(fake, first, second, shard_ids=[0, 1]):
        assert [g.id for g in first.guilds] == [GUILD_0]
        assert [g.id for g in second.guilds] == [GUILD_1]
        await first.tree.sync()  # global commands: registered once, invokable in every guild and DMs

        for guild_id, shard, bot in ((GUILD_0, 0, first), (GUILD_1, 1, second)):
            rec = await fake.slash("where", user_id=USER_ID, guild_id=guild_id)
            await rec.wait_for("responded")
            assert rec.shards == [shard] and rec.guild_id == guild_id
            assert (
                rec.original is not None
                and rec.original.content == f"shards {bot.shard_ids} guild {guild_id}"
            )

        dm = await fake.slash("where", user_id=USER_ID, channel_id=fake.dm_channel(USER_ID))
        await dm.wait_for("responded")
        assert dm.shards == [0] and dm.guild_id is None  # no guild: shard 0
        assert dm.original is not None and dm.original.content == "shards [0] guild None"
        assert "guild_id" not in dm.original.payload
        assert fake.stats()["interactions_by_shard"] == {"0": 2, "1": 1}

        joined = asyncio.ensure_future(second.wait_for("guild_join", timeout=5))
        fake.add_guild(GUILD_3)  # the bot is added to a guild on shard 1: GUILD_CREATE goes there only
        assert (await joined).id == GUILD_3 and first.get_guild(GUILD_3) is None

        await second.close()
        await fake.wait_until(lambda: fake.gateway_shards == [(0, 2)])
        with pytest.raises(RuntimeError, match="shard"):
            await fake.slash("where", user_id=USER_ID, guild_id=GUILD_1)


async def test_a_worker_without_gateway_delivers_by_token_then_by_channel(sharded_fake: FakeDiscord) -> None:
    fake = sharded_fake
    gateway = ShardBot(shard_count=1)
    async with running(fake, gateway, shard_ids=[0]):
        await gateway.tree.sync()
        rec = await fake.slash("handoff", user_id=USER_ID)
        app_id, token, channel_id, message_id = await asyncio.wait_for(gateway.handoffs.get(), 5)
        await rec.wait_for("deferred")
        assert rec.original is not None and rec.original.id == message_id and rec.original.loading

        worker = discord.Client(intents=discord.Intents.none())
        await worker.login(fake.token)  # GET /users/@me and the application; never connects
        try:
            # What Interaction.followup builds: an application webhook (type 3) from the stored token.
            hook = discord.Webhook.from_state({"id": app_id, "type": 3, "token": token}, worker._connection)
            fake.inject_rate_limit(times=2)  # 429 + Via: discord.py sleeps retry_after and retries
            await hook.edit_message(message_id, content="50%")
            edits = [c.status for c in fake.calls if c.method == "PATCH" and c.path.startswith("/webhooks/")]
            assert edits == [429, 429, 200] and fake.stats()["rate_limited"] == 2
            assert rec.original.content == "50%" and not rec.original.loading and not rec.errors

            secret = await hook.send("only you", ephemeral=True, wait=True)
            assert fake.messages[secret.id].ephemeral and fake.messages[secret.id] in rec.followups
            channel = worker.get_partial_messageable(channel_id)
            reply = await channel.send(
                f"<@{USER_ID}> done",
                reference=discord.MessageReference(message_id=message_id, channel_id=channel_id),
            )
            stored = fake.messages[reply.id].payload
            assert stored["type"] == 19 and stored["referenced_message"]["id"] == str(message_id)
            assert reply.reference is not None and reply.reference.message_id == message_id

            fake.advance_time(fake.token_lifetime)  # 15 minutes later the token is dead...
            for late in (hook.edit_message(message_id, content="late"), hook.send("late", wait=True)):
                with pytest.raises(discord.HTTPException) as err:
                    await late
                assert (err.value.status, err.value.code) == (401, 50027)
            # ...but the bot's own non-ephemeral messages stay editable through the channel.
            await channel.get_partial_message(message_id).edit(content="final")
            assert rec.original.content == "final" and rec.original.edits == 2
            with pytest.raises(discord.NotFound):  # ephemeral: only its webhook could change it
                await channel.get_partial_message(secret.id).edit(content="x")
            fake.channel_edits_interaction_responses = False  # the stricter reading of Discord
            with pytest.raises(discord.NotFound):
                await channel.get_partial_message(message_id).edit(content="x")

            dm = await (await worker.fetch_user(USER_ID)).create_dm()  # the bot-token DM fallback
            assert (await dm.send("in private")).channel.id == fake.dm_channel(USER_ID)
            await channel.get_partial_message(reply.id).delete()
            with pytest.raises(discord.HTTPException) as err:
                await channel.send(
                    "again", reference=discord.MessageReference(message_id=reply.id, channel_id=channel_id)
                )
            assert (err.value.status, err.value.code) == (400, 50035)
        finally:
            await worker.close()


async def test_edit_counts_and_calls_per_second_on_an_injected_clock() -> None:
    now = [100.0]
    async with FakeDiscord(clock=lambda: now[0]) as fake, aiohttp.ClientSession(base_url=fake.url) as http:
        headers = {"Authorization": f"Bot {fake.token}"}
        path = f"/api/v10/channels/{fake.channel_id}/messages"
        sent = await (await http.post(path, json={"content": "0%"}, headers=headers)).json()
        for at, content in ((100.2, "30%"), (100.9, "60%"), (102.5, "100%")):
            now[0] = at
            await http.patch(f"{path}/{sent['id']}", json={"content": content}, headers=headers)
        msg = fake.messages[int(sent["id"])]
        assert msg.edits == 3 and msg.edit_times == [100.2, 100.9, 102.5]
        assert fake.edit_peak_per_s == 2  # 100.2 and 100.9 share a second; 102.5 is alone
        assert fake.rest_peak_per_s == 3  # the POST at 100.0 and both edits before 101.0
        assert fake.peak_rate(lambda c: c.method == "PATCH", window=3.0) == 3
        stats = await (await http.get("/_fake/stats")).json()
        assert stats["edits"] == 3 and stats["max_edits_per_message"] == 3 and stats["rest_calls"] == 4


async def test_webhook_edit_limit_answers_429_until_the_window_moves() -> None:
    now = [0.0]
    async with FakeDiscord(clock=lambda: now[0]) as fake:
        restore = fake.configure_discord_py()
        gateway = ShardBot(shard_count=1)
        try:
            async with running(fake, gateway, shard_ids=[0]), aiohttp.ClientSession() as http:
                await gateway.tree.sync()
                rec = await fake.slash("handoff", user_id=USER_ID)
                await rec.wait_for("deferred")
                fake.limit_webhook_edits(2, per=5.0)
                url = f"{fake.api_base}/webhooks/{fake.app_id}/{rec.token}/messages/@original"
                answers = []
                for _ in range(3):
                    async with http.patch(url, json={"content": "x"}) as resp:
                        answers.append((resp.status, resp.headers.get("Via"), await resp.json()))
                assert [status for status, _, _ in answers] == [200, 200, 429]
                assert answers[2][1] and answers[2][2]["retry_after"] == 5.0  # the window's time left
                now[0] = 5.0
                async with http.patch(url, json={"content": "y"}) as resp:
                    assert resp.status == 200
                assert rec.original is not None and rec.original.edits == 3  # the 429 changed nothing
        finally:
            restore()


async def test_standalone_fake_with_shards_guilds_and_the_new_knobs() -> None:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.fake_discord", "--shards", "2", "--guild-id", str(GUILD_0)),
        *("--guild", str(GUILD_1), "--token-lifetime", "60"),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip().split("=", 1)[1]
        async with aiohttp.ClientSession(base_url=url) as http:
            state = await (await http.get("/_fake/state")).json()
            assert [(g["id"], g["shard"]) for g in state["guilds"]] == [(GUILD_0, 0), (GUILD_1, 1)]
            assert (state["shards"], state["token_lifetime"]) == (2, 60.0)
            added = await (await http.post("/_fake/guilds", json={"guild_id": GUILD_3})).json()
            assert added["channel_id"] == GUILD_3 + 9
            member = {"user_id": USER_ID, "name": "alice", "guild_id": GUILD_3}
            assert (await http.post("/_fake/members", json=member)).status == 200
            config = await (await http.post("/_fake/config", json={"shards": 4})).json()
            assert config["shards"] == 4 and config["channel_edits_interaction_responses"] is True
            headers = {"Authorization": "Bot fake-token"}
            assert (await (await http.get("/api/v10/gateway/bot", headers=headers)).json())["shards"] == 4
            before = (await (await http.get("/_fake/state")).json())["now"]
            after = (await (await http.post("/_fake/advance_time", json={"seconds": 900})).json())["now"]
            assert after - before >= 900
            for action, body in (("rate_limit", {"times": 1}), ("webhook_edit_limit", {"limit": 3})):
                assert (await http.post(f"/_fake/{action}", json=body)).status == 200
            stats = await (await http.get("/_fake/stats")).json()
            assert stats["interactions"] == 0 and stats["gateway_shards"] == []
            ready = await http.get("/_fake/ready", params={"timeout": "0.05", "shard_ids": "0,1"})
            assert ready.status == 504 and (await http.get("/_fake/interactions")).status == 200
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
