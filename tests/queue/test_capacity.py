"""The rule that learns how many tasks a provider account runs at once (bot/capacity.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import capacity
from storage.capacity import ProviderCapacity

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_burst_of_busy_answers_walks_the_limit_down_to_what_the_account_took():
    # 8 sent at once to an account that runs 2: the six refusals arrive while 8, 7, ... 3 are open.
    state = capacity.initial("wavespeed", 8)
    for open_now in (8, 7, 6, 5, 4, 3):
        state = capacity.on_busy(state, open_now, T0)
    assert state.limit == 2
    assert state.busy_total == 6
    assert state.probe_after == T0 + capacity.PROBE_INTERVAL


def test_the_limit_never_drops_below_one_and_retry_after_pauses_the_provider():
    state = capacity.on_busy(capacity.initial("vtrix", 4), 1, T0, retry_after=12)
    assert state.limit == 1
    assert state.paused(T0 + timedelta(seconds=11)) and not state.paused(T0 + timedelta(seconds=12))
    # A later, shorter Retry-After does not cut an earlier, longer pause short.
    state = capacity.on_busy(state, 1, T0 + timedelta(seconds=1), retry_after=2)
    assert state.paused_until == T0 + timedelta(seconds=12)
    # An absurd Retry-After is capped.
    long = capacity.on_busy(capacity.initial("vtrix", 4), 2, T0, retry_after=86_400)
    assert long.paused_until == T0 + capacity.MAX_PAUSE


def test_growth_is_one_step_per_probe_interval_only_while_work_waits():
    state = capacity.on_busy(capacity.initial("wavespeed", 8), 3, T0)  # limit 2
    assert capacity.on_success(state, True, T0 + timedelta(seconds=30)) == state  # too soon
    assert capacity.on_success(state, False, T0 + timedelta(seconds=90)) == state  # nothing waits
    grown = capacity.on_success(state, True, T0 + timedelta(seconds=61))
    assert grown.limit == 3 and grown.probe_after == T0 + timedelta(seconds=61) + capacity.PROBE_INTERVAL
    assert capacity.on_success(grown, True, T0 + timedelta(seconds=62)) == grown  # one step at a time


def test_the_ceiling_bounds_growth_and_a_lower_ceiling_applies_at_once():
    top = ProviderCapacity("wavespeed", limit=4, ceiling=4)
    assert capacity.on_success(top, True, T0) == top
    assert capacity.with_ceiling(top, 2).limit == 2
    raised = capacity.with_ceiling(top, 10)
    assert raised.limit == 4 and raised.ceiling == 10  # reached again by probing, not at once
