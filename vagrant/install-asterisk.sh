#!/bin/bash
# Asterisk from the upstream source tarball, the way the Asterisk documentation installs it
# on a distribution without a package: install_prereq, configure, make, install, samples, config.
set -euo pipefail
if command -v asterisk >/dev/null 2>&1; then
  echo "asterisk is already installed: $(asterisk -V)"
  exit 0
fi
version=${ASTERISK_VERSION:-22-current}
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q build-essential wget ca-certificates python3
cd /usr/local/src
wget -q "https://downloads.asterisk.org/pub/telephony/asterisk/asterisk-${version}.tar.gz"
tar xzf "asterisk-${version}.tar.gz"
cd asterisk-2*/
contrib/scripts/install_prereq install
./configure --with-jansson-bundled --with-pjproject-bundled
make menuselect.makeopts
make -j"$(nproc)"
make install
make samples
make config          # the systemd/init script
adduser --system --group --home /var/lib/asterisk --no-create-home asterisk
chown -R asterisk:asterisk /etc/asterisk /var/lib/asterisk /var/log/asterisk /var/spool/asterisk /var/run/asterisk
sed -i 's/^;runuser = asterisk/runuser = asterisk/; s/^;rungroup = asterisk/rungroup = asterisk/' /etc/asterisk/asterisk.conf
systemctl enable --now asterisk
