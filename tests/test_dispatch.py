import asyncio

import pytest

from bot.dispatch import Dispatcher, QueueFull


async def test_per_user_cap_and_round_robin_fairness():
    d = Dispatcher(max_running=1, per_user=1, max_queue=10)
    order: list[str] = []
    release = asyncio.Event()

    async def job(user: str, tag: str) -> None:
        async with d.slot(user):
            order.append(tag)
            await release.wait()

    first = asyncio.create_task(job("alice", "a1"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(job("alice", f"a{i}")) for i in (2, 3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(job("bob", "b1")))
    await asyncio.sleep(0)
    assert d.running == 1 and d.waiting == 3
    release.set()
    await asyncio.gather(first, *tasks)
    # bob's single job goes before alice's queued second and third
    assert order == ["a1", "a2", "b1", "a3"] or order == ["a1", "b1", "a2", "a3"]
    assert order.index("b1") < order.index("a3")
    assert d.running == 0 and d.waiting == 0


async def test_positions_are_reported_and_the_queue_is_bounded():
    d = Dispatcher(max_running=1, per_user=5, max_queue=2)
    gate = asyncio.Event()
    positions: list[int] = []

    async def record(p: int) -> None:
        positions.append(p)

    async def job(user: str) -> None:
        async with d.slot(user, record):
            await gate.wait()

    running = asyncio.create_task(job("u1"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(job(u)) for u in ("u2", "u3")]
    await asyncio.sleep(0)
    assert positions == [1, 2]
    with pytest.raises(QueueFull, match="queue is full"):
        async with d.slot("u4"):
            pass
    gate.set()
    await asyncio.gather(running, *waiting)


async def test_a_cancelled_waiter_leaves_no_trace():
    d = Dispatcher(max_running=1, per_user=1)
    gate = asyncio.Event()

    async def job() -> None:
        async with d.slot("u"):
            await gate.wait()

    holder = asyncio.create_task(job())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(job())
    await asyncio.sleep(0)
    assert d.waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert d.waiting == 0
    gate.set()
    await holder
    assert d.running == 0


async def test_operator_jobs_are_not_capped_per_user():
    d = Dispatcher(max_running=10, per_user=1)
    gate = asyncio.Event()
    started = 0

    async def job() -> None:
        nonlocal started
        async with d.slot(None):
            started += 1
            await gate.wait()

    tasks = [asyncio.create_task(job()) for _ in range(5)]
    await asyncio.sleep(0)
    assert started == 5
    gate.set()
    await asyncio.gather(*tasks)


async def test_waiters_hear_their_place_as_the_line_moves():
    d = Dispatcher(max_running=1, per_user=5, max_queue=10)
    gates = [asyncio.Event() for _ in range(4)]
    heard: dict[str, list[int]] = {"b": [], "c": [], "d": []}

    async def job(user: str, gate: asyncio.Event) -> None:
        async def tell(place: int) -> None:
            heard[user].append(place)

        async with d.slot(user, tell if user in heard else None):
            await gate.wait()

    tasks = [asyncio.create_task(job(u, g)) for u, g in zip("abcd", gates, strict=True)]
    await asyncio.sleep(0)
    assert heard == {"b": [1], "c": [2], "d": [3]}
    tasks[2].cancel()  # c leaves the line: d moves up
    await asyncio.gather(tasks[2], return_exceptions=True)
    await asyncio.sleep(0)
    assert heard["d"] == [3, 2]
    gates[0].set()  # a finishes: b runs, d is next
    await asyncio.sleep(0.01)
    assert heard["d"] == [3, 2, 1] and heard["b"] == [1]
    for g in gates:
        g.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert d.running == 0 and d.waiting == 0
