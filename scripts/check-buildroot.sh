#!/usr/bin/env bash
# Checks the Buildroot external tree without building anything (no downloads):
#  1. `make palisade_x86_64_defconfig` in an out-of-tree directory succeeds;
#  2. every line of configs/palisade_x86_64_defconfig survived into .config (Kconfig
#     silently drops a misspelt symbol or one whose dependencies are not met);
#  3. Buildroot's utils/check-package finds nothing wrong with our package files.
#
# Where Buildroot 2026.05.1 comes from, first match wins:
#  1. BUILDROOT_DIR: an unpacked Buildroot tree, used as it is;
#  2. BUILDROOT_TARBALL: a release tarball, unpacked once into the cache;
#  3. a tree already unpacked in the cache, ~/.cache/palisade-buildroot/buildroot-2026.05.1;
#  4. the copy beside the checkout, ../shared/vendor/buildroot-2026.05.1.tar.xz;
#  5. the official release (or BUILDROOT_URL, a mirror of it), downloaded once into the cache.
# Tarballs from 4 and 5 must match the pinned SHA-256 below. If none works, it says exactly
# what to provide and exits 2.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ext=$repo/buildroot-overlay
defconfig=$ext/configs/palisade_x86_64_defconfig

need=()
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
# utils/check-package runs on Debian's python3 with python3-magic (not whatever python3
# comes first in PATH).
[[ -x /usr/bin/python3 ]] || need+=(python3)
/usr/bin/python3 -c 'import magic' 2>/dev/null || need+=(python3-magic)
/usr/bin/python3 -c 'import flake8' 2>/dev/null || need+=(python3-flake8)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v xz >/dev/null || need+=(xz-utils)
if ((${#need[@]})); then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi

br_version=2026.05.1
br_name=buildroot-$br_version
br_url=${BUILDROOT_URL:-https://buildroot.org/downloads/$br_name.tar.xz}
# SHA-256 of the official release tarball.
br_sha256=b54bad1fe4018d88d23a7ed2e4f9bddf74320a8d0fa109783404e8302467338d
cache=${XDG_CACHE_HOME:-$HOME/.cache}/palisade-buildroot
beside=$(realpath -m "$repo/../shared/vendor/$br_name.tar.xz")

# Unpacks tarball $1 into $cache/$2 (via a temporary directory, so an interrupted run never
# leaves a half tree that looks complete).
unpack() {
	local tmp
	mkdir -p "$cache"
	tmp=$(mktemp -d "$cache/.unpack.XXXXXX")
	if ! tar -C "$tmp" -xf "$1"; then
		rm -rf "$tmp"
		echo "check-buildroot: cannot unpack $1" >&2
		exit 2
	fi
	local top
	top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
	[[ -e $top/Makefile ]] || { rm -rf "$tmp"; echo "check-buildroot: $1 holds no Buildroot tree" >&2; exit 2; }
	rm -rf "${cache:?}/$2"
	mv "$top" "$cache/$2"
	rm -rf "$tmp"
}

sha_ok() { echo "$br_sha256  $1" | sha256sum -c --status -; }

no_buildroot() {
	cat >&2 <<-EOF
		check-buildroot: cannot get Buildroot $br_version: $*
		Provide one of:
		  BUILDROOT_DIR=/path/to/$br_name              an unpacked release
		  BUILDROOT_TARBALL=/path/to/$br_name.tar.xz   the release tarball
		  $beside   (a copy beside the checkout)
		  internet access to $br_url
		    (downloaded once into $cache, SHA-256 $br_sha256)
	EOF
	exit 2
}

br=${BUILDROOT_DIR:-}
if [[ -n $br ]]; then
	[[ -e $br/Makefile && -e $br/utils/check-package ]] ||
		{ echo "check-buildroot: BUILDROOT_DIR=$br is not a Buildroot tree (no Makefile, utils/check-package)" >&2; exit 2; }
elif [[ -n ${BUILDROOT_TARBALL:-} ]]; then
	[[ -f $BUILDROOT_TARBALL ]] || { echo "check-buildroot: BUILDROOT_TARBALL=$BUILDROOT_TARBALL: no such file" >&2; exit 2; }
	# Named after the tarball, so another version never mixes with the pinned one.
	name=$(basename "$BUILDROOT_TARBALL")
	name=${name%.tar.*}
	br=$cache/$name
	[[ -e $br/Makefile ]] || unpack "$BUILDROOT_TARBALL" "$name"
else
	br=$cache/$br_name
	if [[ ! -e $br/Makefile ]]; then
		if [[ -f $beside ]]; then
			sha_ok "$beside" || { echo "check-buildroot: $beside does not match the pinned SHA-256 $br_sha256" >&2; exit 2; }
			unpack "$beside" "$br_name"
		else
			dl=$cache/$br_name.tar.xz
			if [[ ! -f $dl ]] || ! sha_ok "$dl"; then
				if ! command -v curl >/dev/null; then
					apt-get update -qq
					DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl ca-certificates >/dev/null ||
						no_buildroot "no curl to download it with"
				fi
				mkdir -p "$cache"
				echo "check-buildroot: downloading $br_url" >&2
				if ! err=$(curl -fsSL --connect-timeout 20 --retry 2 -o "$dl.part" "$br_url" 2>&1); then
					rm -f "$dl.part"
					err=${err%$'\n'}
					no_buildroot "the download failed (${err##*$'\n'})"
				fi
				if ! sha_ok "$dl.part"; then
					rm -f "$dl.part"
					no_buildroot "the download does not match the pinned SHA-256"
				fi
				mv "$dl.part" "$dl"
			fi
			unpack "$dl" "$br_name"
		fi
	fi
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "check-buildroot: $br, defconfig in $out" >&2
if ! make -s -C "$br" O="$out" BR2_EXTERNAL="$ext" palisade_x86_64_defconfig >"$out/defconfig.log" 2>&1; then
	cat "$out/defconfig.log" >&2
	echo "check-buildroot: FAILED: make palisade_x86_64_defconfig" >&2
	exit 1
fi

# Values in .config are written with variables unexpanded, exactly as in the defconfig.
missing=0
while IFS= read -r line; do
	[[ -z $line || $line == "#"[[:space:]]*[!B]* || $line == "##"* ]] && continue
	case $line in
	BR2_*=* | "# BR2_"*" is not set") ;;
	"#"*) continue ;;
	*) echo "check-buildroot: not a Kconfig line: $line" >&2; missing=1; continue ;;
	esac
	if ! grep -qxF -- "$line" "$out/.config"; then
		sym=${line%%=*}
		sym=${sym#"# "}
		sym=${sym%" is not set"}
		now=$(grep -E "^(# )?${sym}[= ]" "$out/.config" || echo "(absent: unknown symbol or unmet dependencies)")
		echo "check-buildroot: dropped: $line  ->  $now" >&2
		missing=1
	fi
done <"$defconfig"
if ((missing)); then
	echo "check-buildroot: FAILED: the defconfig does not survive into .config" >&2
	exit 1
fi
echo "check-buildroot: all $(grep -cE '^(BR2_|# BR2_)' "$defconfig") defconfig lines are in .config" >&2

pkg_files=()
while IFS= read -r f; do pkg_files+=("$f"); done < <(find "$ext/package" "$ext/Config.in" "$ext/external.mk" -type f)
(cd "$ext" && /usr/bin/python3 "$br/utils/check-package" -b "${pkg_files[@]}")
echo "check-buildroot: check-package clean (${#pkg_files[@]} files)" >&2
echo "check-buildroot: OK" >&2
