#!/bin/bash
# Regenerate packaging/requirements.txt: the exact versions pip resolves for astcti's runtime
# dependencies with this machine's /usr/bin/python3 (the package's interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q .
{
  echo "# Pinned runtime dependencies of the astcti .deb (dh-virtualenv installs exactly these)."
  echo "# Regenerate with \`make requirements\` after changing pyproject.toml's dependencies."
  "$tmp/venv/bin/pip" freeze --exclude astcti --all | grep -v -E '^(pip|setuptools|wheel)=='
} > packaging/requirements.txt
cat packaging/requirements.txt
