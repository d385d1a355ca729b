"""vagrant/build-deb.sh, the Vagrant VM's own .deb build, in a clean Debian 12 tree.

Opt-in (ASTCTI_DELIVERY_VM_BUILD=1): it installs the build dependencies from the mirror and
builds the whole virtualenv (about 2-4 minutes), which `make test` cannot afford on every run.
The tree gets this machine's pip configuration and CA bundle, as a VM has its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.delivery import chroots
from tests.delivery.common import REPO, WORK

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, mounts)"),
    pytest.mark.skipif(not os.environ.get("ASTCTI_DELIVERY_VM_BUILD"),
                       reason="opt-in: ASTCTI_DELIVERY_VM_BUILD=1 (a full .deb build in a tree)"),
]


def test_vagrant_build_script_builds_an_installable_deb_in_debian_12() -> None:
    root = chroots.fresh_copy(chroots.ensure("bookworm", chroots.BOOKWORM_PACKAGES),
                              WORK / "vm-build")
    try:
        (root / "vagrant").mkdir()
        for name in ["pyproject.toml", "README.md", "astcti", "asterisk-conf", "packaging",
                     "vagrant"]:
            subprocess.run(["cp", "-a", str(REPO / name), str(root / "vagrant")], check=True)
        for conf in [Path("/etc/pip.conf"), Path("/root/.config/pip/pip.conf"),
                     Path("/etc/ssl/certs/ca-certificates.crt")]:
            if conf.exists():
                (root / conf.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(conf, root / conf.relative_to("/"))
        proc = chroots.run_in(root, ["bash", "/vagrant/vagrant/build-deb.sh"], check=False,
                              timeout=1800)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        deb = root / "var/cache/astcti-vagrant/astcti.deb"
        assert deb.exists(), proc.stdout[-2000:]
        chroots.run_in(root, ["apt-get", "install", "-y", "/var/cache/astcti-vagrant/astcti.deb"])
        version = chroots.run_in(root, ["astcti", "--version"]).stdout.strip()
        assert version.startswith("astcti ")
    finally:
        if not os.environ.get("ASTCTI_KEEP_DELIVERY"):
            shutil.rmtree(root, ignore_errors=True)
