#!/usr/bin/env bash
# Proxy hop benchmark: wrk against (1) the upstream directly, (2) nginx `proxy_pass` to it,
# (3) remit's proxy to it (API key, Cedar decision, durable SQLite record per request),
# (4) the same with `danger_skip_fsync` (records reach the OS, fsynced only at checkpoints),
# (5) the HTTP stack remit's proxy is built on with nothing of remit in it (axum and
# hyper-util's client: remit-gateway's example `bare_proxy`), and (6) the same without axum
# (hyper-util's server and a `service_fn`), (7) the stack of (5) on tokio's multi-threaded
# scheduler with one worker instead of the single-threaded one remit picks on one core, all
# in one run on loopback.
# The server under test is pinned to core 0; the upstream and wrk share core 1. Needs the
# Debian packages nginx and wrk (`apt-get install nginx wrk`). Beside each rate it gives
# the server's CPU time per request (every thread, user and system, from /proc): nginx's
# rate is often held by core 1 (wrk and the upstream), not by its own core, and the CPU
# figure compares the two proxies' cost either way.
#
# Usage: bench/proxy.sh [seconds] [connections]
# With REMIT_BASELINE=/path/to/an/older/remit, that build runs too (durable records, same
# configuration), measured right after this one: an A/B of two builds in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
. bench/proxy_world.sh
bench_needs bench/proxy.sh "nginx wrk" nginx wrk taskset
cargo build --release -q -p remit
cargo build --release -q -p remit-gateway --example bare_proxy
bench_work
proxy_world "$work"
cat > "$work/proxy.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/proxy.pid;
error_log $work/logs/proxy.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream up { server 127.0.0.1:18080; keepalive 64; }
  server {
    listen 127.0.0.1:18081;
    keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
sed -e 's/18082/18084/; s/18083/18085/' -e 's/^\[gateway\]$/[gateway]\ndanger_skip_fsync = true/' "$work/remit.toml" > "$work/remit-nofsync.toml"

taskset -c 1 nginx -p "$work" -c "$work/upstream.conf" & pids+=($!); upstream_pid=$!
taskset -c 0 nginx -p "$work" -c "$work/proxy.conf" & pids+=($!); nginx_pid=$!
RUST_LOG=warn taskset -c 0 target/release/remit serve --config "$work/remit.toml" --data-dir "$work/data" & pids+=($!); remit_pid=$!
RUST_LOG=error taskset -c 0 target/release/remit serve --config "$work/remit-nofsync.toml" --data-dir "$work/data-nofsync" & pids+=($!); nofsync_pid=$!
RUST_LOG=error taskset -c 0 target/release/examples/bare_proxy 127.0.0.1:18088 127.0.0.1:18080 & pids+=($!); bare_pid=$!
RUST_LOG=error taskset -c 0 target/release/examples/bare_proxy 127.0.0.1:18089 127.0.0.1:18080 hyper & pids+=($!); hyper_pid=$!
RUST_LOG=error taskset -c 0 target/release/examples/bare_proxy 127.0.0.1:18090 127.0.0.1:18080 axum multi & pids+=($!); multi_pid=$!
ports="18080 18081 18082 18084 18088 18089 18090"
if [ -n "${REMIT_BASELINE:-}" ]; then
  sed -e 's/18082/18086/; s/18083/18087/' "$work/remit.toml" > "$work/remit-baseline.toml"
  RUST_LOG=warn taskset -c 0 "$REMIT_BASELINE" serve --config "$work/remit-baseline.toml" --data-dir "$work/data-baseline" & pids+=($!); baseline_pid=$!
  ports="$ports 18086"
fi
for port in $ports; do
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

# CPU time (user + system, every thread, in clock ticks) of a process and its children
# that have not exited: nginx's master hands the work to its one worker.
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
run() { # name url pid-of-the-server-under-test [connections] [wrk script]
  local out c0 c1
  c0=$(cpu_ticks "$3")
  out=$(taskset -c 1 wrk -t1 -c"${4:-$conns}" -d"${secs}s" --latency ${5:+-s "$5"} -H 'Authorization: Bearer rk_bench' "$2")
  c1=$(cpu_ticks "$3")
  local rps p50 p99 non2xx n cpu
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  # The server's CPU per request: what it costs, whichever core limits the rate.
  cpu=$(awk -v a="$c0" -v b="$c1" -v t="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }')
  printf '%s %s %s %s %s %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" "$cpu"
}
to_us() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else if (v ~ /s$/) print n*1000000; else print n }'; }

# Every request names a resource not seen before, so no decision can be reused: the
# policy layer's cache only ever misses (and evicts).
cat > "$work/new-resource.lua" <<'LUA'
local n = 0
request = function() n = n + 1; return wrk.format(nil, "/bench/n" .. n) end
LUA

echo "warming up" >&2
taskset -c 1 wrk -t1 -c"$conns" -d2s -H 'Authorization: Bearer rk_bench' http://127.0.0.1:18082/bench/1 >/dev/null
results=$(run direct http://127.0.0.1:18080/bench/1 "$upstream_pid"; run nginx http://127.0.0.1:18081/bench/1 "$nginx_pid"
  run remit http://127.0.0.1:18082/bench/1 "$remit_pid"
  if [ -n "${REMIT_BASELINE:-}" ]; then run remit-baseline http://127.0.0.1:18086/bench/1 "$baseline_pid"; fi
  run remit-danger-skip-fsync http://127.0.0.1:18084/bench/1 "$nofsync_pid"
  run remit-new-resources http://127.0.0.1:18082/ "$remit_pid" "$conns" "$work/new-resource.lua"
  run bare-axum-hyper http://127.0.0.1:18088/bench/1 "$bare_pid"
  run bare-hyper http://127.0.0.1:18089/bench/1 "$hyper_pid"
  run bare-axum-hyper-multi-threaded http://127.0.0.1:18090/bench/1 "$multi_pid")
# The hop's own latency, unloaded: one connection, one request at a time.
unloaded=$(run direct http://127.0.0.1:18080/bench/1 "$upstream_pid" 1; run nginx http://127.0.0.1:18081/bench/1 "$nginx_pid" 1
  run remit http://127.0.0.1:18082/bench/1 "$remit_pid" 1
  if [ -n "${REMIT_BASELINE:-}" ]; then run remit-baseline http://127.0.0.1:18086/bench/1 "$baseline_pid" 1; fi
  run remit-danger-skip-fsync http://127.0.0.1:18084/bench/1 "$nofsync_pid" 1
  run bare-axum-hyper http://127.0.0.1:18088/bench/1 "$bare_pid" 1; run bare-hyper http://127.0.0.1:18089/bench/1 "$hyper_pid" 1)
# Decision records: the entries of the audit segments that hold a decision.
records=$(cat "$work"/data/audit/*/*.seg 2>/dev/null | grep -c '"kind":"decision"' || true)

echo "wrk -t1 -c$conns -d${secs}s; server under test on core 0, upstream and wrk on core 1"
echo "| target | requests/s | p50 | p99 | non-2xx | server CPU per request |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
while read -r name rps p50 p99 bad cpu; do echo "| $name | $rps | $p50 | $p99 | $bad | $cpu µs |"; done <<<"$results"
d50=$(to_us "$(awk '$1=="direct"{print $3}' <<<"$results")")
n_rps=$(awk '$1=="nginx"{print $2}' <<<"$results"); r_rps=$(awk '$1=="remit"{print $2}' <<<"$results")
n50=$(to_us "$(awk '$1=="nginx"{print $3}' <<<"$results")"); r50=$(to_us "$(awk '$1=="remit"{print $3}' <<<"$results")")
d99=$(to_us "$(awk '$1=="direct"{print $4}' <<<"$results")")
n99=$(to_us "$(awk '$1=="nginx"{print $4}' <<<"$results")"); r99=$(to_us "$(awk '$1=="remit"{print $4}' <<<"$results")")
x_rps=$(awk '$1=="remit-danger-skip-fsync"{print $2}' <<<"$results"); x50=$(to_us "$(awk '$1=="remit-danger-skip-fsync"{print $3}' <<<"$results")")
if [ -n "${REMIT_BASELINE:-}" ]; then
  b_rps=$(awk '$1=="remit-baseline"{print $2}' <<<"$results"); b50=$(to_us "$(awk '$1=="remit-baseline"{print $3}' <<<"$results")")
  awk -v r="$r_rps" -v b="$b_rps" -v r50="$r50" -v b50="$b50" -v d50="$d50" 'BEGIN {
    printf "remit / baseline requests/s: %.2fx; added p50 over direct: remit %.0f us, baseline %.0f us\n", r/b, r50-d50, b50-d50 }'
fi
n_cpu=$(awk '$1=="nginx"{print $6}' <<<"$results"); r_cpu=$(awk '$1=="remit"{print $6}' <<<"$results")
h_cpu=$(awk '$1=="bare-axum-hyper"{print $6}' <<<"$results"); h_rps=$(awk '$1=="bare-axum-hyper"{print $2}' <<<"$results")
awk -v nc="$n_cpu" -v rc="$r_cpu" -v hc="$h_cpu" -v h="$h_rps" -v n="$n_rps" 'BEGIN {
  printf "server CPU per request: nginx %.1f us, remit %.1f us (nginx / remit: %.2fx; the rate remit would reach on a core of its own, beside nginx'"'"'s)\n", nc, rc, nc/rc;
  printf "the bare HTTP stack (axum + hyper-util, no pipeline): %.1f us a request, %.2fx nginx'"'"'s requests/s; remit adds %.1f us to it\n", hc, h/n, rc-hc }'
awk -v n="$n_rps" -v x="$x_rps" -v x50="$x50" -v r="$r_rps" -v d50="$d50" -v n50="$n50" -v r50="$r50" -v d99="$d99" -v n99="$n99" -v r99="$r99" 'BEGIN {
  printf "remit / nginx requests/s: %.2fx (danger_skip_fsync: %.2fx)\n", r/n, x/n;
  printf "added p50 over direct with danger_skip_fsync: %.0f us\n", x50-d50;
  printf "added p50 over direct: nginx %.0f us, remit %.0f us\n", n50-d50, r50-d50;
  printf "added p99 over direct: nginx %.0f us, remit %.0f us\n", n99-d99, r99-d99;
}'
echo "decision records written by remit: $records (wrk's requests, warm-up included)"
echo
echo "unloaded: wrk -t1 -c1 -d${secs}s (one request at a time)"
echo "| target | requests/s | p50 | p99 | added p50 over direct | added p99 over direct |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
u50=$(to_us "$(awk '$1=="direct"{print $3}' <<<"$unloaded")"); u99=$(to_us "$(awk '$1=="direct"{print $4}' <<<"$unloaded")")
while read -r name rps p50 p99 _ _; do
  echo "| $name | $rps | $p50 | $p99 | $(awk -v a="$(to_us "$p50")" -v d="$u50" 'BEGIN{printf "%.0f us", a-d}') | $(awk -v a="$(to_us "$p99")" -v d="$u99" 'BEGIN{printf "%.0f us", a-d}') |"
done <<<"$unloaded"
