"""astcti-shell without a daemon: offline mode (--db), daemon not running, completion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from astcti.admin.shell import completions
from astcti.secrets import decrypt, load_key
from tests.admin.conftest import one_error, run_shell, store_state


@pytest.fixture
def offline(tmp_path: Path) -> tuple[Path, Path]:
    db, key = tmp_path / "a.db", tmp_path / "k"
    subprocess.run([sys.executable, "-m", "astcti", "--db", str(db), "--key", str(key), "init"],
                   check=True, capture_output=True)
    return db, key


def test_daemon_not_running_is_one_line(tmp_path: Path) -> None:
    line = one_error(run_shell("--socket", str(tmp_path / "none.sock"), "-c", "show tcp"), 2)
    assert "astcti is not running" in line and "--db" in line


def test_stale_socket_is_reported_as_not_running(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    line = one_error(run_shell("--socket", str(path), "-c", "show links"), 2)
    assert "nothing listens" in line


def test_help_needs_no_daemon(tmp_path: Path) -> None:
    out = run_shell("--socket", str(tmp_path / "none.sock"), "-c", "help update parameter")
    assert out.returncode == 0, out.stderr
    assert "usage: update parameter NAME VALUE..." in out.stdout
    assert "example: update parameter acti_defaultexttype PJSIP" in out.stdout


def test_offline_mode_edits_the_store(offline: tuple[Path, Path], tmp_path: Path) -> None:
    db, key = offline
    base = ["--socket", str(tmp_path / "none.sock"), "--db", str(db), "--key", str(key)]
    out = run_shell(*base, "-c", "add extension 105 PJSIP", "-c", "add tcp 9011 127.0.0.1 *"
                    " custom astctiws", "-c", "show extensions", "-c", "show tcp")
    assert out.returncode == 0, out.stderr
    assert "note: astcti is not running: editing" in out.stderr
    assert "PJSIP/105" in out.stdout and "9011" in out.stdout
    state = store_state(db)
    assert [e.number for e in state["extensions"]] == ["105"]
    assert [r.port for r in state["listeners"]] == [9011]
    # the daemon-only commands say so, and change nothing
    for command in ("show links", "show monitors", "show calls", "show agents", "trace on asc"):
        line = one_error(run_shell(*base, "-c", command))
        assert "needs the running daemon" in line
    assert store_state(db) == state
    # passwords come from stdin, never from the command line
    out = run_shell(*base, "-c", "add user alice", stdin="correct horse\n")
    assert out.returncode == 0 and "user alice added" in out.stdout
    from astcti.store import Store
    store = Store.open(db)
    assert store.check_user("alice", "correct horse") is not None
    store.close()
    out = run_shell(*base, "-c", "encrypt password", stdin="ari-secret\n")
    assert out.returncode == 0
    assert decrypt(load_key(key), out.stdout.strip(), what="t") == "ari-secret"


def test_stdin_script_stops_at_the_first_error(offline: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    db, key = offline
    script = "# provisioning\nadd extension 201\n\nadd extension 202 XYZ\nadd extension 203\n"
    out = run_shell("--socket", str(tmp_path / "n.sock"), "--db", str(db), stdin=script)
    assert out.returncode == 1
    assert one_error(out).startswith("astcti-shell: line 4: unknown technology 'XYZ'")
    assert [e.number for e in store_state(db)["extensions"]] == ["201"]


def test_completion_candidates() -> None:
    names = {"parameters": ["acti_heartbeat", "acti_tlink_01"], "extensions": ["101", "102"],
             "ports": ["9001", "9003"], "users": ["agent"]}
    assert completions("upd", names) == ("upd", ["update"])
    assert completions("update ", names) == ("", ["parameter", "user"])
    assert completions("update user agent ", names)[1] == ["role", "extensions"]
    assert completions("add user bob ", names)[1] == ["agent", "supervisor", "admin"]
    assert completions("update parameter acti_t", names) == ("acti_t", ["acti_tlink_01"])
    assert completions("show par", names)[1] == ["parameter", "parameters"]
    assert completions("remove extension ", names)[1] == ["101", "102", "--force"]
    assert completions("remove extension 1", names)[1] == ["101", "102"]
    assert completions("remove tcp ", names)[1] == ["9001", "9003"]
    assert completions("add extension 105 pj", names)[1] == ["PJSIP"]
    assert completions("add tcp 9011 127.0.0.1 * ", names)[1] == ["custom", "--force"]
    assert completions("add tcp 9011 127.0.0.1 * custom astctiw", names)[1] == ["astctiws"]
    assert completions("trace on ", names)[1] == ["asc", "ari", "client"]
    assert completions("passwd user ", names)[1] == ["agent"]
    assert completions("help add t", names)[1] == ["tcp"]
