#!/usr/bin/env bash
# Throughput benchmark: the same load through Palisade and through Postfix, side by side.
#
#   smtp-source ──▶ Palisade (relay) ──▶ smtp-sink
#   smtp-source ──▶ Postfix  (relay) ──▶ smtp-sink
#
# Both queues live on the same disk (BENCH_DIR, default under /var/tmp) and both make an
# accepted message durable before answering 250 (Postfix fsyncs its queue file; Palisade its
# spool file, directory and queue row). Prints messages/s for acceptance (smtp-source done)
# and end to end (the sink holds every message), and the Palisade/Postfix ratios.
#
#   scripts/bench-smtp.sh [COUNT] [SIZE_BYTES] [SESSIONS]     (defaults 5000 5000 20)
#
# Needs root (Postfix) and the packages postfix (smtp-source, smtp-sink). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-5000}
SIZE=${2:-5000}
SESSIONS=${3:-20}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade-target}"
BIN="$CARGO_TARGET_DIR/release/palisade"

command -v smtp-source >/dev/null || { echo "needs postfix (smtp-source, smtp-sink)"; exit 1; }
cargo build --release --locked -p palisade >/dev/null

B=$(mktemp -d "${BENCH_DIR:-/var/tmp}/palisade-bench.XXXXXX")
chmod 755 "$B"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -d "$B/postfix-conf" ] && postfix -c "$B/postfix-conf" stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$B"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
now() { date +%s.%N; }

# Counts messages arriving at a sink without writing them anywhere: smtp-sink -c prints a
# running count ("sess=N quit=N mesg=N\r").
start_sink() { # name port
  local dir="$B/sink-$1"
  mkdir -p "$dir"
  smtp-sink -u root -c "127.0.0.1:$2" 1000 >"$dir/count" 2>/dev/null &
  pids+=($!)
  wait_port "$2"
}
sink_count() { # name
  local n
  n=$(tr '\r' '\n' <"$B/sink-$1/count" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2)
  echo "${n:-0}"
}

run_load() { # name port -> prints "accept_seconds total_seconds"
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

# --- Palisade ---------------------------------------------------------------------------
SINK_P=$(port); start_sink palisade "$SINK_P"
PP=$(port)
cat >"$B/palisade.toml" <<EOF
[system]
hostname = "bench.palisade.test"
[smtp]
listen = ["127.0.0.1:$PP"]
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
[[domain]]
name = "bench.test"
route = "smarthosts"
smarthosts = ["127.0.0.1:$SINK_P"]
EOF
RUST_LOG=warn "$BIN" --data "$B/palisade-data" run --initial-config "$B/palisade.toml" >"$B/palisade.out" 2>"$B/palisade.log" &
pids+=($!)
for _ in $(seq 300); do grep -q "Palisade: ready" "$B/palisade.out" 2>/dev/null && break; sleep 0.1; done
grep -q "Palisade: ready" "$B/palisade.out" || { cat "$B/palisade.log"; exit 1; }
read -r P_ACCEPT P_TOTAL < <(run_load palisade "$PP")

# --- Postfix ----------------------------------------------------------------------------
SINK_X=$(port); start_sink postfix "$SINK_X"
XP=$(port)
C="$B/postfix-conf"
mkdir -p "$C"
cp /etc/postfix/master.cf "$C/master.cf"
sed -i "s/^smtp      inet  n       -       y       -       -       smtpd/127.0.0.1:$XP inet n - n - - smtpd/" "$C/master.cf"
grep -q "^127.0.0.1:$XP" "$C/master.cf" || { echo "could not set the Postfix listener"; exit 1; }
cat >"$C/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $B/postfix-queue
data_directory = $B/postfix-data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.postfix.test
mydestination =
relay_domains = bench.test
transport_maps = inline:{ bench.test=smtp:[127.0.0.1]:$SINK_X }
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtp_tls_security_level = may
smtpd_tls_security_level = none
default_process_limit = 200
smtp_destination_concurrency_limit = $SESSIONS
smtpd_client_connection_count_limit = 0
alias_maps =
alias_database =
maillog_file = $B/postfix.log
EOF
mkdir -p "$B/postfix-queue" "$B/postfix-data"
postfix -c "$C" set-permissions >/dev/null 2>&1 || true
postfix -c "$C" start >/dev/null 2>&1
wait_port "$XP"
read -r X_ACCEPT X_TOTAL < <(run_load postfix "$XP")

python3 - "$COUNT" "$SIZE" "$SESSIONS" "$P_ACCEPT" "$P_TOTAL" "$X_ACCEPT" "$X_TOTAL" <<'EOF'
import sys
n, size, sessions = map(int, sys.argv[1:4])
pa, pt, xa, xt = map(float, sys.argv[4:8])
print(f"{n} messages of {size} bytes over {sessions} sessions; queues on the same disk")
print(f"{'':10} {'accepted msg/s':>15} {'delivered msg/s':>16}")
print(f"{'Palisade':10} {n/pa:15.0f} {n/pt:16.0f}")
print(f"{'Postfix':10} {n/xa:15.0f} {n/xt:16.0f}")
print(f"ratio Palisade/Postfix: accepted {xa/pa:.2f}, delivered end to end {xt/pt:.2f}")
EOF
