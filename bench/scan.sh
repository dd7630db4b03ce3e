#!/usr/bin/env bash
# Secret-scan benchmark: remit-scan beside detect-secrets on the same 4 KB JSON bodies
# (crates/remit-scan/tests/corpus/bench4k.jsonl), one core each, in one run.
#
#   bash bench/scan.sh [ROUNDS]
#
# detect-secrets is installed from PyPI into a venv under $VENV (default /tmp/remit-scan-venv/ds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-5}"
VENV="${VENV:-/tmp/remit-scan-venv/ds}"
CORPUS=crates/remit-scan/tests/corpus/bench4k.jsonl
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q detect-secrets==1.5.0
fi
cargo build --release --locked -q -p remit-scan --example scan_corpus --example scan_loop

echo "== $(date -u +%FT%TZ) $(nproc) cores; detect-secrets $("$VENV/bin/detect-secrets" --version)"
remit=$(taskset -c 0 "$CARGO_TARGET_DIR/release/examples/scan_corpus" $((ROUNDS * 3)))
echo "$remit"
ds=$(taskset -c 0 "$VENV/bin/python" bench/scan_detect_secrets.py "$CORPUS" "$ROUNDS")
echo "$ds"
r=$(echo "$remit" | sed -n 's/.*bench4k:.* MB\/s=\([0-9.]*\).*/\1/p')
d=$(echo "$ds" | sed -n 's/.* MB\/s=\([0-9.]*\).*/\1/p')
python3 -c "print(f'throughput ratio remit-scan / detect-secrets: {float(\"$r\") / float(\"$d\"):.0f}x')"
# The same by CPU time (user + sys), which waiting for a shared core does not inflate:
# scan_loop scanning the bodies ROUNDS * 40 times, less a 0-round run (loading, rule
# compilation), beside detect-secrets' CPU time over its rounds.
TIMEFORMAT='%U %S'
cpu() { { time taskset -c 0 "$CARGO_TARGET_DIR/release/examples/scan_loop" "$1" >/dev/null 2>&1; } 2>&1 | awk '{print $1 + $2}'; }
loops=$((ROUNDS * 40))
fixed=$(cpu 0)
total=$(cpu "$loops")
dc=$(echo "$ds" | sed -n 's/.*cpu_MB\/s=\([0-9.]*\).*/\1/p')
python3 -c "
rc = 1603319 * $loops / 1e6 / ($total - $fixed)
print(f'remit-scan cpu_MB/s={rc:.1f} ({$loops} rounds); detect-secrets cpu_MB/s=$dc; CPU-time ratio: {rc / float(\"$dc\"):.0f}x')"
