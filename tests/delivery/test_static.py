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
    for line in ["User=astcti", "Restart=on-failure", "RuntimeDirectory=astcti",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/astcti", "NoNewPrivileges=yes"]:
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), f"astcti.service lacks {line}"
    assert "--admin-socket /run/astcti/admin.sock" in unit


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
    _run(["yamllint", "-s", ".", "../vagrant/inventory.yml"], ANSIBLE)


def test_ansible_lint() -> None:
    _need("ansible-lint")
    _run(["ansible-lint", "--offline", "-q"], ANSIBLE)


def test_playbook_syntax() -> None:
    _need("ansible-playbook")
    for inventory in ["inventory/example.yml", "../vagrant/inventory.yml"]:
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
