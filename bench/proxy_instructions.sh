#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind in every thread of remit (user
# space only: the kernel's TCP and fsync work is not counted), for one or more remit
# binaries in turn, against the same upstream and configuration as bench/proxy.sh. A count
# that a loaded machine does not move, for A/B comparisons of the request path; it says
# nothing about wall-clock throughput (see bench/proxy.sh for that). The count is split
# into the tokio workers (the request path: hyper, the handler, the decision, the records'
# canonical JSON) and the rest (the audit store's threads), from the inclusive count of
# tokio's `worker::run`. remit is not pinned to a core here (valgrind runs one thread at a
# time anyway), so it runs tokio's multi-threaded scheduler, whose workers the split finds.
#
# Usage: bench/proxy_instructions.sh [seconds] BINARY...
# (default: target/release/remit, built first). Needs nginx, wrk and valgrind.
# With CALLGRIND_KEEP=DIR, each binary's callgrind output is kept as DIR/cg-<n>-<name>
# (for `callgrind_annotate --inclusive=yes`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; shift || true
bins=("$@")
. bench/proxy_world.sh
bench_needs bench/proxy_instructions.sh "nginx wrk valgrind" nginx wrk valgrind callgrind_control
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --release -q -p remit
  bins=(target/release/remit)
fi
bench_work
proxy_world "$work"
nginx -p "$work" -c "$work/upstream.conf" & pids+=($!)
load() { wrk -t1 -c8 -d"$1" -H 'Authorization: Bearer rk_bench' http://127.0.0.1:18082/bench/1; }
echo "| binary | requests counted | instructions per request | of which tokio workers | other threads |"
echo "| --- | ---: | ---: | ---: | ---: |"
for bin in "${bins[@]}"; do
  out="$work/cg-$(basename "$bin")"
  rm -rf "$work/data"
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
    "$bin" serve --config "$work/remit.toml" --data-dir "$work/data" >"$work/valgrind.log" 2>&1 &
  vpid=$!
  for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/18082) 2>/dev/null && break; sleep 0.2; done
  load 3s >/dev/null                     # warm: pools, caches, the index's first batches
  callgrind_control -z "$vpid" >/dev/null 2>&1  # count from here...
  reqs=$(load "${secs}s" | awk '/requests in/ {print $1}')
  callgrind_control -d "$vpid" >/dev/null 2>&1  # ...to here, dumped as "$out.1"
  kill "$vpid"; wait "$vpid" 2>/dev/null || true
  total=$(awk '/^(totals|summary):/ {print $2; exit}' "$out.1")
  if [ -n "${CALLGRIND_KEEP:-}" ]; then
    mkdir -p "$CALLGRIND_KEEP"
    kept=$((${kept:-0} + 1))
    cp "$out.1" "$CALLGRIND_KEEP/cg-$kept-$(basename "$bin")"
  fi
  workers=$(callgrind_annotate --inclusive=yes --threshold=100 "$out.1" 2>/dev/null \
    | awk '/multi_thread::worker::run \[/ && !done {gsub(",", "", $1); print $1; done = 1}')
  per() { awk -v t="$1" -v n="$reqs" 'BEGIN {printf "%.0f", t/n}'; }
  echo "| $bin | $reqs | $(per "$total") | $(per "${workers:-0}") | $(per "$((total - ${workers:-0}))") |"
done
