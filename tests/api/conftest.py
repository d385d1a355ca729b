"""An astcti daemon in the test's own event loop, without Asterisk, for transport tests.

Requests that need a PBX fail there with their usual words (link down, unknown extension);
what the transports do with input (bad JSON, long lines, auth, allow lists) needs no PBX.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from astcti.app import Daemon
from astcti.secrets import load_key
from astcti.store import Store
from astcti.store.store import ListenerRow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalDaemon:
    daemon: Daemon
    user: str
    password: str
    ports: dict[str, int]  # protocol -> port

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['astctirest']}"


@pytest.fixture
async def local_daemon(tmp_path: Path) -> AsyncIterator[LocalDaemon]:
    db, key = tmp_path / "astcti.db", tmp_path / "secret.key"
    load_key(key, create=True)
    password = secrets.token_urlsafe(12)
    ports = {proto: free_port() for proto in ("astctirest", "astctiapi", "astctiws")}
    store = Store.open(db, create=True)
    try:
        for ext in ("101", "102"):
            store.add_extension(ext, "PJSIP")
        for proto, port in ports.items():
            store.add_listener(ListenerRow(port, "127.0.0.1", "*", proto, "token"))
        store.set_user("agent", password, "admin")
    finally:
        store.close()
    daemon = Daemon(db, key, admin_socket=tmp_path / "admin.sock")
    await daemon.start()
    try:
        yield LocalDaemon(daemon, "agent", password, ports)
    finally:
        await daemon.stop()
