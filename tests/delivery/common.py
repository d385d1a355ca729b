"""What the delivery tests share: where they work, their port offset, running a playbook."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from astcti.pbx.dialplan import CALLID_VAR, LINKEDID_VAR, USERDATA_VAR

from tests.delivery import chroots

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
WORK = Path(os.environ.get("ASTCTI_DELIVERY_DIR", REPO / ".delivery"))
#: shifts every port of the delivery tests (default: the engineer's lab offset)
OFFSET = int(os.environ.get("ASTCTI_DELIVERY_PORT_OFFSET",
                            os.environ.get("ASTCTI_LAB_PORT_OFFSET", "0")))
#: the channel variables astcti needs (its own names, so a template missing one fails the tests)
CHANNELVARS = ",".join((LINKEDID_VAR, USERDATA_VAR, CALLID_VAR))


def playbook(name: str, inventory: Path, mounts: list[Path], *args: str,
             secrets: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """ansible-playbook site.yml, chroot trees given /proc and /dev; the log in WORK; fails the
    test if a secret shows up in the output."""
    cmd = ["ansible-playbook", "-i", str(inventory), "site.yml", *args]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCAL_TEMP": str(inventory.parent / "tmp"),
           # each task's time in the log (.delivery/ansible-NAME.log), to see where runs go slow
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
           "PROFILE_TASKS_SORT_ORDER": "none", "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"}
    start = time.monotonic()
    proc = subprocess.run(chroots.with_mounts(mounts, cmd) if mounts else cmd, cwd=ANSIBLE,
                          capture_output=True, text=True, env=env, timeout=600)
    (WORK / f"ansible-{name}.log").write_text(
        f"# {shlex.join(cmd)} -> {proc.returncode} in {time.monotonic() - start:.1f} s\n"
        + proc.stdout + proc.stderr)
    for secret in secrets:
        assert secret not in proc.stdout + proc.stderr, f"a password was logged by run {name}"
    return proc


def recap(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    out = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", proc.stdout, re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def changed_tasks(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """Names of the tasks that reported `changed` (to say why a run was not idempotent)."""
    names, current = [], ""
    for line in proc.stdout.splitlines():
        m = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
        if m:
            current = m.group(1)
        elif line.startswith("changed:") and current not in names:
            names.append(current)
    return names


def failure_text(proc: subprocess.CompletedProcess[str]) -> str:
    """The output of a run that must have failed with a clear message (no traceback)."""
    assert proc.returncode != 0, "the run should have failed:\n" + proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def ami_login(port: int, user: str, secret: str) -> str:
    """The Response of an AMI Login on 127.0.0.1:`port` ("Success"/"Error"): proves which
    manager users an installed Asterisk really accepts."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        f.readline()  # banner
        f.write(f"Action: Login\r\nUsername: {user}\r\nSecret: {secret}\r\n\r\n".encode())
        f.flush()
        reply = {}
        while (line := f.readline().decode().strip()):
            k, _, v = line.partition(":")
            reply[k.strip()] = v.strip()
        return reply.get("Response", "")
