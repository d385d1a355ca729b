"""The `astcti` command: one clear line and a non-zero exit for every operator mistake."""

import subprocess
import sys
from pathlib import Path

from astcti import __version__


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "astcti", *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_version() -> None:
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"astcti {__version__}"


def test_init_then_encrypt_password(tmp_path: Path) -> None:
    db, key = tmp_path / "s.db", tmp_path / "k"
    out = run("--db", str(db), "--key", str(key), "init")
    assert out.returncode == 0 and "created" in out.stdout
    assert db.exists() and key.exists()
    again = run("--db", str(db), "--key", str(key), "init")
    assert again.returncode == 0 and "kept" in again.stdout
    enc = run("--key", str(key), "encrypt-password", stdin="hunter2\n")
    assert enc.returncode == 0 and "hunter2" not in enc.stdout
    from astcti.secrets import decrypt, load_key
    assert decrypt(load_key(key), enc.stdout.strip(), what="t") == "hunter2"


def test_init_says_when_it_migrates_an_older_store(tmp_path: Path) -> None:
    """The package's postinst runs `init` on upgrade: its line tells what happened to the store."""
    import sqlite3

    import sqlite_utils

    from astcti.store.schema import MIGRATIONS, SCHEMA_VERSION

    db, key = tmp_path / "s.db", tmp_path / "k"
    old = sqlite_utils.Database(sqlite3.connect(db))
    MIGRATIONS[0](old)
    old.conn.execute("PRAGMA user_version=1")
    old.conn.commit()
    old.conn.close()
    out = run("--db", str(db), "--key", str(key), "init")
    assert out.returncode == 0, out.stderr
    assert f"migrated from schema 1 to {SCHEMA_VERSION}" in out.stdout


def test_empty_password_is_refused(tmp_path: Path) -> None:
    out = run("--key", str(tmp_path / "k"), "encrypt-password", stdin="\n")
    assert out.returncode == 2 and out.stderr.strip() == "astcti: empty password: nothing encrypted"


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr
    errors = [l for l in out.stderr.splitlines() if l.startswith("astcti: ")]
    assert len(errors) == 1, out.stderr
    return errors[0]


def test_serve_missing_store(tmp_path: Path) -> None:
    line = _one_line_error(run("--db", str(tmp_path / "none.db"), "--key", str(tmp_path / "k"),
                               "serve"))
    assert "does not exist" in line and "astcti init" in line


def test_serve_corrupt_store(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    db.write_bytes(b"garbage" * 500)
    line = _one_line_error(run("--db", str(db), "--key", str(tmp_path / "k"), "serve"))
    assert "corrupt" in line
    assert db.read_bytes() == b"garbage" * 500


def test_serve_missing_key(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    run("--db", str(db), "--key", str(tmp_path / "k"), "init")
    line = _one_line_error(run("--db", str(db), "--key", str(tmp_path / "other"), "serve"))
    assert "key file" in line
