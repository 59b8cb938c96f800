#!/usr/bin/env bash
# Runs the whole appliance on this machine from the embedded default configuration:
# `cargo run --release -- run`, after installing the Debian packages the build needs when
# they are missing (a C compiler; pkg-config, nettle-dev, clang and libclang-dev for OpenPGP,
# which is sequoia on nettle). Arguments go to `palisade run` (e.g. --data DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in build-essential pkg-config nettle-dev clang libclang-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing the build's packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  elif command -v sudo >/dev/null; then
    echo "installing the build's packages (sudo): ${need[*]}"
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "run.sh: the build needs these Debian packages: ${need[*]} (apt-get install them as root)" >&2
    exit 1
  fi
fi
exec cargo run --release -- run "$@"
