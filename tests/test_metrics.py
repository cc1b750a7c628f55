"""KONTEXT_HTTP: /metrics and /healthz over real HTTP, after real jobs through the emulator, on a
real database of each backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.catalog import Catalog
from bot.client import KontextBot
from bot.config import load_settings
from bot.errors import ConfigError
from bot.metrics import Metrics
from bot.services import Services, open_services
from tests.emulator import make_png
from tests.test_jobs import GUILD, PRO, PRO_T2I, USER, member, settings_for


@pytest.fixture
async def svc(tmp_path, emulator, db_target) -> AsyncIterator[Services]:
    settings = replace(settings_for(tmp_path, emulator, db_target), http_addr=("127.0.0.1", 0))
    async with open_services(settings, serve_http=True) as services:
        yield services


async def scrape(svc: Services) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: {(name, labels): value}."""
    assert svc.status_server is not None
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{svc.status_server.url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def health(svc: Services) -> tuple[int, dict]:
    assert svc.status_server is not None
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{svc.status_server.url}/healthz")
    assert r.headers["content-type"].startswith("application/json") and r.text.count("\n") == 1
    return r.status_code, json.loads(r.text)


async def test_a_job_shows_in_the_counters_and_histograms(svc):
    await svc.accounts.set_budget(GUILD, "5.00")
    result = await svc.jobs.run(member(PRO_T2I, provider="wavespeed", n=2))
    job = await svc.jobs.get(result.job_id)
    s = await scrape(svc)
    labels = {"model": PRO_T2I, "provider": "wavespeed"}
    assert value(s, "kontext_jobs_total", **labels, status="succeeded") == 1
    assert value(s, "kontext_job_duration_seconds_count", **labels) == 1
    assert 0 < value(s, "kontext_job_duration_seconds_sum", **labels) < 60
    assert value(s, "kontext_job_duration_seconds_bucket", **labels, le="+Inf") == 1
    assert value(s, "kontext_job_queue_seconds_count", provider="wavespeed") == 1
    assert value(s, "kontext_spend_usd_total", **labels) == pytest.approx(job.actual_micros / 1e6)
    assert job.actual_micros > 0
    # One submit and at least one poll, every one answered.
    assert value(s, "kontext_provider_requests_total", provider="wavespeed", outcome="ok") >= 2
    assert value(s, "kontext_queue_depth") == 0 and value(s, "kontext_jobs_running") == 0
    # No member or guild id in any label.
    label_values = {v for _, labels in s for _, v in labels}
    assert str(USER) not in label_values and str(GUILD) not in label_values


async def test_a_busy_answer_and_a_failover_are_counted_for_their_provider(svc, emulator):
    emulator.fault("wavespeed", "rate_limit", retry_after=0.1)
    await svc.jobs.run(member(PRO, images=[make_png()], provider="wavespeed"))
    emulator.fault("modelverse", "bad_key")  # the first route refuses its key: on to the next one
    failed_over = await svc.jobs.run(member(PRO, images=[make_png()]))
    assert failed_over.provider == "wavespeed"
    s = await scrape(svc)
    assert value(s, "kontext_provider_requests_total", provider="wavespeed", outcome="rate_limited") == 1
    assert value(s, "kontext_provider_requests_total", provider="modelverse", outcome="client_error") == 1
    assert value(s, "kontext_provider_requests_total", provider="modelverse", outcome="failover") == 1
    assert value(s, "kontext_jobs_total", model=PRO, provider="wavespeed", status="succeeded") == 2
    assert value(s, "kontext_jobs_total", model=PRO, provider="modelverse", status="failed") == 0


async def test_failed_and_refused_jobs_are_counted_by_status(svc, emulator):
    emulator.fault("vtrix", "content_refused")
    with pytest.raises(Exception, match="refused"):
        await svc.jobs.run(member(PRO_T2I, provider="vtrix"))
    emulator.fault("vtrix", "task_failed")
    with pytest.raises(Exception):  # noqa: B017 -- the job's failure, whatever its wording
        await svc.jobs.run(member(PRO_T2I, provider="vtrix"))
    s = await scrape(svc)
    labels = {"model": PRO_T2I, "provider": "vtrix"}
    assert value(s, "kontext_jobs_total", **labels, status="refused") == 1
    assert value(s, "kontext_jobs_total", **labels, status="failed") == 1
    assert value(s, "kontext_spend_usd_total", **labels) == 0
    assert value(s, "kontext_job_duration_seconds_count", **labels) == 0  # generation time: successes


async def test_the_queue_depth_is_read_from_the_database_at_each_scrape(svc):
    # Submitted without a worker that claims them (no Discord face here): they wait in the queue.
    for prompt in ("one", "two", "three"):
        await svc.jobs.submit(member(PRO_T2I, prompt=prompt))
    assert value(await scrape(svc), "kontext_queue_depth") == 3


async def test_healthz_is_ok_while_the_database_answers_and_503_once_it_does_not(svc):
    assert await health(svc) == (200, {"status": "ok"})
    await svc.db.close()
    status, body = await health(svc)
    assert status == 503 and body["status"] == "unavailable"
    assert body["reason"].startswith("the database is unreachable (")
    # /metrics still answers (the last figures) so a scraper sees the process is alive.
    assert "kontext_queue_depth" in {name for name, _ in await scrape(svc)}


async def test_the_address_is_checked_and_a_busy_port_is_a_clear_error(tmp_path, svc):
    assert load_settings({"KONTEXT_HTTP": "0.0.0.0:8080"}).http_addr == ("0.0.0.0", 8080)
    assert load_settings({"KONTEXT_HTTP": "[::1]:9100"}).http_addr == ("::1", 9100)
    assert load_settings({}).http_addr is None
    for bad in ("8080", "localhost", "host:http", "host:70000", ":8080"):
        with pytest.raises(ConfigError, match="KONTEXT_HTTP must be host:port"):
            load_settings({"KONTEXT_HTTP": bad})
    assert svc.status_server is not None
    taken = replace(svc.settings, http_addr=("127.0.0.1", svc.status_server.port))
    with pytest.raises(ConfigError, match=r"KONTEXT_HTTP: cannot listen on 127\.0\.0\.1:\d+"):
        async with open_services(replace(taken, db_path=str(tmp_path / "other.db")), serve_http=True):
            pass


async def test_one_shot_commands_do_not_serve_it(tmp_path, emulator):
    settings = replace(settings_for(tmp_path, emulator), http_addr=("127.0.0.1", 0))
    async with open_services(settings) as services:
        assert services.status_server is None


async def test_a_process_that_serves_discord_is_not_healthy_before_its_gateway_connects(svc):
    bot = KontextBot(svc)  # built, not started: no gateway yet
    try:
        status, body = await health(svc)
        assert (status, body["reason"]) == (503, "the Discord gateway is not connected")
    finally:
        await bot.close()


def test_the_readme_documents_every_metric():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    names = {m.name for m in Metrics(Catalog.default()).registry.collect()}
    assert len(names) == 7
    for name in names:
        shown = name + ("_total" if not name.endswith(("_seconds", "_depth", "_running")) else "")
        assert f"| `{shown}` |" in readme, shown
