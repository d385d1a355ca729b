"""AsteriskLink: its reconnect backoff resets only after a connection that stayed up; a clean
stop waits for a silence from Asterisk before releasing its device states."""

from __future__ import annotations

import asyncio

import pytest

from astcti.pbx import supervisor
from astcti.pbx.ari import AriError
from astcti.pbx.link import AsteriskLink, quiet_moment
from astcti.pbx.linkconfig import LinkConfig
from tests.pbx.helpers import Backoff


async def _delays(monkeypatch, lasts: list[float]) -> list[float]:
    """Run the supervisor over connections that last `lasts` seconds each (on a fake clock)
    and return the backoff delays it chose."""
    now = [1000.0]
    monkeypatch.setattr(supervisor, "clock", lambda: now[0])
    monkeypatch.setattr(supervisor.random, "uniform", lambda a, b: 1.0)
    delays: list[float] = []
    real_sleep = asyncio.sleep
    done = asyncio.Event()

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == len(lasts):
            done.set()
            await real_sleep(3600)
        await real_sleep(0)

    monkeypatch.setattr(supervisor.asyncio, "sleep", fake_sleep)
    link = AsteriskLink(LinkConfig("acti_tlink_01", "127.0.0.1", 1, "a", "u", "p"))
    runs = iter(lasts)

    async def connect() -> None:
        pass

    async def pump() -> None:
        now[0] += next(runs)  # the connection lasted this long, then Asterisk dropped it

    async def teardown() -> None:
        pass

    link._connect, link._serve, link._teardown = connect, pump, teardown  # type: ignore
    task = asyncio.create_task(link._supervise())
    await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return delays


async def test_a_flapping_asterisk_is_not_hammered(monkeypatch) -> None:
    """Asterisk accepts then drops the link at once, again and again: each retry waits longer
    (before: every connect reset the delay to 0.5 s, a resync every half second)."""
    delays = await _delays(monkeypatch, [0.1] * 8)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


async def test_a_link_that_stayed_up_reconnects_quickly(monkeypatch) -> None:
    delays = await _delays(monkeypatch, [0.1, 0.1, 0.1, supervisor.STABLE_AFTER + 1, 0.1])
    assert delays == [0.5, 1.0, 2.0, 0.5, 1.0]


async def test_connect_failures_back_off_too(monkeypatch) -> None:
    link = AsteriskLink(LinkConfig("acti_tlink_01", "127.0.0.1", 1, "a", "u", "p"))
    backoff = Backoff(monkeypatch)

    async def refuse() -> None:
        raise AriError(503, "cannot reach Asterisk")

    async def teardown() -> None:
        pass

    link._connect, link._teardown = refuse, teardown  # type: ignore
    task = asyncio.create_task(link._supervise())
    delays = await backoff.until(4)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert delays == [0.5, 1.0, 2.0, 4.0]


class _Clock:
    """Loop time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


async def test_device_states_are_released_after_a_silence_from_asterisk() -> None:
    """asterisk#2170: an unsubscription with a device-state event on its way can hang ARI, so a
    stop waits until Asterisk has said nothing for a moment (heard 0.1 s ago: 0.15 s more)."""
    clock = _Clock()
    heard = clock.t - 0.1
    assert await quiet_moment(lambda: heard, clock.now, clock.sleep, quiet=0.25, limit=2.0)
    assert clock.slept == [pytest.approx(0.15)]


async def test_a_pbx_that_never_falls_silent_delays_the_release_by_the_limit_only() -> None:
    clock = _Clock()
    assert not await quiet_moment(clock.now, clock.now, clock.sleep, quiet=0.25, limit=2.0)
    assert sum(clock.slept) == pytest.approx(2.0)
