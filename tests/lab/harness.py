"""Bring the lab up and down: Asterisk in its chroot, the astcti daemon, SIPp phones.

Everything a script needs to drive the lab is written to `.lab/lab.json`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from astcti import provision
from astcti.secrets import encrypt, load_key
from astcti.store import Store
from astcti.store.store import ExtensionRow, ListenerRow
from tests.lab import chroot
from tests.lab.sipp import Phone, SippProcess, caller_process, phone_process, wait_port_free

REPO = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("ASTCTI_LAB_DIR", REPO / ".lab"))
FLAVOURS = ("asterisk", "freepbx")  # plain Asterisk + astcti's dialplan, or FreePBX 17's
FREEPBX_SHIFT = 250  # the FreePBX-flavour lab beside a test session's plain one: ports + 250
AGENTS = ["101", "102", "103", "104"]
# PJSIP endpoints not in the store: astcti-shell tests `add extension 105`; 150 exists on both
# Asterisks of a two-PBX lab (the same number on two PBXs)
SPARE = ["105", "150"]
# The second Asterisk of a two-PBX lab (`make lab PBXS=2`, tests/e2e/test_two_pbx.py), linked
# as acti_tlink_02: agents 2XX, every port SECOND_SHIFT above the first's (offset 6000 -> 6500:
# no other lab's offset, in steps of 500 from 1000, nor a FreePBX-flavour lab at +250, is there)
SECOND_SHIFT = 500
AGENTS2 = ["201", "202", "203", "204"]
SPARE2 = ["205", "150"]
#: PJSIP endpoints whose contact is a port no lab process ever listens on (the template's
#: extra_port): what the request fuzzers may call, with nobody to ring and no stray INVITE
#: retransmission reaching a phone a later test starts
FUZZ_ENDPOINTS = ["191", "192"]


class LabError(RuntimeError):
    """Something the operator must fix; the message says what."""


def _ports(o: int, agents: list[str], spare: list[str]) -> dict[str, Any]:
    """Every port of a lab at offset `o` (phones by their last digit)."""
    return {"sip_port": 5060 + o, "ari_port": 8088 + o, "ami_port": 5038 + o,
            "phones": {e: 5070 + int(e[-1]) + o for e in agents},
            "spare_phones": {e: 5070 + int(e[-1]) + o for e in spare},
            "trunk_port": 5080 + o, "trunk_ports": list(range(5080 + o, 5090 + o)),
            "rest_port": 9001 + o, "tcp_port": 9002 + o, "ws_port": 9003 + o, "port_offset": o}


@dataclass
class LabConfig:
    """Addresses, ports, credentials and paths of one lab (the content of lab.json)."""

    lab_dir: str = str(LAB_DIR)
    chroot: str = str(LAB_DIR / "chroot")
    sip_port: int = 5060
    ari_port: int = 8088
    ari_app: str = "astcti"
    ari_user: str = "astcti"
    ari_password: str = ""
    ami_port: int = 5038
    ami_user: str = "astcti"
    ami_secret: str = ""
    phones: dict[str, int] = field(default_factory=lambda: {e: 5070 + int(e[-1]) for e in AGENTS})
    spare_phones: dict[str, int] = field(
        default_factory=lambda: {e: 5070 + int(e[-1]) for e in SPARE})
    trunk_port: int = 5080
    trunk_ports: list[int] = field(default_factory=lambda: list(range(5080, 5090)))
    queue: str = "support"
    queue_number: str = "600"
    rest_port: int = 9001
    tcp_port: int = 9002
    ws_port: int = 9003
    astcti_user: str = "agent"
    astcti_password: str = ""
    admin_user: str = "admin"
    admin_password: str = ""
    supervisor_user: str = "supervisor"  # role supervisor: the wallboard
    supervisor_password: str = ""
    db: str = str(LAB_DIR / "astcti.db")
    key: str = str(LAB_DIR / "secret.key")
    admin_socket: str = str(LAB_DIR / "admin.sock")
    astcti_log: str = str(LAB_DIR / "astcti.log")
    phones_mode: str = "auto"
    port_offset: int = 0
    extra_extensions: list[str] = field(default_factory=list)  # more watched endpoints (bench)
    pids: dict[str, int] = field(default_factory=dict)
    flavour: str = "asterisk"  # "freepbx": FreePBX 17's dialplan, astcti's blocks in *_custom
    freepbx_secret: str = ""  # FreePBX's own AMI admin / ARI user (freepbx flavour)
    ivr_number: str = "601"  # IVR that sets user data, then the queue
    agent_patterns: list[str] = field(default_factory=lambda: ["_1XX"])  # dialplan: the agents
    pbxs: int = 1  # 2: a second Asterisk (its config in <lab_dir>/pbx2/lab.json), acti_tlink_02
    systemname: str = ""  # asterisk.conf: prefixes this Asterisk's uniqueids (two-PBX labs)

    @classmethod
    def from_env(cls, flavour: str | None = None, beside: bool = False) -> LabConfig:
        """The fixed topology, shifted by ASTCTI_LAB_PORT_OFFSET so two labs can share a host.

        `flavour` defaults to ASTCTI_LAB_FLAVOUR (asterisk). `beside`: a second lab next to the
        session's main one (the FreePBX-flavour fixture), in LAB_DIR/<flavour> with every port
        shifted by another FREEPBX_SHIFT, which no other lab's offset (steps of 500) reaches.
        """
        flavour = flavour or os.environ.get("ASTCTI_LAB_FLAVOUR", "asterisk")
        if flavour not in FLAVOURS:
            raise LabError(f"unknown lab flavour {flavour!r}: use one of {', '.join(FLAVOURS)}")
        o = int(os.environ.get("ASTCTI_LAB_PORT_OFFSET", "0")) + (FREEPBX_SHIFT if beside else 0)
        lab_dir = LAB_DIR / flavour if beside else LAB_DIR
        freepbx = flavour == "freepbx"
        return cls(
            lab_dir=str(lab_dir), chroot=str(lab_dir / "chroot"), db=str(lab_dir / "astcti.db"),
            key=str(lab_dir / "secret.key"), admin_socket=str(lab_dir / "admin.sock"),
            astcti_log=str(lab_dir / "astcti.log"), flavour=flavour,
            queue="600" if freepbx else "support",  # FreePBX names queues by their number
            **_ports(o, AGENTS, SPARE),
        )

    def second_pbx(self) -> LabConfig:
        """The config of this lab's second Asterisk (Asterisk only: astcti is the first's)."""
        d = Path(self.lab_dir) / "pbx2"
        return LabConfig(lab_dir=str(d), chroot=str(d / "chroot"), agent_patterns=["_2XX", "150"],
                         queue=self.queue, queue_number=self.queue_number, systemname="pbx2",
                         **_ports(self.port_offset + SECOND_SHIFT, AGENTS2, SPARE2))

    @property
    def ari_url(self) -> str:
        return f"http://127.0.0.1:{self.ari_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    @classmethod
    def load(cls, path: Path | None = None) -> LabConfig:
        path = path or LAB_DIR / "lab.json"
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self) -> None:
        path = Path(self.lab_dir) / "lab.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(path)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie of ours is not alive
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _kill_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL what is left, and wait until every member is gone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + timeout
    while _group_members(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_members(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while _group_members(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def free_port() -> int:
    """A TCP port nobody listens on right now (for a test's extra listener or daemon)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_in_use(port: int, udp: bool = False) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


class Lab:
    """One lab on this machine (fixed loopback ports, so one at a time)."""

    def __init__(self, config: LabConfig | None = None, log=print) -> None:
        self.config = config or LabConfig.from_env()
        self.dir = Path(self.config.lab_dir)
        self.root = Path(self.config.chroot)
        self.log = log
        self.phones: dict[str, SippProcess] = {}
        self.workdir = self.dir / "sipp"
        self.second: Lab | None = None  # the second Asterisk of a two-PBX lab

    # -- status -------------------------------------------------------------------------------
    @classmethod
    def running(cls, lab_dir: Path = LAB_DIR) -> LabConfig | None:
        """The config of a lab (in `lab_dir`) whose Asterisk is still alive, if any."""
        path = lab_dir / "lab.json"
        if not path.exists():
            return None
        try:
            config = LabConfig.load(path)
        except (ValueError, TypeError, OSError):
            return None
        return config if _alive(config.pids.get("asterisk")) else None

    # -- up -----------------------------------------------------------------------------------
    def up(self, phones: str = "auto", pbxs: int = 1) -> LabConfig:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (chroot, mounts): run it as root")
        running = self.running(self.dir)
        if running is not None:
            raise LabError(f"a lab is already running (Asterisk pid {running.pids['asterisk']},"
                           f" {running.lab_dir}/lab.json): `make lab-down` first")
        for port, udp, what in [(self.config.sip_port, True, "SIP"),
                                (self.config.ari_port, False, "ARI/HTTP"),
                                (self.config.ami_port, False, "AMI"),
                                (self.config.ws_port, False, "astcti WebSocket"),
                                (self.config.rest_port, False, "astcti REST"),
                                (self.config.tcp_port, False, "astcti TCP")]:
            if port_in_use(port, udp):
                raise LabError(f"port {port} ({what}) is in use on 127.0.0.1: stop what holds it"
                               f" (`ss -lntup | grep {port}`) or `make lab-down`")
        c = self.config
        c.phones_mode = phones
        c.pbxs = pbxs
        c.astcti_password = c.astcti_password or secrets.token_urlsafe(12)
        c.admin_password = c.admin_password or secrets.token_urlsafe(12)
        c.supervisor_password = c.supervisor_password or secrets.token_urlsafe(12)
        self.dir.mkdir(parents=True, exist_ok=True)
        Path(c.astcti_log).write_text("")
        try:
            self.start_pbx()
            if pbxs == 2:
                self.start_second_pbx()
            self.seed_store()
            self.start_astcti()
            if phones == "auto":
                self.start_phones()
        except BaseException:
            self.down()
            raise
        c.save()
        return c

    def start_pbx(self) -> None:
        """This lab's Asterisk alone: a fresh copy of the chroot, configured and started."""
        c = self.config
        c.ari_password = c.ari_password or secrets.token_urlsafe(18)
        c.ami_secret = c.ami_secret or secrets.token_urlsafe(18)
        c.freepbx_secret = c.freepbx_secret or secrets.token_urlsafe(18)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        base = chroot.ensure_base(log=self.log)
        chroot.copy_base(base, self.root)
        chroot.reset_state(self.root)
        self.render_config()
        if c.flavour == "freepbx":
            self.seed_astdb()
        chroot.prepare_for_asterisk(self.root)
        self.start_asterisk()

    def start_second_pbx(self) -> Lab:
        """Start the second Asterisk (agents 2XX, ports SECOND_SHIFT higher). astcti links to
        it as acti_tlink_02 when the store is seeded after this, or by the admin console."""
        second = Lab(self.config.second_pbx(), log=self.log)
        for port, udp in [(second.config.sip_port, True), (second.config.ari_port, False),
                          (second.config.ami_port, False)]:
            if port_in_use(port, udp):
                raise LabError(f"port {port} (second Asterisk) is in use on 127.0.0.1: stop what"
                               f" holds it (`ss -lntup | grep {port}`) or `make lab-down`")
        try:
            second.start_pbx()
        except BaseException:
            second.down()
            raise
        second.config.save()
        self.second = second
        return second

    def stop_second_pbx(self) -> None:
        second = self.second or _saved_lab(Path(self.config.lab_dir) / "pbx2")
        if second is not None:
            second.down()
        self.second = None

    def link_parameters(self, cipher: Fernet) -> tuple[str, str]:
        """This Asterisk as acti_tlink_NN and acti_amilink_NN values (secrets encrypted with
        astcti's key)."""
        c = self.config
        return (f"127.0.0.1#{c.ari_port}#{c.ari_app},{c.ari_user},"
                f"{encrypt(cipher, c.ari_password)}",
                f"127.0.0.1#{c.ami_port},{c.ami_user},{encrypt(cipher, c.ami_secret)}")

    def render_config(self) -> None:
        c = self.config
        variables = {
            "http_bind": "127.0.0.1", "http_port": c.ari_port,
            "ari_user": c.ari_user, "ari_password": c.ari_password,
            "ami_user": c.ami_user, "ami_secret": c.ami_secret, "ami_port": c.ami_port,
            "sip_port": c.sip_port,
            # 104 sends DTMF as SIP INFO so a SIPp phone can see the digits astcti sends
            "phones": [{"ext": e, "port": p, **({"dtmf_mode": "info"} if e == "104" else {})}
                       for e, p in {**c.phones, **c.spare_phones}.items()],
            "trunk_port": c.trunk_port, "trunk_ports": c.trunk_ports,
            "extra_extensions": [*c.extra_extensions, *FUZZ_ENDPOINTS],
            "agent_patterns": c.agent_patterns,
            # 500 ports: a FreePBX-flavour lab FREEPBX_SHIFT above has the next 500
            "rtp_start": 20000 + 2 * c.port_offset, "rtp_end": 20499 + 2 * c.port_offset,
            "queue_number": c.queue_number, "ivr_number": c.ivr_number,
            "freepbx_secret": c.freepbx_secret,
            "ring_time": 6 if c.flavour == "freepbx" else 10,  # FreePBX: RINGTIMER_DEFAULT
        }
        flavour = "lab-freepbx" if c.flavour == "freepbx" else "lab"
        provision.write(provision.render(flavour, variables), self.root / "etc/asterisk")
        if c.systemname:  # the stock asterisk.conf, with its [options] systemname set
            conf = chroot.inside(self.root, "etc/asterisk/asterisk.conf")
            conf.write_text(conf.read_text().replace(
                "[options]\n", f"[options]\nsystemname = {c.systemname}\n", 1))

    def seed_astdb(self) -> None:
        """What FreePBX keeps in AstDB for each extension (its dialplan reads it): device,
        caller id, ring timer, call waiting on; DND and call forwards off."""
        import sqlite3

        rows = {"/CustomDevstate/DND" + e: "NOT_INUSE" for e in self.config.phones}
        for ext in [*self.config.phones, *self.config.spare_phones]:
            rows.update({
                f"/AMPUSER/{ext}/device": ext, f"/AMPUSER/{ext}/cidname": f"Agent {ext}",
                f"/AMPUSER/{ext}/cidnum": ext, f"/AMPUSER/{ext}/ringtimer": "0",
                f"/AMPUSER/{ext}/voicemail": "default", f"/AMPUSER/{ext}/recording": "",
                f"/DEVICE/{ext}/dial": f"PJSIP/{ext}", f"/DEVICE/{ext}/user": ext,
                f"/DEVICE/{ext}/type": "fixed", f"/CW/{ext}": "ENABLED",
            })
        path = chroot.inside(self.root, "var/lib/asterisk/astdb.sqlite3")
        db = sqlite3.connect(path)
        try:
            db.execute("CREATE TABLE IF NOT EXISTS astdb(key VARCHAR(256), value VARCHAR(256),"
                       " PRIMARY KEY(key))")
            db.executemany("INSERT OR REPLACE INTO astdb VALUES (?, ?)", rows.items())
            db.commit()
        finally:
            db.close()

    def start_asterisk(self) -> None:
        log = open(self.dir / "asterisk.out", "wb")
        proc = subprocess.Popen(chroot.asterisk_command(self.root), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.config.pids["asterisk"] = proc.pid
        self.config.save()
        self.wait_asterisk()

    def wait_asterisk(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(self.config.pids.get("asterisk")):
                tail = (self.dir / "asterisk.out").read_text(errors="replace")[-800:]
                raise LabError(f"Asterisk exited while starting:\n{tail}")
            try:
                out = chroot.rx(self.root, "core waitfullybooted", timeout=5)
                if "fully booted" in out.lower() and self.ari_ready():
                    return
            except (chroot.ChrootError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.3)
        raise LabError(f"Asterisk did not come up within {timeout:.0f} s: see {self.dir}/asterisk.out")

    def ari_ready(self) -> bool:
        c = self.config
        req = urllib.request.Request(f"{c.ari_url}/ari/asterisk/info")
        import base64

        token = base64.b64encode(f"{c.ari_user}:{c.ari_password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def restart_asterisk(self, kill: bool = False) -> None:
        """Stop Asterisk (gracefully or kill -9) and start it again."""
        self.stop_asterisk(kill=kill)
        chroot.prepare_for_asterisk(self.root)
        self.start_asterisk()

    def stop_asterisk(self, kill: bool = False) -> None:
        pid = self.config.pids.pop("asterisk", None)
        if pid and _group_members(pid):
            if kill:
                os.killpg(pid, signal.SIGKILL)
            else:
                try:
                    chroot.rx(self.root, "core stop now", timeout=10)
                except (chroot.ChrootError, subprocess.TimeoutExpired):
                    pass
            _kill_group(pid)
        self.config.save()

    def rx(self, command: str) -> str:
        return chroot.rx(self.root, command)

    # -- astcti ---------------------------------------------------------------------------------
    def seed_store(self) -> None:
        """A store as an operator would set it up: one link, agents 101-104, the seed's ports."""
        c = self.config
        db = Path(c.db)
        db.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        cipher = load_key(c.key, create=True)
        store = Store.open(db, create=True)
        try:
            ari, ami = self.link_parameters(cipher)
            store.set_parameter("acti_tlink_01", ari, "Asterisk lab")
            store.set_parameter("acti_amilink_01", ami, "Asterisk lab AMI")
            if self.second is not None:
                ari, ami = self.second.link_parameters(cipher)
                store.set_parameter("acti_tlink_02", ari, "Asterisk lab, second PBX")
                store.set_parameter("acti_amilink_02", ami, "Asterisk lab, second PBX AMI")
                store.add_extensions([ExtensionRow(e, "PJSIP")
                                      for e in self.second.config.phones])
            store.set_parameter("acti_heartbeat", "2")
            # the lab's administrator allows its dialplan's 9-prefix outside line (to every
            # role) and 5-digit internal numbers to admins (most unrouted: `destination not
            # obtainable`); the rest is the shipped default the authorisation tests exercise
            store.set_parameter("acti_dial_agent", "internal,_0[1-7]X.,_9X.")
            store.set_parameter("acti_dial_supervisor", "internal,_0[1-7]X.,_9X.")
            store.set_parameter("acti_dial_admin", "internal,_0[1-7]X.,_9X.,_[1-8]XXXX")
            if c.flavour == "freepbx":  # agents join queues in FreePBX's member form
                store.set_parameter("acti_flavour", "freepbx")
            store.add_extensions([ExtensionRow(e, "PJSIP")
                                  for e in [*c.phones, *c.extra_extensions]])
            for port, proto in [(c.rest_port, "astctirest"), (c.tcp_port, "astctiapi"),
                                (c.ws_port, "astctiws")]:
                store.add_listener(ListenerRow(port, "127.0.0.1", "*", proto, "token"))
            store.set_user(c.astcti_user, c.astcti_password, "admin")
            store.set_user(c.admin_user, c.admin_password, "admin")
            store.set_user(c.supervisor_user, c.supervisor_password, "supervisor")
        finally:
            store.close()

    def astcti_command(self) -> list[str]:
        c = self.config
        return [sys.executable, "-m", "astcti", "--db", c.db, "--key", c.key, "serve",
                "--admin-socket", c.admin_socket, "--log-level", os.environ.get("ASTCTI_LAB_LOG", "info")]

    def start_astcti(self, wait: bool = True) -> None:
        c = self.config
        self._log_offset = Path(c.astcti_log).stat().st_size if Path(c.astcti_log).exists() else 0
        log = open(c.astcti_log, "ab")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(self.astcti_command(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=str(REPO))
        c.pids["astcti"] = proc.pid
        c.save()
        if wait:
            self.wait_astcti()

    def wait_astcti(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        marker = "ready:"
        while time.monotonic() < deadline:
            if not _alive(self.config.pids.get("astcti")):
                raise LabError(f"astcti exited while starting: see {self.config.astcti_log}")
            with open(self.config.astcti_log, "rb") as fh:
                fh.seek(getattr(self, "_log_offset", 0))
                text = fh.read().decode(errors="replace")
            if "astcti starting" in text and marker in text.split("astcti starting", 1)[1]:
                return
            time.sleep(0.2)
        raise LabError(f"astcti did not become ready within {timeout:.0f} s: see"
                       f" {self.config.astcti_log}")

    def stop_astcti(self, kill: bool = False) -> None:
        pid = self.config.pids.pop("astcti", None)
        if pid and _group_members(pid):
            if kill:
                os.killpg(pid, signal.SIGKILL)
            _kill_group(pid)
        self.config.save()

    # -- phones -------------------------------------------------------------------------------
    def start_phones(self, behaviour: Phone = Phone(answer_after_ms=1000)) -> None:
        for ext in self.config.phones:
            self.start_phone(ext, behaviour)

    def media_port(self, sip_port: int) -> int:
        """The RTP port of the SIPp process on `sip_port`: below 65536 for every lab offset
        (0-7500 in steps of 500, and the FreePBX-flavour lab at + FREEPBX_SHIFT) and apart
        from every other lab's, and from Asterisk's RTP range (20000 + 2 * offset, 500 wide)."""
        return 40000 + 2 * self.config.port_offset + 10 * (
            (sip_port - self.config.port_offset - 5000) % 100)

    def start_phone(self, ext: str, behaviour: Phone = Phone()) -> SippProcess:
        self.stop_phone(ext)
        port = {**self.config.phones, **self.config.spare_phones}[ext]
        try:
            proc = phone_process(ext, port, behaviour, self.workdir, self.config.sip_port,
                                 media_port=self.media_port(port)).listen(port)
        except RuntimeError as exc:
            raise LabError(f"phone {ext}: {exc}") from None
        self.phones[ext] = proc
        self.config.pids[f"phone-{ext}"] = proc.pid
        self.config.save()
        return proc

    def stop_phone(self, ext: str) -> None:
        proc = self.phones.pop(ext, None)
        if proc is not None:
            proc.stop()
        pid = self.config.pids.pop(f"phone-{ext}", None)
        if pid and _alive(pid):
            _kill_group(pid)

    def call(self, dest: str, caller: str = "0912345678", talk_ms: int = 2000,
             local_port: int | None = None, **kwargs) -> SippProcess:
        """A customer calls `dest` through the trunk (SIPp UAC identified as the trunk)."""
        port = local_port or self.config.trunk_ports[1]
        wait_port_free(port)
        return caller_process(port, caller, dest, self.workdir, self.config.sip_port,
                              media_port=self.media_port(port), talk_ms=talk_ms,
                              **kwargs).start()

    def dial_from(self, ext: str, dest: str, talk_ms: int = 2000) -> SippProcess:
        """Extension `ext`'s phone dials `dest` (a SIPp UAC on that phone's port; its UAS stops)."""
        self.stop_phone(ext)
        port = self.config.phones[ext]
        wait_port_free(port)
        return caller_process(port, ext, dest, self.workdir, self.config.sip_port,
                              media_port=self.media_port(port), talk_ms=talk_ms,
                              name=f"Agent {ext}", tag=f"dial-{ext}").start()

    # -- down ---------------------------------------------------------------------------------
    def down(self) -> None:
        for ext in list(self.phones):
            self.stop_phone(ext)
        for name, pid in list(self.config.pids.items()):
            if name.startswith("phone-") or name.startswith("sipp-"):
                if _alive(pid):
                    _kill_group(pid)
                self.config.pids.pop(name, None)
        self.stop_astcti()
        if self.config.pbxs == 2 or self.second is not None:
            self.stop_second_pbx()
        self.stop_asterisk()
        # anything still running from the chroot (a crashed start) goes too
        subprocess.run(["pkill", "-9", "-f", f"chroot {self.root} asterisk"], check=False)
        lab_json = self.dir / "lab.json"
        lab_json.unlink(missing_ok=True)


class ExtraDaemon:
    """A second astcti process against the lab, with its own store (e.g. linked via a proxy)."""

    def __init__(self, lab: Lab, workdir: Path, *, ari_port: int, ws_port: int,
                 heartbeat: float = 1.0, extensions: tuple[str, ...] = ("101", "102"),
                 parameters: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.workdir = workdir
        self.ws_port = ws_port
        self.db = workdir / "extra.db"
        self.key = workdir / "extra.key"
        self.log_path = workdir / "extra.log"
        self.proc: subprocess.Popen[bytes] | None = None
        c = lab.config
        cipher = load_key(self.key, create=True)
        store = Store.open(self.db, create=True)
        try:
            store.set_parameter("acti_tlink_01", f"127.0.0.1#{ari_port}#astcti-extra,"
                                                 f"{c.ari_user},{encrypt(cipher, c.ari_password)}")
            store.set_parameter("acti_heartbeat", str(heartbeat))
            for name, value in (parameters or {}).items():
                store.set_parameter(name, value)
            for ext in extensions:
                store.add_extension(ext, "PJSIP")
            store.add_listener(ListenerRow(ws_port, "127.0.0.1", "*", "astctiws", "token"))
            store.set_user(c.astcti_user, c.astcti_password, "admin")
        finally:
            store.close()

    @property
    def admin_socket(self) -> Path:
        return self.workdir / "extra-admin.sock"

    def command(self, db: Path | None = None) -> list[str]:
        return [sys.executable, "-m", "astcti", "--db", str(db or self.db), "--key",
                str(self.key), "serve", "--admin-socket", str(self.admin_socket)]

    def start(self, command: list[str] | None = None) -> ExtraDaemon:
        """Start it (`command`: e.g. `self.command()` wrapped in unshare for a fault test)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            command or self.command(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=env, cwd=str(REPO))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                if b"ready:" in fh.read():
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise LabError(f"extra astcti did not start: see {self.log_path}")

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None:
            if kill:
                os.killpg(self.proc.pid, signal.SIGKILL)
            _kill_group(self.proc.pid)
            self.proc.wait(5)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _saved_lab(lab_dir: Path) -> Lab | None:
    """The Lab described by lab_dir/lab.json (e.g. a second Asterisk), if any."""
    path = lab_dir / "lab.json"
    if not path.exists():
        return None
    try:
        return Lab(LabConfig.load(path))
    except (ValueError, TypeError, OSError):
        return None


def down_running() -> bool:
    """Stop the lab described by .lab/lab.json (and a FreePBX-flavour lab a test session left
    beside it), if any. True if something was stopped."""
    stopped = False
    for path in [LAB_DIR / "lab.json", *(LAB_DIR / f / "lab.json" for f in FLAVOURS)]:
        if path.exists():
            Lab(LabConfig.load(path)).down()
            stopped = True
    return stopped


def cleanup_workdir() -> None:
    shutil.rmtree(LAB_DIR / "sipp", ignore_errors=True)
