#!/usr/bin/env bash
# The last touches that make a staged root filesystem a Palisade firmware, shared by
# Buildroot's post-build.sh and scripts/build-image.sh (QEMU image):
#   RAUC's system.conf and keyring, the release identification, and the directories that
#   must exist as mount points on a read-only root.
#
#   finalize-rootfs.sh ROOT VERSION BUILD_ID KEYRING.pem VARIANT
set -euo pipefail
(($# == 5)) || { echo "usage: $0 ROOT VERSION BUILD_ID KEYRING VARIANT" >&2; exit 2; }
root=$1 version=$2 build=$3 keyring=$4 variant=$5
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

install -D -m 644 "$repo/image/system.conf" "$root/etc/rauc/system.conf"
install -D -m 644 "$keyring" "$root/etc/rauc/keyring.pem"

# os-release: what `palisade system status`, the console banner and the boot check show.
# BUILD_ID identifies this exact root filesystem (the boot check remembers which builds
# have been ready on this box).
rm -f "$root/etc/os-release"
install -d "$root/usr/lib"
cat >"$root/usr/lib/os-release" <<OS
NAME="Palisade"
PRETTY_NAME="Palisade $version"
ID=palisade
VERSION="$version"
VERSION_ID="$version"
BUILD_ID="$build"
VARIANT="$variant"
VARIANT_ID=$(echo "$variant" | tr 'A-Z ' 'a-z-')
HOME_URL="https://example.invalid/palisade"
OS
ln -sf ../usr/lib/os-release "$root/etc/os-release"

# Mount points: nothing can be created on the read-only root at run time.
install -d -m 755 "$root/data" "$root/boot/efi" "$root/var" "$root/tmp"
# An empty machine-id: systemd makes a fresh one in memory each boot without treating
# the boot as a "first boot" (a read-only /etc can never be committed to).
: >"$root/etc/machine-id"
# Resolver: systemd-resolved's view of the upstream servers, not its stub (the engine
# does its own DNSSEC validation and needs the records as they come).
ln -sf ../run/systemd/resolve/resolv.conf "$root/etc/resolv.conf"
