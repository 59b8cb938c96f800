#!/usr/bin/env bash
# Checks the Buildroot external tree without building anything (no downloads):
#  1. `make palisade_x86_64_defconfig` in an out-of-tree directory succeeds;
#  2. every line of configs/palisade_x86_64_defconfig survived into .config (Kconfig
#     silently drops a misspelt symbol or one whose dependencies are not met);
#  3. Buildroot's utils/check-package finds nothing wrong with our package files.
#
# Buildroot comes from BUILDROOT_DIR, or is unpacked once from
# ../shared/vendor/buildroot-2026.05.1.tar.xz (BUILDROOT_TARBALL) into
# ~/.cache/palisade-buildroot.
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

br=${BUILDROOT_DIR:-}
if [[ -z $br ]]; then
	tarball=${BUILDROOT_TARBALL:-$repo/../shared/vendor/buildroot-2026.05.1.tar.xz}
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/palisade-buildroot
	br=$cache/$(basename "$tarball" .tar.xz)
	if [[ ! -e $br/Makefile ]]; then
		[[ -f $tarball ]] || { echo "check-buildroot: no Buildroot: set BUILDROOT_DIR or BUILDROOT_TARBALL" >&2; exit 2; }
		mkdir -p "$cache"
		tar -C "$cache" -xf "$tarball"
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
