"""Soak: N jobs (default 5,000) through the real JobService with random provider faults, ~50 at once.

Every job is a member's: free FLUX.1 Kontext [pro] images until their quota is spent, then the guild
budget; half of them on the failover chain (UModelverse -> WaveSpeedAI -> Vtrix), the rest forced
onto one of the task APIs (so polls, and no failover, are exercised). Before each job a fault is
armed with probability ``--fault-rate``, picked by weight from the emulator's fault kinds (429, 5xx,
resets, slow answers, bad JSON, refusals, failed and never-ending tasks, bad outputs...); armed
faults hit whichever call comes next, so which job meets which fault is up to the interleaving.

It reports what happened to the jobs, whether the books balance (``storage.check``), and resident
memory at the end against the baseline taken after warm-up (the first 10% of jobs).
The emulator runs in its own process (bench.common.emulator), so its memory is not counted.

    python -m bench.soak [--jobs 5000] [--concurrency 50] [--fault-rate 0.25] [--seed 1] [--json]

Exit status 1 when a job is unaccounted for, the books do not balance, or memory grew over 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

import storage
from bench.common import emulator, rss_mb
from bot.config import load_settings
from bot.errors import UserError
from bot.jobs import JobFailed, JobRequest
from bot.services import open_services
from tests.emulator import PROVIDERS, ProviderEmulator, make_png

GUILD = 9001
MODELS = ("black-forest-labs/flux-kontext-pro", "black-forest-labs/flux-kontext-max")
MAX_GROWTH = 1.10
TASK_APIS = ("vtrix", "wavespeed")
# (kind, options, providers it may be armed for, weight)
FAULTS: tuple[tuple[str, dict[str, Any], tuple[str, ...], float], ...] = (
    ("rate_limit", {"retry_after": 0.05}, PROVIDERS, 3),
    ("rate_limit", {}, PROVIDERS, 1),  # the client's own jittered backoff
    ("server_error", {"status": 500}, PROVIDERS, 1),
    ("server_error", {"status": 502}, PROVIDERS, 1),
    ("server_error", {"status": 503}, PROVIDERS, 1),
    ("server_error", {"status": 504}, PROVIDERS, 1),
    ("server_error", {"status": 503, "on": "poll"}, TASK_APIS, 1),
    ("connection_reset", {}, PROVIDERS, 2),
    ("connection_reset", {"on": "poll"}, TASK_APIS, 1),
    ("hang", {"seconds": 2}, PROVIDERS, 1),  # read_timeout is 0.3 s
    ("malformed_json", {}, PROVIDERS, 1),
    ("wrong_content_type", {}, PROVIDERS, 1),
    ("bad_key", {}, PROVIDERS, 1),
    ("out_of_balance", {}, PROVIDERS, 1),
    ("content_refused", {}, PROVIDERS, 2),
    ("task_failed", {}, PROVIDERS, 2),
    ("never_finish", {"seconds": 5}, PROVIDERS, 0.3),  # job_deadline is 2 s
    ("expired_output", {}, PROVIDERS, 1),
    ("not_image", {}, PROVIDERS, 1),
    ("huge_output", {"size_mb": 60}, PROVIDERS, 0.3),
    ("invalid_base64", {}, ("modelverse",), 0.5),
    ("b64_output", {}, ("modelverse",), 0.5),
    ("completed_on_create", {}, ("vtrix",), 0.5),
    ("nsfw", {}, ("wavespeed",), 0.5),  # refused where the channel is not age-restricted
)
CONFIG = """\
[limits]
allow_private_results = true
job_deadline = 2.0
max_retries = 1
max_queue = 1000
{providers}
"""
PROVIDER_CONFIG = """\
[providers.{name}]
poll_interval = 0.05
read_timeout = 0.3
connect_timeout = 2.0
max_concurrency = 64
"""


@dataclass
class SoakReport:
    jobs: int
    concurrency: int
    fault_rate: float
    faults_armed: int
    succeeded: int
    failed: int  # JobFailed: refused by a provider or failed (any route)
    refunded: int  # jobs whose reservation the ledger shows refunded
    settled: int
    unaccounted: int  # outcomes other than a result or JobFailed (crashes, queue full...)
    failures_by_code: dict[str, int]
    ledger_problems: list[str]
    unfinished: int
    rss_warm_mb: float
    rss_end_mb: float
    elapsed_s: float
    log_errors: int
    errors: list[str] = field(default_factory=list)

    @property
    def growth(self) -> float:
        return self.rss_end_mb / self.rss_warm_mb

    @property
    def accounted(self) -> bool:
        return (
            self.succeeded + self.failed == self.jobs
            and self.unaccounted == 0
            and self.refunded == self.failed
            and self.settled == self.succeeded
            and self.unfinished == 0
        )

    def ok(self, check_memory: bool = True) -> bool:
        memory = self.growth <= MAX_GROWTH or not check_memory
        return self.accounted and not self.ledger_problems and memory

    def text(self) -> str:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.failures_by_code.items(), key=lambda kv: -kv[1]))
        lines = [
            f"soak: {self.jobs} jobs, {self.concurrency} at once, {self.faults_armed} faults armed "
            f"(rate {self.fault_rate:.0%}), {self.elapsed_s:.1f} s ({self.jobs / self.elapsed_s:.0f} jobs/s)",
            f"  succeeded {self.succeeded}, failed {self.failed} ({codes or 'none'}), "
            f"refunded {self.refunded}, settled {self.settled}, unaccounted {self.unaccounted}, "
            f"unfinished {self.unfinished}",
            f"  ledger check: {'balanced' if not self.ledger_problems else self.ledger_problems[:5]}",
            f"  memory: RSS {self.rss_end_mb:.1f} MiB at the end vs {self.rss_warm_mb:.1f} MiB after warm-up "
            f"(baseline): {self.growth - 1:+.1%} (limit +{MAX_GROWTH - 1:.0%})",
            f"  error log lines: {self.log_errors}",
        ]
        lines += [f"  unexpected: {e}" for e in self.errors[:5]]
        return "\n".join(lines)


class _Count(logging.Handler):
    """Counts log records by level instead of printing thousands of retry warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.levels: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.levels[record.levelname] += 1


