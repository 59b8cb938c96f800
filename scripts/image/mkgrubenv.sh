#!/usr/bin/env bash
# Writes a GRUB environment block (exactly 1024 bytes, what grub-editenv makes) without
# needing grub-editenv on the build host.
#   mkgrubenv.sh OUT KEY=VALUE...
set -euo pipefail
out=$1
shift
{
	printf '# GRUB Environment Block\n'
	for kv in "$@"; do printf '%s\n' "$kv"; done
} >"$out.tmp"
size=$(stat -c %s "$out.tmp")
((size <= 1024)) || { echo "mkgrubenv: too much for one block" >&2; exit 1; }
head -c $((1024 - size)) /dev/zero | tr '\0' '#' >>"$out.tmp"
mv "$out.tmp" "$out"
