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


async def test_a_woken_job_waits_out_its_gap_and_one_pass_serves_the_wakes_meanwhile() -> None:
    """The sealer and the app dispatcher are woken by every commit: under load one pass per gap serves them all."""
    jobs, wake, ran = Jobs(), asyncio.Event(), asyncio.Queue[None]()
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def job() -> None:
        starts.append(loop.time())
        ran.put_nowait(None)

    gap = 1.0
    jobs.every(3600, job, "gapped", wake=wake, wake_gap=gap)
    try:
        woken = loop.time()
        wake.set()
        await asyncio.wait_for(ran.get(), 10)
        assert starts[0] - woken < gap  # idle before: no wait
        for _ in range(10):  # ten commits during the gap
            wake.set()
            await asyncio.sleep(0)
        await asyncio.wait_for(ran.get(), 10)
        assert starts[1] - starts[0] >= gap - 0.001
        assert len(starts) == 2 and ran.empty()
    finally:
        await jobs.stop()
