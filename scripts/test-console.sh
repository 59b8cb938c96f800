#!/usr/bin/env bash
# The console's tests: the Rust handler tests (auth, roles, CSRF, headers, throttling, pages,
# API), then the end-to-end test in a real headless Chromium against `palisade run`.
#
#   scripts/test-console.sh            everything
#   scripts/test-console.sh --e2e      only the browser test (pytest arguments may follow)
#   scripts/test-console.sh --rust     only the Rust tests
#
# Installs what it needs when missing (Debian packages, a Python venv under tests/.venv).
# Run it as root so the end-to-end test exercises the real privilege drop. Screenshots of
# every page the browser visits land in tests/output/console/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/root/.cache/palisade-target}"

rust=1 e2e=1
case "${1:-}" in
  --e2e) rust=0; shift ;;
  --rust) e2e=0; shift ;;
esac

if [ "$rust" = 1 ]; then
  echo "== console: Rust handler tests"
  cargo test -p palisade-console -p palisade-store --quiet
  cargo test -p palisade-supervisor --quiet
fi

[ "$e2e" = 1 ] || exit 0

missing=()
for pkg in chromium chromium-driver postfix swaks libnet-ssleay-perl libio-socket-ssl-perl python3-venv openssl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv=tests/.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q -r tests/requirements.txt -r tests/console/requirements.txt

echo "== console: building the release binary"
cargo build --release -p palisade --quiet
export PALISADE_BIN="${PALISADE_BIN:-$CARGO_TARGET_DIR/release/palisade}"

echo "== console: end to end in headless Chromium"
exec "$venv/bin/python" -m pytest -c tests/pytest.ini --rootdir tests tests/console "$@"
