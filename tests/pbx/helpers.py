"""What the pbx tests share: a wait on a real condition (never a fixed sleep) for the lab
tests, the supervisor's backoff recorded for the unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from astcti.pbx import supervisor


async def until(predicate: Callable[[], bool], timeout: float = 15.0,
                what: str = "condition not met in time") -> None:
    """Wait, letting the link's events in, until `predicate` holds; fail with `what` after
    `timeout` seconds (the machine is shared: generous timeouts, exact conditions)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.05)


class Backoff:
    """The shared supervisor's backoff delays, recorded instead of slept (jitter off), so a
    unit test sees the delays a link chose without waiting them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.delays: list[float] = []
        self._real_sleep = asyncio.sleep
        monkeypatch.setattr(supervisor.asyncio, "sleep", self._sleep)
        monkeypatch.setattr(supervisor.random, "uniform", lambda a, b: 1.0)

    async def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self._real_sleep(0)

    async def until(self, count: int) -> list[float]:
        """The first `count` delays, once chosen."""
        while len(self.delays) < count:
            await self._real_sleep(0)
        return self.delays[:count]
