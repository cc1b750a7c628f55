"""Random sequences of reserve, settle, refund, clock moves and admin changes, against a model.

After every step: the storage's decision (who pays, or refused) matches a plain model of the
rules; every figure a user can see matches the model; and ``check`` finds the books balanced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import storage
from storage.periods import Period, period_at

GUILD = 100
ART, PHOTO = 501, 502
USERS = {1: (ART,), 2: (PHOTO, ART), 3: ()}  # user -> role ids
MODELS = {"a": (100, 2), "b": (250, 0)}  # model -> (price per image, catalog free quota)
PERIODS = ("day", "week", "month")
START = datetime(2025, 1, 30, 18, tzinfo=UTC)  # near a month end, so rollovers come quickly
FOREVER = timedelta(days=36500)


@dataclass
class ModelJob:
    user: int
    model: str
    n: int
    estimate: int
    charged_to: str
    team: str | None
    day: datetime
    state: str = "open"  # open | settled | refunded | reversed
    images: int = 0  # kept free images once settled
    cost: int = 0  # kept micros once settled (at most the estimate)

    def net_images(self) -> int:
        if self.charged_to != "free" or self.state in ("refunded", "reversed"):
            return 0
        return self.n if self.state == "open" else self.images

    def net_micros(self) -> int:
        if self.charged_to == "free" or self.state in ("refunded", "reversed"):
            return 0
        return self.estimate if self.state == "open" else self.cost


def _in(period: Period, moment: datetime) -> bool:
    return period.start <= moment < period.end


class Books(RuleBasedStateMachine):
    new_target: Callable[[], str]  # a fresh database per example, on the backend under test

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db = self.run(storage.open_database(self.new_target()))
        self.now = START
        self.jobs: dict[str, ModelJob] = {}
        self.grants: list[tuple[int, str, datetime, int]] = []
        self.free = {m: (free, "month") for m, (_, free) in MODELS.items()}
        self.budget, self.budget_period = 0, "month"
        self.cap: int | None = None
        self.cap_period = "month"
        self.teams: dict[int, tuple[str, int, str]] = {}  # role -> (name, micros, period), in creation order

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.db.close())
        self.loop.close()

    # --- the model ------------------------------------------------------------------------------

    def free_used(self, user: int, model: str, period: Period) -> tuple[int, int]:
        used = sum(
            j.net_images()
            for j in self.jobs.values()
            if (j.user, j.model) == (user, model) and _in(period, j.day)
        )
        granted = sum(k for u, m, d, k in self.grants if (u, m) == (user, model) and _in(period, d))
        return used, granted

    def spent(self, period: Period, *, user: int | None = None, payer: str | None = None) -> int:
        return sum(
            j.net_micros()
            for j in self.jobs.values()
            if _in(period, j.day)
            and (user is None or j.user == user)
            and (payer is None or j.charged_to == payer)
            and j.charged_to != "free"
        )

    def decide(self, user: int, model: str, n: int) -> str | None:
        price, _ = MODELS[model]
        estimate = price * n
        images, period = self.free[model]
        used, granted = self.free_used(user, model, period_at(period, self.now))
        if n <= max(0, images + granted - used):
            return "free"
        if (
            self.cap is not None
            and self.spent(period_at(self.cap_period, self.now), user=user) + estimate > self.cap
        ):
            return None
        for role, (name, micros, team_period) in self.teams.items():
            if (
                role in USERS[user]
                and micros - self.spent(period_at(team_period, self.now), payer=f"team:{name}") >= estimate
            ):
                return f"team:{name}"
        if self.budget - self.spent(period_at(self.budget_period, self.now), payer="guild") >= estimate:
            return "guild"
        return None

    # --- rules ----------------------------------------------------------------------------------

    @initialize()
    def a_daily_free_quota_for_a(self) -> None:
        self.run(storage.set_free_quota(self.db, GUILD, "a", 2, "day", actor_id=1, now=self.now))
        self.free["a"] = (2, "day")

    @rule(user=st.sampled_from(sorted(USERS)), model=st.sampled_from(sorted(MODELS)), n=st.integers(1, 3))
    def reserve(self, user: int, model: str, n: int) -> None:
        expected = self.decide(user, model, n)
        price, free = MODELS[model]
        job = storage.NewJob(model, "p", n, price, free, user_id=user, guild_id=GUILD, roles=USERS[user])
        try:
            r = self.run(storage.accept_job(self.db, job, now=self.now))
        except storage.QuotaRefused:
            assert expected is None
            return
        assert r.charged_to == expected
        team = r.charged_to.removeprefix("team:") if r.charged_to.startswith("team:") else None
        self.jobs[r.job_id] = ModelJob(user, model, n, price * n, r.charged_to, team, self.now)

    def _open(self) -> list[str]:
        return sorted(k for k, j in self.jobs.items() if j.state == "open")

    @precondition(lambda self: self._open())
    @rule(data=st.data(), delivered=st.integers(0, 4), reported=st.none() | st.integers(0, 1500))
    def settle(self, data, delivered: int, reported: int | None) -> None:
        job_id = data.draw(st.sampled_from(self._open()))
        j = self.jobs[job_id]
        s = self.run(storage.complete_job(self.db, job_id, delivered, reported, now=self.now))
        kept = min(delivered, j.n)
        j.state, j.images = "settled", kept if j.charged_to == "free" else 0
        cost = reported if reported is not None else MODELS[j.model][0] * kept
        j.cost = min(cost, j.estimate)  # never more than the reservation: the rest is an overrun
        assert s.charged_micros == j.net_micros() and not s.already
        assert s.overrun_micros == max(0, cost - j.estimate) and s.cost_micros == cost

    @precondition(lambda self: self._open())
    @rule(data=st.data(), status=st.sampled_from(["failed", "refused", "cancelled"]))
    def refund(self, data, status: str) -> None:
        job_id = data.draw(st.sampled_from(self._open()))
        assert self.run(storage.fail_job(self.db, job_id, status, "timed out", now=self.now))
        self.jobs[job_id].state = "refunded"

    @precondition(lambda self: any(j.state != "open" for j in self.jobs.values()))
    @rule(data=st.data())
    def finish_twice(self, data) -> None:
        job_id = data.draw(st.sampled_from(sorted(k for k, j in self.jobs.items() if j.state != "open")))
        assert self.run(storage.complete_job(self.db, job_id, 1, now=self.now)).already
        assert not self.run(storage.fail_job(self.db, job_id, now=self.now))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def admin_refund(self, data) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        j = self.jobs[job_id]
        result = self.run(storage.refund_job(self.db, job_id, actor_id=9, reason="prop", now=self.now))
        assert result.already == (j.state in ("refunded", "reversed"))
        j.state = {"open": "refunded", "settled": "reversed"}.get(j.state, j.state)

    @rule(
        delta=st.sampled_from(
            [timedelta(minutes=50), timedelta(hours=9), timedelta(days=1), timedelta(days=8)]
        )
    )
    def tick(self, delta: timedelta) -> None:
        self.now += delta

    @rule(kind=st.sampled_from(PERIODS), before=st.booleans())
    def to_boundary(self, kind: str, before: bool) -> None:
        """To the last microsecond of the current day, week or month, or the first of the next."""
        end = period_at(kind, self.now).end
        self.now = end - timedelta(microseconds=1) if before else end

    @rule(user=st.sampled_from(sorted(USERS)), model=st.sampled_from(sorted(MODELS)), k=st.integers(1, 3))
    def grant(self, user: int, model: str, k: int) -> None:
        self.run(storage.grant_free_images(self.db, GUILD, user, model, k, actor_id=9, now=self.now))
        self.grants.append((user, model, self.now, k))

    @rule(micros=st.integers(0, 2000), period=st.sampled_from(PERIODS))
    def set_budget(self, micros: int, period: str) -> None:
        self.run(storage.set_guild_budget(self.db, GUILD, micros, period, actor_id=9, now=self.now))
        self.budget, self.budget_period = micros, period

    @rule(role=st.sampled_from([ART, PHOTO]), micros=st.integers(0, 1500), period=st.sampled_from(PERIODS))
    def set_team(self, role: int, micros: int, period: str) -> None:
        name = {ART: "Art", PHOTO: "Photo"}[role]
        self.run(storage.set_team(self.db, GUILD, role, name, micros, period, actor_id=9, now=self.now))
        self.teams[role] = (name, micros, period)

    @rule(micros=st.none() | st.integers(0, 1500), period=st.sampled_from(PERIODS))
    def set_cap(self, micros: int | None, period: str) -> None:
        self.run(storage.set_user_cap(self.db, GUILD, micros, period, actor_id=9, now=self.now))
        self.cap, self.cap_period = micros, period

    @rule(images=st.integers(0, 3), period=st.sampled_from(PERIODS))
    def set_free_quota(self, images: int, period: str) -> None:
        self.run(storage.set_free_quota(self.db, GUILD, "a", images, period, actor_id=9, now=self.now))
        self.free["a"] = (images, period)

    # --- invariants -----------------------------------------------------------------------------

    @invariant()
    def books_balance(self) -> None:
        assert self.run(storage.check(self.db, now=self.now, grace=FOREVER)) == []

    @invariant()
    def users_see_what_the_model_says(self) -> None:
        defaults = {m: free for m, (_, free) in MODELS.items()}
        for user, roles in USERS.items():
            status = self.run(storage.quota_status(self.db, user, GUILD, defaults, roles, now=self.now))
            for f in status.free:
                used, granted = self.free_used(user, f.model, period_at(self.free[f.model][1], self.now))
                assert (f.used, f.granted, f.limit) == (used, granted, self.free[f.model][0] + granted)
            assert status.spent_micros == self.spent(period_at(self.cap_period, self.now), user=user)
            assert status.guild.spent_micros == self.spent(
                period_at(self.budget_period, self.now), payer="guild"
            )
            for t in status.teams:
                _, _, period = next(v for v in self.teams.values() if f"team:{v[0]}" == t.name)
                assert t.spent_micros == self.spent(period_at(period, self.now), payer=t.name)


def test_the_books_follow_the_rules(new_db_target):
    machine = type("BooksOnThisBackend", (Books,), {"new_target": staticmethod(new_db_target)})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=30, stateful_step_count=30, deadline=None)
    )
