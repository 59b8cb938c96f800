#!/usr/bin/env bash
# Accepted messages/s: one unit alone versus a replicated pair (see scripts/bench-ha.py).
#
#   scripts/bench-ha.sh [COUNT] [SIZE_BYTES] [SESSIONS]     (defaults 5000 5000 20)
#
# Needs root, postfix (smtp-source, smtp-sink), iproute2 and the tests' virtualenv
# (scripts/test.sh makes it). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade-target}"
cargo build --release --locked -p palisade >/dev/null
export PALISADE_BIN="$CARGO_TARGET_DIR/release/palisade"
exec tests/.venv/bin/python scripts/bench-ha.py "$@"
