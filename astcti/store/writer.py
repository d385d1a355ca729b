"""Store writes off the ARI event path: the services' state is saved by a background writer.

The event path (tracker, user data, call control, ACD) must never wait for the disk nor fail
with it: a full disk or a locked file would otherwise stall every client's events or, raised
from a link's reconnect hook, make the link flap. Services change their state in memory and
`put` the write here; one thread with its own SQLite connection applies them in order, keeps
only the latest write per key (a call's user data, an extension's agent) and retries failed
ones with backoff until the store takes them, logging once when saving fails and once when it
works again. Nothing is lost while the daemon runs; the store catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from astcti.errors import AstctiError
from astcti.store.store import Store
from astcti.tasks import cancel_and_wait, wait_event, watch

log = logging.getLogger(__name__)

Write = Callable[[Store], None]
RETRY_FIRST = 1.0
RETRY_MAX = 30.0


class ImmediateWriter:
    """Applies each write at once on the caller's store (tools and unit tests)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def put(self, key: str, write: Write) -> None:
        write(self.store)


class StoreWriter:
    """The daemon's background writer (see the module's doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pending: dict[str, Write] = {}
        self.failing: str | None = None  # the error line while writes fail
        self.written = 0
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()  # nothing pending, nothing being written
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._store: Store | None = None  # used by the writer thread only

    def start(self) -> None:
        self._task = watch(asyncio.get_running_loop().create_task(self._run(),
                                                                 name="store-writer"),
                           "store writer")

    def put(self, key: str, write: Write) -> None:
        """Save later, in order; a later write of the same key replaces a pending one."""
        self.pending.pop(key, None)  # re-queued at the end: keeps per-key order
        self.pending[key] = write
        self._idle.clear()
        self._wakeup.set()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self.pending:
                batch, self.pending = self.pending, {}
                failed, error = await asyncio.to_thread(self._apply, batch)
                if not failed:
                    if self.failing is not None:
                        log.warning("store writes work again")
                        self.failing = None
                    delay = RETRY_FIRST
                    continue
                for key, write in failed.items():  # newer writes of a key win
                    self.pending.setdefault(key, write)
                if self.failing != error:
                    log.error("store writes are failing, kept in memory and retried: %s",
                              error)
                    self.failing = error
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
            self._idle.set()

    def _apply(self, batch: dict[str, Write]) -> tuple[dict[str, Write], str]:
        """In the writer thread: each write in its own transaction; the ones that failed."""
        failed: dict[str, Write] = {}
        error = ""
        for key, write in batch.items():
            try:
                if self._store is None:
                    self._store = Store.open(self.path)
                write(self._store)
                self.written += 1
            except AstctiError as exc:
                failed[key] = write
                error = str(exc)
        return failed, error

    async def flush(self, timeout: float) -> bool:
        """Wait until everything put so far is saved (True), or `timeout` seconds (False)."""
        return await wait_event(self._idle, timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Save what is pending (up to `timeout` seconds), then stop."""
        if self._task is not None and not await self.flush(timeout):
            log.error("store writer stopped with %d write(s) unsaved: %s", len(self.pending),
                      self.failing or "timeout")
        await cancel_and_wait(self._task)
        self._task = None
        if self._store is not None:
            store, self._store = self._store, None
            await asyncio.to_thread(store.close)
