"""Security by default: no shipped default passwords, private files with private modes."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a literal secret after password/secret keys (templates and examples must use variables)
LITERAL_SECRET = re.compile(
    r"""(?ix)^\s*[\w.-]*(password|passwd|secret)\s*[:=]\s*
        (?!["']?(?:\{\{|\$|<|%|!vault|null\b|none\b|~|CHANGE))["']?([^\s"']{3,})""")
KNOWN_DEFAULTS = ("tcpgate01", "changeme", "admin123", "password123")


def shipped_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split()
    return [REPO / f for f in out if not f.startswith("tests/") and (REPO / f).is_file()]


def test_no_default_password_in_any_shipped_file() -> None:
    offenders = []
    for path in shipped_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            low = line.lower()
            # the seed's old default may be named in docs that warn about it, nowhere else
            if any(d in low for d in KNOWN_DEFAULTS) and "seed" not in low:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
            if path.suffix in (".py",):
                continue
            if LITERAL_SECRET.match(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_init_creates_private_files(tmp_path: Path) -> None:
    db, key = tmp_path / "lib" / "astcti.db", tmp_path / "etc" / "secret.key"
    out = subprocess.run([sys.executable, "-m", "astcti", "--db", str(db), "--key", str(key),
                          "init"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(db.stat().st_mode) & 0o007 == 0  # nothing for "others"


def test_the_scanner_sees_a_literal_password() -> None:
    assert LITERAL_SECRET.match("password = hunter2")
    assert LITERAL_SECRET.match("  astcti_admin_password: 'hunter2'")
    assert not LITERAL_SECRET.match("password = {{ ari_password }}")
    assert not LITERAL_SECRET.match("password_format = plain")
    assert not LITERAL_SECRET.match('astcti_ari_password: ""')
