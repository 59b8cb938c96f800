#!/usr/bin/env bash
# What antivirus costs: the same load through Palisade with antivirus off and with it on (a
# real clamd on a unix socket, local signatures), side by side, with the ratio.
#
#   smtp-source ──▶ Palisade (antivirus off) ──▶ smtp-sink
#   smtp-source ──▶ Palisade (antivirus on, clamd) ──▶ smtp-sink
#
#   scripts/bench-antivirus.sh [COUNT] [SIZE_BYTES] [SESSIONS]     (defaults 2000 20000 20)
#
# clamd here loads only the test signatures (an EICAR .ndb), so the figure is the cost of the
# round trips, clamd's parsing and archive handling, not of scanning against the ~8 million
# official signatures (which mostly adds memory and start-up time, less per message).
# Needs root, postfix (smtp-source, smtp-sink) and clamav-daemon. Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-2000}
SIZE=${2:-20000}
SESSIONS=${3:-20}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade-target}"
BIN="$CARGO_TARGET_DIR/release/palisade"

command -v smtp-source >/dev/null || { echo "needs postfix (smtp-source, smtp-sink)"; exit 1; }
command -v clamd >/dev/null || { echo "needs clamav-daemon (clamd)"; exit 1; }
cargo build --release --locked -p palisade >/dev/null

B=$(mktemp -d "${BENCH_DIR:-/var/tmp}/palisade-avbench.XXXXXX")
chmod 755 "$B"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$B"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
now() { date +%s.%N; }

start_sink() { # name port
  mkdir -p "$B/sink-$1"
  smtp-sink -u root -c "127.0.0.1:$2" 1000 >"$B/sink-$1/count" 2>/dev/null &
  pids+=($!)
  wait_port "$2"
}
sink_count() {
  local n
  n=$(tr '\r' '\n' <"$B/sink-$1/count" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2)
  echo "${n:-0}"
}

run_load() { # name port -> "accept_seconds total_seconds"
  local name=$1 port=$2 t0 t1 t2
  t0=$(now)
  smtp-source -s "$SESSIONS" -m "$COUNT" -l "$SIZE" -f bench@example.org -t "rcpt@bench.test" \
    "127.0.0.1:$port" >/dev/null
  t1=$(now)
  local deadline=$((SECONDS + 600))
  while [ "$(sink_count "$name")" -lt "$COUNT" ]; do
    [ $SECONDS -lt $deadline ] || { echo "timeout: $name delivered $(sink_count "$name")/$COUNT" >&2; exit 1; }
    sleep 0.05
  done
  t2=$(now)
  python3 -c "print(f'{$t1-$t0:.3f} {$t2-$t0:.3f}')"
}

start_palisade() { # name antivirus_enabled -> port
  local name=$1 av=$2 sink pp
  sink=$(port); start_sink "$name" "$sink"
  pp=$(port)
  cat >"$B/$name.toml" <<EOT
[system]
hostname = "bench.palisade.test"
[smtp]
listen = ["127.0.0.1:$pp"]
submission_listen = []
max_connections_per_ip = 200
min_free_disk_mb = 10
[console]
listen = []
[delivery]
max_per_destination = $SESSIONS
# No SPF/DKIM/DMARC: they would ask the internet's DNS about example.org.
[authentication]
enabled = false
[antivirus]
enabled = $av
clamd = "unix:$B/clamd.sock"
[[domain]]
name = "bench.test"
route = "smarthosts"
smarthosts = ["127.0.0.1:$sink"]
EOT
  RUST_LOG=warn "$BIN" --data "$B/$name-data" run --initial-config "$B/$name.toml" >"$B/$name.out" 2>"$B/$name.log" &
  pids+=($!)
  for _ in $(seq 300); do grep -q "Palisade: ready" "$B/$name.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "Palisade: ready" "$B/$name.out" || { cat "$B/$name.log" >&2; exit 1; }
  echo "$pp"
}

# --- clamd with the test signature --------------------------------------------------------
mkdir -p "$B/clamav"
python3 - "$B/clamav/palisade-test.ndb" <<'EOT'
import sys
eicar = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
open(sys.argv[1], "w").write(f"Palisade.Test.EICAR:0:*:{eicar.hex()}\n")
EOT
cat >"$B/clamd.conf" <<EOT
DatabaseDirectory $B/clamav
LocalSocket $B/clamd.sock
LocalSocketMode 666
Foreground yes
LogFile $B/clamd.log
MaxThreads $SESSIONS
StreamMaxLength 64M
EOT
clamd --config-file="$B/clamd.conf" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -S "$B/clamd.sock" ] && break; sleep 0.1; done
[ -S "$B/clamd.sock" ] || { cat "$B/clamd.log"; exit 1; }

OFF=$(start_palisade off false)
read -r OFF_ACCEPT OFF_TOTAL < <(run_load off "$OFF")
ON=$(start_palisade on true)
read -r ON_ACCEPT ON_TOTAL < <(run_load on "$ON")

python3 - "$COUNT" "$SIZE" "$SESSIONS" "$OFF_ACCEPT" "$OFF_TOTAL" "$ON_ACCEPT" "$ON_TOTAL" <<'EOT'
import sys
n, size, sessions = map(int, sys.argv[1:4])
fa, ft, na, nt = map(float, sys.argv[4:8])
print(f"{n} messages of {size} bytes over {sessions} sessions, relayed to smtp-sink")
print(f"{'':16} {'accepted msg/s':>15} {'delivered msg/s':>16}")
print(f"{'antivirus off':16} {n/fa:15.0f} {n/ft:16.0f}")
print(f"{'antivirus on':16} {n/na:15.0f} {n/nt:16.0f}")
print(f"ratio on/off: accepted {fa/na:.2f}, delivered end to end {ft/nt:.2f}")
EOT
