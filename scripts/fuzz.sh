#!/usr/bin/env bash
# Palisade's fuzz tier: runs every cargo-fuzz target of every crate that has a fuzz/ directory
# (crates/*/fuzz, discovered with `cargo fuzz list`, so a new crate's targets are picked up
# without touching this script) for a bounded time each, and fails if any finds a crash.
#
#   scripts/fuzz.sh                      every target, 30 s each (the test.sh `fuzz` tier)
#   scripts/fuzz.sh 20                   every target, 20 s each
#   scripts/fuzz.sh 1800 framer          one target for 30 min (the long, measured run)
#   scripts/fuzz.sh 60 smtp-proto/framer policy/decide    targets as NAME or CRATE/NAME
#   scripts/fuzz.sh --list               the targets it would run
#
# Stable toolchain: cargo-fuzz needs -Zsanitizer, so RUSTC_BOOTSTRAP=1 (the ASan runtime ships
# with the stable x86_64 std). Installs what it needs: a C++ compiler (libfuzzer-sys builds
# libFuzzer with it) and cargo-fuzz from crates.io.
#
# Corpora live outside the repository, in $PALISADE_FUZZ_CACHE (default
# ~/.cache/palisade-fuzz)/<crate>/<target>/corpus, and grow from run to run; committed seeds in
# crates/<crate>/fuzz/seeds/<target>/ are read too (never written). Crash, leak, timeout and OOM
# reproducers go to .../<target>/artifacts/; their paths and the command that replays one are
# printed. Figures (runs, exec/s, coverage, corpus size) go to .../figures.json and
# tests/output/fuzz/figures.json. A crash is fixed with a regression test in the crate (and the
# reproducer copied into fuzz/seeds/<target>/).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/palisade-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUSTC_BOOTSTRAP=1
cache="${PALISADE_FUZZ_CACHE:-$HOME/.cache/palisade-fuzz}"
CARGO_FUZZ_VERSION=0.13.2

list_only=0
seconds=30
if [ "${1:-}" = "--list" ]; then
  list_only=1; shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  seconds=$1; shift
fi
wanted=("$@")

# --- tools -----------------------------------------------------------------------------------
if ! command -v c++ >/dev/null 2>&1; then
  echo "installing: build-essential (libFuzzer is C++)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing: cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

# --- discover ------------------------------------------------------------------------------
all=()   # crate/target
for dir in crates/*/fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  crate=$(basename "$(dirname "$dir")")
  while read -r target; do
    [ -n "$target" ] && all+=("$crate/$target")
  done < <(cd "crates/$crate" && cargo fuzz list)
done
[ ${#all[@]} -gt 0 ] || { echo "no fuzz targets found under crates/*/fuzz" >&2; exit 1; }

selected=()
if [ ${#wanted[@]} -eq 0 ]; then
  selected=("${all[@]}")
else
  for w in "${wanted[@]}"; do
    found=0
    for t in "${all[@]}"; do
      if [ "$t" = "$w" ] || [ "${t#*/}" = "$w" ]; then selected+=("$t"); found=1; fi
    done
    [ $found = 1 ] || { echo "unknown fuzz target: $w (have: ${all[*]})" >&2; exit 2; }
  done
fi

if [ $list_only = 1 ]; then
  printf '%s\n' "${all[@]}"
  exit 0
fi

echo "fuzz: ${#selected[@]} target(s), ${seconds}s each: ${selected[*]}"

# --- build (once per crate, so a build failure is not mistaken for a crash) -----------------
built=" "
for t in "${selected[@]}"; do
  crate=${t%%/*}
  case "$built" in *" $crate "*) continue ;; esac
  echo "--- build crates/$crate/fuzz"
  (cd "crates/$crate" && cargo fuzz build --target-dir "$CARGO_TARGET_DIR/fuzz/$crate")
  built+="$crate "
done

# --- run -----------------------------------------------------------------------------------
failed=()
figures=()
for t in "${selected[@]}"; do
  crate=${t%%/*}
  target=${t#*/}
  work="$cache/$crate/$target"
  mkdir -p "$work/corpus" "$work/artifacts"
  corpora=("$work/corpus")
  for seeds in "crates/$crate/fuzz/seeds/$target" "crates/$crate/fuzz/corpus/$target"; do
    [ -d "$seeds" ] && corpora+=("$repo/$seeds")
  done
  before=$(find "$work/artifacts" -type f | wc -l)
  log="$work/last-run.log"
  echo "--- $t: ${seconds}s (corpus $work/corpus, log $log)"
  rc=0
  (cd "crates/$crate" && cargo fuzz run --target-dir "$CARGO_TARGET_DIR/fuzz/$crate" "$target" \
      "${corpora[@]}" -- -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=25 \
      -artifact_prefix="$work/artifacts/" -print_final_stats=1) >"$log" 2>&1 || rc=$?

  # libFuzzer's last status line: "#N DONE cov: C ft: F corp: E/S lim: L exec/s: X rss: R"
  status=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
  field() { sed -nE "s#.*[[:space:]]$1:[[:space:]]*([^[:space:]]+).*#\\1#p" <<<"$status"; }
  runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$status")
  cov=$(field cov); ft=$(field ft); corp=$(field corp); eps=$(field 'exec/s'); rss=$(field rss)
  files=$(find "$work/corpus" -type f | wc -l)
  printf '%-28s runs %-10s exec/s %-7s cov %-6s ft %-6s corpus %s files (%s) rss %s\n' \
    "$t" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "$files" "${corp:-?}" "${rss:-?}"
  figures+=("$(printf '{"target":"%s","seconds":%s,"runs":%s,"exec_per_s":%s,"cov":%s,"ft":%s,"corpus_files":%s,"corp":"%s","rss":"%s","exit":%s}' \
    "$t" "$seconds" "${runs:-null}" "${eps:-null}" "${cov:-null}" "${ft:-null}" "$files" "${corp:-}" "${rss:-}" "$rc")")

  after=$(find "$work/artifacts" -type f | wc -l)
  if [ "$rc" != 0 ] || [ "$after" -gt "$before" ]; then
    failed+=("$t")
    echo "!!! $t FAILED (exit $rc). Last lines of $log:"
    tail -40 "$log" | sed 's/^/    /'
    echo "    reproducers (newest first):"
    ls -t "$work/artifacts" 2>/dev/null | head -5 | sed "s|^|    $work/artifacts/|"
    echo "    replay: cd crates/$crate && RUSTC_BOOTSTRAP=1 cargo fuzz run $target <reproducer>"
  fi
done

json="[$(IFS=,; echo "${figures[*]}")]"
echo "$json" >"$cache/figures.json"
mkdir -p tests/output/fuzz && echo "$json" >tests/output/fuzz/figures.json

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#selected[@]} target(s) ran ${seconds}s each without a crash"
