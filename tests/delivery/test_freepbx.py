"""The asterisk_ari role's FreePBX flavour on a real Asterisk shaped like FreePBX 17.

No FreePBX runs here (it needs MariaDB, Apache and its own installer), so the Asterisk (sid)
tree gets a stand-in (tests/delivery/fakefreepbx): an `fwconsole` printing exactly what FreePBX
17's prints, FreePBX's bootstrap with its arimanager module's public methods, and the files
FreePBX generates (ari.conf and http.conf including their *_additional/*_custom files,
manager.conf including manager_custom.conf). What the role does through them must show where
FreePBX's pages look (Advanced Settings, the ARI users table) and run in Asterisk; a second run
must change nothing (a `fwconsole reload` on a production PBX is not free).

Ports: ARI 8288, AMI 5238 (plus the delivery offset).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.delivery import chroots
from tests.delivery.common import (CHANNELVARS, OFFSET, REPO, WORK, ami_login, changed_tasks,
                                   failure_text, playbook, recap, wait_for)
from tests.lab import chroot as labchroot
from tests.lab.harness import port_in_use

ARI_PORT, AMI_PORT = 8288 + OFFSET, 5238 + OFFSET
APP = "astctifpbx"
FAKE = Path(__file__).resolve().parent / "fakefreepbx"
# The Asterisk tree plus PHP, which FreePBX's scripts (and the role's ARI user helper) run on.
FREEPBX_PACKAGES = [*chroots.SID_PACKAGES, "php-cli"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)")

# Files as FreePBX 17 generates them: includes of its *_additional (generated from its
# database) and *_custom (the administrator's) files.
GENERATED = {
    "ari.conf": "[general]\n#include ari_general_additional.conf\n#include ari_general_custom.conf\n"
                "\n#include ari_additional.conf\n#include ari_additional_custom.conf\n",
    "http.conf": "[general]\n#include http_additional.conf\n#include http_custom.conf\n",
    "manager.conf": "[general]\nenabled = yes\nport = {ami}\nbindaddr = 127.0.0.1\n"
                    "displayconnects = no\n\n[admin]\nsecret = {admin}\ndeny = 0.0.0.0/0.0.0.0\n"
                    "permit = 127.0.0.1/255.255.255.0\nread = all\nwrite = all\n\n"
                    "#include manager_additional.conf\n#include manager_custom.conf\n",
    "extensions.conf": "[from-internal]\nexten => 1,1,Answer()\n\n#include extensions_custom.conf\n",
}
# Advanced Settings as after an install (framework's and arimanager's definitions).
SETTINGS = {
    "HTTPENABLED": {"type": "bool", "value": False},
    "HTTPBINDADDRESS": {"type": "text", "value": "::"},
    "HTTPBINDPORT": {"type": "int", "value": "8088"},
    "HTTPPREFIX": {"type": "text", "value": ""},
    "ENABLE_ARI": {"type": "bool", "value": True},
}


@dataclass
class Fpbx:
    root: Path
    ari_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    ami_secret: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    asterisk: subprocess.Popen[bytes] | None = None

    def inventory(self, name: str, **pbx: object) -> Path:
        host = {
            "ansible_connection": "community.general.chroot", "ansible_host": str(self.root),
            "ansible_python_interpreter": "/usr/bin/python3", "ansible_become": False,
            "asterisk_ari_flavour": "freepbx", "asterisk_ari_password": self.ari_password,
            "asterisk_ari_http_port": ARI_PORT, "asterisk_ari_app": APP,
            "asterisk_ari_ami_secret": self.ami_secret, **pbx,
        }
        path = WORK / f"inv-{name}.json"
        path.write_text(json.dumps({"all": {"children": {"pbx": {"hosts": {"fpbx1": host}}}}}))
        os.chmod(path, 0o600)
        return path

    def run(self, name: str, inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return playbook(name, inventory, [self.root], "--limit", "pbx", *args,
                        secrets=(self.ari_password, self.ami_secret))

    def fwconsole(self, *args: str) -> str:
        return subprocess.run(["chroot", str(self.root), "fwconsole", *args], capture_output=True,
                              text=True, check=True).stdout

    def state(self, name: str):
        return json.loads((self.root / "var/lib/fakefreepbx" / name).read_text())


@pytest.fixture(scope="module")
def fpbx() -> Iterator[Fpbx]:
    for port in (ARI_PORT, AMI_PORT):
        if port_in_use(port):
            pytest.fail(f"port {port} is in use on 127.0.0.1: shift this test with"
                        " ASTCTI_DELIVERY_PORT_OFFSET=1000")
    WORK.mkdir(parents=True, exist_ok=True)
    root = chroots.fresh_copy(chroots.ensure("sid", FREEPBX_PACKAGES), WORK / "fpbx")
    f = Fpbx(root)
    etc = root / "etc/asterisk"
    (etc / "modules.conf").write_text((REPO / "asterisk-conf/lab/modules.conf.j2").read_text())
    for name, text in GENERATED.items():
        (etc / name).write_text(text.format(ami=AMI_PORT, admin=secrets.token_hex(8)))
    for name in ["ari_general_custom.conf", "ari_additional_custom.conf", "manager_additional.conf",
                 "manager_custom.conf", "extensions_custom.conf"]:
        (etc / name).write_text("")
    # An earlier version of the role put the HTTP settings here, where FreePBX's pages miss them.
    (etc / "http_custom.conf").write_text(
        "; the admin's own line\nsessionlimit = 500\n"
        "; BEGIN astcti (managed by Ansible role asterisk_ari)\nenabled = yes\nbindaddr = 127.0.0.1\n"
        f"bindport = {ARI_PORT}\n; END astcti (managed by Ansible role asterisk_ari)\n")
    state = root / "var/lib/fakefreepbx"
    state.mkdir(parents=True)
    (state / "settings.json").write_text(json.dumps(SETTINGS))
    shutil.copy(FAKE / "fwconsole", root / "usr/sbin/fwconsole")
    shutil.copy(FAKE / "freepbx.conf", root / "etc/freepbx.conf")
    f.fwconsole("generate")
    labchroot.prepare_for_asterisk(root)
    f.asterisk = subprocess.Popen(labchroot.asterisk_command(root), stdin=subprocess.DEVNULL,
                                  stdout=open(WORK / "fpbx-asterisk.out", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)

    def booted() -> bool:
        assert f.asterisk.poll() is None, "Asterisk exited: see .delivery/fpbx-asterisk.out"
        try:
            return "fully booted" in labchroot.rx(root, "core waitfullybooted", timeout=5).lower()
        except (labchroot.ChrootError, subprocess.TimeoutExpired):
            return False

    try:
        wait_for("Asterisk to boot", booted, 60)
        yield f
    finally:
        if f.asterisk.poll() is None:
            subprocess.run(["chroot", str(root), "asterisk", "-rx", "core stop now"],
                           capture_output=True, timeout=15)
            try:
                f.asterisk.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(f.asterisk.pid, signal.SIGKILL)
        if not os.environ.get("ASTCTI_KEEP_DELIVERY"):
            shutil.rmtree(root, ignore_errors=True)


def test_fake_fwconsole_prints_what_freepbx_prints(fpbx: Fpbx) -> None:
    """The stand-in's output format, from FreePBX's Console/Setting.class.php."""
    assert fpbx.fwconsole("setting", "HTTPENABLED").strip() == 'Setting of "HTTPENABLED" is (bool)[false]'
    assert fpbx.fwconsole("setting", "HTTPBINDPORT").strip() == 'Setting of "HTTPBINDPORT" is (int)[8088]'
    assert fpbx.fwconsole("setting", "NOPE").strip() == "The setting NOPE was not found!"


def test_first_run_configures_freepbx_the_way_its_pages_show(fpbx: Fpbx) -> None:
    proc = fpbx.run("fpbx-first", fpbx.inventory("fpbx"))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert recap(proc)["fpbx1"]["changed"] > 0
    # Advanced Settings show what runs.
    assert fpbx.fwconsole("setting", "HTTPENABLED").strip().endswith("(bool)[true]")
    assert fpbx.fwconsole("setting", "HTTPBINDADDRESS").strip().endswith("(text)[127.0.0.1]")
    assert fpbx.fwconsole("setting", "HTTPBINDPORT").strip().endswith(f"[{ARI_PORT}]")
    # The ARI user is in arimanager's table (its GUI page), hashed, writable.
    users = fpbx.state("arimanager.json")
    assert [(u["name"], u["password_format"], u["read_only"]) for u in users] == [("astcti", "crypt", 0)]
    assert users[0]["password"].startswith("$6$") and fpbx.ari_password not in json.dumps(users)
    # ...which FreePBX's reload wrote for Asterisk, and Asterisk accepts.
    assert "[astcti]" in (fpbx.root / "etc/asterisk/ari_additional.conf").read_text()
    assert _ari_status("astcti", fpbx.ari_password) == 200


def test_custom_files_hold_only_what_freepbx_has_no_page_for(fpbx: Fpbx) -> None:
    etc = fpbx.root / "etc/asterisk"
    general = (etc / "ari_general_custom.conf").read_text()
    assert re.search(rf"^channelvars = {re.escape(CHANNELVARS)}$", general, re.M), general
    assert "[general]" not in general  # included inside ari.conf's [general]
    dialplan = (etc / "extensions_custom.conf").read_text()
    assert f"Stasis({APP},dial," in dialplan
    http_custom = (etc / "http_custom.conf").read_text()
    assert "astcti" not in http_custom and "sessionlimit = 500" in http_custom
    manager = (etc / "manager_custom.conf").read_text()
    assert "[astcti]" in manager and "read = agent" in manager and "write = call" in manager
    assert ami_login(AMI_PORT, "astcti", fpbx.ami_secret) == "Success"


def test_second_run_changes_nothing_and_reloads_nothing(fpbx: Fpbx) -> None:
    proc = fpbx.run("fpbx-second", fpbx.inventory("fpbx"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc)["fpbx1"]["changed"] == 0, changed_tasks(proc)
    assert "Reload FreePBX" not in proc.stdout
    proc = fpbx.run("fpbx-second-check", fpbx.inventory("fpbx"), "--check", "--diff")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap(proc)["fpbx1"]["changed"] == 0, changed_tasks(proc)


def test_a_changed_password_updates_the_freepbx_user(fpbx: Fpbx) -> None:
    fpbx.ari_password = secrets.token_urlsafe(18)
    proc = fpbx.run("fpbx-newpw", fpbx.inventory("fpbx"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert len(fpbx.state("arimanager.json")) == 1
    assert _ari_status("astcti", fpbx.ari_password) == 200


def test_http_server_serving_others_elsewhere_is_not_moved(fpbx: Fpbx) -> None:
    fpbx.fwconsole("setting", "HTTPBINDADDRESS", "::")
    try:
        out = failure_text(fpbx.run("fpbx-bind", fpbx.inventory("fpbx")))
        assert re.search(r"mini-HTTP server is already on, with HTTPBINDADDRESS = ::.*"
                         r"asterisk_ari_http_bind\s+is 127.0.0.1", out, re.S), out[-2000:]
        assert fpbx.fwconsole("setting", "HTTPBINDADDRESS").strip().endswith("[::]")
    finally:
        fpbx.fwconsole("setting", "HTTPBINDADDRESS", "127.0.0.1")


def test_unknown_setting_names_the_module(fpbx: Fpbx) -> None:
    settings = fpbx.state("settings.json")
    saved = settings.pop("ENABLE_ARI")
    (fpbx.root / "var/lib/fakefreepbx/settings.json").write_text(json.dumps(settings))
    try:
        out = failure_text(fpbx.run("fpbx-noari", fpbx.inventory("fpbx")))
        assert "The setting ENABLE_ARI was not found!" in out and "arimanager module" in out, out[-2000:]
    finally:
        settings["ENABLE_ARI"] = saved
        (fpbx.root / "var/lib/fakefreepbx/settings.json").write_text(json.dumps(settings))


def _ari_status(user: str, password: str) -> int:
    import base64

    req = urllib.request.Request(f"http://127.0.0.1:{ARI_PORT}/ari/asterisk/info")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code

