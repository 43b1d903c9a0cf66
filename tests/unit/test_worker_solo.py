"""Suspects run alone (`imagebatch.worker.solo`): a job run alone waits for the jobs in flight
to finish, and new jobs wait for it."""

from __future__ import annotations

import asyncio

from imagebatch.worker.solo import Solo


async def test_a_job_run_alone_waits_for_those_in_flight_and_new_ones_wait_for_it() -> None:
    solo = Solo()
    order: list[str] = []
    first_in = asyncio.Event()
    let_first_go = asyncio.Event()

    async def together(name: str, gate: asyncio.Event | None = None) -> None:
        async with solo.together():
            order.append(f"{name} starts")
            if gate is not None:
                first_in.set()
                await gate.wait()
            order.append(f"{name} ends")

    async def alone() -> None:
        async with solo.alone():
            order.append("suspect starts")
            assert solo.running == 1
            order.append("suspect ends")

    first = asyncio.create_task(together("first", let_first_go))
    await first_in.wait()
    suspect = asyncio.create_task(alone())
    await asyncio.sleep(0)
    later = asyncio.create_task(together("later"))
    await asyncio.sleep(0)
    assert order == ["first starts"], "the suspect waits for the job in flight, the new one too"
    let_first_go.set()
    await asyncio.gather(first, suspect, later)
    assert order == [
        "first starts",
        "first ends",
        "suspect starts",
        "suspect ends",
        "later starts",
        "later ends",
    ]


async def test_jobs_not_suspected_run_side_by_side() -> None:
    solo = Solo()
    both_in = asyncio.Barrier(2)

    async def job() -> None:
        async with solo.together():
            await both_in.wait()

    await asyncio.gather(job(), job())
