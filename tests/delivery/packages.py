"""Versions of the .deb for the upgrade test.

"N+1" is the package built by `make deb` repacked with a higher version and one more store
migration, which records whether an astcti daemon still served when it ran. That is what an
upgrade must never do: migrate the store under the previous version's daemon.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path


# Appended to astcti/store/schema.py of the repacked package. The probe looks for a serving
# daemon through its admin socket: only the previous version's daemon can answer while
# postinst migrates (the new one is started after).
PROBE_MIGRATION = '''

def _upgrade_probe(db: sqlite_utils.Database) -> None:
    """Test-only migration of the repacked N+1: did a daemon serve while the store migrated?"""
    import os
    import socket

    serving = False
    path = os.environ.get("ASTCTI_ADMIN_SOCKET", "/run/astcti/admin.sock")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2)
        probe.connect(path)
        serving = True
    except OSError:
        pass
    finally:
        probe.close()
    db.conn.execute("CREATE TABLE upgrade_probe (daemon_serving INTEGER, pid INTEGER)")
    db.conn.execute("INSERT INTO upgrade_probe VALUES (?, ?)", (int(serving), os.getpid()))


MIGRATIONS.append(_upgrade_probe)
SCHEMA_VERSION = len(MIGRATIONS)
'''


def deb_version(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True,
                          text=True, check=True).stdout.strip()


def next_version(deb: Path, work: Path, suffix: str = "+next1") -> Path:
    """The repacked N+1 of `deb` (cached next to it by the hash of `deb`)."""
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()[:12]
    version = deb_version(deb) + suffix
    arch = subprocess.run(["dpkg-deb", "-f", str(deb), "Architecture"], capture_output=True,
                          text=True, check=True).stdout.strip()
    out = work / f"astcti_{version}_{arch}.deb"
    stamp = out.with_suffix(".from")
    if out.exists() and stamp.exists() and stamp.read_text() == digest:
        return out
    tree = work / "next-tree"
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN/control"
    control.write_text(re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(),
                              flags=re.M))
    site = next(tree.glob("opt/venvs/astcti/lib/python3.*/site-packages"))
    upstream = version.replace("~", "")
    old_info = next(site.glob("astcti-*.dist-info"))
    new_info = site / f"astcti-{upstream}.dist-info"
    old_info.rename(new_info)
    metadata = new_info / "METADATA"
    metadata.write_text(re.sub(r"^Version: .*$", f"Version: {upstream}", metadata.read_text(),
                               flags=re.M))
    schema = site / "astcti/store/schema.py"
    schema.write_text(schema.read_text() + PROBE_MIGRATION)
    sums = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file() and "DEBIAN" not in p.parts):
        sums.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.relative_to(tree)}")
    (tree / "DEBIAN/md5sums").write_text("\n".join(sums) + "\n")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(tree), str(out)],
                   check=True, capture_output=True)
    shutil.rmtree(tree)
    stamp.write_text(digest)
    return out
