#!/usr/bin/env bash
# Secret-scan A/B: two builds of `scan_loop` (crates/remit-scan/examples/scan_loop.rs) compared
# by numbers a busy machine does not skew much:
#   - instructions per bench4k body (valgrind --tool=callgrind; a 6-round minus a 2-round run,
#     over 1,600 scans, so loading and rule compilation cancel out), and
#   - CPU time (user + sys) per round in alternating runs pinned to one core, as MB/s; waiting
#     for the core does not count, unlike wall time. A 0-round run of each build gives the
#     fixed cost to subtract. Prints the medians and the median of the per-pair ratios.
#
#   bash bench/scan_ab.sh OLD_SCAN_LOOP NEW_SCAN_LOOP [PAIRS] [ROUNDS]
#
# Build each side with `cargo build --release -p remit-scan --example scan_loop` and copy
# target/release/examples/scan_loop away before building the other.
set -euo pipefail
old=$1 new=$2 pairs=${3:-9} rounds=${4:-200}
bytes=1603319 # bench4k.jsonl: 400 bodies
per_body() {
  local d; d=$(mktemp -d)
  valgrind --tool=callgrind --callgrind-out-file="$d/6" "$1" 6 >/dev/null 2>"$d/6.err"
  valgrind --tool=callgrind --callgrind-out-file="$d/2" "$1" 2 >/dev/null 2>"$d/2.err"
  local a b
  a=$(grep -o 'refs: *[0-9,]*' "$d/6.err" | tr -dc 0-9)
  b=$(grep -o 'refs: *[0-9,]*' "$d/2.err" | tr -dc 0-9)
  rm -r "$d"
  echo $(((a - b) / 1600))
}
if command -v valgrind >/dev/null; then
  o=$(per_body "$old"); n=$(per_body "$new")
  python3 -c "print(f'instructions per body: old {$o:,} new {$n:,} ({($n - $o) / $o * 100:+.1f} %)')"
fi
TIMEFORMAT='%U %S'
cpu() { { time taskset -c 0 "$1" "$2" >/dev/null 2>&1; } 2>&1 | awk '{print $1 + $2}'; }
echo "== $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg); $pairs pairs of $rounds rounds"
for _ in $(seq "$pairs"); do
  for side in old new; do
    bin=$old; [ "$side" = new ] && bin=$new
    echo "$side $(cpu "$bin" 0) $(cpu "$bin" "$rounds")"
  done
done | python3 -c "
import statistics as st, sys
rate = {'old': [], 'new': []}
for line in sys.stdin:
    side, fixed, total = line.split()
    rate[side].append($bytes * $rounds / 1e6 / (float(total) - float(fixed)))
for side in ('old', 'new'):
    print(side, 'CPU-time MB/s', ' '.join(f'{r:.0f}' for r in rate[side]), f'median {st.median(rate[side]):.1f}')
ratios = [n / o for o, n in zip(rate['old'], rate['new'])]
print('new/old per pair', ' '.join(f'{r:.2f}' for r in ratios), f'median {st.median(ratios):.3f}')
"
echo "== load after $(cut -d' ' -f1-3 /proc/loadavg)"
