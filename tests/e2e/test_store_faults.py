"""The store fills up while astcti runs: calls keep being served, the failure is reported in one
line, nothing stored before is lost, and writes work again once there is room."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from astcti.client import CtiClient
from tests.lab import Lab
from tests.lab.harness import ExtraDaemon, free_port
from tests.lab.sipp import Phone

pytestmark = pytest.mark.lab


def shell(daemon: ExtraDaemon, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "astcti.admin.shell", "--socket",
                           str(daemon.admin_socket), "-c", command],
                          capture_output=True, text=True, timeout=30)


class _SmallDisk:
    """A daemon whose store is on a 2 MiB tmpfs private to its mount namespace: the disk is
    filled and freed, and the database copied out, from inside that namespace (both tests
    fill the disk under a running daemon and read afterwards what it saved)."""

    def __init__(self, daemon: ExtraDaemon, tmp_path: Path) -> None:
        self.daemon = daemon
        self.tmp_path = tmp_path
        self.dir = tmp_path / "full"
        self.dir.mkdir()

    async def start(self) -> None:
        d, full = self.daemon, self.dir
        script = (f"mount -t tmpfs -o size=2m tmpfs {full} && cp {d.db} {full}/ && "
                  f"exec {' '.join(d.command(full / d.db.name))}")
        await asyncio.to_thread(d.start, ["unshare", "--mount", "--propagation", "private",
                                          "sh", "-c", script])

    def inside(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "--target", str(self.daemon.proc.pid), "--mount",
                               *cmd], capture_output=True, text=True, timeout=30)

    def fill(self) -> None:
        self.inside("sh", "-c", f"dd if=/dev/zero of={self.dir}/filler bs=64k 2>/dev/null; sync")

    def free(self) -> None:
        self.inside("rm", f"{self.dir}/filler")

    def saved(self) -> sqlite3.Connection:
        """A copy of the database and its WAL (committed writes may still live there)."""
        copy, db = self.tmp_path / "copy.db", f"{self.dir}/{self.daemon.db.name}"
        self.inside("sh", "-c", f"cp {db} {copy} && if [ -f {db}-wal ]; then"
                                f" cp {db}-wal {copy}-wal; fi")
        return sqlite3.connect(copy)


async def test_disk_full_store_while_serving(lab: Lab, tmp_path) -> None:
    daemon = ExtraDaemon(lab, tmp_path, ari_port=lab.config.ari_port, ws_port=free_port())
    disk = _SmallDisk(daemon, tmp_path)
    await disk.start()
    try:
        assert shell(daemon, "add extension 103 PJSIP").returncode == 0
        disk.fill()
        out = shell(daemon, "add extension 104 PJSIP")
        assert out.returncode != 0
        errors = [l for l in (out.stdout + out.stderr).splitlines() if l.strip()]
        assert len(errors) == 1 and "full" in errors[0] and "free disk space" in errors[0], errors
        assert "Traceback" not in daemon.log()
        # calls are still served to clients
        c = lab.config
        client = await CtiClient.websocket(f"ws://127.0.0.1:{daemon.ws_port}/", c.astcti_user,
                                           c.astcti_password)
        await client.request_until_ok("startmonitor", extension="101")
        lab.start_phone("101", Phone(answer_after_ms=200))
        caller = lab.call("101", talk_ms=300)
        await client.expect("established", extension="101", timeout=20)
        await client.expect("connectioncleared", extension="101", timeout=20)
        await asyncio.to_thread(caller.wait, 30)
        await client.close()
        # room again: the same write works and nothing earlier was lost
        disk.free()
        assert shell(daemon, "add extension 104 PJSIP").returncode == 0
        db = disk.saved()
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        numbers = {r[0] for r in db.execute("SELECT number FROM extensions")}
        assert {"101", "102", "103", "104"} <= numbers
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1
    finally:
        lab.stop_phone("101")
        await asyncio.to_thread(daemon.stop)


async def test_disk_full_during_calls_events_flow_and_the_link_holds(lab: Lab, tmp_path) -> None:
    """The store is full while calls carry user data (an IVR's, through the queue) and while
    Asterisk restarts under a live call: every event still reaches the client, the link comes
    back once and stays up (no SQLite write on the event path, nor in the reconnect's resync),
    and what could not be saved is saved once there is room."""
    c = lab.config
    daemon = ExtraDaemon(lab, tmp_path, ari_port=c.ari_port, ws_port=free_port(),
                         parameters={"acti_loginstate": "ready"})
    disk = _SmallDisk(daemon, tmp_path)
    await disk.start()
    client = await CtiClient.websocket(f"ws://127.0.0.1:{daemon.ws_port}/", c.astcti_user,
                                       c.astcti_password)
    lab.start_phone("101", Phone(answer_after_ms=300))
    caller = None
    try:
        await client.request_until_ok("startmonitor", extension="101")
        await client.request("acdlogin", extension="101", agentid="7101", groups="support")
        disk.fill()

        caller = lab.call("601", talk_ms=60000)  # the IVR sets user data, then the queue
        delivered = await client.expect("delivered", extension="101", timeout=30)
        assert delivered["userdata"] == {"account": "4711", "ivr": "billing"}
        await client.expect("established", extension="101", callid=delivered["callid"],
                            timeout=30)
        connects_before = daemon.log().count("connected to Asterisk")

        await asyncio.to_thread(lab.restart_asterisk, True)  # the call dies with Asterisk
        await client.expect("linkdown", extension="101", timeout=30)
        cleared = await client.expect("connectioncleared", extension="101",
                                      callid=delivered["callid"], timeout=60)
        assert cleared["resync"] is True  # found gone by the resync of the reconnect
        await client.expect("linkup", extension="101", timeout=30)
        caller.stop()  # its call died with Asterisk
        lab.start_phone("101", Phone(answer_after_ms=300))
        second = lab.call("101", talk_ms=500)
        established = await client.expect("established", extension="101", timeout=30)
        await client.expect("connectioncleared", extension="101",
                            callid=established["callid"], timeout=30)
        await asyncio.to_thread(second.wait, 30)
        log = daemon.log()
        # it came back once and stayed up (a failing resync would make it flap: connect, fail,
        # down, connect...)
        assert log.count("connected to Asterisk") == connects_before + 1, log[-3000:]
        assert "link down" not in log.rsplit("connected to Asterisk", 1)[1], log[-3000:]
        assert "store writes are failing" in log and "Traceback" not in log

        disk.free()
        for _ in range(60):  # the writer retries with backoff (at most 30 s apart)
            if "store writes work again" in daemon.log():
                break
            await asyncio.sleep(1)
        assert "store writes work again" in daemon.log()
        db = disk.saved()
        saved = dict(db.execute("SELECT callid, data FROM userdata").fetchall())
        assert '"ivr": "billing"' in saved[delivered["callid"]]
    finally:
        if caller is not None:
            caller.stop()
        try:
            await client.request("acdlogout", extension="101", agentid="7101", check=False)
        finally:
            await client.close()
            lab.stop_phone("101")
            await asyncio.to_thread(daemon.stop)
