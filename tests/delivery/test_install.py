"""The delivery for real, under a real systemd: a clean Debian 12 tree booted with systemd as
PID 1 (tests/delivery/machine.py) gets astcti from the signed apt repository `make repo` built,
through the Ansible roles, while a clean Asterisk (sid) tree with a site's own HTTP/TLS and
ARI settings is provisioned by the same playbook. Then: the hardened unit runs, a second run
changes nothing, a call is seen and controlled by a WebSocket client, listener changes reload
instead of restarting, bad input fails with one line, N+1 upgrades a live store, the backup
rolls back, and `apt purge` leaves only what the policy keeps.

Ports differ from the lab's so this runs while `make lab` runs (and follow
ASTCTI_LAB_PORT_OFFSET, or ASTCTI_DELIVERY_PORT_OFFSET): SIP 5160, ARI 8188, HTTPS 8189,
AMI 5138, astcti WS 9103 (and 9105), phones 101/102 on 5171/5172, trunk 5180, repository 8190.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.delivery import chroots, packages
from tests.delivery.common import (CHANNELVARS, OFFSET, REPO, WORK, ami_login, changed_tasks,
                                   failure_text, recap, wait_for)
from tests.delivery.common import playbook as run_playbook
from tests.delivery.machine import Machine
from tests.lab import chroot as labchroot
from tests.lab.harness import port_in_use
from tests.lab.sipp import Phone, caller_process, phone_process, wait_port_free

_O = OFFSET
(SIP_PORT, ARI_PORT, TLS_PORT, AMI_PORT, WS_PORT, WS2_PORT, PHONE_PORT, PHONE2_PORT, TRUNK_PORT,
 REPO_PORT, BUSY_PORT) = (p + _O for p in (5160, 8188, 8189, 5138, 9103, 9105, 5171, 5172, 5180,
                                           8190, 9104))
MEDIA_PHONE, MEDIA_CALLER = 6510 + 10 * _O // 100, 7510 + 10 * _O // 100
DIST_REPO = REPO / "dist/repo"
APP = "astctidelivery"  # not the default Stasis app name: the roles must pass it through

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, namespaces)")


@dataclass
class World:
    """Both trees, the booted one's systemd, the processes around them and what runs reported."""

    cti: Path
    pbx: Path
    deb: Path
    machine: Machine
    chroot_exe: Path
    ari_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    ami_secret: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    agent_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    other_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    # -- Ansible --------------------------------------------------------------------------------
    def inventory(self, path: Path, *, pbx: dict | None = None, cti: dict | None = None,
                  drop: tuple[str, ...] = ()) -> Path:
        """Chroot-connection inventory: the PBX tree by chroot, the booted tree by nsenter."""
        pbx_vars = {
            "ansible_connection": "community.general.chroot", "ansible_host": str(self.pbx),
            "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": False,
            "asterisk_ari_flavour": "asterisk", "asterisk_ari_user": "astcti",
            "asterisk_ari_password": self.ari_password, "asterisk_ari_http_port": ARI_PORT,
            "asterisk_ari_app": APP, "asterisk_ari_ami_secret": self.ami_secret,
            "asterisk_ari_demo": True, "asterisk_ari_demo_sip_port": SIP_PORT,
            "asterisk_ari_demo_phones": [{"ext": "101", "port": PHONE_PORT},
                                         {"ext": "102", "port": PHONE2_PORT}],
            "asterisk_ari_demo_trunk_sources": [f"127.0.0.1:{TRUNK_PORT}"],
            **(pbx or {}),
        }
        cti_vars = {
            "ansible_connection": "community.general.chroot", "ansible_host": str(self.cti),
            "ansible_chroot_exe": str(self.chroot_exe),
            "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": False,
            "astcti_deb_source": "apt",
            "astcti_apt_repository": (f"deb [signed-by=/etc/apt/keyrings/astcti.gpg]"
                                      f" http://127.0.0.1:{REPO_PORT} bookworm main"),
            "astcti_apt_key_file": str(DIST_REPO / "astcti-archive-keyring.gpg"),
            "astcti_links": [{"host": "127.0.0.1", "port": ARI_PORT, "app": APP,
                              "user": "astcti", "password": self.ari_password,
                              "ami": {"port": AMI_PORT, "secret": self.ami_secret}}],
            "astcti_extensions": [{"number": "101", "technology": "PJSIP"}],
            "astcti_listeners": [{"port": WS_PORT, "bind": "127.0.0.1", "allow": "*",
                                  "protocol": "astctiws", "auth": "token"}],
            "astcti_users": [{"username": "agent", "password": self.agent_password,
                              "role": "agent", "extensions": ["101", "102"]},
                             {"username": "admin", "password": self.admin_password,
                              "role": "admin"}],
            "astcti_parameters": {"acti_heartbeat": "2"},
            **(cti or {}),
        }
        for name in drop:
            pbx_vars.pop(name, None)
            cti_vars.pop(name, None)
        inv = {"all": {"children": {"pbx": {"hosts": {"pbx1": pbx_vars}},
                                    "cti": {"hosts": {"cti1": cti_vars}}}}}
        path.write_text(json.dumps(inv, indent=1))
        os.chmod(path, 0o600)
        return path

    def playbook(self, name: str, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """ansible-playbook site.yml: the PBX tree with /proc and /dev, the booted one as is."""
        proc = run_playbook(name, inventory, [self.pbx], *args, secrets=(
            self.ari_password, self.ami_secret, self.agent_password, self.admin_password))
        self.runs[name] = proc
        return proc

    # -- the service in the booted tree ---------------------------------------------------------
    def main_pid(self) -> int:
        return int(self.machine.show("astcti.service", "MainPID")["MainPID"])

    def journal_mark(self) -> int:
        """Where astcti's journal ends now (for wait_log's `since`)."""
        return len(self.machine.journal("astcti.service"))

    def wait_log(self, text: str, timeout: float = 30, since: int = 0) -> None:
        wait_for(f"`{text}` in astcti's journal",
                 lambda: text in self.machine.journal("astcti.service")[since:], timeout)

    # -- processes ------------------------------------------------------------------------------
    def start(self, name: str, command: list[str], log: Path) -> None:
        self.procs[name] = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: D401 (apt's requests are not news)
        pass


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    for port, udp in [(SIP_PORT, True), (ARI_PORT, False), (TLS_PORT, False), (AMI_PORT, False),
                      (WS_PORT, False), (WS2_PORT, False), (PHONE_PORT, True),
                      (PHONE2_PORT, True), (TRUNK_PORT, True), (BUSY_PORT, False),
                      (REPO_PORT, False)]:
        if port_in_use(port, udp):
            pytest.fail(f"port {port} is in use on 127.0.0.1: stop what holds it (`ss -lntup |"
                        f" grep {port}`) or shift this test with ASTCTI_DELIVERY_PORT_OFFSET=1000")
    debs = sorted((REPO / "dist").glob("astcti_*.deb"))
    if not debs or not (DIST_REPO / "dists/bookworm/InRelease").exists():
        pytest.fail("no dist/astcti_*.deb or dist/repo: run `make repo` (make test-delivery does)")
    WORK.mkdir(parents=True, exist_ok=True)
    cti_base = chroots.ensure("bookworm", chroots.BOOKWORM_PACKAGES)
    pbx_base = chroots.ensure("sid", chroots.SID_PACKAGES)
    cti = chroots.fresh_copy(cti_base, WORK / "cti")
    pbx = chroots.fresh_copy(pbx_base, WORK / "pbx")
    # The repository `make repo` built, served over HTTP on loopback as a mirror would.
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", REPO_PORT), functools.partial(_QuietHandler, directory=str(DIST_REPO)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    machine = Machine(cti, WORK / "cti-boot.log")
    machine.boot()
    w = World(cti=cti, pbx=pbx, deb=debs[-1], machine=machine,
              chroot_exe=machine.ansible_wrapper(WORK / "enter-cti"))
    try:
        yield w
    finally:
        for name in list(w.procs):
            if name == "asterisk" and w.procs[name].poll() is None:
                subprocess.run(["chroot", str(w.pbx), "asterisk", "-rx", "core stop now"],
                               capture_output=True, timeout=15)
            w.stop(name)
        (WORK / "cti-journal.log").write_text(
            machine.run(["journalctl", "--no-pager", "-o", "short-precise"], check=False).stdout
            if machine.pid else "")
        machine.poweroff()
        server.shutdown()
        if not os.environ.get("ASTCTI_KEEP_DELIVERY"):  # logs stay in .delivery/, trees go
            for root in (w.cti, w.pbx):
                shutil.rmtree(root, ignore_errors=True)


# -- 1. the repository and the machine ---------------------------------------------------------
def test_repository_is_signed_and_lists_the_package(world: World) -> None:
    keyring = DIST_REPO / "astcti-archive-keyring.gpg"
    proc = subprocess.run(["gpgv", "--keyring", str(keyring),
                           str(DIST_REPO / "dists/bookworm/InRelease")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    packages_text = (DIST_REPO / "dists/bookworm/main/binary-amd64/Packages").read_text()
    assert re.search(rf"^Package: astcti\n(.+\n)*Version: {re.escape(packages.deb_version(world.deb))}$",
                     packages_text, re.M), packages_text


def test_tree_runs_systemd_as_pid1(world: World) -> None:
    m = world.machine
    assert m.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert m.run(["systemctl", "is-system-running"]).stdout.strip() == "running"
    assert m.run(["systemd-detect-virt", "--container"], check=False).stdout.strip() != "none"


# -- 2. Asterisk with a site's own settings, then both hosts provisioned ----------------------
def _self_signed(root: Path) -> None:
    """A certificate for the site's own TLS listener (what a WebRTC setup has)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pbx.example.org")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    keys = root / "etc/asterisk/keys"
    keys.mkdir(exist_ok=True)
    (keys / "site.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (keys / "site.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))


def test_asterisk_starts_with_the_sites_own_settings(world: World) -> None:
    """Another application's ARI user, TLS (WebRTC) and channel variable are already there."""
    root = world.pbx
    etc = root / "etc/asterisk"
    # The site as its admin had it: no network-reaching modules, no AMI until astcti's.
    (etc / "modules.conf").write_text((REPO / "asterisk-conf/lab/modules.conf.j2").read_text())
    (etc / "manager.conf").write_text(f"[general]\nenabled = no\nbindaddr = 127.0.0.1\n"
                                      f"port = {AMI_PORT}\n")
    _self_signed(root)
    (etc / "http.conf").write_text(
        "; the site's own HTTP settings (WebRTC over TLS)\n[general]\nservername = SitePBX\n"
        f"enabled = yes\nbindaddr = 127.0.0.1\nbindport = {ARI_PORT}\n"
        f"tlsenable = yes\ntlsbindaddr = 127.0.0.1:{TLS_PORT}\n"
        "tlscertfile = /etc/asterisk/keys/site.crt\ntlsprivatekey = /etc/asterisk/keys/site.key\n")
    (etc / "ari.conf").write_text(
        "[general]\nenabled = yes\nchannelvars = SITE_VAR\n\n"
        f"[otherapp]\ntype = user\nread_only = yes\npassword = {world.other_password}\n"
        "password_format = plain\n")
    labchroot.prepare_for_asterisk(root)
    world.start("asterisk", labchroot.asterisk_command(root), WORK / "asterisk.out")

    def booted() -> bool:
        assert world.procs["asterisk"].poll() is None, "Asterisk exited: see .delivery/asterisk.out"
        try:
            return "fully booted" in labchroot.rx(root, "core waitfullybooted", timeout=5).lower()
        except (labchroot.ChrootError, subprocess.TimeoutExpired):
            return False

    wait_for("Asterisk to boot", booted, 60)
    assert _ari_status("otherapp", world.other_password) == 200


def _ari_status(user: str, password: str, *, tls: bool = False) -> int:
    scheme, port = ("https", TLS_PORT) if tls else ("http", ARI_PORT)
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/ari/asterisk/info")
    import base64

    req.add_header("Authorization",
                   "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    ctx = ssl._create_unverified_context() if tls else None
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_check_mode_on_fresh_hosts_succeeds(world: World) -> None:
    inv = world.inventory(WORK / "inventory.json")
    proc = world.playbook("check", inv, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc)["pbx1"]["changed"] > 0 and recap(proc)["cti1"]["changed"] > 0
    assert "http.conf" in proc.stdout  # the diff shows what would change
    assert not (world.pbx / "etc/asterisk/extensions_astcti.conf").exists(), "check mode wrote"
    assert not (world.cti / "opt/venvs/astcti").exists(), "check mode installed the package"


def test_playbook_provisions_both_hosts(world: World) -> None:
    proc = world.playbook("first", WORK / "inventory.json")
    assert proc.returncode == 0, proc.stdout[-4000:]
    counts = recap(proc)
    assert counts["pbx1"]["changed"] > 0 and counts["cti1"]["changed"] > 0
    assert counts["pbx1"]["failed"] == 0 and counts["cti1"]["failed"] == 0
    m = world.machine
    assert m.run(["systemctl", "is-active", "astcti.service"], check=False).stdout.strip() == "active"
    assert m.run(["systemctl", "is-enabled", "astcti.service"], check=False).stdout.strip() == "enabled"
    world.wait_log(f"(app {APP})")  # connected to Asterisk with the link's Stasis app
    world.wait_log(f"AMI connected at 127.0.0.1:{AMI_PORT} as astcti")  # its AMI sibling
    policy = m.run(["apt-cache", "policy", "astcti"]).stdout
    assert f"http://127.0.0.1:{REPO_PORT} bookworm/main" in policy, policy
    sources = (world.cti / "etc/apt/sources.list.d/astcti.list").read_text()
    assert "signed-by=/etc/apt/keyrings/astcti.gpg" in sources


def test_site_settings_survive_next_to_astctis(world: World) -> None:
    """Another ARI user, TLS and the site's channel variable are intact and still work."""
    etc = world.pbx / "etc/asterisk"
    http = (etc / "http.conf").read_text()
    for line in ["servername = SitePBX", "tlsenable = yes", f"tlsbindaddr = 127.0.0.1:{TLS_PORT}",
                 "tlscertfile = /etc/asterisk/keys/site.crt"]:
        assert line in http, http
    ari = (etc / "ari.conf").read_text()
    assert "[otherapp]" in ari and "[astcti]" in ari and ari.count(world.ari_password) == 1
    assert re.search(rf"^channelvars = SITE_VAR,{re.escape(CHANNELVARS)}$", ari, re.M), ari
    assert oct((etc / "ari.conf").stat().st_mode & 0o777) == "0o640"
    assert _ari_status("otherapp", world.other_password) == 200
    assert _ari_status("astcti", world.ari_password) == 200
    assert _ari_status("otherapp", world.other_password, tls=True) == 200


def test_dialplan_helpers_use_the_links_stasis_app(world: World) -> None:
    text = (world.pbx / "etc/asterisk/extensions_astcti.conf").read_text()
    assert f"Stasis({APP},dial," in text and "Stasis(astcti," not in text


def test_postinst_made_users_groups_store_and_key(world: World) -> None:
    root = world.cti
    passwd = (root / "etc/passwd").read_text()
    m = re.search(r"^astcti:[^:]*:(\d+):(\d+):[^:]*:([^:]*):(\S+)$", passwd, re.M)
    assert m, "postinst did not create the astcti user"
    uid, gid = int(m.group(1)), int(m.group(2))
    assert uid < 1000 and m.group(4) == "/usr/sbin/nologin"
    group = (root / "etc/group").read_text()
    admin = re.search(r"^astcti-admin:[^:]*:(\d+):", group, re.M)
    assert admin and int(admin.group(1)) < 1000, "postinst did not create group astcti-admin"
    key = root / "etc/astcti/secret.key"
    db = root / "var/lib/astcti/astcti.db"
    assert key.stat().st_uid == uid and key.stat().st_mode & 0o777 == 0o600
    assert db.stat().st_uid == uid and db.stat().st_gid == gid and db.stat().st_mode & 0o777 == 0o640
    assert (root / "var/lib/astcti").stat().st_mode & 0o777 == 0o750
    assert (root / "usr/share/astcti/asterisk-conf/asterisk/http.conf.j2").exists()


def test_version_agrees_everywhere(world: World) -> None:
    upstream = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    cli = world.machine.run(["astcti", "--version"]).stdout.strip()
    dpkg = world.machine.run(["dpkg-query", "-W", "-f", "${Version}", "astcti"]).stdout
    assert cli == f"astcti {upstream}"
    assert dpkg.split("-")[0].replace("~", "") == upstream


def test_unit_verifies_and_its_documentation_is_shipped(world: World) -> None:
    proc = world.machine.run(["systemd-analyze", "verify", "astcti.service"], check=False)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    docs = [d.strip('"') for d in
            world.machine.show("astcti.service", "Documentation")["Documentation"].split()]
    assert docs, "astcti.service has no Documentation="
    for uri in docs:
        if uri.startswith("man:"):
            name, section = re.fullmatch(r"man:([\w.-]+)\((\d)\)", uri).groups()
            path = world.cti / f"usr/share/man/man{section}/{name}.{section}.gz"
        else:
            assert uri.startswith("file:"), uri
            path = world.cti / uri.removeprefix("file:").lstrip("/")
        assert path.exists(), f"Documentation={uri} but the package ships no {path}"


def _proc_status(world: World, pid: int) -> dict[str, str]:
    text = world.machine.run(["cat", f"/proc/{pid}/status"]).stdout
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_unit_runs_hardened_with_room_for_thousands_of_clients(world: World) -> None:
    m = world.machine
    props = m.show("astcti.service", "MainPID", "NRestarts", "ActiveState", "ExecReload")
    assert props["ActiveState"] == "active" and props["NRestarts"] == "0", props
    pid = int(props["MainPID"])
    status = _proc_status(world, pid)
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2", status
    assert int(status["CapEff"].strip(), 16) == 0
    # LimitNOFILE=65536, or as close as this machine lets systemd go (these sandboxes cap
    # every process at 20000 and withhold CAP_SYS_RESOURCE); the default would be 1024.
    limits = m.run(["cat", f"/proc/{pid}/limits"]).stdout
    soft = int(re.search(r"^Max open files\s+(\d+)", limits, re.M).group(1))
    ceiling = int(re.search(r"^Max open files\s+\d+\s+(\d+)",
                            m.run(["cat", "/proc/1/limits"]).stdout, re.M).group(1))
    assert soft == min(65536, ceiling) and soft > 4096, limits
    exposure = m.run(["systemd-analyze", "security", "--no-pager", "astcti.service"]).stdout
    level = float(re.search(r"Overall exposure level for astcti.service: ([\d.]+)", exposure).group(1))
    assert level <= 2.0, exposure[-1500:]
    assert "kill" in props["ExecReload"] and "HUP" in props["ExecReload"], props["ExecReload"]


def test_admin_socket_is_for_astcti_admin_and_gives_no_store_access(world: World) -> None:
    m = world.machine
    stat = m.run(["stat", "-c", "%U %G %a", "/run/astcti/admin.sock", "/run/astcti"]).stdout.split("\n")
    assert stat[0] == "astcti astcti-admin 660", stat
    assert stat[1].split()[1] == "astcti-admin", stat
    m.run(["adduser", "--quiet", "--disabled-password", "--gecos", "", "alice"])
    m.run(["adduser", "--quiet", "alice", "astcti-admin"])
    m.run(["adduser", "--quiet", "--disabled-password", "--gecos", "", "mallory"])
    shell = m.run(["runuser", "-u", "alice", "--", "astcti-shell", "-c", "show extensions"],
                  check=False)
    assert shell.returncode == 0 and "101" in shell.stdout, shell.stdout + shell.stderr
    for path in ["/var/lib/astcti/astcti.db", "/etc/astcti/secret.key"]:
        read = m.run(["runuser", "-u", "alice", "--", "cat", path], check=False)
        assert read.returncode != 0 and "Permission denied" in read.stderr, (path, read.stderr)
    denied = m.run(["runuser", "-u", "mallory", "--", "astcti-shell", "-c", "show extensions"],
                   check=False)
    assert denied.returncode == 2, denied.stdout + denied.stderr
    assert world.machine.show("astcti.service", "NRestarts")["NRestarts"] == "0"


def test_store_holds_the_ami_link_next_to_the_ari_link(world: World) -> None:
    out = world.machine.run(["/opt/venvs/astcti/bin/python", "-c",
                             "from astcti.store import Store; s = Store.open("
                             "'/var/lib/astcti/astcti.db'); p = s.parameters();"
                             " print(p['acti_tlink_01']); print(p['acti_amilink_01'])"]).stdout
    tlink, amilink = out.splitlines()
    assert tlink.startswith(f"127.0.0.1#{ARI_PORT}#{APP},astcti,")
    assert amilink.startswith(f"127.0.0.1#{AMI_PORT},astcti,")
    assert world.ami_secret not in amilink and world.ari_password not in tlink
    # ...and Asterisk has that AMI user, least privilege, on the port the link names.
    manager = (world.pbx / "etc/asterisk/manager.conf").read_text()
    assert "[astcti]" in manager and "read = agent" in manager and "write = call" in manager
    assert ami_login(AMI_PORT, "astcti", world.ami_secret) == "Success"



def test_second_run_changes_nothing(world: World) -> None:
    proc = world.playbook("second", WORK / "inventory.json")
    assert proc.returncode == 0, proc.stdout[-3000:]
    counts = recap(proc)
    assert counts["pbx1"]["changed"] == 0 and counts["cti1"]["changed"] == 0, changed_tasks(proc)
    proc = world.playbook("second-check", WORK / "inventory.json", "--check", "--diff")
    assert proc.returncode == 0
    assert recap(proc)["pbx1"]["changed"] == 0 and recap(proc)["cti1"]["changed"] == 0


# -- 3. calls, seen and controlled by a WebSocket client ---------------------------------------
def test_demo_trunk_call_rings_the_demo_phone(world: World) -> None:
    """The demo endpoints the role wrote carry a real call (what the WebSocket check needs)."""
    phone = phone_process("101", PHONE_PORT, Phone(answer_after_ms=300), WORK, SIP_PORT,
                          media_port=MEDIA_PHONE).listen(PHONE_PORT)
    try:
        wait_port_free(TRUNK_PORT)
        caller = caller_process(TRUNK_PORT, "0912345678", "101", WORK, SIP_PORT,
                                media_port=MEDIA_CALLER, talk_ms=1000, tag="demo-call").start()
        try:
            assert caller.wait(30) == 0, caller.messages()[-2000:]
        finally:
            caller.stop()
        assert phone.received("INVITE"), "the demo phone got no INVITE"
    finally:
        phone.stop()
    assert world.machine.show("astcti.service", "NRestarts")["NRestarts"] == "0"


class Client:
    """One astCTI WebSocket session (requests answered by id, events collected)."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self._n = 0

    async def request(self, request: str, **fields) -> dict:
        self._n += 1
        msg = {"id": str(self._n), "request": request, **fields}
        await self.ws.send_json(msg)
        while True:
            reply = await asyncio.wait_for(self.ws.receive_json(), 15)
            if reply.get("msgtype") == "response" and reply.get("id") == msg["id"]:
                return reply
            if reply.get("msgtype") == "event":
                self.events.append(reply)

    async def event(self, name: str, timeout: float = 30) -> dict:
        for e in self.events:
            if e.get("event") == name:
                return e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(self.ws.receive_json(), deadline - time.monotonic())
            if msg.get("msgtype") == "event":
                self.events.append(msg)
                if msg.get("event") == name:
                    return msg
        raise AssertionError(f"no {name} event; got {[e.get('event') for e in self.events]}")


async def _login(session, port: int, user: str, password: str) -> Client:
    ws = await asyncio.wait_for(session.ws_connect(f"ws://127.0.0.1:{port}/"), 10)
    client = Client(ws)
    login = await client.request("login", username=user, password=password)
    assert login["result"] == "success", login
    return client


async def _controlled_call(world: World) -> list[dict]:
    import aiohttp

    phone = phone_process("101", PHONE_PORT, Phone(answer_after_ms=500), WORK, SIP_PORT,
                          media_port=MEDIA_PHONE).listen(PHONE_PORT)
    try:
        async with aiohttp.ClientSession() as session:
            client = await _login(session, WS_PORT, "admin", world.admin_password)
            monitor = await client.request("startmonitor", extension="101")
            assert monitor["result"] == "success", monitor
            wait_port_free(TRUNK_PORT)
            caller = caller_process(TRUNK_PORT, "0912345678", "101", WORK, SIP_PORT,
                                    media_port=MEDIA_CALLER, talk_ms=6000).start()
            try:
                established = await client.event("established")
                # Hold needs the call in astcti's Stasis app: the demo dialplan's astcti-dial
                # must have handed it to the link's (non-default) app.
                hold = await client.request("hold", extension="101",
                                            callid=established["callid"])
                assert hold["result"] == "success", hold
                await client.event("held")
                retrieve = await client.request("retrieve", extension="101",
                                                callid=established["callid"])
                assert retrieve["result"] == "success", retrieve
                await client.event("connectioncleared")
                assert caller.wait(20) == 0, caller.messages()[-2000:]
            finally:
                caller.stop()
            await client.ws.close()
            return client.events
    finally:
        phone.stop()


def test_call_reaches_a_websocket_client_and_astcti_controls_it(world: World) -> None:
    events = asyncio.run(_controlled_call(world))
    names = [e.get("event") for e in events]
    for wanted in ["delivered", "established", "held", "retrieved", "connectioncleared"]:
        assert wanted in names, f"no {wanted} event; got {names}"
    assert names.index("delivered") < names.index("established") < names.index("held")


# -- 4. reload, not restart, when only listeners/extensions/users change ----------------------
async def _reload_keeps_sessions(world: World, inv: Path) -> tuple[int, int]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        client = await _login(session, WS_PORT, "agent", world.agent_password)
        before = world.main_pid()
        proc = await asyncio.to_thread(world.playbook, "reload", inv, "--limit", "cti")
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert recap(proc)["cti1"]["changed"] > 0
        # The session opened before the run is still served, and sees the new extension.
        monitor = await client.request("startmonitor", extension="102")
        assert monitor["result"] == "success", monitor
        second = await _login(session, WS2_PORT, "agent", world.agent_password)
        await second.ws.close()
        await client.ws.close()
        return before, world.main_pid()


def test_listener_and_extension_changes_reload_without_dropping_sessions(world: World) -> None:
    inv = world.inventory(WORK / "inv-reload.json", cti={
        "astcti_extensions": [{"number": "101"}, {"number": "102"}],
        "astcti_listeners": [{"port": WS_PORT, "protocol": "astctiws"},
                             {"port": WS2_PORT, "protocol": "astctiws"}]})
    since = len(world.machine.journal("astcti.service"))
    before, after = asyncio.run(_reload_keeps_sessions(world, inv))
    assert before == after, "the daemon was restarted: every agent's session dropped"
    journal = world.machine.journal("astcti.service")[since:]
    assert "Reloading astcti.service" in journal and "reloading parameters, listeners" in journal, journal
    (WORK / "inventory.json").write_text((WORK / "inv-reload.json").read_text())


def test_link_parameter_change_restarts(world: World) -> None:
    inv = world.inventory(WORK / "inv-restart.json", cti={
        "astcti_extensions": [{"number": "101"}, {"number": "102"}],
        "astcti_listeners": [{"port": WS_PORT, "protocol": "astctiws"},
                             {"port": WS2_PORT, "protocol": "astctiws"}],
        "astcti_parameters": {"acti_heartbeat": "3"}})
    before, since = world.main_pid(), world.journal_mark()
    proc = world.playbook("restart", inv, "--limit", "cti")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert world.main_pid() != before, "acti_heartbeat is read at start: the daemon must restart"
    world.wait_log("connected to Asterisk", since=since)
    (WORK / "inventory.json").write_text((WORK / "inv-restart.json").read_text())


async def _many_clients(count: int) -> int:
    """Open `count` connections at once, each answered by the daemon; how many were served."""
    request = (b"GET /api HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    async def one() -> tuple[asyncio.StreamWriter, bool]:
        reader, writer = await asyncio.open_connection("127.0.0.1", WS_PORT)
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 60)
        return writer, line.startswith(b"HTTP/1.1")

    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    served = sum(1 for r in results if not isinstance(r, BaseException) and r[1])
    for r in results:
        if not isinstance(r, BaseException):
            r[0].close()
    return served


def test_thousands_of_clients_fit_under_the_units_limits(world: World) -> None:
    import resource

    count = 2500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, count + 500), max(hard, count + 500)))
    try:
        served = asyncio.run(_many_clients(count))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert served == count, f"{count - served} of {count} simultaneous clients were not served"
    assert world.machine.show("astcti.service", "NRestarts")["NRestarts"] == "0"


# -- 5. upgrade N -> N+1 with a live store, and back -------------------------------------------
def _store_facts(world: World, db: str = "/var/lib/astcti/astcti.db") -> dict:
    code = ("import json, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); t = {r[0] for r in"
            " c.execute(\"SELECT name FROM sqlite_master WHERE type='table'\")};"
            " print(json.dumps({'version': c.execute('PRAGMA user_version').fetchone()[0],"
            " 'users': c.execute('SELECT count(*) FROM users').fetchone()[0],"
            " 'links': c.execute(\"SELECT count(*) FROM parameters WHERE name LIKE"
            " 'acti_tlink_%'\").fetchone()[0], 'probe': list(c.execute('SELECT * FROM"
            " upgrade_probe').fetchone()) if 'upgrade_probe' in t else None}))")
    return json.loads(world.machine.run(["/opt/venvs/astcti/bin/python", "-c", code, db]).stdout)


async def _client_during(world: World, action) -> None:
    """A logged-in agent while `action` runs: its session may drop (a restart), not its login."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        client = await _login(session, WS_PORT, "agent", world.agent_password)
        await asyncio.to_thread(action)
        await client.ws.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            async with aiohttp.ClientSession() as session:
                again = await _login(session, WS_PORT, "agent", world.agent_password)
                await again.ws.close()
                return
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_upgrade_stops_the_old_daemon_migrates_then_starts_the_new_one(world: World) -> None:
    old_version = packages.deb_version(world.deb)
    nxt = packages.next_version(world.deb, WORK)
    before = _store_facts(world)
    old_pid = world.main_pid()
    inv = world.inventory(WORK / "inv-upgrade.json", cti={
        **json.loads((WORK / "inventory.json").read_text())["all"]["children"]["cti"]["hosts"]["cti1"],
        "astcti_deb_source": "file", "astcti_deb_file": str(nxt)})

    def upgrade() -> None:
        proc = world.playbook("upgrade", inv, "--limit", "cti")
        assert proc.returncode == 0, proc.stdout[-3000:]

    asyncio.run(_client_during(world, upgrade))
    after = _store_facts(world)
    assert after["probe"] is not None, "N+1's migration did not run"
    assert after["probe"][0] == 0, "the store was migrated while the old daemon still served"
    assert after["version"] == before["version"] + 1
    assert (after["users"], after["links"]) == (before["users"], before["links"])
    backup = f"/var/lib/astcti/astcti.db.{old_version}"
    kept = _store_facts(world, backup)
    assert kept["version"] == before["version"] and kept["probe"] is None
    assert world.machine.run(["stat", "-c", "%U %a", backup]).stdout.strip() == "astcti 640"
    new_pid = world.main_pid()
    assert new_pid and new_pid != old_pid
    assert world.machine.run(["astcti", "--version"]).stdout.strip() == \
        f"astcti {packages.deb_version(nxt).replace('~', '')}"
    world.wait_log(f"version {packages.deb_version(nxt).replace('~', '')}")


def test_rollback_restores_the_backup_and_the_previous_version(world: World) -> None:
    """docs/delivery.md, "Roll back": stop, put the backup back, install version N."""
    old_version = packages.deb_version(world.deb)
    m = world.machine
    since = world.journal_mark()
    m.run(["systemctl", "stop", "astcti.service"])
    m.run(["cp", "-p", f"/var/lib/astcti/astcti.db.{old_version}", "/var/lib/astcti/astcti.db"])
    m.run(["rm", "-f", "/var/lib/astcti/astcti.db-wal", "/var/lib/astcti/astcti.db-shm"])
    inv = world.inventory(WORK / "inv-rollback.json", cti={
        **json.loads((WORK / "inventory.json").read_text())["all"]["children"]["cti"]["hosts"]["cti1"],
        "astcti_package_version": old_version})
    proc = world.playbook("rollback", inv, "--limit", "cti")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert m.run(["dpkg-query", "-W", "-f", "${Version}", "astcti"]).stdout == old_version
    assert m.run(["systemctl", "is-active", "astcti.service"], check=False).stdout.strip() == "active"
    assert _store_facts(world)["probe"] is None
    world.wait_log("connected to Asterisk", since=since)


# -- 6. bad input: one clear line each ---------------------------------------------------------
def test_missing_required_variable_is_named(world: World) -> None:
    inv = world.inventory(WORK / "inv-missing.json", drop=("asterisk_ari_password", "astcti_links"))
    out = failure_text(world.playbook("missing", inv, "--limit", "pbx"))
    assert re.search(r"missing required arguments: .*asterisk_ari_password", out), out[-2000:]
    out = failure_text(world.playbook("missing-links", inv, "--limit", "cti"))
    assert re.search(r"missing required arguments: .*astcti_links", out), out[-2000:]


def test_wrong_ari_password_names_the_user(world: World) -> None:
    inv = world.inventory(WORK / "inv-wrongpw.json",
                          pbx={"asterisk_ari_manage_user": False,
                               "asterisk_ari_password": "not-" + world.ari_password[:6]})
    out = failure_text(world.playbook("wrongpw", inv, "--limit", "pbx"))
    assert "refused user 'astcti' (HTTP 401)" in out, out[-2000:]
    # The user not managed: its section is gone, astcti's channel variables are still there.
    ari = (world.pbx / "etc/asterisk/ari.conf").read_text()
    assert "[astcti]" not in ari and "ASTCTI_USERDATA" in ari and "[otherapp]" in ari


def test_another_applications_http_address_is_not_overridden(world: World) -> None:
    inv = world.inventory(WORK / "inv-bind.json", pbx={"asterisk_ari_http_port": ARI_PORT + 1})
    out = failure_text(world.playbook("bind", inv, "--limit", "pbx"))
    assert re.search(rf"http.conf sets bindport = {ARI_PORT} in \[general\].*astcti needs"
                     rf" {ARI_PORT + 1}", out), out[-2000:]


def test_port_in_use_is_named(world: World) -> None:
    """A program of the astcti host holds a listener's port: the run names it."""
    code = ("import os, socket, time; s = socket.socket(); s.bind(('127.0.0.1', %d)); s.listen();"
            " print(os.getpid(), flush=True); time.sleep(300)" % BUSY_PORT)
    holder = subprocess.Popen([*world.machine.enter(), "python3", "-c", code],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pid = int(holder.stdout.readline())
        inv = world.inventory(WORK / "inv-busy.json", cti={"astcti_listeners": [
            {"port": WS_PORT, "protocol": "astctiws"},
            {"port": BUSY_PORT, "protocol": "astctirest"}]})
        out = failure_text(world.playbook("busy", inv, "--limit", "cti"))
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert re.search(rf"port {BUSY_PORT} on 127\.0\.0\.1 is in use by pid {pid}: python3 -c", out), out[-2000:]
    assert "pick another port in astcti_listeners" in out


def test_freepbx_flavour_without_fwconsole_says_so(world: World) -> None:
    inv = world.inventory(WORK / "inv-freepbx.json", pbx={"asterisk_ari_flavour": "freepbx"})
    out = failure_text(world.playbook("freepbx", inv, "--limit", "pbx"))
    assert "asterisk_ari_flavour is freepbx but /usr/sbin/fwconsole is missing" in out, out[-2000:]


# -- 7. remove keeps data; purge removes it ----------------------------------------------------
def test_remove_stops_the_service_and_keeps_data_purge_removes_it(world: World) -> None:
    root, m = world.cti, world.machine
    m.run(["apt-get", "remove", "-y", "astcti"])
    assert m.run(["systemctl", "is-active", "astcti.service"], check=False).stdout.strip() != "active"
    assert not (root / "opt/venvs/astcti").exists() and not (root / "usr/bin/astcti").exists()
    assert (root / "var/lib/astcti/astcti.db").exists() and (root / "etc/astcti/secret.key").exists()
    assert (root / "etc/default/astcti").exists()  # a conffile stays until purge
    m.run(["apt-get", "purge", "-y", "astcti"])
    gone = ["var/lib/astcti", "etc/astcti", "etc/default/astcti", "opt/venvs/astcti",
            "usr/share/astcti", "usr/share/doc/astcti", "lib/systemd/system/astcti.service",
            "etc/systemd/system/multi-user.target.wants/astcti.service", "usr/bin/astcti-shell"]
    left = [p for p in gone if (root / p).exists() or (root / p).is_symlink()]
    assert not left, f"purge left {left}"
    status = m.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", "astcti"], check=False).stdout
    assert status in ("", "not-installed"), status
    # Policy: the system user and groups stay (files elsewhere may still belong to them).
    assert re.search(r"^astcti:", (root / "etc/passwd").read_text(), re.M)
