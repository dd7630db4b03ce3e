#!/usr/bin/env bash
# Authorization doors benchmark, in one run on loopback:
#  1. ext_authz gRPC: decisions/s and p50/p99 from a tonic client (the bench binary
#     crates/remit-gateway/benches/ext_authz.rs; durable SQLite record per decision);
#  2. wrk against nginx alone (`proxy_pass`) and nginx + `auth_request` + remit
#     (examples/nginx/nginx.conf as written, access log off), on the same upstream (nginx
#     `return 200`). nginx and remit under test share core 0; the upstream and wrk core 1.
# Needs the Debian packages nginx and wrk (`apt-get install nginx wrk`).
#
# Usage: bench/authz.sh [seconds] [connections] [grpc-requests]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
grpc_n=${3:-20000}
. bench/proxy_world.sh
bench_needs bench/authz.sh "nginx wrk" nginx wrk taskset
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

echo "== ext_authz gRPC (tonic client, $grpc_n checks, 32 in flight)"
cargo bench -q -p remit-gateway --bench ext_authz -- "$grpc_n" 32 2>/dev/null | grep '^ext_authz'

cargo build --release -q -p remit
bench_work
mkdir -p "$work/logs" "$work/world/policies"

cat > "$work/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/logs/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:18090; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
}
CONF
cat > "$work/alone.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/alone.pid;
error_log $work/logs/alone.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream up { server 127.0.0.1:18090; keepalive 64; }
  server {
    listen 127.0.0.1:18091;
    keepalive_requests 1000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
# The example, pointed at the bench's remit and upstream, without the access log.
sed -e "s|127.0.0.1:8443|127.0.0.1:18093|; s|127.0.0.1:8450|127.0.0.1:18090|; s|listen 127.0.0.1:8080|listen 127.0.0.1:18092|" \
    -e "s|^\( *\)access_log .*|\1access_log off;|" \
    -e "s|^http {|http {\n    client_body_temp_path $work/body; proxy_temp_path $work/proxy;|" \
    examples/nginx/nginx.conf > "$work/authz.conf"
sed -e 's|127.0.0.1:8440|127.0.0.1:18094|; s|127.0.0.1:8441|127.0.0.1:18095|; s|127.0.0.1:8443|127.0.0.1:18093|' \
    -e '/^grpc_listen/d' examples/quickstart/remit.toml > "$work/world/remit.toml"
cp examples/quickstart/policies/*.cedar "$work/world/policies/"

taskset -c 1 nginx -p "$work" -e "$work/logs/u.err" -c "$work/upstream.conf" & pids+=($!)
taskset -c 0 nginx -p "$work" -e "$work/logs/a.err" -c "$work/alone.conf" & pids+=($!)
taskset -c 0 nginx -p "$work" -e "$work/logs/z.err" -c "$work/authz.conf" -g "daemon off; pid $work/authz.pid;" & pids+=($!)
RUST_LOG=warn taskset -c 0 "$CARGO_TARGET_DIR/release/remit" serve --config "$work/world/remit.toml" --data-dir "$work/data" & pids+=($!)
for port in 18090 18091 18092 18093; do
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

H=(-H 'Authorization: Bearer rk_demo_support_assistant' -H 'Remit-Purpose: case-summary')
run() { # name url
  local out rps p50 p99 non2xx
  out=$(taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "${H[@]}" "$2")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '%s %s %s %s %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
}
echo "warming up" >&2
taskset -c 1 wrk -t1 -c"$conns" -d2s "${H[@]}" http://127.0.0.1:18092/tickets/1 >/dev/null
results=$(run nginx-alone http://127.0.0.1:18091/tickets/1; run nginx+auth_request+remit http://127.0.0.1:18092/tickets/1)
echo "== wrk -t1 -c$conns -d${secs}s; nginx and remit on core 0, upstream and wrk on core 1"
echo "| target | requests/s | p50 | p99 | non-2xx |"
echo "| --- | ---: | ---: | ---: | ---: |"
while read -r name rps p50 p99 bad; do echo "| $name | $rps | $p50 | $p99 | $bad |"; done <<<"$results"
a=$(awk '$1=="nginx-alone"{print $2}' <<<"$results"); z=$(awk '$1=="nginx+auth_request+remit"{print $2}' <<<"$results")
awk -v a="$a" -v z="$z" 'BEGIN { printf "nginx+auth_request+remit / nginx alone, requests/s: %.2fx\n", z/a }'
