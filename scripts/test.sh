#!/usr/bin/env bash
# Palisade's one test command: installs what the tests need (Debian packages, a Python venv),
# then runs every tier in order and stops at the first that fails.
#
#   1. lint       cargo fmt --check, cargo clippy -D warnings
#   2. unit       cargo test (every crate, release profile: the e2e tiers reuse its build)
#   3. fuzz       scripts/fuzz.sh: every cargo-fuzz target of every crates/*/fuzz for
#                 $PALISADE_FUZZ_SECONDS (default 30) s each; fails on a crash (figures in
#                 tests/output/fuzz/figures.json). Long run: scripts/fuzz.sh 1800 TARGET
#   4. e2e        tests/e2e: the real binary against swaks, smtplib, smtp-sink, dnsmasq
#   5. abuse      tests/abuse: an attacker from outside, without credentials (auth storms,
#                 lock-out by strangers, slow clients, an engine crash loop), with figures
#   6. console    tests/console: headless Chromium against the HTTPS console
#   7. buildroot  scripts/check-buildroot.sh: the defconfig survives, check-package passes
#   8. image      tests/image: the QEMU image boots and is driven (mail, console, RAUC updates)
#
#   scripts/test.sh                 everything
#   scripts/test.sh e2e console     only these tiers (lint unit fuzz e2e abuse console buildroot image)
#
# Run as root (CI does): the e2e tiers exercise the real privilege drop, mount a small tmpfs
# for the full-disk test, and build and boot the appliance image.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade-target}"
export PALISADE_BIN="$CARGO_TARGET_DIR/release/palisade"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(lint unit fuzz e2e abuse console buildroot image)
want() { local t; for t in "${tiers[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

started=$SECONDS
tier() { echo; echo "=== [$((SECONDS - started))s] $*"; }

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  apt-get update -qq
  # Never start the daemons these packages ship (postfix): the tests start what they need.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$created" = 1 ] && rm -f "$policy"
  return 0
}

# Building needs these (OpenPGP is sequoia on nettle: nettle-sys runs bindgen, which needs
# libclang); every tier builds.
tier "build dependencies"
apt_install build-essential pkg-config nettle-dev clang libclang-dev

if want e2e || want abuse || want console; then
  tier "dependencies"
  apt_install build-essential swaks postfix libnet-ssleay-perl libio-socket-ssl-perl \
    python3 python3-venv dnsmasq-base nsd sqlite3 ca-certificates clamav-daemon openssl iproute2 \
    gnupg
  if [ ! -x tests/.venv/bin/pytest ]; then
    /usr/bin/python3 -m venv tests/.venv
  fi
  tests/.venv/bin/pip install -q -r tests/requirements.txt
fi

if want lint; then
  tier "lint: fmt, clippy"
  cargo fmt --all --check
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi

if want unit; then
  tier "unit: cargo test"
  cargo test --workspace --release --locked
fi

if want fuzz; then
  tier "fuzz: scripts/fuzz.sh ${PALISADE_FUZZ_SECONDS:-30} (every target of crates/*/fuzz)"
  scripts/fuzz.sh "${PALISADE_FUZZ_SECONDS:-30}"
fi

if want e2e || want abuse || want console || want image; then
  tier "build: palisade (release)"
  cargo build --release --locked -p palisade
fi

if want e2e; then
  tier "e2e: tests/e2e"
  (cd tests && .venv/bin/pytest -q e2e)
fi

if want abuse; then
  tier "abuse: tests/abuse (figures in tests/output/abuse/figures.json)"
  (cd tests && .venv/bin/pytest -q -s abuse)
fi

if want console; then
  tier "console: tests/console (headless Chromium)"
  scripts/test-console.sh --e2e
fi

if want buildroot; then
  tier "buildroot: scripts/check-buildroot.sh"
  scripts/check-buildroot.sh
fi

if want image; then
  tier "image: scripts/test-image.sh (QEMU)"
  scripts/test-image.sh
fi

tier "all requested tiers passed (${tiers[*]})"
