#!/usr/bin/env bash
# Builds a Debian base image with Python 3 from Debian's own packages (debootstrap) and imports it
# into a Docker engine (docker import), so the homelab-agents image builds with no registry:
#
#   deploy/scripts/debian-base-image.sh [TAG]          # default local/debian-python:bookworm
#   docker build --build-arg BASE=local/debian-python:bookworm -t homelab-agents .
#
# Environment: DOCKER_HOST (the engine to import into), SUITE (bookworm), MIRROR
# (http://deb.debian.org/debian), DOCKER (the client, default docker). Root (debootstrap chroots).
set -euo pipefail

tag=${1:-local/debian-python:bookworm}
suite=${SUITE:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}

if [ "$(id -u)" -ne 0 ]; then
  echo "debootstrap needs root" >&2
  exit 1
fi
command -v debootstrap >/dev/null || { echo "install debootstrap (apt-get install debootstrap)" >&2; exit 1; }

root=$(mktemp -d /tmp/debian-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"  # the image's / (mktemp makes it 0700: no other user could reach /bin)

# minbase: essential packages and apt; python3-venv brings Python 3 and ensurepip (pip in a venv);
# ca-certificates for TLS to PyPI and the services; openssl for certs.chain.
debootstrap --variant=minbase --include=python3-venv,ca-certificates,openssl \
  "$suite" "$root" "$mirror"

# What a container never needs: package caches and lists (the Dockerfile runs apt-get update
# before it installs), documentation, locales.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
  "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/locale/* "$root"/var/log/*.log
echo "deb $mirror $suite main" > "$root"/etc/apt/sources.list

tar --numeric-owner -C "$root" -c . | "$docker" import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  - "$tag"
echo "imported $tag ($(du -sh "$root" | cut -f1) root filesystem)"
