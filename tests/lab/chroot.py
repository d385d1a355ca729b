"""The Asterisk chroot: built once with mmdebstrap, cached outside the checkout, copied per lab."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

PACKAGES = [
    "asterisk",
    "asterisk-modules",
    "asterisk-core-sounds-en-gsm",
    "asterisk-moh-opsound-gsm",
]
CACHE_ROOT = Path(os.environ.get("ASTCTI_LAB_CACHE", "/var/cache/astcti-lab"))
# /var/run is a symlink to /run (absolute!): always use run/ so nothing outside the root is touched
ASTERISK_DIRS = ["var/lib/asterisk", "var/log/asterisk", "var/spool/asterisk",
                 "run/asterisk", "etc/asterisk"]


def inside(root: Path, rel: str) -> Path:
    """root/rel, refusing any path that a symlink would lead out of the chroot."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ChrootError(f"{root / rel} leads outside the chroot ({path})")
    return path


class ChrootError(RuntimeError):
    pass


def host_mirror() -> str:
    """The Debian mirror this machine's apt already uses (no host is hard-coded here)."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                uri = line.split(":", 1)[1].split()[0]
                if "security" not in uri:
                    return uri
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    raise ChrootError("no Debian mirror in /etc/apt/sources.list.d/debian.sources or "
                      "/etc/apt/sources.list: configure apt first")


def base_path(packages: list[str] = PACKAGES) -> Path:
    key = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    return CACHE_ROOT / f"sid-{key}"


def ensure_base(packages: list[str] = PACKAGES, log=print) -> Path:
    """Build the cached chroot if it is missing (about 15-25 s)."""
    base = base_path(packages)
    if (base / ".complete").exists():
        return base
    if shutil.which("mmdebstrap") is None:
        raise ChrootError("mmdebstrap is missing: run `make sysdeps` (apt-get install mmdebstrap)")
    tmp = base.with_name(base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the Asterisk chroot in {base} (once; cached)...")
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
           "--aptopt=Acquire::Check-Valid-Until \"false\"",
           f"--include={','.join(packages)}", "sid", str(tmp), host_mirror()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise ChrootError(f"mmdebstrap failed ({proc.returncode}):\n{tail}")
    (tmp / ".complete").write_text(" ".join(packages) + "\n")
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    return base


def copy_base(base: Path, dest: Path) -> None:
    """A private copy of the cached chroot for one lab (Asterisk writes into it)."""
    marker = dest / ".base"
    if marker.exists() and marker.read_text() == str(base):
        return
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(dest)], check=True)
    marker.write_text(str(base))


def reset_state(root: Path) -> None:
    """Forget what a previous lab left (astdb with queue members, logs, spool)."""
    for rel in ["var/lib/asterisk/astdb.sqlite3", "var/log/asterisk/messages.log"]:
        inside(root, rel).unlink(missing_ok=True)
    clear_run_dir(root)
    for rel in ["var/spool/asterisk/outgoing"]:
        d = inside(root, rel)
        if d.is_dir():
            for child in d.iterdir():
                if child.is_file() or child.is_socket():
                    child.unlink(missing_ok=True)


def clear_run_dir(root: Path) -> None:
    """A killed Asterisk leaves its control socket and pid file; a new one would refuse to start."""
    run = inside(root, "run/asterisk")
    if run.is_dir():
        for child in run.iterdir():
            child.unlink(missing_ok=True)


def prepare_for_asterisk(root: Path) -> None:
    """Asterisk refuses to run as root from the stock tree: hand its dirs to the asterisk user."""
    hostname = os.uname().nodename
    (root / "etc/hosts").write_text(f"127.0.0.1 localhost {hostname}\n::1 localhost ip6-localhost\n")
    inside(root, "run/asterisk").mkdir(parents=True, exist_ok=True)
    clear_run_dir(root)
    passwd = (root / "etc/passwd").read_text()
    m = re.search(r"^asterisk:[^:]*:(\d+):(\d+):", passwd, re.M)
    if not m:
        raise ChrootError(f"no asterisk user in {root}/etc/passwd: rebuild the chroot cache")
    uid, gid = int(m.group(1)), int(m.group(2))
    for rel in ASTERISK_DIRS:
        for dirpath, dirnames, filenames in os.walk(inside(root, rel)):
            os.chown(dirpath, uid, gid)
            for name in filenames:
                os.lchown(os.path.join(dirpath, name), uid, gid)


def asterisk_command(root: Path) -> list[str]:
    """Asterisk in the foreground, mounts private to the process (nothing left on the host)."""
    script = (f"mount --bind /proc {root}/proc && mount --bind /dev {root}/dev && "
              f"exec chroot {root} asterisk -f -U asterisk -G asterisk")
    return ["unshare", "--mount", "--fork", "sh", "-c", script]


def rx(root: Path, command: str, timeout: float = 10) -> str:
    """`asterisk -rx` inside the chroot; the console text."""
    proc = subprocess.run(["chroot", str(root), "asterisk", "-rx", command],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ChrootError(f"asterisk -rx {command!r} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout
