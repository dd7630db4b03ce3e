#!/usr/bin/env bash
# Where a remit build's CPU goes per proxied request, thread by thread: CPU time (user and
# system, from /proc/<pid>/task/<tid>/stat) and context switches (voluntary and not, from
# .../status) per request, for one or more remit binaries in turn, each pinned to core 0
# under `wrk -c32` on core 1, against the same upstream and configuration as bench/proxy.sh.
# It counts the kernel's share too (loopback TCP, fdatasync, scheduling), which
# bench/proxy_instructions.sh does not, and it is less moved by other load than requests/s:
# CPU per request rises a little when a core is shared, the rate falls a lot.
#
# Usage: bench/proxy_cpu.sh [seconds] BINARY...
# (default: target/release/remit, built first). Needs nginx and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}; shift || true
bins=("$@")
. bench/proxy_world.sh
bench_needs bench/proxy_cpu.sh "nginx wrk" nginx wrk taskset
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --release -q -p remit
  bins=(target/release/remit)
fi
bench_work
proxy_world "$work"
taskset -c 1 nginx -p "$work" -c "$work/upstream.conf" & pids+=($!)
load() { taskset -c 1 wrk -t1 -c32 -d"$1" --latency -H 'Authorization: Bearer rk_bench' http://127.0.0.1:18082/bench/1; }
# One line per thread: its id, name (spaces made underscores), CPU ticks, context switches.
threads() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s %s\n' "${t##*/}" "$(tr ' ' _ <"$t/comm")" \
      "$(awk '{print $14 + $15}' "$t/stat")" \
      "$(awk '/ctxt_switches/ {s += $2} END {print s}' "$t/status")"
  done | sort
}
tick=$(getconf CLK_TCK)
for bin in "${bins[@]}"; do
  rm -rf "$work/data"
  RUST_LOG=warn taskset -c 0 "$bin" serve --config "$work/remit.toml" --data-dir "$work/data" & rpid=$!
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/18082) 2>/dev/null && break; sleep 0.1; done
  load 2s >/dev/null                     # warm: pools, caches, the index's first batches
  threads "$rpid" >"$work/before"
  out=$(load "${secs}s")
  threads "$rpid" >"$work/after"
  kill "$rpid"; wait "$rpid" 2>/dev/null || true
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "## $bin: $(awk '/^Requests\/sec/ {print $2}' <<<"$out") requests/s, p50 $(awk '$1=="50%" {print $2}' <<<"$out"), $n requests"
  echo "| thread | CPU per request | context switches per request |"
  echo "| --- | ---: | ---: |"
  # Threads of one name (tokio's blocking pool) are summed; threads that did nothing, or
  # were not there before the run, are left out.
  join "$work/before" "$work/after" | awk -v n="$n" -v t="$tick" '
    { cpu[$2] += ($6 - $3); ctx[$2] += ($7 - $4) }
    END {
      for (k in cpu) if (cpu[k] > 0 || ctx[k] > 0) {
        printf "| %s | %.1f µs | %.2f |\n", k, cpu[k] / t * 1e6 / n, ctx[k] / n
        all += cpu[k]; sw += ctx[k]
      }
      printf "| **all** | **%.1f µs** | **%.2f** |\n", all / t * 1e6 / n, sw / n
    }'
done
