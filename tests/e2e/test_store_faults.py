"""The store fills up while astcti runs: calls keep being served, the failure is reported in one
line, nothing stored before is lost, and writes work again once there is room."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

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


async def test_disk_full_store_while_serving(lab: Lab, tmp_path) -> None:
    daemon = ExtraDaemon(lab, tmp_path, ari_port=lab.config.ari_port, ws_port=free_port())
    full = tmp_path / "full"
    full.mkdir()
    # the store lives on a 2 MiB tmpfs private to the daemon's mount namespace
    script = (f"mount -t tmpfs -o size=2m tmpfs {full} && cp {daemon.db} {full}/ && "
              f"exec {' '.join(daemon.command(full / daemon.db.name))}")
    await asyncio.to_thread(daemon.start, ["unshare", "--mount", "--propagation", "private",
                                           "sh", "-c", script])
    pid = daemon.proc.pid

    def inside(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "--target", str(pid), "--mount", *cmd],
                              capture_output=True, text=True, timeout=30)

    try:
        assert shell(daemon, "add extension 103 PJSIP").returncode == 0
        inside("sh", "-c", f"dd if=/dev/zero of={full}/filler bs=64k 2>/dev/null; sync")
        out = shell(daemon, "add extension 104 PJSIP")
        assert out.returncode != 0
        errors = [l for l in (out.stdout + out.stderr).splitlines() if l.strip()]
        assert len(errors) == 1 and "full" in errors[0] and "free disk space" in errors[0], errors
        assert "Traceback" not in daemon.log()
        # calls are still served to clients
        c = lab.config
        client = await CtiClient.websocket(f"ws://127.0.0.1:{daemon.ws_port}/", c.astcti_user,
                                           c.astcti_password)
        for _ in range(100):
            if (await client.request("startmonitor", extension="101",
                                     check=False))["result"] == "success":
                break
            await asyncio.sleep(0.1)
        lab.start_phone("101", Phone(answer_after_ms=200))
        caller = lab.call("101", talk_ms=300)
        await client.expect("established", extension="101", timeout=20)
        await client.expect("connectioncleared", extension="101", timeout=20)
        await asyncio.to_thread(caller.wait, 30)
        await client.close()
        # room again: the same write works and nothing earlier was lost
        inside("rm", f"{full}/filler")
        assert shell(daemon, "add extension 104 PJSIP").returncode == 0
        copy = tmp_path / "copy.db"
        # the database and its WAL (committed writes may still live there)
        inside("sh", "-c", f"cp {full}/{daemon.db.name} {copy} && "
                           f"if [ -f {full}/{daemon.db.name}-wal ]; then"
                           f" cp {full}/{daemon.db.name}-wal {copy}-wal; fi")
        db = sqlite3.connect(copy)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        numbers = {r[0] for r in db.execute("SELECT number FROM extensions")}
        assert {"101", "102", "103", "104"} <= numbers
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 1
    finally:
        lab.stop_phone("101")
        await asyncio.to_thread(daemon.stop)
