#!/bin/bash
# `make repo`: a signed apt repository of the astcti .deb(s), ready to publish as a static
# directory (any web server), in the layout `apt` and the Ansible role expect:
#
#   REPO/pool/main/a/astcti/astcti_VERSION_ARCH.deb
#   REPO/dists/SUITE/{Release,InRelease,Release.gpg}
#   REPO/dists/SUITE/main/binary-ARCH/Packages{,.gz}
#   REPO/astcti-archive-keyring.gpg      (the public key, for /etc/apt/keyrings + signed-by)
#
# Usage: packaging/build-repo.sh [DEB...]   (default: dist/astcti_*.deb)
# Env:   ASTCTI_REPO_DIR   output directory (default dist/repo; rebuilt from scratch)
#        ASTCTI_REPO_SUITE suite/codename (default bookworm)
#        ASTCTI_REPO_KEY   fingerprint of the signing key in your GnuPG keyring; without it a
#                          local key is made once in dist/repo-gnupg (fine for tests and a
#                          private mirror, not for publishing: anyone with that directory signs)
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "make repo: $*" >&2; exit 2; }

repo=${ASTCTI_REPO_DIR:-dist/repo}
suite=${ASTCTI_REPO_SUITE:-bookworm}
component=main
if [ $# -gt 0 ]; then debs=("$@"); else debs=(dist/astcti_*.deb); fi
[ -f "${debs[0]}" ] || die "no .deb to publish: run \`make deb\` first"
command -v apt-ftparchive >/dev/null || die "apt-ftparchive is missing: run \`make delivery-deps\`"
command -v gpg >/dev/null || die "gpg is missing: run \`make delivery-deps\`"

if [ -n "${ASTCTI_REPO_KEY:-}" ]; then
  key=$ASTCTI_REPO_KEY
  gpg --batch --list-secret-keys "$key" >/dev/null 2>&1 \
    || die "ASTCTI_REPO_KEY=$key is not a secret key of your GnuPG keyring (gpg -K)"
else
  export GNUPGHOME=$PWD/dist/repo-gnupg
  if [ ! -f "$GNUPGHOME/astcti-key" ]; then
    rm -rf "$GNUPGHOME" && mkdir -p "$GNUPGHOME" && chmod 0700 "$GNUPGHOME"
    gpg --batch --quiet --passphrase '' --quick-gen-key \
      "astcti local repository <astcti@localhost>" ed25519 sign never
    gpg --batch --with-colons --list-secret-keys | awk -F: '/^fpr:/ {print $10; exit}' \
      > "$GNUPGHOME/astcti-key"
    echo "made a local signing key in $GNUPGHOME (set ASTCTI_REPO_KEY to sign with yours)"
  fi
  key=$(cat "$GNUPGHOME/astcti-key")
fi

tmp=$(mktemp -d "${repo%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/pool/$component/a/astcti"
archs=()
for deb in "${debs[@]}"; do
  cp "$deb" "$tmp/pool/$component/a/astcti/"
  arch=$(dpkg-deb -f "$deb" Architecture)
  [[ " ${archs[*]} " == *" $arch "* ]] || archs+=("$arch")
done
for arch in "${archs[@]}"; do
  dir="dists/$suite/$component/binary-$arch"
  mkdir -p "$tmp/$dir"
  (cd "$tmp" && apt-ftparchive --arch "$arch" packages "pool/$component" > "$dir/Packages")
  gzip -9nk "$tmp/$dir/Packages"
done
(cd "$tmp" && apt-ftparchive \
  -o "APT::FTPArchive::Release::Origin=astcti" \
  -o "APT::FTPArchive::Release::Label=astcti" \
  -o "APT::FTPArchive::Release::Suite=$suite" \
  -o "APT::FTPArchive::Release::Codename=$suite" \
  -o "APT::FTPArchive::Release::Architectures=${archs[*]}" \
  -o "APT::FTPArchive::Release::Components=$component" \
  -o "APT::FTPArchive::Release::Description=astcti CTI server" \
  release "dists/$suite" > Release.new && mv Release.new "dists/$suite/Release")
gpg --batch --yes --quiet --local-user "$key" --clearsign \
  -o "$tmp/dists/$suite/InRelease" "$tmp/dists/$suite/Release"
gpg --batch --yes --quiet --local-user "$key" --armor --detach-sign \
  -o "$tmp/dists/$suite/Release.gpg" "$tmp/dists/$suite/Release"
gpg --batch --yes --export "$key" > "$tmp/astcti-archive-keyring.gpg"
# What apt will do with it: the signature verifies against the exported key alone.
gpgv --quiet --keyring "$tmp/astcti-archive-keyring.gpg" "$tmp/dists/$suite/InRelease" 2>/dev/null \
  || die "the signed Release does not verify against the exported key"
# The local key's gpg-agent is ours to stop (a release key's agent is the caller's).
[ -n "${ASTCTI_REPO_KEY:-}" ] || gpgconf --kill gpg-agent 2>/dev/null || true
chmod -R a+rX "$tmp"
rm -rf "$repo"
mv "$tmp" "$repo"
trap - EXIT
echo "apt repository in $repo (suite $suite, ${#debs[@]} package(s), key ${key: -16}):"
echo "  deb [signed-by=/etc/apt/keyrings/astcti.gpg] URL $suite $component"
echo "  with $repo/astcti-archive-keyring.gpg installed as /etc/apt/keyrings/astcti.gpg"
