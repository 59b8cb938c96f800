#!/usr/bin/env bash
# Buildroot post-image script (BR2_ROOTFS_POST_IMAGE_SCRIPT).
#   $1 = BINARIES_DIR, $2 = this board directory
# Lays out the disk with the same genimage.cfg as the QEMU image and signs the RAUC
# bundle of the root filesystem.
set -euo pipefail
images=$1
board=$2
repo=$(cd "$board/../.." && pwd)
export PATH=$HOST_DIR/bin:$HOST_DIR/sbin:$PATH

cp "$images/efi-part/EFI/BOOT/bootx64.efi" "$images/bootx64.efi"
cp "$board/grub.cfg" "$images/grub.cfg"
"$repo/scripts/image/mkgrubenv.sh" "$images/grubenv" "ORDER=A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0

rm -rf "$BUILD_DIR/genimage.tmp" "$BUILD_DIR/genimage.root"
mkdir -p "$BUILD_DIR/genimage.root"
genimage --config "$board/genimage.cfg" --inputpath "$images" --outputpath "$images" \
	--rootpath "$BUILD_DIR/genimage.root" --tmppath "$BUILD_DIR/genimage.tmp"

"$repo/scripts/sign-bundle.sh" --version "$(cat "$images/palisade-version")" \
	--build "$(cat "$images/palisade-build-id")" \
	"$images/rootfs.squashfs" "$images/palisade-x86_64.raucb"
