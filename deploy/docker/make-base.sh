#!/usr/bin/env bash
# Makes a local base image with Python 3.11 from Debian bookworm's own packages, for machines
# that reach no image registry: debootstrap's minimal system, then `docker import`.
#   deploy/docker/make-base.sh TAG [MIRROR]
set -euo pipefail
tag=${1:?usage: make-base.sh TAG [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
docker=${DOCKER:-docker}
command -v debootstrap >/dev/null || { echo "make-base: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo ">> debootstrap bookworm from $mirror (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
	bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# What the official slim images leave out too: package lists, caches, docs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
	"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
echo ">> importing as $tag"
tar -C "$root" -c . | "$docker" import \
	--change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$tag" >/dev/null
"$docker" run --rm --network host "$tag" python3 -c 'import sys, venv; print("base ok:", sys.version.split()[0])'
