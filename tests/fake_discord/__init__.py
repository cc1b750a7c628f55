"""A fake Discord (REST v10 + gateway) on 127.0.0.1 for end-to-end tests of the real discord.py client.

In-process use::

    async with FakeDiscord() as fake:                      # or: await fake.start(); ...; await fake.stop()
        restore = fake.configure_discord_py()              # sets Route.BASE and DEFAULT_GATEWAY
        fake.add_role(5, "artist"); fake.add_member(42, name="alice", roles=[5])
        ...start a discord.py client with fake.token...
        await fake.wait_ready()
        att = fake.add_attachment("cat.png", png_bytes, "image/png")
        rec = await fake.slash("edit", {"prompt": "hat"}, user_id=42, attachments={"image": att})
        await rec.wait_for("files")                        # or a predicate taking the record
        rec.original.files[0].data                         # bytes the bot uploaded

Interaction records (``InteractionRecord``) collect the callback (``callbacks``, ``callback_type``,
``modal``, ``choices``), the ``original`` message, ``followups``, ``files`` and the ``errors`` the fake
answered for their token. ``wait_for`` states: acked, deferred, responded (visible original),
edited, files, followup, modal, autocomplete, error, deleted. Messages (``FakeMessage``) carry the
payload as Discord would return it plus ``files`` (bytes), ``allowed_mentions`` as last sent,
``history`` (a payload snapshot per change) and helpers (``custom_ids``, ``ephemeral``...).
Every REST call lands in ``fake.calls`` (method, path below /api/v10, query, json, files, status,
``at`` on the fake's clock).

Knobs: ``expire_token(token)`` (later webhook calls answer 401/50027, callbacks 404/10062),
``advance_time(seconds)`` (the fake's clock; tokens die ``token_lifetime`` = 900 s after their
interaction), ``upload_limit`` (a bigger file answers 413/40005; more than 10 files answers
400/50035), ``expire_attachment(att)`` (CDN answers 404), ``inject_error(method, path_contains,
status, code)`` (note discord.py itself retries 5xx with 1 s+ sleeps), ``inject_rate_limit(...)``
and ``limit_webhook_edits(limit, per)`` (429s with ``Via`` and ``retry_after``, which discord.py
retries), ``channel_edits_interaction_responses`` (see ``rest``), ``request_reconnect()`` (op 7; the
client RESUMEs, counted in ``resumes``). World: ``add_guild``, ``add_role``, ``add_member``,
``add_channel`` (each takes ``guild_id=``, default the primary guild), ``dm_channel(user)``,
``post_user_message`` (a member's message, e.g. the target of a message context menu).

Shards and guilds: ``FakeDiscord(shards=N)`` is what GET /gateway/bot recommends; each session's
IDENTIFY ``shard`` decides which guilds it gets (``shard_of``; ``guild_on_shard`` picks ids);
``wait_ready(shard_ids=...)`` waits for those shards. Drivers take ``guild_id=`` or a
``channel_id`` (a DM channel: shard 0).
Each record notes ``guild_id`` and ``shards`` (the sessions that got it). Counters: each message's
``edits`` / ``edit_times``, ``InteractionRecord.edits``, ``rest_peak_per_s`` and ``edit_peak_per_s``
(most in a sliding second), ``peak_rate(predicate, window)``, ``stats()``.

Discord behaviour mirrored on purpose: the first follow-up after a "thinking" defer (type 5) edits
the loading message instead of creating a new one; a second callback answers 400/40060; commands
are only invokable once registered (option types and choices come from the registration), and
guild-registered commands carry ``data.guild_id`` so discord.py finds them in the guild tree.

Standalone (for a bot running as a subprocess)::

    python -m tests.fake_discord [--port 0] [--shards N] [--guild ID ...] [--token-lifetime S]
        ->  prints ``FAKE_DISCORD_URL=http://127.0.0.1:PORT``

then run the bot with DISCORD_API_BASE=$URL/api/v10 and DISCORD_GATEWAY_URL=ws://127.0.0.1:PORT/gateway
(also listed by GET /_fake/state) and DISCORD_TOKEN=fake-token (``--token`` changes it).

The same API is served as JSON under ``/_fake/``: GET state, ready?timeout=&shard_ids=0,1,
commands, calls?since=N, messages?channel_id=, stats, interactions?guild_id= (summaries),
interactions/{id}?until=STATE&timeout=; POST guilds ({guild_id, name, owner_id}), members, roles,
channels (each with an optional guild_id), dm_channel ({user_id}), attachments ({filename, data_b64,
content_type}), user_messages, slash, autocomplete, context_menu ({name, message_id |
target_user_id, user_id}) (drivers take guild_id / channel_id), click ({message_id, custom_id,
user_id, values}), submit_modal ({custom_id, fields, user_id, message_id}), expire_token,
advance_time ({seconds}), config ({upload_limit, shards, max_concurrency, token_lifetime,
channel_edits_interaction_responses}), inject_error, rate_limit ({method, path_contains, times,
retry_after, global}), webhook_edit_limit ({limit, per}), reconnect. Bad requests answer 400
``{"error": ...}``; a wait that times out answers 504. Records and messages come back as JSON with
file bytes in ``data_b64``.

Traps this fake encodes (discord.py 2.7.1):
- discord.py decodes a body as JSON only if Content-Type is exactly ``application/json``;
  aiohttp's ``json_response`` appends ``; charset=utf-8``, so responses are built by hand.
- Callbacks are posted with ``?with_response=1`` and need ``{"interaction": {...}, "resource"}``.
- INTERACTION_CREATE needs ``attachment_size_limit``; members need ``flags``; READY needs
  ``resume_gateway_url`` and ``application``; RESUMED's ``d`` must be an object, not null.
- The gateway is asked for ``compress=zlib-stream`` but discord.py only decompresses *binary*
  frames, so plain JSON text frames work.
- ``@original`` reaches the server percent-encoded (``%40original``); aiohttp decodes it before routing.
- aiohttp refuses bodies over 1 MiB by default: ``client_max_size`` is raised so the upload-limit
  knob, not aiohttp, decides what is too large.
- A client started with default intents waits ``guild_ready_timeout`` (2 s) after the last
  GUILD_CREATE before ``on_ready``; ``wait_ready`` here does not, since interactions can be sent
  as soon as GUILD_CREATE is queued (frames are delivered in order).

Layout (one job per module): ``records`` (constants, error shape, the records tests read, rate
meters), ``world`` (guilds, members, roles, channels, DMs, the clock; payloads), ``messages``
(messages, files, body and reply rules, edit counts), ``drivers`` (slash, autocomplete, context
menu, click, modal submit), ``gateway`` (websocket sessions, shard routing), ``plumbing`` (call log,
auth, injected errors and rate limits, body parsing), ``rest`` (the REST routes),
``control`` (the ``/_fake/`` JSON API), ``fake`` (``FakeDiscord``: server, lifecycle, knobs),
``standalone`` (``python -m tests.fake_discord``).
"""

from tests.fake_discord.fake import FakeDiscord
from tests.fake_discord.gateway import guild_on_shard, shard_of
from tests.fake_discord.records import FakeDiscordError, FakeMessage, InteractionRecord, RestCall, SentFile
from tests.fake_discord.standalone import main
from tests.fake_discord.world import Guild

__all__ = [
    "FakeDiscord",
    "FakeDiscordError",
    "FakeMessage",
    "Guild",
    "InteractionRecord",
    "RestCall",
    "SentFile",
    "guild_on_shard",
    "main",
    "shard_of",
]
