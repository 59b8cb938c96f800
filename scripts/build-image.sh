#!/usr/bin/env bash
# Builds the Palisade appliance image.
#
#   scripts/build-image.sh                  QEMU test image (default; runs here, as root)
#   scripts/build-image.sh --bundle-only    only the root filesystem and its RAUC bundle
#   scripts/build-image.sh --buildroot      the hardware image with Buildroot (needs internet)
#
# Default mode: a Debian bookworm userland from mmdebstrap (image/debian/packages, cached
# under $PALISADE_IMAGE_CACHE keyed on that list and its recipe), Debian's kernel, our
# release `palisade` binary and the same buildroot-overlay/rootfs-overlay, grub.cfg and
# genimage.cfg as the hardware image. Outputs, in --out (default out/):
#   palisade-x86_64.img        raw GPT disk image (ESP, rootfs-a, rootfs-b, data)
#   palisade-x86_64.img.bmap   block map for bmaptool
#   palisade-x86_64.raucb      signed RAUC bundle of the same root filesystem
#   rootfs.squashfs            that root filesystem
#
# Environment:
#   PALISADE_VERSION      version string of this build (default: git describe)
#   PALISADE_BIN          use this binary instead of building it with cargo
#   CARGO_TARGET_DIR      where cargo builds (default: the workspace's target/)
#   PALISADE_IMAGE_CACHE  cache of the Debian base (default ~/.cache/palisade-image)
#   PALISADE_SIGNING_*    signing keys, see scripts/sign-bundle.sh
#   BUILDROOT_DIR, BR2_DL_DIR   for --buildroot
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=qemu
out=$repo/out
while (($#)); do
	case $1 in
	--buildroot) mode=buildroot; shift ;;
	--bundle-only) mode=bundle; shift ;;
	--out) out=$2; shift 2 ;;
	-h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "build-image: unknown argument $1" >&2; exit 2 ;;
	esac
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=${PALISADE_VERSION:-$(git -C "$repo" describe --always --dirty --tags 2>/dev/null || echo dev)}
build_id=$(date -u +%Y%m%dT%H%M%SZ)-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
step_t0=$(date +%s)
step() { echo "build-image: [$(($(date +%s) - step_t0))s] $*" >&2; }

if [[ $mode == buildroot ]]; then
	# The hardware image. Needs a build host with internet access for Buildroot's
	# package sources (or a filled BR2_DL_DIR); not run in this project's CI.
	br=${BUILDROOT_DIR:-}
	[[ -n $br ]] || { echo "build-image: set BUILDROOT_DIR to an unpacked Buildroot 2026.05.1" >&2; exit 2; }
	keyring=$("$repo/scripts/sign-bundle.sh" --print-keyring)
	o=$out/buildroot
	make -C "$br" O="$o" BR2_EXTERNAL="$repo/buildroot-overlay" palisade_x86_64_defconfig
	PALISADE_VERSION=$version PALISADE_KEYRING=$keyring make -C "$o"
	cp "$o/images/palisade-x86_64.img" "$o/images/palisade-x86_64.raucb" "$out/"
	step "done: $out/palisade-x86_64.img"
	exit 0
fi

