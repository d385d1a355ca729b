"""Background tasks: referenced until they end, failures logged, cancellation propagated."""

from __future__ import annotations

import asyncio
import logging

import pytest

from astcti.tasks import Tasks, cancel_and_wait, eager, wait_event


async def test_a_failing_task_is_logged_with_its_traceback(caplog) -> None:
    tasks = Tasks("test owner")

    async def boom() -> None:
        raise RuntimeError("kaputt")

    with caplog.at_level(logging.ERROR):
        task = tasks.spawn(boom(), name="boom")
        await asyncio.wait([task])
        await asyncio.sleep(0)
    assert len(tasks) == 0
    record = next(r for r in caplog.records if "task boom failed" in r.getMessage())
    assert record.exc_info and "kaputt" in str(record.exc_info[1])


async def test_cancel_and_wait_never_swallows_the_callers_cancellation() -> None:
    """A stopper waiting for a child that takes a moment to end is itself cancelled: it must
    end cancelled, not carry on as if only the child had been."""

    async def child() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.2)  # its own clean-up
            raise

    child_task = asyncio.create_task(child())
    carried_on: list[bool] = []

    async def stopper() -> None:
        await cancel_and_wait(child_task)
        carried_on.append(True)

    outer = asyncio.create_task(stopper())
    await asyncio.sleep(0.05)  # the stopper waits for the child now
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert carried_on == []
    await asyncio.wait([child_task])
    assert child_task.cancelled()


async def test_eager_work_runs_inside_a_task_to_its_end() -> None:
    """A WebSocket client's requests run in a task from their first line: aiohttp's request
    timeout and asyncio.timeout() need a current task (a takeover's HTTP channel list is the
    first await of a `hold`); the results of what it awaits reach it."""
    loop = asyncio.get_running_loop()
    seen: list[object] = []

    async def work() -> int:
        seen.append(asyncio.current_task())
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        value = await loop.run_in_executor(None, lambda: 41)
        fut: asyncio.Future[int] = loop.create_future()
        loop.call_later(0.01, fut.set_result, 1)
        return value + await fut

    task = eager(work(), "work", "test")
    assert task is not None
    assert await task == 42
    assert seen == [task]


async def test_eager_failures_are_logged_and_cancellation_reaches_the_work(caplog) -> None:
    seen: list[str] = []

    async def broken() -> None:
        raise RuntimeError("kaputt")

    with caplog.at_level(logging.ERROR):
        task = eager(broken(), "broken", "test")
        if task is not None:
            await asyncio.wait([task])
    assert any("kaputt" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)

    async def waits() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            seen.append("cleaned up")

    task = eager(waits(), "waits", "test")
    assert task is not None
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cleaned up"] and task.cancelled()


async def test_wait_event_answers_true_when_set_and_false_after_the_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.05) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
