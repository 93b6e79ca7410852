"""Jobs.stop: a pass in progress finishes (bounded); a job waiting for its turn is cancelled at once."""

from __future__ import annotations

import asyncio

from kernel.jobs import Jobs


async def test_stop_lets_a_pass_in_progress_finish_and_cancels_waiting_jobs() -> None:
    jobs = Jobs()
    wake, started, release = asyncio.Event(), asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def writing() -> None:
        started.set()
        await release.wait()  # e.g. a database write: cancelling it here could leave the transaction open
        finished.append("writing")

    async def idle() -> None:
        finished.append("idle")

    jobs.every(3600, writing, "writing", wake=wake)
    jobs.every(3600, idle, "idle")  # waits for its turn: cancelled, never runs
    wake.set()
    await started.wait()
    stopping = asyncio.create_task(jobs.stop())
    release.set()
    await stopping
    assert finished == ["writing"]


async def test_a_pass_that_outlasts_the_grace_is_cancelled() -> None:
    jobs = Jobs()
    jobs.STOP_GRACE = 0.05
    wake, started = asyncio.Event(), asyncio.Event()
    cancelled: list[bool] = []

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    jobs.every(3600, stuck, "stuck", wake=wake)
    wake.set()
    await started.wait()
    await asyncio.wait_for(jobs.stop(), 5)
    assert cancelled == [True]
