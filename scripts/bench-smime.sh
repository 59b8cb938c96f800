#!/usr/bin/env bash
# S/MIME messages/s (issue 13): Palisade's crypto crate against `openssl cms` doing the same
# work — 100 KiB messages encrypted (AES-256-CBC, RSA-2048 recipient) and signed + encrypted
# (SHA-256, RSA-3072 signer) — in one run on this machine; prints both and the ratio.
# openssl runs once per message, as a gateway calling it would (its process start is part of
# its cost); Palisade runs in one process, as the engine does.
#
#   scripts/bench-smime.sh [COUNT] [SIZE_KIB]      (defaults 200 100)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${1:-200}"
SIZE_KIB="${2:-100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade-target}"
cargo build --release --locked -p palisade-crypto --example bench_smime >/dev/null
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
openssl req -x509 -newkey rsa:2048 -nodes -keyout partner.key -out partner.pem -days 2 \
  -subj /CN=partner -addext subjectAltName=email:registry@partner.test 2>/dev/null
openssl req -x509 -newkey rsa:3072 -nodes -keyout gw.key -out gw.pem -days 2 \
  -subj /CN=gateway -addext subjectAltName=email:gateway@example.test \
  -addext extendedKeyUsage=emailProtection 2>/dev/null
python3 - "$SIZE_KIB" <<'PY'
import random, sys
random.seed(7)
size = int(sys.argv[1]) * 1024
words = ["patient", "referral", "ward", "discharge", "clinic", "results", "follow-up", "dose"]
body = []
n = 0
while n < size:
    line = " ".join(random.choice(words) for _ in range(10)) + "\r\n"
    body.append(line)
    n += len(line)
msg = ("From: ada@example.test\r\nTo: registry@partner.test\r\nSubject: bench\r\n"
       "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + "".join(body))
open("message.eml", "w", newline="").write(msg)
# the entity openssl protects: the content fields and the body
open("entity.mime", "w", newline="").write("Content-Type: text/plain; charset=us-ascii\r\n\r\n" + "".join(body))
PY
ours=$("$CARGO_TARGET_DIR/release/examples/bench_smime" message.eml partner.pem gw.pem gw.key "$COUNT")
t0=$(date +%s.%N)
for _ in $(seq "$COUNT"); do
  openssl cms -encrypt -aes256 -in entity.mime -out enc.eml partner.pem
done
t1=$(date +%s.%N)
for _ in $(seq "$COUNT"); do
  openssl cms -sign -in entity.mime -signer gw.pem -inkey gw.key -md sha256 | \
    openssl cms -encrypt -aes256 -out enc.eml partner.pem
done
t2=$(date +%s.%N)
python3 - "$ours" "$COUNT" "$t0" "$t1" "$t2" <<'PY'
import json, sys
ours = json.loads(sys.argv[1])
count = int(sys.argv[2]); t0, t1, t2 = map(float, sys.argv[3:6])
o_enc = count / (t1 - t0); o_both = count / (t2 - t1)
print(f"messages of {ours['size']} bytes, {count} each")
print(f"encrypt:        palisade {ours['encrypt_per_s']:.1f}/s   openssl cms {o_enc:.1f}/s   ratio {ours['encrypt_per_s'] / o_enc:.2f}")
print(f"sign + encrypt: palisade {ours['sign_encrypt_per_s']:.1f}/s   openssl cms {o_both:.1f}/s   ratio {ours['sign_encrypt_per_s'] / o_both:.2f}")
PY
