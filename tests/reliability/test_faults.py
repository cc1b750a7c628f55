"""Every provider fault through the real JobService: what the user is told, what is retried or failed
over, and that the books balance with nothing charged for a job that fails.

Each job is a member's (user + guild) edit with the paid FLUX.1 Kontext [max] (no free images, so the
guild budget pays) unless a case says otherwise. Routes are tried in catalog order: UModelverse,
WaveSpeedAI, Vtrix. ``max_retries`` is 1, so a fault that says nothing was done (429, 503) costs two
calls per provider; one after which the task may exist (a 500/502/504, a read timeout, a dropped
connection) costs one: such a submit is never sent again, and the job fails over instead.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.catalog import Catalog
from bot.jobs import JobFailed, JobRequest
from bot.providers.http import ProviderClient
from tests.emulator import ProviderEmulator, make_png
from tests.reliability.conftest import (
    FREE_MODEL,
    GUILD,
    MEMBER,
    PAID_MODEL,
    books,
    open_stack,
    write_config,
)

IMAGE = make_png(256, 256)
PRICES = {r.provider: r.price_micros for r in Catalog.default().get(PAID_MODEL).routes}
ALL = ("modelverse", "wavespeed", "vtrix")


def request(model: str = PAID_MODEL, provider: str | None = None) -> JobRequest:
    return JobRequest(
        model=model,
        prompt="make the sky purple",
        images=[IMAGE],
        provider=provider,
        user_id=MEMBER,
        guild_id=GUILD,
        source="slash",
    )


def submits(emu: ProviderEmulator) -> dict[str, int]:
    """POSTs per provider: submits and resubmits (polls are GETs)."""
    out = dict.fromkeys(ALL, 0)
    for r in emu.requests:
        if r.provider in out and r.method == "POST":
            out[r.provider] += 1
    return out


def polls(emu: ProviderEmulator, provider: str) -> int:
    return sum(1 for r in emu.requests if r.provider == provider and r.method == "GET")


def downloads(emu: ProviderEmulator) -> int:
    return sum(1 for r in emu.requests if r.provider == "files")


@dataclass(frozen=True)
class Failing:
    """A fault that no route survives (or that must not be failed over)."""

    id: str
    faults: tuple[tuple[str, str, dict[str, Any]], ...]
    told: str  # what JobFailed.user_message says (before "(job ...; you were not charged)")
    calls: dict[str, int]  # submits per provider
    status: str = "failed"
    provider: str | None = None  # force one route
    limits: dict[str, Any] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: int | None = None  # result downloads tried


def everywhere(kind: str, **options: Any) -> tuple[tuple[str, str, dict[str, Any]], ...]:
    return (("*", kind, {"times": -1, **options}),)


def unknown(what: str) -> str:
    return f"{what}; it may have started, so it was not sent again."


TWICE = dict.fromkeys(ALL, 2)  # first call + one retry, on every route
ONCE = dict.fromkeys(ALL, 1)  # a final error: no retry, straight to the next route
SLOW_READ = {name: {"read_timeout": 0.2} for name in ALL}

FAILING = [
    Failing("http-503", everywhere("server_error", status=503), "Vtrix is unavailable (HTTP 503).", TWICE),
    *(
        Failing(f"http-{status}-not-resent", everywhere("server_error", status=status), unknown(told), ONCE)
        for status, told in (
            (500, "Vtrix failed (HTTP 500) after the job was sent"),
            (502, "Vtrix failed (HTTP 502) after the job was sent"),
            (504, "Vtrix failed (HTTP 504) after the job was sent"),
        )
    ),
    Failing(
        "connection-reset-not-resent",
        everywhere("connection_reset"),
        unknown("The connection to Vtrix broke after the job was sent"),
        ONCE,
    ),
    Failing(
        "slower-than-read-timeout-not-resent",
        everywhere("hang", seconds=5),
        unknown("Vtrix did not answer in time after the job was sent"),
        ONCE,
        providers=SLOW_READ,
    ),
    Failing(
        "malformed-json",
        everywhere("malformed_json"),
        "Vtrix sent an unreadable answer (malformed JSON).",
        ONCE,
    ),
    Failing(
        "wrong-content-type",
        everywhere("wrong_content_type"),
        "Vtrix sent an unreadable answer (text/html).",
        ONCE,
    ),
    Failing(
        # The deadline is the job's, not the route's: once it has passed, no failover.
        "never-finishes",
        everywhere("never_finish", seconds=30),
        "UModelverse took longer than 1 s.",
        {"modelverse": 1, "wavespeed": 0, "vtrix": 0},
        limits={"job_deadline": 1.0},
    ),
    Failing(
        "never-finishes-polled",
        (("vtrix", "never_finish", {}),),
        "Vtrix took longer than 1 s.",
        {"modelverse": 0, "wavespeed": 0, "vtrix": 1},
        provider="vtrix",
        limits={"job_deadline": 1.0},
    ),
    Failing(
        # UModelverse reports a failed generation as HTTP 500 model_server_error, the task APIs as a
        # failed task: each route once, then the next.
        "task-failed",
        everywhere("task_failed"),
        "The Vtrix task failed: Image generation failed: worker error",
        ONCE,
    ),
    *(
        Failing(
            # Nobody but the account's owner (or the provider) cancels or deletes a task: no failover.
            f"wavespeed-task-{status}",
            (("modelverse", "bad_key", {}), ("wavespeed", "end_state", {"status": status})),
            f"The WaveSpeedAI task was {status} at the provider (not by the bot).",
            {"modelverse": 1, "wavespeed": 1, "vtrix": 0},
        )
        for status in ("cancelled", "deleted")
    ),
    Failing(
        "content-refused",
        everywhere("content_refused"),
        "UModelverse's safety check refused this prompt or image. Try different wording or another image.",
        {"modelverse": 1, "wavespeed": 0, "vtrix": 0},
        status="refused",
    ),
    Failing(
        # A refusal after a failover still ends the job: another provider's filter is no way around it.
        "content-refused-task",
        (("modelverse", "bad_key", {}), ("wavespeed", "content_refused", {})),
        "WaveSpeedAI's moderation refused this prompt or image. Try different wording or another image.",
        {"modelverse": 1, "wavespeed": 1, "vtrix": 0},
        status="refused",
    ),
    Failing(
        "out-of-balance",
        everywhere("out_of_balance"),
        "The Vtrix account has no balance or no permission (HTTP 403).",
        ONCE,
    ),
    Failing("bad-key", everywhere("bad_key"), "Vtrix rejected the API key.", ONCE),
    Failing(
        "output-link-404",
        everywhere("expired_output"),
        "The result link from Vtrix has expired (HTTP 404).",
        ONCE,
        files=3,
    ),
    Failing(
        "output-link-410",
        everywhere("expired_output", status=410),
        "The result link from Vtrix has expired (HTTP 410).",
        ONCE,
        files=3,
    ),
    Failing(
        "output-not-an-image",
        everywhere("not_image"),
        "The provider returned something that is not an image.",
        ONCE,
        files=3,
    ),
    Failing(
        "output-60mb",
        everywhere("huge_output", size_mb=60),
        "The result from Vtrix is too large (over 50 MB).",
        ONCE,
        files=3,
    ),
    Failing(
        "output-60mb-chunked",
        (("modelverse", "huge_output", {"size_mb": 60, "declare_length": False}),),
        "The result from UModelverse is too large (over 50 MB).",
        {"modelverse": 1, "wavespeed": 0, "vtrix": 0},
        provider="modelverse",
        files=1,
    ),
    Failing(
        "invalid-base64",
        (("modelverse", "invalid_base64", {}),),
        "UModelverse returned a result that is not valid base64.",
        {"modelverse": 1, "wavespeed": 0, "vtrix": 0},
        provider="modelverse",
        files=0,
    ),
]


@pytest.mark.usefixtures("fast_backoff")
@pytest.mark.parametrize("case", FAILING, ids=lambda c: c.id)
async def test_a_failed_job_says_why_and_costs_nothing(
    case: Failing, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    for provider, kind, options in case.faults:
        emulator.fault(provider, kind, **options)
    async with open_stack(emulator, tmp_path, limits=case.limits, providers=case.providers) as svc:
        with pytest.raises(JobFailed) as info:
            await svc.jobs.run(request(provider=case.provider))
        err = info.value
        assert err.user_message == f"{case.told} (job {err.job_id}; you were not charged)"
        assert submits(emulator) == case.calls
        if case.files is not None:
            assert downloads(emulator) == case.files
        job = await svc.jobs.get(err.job_id)
        assert job is not None and job.status == case.status and job.reservation == "refunded"
        b = await books(svc)
        assert b.problems == []
        assert (b.guild_spent, b.member_spent, b.usage_cost, b.succeeded, b.failed) == (0, 0, 0, 0, 1)


class FakeTime:
    """The ProviderClient's clock and sleep: a sleep moves the clock on instead of waiting. The clock
    starts at the real monotonic time of its first reading, so it agrees with the job's deadline."""

    def __init__(self, *, really_sleep: bool = False) -> None:
        self.base: float | None = None
        self.slept = 0.0
        self.sleeps: list[float] = []
        self.really_sleep = really_sleep

    def monotonic(self) -> float:
        if self.base is None:
            self.base = time.monotonic()
        return self.base + self.slept

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.slept += seconds
        await asyncio.sleep(seconds if self.really_sleep else 0)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """open_services builds its ProviderClient with this clock and sleep."""
    fake = FakeTime()
    client = functools.partial(ProviderClient, clock=fake.monotonic, sleep=fake.sleep)
    monkeypatch.setattr("bot.services.ProviderClient", client)
    return fake


