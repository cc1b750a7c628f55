"""Provider accounts: how many tasks each runs at once, how long a task takes, and what it counted.

A real account runs a limited number of tasks at once (a default WaveSpeed account: 2) and answers
HTTP 429 beyond. ``Account.concurrency`` (None = unlimited) is that limit: a submit that would open
one task too many gets the provider's busy answer instead and no task. A task is open from its
submit until it is done: for Vtrix and WaveSpeed until its ``latency`` has passed (or it was seen
finished; a never_finish task stays open), for UModelverse while its request is being answered.
``Account.latency`` (None = the emulator-wide ``latency``) is that task duration.

Counters (cleared by ``reset``, the knobs are kept): ``busy`` answers given, ``peak_open`` tasks
open at once, ``submits`` accepted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tests.emulator.base import PROVIDERS
from tests.emulator.tasks import Task


@dataclass
class Account:
    provider: str
    concurrency: int | None = None
    latency: float | None = None
    retry_after: float | None = None  # seconds, sent as Retry-After on busy answers
    busy: int = 0
    peak_open: int = 0
    submits: int = 0
    _tasks: dict[str, Task] = field(default_factory=dict, repr=False)
    _requests: int = field(default=0, repr=False)

    def open_now(self, default_latency: float) -> int:
        """Tasks open at this moment (finished ones are dropped from the count here)."""
        latency = self.duration(default_latency)
        now = time.monotonic()
        for task_id, task in list(self._tasks.items()):
            done = task.finished is not None or (task.fate != "never" and now - task.created >= latency)
            if done:
                del self._tasks[task_id]
        return len(self._tasks) + self._requests

    def duration(self, default_latency: float) -> float:
        return default_latency if self.latency is None else self.latency

    def snapshot(self, default_latency: float) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "latency": self.duration(default_latency),
            "retry_after": self.retry_after,
            "open": self.open_now(default_latency),
            "peak_open": self.peak_open,
            "busy": self.busy,
            "submits": self.submits,
        }


class Accounts:
    """One ``Account`` per provider, and the admission check each submit goes through."""

    def __init__(self) -> None:
        self.by_provider = {name: Account(name) for name in PROVIDERS}

    def __getitem__(self, provider: str) -> Account:
        return self.by_provider[provider]

    def configure(self, provider: str, **knobs: Any) -> Account:
        """Set ``concurrency``, ``latency`` and/or ``retry_after`` (None clears a knob)."""
        account = self.by_provider.get(provider)
        if account is None:
            raise ValueError(f"unknown provider {provider!r}")
        unknown = set(knobs) - {"concurrency", "latency", "retry_after"}
        if unknown:
            raise ValueError(f"unknown account knob(s) {', '.join(sorted(unknown))}")
        concurrency = knobs.get("concurrency", account.concurrency)
        if concurrency is not None and (isinstance(concurrency, bool) or int(concurrency) < 1):
            raise ValueError("concurrency must be a positive count or None")
        for name in ("latency", "retry_after"):
            value = knobs.get(name, getattr(account, name))
            if value is not None and float(value) < 0:
                raise ValueError(f"{name} must be at least 0 or None")
        account.concurrency = None if concurrency is None else int(concurrency)
        for name in ("latency", "retry_after"):
            if name in knobs:
                setattr(account, name, None if knobs[name] is None else float(knobs[name]))
        return account

    def reset_counters(self) -> None:
        for account in self.by_provider.values():
            account.busy = account.peak_open = account.submits = 0

    def admit(self, provider: str, default_latency: float) -> bool:
        """Room for one more task? False counts a busy answer (the caller gives it)."""
        account = self.by_provider[provider]
        if account.concurrency is not None and account.open_now(default_latency) >= account.concurrency:
            account.busy += 1
            return False
        account.submits += 1
        return True

    def opened(self, task: Task, default_latency: float) -> None:
        """A task was created: it holds a slot until it is done (counted even if that is at once)."""
        account = self.by_provider[task.provider]
        account.peak_open = max(account.peak_open, account.open_now(default_latency) + 1)
        account._tasks[task.id] = task

    def request_started(self, provider: str, default_latency: float) -> None:
        """A synchronous generation began; it holds a slot until ``request_ended``."""
        account = self.by_provider[provider]
        account.peak_open = max(account.peak_open, account.open_now(default_latency) + 1)
        account._requests += 1

    def request_ended(self, provider: str) -> None:
        self.by_provider[provider]._requests -= 1
