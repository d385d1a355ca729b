#!/bin/bash
# FreePBX 17 on Debian 12 with its official installer (the way FreePBX documents it), for the
# `freepbx` machine of the Vagrantfile. Needs internet access; not run in astcti's CI.
set -euo pipefail
if command -v fwconsole >/dev/null 2>&1; then
  echo "FreePBX is already installed: $(fwconsole -V 2>/dev/null | head -1)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q wget ca-certificates
installer=/tmp/sng_freepbx_debian_install.sh
wget -q "${FREEPBX_INSTALLER_URL:-https://github.com/FreePBX/sng_freepbx_debian_install/raw/master/sng_freepbx_debian_install.sh}" -O "$installer"
bash "$installer"
fwconsole ma list | grep -E "arimanager|framework|core" || true
