"""The admin socket of a real Daemon (temporary store, no Asterisk): permissions, stale and
busy sockets, malformed requests, and a daemon that keeps serving when the socket cannot open."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path

import pytest

from astcti.admin.server import AdminServer
from astcti.app import Daemon
from astcti.errors import AstctiError
from astcti.secrets import load_key
from astcti.store import Store


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    db, key = tmp_path / "a.db", tmp_path / "k"
    Store.open(db, create=True).close()
    load_key(key, create=True)
    return db, key


async def ask(path: Path, *messages: dict | str) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        replies = []
        for message in messages:
            raw = message if isinstance(message, str) else json.dumps(message)
            writer.write(raw.encode() + b"\n")
            await writer.drain()
            replies.append(json.loads(await reader.readline()))
        return replies
    finally:
        writer.close()


async def test_socket_mode_stale_socket_and_requests(paths, tmp_path: Path) -> None:
    db, key = paths
    sock = tmp_path / "run" / "admin.sock"
    sock.parent.mkdir()
    import socket
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()  # a daemon that died left this
    daemon = Daemon(db, key, admin_socket=sock)
    await daemon.start()
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        hello, bad, run, unknown = await ask(
            sock, {"id": 1, "op": "hello"}, "not json",
            {"id": 2, "op": "run", "argv": ["add", "extension", "301"]},
            {"id": 3, "op": "drop tables"})
        assert hello["ok"] and hello["db"] == str(db)
        assert not bad["ok"] and "malformed request" in bad["error"]
        assert run["ok"] and "extension 301 added" in run["text"]
        assert not unknown["ok"]
        assert "301" in daemon.directory.extensions  # the running daemon, not only the store
        # a second daemon on the same socket is refused, the first keeps it
        other = Daemon(db, key, admin_socket=sock)
        with pytest.raises(AstctiError, match="is in use"):
            await AdminServer(other, sock).start()
        assert (await ask(sock, {"id": 4, "op": "hello"}))[0]["ok"]
    finally:
        await daemon.stop()
    assert not sock.exists()


async def test_daemon_keeps_serving_when_the_admin_socket_cannot_open(paths, tmp_path: Path,
                                                                     caplog) -> None:
    db, key = paths
    blocker = tmp_path / "admin.sock"
    blocker.write_text("not a socket")
    daemon = Daemon(db, key, admin_socket=blocker)
    with caplog.at_level(logging.ERROR):
        await daemon.start()
    try:
        assert daemon.admin is None and daemon.listeners is not None
        assert any("exists and is not a socket" in r.getMessage() for r in caplog.records)
        assert blocker.read_text() == "not a socket"
    finally:
        await daemon.stop()


async def test_membership_of_the_admin_group_is_the_authorisation(paths, monkeypatch) -> None:
    """uid nobody in the admin group may administer; the same uid in another group may not."""
    import grp
    import shutil
    import tempfile

    from tests.admin.conftest import one_error, run_shell

    db, key = paths
    monkeypatch.setenv("ASTCTI_ADMIN_GROUP", "nogroup")
    run_dir = Path(tempfile.mkdtemp(prefix="astcti-admin-"))
    run_dir.chmod(0o755)
    sock = run_dir / "admin.sock"
    daemon = Daemon(db, key, admin_socket=sock)
    await daemon.start()
    try:
        st = sock.stat()
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam("nogroup").gr_gid
        member = await asyncio.to_thread(run_shell, "--socket", str(sock), "-c",
                                         "add extension 302", user="65534", group="65534")
        assert member.returncode == 0, member.stderr
        assert "302" in daemon.directory.extensions
        outsider = await asyncio.to_thread(run_shell, "--socket", str(sock), "-c",
                                           "add extension 303", user="65534", group="1")
        line = one_error(outsider, 2)
        assert "permission denied" in line and "group astcti" in line
        assert "303" not in daemon.directory.extensions
    finally:
        await daemon.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


async def test_show_links_names_a_misconfigured_link(paths, tmp_path: Path) -> None:
    db, key = paths
    store = Store.open(db)
    store.set_parameter("acti_tlink_01", "127.0.0.1#8088#astcti,astcti,not-a-token")
    store.close()
    sock = tmp_path / "admin.sock"
    daemon = Daemon(db, key, admin_socket=sock)
    await daemon.start()
    try:
        (reply,) = await ask(sock, {"id": 1, "op": "run", "argv": ["show", "links"]})
        assert reply["ok"]
        assert "acti_tlink_01" in reply["text"] and "not started" in reply["text"]
        assert "does not decrypt with this key" in reply["text"]
    finally:
        await daemon.stop()


async def test_show_agents_reads_the_acd_service(paths, tmp_path: Path) -> None:
    """Without an ACD service the words say so; with one, its agents are listed."""
    db, key = paths
    sock = tmp_path / "admin.sock"
    daemon = Daemon(db, key, admin_socket=sock)
    await daemon.start()
    acd = daemon.acd
    try:
        (reply,) = await ask(sock, {"id": 1, "op": "run", "argv": ["show", "agents"]})
        assert reply["text"] == "no agent is logged in"
        daemon.acd = None
        (reply,) = await ask(sock, {"id": 3, "op": "run", "argv": ["show", "agents"]})
        assert reply["text"] == "ACD not available: this astcti runs no ACD service"
        daemon.acd = acd
        from astcti.cti.acd import Agent

        acd.agents["101"] = Agent("101", "7001", ["support", "sales"], "ready", "",
                                  "2026-01-01T10:00:00.000+00:00")
        (reply,) = await ask(sock, {"id": 2, "op": "run", "argv": ["show", "agents"]})
        header, row = reply["text"].splitlines()
        assert header.split() == ["extension", "agentid", "groups", "state", "reasoncode",
                                  "since", "acwuntil"]
        assert row.split() == ["101", "7001", "support,sales", "ready", "-",
                               "2026-01-01T10:00:00.000+00:00", "-"]
    finally:
        acd.agents.clear()
        daemon.acd = acd
        await daemon.stop()
