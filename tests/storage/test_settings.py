"""Allowed channels and per-user settings the Discord bot keeps."""

from __future__ import annotations

import pytest

import storage
from tests.storage.conftest import GUILD, T0


async def test_channels_are_all_allowed_until_a_list_exists(db):
    assert await storage.channel_allowed(db, GUILD, 1)
    await storage.set_channel_allowed(db, GUILD, 10, actor_id=3, now=T0)
    await storage.set_channel_allowed(db, GUILD, 11, actor_id=3, now=T0)
    await storage.set_channel_allowed(db, GUILD, 10, actor_id=3, now=T0)  # twice is once
    assert await storage.allowed_channels(db, GUILD) == {10, 11}
    assert await storage.channel_allowed(db, GUILD, 10)
    assert not await storage.channel_allowed(db, GUILD, 1)
    assert await storage.channel_allowed(db, GUILD + 1, 1)  # other guilds are not affected
    await storage.set_channel_allowed(db, GUILD, 10, False, actor_id=3, now=T0)
    await storage.set_channel_allowed(db, GUILD, 11, False, actor_id=3, now=T0)
    assert await storage.channel_allowed(db, GUILD, 1)
    assert len(await storage.audit_log(db, GUILD)) == 5


async def test_user_settings_default_then_change(db):
    assert await storage.get_user_settings(db, 5) == storage.UserSettings(5)
    s = await storage.set_user_settings(db, 5, default_model="m", private_results=True, now=T0)
    assert (s.default_model, s.aspect_ratio, s.private_results) == ("m", None, True)
    s = await storage.set_user_settings(db, 5, aspect_ratio="16:9", now=T0)
    assert (s.default_model, s.aspect_ratio, s.private_results) == ("m", "16:9", True)
    assert await storage.get_user_settings(db, 5) == s
    s = await storage.set_user_settings(db, 5, default_model=None, now=T0)
    assert s.default_model is None
    with pytest.raises(ValueError, match="unknown user settings: colour"):
        await storage.set_user_settings(db, 5, colour="red")
