"""Chroots for the delivery test: a clean Debian 12 for the .deb, a clean Asterisk (sid) for
the asterisk_ari role. Built once with mmdebstrap, cached beside the lab's, copied per run.

Commands that need /proc or /dev inside a chroot run under `unshare --mount`, so the bind
mounts belong to that process only and vanish with it, even if the test dies.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.lab import chroot as labchroot

# A fresh Debian 12 server as Ansible expects it (python3, python3-apt), booted with systemd as
# PID 1 (tests/delivery/machine.py); man-db so `systemd-analyze verify` checks Documentation=.
BOOKWORM_PACKAGES = ["python3", "python3-apt", "adduser", "systemd", "ca-certificates", "man-db"]
# The lab's Asterisk plus python3, which Ansible needs on its target.
SID_PACKAGES = [*labchroot.PACKAGES, "python3"]


def ensure(suite: str, packages: list[str], log=print) -> Path:
    """The cached chroot for (suite, packages), built if missing (about 20-40 s)."""
    key = hashlib.sha256(f"{suite} {' '.join(sorted(packages))}".encode()).hexdigest()[:12]
    base = labchroot.CACHE_ROOT / f"delivery-{suite}-{key}"
    if (base / ".complete").exists():
        return base
    if shutil.which("mmdebstrap") is None:
        raise labchroot.ChrootError("mmdebstrap is missing: run `make sysdeps`")
    tmp = base.with_name(base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the {suite} chroot in {base} (once; cached)...")
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--quiet",
           "--aptopt=Acquire::Check-Valid-Until \"false\"",
           f"--include={','.join(packages)}", suite, str(tmp), labchroot.host_mirror()]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise labchroot.ChrootError(f"mmdebstrap {suite} failed ({proc.returncode}):\n{tail}")
    (tmp / ".complete").write_text(" ".join(packages) + "\n")
    shutil.rmtree(base, ignore_errors=True)
    tmp.rename(base)
    return base


def fresh_copy(base: Path, dest: Path) -> Path:
    """A throw-away copy of a cached chroot (each run starts clean)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(dest)], check=True)
    return dest


def with_mounts(roots: list[Path], command: list[str]) -> list[str]:
    """`command` in a private mount namespace where each root has /proc and /dev."""
    mounts = " && ".join(f"mount --bind /proc {shlex.quote(str(r))}/proc && "
                         f"mount --bind /dev {shlex.quote(str(r))}/dev" for r in roots)
    return ["unshare", "--mount", "--fork", "sh", "-c",
            f"{mounts} && exec {shlex.join(command)}"]


def run_in(root: Path, command: list[str], *, check: bool = True, timeout: float = 300,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command inside the chroot (with /proc and /dev), output captured."""
    proc = subprocess.run(with_mounts([root], ["chroot", str(root), *command]),
                          capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(command)} in {root} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc
