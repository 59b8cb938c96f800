#!/usr/bin/env bash
# The issue-12 no-loss soak: 20,000 messages (or COUNT) submitted to the floating address while
# the unit holding it is SIGKILLed and restarted and the HA link is cut and restored at random
# moments; every acknowledged message must reach the relay (duplicates are counted, loss
# fails). The test tier runs the same test with 6,000. Figures: tests/output/ha/no_loss_chaos.json.
#
#   scripts/soak-ha.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade-target}"
cargo build --release --locked -p palisade >/dev/null
export PALISADE_BIN="$CARGO_TARGET_DIR/release/palisade"
export PALISADE_HA_CHAOS_MESSAGES="${1:-20000}"
cd tests
exec .venv/bin/pytest -q -s -o timeout=3600 e2e/test_ha.py -k kills_and_cut_ha_links
