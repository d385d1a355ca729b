#!/bin/bash
# Build dist/astcti_<version>_<arch>.deb with dh-virtualenv, unless one built from the same
# inputs is already there (the key is a hash of every file that goes into the package).
# Usage: packaging/build-deb.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "make deb: $*" >&2; exit 2; }

upstream=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)
debver=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
# Debian spells PEP 440 pre-releases with "~" (0.2.0rc1 -> 0.2.0~rc1).
expected=$(echo "$upstream" | sed -E 's/^([0-9.]+)(a|b|rc)([0-9]+)$/\1~\2\3/')
[ "${debver%%-*}" = "$expected" ] || die "packaging/debian/changelog is at $debver but" \
  "pyproject.toml says $upstream: add a changelog entry with \`dch -c packaging/debian/changelog -v $expected\`"

arch=$(dpkg --print-architecture)
deb="dist/astcti_${debver}_${arch}.deb"
inputs=(pyproject.toml README.md astcti asterisk-conf packaging)
key=$(find "${inputs[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [ "${1:-}" != "--force" ] && [ -f "$deb" ] && [ "$(cat "$deb.inputs" 2>/dev/null)" = "$key" ]; then
  echo "$deb is up to date (inputs $key)"
  exit 0
fi

missing=""
for pkg in dh-virtualenv debhelper python3-dev python3-venv build-essential lintian; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "installing build dependencies:$missing"
  apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $missing >/dev/null
fi

build=build/deb
src="$build/astcti-${debver%%-*}"
rm -rf "$build" && mkdir -p "$src" dist
cp -a pyproject.toml README.md astcti asterisk-conf "$src/"
cp -a packaging/debian "$src/debian"
cp packaging/requirements.txt "$src/requirements.txt"
find "$src" -name __pycache__ -type d -prune -exec rm -rf {} +
rm -rf "$src"/*.egg-info
start=$(date +%s)
(cd "$src" && dpkg-buildpackage -us -uc -b) > "$build/build.log" 2>&1 \
  || { tail -30 "$build/build.log" >&2; die "dpkg-buildpackage failed: full log in $build/build.log"; }
rm -f dist/astcti_*.deb dist/astcti_*.deb.inputs
mv "$build/astcti_${debver}_${arch}.deb" "$deb"
echo "$key" > "$deb.inputs"
echo "built $deb in $(( $(date +%s) - start )) s (inputs $key)"
# Every warning is either fixed or overridden with its reason (debian/astcti.lintian-overrides).
lintian --pedantic --fail-on error,warning,pedantic "$deb" \
  || die "lintian found problems in $deb (see above): fix them or, if they cannot be, override" \
         "them with the reason in packaging/debian/astcti.lintian-overrides"
