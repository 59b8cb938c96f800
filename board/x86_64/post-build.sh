#!/usr/bin/env bash
# Buildroot post-build script (BR2_ROOTFS_POST_BUILD_SCRIPT).
#   $1 = TARGET_DIR, $2 = this board directory (BR2_ROOTFS_POST_SCRIPT_ARGS)
# Makes the staged target a Palisade firmware with the same finishing step as the QEMU
# image (scripts/image/finalize-rootfs.sh). The keyring comes from PALISADE_KEYRING (the
# operator's CA) or the development keys (scripts/sign-bundle.sh --print-keyring).
set -euo pipefail
target=$1
board=$2
repo=$(cd "$board/../.." && pwd)
version=${PALISADE_VERSION:-$(git -C "$repo" describe --always --dirty --tags 2>/dev/null || echo dev)}
build_id=$(date -u +%Y%m%dT%H%M%SZ)-br
keyring=${PALISADE_KEYRING:-$("$repo/scripts/sign-bundle.sh" --print-keyring)}
"$repo/scripts/image/finalize-rootfs.sh" "$target" "$version" "$build_id" "$keyring" "Hardware"
# The kernel at the fixed path grub.cfg loads (Buildroot installs /boot/bzImage).
if [[ -e $target/boot/bzImage ]]; then
	mv "$target/boot/bzImage" "$target/boot/vmlinuz"
fi
# Remember the version for post-image.sh's bundle.
echo "$version" >"$BINARIES_DIR/palisade-version"
echo "$build_id" >"$BINARIES_DIR/palisade-build-id"
