#!/bin/bash
# Build the astcti .deb inside the VM (any host can run `vagrant up`: no Debian 12 amd64 host
# needed), with the same script as `make deb`; leave it where the inventory looks for it.
# Skipped when ASTCTI_APT_REPO is set (the package then comes from that repository).
set -euo pipefail
out=/var/cache/astcti-vagrant/astcti.deb
src=/vagrant
if [ -n "${ASTCTI_APT_REPO:-}" ]; then
  echo "astcti comes from the apt repository $ASTCTI_APT_REPO: nothing to build"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q dh-virtualenv debhelper python3-dev python3-venv build-essential lintian
# Build in a copy: the synced folder may hold the host's own build/ and dist/.
work=/var/tmp/astcti-src
rm -rf "$work" && mkdir -p "$work"
cp -a "$src/pyproject.toml" "$src/README.md" "$src/astcti" "$src/asterisk-conf" "$src/packaging" "$work/"
(cd "$work" && packaging/build-deb.sh)
mkdir -p "$(dirname "$out")"
cp "$work"/dist/astcti_*.deb "$out"
echo "built $(basename "$work"/dist/astcti_*.deb) -> $out"
