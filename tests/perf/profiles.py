"""Where astcti's CPU goes at the bench's scale point, measured two ways that survive a loaded
machine (other labs and tests share the 2 cores): a cProfile of CPU time (not wall time) over
the calls, and callgrind's instruction count per call (exact and repeatable under load).
"""

from __future__ import annotations

import glob
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.harness import Lab, LabConfig, _group_members


def cpu_of(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def asterisk_cpu(lab: Lab) -> float:
    """CPU seconds of the lab's Asterisk (its whole process group: unshare, chroot, asterisk)."""
    total = 0.0
    for pid in _group_members(lab.config.pids["asterisk"]):
        try:
            total += sum(cpu_of(pid))
        except OSError:
            pass
    return total


class CallWindow:
    """What the scale point measures between the first call and the last event: astcti's and
    Asterisk's CPU, and optional hooks (a profiler switched on and off around the window)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def start(self) -> None:
        self.astcti0 = cpu_of(self.lab.config.pids["astcti"])
        self.asterisk0 = asterisk_cpu(self.lab)

    def stop(self) -> None:
        self.astcti1 = cpu_of(self.lab.config.pids["astcti"])
        self.asterisk1 = asterisk_cpu(self.lab)

    def figures(self, calls: int) -> dict:
        user = self.astcti1[0] - self.astcti0[0]
        system = self.astcti1[1] - self.astcti0[1]
        return {"cpu_per_call_ms": (user + system) / calls * 1000,
                "cpu_user_ms": user / calls * 1000, "cpu_sys_ms": system / calls * 1000,
                "asterisk_cpu_per_call_ms": (self.asterisk1 - self.asterisk0) / calls * 1000}


# own time of a function -> the part of astcti it belongs to (first match wins)
AREAS: list[tuple[str, str]] = [
    (r"astcti/pbx/|astcti/wsproto|aiohttp/client|aiohttp/_websocket/reader|aiohttp/_websocket/writer|"
     r"aiohttp/streams|aiohttp/base_protocol", "ARI link: events in, REST requests out"),
    (r"astcti/cti/control", "call control (Stasis reactions)"),
    (r"astcti/cti/tracker|astcti/cti/model|astcti/cti/userdata|astcti/cti/acd|"
     r"astcti/cti/presence|astcti/cti/queue|astcti/cti/parties", "tracker and feature services"),
    (r"astcti/cti/hub|astcti/cti/events|astcti/wire|astcti/api/", "hub, serialisation, fan-out"),
    (r"orjson|json/|<built-in method _json", "JSON"),
    (r"asyncio/|_asyncio|_weakrefset|selectors|uvloop|<method 'poll'|<method '(send|recv)",
     "event loop, tasks, sockets"),
    (r"astcti/app|astcti/admin/trace", "event flow (app.py, the admin trace tap)"),
]


def area_of(filename: str) -> str:
    for pattern, area in AREAS:
        if re.search(pattern, filename):
            return area
    return "other"


class ProfiledLab(Lab):
    """A lab whose daemon runs under tests.perf.profiled (cProfile switched by signals)."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out

    def astcti_command(self) -> list[str]:
        cmd = super().astcti_command()  # python -m astcti ARGS
        return [cmd[0], "-m", "tests.perf.profiled", str(self.out), *cmd[3:]]


class ProfiledWindow(CallWindow):
    def start(self) -> None:
        super().start()
        os.kill(self.lab.config.pids["astcti"], signal.SIGUSR1)

    def stop(self) -> None:
        out = getattr(self.lab, "out")
        out.unlink(missing_ok=True)
        os.kill(self.lab.config.pids["astcti"], signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # let the writer finish
        super().stop()


def summarise(path: Path, calls: int, top: int = 12) -> dict:
    """Own CPU time per function and per area of the profiled window (a generic built-in's
    time, e.g. dict.get, counts for the areas of its callers, in proportion; orjson's and the
    sockets' count for their own areas)."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1.0
    areas: dict[str, float] = {}
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, _cum, callers) in stats.items():
        label = f"{name} ({_short(filename)}:{line})" if line else name
        area = area_of(f"{filename} {name}")
        if filename == "~" and callers and area == "other":  # dict.get...: its callers' areas
            weights = {key: value[3] for key, value in callers.items()}
            spread = sum(weights.values()) or 1.0
            for (cfile, _cline, cname), weight in weights.items():
                area = area_of(f"{cfile} {cname}")
                areas[area] = areas.get(area, 0.0) + tottime * weight / spread
        else:  # astcti's and its libraries' functions, and built-ins of an area (orjson, sockets)
            areas[area] = areas.get(area, 0.0) + tottime
        rows.append((tottime, ncalls, label))
    rows.sort(reverse=True)
    return {"total": total, "calls": calls,
            "top": [(t / total * 100, n / calls, label) for t, n, label in rows[:top]],
            "areas": sorted(((t / total * 100, a) for a, t in areas.items()), reverse=True)}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "python3.11/", "/astcti/", "/tests/"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return ("astcti/" + tail) if marker == "/astcti/" else tail
    return filename


class FloorLab(Lab):
    """A lab whose daemon is tests.perf.floor: astcti's Stasis-path messages and nothing else."""

    def start_astcti(self, wait: bool = True) -> None:
        os.environ["FLOOR_ARI_PASSWORD"] = self.config.ari_password  # not on its command line
        super().start_astcti(wait)

    def astcti_command(self) -> list[str]:
        c = self.config
        return [sys.executable, "-m", "tests.perf.floor", "--ari-port", str(c.ari_port),
                "--ari-user", c.ari_user, "--app", c.ari_app, "--ws-port", str(c.ws_port),
                "--extensions", ",".join([*c.phones, *c.extra_extensions])]


# -- callgrind -----------------------------------------------------------------------------------
class CallgrindLab(Lab):
    """A lab whose daemon runs under valgrind --tool=callgrind, instrumentation off until the
    window opens (valgrind still slows the daemon ~30x: use a low call rate)."""

    def __init__(self, out: Path, config: LabConfig | None = None) -> None:
        super().__init__(config)
        self.out = out

    def astcti_command(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={self.out}", *super().astcti_command()]

    def wait_astcti(self, timeout: float = 30.0) -> None:
        super().wait_astcti(max(timeout, 300.0))


class CallgrindFloorLab(CallgrindLab, FloorLab):
    """The floor app (`FloorLab`) under callgrind (`CallgrindLab`)."""


class CallgrindWindow(CallWindow):
    def start(self) -> None:
        super().start()
        subprocess.run(["callgrind_control", "-i", "on", str(self.lab.config.pids["astcti"])],
                       capture_output=True, timeout=60)

    def stop(self) -> None:
        pid = str(self.lab.config.pids["astcti"])
        subprocess.run(["callgrind_control", "-i", "off", pid], capture_output=True, timeout=60)
        subprocess.run(["callgrind_control", "-d", pid], capture_output=True, timeout=120)
        super().stop()


def callgrind_available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def instructions(out: Path) -> int:
    """Instructions executed in the dumped window(s)."""
    total = 0
    for path in glob.glob(f"{out}*"):
        for line in open(path, errors="replace"):
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total
