"""A Debian tree booted with systemd as PID 1, as root, on a machine without systemd.

systemd-nspawn does not boot here (no host systemd, cgroup v1 without perf_event), so this does
by hand what nspawn does, with util-linux only:

- a private cgroup v2 subtree: a child of the host's cgroup2 mount, entered before
  `unshare --cgroup`, so the container's /sys/fs/cgroup shows only that subtree and systemd
  runs in unified mode whatever the host mixes;
- new PID, mount, UTS and IPC namespaces (`unshare --pid --fork`): systemd is PID 1 there;
- /proc (with /proc/sys read-only), a read-only /sys, cgroup2, a minimal /dev (null, zero,
  full, random, urandom, tty, a private devpts) and `pivot_root` into the tree;
- the host's network namespace, so loopback services (Asterisk, the daemon's listeners) are
  reachable both ways, and `container=astcti-delivery` so systemd skips what only a real
  machine does.

Every mount belongs to the new mount namespace and vanishes with it; `poweroff()` (or
`cgroup.kill` when systemd does not stop) leaves nothing on the host but the tree itself.
Commands enter the running system with `nsenter` (namespaces, root and cwd of PID 1), so
`systemctl`, `journalctl`, apt's maintainer scripts and Ansible (through `chroot_exe`, see
`ansible_wrapper`) talk to the real systemd.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
import uuid
from pathlib import Path

ENV = ["env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME=/root", "LANG=C.UTF-8", "TERM=dumb"]
DEVICES = ["null", "zero", "full", "random", "urandom", "tty"]


class BootError(RuntimeError):
    pass


def cgroup2_mount() -> Path:
    """Where the host mounts cgroup v2 (/sys/fs/cgroup on unified hosts, .../unified on hybrid)."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    raise BootError("no cgroup2 file system is mounted on this host: mount one with"
                    " `mount -t cgroup2 none /sys/fs/cgroup/unified` (systemd needs it)")


def _boot_script(root: Path) -> str:
    r = shlex.quote(str(root))
    devices = " ".join(DEVICES)
    return f"""set -e
mount --make-rprivate /
mount --bind {r} {r}
mount -t proc -o nosuid,nodev,noexec proc {r}/proc
mount --bind {r}/proc/sys {r}/proc/sys
mount -o remount,bind,ro {r}/proc/sys
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 {r}/sys/fs/cgroup
mount -t tmpfs -o mode=755,nosuid,size=8m tmpfs {r}/dev
for d in {devices}; do touch {r}/dev/$d; mount --bind /dev/$d {r}/dev/$d; done
mkdir -p {r}/dev/pts {r}/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts {r}/dev/pts
ln -s pts/ptmx {r}/dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {r}/dev/shm
ln -s /proc/self/fd {r}/dev/fd
: > {r}/dev/console
mount --bind /proc/self/fd/1 {r}/dev/console
cd {r}
mkdir -p .oldroot
pivot_root . .oldroot
exec chroot . sh -c 'umount -l /.oldroot && rmdir /.oldroot && exec env -i container=astcti-delivery \
  /lib/systemd/systemd --system --log-color=no --show-status=no'
"""


class Machine:
    """One booted tree; `boot()` starts it, `poweroff()` stops it and cleans the host up."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = Path(root)
        self.log = Path(log)
        self.cgroup = cgroup2_mount() / f"astcti-boot-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0  # systemd's pid on the host

    # -- life cycle -----------------------------------------------------------------------------
    def boot(self, timeout: float = 90) -> None:
        # machine-id: systemd writes one on first boot if it is empty; give the copy its own.
        (self.root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        self.cgroup.mkdir()
        inner = shlex.join(["unshare", "--pid", "--fork", "--mount", "--uts", "--ipc", "--cgroup",
                            "--propagation", "private", "sh", "-c", _boot_script(self.root)])
        outer = f"echo $$ > {shlex.quote(str(self.cgroup / 'cgroup.procs'))} && exec {inner}"
        self.proc = subprocess.Popen(["sh", "-c", outer], stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BootError(f"the boot of {self.root} ended ({self.proc.returncode}):\n"
                                + self.log.read_text(errors="replace")[-3000:])
            if not self.pid:
                self.pid = self._systemd_pid()
            if self.pid:
                state = self.run(["systemctl", "is-system-running"], check=False,
                                 timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    if state == "degraded":
                        failed = self.run(["systemctl", "--failed", "--no-legend"],
                                          check=False).stdout
                        raise BootError(f"{self.root} booted degraded:\n{failed}")
                    return
            time.sleep(0.3)
        raise BootError(f"{self.root} did not reach `running` within {timeout:.0f} s:\n"
                        + self.log.read_text(errors="replace")[-3000:])

    def _systemd_pid(self) -> int:
        """PID 1 of the new PID namespace, seen from the host: the forked child of unshare."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return 0
        for pid in children.split():
            try:
                if Path(f"/proc/{pid}/exe").resolve().name == "systemd":
                    return int(pid)
            except OSError:
                continue
        return 0

    def poweroff(self, timeout: float = 30) -> None:
        """Stop every unit the way a shutdown does, then make sure nothing is left."""
        if self.proc is not None and self.proc.poll() is None and self.pid:
            try:
                os.kill(self.pid, signal.SIGRTMIN + 4)  # systemd: start poweroff.target
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self._kill_all()
            self.proc.wait(10)
        self._remove_cgroups()

    def _kill_all(self) -> None:
        kill = self.cgroup / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        elif self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _remove_cgroups(self) -> None:
        if not self.cgroup.exists():
            return
        deadline = time.monotonic() + 10
        while True:
            try:
                for d in sorted((p for p in self.cgroup.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):
                    d.rmdir()
                self.cgroup.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                self._kill_all()
                time.sleep(0.2)

    # -- commands inside ------------------------------------------------------------------------
    def enter(self) -> list[str]:
        """The prefix that runs a command inside the booted system (as its root, clean env)."""
        if not self.pid:
            raise BootError(f"{self.root} is not booted")
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "-u", "-i", "-C", "-r", "-w", "--",
                *ENV]

    def run(self, command: list[str], *, check: bool = True, timeout: float = 300,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.enter(), *command], capture_output=True, text=True,
                              timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"{shlex.join(command)} in the booted {self.root} failed"
                                 f" ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                                 f"{proc.stderr[-2000:]}")
        return proc

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """`systemctl show` properties of a unit."""
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in props)]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.run(["journalctl", "--no-pager", "-o", "short-precise", "-u", unit],
                        check=False).stdout

    def ansible_wrapper(self, path: Path) -> Path:
        """A `chroot_exe` for community.general.chroot that enters the booted system instead.

        The plugin runs `<chroot_exe> <root> <shell> -c <cmd>`: drop <root>, nsenter instead.
        """
        path.write_text("#!/bin/sh\n# enter the booted tree (see tests/delivery/machine.py)\n"
                        f"shift\nexec {shlex.join(self.enter())} \"$@\"\n")
        path.chmod(0o755)
        return path
