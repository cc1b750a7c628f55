"""What the bot counts for operators, in the Prometheus text format (served on /metrics by
bot/http_server.py when KONTEXT_HTTP is set).

One ``Metrics`` per process, owned by the services (its own CollectorRegistry: two services in one
test process never add to each other's figures). The instrumented points record outcomes where they
are decided: bot/execution.py (how a job ended, its generation time and cost, failovers),
bot/providers/http.py (every API call's outcome), bot/worker.py (queue wait). The queue's depth is
read from the database at each scrape, so it counts every process's jobs.

Label values are bounded: models are the catalog's ids and providers the catalog's names (anything
else, e.g. a model removed from the catalog while jobs of it waited, is ``other``); no user or guild
id is ever a label.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from bot.catalog import PROVIDERS, SANDBOX, Catalog
from storage import Database, waiting

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
JOB_STATUSES = ("succeeded", "failed", "refused")
# kontext_provider_requests_total's outcomes: one per API call (submit or poll), and "failover"
# once per job sent on from that provider to its next route.
REQUEST_OUTCOMES = (
    "ok",
    "rate_limited",
    "client_error",
    "server_error",
    "timeout",
    "network_error",
    "error",
    "failover",
)
GENERATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
QUEUE_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
SCRAPE_DB_TIMEOUT = 2.0  # seconds a scrape waits for the queue's depth before showing the last one


class Metrics:
    def __init__(self, catalog: Catalog, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._models = frozenset(m.id for m in catalog.models)
        self._providers = frozenset((*PROVIDERS, SANDBOX))
        r = self.registry
        self.jobs = Counter(
            "kontext_jobs",
            "Jobs that ended in this process's worker, by model, provider and status.",
            ["model", "provider", "status"],
            registry=r,
        )
        self.job_duration = Histogram(
            "kontext_job_duration_seconds",
            "Generation time of succeeded jobs: from sending to the provider to the images in hand.",
            ["model", "provider"],
            buckets=GENERATION_BUCKETS,
            registry=r,
        )
        self.job_queue = Histogram(
            "kontext_job_queue_seconds",
            "Seconds from a job's submission to its first claim by a worker, by the provider granted.",
            ["provider"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "kontext_queue_depth", "Jobs waiting in the queue, every process's (read at scrape).", registry=r
        )
        self.jobs_running = Gauge(
            "kontext_jobs_running", "Jobs running, every process's (read at scrape).", registry=r
        )
        self.provider_requests = Counter(
            "kontext_provider_requests",
            "Provider API calls by outcome (rate_limited: 429 or a busy answer), and failovers.",
            ["provider", "outcome"],
            registry=r,
        )
        self.spend = Counter(
            "kontext_spend_usd",
            "What succeeded jobs cost at the provider, in USD (free ones included).",
            ["model", "provider"],
            registry=r,
        )

    def model(self, model: str | None) -> str:
        return model if model in self._models else OTHER

    def provider(self, provider: str | None) -> str:
        return provider if provider in self._providers else OTHER

    # --- what the instrumented points call -------------------------------------------------------

    def job_ended(
        self,
        model: str,
        provider: str | None,
        status: str,
        *,
        seconds: float | None = None,
        cost_micros: int = 0,
    ) -> None:
        m, p = self.model(model), self.provider(provider)
        self.jobs.labels(m, p, status if status in JOB_STATUSES else OTHER).inc()
        if seconds is not None:
            self.job_duration.labels(m, p).observe(max(seconds, 0.0))
        if cost_micros > 0:
            self.spend.labels(m, p).inc(cost_micros / 1_000_000)

    def queued_for(self, provider: str | None, seconds: float) -> None:
        self.job_queue.labels(self.provider(provider)).observe(max(seconds, 0.0))

    def request(self, provider: str, outcome: str) -> None:
        self.provider_requests.labels(
            self.provider(provider), outcome if outcome in REQUEST_OUTCOMES else OTHER
        ).inc()

    # --- scraping --------------------------------------------------------------------------------

    async def refresh(self, db: Database) -> None:
        """Read the queue's depth for this scrape; a database that does not answer leaves the last
        figures (/healthz is where it shows)."""
        try:
            depth = await asyncio.wait_for(waiting.depth(db), SCRAPE_DB_TIMEOUT)
        except Exception as exc:
            log.debug("metrics: queue depth not read (%s)", type(exc).__name__)
            return
        self.queue_depth.set(depth["queued"])
        self.jobs_running.set(depth["running"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
