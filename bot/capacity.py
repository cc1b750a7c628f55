"""How many tasks a provider account really runs at once, learned from its answers.

``max_concurrency`` in the config is a ceiling, not a promise: a default WaveSpeedAI account runs two
tasks and answers 429 ("too many tasks") beyond. The queue sends a provider at most ``limit`` jobs at
once and adjusts the limit from what the account says:

- **Decrease at once, to what was seen working.** A busy answer while ``open`` jobs (this one
  included) were with the provider means the account took at most ``open - 1``: the limit drops to
  that (never below 1) and no probe is tried for ``PROBE_INTERVAL``. A burst of refusals therefore
  walks the limit down to the real figure in one round instead of halving it into the ground.
- **Increase slowly, only when it could matter.** After a success, while work is waiting for this
  provider, the limit grows by one at most once per ``PROBE_INTERVAL`` (additive increase), up to the
  ceiling. A probe that fails costs one busy answer and puts the limit back.
- **Retry-After pauses the provider for everyone**: no job is sent there until it has passed. A busy
  answer with nothing else running there (the account is busy with work from elsewhere) pauses it
  for ``IDLE_BUSY_PAUSE`` too, so the queue does not ask again at once. The job that heard "busy"
  keeps its place and may go to another route straight away.

The state lives in the database (``provider_state``), so every process shares it and a restart
remembers it. These functions are pure: storage applies them inside the transaction that reads and
writes the row, which is what makes the update safe across processes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from storage.queue import ProviderCapacity

PROBE_INTERVAL = timedelta(seconds=60)
MAX_PAUSE = timedelta(minutes=5)  # a provider asking for longer is still tried again after this
IDLE_BUSY_PAUSE = 1.0  # seconds: busy with nothing of ours running there


def initial(provider: str, ceiling: int) -> ProviderCapacity:
    return ProviderCapacity(provider, max(1, ceiling), max(1, ceiling))


def with_ceiling(state: ProviderCapacity, ceiling: int) -> ProviderCapacity:
    """The configured ceiling changed (or a process with another config started): the limit never
    exceeds it; a raised ceiling is reached again by probing, not at once."""
    ceiling = max(1, ceiling)
    return replace(state, ceiling=ceiling, limit=min(state.limit, ceiling))


def on_busy(
    state: ProviderCapacity, open_now: int, now: datetime, retry_after: float | None = None
) -> ProviderCapacity:
    limit = max(1, min(state.limit, open_now - 1))
    paused = state.paused_until
    if (retry_after is None or retry_after <= 0) and open_now <= 1:
        retry_after = IDLE_BUSY_PAUSE
    if retry_after is not None and retry_after > 0:
        until = now + min(timedelta(seconds=retry_after), MAX_PAUSE)
        paused = until if paused is None or until > paused else paused
    return replace(
        state,
        limit=limit,
        paused_until=paused,
        probe_after=now + PROBE_INTERVAL,
        busy_total=state.busy_total + 1,
    )


def on_success(state: ProviderCapacity, waiting: bool, now: datetime) -> ProviderCapacity:
    if not waiting or state.limit >= state.ceiling:
        return state
    if state.probe_after is not None and now < state.probe_after:
        return state
    return replace(state, limit=state.limit + 1, probe_after=now + PROBE_INTERVAL)