# --- host tools ------------------------------------------------------------------------
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v genimage >/dev/null || need+=(genimage)
command -v mkfs.vfat >/dev/null || need+=(dosfstools)
command -v mcopy >/dev/null || need+=(mtools)
command -v rauc >/dev/null || need+=(rauc)
command -v openssl >/dev/null || need+=(openssl)
command -v bmaptool >/dev/null || need+=(bmap-tools)
command -v grub-mkimage >/dev/null || need+=(grub-common)
[[ -d /usr/lib/grub/x86_64-efi ]] || need+=(grub-efi-amd64-bin)
if ((${#need[@]})); then
	step "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi
[[ $(id -u) == 0 ]] || { echo "build-image: run as root (mmdebstrap, ownership in the image)" >&2; exit 1; }

# --- the palisade binary ---------------------------------------------------------------
if [[ -n ${PALISADE_BIN:-} ]]; then
	bin=$PALISADE_BIN
else
	step "cargo build --release -p palisade"
	target=${CARGO_TARGET_DIR:-$repo/target}
	(cd "$repo" && CARGO_TARGET_DIR=$target cargo build --release --locked -p palisade)
	bin=$target/release/palisade
fi
[[ -x $bin ]] || { echo "build-image: no binary at $bin" >&2; exit 1; }

# --- cached Debian base ------------------------------------------------------------------
cache=${PALISADE_IMAGE_CACHE:-$HOME/.cache/palisade-image}
packages=$(grep -v '^#' "$repo/image/debian/packages" | grep . | tr '\n' ',' | sed 's/,$//')
key=$( { cat "$repo/image/debian/packages" "$repo/image/debian/base-customize.sh"; echo "mmdebstrap-v1"; } | sha256sum | cut -c1-16)
base=$cache/base-$key
if [[ ! -d $base ]]; then
	step "building the Debian base $key (cached afterwards)"
	mkdir -p "$cache"
	rm -rf "$base.tmp"
	mmdebstrap --variant=minbase --include="$packages" \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--customize-hook="$repo/image/debian/base-customize.sh \"\$1\"" \
		bookworm "$base.tmp" >&2
	mv "$base.tmp" "$base"
	# Older bases are of no further use.
	find "$cache" -maxdepth 1 -name 'base-*' ! -name "base-$key" -exec rm -rf {} +
else
	step "using cached Debian base $key"
fi

# --- root filesystem ---------------------------------------------------------------------
work=$out/work
rm -rf "$work"
mkdir -p "$work/images"
root=$work/rootfs
step "staging the root filesystem"
cp -a "$base" "$root"
cp -a "$repo/buildroot-overlay/rootfs-overlay/." "$root/"
if [[ -d $repo/image/debian/overlay ]] && [[ -n $(ls -A "$repo/image/debian/overlay") ]]; then
	cp -a "$repo/image/debian/overlay/." "$root/"
fi
# Without its line tables (as Buildroot's BR2_STRIP_strip does): 17 MB instead of 80.
if objcopy --strip-debug "$bin" "$root/usr/bin/palisade" 2>/dev/null; then
	chmod 755 "$root/usr/bin/palisade"
else
	install -m 755 "$bin" "$root/usr/bin/palisade" # not an ELF file (the tests' broken firmware)
fi
keyring=$("$repo/scripts/sign-bundle.sh" --print-keyring)
"$repo/scripts/image/finalize-rootfs.sh" "$root" "$version" "$build_id" "$keyring" "QEMU test image"
# Service accounts with fixed ids (sysusers.d/palisade.conf), and which units run
# (system-preset/10-palisade.preset); both need the image's own tools.
chroot "$root" systemd-sysusers
chroot "$root" systemctl preset-all >/dev/null 2>&1 || chroot "$root" systemctl preset-all
# Whatever the packages put under /var is hidden by the /data/var bind mount.
find "$root/var" -mindepth 1 -maxdepth 1 -exec rm -rf {} +

step "mksquashfs"
# gzip: GRUB reads the kernel and initrd from this filesystem, and its squash4 driver
# knows gzip, xz and lzo only; gzip is the fastest of them to build.
mksquashfs "$root" "$work/images/rootfs.squashfs" -noappend -comp gzip -Xcompression-level 6 \
	-quiet -no-progress >&2
cp "$work/images/rootfs.squashfs" "$out/rootfs.squashfs"

step "signing the bundle"
"$repo/scripts/sign-bundle.sh" --version "$version" --build "$build_id" \
	"$work/images/rootfs.squashfs" "$out/palisade-x86_64.raucb"
if [[ $mode == bundle ]]; then
	rm -rf "$work"
	step "done: $out/palisade-x86_64.raucb ($version)"
	exit 0
fi

# --- disk image --------------------------------------------------------------------------
step "ESP and disk image"
# GRUB as one EFI binary with everything grub.cfg uses built in (no modules on disk).
grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$work/images/bootx64.efi" \
	part_gpt fat squash4 ext2 normal linux boot configfile loadenv test regexp echo \
	search search_fs_uuid search_label efi_gop all_video gzio xzio lzopio minicmd reboot halt
cp "$repo/board/x86_64/grub.cfg" "$work/images/grub.cfg"
"$repo/scripts/image/mkgrubenv.sh" "$work/images/grubenv" "ORDER=A B" A_OK=1 A_TRY=0 B_OK=0 B_TRY=0
mkdir -p "$work/genimage-root" "$work/genimage-tmp"
genimage --config "$repo/board/x86_64/genimage.cfg" --inputpath "$work/images" \
	--outputpath "$work/images" --tmppath "$work/genimage-tmp" --rootpath "$work/genimage-root" >&2
mv "$work/images/palisade-x86_64.img" "$out/palisade-x86_64.img"
bmaptool -q create -o "$out/palisade-x86_64.img.bmap" "$out/palisade-x86_64.img"
echo "$version" >"$out/VERSION"
rm -rf "$work"
step "done: $out/palisade-x86_64.img ($version)"
