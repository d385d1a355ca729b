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


async def test_eager_runs_the_first_step_at_once_and_a_task_carries_on() -> None:
    """The request handling of a WebSocket client starts in the loop turn the frame arrived in:
    what it does before its first await is done when `eager` returns; the rest follows in a
    task, with the results of what it awaits (a future, an executor, a bare yield)."""
    steps: list[str] = []
    loop = asyncio.get_running_loop()

    async def work() -> int:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append("after yield")
        value = await loop.run_in_executor(None, lambda: 41)
        fut: asyncio.Future[int] = loop.create_future()
        loop.call_later(0.01, fut.set_result, 1)
        return value + await fut

    task = eager(work(), "work", "test")
    assert steps == ["first"]
    assert task is not None
    assert await task == 42
    assert steps == ["first", "after yield"]


async def test_eager_returns_none_when_the_coroutine_ends_in_its_first_step(caplog) -> None:
    async def quick() -> None:
        return None

    async def broken() -> None:
        raise RuntimeError("kaputt")

    assert eager(quick(), "quick", "test") is None
    with caplog.at_level(logging.ERROR):
        assert eager(broken(), "broken", "test") is None
    assert any("kaputt" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_eager_passes_errors_and_cancellation_to_the_coroutine() -> None:
    """A failed future raises inside the coroutine; cancelling the task cancels the coroutine
    where it waits (its clean-up runs), whether it waits on a future or was just resumed."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def fails() -> str:
        fut: asyncio.Future[None] = loop.create_future()
        loop.call_soon(fut.set_exception, ValueError("no"))
        try:
            await fut
        except ValueError as exc:
            return f"caught {exc}"
        return "not raised"

    task = eager(fails(), "fails", "test")
    assert task is not None and await task == "caught no"

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

    pending: asyncio.Future[None] = loop.create_future()

    async def blocked() -> None:
        try:
            await pending
            seen.append("carried on")
        except asyncio.CancelledError:
            seen.append("cancelled")
            await asyncio.sleep(0.01)  # its clean-up awaits: it still runs to its end
            seen.append("clean-up done")
            raise

    task = eager(blocked(), "blocked", "test")
    assert task is not None
    pending.set_result(None)
    task.cancel()  # before the task's first step, its future already done: still cancelled
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert seen[1:] == ["cancelled", "clean-up done"]


async def test_wait_event_answers_true_when_set_and_false_after_the_timeout() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.05) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5) is True
