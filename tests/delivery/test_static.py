"""Checks of the delivery files that need no chroot: versions agree, linters pass, the
Vagrantfile and the playbooks parse."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ANSIBLE_NOCOLOR": "1", **env})
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is missing: run `make delivery-deps`")


def debian_version(upstream: str) -> str:
    """PEP 440 pre-releases sort before the release in Debian only when spelled with '~'."""
    return re.sub(r"^([0-9.]+)(a|b|rc)([0-9]+)$", r"\1~\2\3", upstream)


def test_changelog_version_is_pyproject_version() -> None:
    upstream = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    head = (REPO / "packaging/debian/changelog").read_text().splitlines()[0]
    m = re.match(r"^astcti \(([^)]+)\)", head)
    assert m, f"unexpected changelog head: {head}"
    assert m.group(1).split("-")[0] == debian_version(upstream), (
        f"packaging/debian/changelog says {m.group(1)}, pyproject.toml {upstream}")


def test_debian_version_mapping() -> None:
    assert debian_version("0.1.0") == "0.1.0"
    assert debian_version("0.2.0rc1") == "0.2.0~rc1"


def test_unit_has_the_required_settings() -> None:
    unit = (REPO / "packaging/debian/astcti.service").read_text()
    for line in ["User=astcti", "Group=astcti", "SupplementaryGroups=astcti-admin",
                 "Restart=on-failure", "RuntimeDirectory=astcti", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/astcti", "NoNewPrivileges=yes",
                 "ExecReload=/bin/kill -HUP $MAINPID"]:
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), f"astcti.service lacks {line}"
    assert "--admin-socket /run/astcti/admin.sock" in unit
    nofile = re.search(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert nofile and int(nofile.group(1)) >= 65536, "astcti.service: LimitNOFILE for thousands of clients"


def test_lintian_has_nothing_left_to_say() -> None:
    """Every tag is fixed or overridden with its reason (packaging/debian/astcti.lintian-overrides)."""
    _need("lintian")
    debs = sorted((REPO / "dist").glob("astcti_*.deb"))
    if not debs:
        pytest.fail("no dist/astcti_*.deb: run `make deb`")
    proc = subprocess.run(["lintian", "--pedantic", "--fail-on", "error,warning,pedantic",
                           str(debs[-1])], capture_output=True, text=True, timeout=600)
    tags = [line for line in proc.stdout.splitlines() if re.match(r"^[EWIP]: ", line)]
    assert proc.returncode == 0 and not tags, "\n".join(tags) or proc.stderr


def test_no_default_password_in_shipped_files() -> None:
    """Defaults and examples leave passwords to the operator (vault), never a literal."""
    pattern = re.compile(r"password\s*[:=]\s*['\"]?(?!\{\{|$|['\"]?\s*$)([^\s'\"#]+)", re.I)
    offenders = []
    tracked = subprocess.run(["git", "ls-files", "ansible", "vagrant", "asterisk-conf", "packaging"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for path in [REPO / f for f in tracked if f.endswith((".yml", ".j2", "/default/astcti"))]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith(("#", ";")):
                continue
            m = pattern.search(line)
            if m and not m.group(1).startswith(("{{", "true", "false")) and "type:" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "literal passwords:\n" + "\n".join(offenders)


def test_yamllint() -> None:
    _need("yamllint")
    _run(["yamllint", "-s", ".", "../vagrant/inventory.yml", "../vagrant/inventory-freepbx.yml"],
         ANSIBLE)


def test_ansible_lint() -> None:
    _need("ansible-lint")
    _run(["ansible-lint", "--offline", "-q"], ANSIBLE)


def test_playbook_syntax() -> None:
    _need("ansible-playbook")
    for inventory in ["inventory/example.yml", "../vagrant/inventory.yml",
                      "../vagrant/inventory-freepbx.yml"]:
        _run(["ansible-playbook", "--syntax-check", "-i", inventory, "site.yml"], ANSIBLE)


def test_vagrantfile_validates(tmp_path: Path) -> None:
    _need("ruby")
    _run(["ruby", "-c", "Vagrantfile"], REPO / "vagrant")
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is missing: run `make delivery-deps`")
    proc = _run(["vagrant", "validate", "--ignore-provider"], REPO / "vagrant",
                VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"), VAGRANT_HOME=str(tmp_path / "home"),
                VAGRANT_DEFAULT_PROVIDER="virtualbox")
    assert "validated successfully" in proc.stdout


def _vagrant_config(tmp_path: Path, **env: str) -> dict:
    """What the Vagrantfile configures, recorded by a stand-in Vagrant (no provider needed)."""
    _need("ruby")
    env = {"VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "ASTCTI_APT_REPO": "",
           "ASTCTI_APT_KEY": "", **env}
    proc = _run(["ruby", str(REPO / "tests/delivery/vagrant_recorder.rb"), str(REPO / "vagrant")],
                REPO, **env)
    import json

    return json.loads(proc.stdout)


def _machines(config: dict) -> dict[str, dict]:
    return {c["args"][0]: c for c in config["children"]["vm"]["calls"] if c["name"] == "define"}


def _provisioners(machine: dict) -> list[dict]:
    return [c for c in machine["block"]["children"]["vm"]["calls"] if c["name"] == "provision"]


def test_vagrant_builds_the_deb_in_the_vm_not_on_the_host(tmp_path: Path) -> None:
    """Any host runs `vagrant up`: the .deb is built inside the Debian 12 VM."""
    machines = _machines(_vagrant_config(tmp_path))
    assert set(machines) == {"pbx", "sipp", "freepbx"}
    steps = _provisioners(machines["pbx"])
    assert [s["args"][0] for s in steps] == ["asterisk", "astcti-deb", "astcti"]
    assert steps[1]["kw"]["path"] == "build-deb.sh"
    extra = steps[2]["block"]["attrs"]["extra_vars"]
    assert extra["astcti_deb_source"] == "file"
    assert extra["astcti_deb_file"] == "/var/cache/astcti-vagrant/astcti.deb"
    assert "dist/" not in (REPO / "vagrant/Vagrantfile").read_text().replace('"dist/"', "")
    build = (REPO / "vagrant/build-deb.sh").read_text()
    assert "packaging/build-deb.sh" in build and "/var/cache/astcti-vagrant/astcti.deb" in build


def test_vagrant_can_take_the_package_from_an_apt_repository(tmp_path: Path) -> None:
    line = "deb [signed-by=/etc/apt/keyrings/astcti.gpg] https://apt.example.org/astcti bookworm main"
    config = _vagrant_config(tmp_path, ASTCTI_APT_REPO=line)
    extra = _provisioners(_machines(config)["pbx"])[2]["block"]["attrs"]["extra_vars"]
    assert extra["astcti_deb_source"] == "apt" and extra["astcti_apt_repository"] == line


def test_vagrant_freepbx_machine_runs_the_official_installer_then_our_roles(tmp_path: Path) -> None:
    fpbx = _machines(_vagrant_config(tmp_path))["freepbx"]
    assert fpbx["kw"].get("autostart") is False, "the FreePBX machine must be opt-in"
    steps = _provisioners(fpbx)
    assert [s["args"][0] for s in steps] == ["freepbx", "astcti-deb", "astcti"]
    assert steps[2]["block"]["attrs"]["inventory_path"].endswith("inventory-freepbx.yml")
    installer = (REPO / "vagrant/install-freepbx.sh").read_text()
    assert "sng_freepbx_debian_install.sh" in installer
    inventory = (REPO / "vagrant/inventory-freepbx.yml").read_text()
    assert "asterisk_ari_flavour: freepbx" in inventory
