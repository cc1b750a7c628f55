"""No API key (or other configured secret) in any error text, repr, request id or log record."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.logs import SecretFilter
from bot.providers.base import ProviderError
from bot.providers.parsing import safe_text, scrub
from bot.redact import REDACTED
from tests.providers.conftest import KEYS, OTHER_SECRET, Rig, edit_request

SECRETS = (*KEYS.values(), OTHER_SECRET)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def faults(provider: str) -> list[tuple[str, dict[str, Any]]]:
    echo = f"upstream said: Authorization: Bearer {KEYS[provider]} / token {OTHER_SECRET}"
    cases: list[tuple[str, dict[str, Any]]] = [
        ("bad_key", {}),
        ("out_of_balance", {}),
        ("rate_limit", {"times": -1, "retry_after": 1}),
        ("server_error", {"times": -1}),
        ("connection_reset", {"times": -1}),
        ("malformed_json", {}),
        ("wrong_content_type", {}),
        ("content_refused", {"message": echo}),
    ]
    if provider != "modelverse":
        cases.append(("task_failed", {"message": echo}))
        cases.append(("server_error", {"times": -1, "on": "poll"}))
    return cases


@pytest.mark.parametrize("provider", ["modelverse", "vtrix", "wavespeed"])
async def test_no_secret_in_errors_or_logs(rig: Rig, provider: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    adapter = getattr(rig, provider)()
    client = rig.client(max_retries=1)
    seen: list[ProviderError] = []
    for kind, options in faults(provider):
        rig.emu.clear_faults()
        rig.emu.fault(provider, kind, **options)
        with pytest.raises(ProviderError) as info:
            await client.run(adapter, edit_request(provider), deadline=rig.deadline(40))
        seen.append(info.value)
    for err in seen:
        for text in (str(err), repr(err), err.user_message, err.request_id or "", repr(err.args)):
            assert not leaks(text), (err.code, text)
    if provider != "modelverse":  # the provider's words are kept, minus the secrets
        [failed] = [err for err in seen if err.code == "task_failed"]
        assert failed.user_message.endswith("said: Authorization: Bearer [redacted] / token [redacted]")
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + (record.exc_text or "")
        assert not leaks(text), text
    assert not leaks(repr(adapter)) and not leaks(repr(client))


async def test_key_goes_only_to_the_providers_own_host(rig: Rig) -> None:
    await rig.client().run(rig.vtrix(), edit_request("vtrix"), deadline=rig.deadline())
    for call in rig.emu.requests:
        has_key = call.headers.get("authorization") == f"Bearer {KEYS['vtrix']}"
        assert has_key == (call.provider == "vtrix")  # result files are fetched without it


def test_logs_and_provider_text_follow_one_redaction_rule() -> None:
    key = KEYS["vtrix"]
    text = f"echoed {key}; short values like abc are not secrets"
    record = logging.LogRecord("bot", logging.WARNING, __file__, 1, "%s", (text,), None)
    SecretFilter([key, "abc"]).filter(record)
    expected = f"echoed {REDACTED}; short values like abc are not secrets"
    assert record.getMessage() == safe_text(text, [key, "abc"]) == scrub(text, [key, "abc"]) == expected
