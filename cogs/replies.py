"""How the bot answers in Discord: private replies, safe text, error words. No cog lives here.

Every reply mentions nobody (``NO_MENTIONS``) unless it names the requester on purpose, and every
piece of member-typed text shown back goes through ``safe_text``.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.errors import RateLimited, UserError
from bot.outcomes import JobFailed

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
# Errors where money was at stake: only after these does "you were not charged" say something.
MONEY_CODES = frozenset({"quota_exceeded", "job_failed"})


def safe_text(text: str, limit: int) -> str:
    """User text for an embed or message: no mentions resolved, no markdown tricks, bounded."""
    text = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    text = "".join(ch for ch in text if ch == "\n" or ch >= " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_short(model_id: str) -> str:
    return model_id.split("/", 1)[-1]


def user_error_text(exc: UserError, reference: int | str | None = None) -> str:
    """What a member reads for a failure: the plain message, the job id when one was recorded (or
    an interaction reference they can quote to an admin), and "not charged" only where a charge
    was in question. JobFailed already names its job and says it was not charged."""
    text = exc.user_message
    if isinstance(exc, RateLimited):  # the moment as Discord shows it: "in 20 minutes", in their zone
        text = exc.saying(lambda at: discord.utils.format_dt(at, "R"))
    job_id = getattr(exc, "job_id", None)  # e.g. a quota refusal is recorded as a job
    if isinstance(exc, JobFailed):
        pass
    elif job_id:
        text += f" (job {job_id}; you were not charged)" if exc.code in MONEY_CODES else f" (job {job_id})"
    elif reference is not None:
        text += f" (reference {reference})"
    return "⚠️ " + text


def token_gone(exc: discord.HTTPException) -> bool:
    """The interaction token expired (15 minutes) or the interaction is unknown: answer elsewhere."""
    return exc.status == 401 or exc.code in (50027, 10015, 10062)


async def answer_privately(interaction: discord.Interaction, text: str) -> bool:
    """An ephemeral message whether or not the interaction was answered yet. False if Discord
    would not take it (the token expired), so the caller can say it somewhere else."""
    if interaction.is_expired():
        return False
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            return True
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # The original is our "thinking…" message. An ephemeral follow-up cannot replace a
            # public one (it would inherit its visibility), so it goes, and a private one follows.
            try:
                await interaction.delete_original_response()
            except discord.HTTPException as exc:
                if token_gone(exc):
                    return False
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        return True
    except discord.HTTPException as exc:
        log.warning("could not answer interaction %s: %s", interaction.id, exc)
        return False


async def tell_error(interaction: discord.Interaction, exc: UserError) -> None:
    """A private refusal, with the interaction id as the reference when no job was recorded."""
    await answer_privately(interaction, user_error_text(exc, interaction.id))


def role_ids(user: Any) -> tuple[int, ...]:
    return tuple(r.id for r in getattr(user, "roles", ()))


def age_restricted(channel: Any) -> bool:
    """Age-restricted channels (and threads in them) may show flagged results, as spoilers."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(is_nsfw()) if callable(is_nsfw) else False


def is_admin(interaction: discord.Interaction) -> bool:
    """Manage Server / Manage Messages / Administrator, as Discord resolved it for this member here."""
    perms = interaction.permissions
    return perms.administrator or perms.manage_guild or perms.manage_messages


async def reply_error(interaction: discord.Interaction, error: UserError | str) -> None:
    """A private refusal, before or after the interaction was answered."""
    # A ValidationError names the option it is about as the slash command spells it (its field).
    text = user_error_text(error) if isinstance(error, UserError) else "⚠️ " + error
    await answer_privately(interaction, text)


def can_manage(interaction: discord.Interaction) -> bool:
    """Manage Server (or Administrator, or the owner) as Discord resolved it for this interaction."""
    if interaction.guild_id is None:
        return False
    perms = interaction.permissions
    return perms.manage_guild or perms.administrator
