"""Composition root: builds the store, the Asterisk links and the services, and runs them.

Lifecycle only; the logic lives in `pbx`, `cti` and `api`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from cryptography.fernet import Fernet

from astcti import __version__
from astcti.errors import AstctiError
from astcti.pbx.link import AsteriskLink
from astcti.pbx.linkconfig import parse_link
from astcti.secrets import load_key
from astcti.store import Store

log = logging.getLogger("astcti")


class Daemon:
    """The running astcti: one per process."""

    def __init__(self, db_path: Path, key_path: Path, *, admin_socket: Path | None = None) -> None:
        self.db_path = db_path
        self.key_path = key_path
        self.admin_socket = admin_socket or Path(
            os.environ.get("ASTCTI_ADMIN_SOCKET", "/run/astcti/admin.sock"))
        self.store: Store | None = None
        self.cipher: Fernet | None = None
        self.links: dict[str, AsteriskLink] = {}
        self.link_errors: dict[str, str] = {}  # misconfigured links: parameter -> error line
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        log.info("astcti starting (version %s)", __version__)
        self.store = Store.open(self.db_path)
        self.cipher = load_key(self.key_path)
        self._start_links()
        log.info("ready: store %s, %d link(s)", self.db_path, len(self.links))

    def _start_links(self) -> None:
        assert self.store is not None
        heartbeat = float(self.store.get_parameter("acti_heartbeat", "5") or 5)
        for name, value in self.store.link_parameters().items():
            try:
                config = parse_link(name, value, self.cipher)
            except AstctiError as exc:
                self.link_errors[name] = str(exc)
                log.error("%s", exc)
                continue
            link = AsteriskLink(config, heartbeat=heartbeat)
            self.links[name] = link
            link.start()
        if not self.links:
            log.warning("no usable Asterisk link: set one with `astcti-shell -c \"update parameter"
                        " acti_tlink_01 IP#PORT#APP,USER,ENCRYPTEDPASSWORD\"`")

    async def stop(self) -> None:
        for link in self.links.values():
            await link.stop()
        self.links.clear()
        if self.store is not None:
            self.store.close()
            self.store = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            await self.start()
        except AstctiError:
            await self.stop()
            raise
        await self._stopping.wait()
        log.info("stopping")
        await self.stop()
        return 0
