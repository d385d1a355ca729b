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


#: the lab's endpoints that ring nobody (tests.lab.harness.FUZZ_ENDPOINTS), and the numbers a
#: fuzz run against the lab may generate: them, one unknown, one word
FUZZ_EXTENSIONS = ("191", "192")
FUZZ_NUMBERS = (*FUZZ_EXTENSIONS, "199", "x1")


@pytest.fixture
async def linked_daemon(lab, tmp_path: Path) -> AsyncIterator[LocalDaemon]:
    """Like `local_daemon`, but linked to the lab's Asterisk (its own ARI app) and its user an
    agent on the lab's fuzz endpoints (FUZZ_EXTENSIONS, whose contact nobody listens on):
    requests reach call control, ACD and user data for real, and nothing they dial can ring
    anyone (other numbers are refused by the agent's dial policy). Asterisk is cleaned after."""
    from astcti.secrets import encrypt
    from tests.lab.ari import force_clean
    c = lab.config
    db, key = tmp_path / "astcti.db", tmp_path / "secret.key"
    cipher = load_key(key, create=True)
    password = secrets.token_urlsafe(12)
    ports = {proto: free_port() for proto in ("astctirest", "astctiapi", "astctiws")}
    store = Store.open(db, create=True)
    try:
        store.set_parameter("acti_tlink_01", f"127.0.0.1#{c.ari_port}#astcti-fuzz,"
                                             f"{c.ari_user},{encrypt(cipher, c.ari_password)}")
        for ext in FUZZ_EXTENSIONS:
            store.add_extension(ext, "PJSIP")
        for proto, port in ports.items():
            store.add_listener(ListenerRow(port, "127.0.0.1", "*", proto, "token"))
        store.set_user("agent", password, "agent", FUZZ_EXTENSIONS)
    finally:
        store.close()
    daemon = Daemon(db, key, admin_socket=tmp_path / "admin.sock")
    await daemon.start()
    try:
        link = daemon.links["acti_tlink_01"]
        assert await link.wait_up(20), link.last_error
        yield LocalDaemon(daemon, "agent", password, ports)
    finally:
        await daemon.stop()
        for ext in FUZZ_EXTENSIONS:
            lab.rx(f"queue remove member Local/{ext}@astcti-agent/n from support")
        force_clean(lab)


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
