"""Helpers to run the real astcti-shell: as a subprocess (non-interactive) or in tmux."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from astcti.store import Store

SHELL = [sys.executable, "-m", "astcti.admin.shell"]


def run_shell(*args: str, stdin: str = "", env: dict[str, str] | None = None,
              user: str | None = None, group: str | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """astcti-shell ARGS with this stdin; `user`/`group` run it as that uid/gid (setpriv)."""
    cmd = [*SHELL, *args]
    if user is not None:
        cmd = ["setpriv", "--reuid", user, "--regid", group or user, "--clear-groups", *cmd]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "NO_COLOR": "", **(env or {})},
                          cwd=str(Path(__file__).resolve().parents[2]))


def one_error(out: subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The single error line of a failed run (no traceback)."""
    assert out.returncode == status, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = [line for line in out.stderr.splitlines() if line.strip()
             and not line.startswith("note: ")]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("astcti-shell: ")
    return lines[0]


def store_state(db: str | Path) -> dict:
    """Everything an admin command may change, to prove a failed command changed nothing."""
    store = Store.open(db)
    try:
        return {"parameters": store.parameters(), "extensions": store.extensions(),
                "listeners": store.listeners(),
                "users": [(u.username, u.role) for u in store.users()],
                "hashes": store.db.conn.execute(
                    "SELECT username, password_hash FROM users ORDER BY 1").fetchall()}
    finally:
        store.close()


class Tmux:
    """A real terminal running astcti-shell (tmux on its own server socket)."""

    def __init__(self, socket: str, command: list[str], env: dict[str, str]) -> None:
        if shutil.which("tmux") is None:
            pytest.skip("tmux is not installed (make sysdeps installs it)")
        self.server = socket  # tmux server socket of this terminal only
        exports = " ".join(f"{k}={v}" for k, v in env.items())
        line = f"env {exports} " + " ".join(command)
        subprocess.run(["tmux", "-S", self.server, "-f", "/dev/null", "new-session", "-d",
                        "-s", "shell", "-x", "200", "-y", "50", line], check=True)

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "-S", self.server, "send-keys", "-t", "shell", *keys],
                       check=True)

    def type(self, text: str, enter: bool = True) -> None:
        self.send("-l", text)
        if enter:
            self.send("Enter")

    def screen(self, escapes: bool = False) -> str:
        """The terminal's text (with its colour escape sequences when asked)."""
        out = subprocess.run(["tmux", "-S", self.server, "capture-pane", "-p", "-J", "-t",
                              "shell", "-S", "-2000", *(["-e"] if escapes else [])],
                             capture_output=True, text=True)
        return out.stdout

    def wait_for(self, text: str, timeout: float = 20.0, after: int = 0) -> str:
        """The screen once `text` appears in it (past character `after`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen[after:]:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the terminal within {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.server, "kill-server"], capture_output=True)
        Path(self.server).unlink(missing_ok=True)


@pytest.fixture
def tmux_factory(tmp_path: Path) -> Iterator:
    made: list[Tmux] = []

    def make(*args: str) -> Tmux:
        env = {"HOME": str(tmp_path), "TERM": "xterm-256color", "PYTHONPATH":
               str(Path(__file__).resolve().parents[2])}
        term = Tmux(str(tmp_path / f"tmux-{len(made)}.sock"), [*SHELL, *args], env)
        made.append(term)
        return term

    yield make
    for term in made:
        term.close()
