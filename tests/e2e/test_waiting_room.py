"""What members see while they wait (issue 11): a burst of 30 jobs from 10 members into 2 slots,
through the real client and the fake Discord. Every place shown was the job's true place when the
edit reached Discord, edits per job stay few, no finished job keeps a Cancel button, and a result's
time is the model's, with the wait beside it."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

from tests.e2e.conftest import ADMIN, MEMBER, OTHER
from tests.e2e.support import write_config
from tests.fake_discord.records import peak_rate

MEMBERS = [MEMBER, OTHER, ADMIN, *range(5001, 5008)]
PLACE = re.compile(r"position (\d+) in line")
LATENCY = 0.25


def true_place(job_id: str, at: datetime, jobs: dict) -> int:
    """The job's place at ``at``, replayed from the records: the jobs queued then (accepted, not yet
    claimed), in the order claims serve them: each member's jobs numbered by age, then by age."""
    queued = [j for j in jobs.values() if j.created_at <= at and (j.started_at is None or j.started_at > at)]
    turns: dict[int, int] = {}
    order = []
    for j in sorted(queued, key=lambda j: (j.created_at, j.id)):
        turns[j.user_id] = turns.get(j.user_id, 0) + 1
        order.append((turns[j.user_id], j.created_at, j.id))
    return 1 + [key[2] for key in sorted(order)].index(job_id)


async def test_a_burst_into_two_slots_shows_true_places_calmly(make_stack, emulator, tmp_path):
    config = write_config(
        tmp_path,
        "[providers.modelverse]\nmax_concurrency = 2\n[limits]\nallow_private_results = true\n",
    )
    stack = await make_stack(emulator, KONTEXT_CONFIG=config, WAVESPEED_API_KEY="", VTRIX_API_KEY="")
    stack.bot.progress_every, stack.bot.progress_refresh = 0.5, 1.0
    for user in MEMBERS[3:]:
        stack.fake.add_member(user, name=f"member{user}")
    emulator.latency = LATENCY
    records = []
    for user in MEMBERS:  # each member sends 3 in a row: later members' first jobs go ahead of them
        for n in range(3):
            records.append(await stack.fake.slash("create", {"prompt": f"{user} {n}"}, user_id=user))
    await asyncio.gather(*(r.wait_for("files", timeout=60) for r in records))

    jobs = {}
    for user in MEMBERS:
        for j in await stack.svc.jobs.history(user, stack.fake.guild_id, limit=10):
            jobs[j.id] = j
    assert len(jobs) == 30 and all(j.status == "succeeded" for j in jobs.values())

    shown_places = 0
    edits_per_job = []
    progress_at = []  # when each progress edit (a place, or "generating") reached Discord
    showed_a_place = set()
    for rec in records:
        msg = rec.original
        job_id = msg.custom_ids[0].rsplit(":", 1)[1]
        for snap in msg.history:
            place = PLACE.search(snap.get("content") or "")
            if snap.get("edited_timestamp") and (snap.get("content") or "")[:1] in ("⏳", "🎨"):
                progress_at.append(datetime.fromisoformat(snap["edited_timestamp"]).timestamp())
            if place:
                at = datetime.fromisoformat(snap["edited_timestamp"])
                assert int(place[1]) == true_place(job_id, at, jobs), (job_id, snap["content"])
                shown_places += 1
                showed_a_place.add(job_id)
        edits_per_job.append(msg.edits)
        # The final state: the images and the result buttons, no Cancel.
        assert msg.files and not any(c.endswith(f"cancel:{job_id}") for c in msg.custom_ids)
        embed = msg.embeds[0]
        time_field = next(f["value"] for f in embed["fields"] if f["name"] == "Time")
        generating = float(time_field.split("s", 1)[0])
        assert generating < LATENCY + 1.5, time_field  # the model's time, not the wait as well
        if "in line" in time_field:
            assert jobs[job_id].run_started_at > jobs[job_id].created_at
    peak = peak_rate(progress_at)
    print(
        f"30 jobs / 2 slots: {shown_places} places shown, edits per job max {max(edits_per_job)}, "
        f"mean {sum(edits_per_job) / len(edits_per_job):.1f}; progress edits peak {peak}/s "
        f"(all edits, results included: {stack.fake.edit_peak_per_s}/s)"
    )
    # Every job that waited a moment showed its place (those claimed at once never waited).
    waited = {j.id for j in jobs.values() if (j.run_started_at - j.created_at).total_seconds() > 0.5}
    assert len(waited) >= 20 and waited <= showed_a_place
    assert max(edits_per_job) <= 8