def _settings_env(url: str, workdir: Path) -> dict[str, str]:
    config = workdir / "soak.toml"
    providers = "".join(PROVIDER_CONFIG.format(name=name) for name in PROVIDERS)
    config.write_text(CONFIG.format(providers=providers), encoding="utf-8")
    env = {"KONTEXT_DB": str(workdir / "kontext.db"), "KONTEXT_CONFIG": str(config)}
    for name in PROVIDERS:
        env[f"{name.upper()}_API_KEY"] = ProviderEmulator.KEYS[name]
        env[f"{name.upper()}_BASE_URL"] = url
    return env


def _job(i: int, rng: random.Random, inputs: list[bytes]) -> JobRequest:
    route = rng.random()
    return JobRequest(
        model=MODELS[i % 2],
        prompt=f"soak job {i}: make the sky purple",
        images=[inputs[i % len(inputs)]],
        provider=None if route < 0.5 else TASK_APIS[int(route < 0.75)],
        user_id=10_000 + rng.randrange(200),
        guild_id=GUILD,
        channel_id=1,
        source="slash",
        nsfw_allowed=rng.random() < 0.8,
    )


def _pick_fault(rng: random.Random) -> dict[str, Any]:
    kind, options, providers, _ = rng.choices(FAULTS, weights=[f[3] for f in FAULTS])[0]
    return {"provider": rng.choice(providers), "kind": kind, "times": 1, **options}


async def soak(
    url: str,
    *,
    jobs: int = 5000,
    concurrency: int = 50,
    fault_rate: float = 0.25,
    seed: int = 1,
    workdir: Path | None = None,
) -> SoakReport:
    """Run the soak against a provider emulator at ``url`` (its own process, ideally)."""
    rng = random.Random(seed)
    counter = _Count()
    root = logging.getLogger()
    root.addHandler(counter)
    tmp = tempfile.TemporaryDirectory(prefix="kontext-soak-") if workdir is None else None
    where = Path(tmp.name) if tmp is not None else workdir
    assert where is not None
    inputs = [make_png(256, 256, (i * 30, 255 - i * 30, 90)) for i in range(8)]
    outcomes: Counter[str] = Counter()
    codes: Counter[str] = Counter()
    errors: list[str] = []
    armed = 0
    warm_at = max(1, jobs // 10)
    rss_warm = 0.0
    done = 0
    try:
        settings = load_settings(_settings_env(url, where))
        async with open_services(settings) as svc, httpx.AsyncClient(base_url=url, timeout=10) as control:
            await svc.accounts.set_budget(GUILD, "100000")
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(jobs):
                queue.put_nowait(i)
            started = time.monotonic()

            async def worker() -> None:
                nonlocal armed, done, rss_warm
                while not queue.empty():
                    i = queue.get_nowait()
                    req = _job(i, rng, inputs)
                    if rng.random() < fault_rate:
                        (await control.post("/_emulator/fault", json=_pick_fault(rng))).raise_for_status()
                        armed += 1
                    try:
                        result = await svc.jobs.run(req)
                        outcomes["succeeded" if result.images else "empty"] += 1
                    except JobFailed as exc:
                        outcomes["failed"] += 1
                        codes[exc.cause.code] += 1
                    except UserError as exc:
                        outcomes["refused at the door"] += 1
                        errors.append(f"job {i}: {exc.code}: {exc.user_message}")
                    except Exception as exc:  # the soak exists to find these
                        outcomes["crashed"] += 1
                        errors.append(f"job {i}: {type(exc).__name__}: {exc}")
                    done += 1
                    if done == warm_at:
                        gc.collect()
                        rss_warm = rss_mb()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.monotonic() - started
            gc.collect()
            rss_end = rss_mb()
            problems = await storage.check(svc.db)
            records = await storage.list_jobs(svc.db, limit=jobs + 100)
    finally:
        root.removeHandler(counter)
        if tmp is not None:
            tmp.cleanup()
    reservations = Counter(r.reservation for r in records)
    return SoakReport(
        jobs=jobs,
        concurrency=concurrency,
        fault_rate=fault_rate,
        faults_armed=armed,
        succeeded=outcomes["succeeded"],
        failed=outcomes["failed"],
        refunded=reservations["refunded"],
        settled=reservations["settled"],
        unaccounted=jobs - outcomes["succeeded"] - outcomes["failed"],
        failures_by_code=dict(codes),
        ledger_problems=problems,
        unfinished=sum(1 for r in records if not r.finished),
        rss_warm_mb=rss_warm,
        rss_end_mb=rss_end,
        elapsed_s=elapsed,
        log_errors=counter.levels["ERROR"] + counter.levels["CRITICAL"],
        errors=errors,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--fault-rate", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)  # counted by the report, not printed
    with emulator() as emu:
        report = asyncio.run(
            soak(
                emu.url,
                jobs=args.jobs,
                concurrency=args.concurrency,
                fault_rate=args.fault_rate,
                seed=args.seed,
            )
        )
    if args.json:
        print(json.dumps({**asdict(report), "growth": report.growth, "ok": report.ok()}))
    else:
        print(report.text())
    return 0 if report.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