async def test_polling_keeps_going_to_the_deadline(
    emulator: ProviderEmulator, tmp_path: Path, fake_time: FakeTime
) -> None:
    emulator.fault("vtrix", "never_finish")
    async with open_stack(emulator, tmp_path, limits={"job_deadline": 60.0}) as svc:
        with pytest.raises(JobFailed) as info:
            await svc.jobs.run(request(provider="vtrix"))
    assert info.value.user_message.startswith("Vtrix took longer than ")
    # 0.05 s growing by 1.5x up to 10 s: the task was asked all along, not abandoned, and the last
    # wait ends at the deadline, where no poll follows.
    sleeps = fake_time.sleeps
    assert sleeps[:3] == pytest.approx([0.05, 0.075, 0.1125]) and max(sleeps) == 10.0
    assert polls(emulator, "vtrix") == len(sleeps) - 1 >= 15
    assert submits(emulator)["vtrix"] == 1


async def test_without_retry_after_the_backoff_is_jittered_and_real(
    emulator: ProviderEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = FakeTime(really_sleep=True)  # records each wait and really waits it
    monkeypatch.setattr("bot.services.ProviderClient", functools.partial(ProviderClient, sleep=real.sleep))
    emulator.fault("modelverse", "server_error", status=503, times=-1)  # "nothing was done": re-sent
    async with open_stack(emulator, tmp_path) as svc:
        with pytest.raises(JobFailed) as info:
            await svc.jobs.run(request(provider="modelverse"))
        assert info.value.user_message.startswith("UModelverse is unavailable (HTTP 503). (job ")
        assert (await books(svc)).problems == []
    [delay] = real.sleeps
    assert 0.375 <= delay <= 0.5  # INITIAL_BACKOFF 0.5 s less up to 25% jitter
    first, second = (r.at for r in emulator.requests if r.provider == "modelverse")
    assert second - first >= delay  # waited for real, not just counted


@pytest.mark.parametrize("style", ["object", "string", "error_message"])
async def test_a_vtrix_refusal_in_any_shape_is_never_sent_elsewhere(
    style: str, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    # error: {"code", "message"} (the seed), a plain string, {"code": <int>, "error_message"} (the client)
    emulator.vtrix_error_style = style
    emulator.fault("vtrix", "content_refused", message="Content moderation: the prompt was flagged")
    vtrix_first = write_config(tmp_path / "vtrix-first.toml")
    with vtrix_first.open("a", encoding="utf-8") as f:
        f.write(f'[models."{PAID_MODEL}"]\nroutes = ["vtrix", "modelverse", "wavespeed"]\n')
    async with open_stack(emulator, tmp_path, env={"KONTEXT_CONFIG": str(vtrix_first)}) as svc:
        with pytest.raises(JobFailed) as info:
            await svc.jobs.run(request())
        assert info.value.user_message.startswith("Vtrix's moderation refused this prompt or image.")
        job = await svc.jobs.get(info.value.job_id)
        assert job is not None and job.status == "refused" and job.reservation == "refunded"
        assert (await books(svc)).problems == []
    assert submits(emulator) == {"modelverse": 0, "wavespeed": 0, "vtrix": 1}


@dataclass(frozen=True)
class Recovered:
    """A fault the job gets past: retried on the same route or failed over to the next."""

    id: str
    faults: tuple[tuple[str, str, dict[str, Any]], ...]
    served_by: str
    calls: dict[str, int]
    provider: str | None = None
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    min_gap: float = 0.0  # seconds between the first two calls to the faulted route


def once(provider: str, kind: str, **options: Any) -> tuple[tuple[str, str, dict[str, Any]], ...]:
    return ((provider, kind, options),)


MV_AGAIN = {"modelverse": 2, "wavespeed": 0, "vtrix": 0}
TO_WAVESPEED = {"modelverse": 1, "wavespeed": 1, "vtrix": 0}
RECOVERED = [
    Recovered(
        # A busy answer puts the job back in line and holds the provider back for its Retry-After:
        # with only that route, the job waits it out; with another route free, it goes there at once.
        "429-retry-after-honoured",
        once("modelverse", "rate_limit", retry_after=0.3),
        "modelverse",
        MV_AGAIN,
        provider="modelverse",
        min_gap=0.3,
    ),
    Recovered("429-spills-over", once("modelverse", "rate_limit", retry_after=5), "wavespeed", TO_WAVESPEED),
    Recovered("503-retried", once("modelverse", "server_error", status=503), "modelverse", MV_AGAIN),
    # The task may exist after these: never sent to UModelverse again; the next route serves the job.
    Recovered("reset-failed-over", once("modelverse", "connection_reset"), "wavespeed", TO_WAVESPEED),
    Recovered(
        "slow-failed-over",
        once("modelverse", "hang", seconds=5),
        "wavespeed",
        TO_WAVESPEED,
        providers=SLOW_READ,
    ),
    Recovered("500-failed-over", once("modelverse", "server_error", status=500), "wavespeed", TO_WAVESPEED),
    Recovered(
        # The provider's own time limit ended the task: nothing came of it, another provider may serve.
        "wavespeed-task-timeout-failed-over",
        (("modelverse", "bad_key", {}), ("wavespeed", "end_state", {"status": "timeout"})),
        "vtrix",
        {"modelverse": 1, "wavespeed": 1, "vtrix": 1},
    ),
    Recovered("bad-key-failover", once("modelverse", "bad_key"), "wavespeed", TO_WAVESPEED),
    Recovered("out-of-balance-failover", once("modelverse", "out_of_balance"), "wavespeed", TO_WAVESPEED),
    Recovered("malformed-json-failover", once("modelverse", "malformed_json"), "wavespeed", TO_WAVESPEED),
    Recovered("expired-output-failover", once("modelverse", "expired_output"), "wavespeed", TO_WAVESPEED),
    Recovered("invalid-base64-failover", once("modelverse", "invalid_base64"), "wavespeed", TO_WAVESPEED),
    Recovered(
        "task-failed-failover",
        (("modelverse", "bad_key", {}), ("wavespeed", "task_failed", {})),
        "vtrix",
        {"modelverse": 1, "wavespeed": 1, "vtrix": 1},
    ),
    Recovered(
        # A poll that fails is the road, not the task: poll the same task again, never resubmit.
        "poll-503-same-task",
        once("vtrix", "server_error", status=503, on="poll"),
        "vtrix",
        {"modelverse": 0, "wavespeed": 0, "vtrix": 1},
        provider="vtrix",
    ),
]


@pytest.mark.usefixtures("fast_backoff")
@pytest.mark.parametrize("case", RECOVERED, ids=lambda c: c.id)
async def test_a_recovered_job_is_charged_once_at_the_route_that_served_it(
    case: Recovered, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    for provider, kind, options in case.faults:
        emulator.fault(provider, kind, **options)
    async with open_stack(emulator, tmp_path, providers=case.providers) as svc:
        result = await svc.jobs.run(request(provider=case.provider))
        assert result.provider == case.served_by and len(result.images) == 1
        assert submits(emulator) == case.calls
        assert result.charged_to == "guild" and result.charged_micros == PRICES[case.served_by]
        b = await books(svc)
        assert b.problems == []
        assert (b.guild_spent, b.usage_cost, b.succeeded, b.failed) == (
            PRICES[case.served_by],
            PRICES[case.served_by],
            1,
            0,
        )
    if case.min_gap:
        first, second = [r.at for r in emulator.requests if r.provider == case.served_by][:2]
        assert second - first >= case.min_gap


@pytest.mark.parametrize(
    ("kind", "status"), [("content_refused", "refused"), ("bad_key", "failed")], ids=["refused", "failed"]
)
async def test_free_images_come_back_after_a_failure(
    kind: str, status: str, emulator: ProviderEmulator, tmp_path: Path
) -> None:
    emulator.fault("*", kind, times=-1)
    async with open_stack(emulator, tmp_path, budget=None) as svc:
        with pytest.raises(JobFailed) as info:
            await svc.jobs.run(request(model=FREE_MODEL))
        assert info.value.user_message.endswith("; you were not charged)")
        job = await svc.jobs.get(info.value.job_id)
        assert job.status == status and job.charged_to == "free"
        b = await books(svc)
        assert b.problems == [] and b.free_used == {}
        quota = await svc.accounts.quota(MEMBER, GUILD)
        pro = next(f for f in quota.status.free if f.model == FREE_MODEL)
        assert pro.remaining == pro.limit == 5
