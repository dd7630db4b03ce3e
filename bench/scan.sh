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
cargo build --release --locked -q -p remit-scan --example scan_corpus

echo "== $(date -u +%FT%TZ) $(nproc) cores; detect-secrets $("$VENV/bin/detect-secrets" --version)"
remit=$(taskset -c 0 "$CARGO_TARGET_DIR/release/examples/scan_corpus" $((ROUNDS * 3)))
echo "$remit"
ds=$(taskset -c 0 "$VENV/bin/python" bench/scan_detect_secrets.py "$CORPUS" "$ROUNDS")
echo "$ds"
r=$(echo "$remit" | sed -n 's/.*bench4k:.* MB\/s=\([0-9.]*\).*/\1/p')
d=$(echo "$ds" | sed -n 's/.*MB\/s=\([0-9.]*\).*/\1/p')
python3 -c "print(f'throughput ratio remit-scan / detect-secrets: {float(\"$r\") / float(\"$d\"):.0f}x')"
