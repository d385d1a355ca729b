"""The reconnect loop shared by the ARI link (:mod:`astcti.pbx.link`) and the AMI link
(:mod:`astcti.pbx.ami`).

Both keep one connection to one Asterisk up for the daemon's lifetime: connect, serve until the
connection ends, mark the link down, wait with jittered exponential backoff, and try again. The
backoff resets only after a connection that stayed up `STABLE_AFTER` seconds, so an Asterisk that
accepts then drops us is not hammered with a resubscribe and resync every half second. One loop
for both keeps their backoff, logging and up/down bookkeeping from drifting apart.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime, timezone

from astcti.tasks import cancel_and_wait, wait_event, watch

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
#: a connection that lasted this long was a real one: the next reconnect starts quickly again;
#: shorter (Asterisk accepts then drops us) keeps backing off
STABLE_AFTER = 30.0
clock = time.monotonic


class Supervised:
    """A connection kept up by a supervisor task (see the module's doc).

    A subclass names itself in its log lines (`log`, `DOWN`, `UNEXPECTED`, `TASK_PREFIX`) and
    supplies `_connect` (open, then `_mark_up`, its hooks and `_up_event.set()`), `_serve`
    (until the connection ends; returns why), `_teardown` and `_failure`.
    """

    log: logging.Logger
    DOWN = "link down"  # the warning's words when the connection is lost
    UNEXPECTED = "unexpected error"  # the traceback's words when a bug ended the connection
    TASK_PREFIX = "link"
    name: str  # the link's name (acti_tlink_01...): set by the subclass

    def __init__(self) -> None:
        self.up = False
        self.since = datetime.now(timezone.utc)
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._up_event = asyncio.Event()

    # -- what a subclass supplies -------------------------------------------------------------
    async def _connect(self) -> None:
        raise NotImplementedError

    async def _serve(self) -> str:
        raise NotImplementedError

    async def _teardown(self) -> None:
        raise NotImplementedError

    def _failure(self, exc: Exception) -> str | None:
        """The down reason for an expected failure (the PBX's own error); None for a bug."""
        raise NotImplementedError

    def _went_down(self, reason: str) -> None:
        """Called once when a link that was up goes down (after the teardown)."""

    # -- the loop -----------------------------------------------------------------------------
    def start(self) -> None:
        self._task = watch(asyncio.create_task(self._supervise(),
                                               name=f"{self.TASK_PREFIX}-{self.name}"),
                           self.name)

    async def _stop_supervising(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def wait_up(self, timeout: float) -> bool:
        """True once connected (and its up hooks have run), False after `timeout` seconds."""
        return await wait_event(self._up_event, timeout)

    async def _supervise(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            connected_at: float | None = None
            try:
                await self._connect()
                connected_at = clock()
                reason = await self._serve()
            except asyncio.CancelledError:
                await self._teardown()
                raise
            except Exception as exc:
                failure = self._failure(exc)
                if failure is None:  # a bug must not end the supervision for good
                    self.log.exception("%s: %s", self.name, self.UNEXPECTED)
                    failure = f"internal error: {type(exc).__name__}"
                reason = failure
            if connected_at is not None and clock() - connected_at >= STABLE_AFTER:
                delay = BACKOFF_FIRST  # it stayed up: a new outage, retry quickly
            await self._mark_down(reason)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    def _mark_up(self) -> None:
        self.up = True
        self.since = datetime.now(timezone.utc)
        self.last_error = None

    async def _mark_down(self, reason: str) -> None:
        was_up = self.up
        self.up = False
        self._up_event.clear()
        await self._teardown()
        if was_up or self.last_error != reason:
            self.log.warning("%s: %s: %s; retrying", self.name, self.DOWN, reason)
        if was_up:
            self.since = datetime.now(timezone.utc)
        self.last_error = reason
        if was_up:
            self._went_down(reason)
