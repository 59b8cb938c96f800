#!/usr/bin/env bash
# The image test tier: builds the QEMU image if it is missing or older than the sources,
# then boots it and runs tests/image/ (pytest) against it.
#
#   scripts/test-image.sh [pytest args...]
#
# PALISADE_IMAGE_REBUILD=1 forces a rebuild; =0 uses out/ as it is.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need=()
command -v swaks >/dev/null || need+=(swaks)
command -v unsquashfs >/dev/null || need+=(squashfs-tools)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ]] || need+=(ovmf)
/usr/bin/python3 -c 'import pytest' 2>/dev/null || need+=(python3-pytest)
# tests/pytest.ini sets timeout = 600 and --strict-config: without the plugin pytest refuses.
/usr/bin/python3 -c 'import pytest_timeout' 2>/dev/null || need+=(python3-pytest-timeout)
if ((${#need[@]})); then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
fi

img=$repo/out/palisade-x86_64.img
rebuild=${PALISADE_IMAGE_REBUILD:-auto}
if [[ $rebuild == auto ]]; then
	rebuild=0
	if [[ ! -e $img ]]; then
		rebuild=1
	elif [[ -n $(find "$repo/crates" "$repo/buildroot-overlay/rootfs-overlay" "$repo/board" "$repo/image" \
		"$repo/Cargo.lock" "$repo/scripts/build-image.sh" -newer "$img" -type f -print -quit) ]]; then
		rebuild=1
	fi
fi
if [[ $rebuild == 1 ]]; then
	"$repo/scripts/build-image.sh"
fi

cd "$repo/tests/image"
# Debian's python3 with its python3-pytest and python3-pytest-timeout: no virtualenv or PyPI
# needed for this tier.
exec /usr/bin/python3 -m pytest -p no:cacheprovider -v -s --durations=0 "$@" .
