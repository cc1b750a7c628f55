"""The real ``kontext-bot run`` process with KONTEXT_HTTP set: /healthz turns 200 once it is on the
fake Discord's gateway, /metrics answers in the Prometheus format, every log line is JSON, and
SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx

from tests.e2e.test_process import STARTUP, Bot, Fake, fake_discord_env, server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_run_serves_healthz_and_metrics_and_logs_json(tmp_path):
    port = free_port()
    async with (
        server("tests.fake_discord", "FAKE_DISCORD_URL", tmp_path / "fake.log") as fake_url,
        httpx.AsyncClient(base_url=fake_url) as http,
    ):
        fake = Fake(http)
        state = await fake.get("state")
        env = await fake_discord_env(
            fake,
            KONTEXT_DB=str(tmp_path / "kontext.db"),
            KONTEXT_HTTP=f"127.0.0.1:{port}",
            KONTEXT_LOG_FORMAT="json",
        )
        bot = Bot(env, tmp_path / "bot.log")
        await bot.start()
        try:
            await fake.wait_ready(bot)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as status:
                async with asyncio.timeout(STARTUP):  # connected to the fake; on_ready follows at once
                    while (r := await status.get("/healthz")).status_code != 200:
                        assert r.status_code == 503, r.text
                        await asyncio.sleep(0.05)
                assert r.json() == {"status": "ok"}
                metrics = await status.get("/metrics")
                assert metrics.status_code == 200 and "\nkontext_queue_depth 0.0\n" in metrics.text
                assert "# TYPE kontext_job_duration_seconds histogram" in metrics.text
        finally:
            code = await bot.stop()
        assert code == 0, bot.tail()
    lines = [json.loads(line) for line in bot.log.read_text().splitlines()]  # JSON, every one
    messages = [line["message"] for line in lines]
    assert f"serving /metrics and /healthz on http://127.0.0.1:{port}" in messages
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert state["token"] not in bot.log.read_text()
