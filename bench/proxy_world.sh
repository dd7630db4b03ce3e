#!/usr/bin/env bash
# The world the proxy benchmarks share, written into a directory: the upstream (nginx
# `return 200` on 127.0.0.1:18080, upstream.conf) and remit in front of it (remit.toml on
# 127.0.0.1:18082, admin 18083; API key `rk_bench`, one route, one permit in policies/).
# Sourced by bench/proxy.sh, bench/proxy_cpu.sh and bench/proxy_instructions.sh (and, for
# its first two functions, bench/authz.sh):
# `bench_needs SCRIPT PACKAGES TOOL...`, `bench_work` (a scratch directory $work and the
# processes in $pids, both cleaned up at exit), then `proxy_world "$work"`.

# Exits with what to install unless every TOOL is on the PATH.
bench_needs() {
  local script=$1 packages=$2 tool
  shift 2
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$script needs $tool (apt-get install $packages)" >&2; exit 1; }
  done
}

# A scratch directory ($work) and the processes started ($pids), killed and removed at exit.
bench_work() {
  work=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}

proxy_world() {
local work=$1
mkdir -p "$work/logs" "$work/policies"
cat > "$work/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/upstream.pid;
error_log $work/logs/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:18080; keepalive_requests 1000000; location / { return 200 "ok\n"; } }
}
CONF
key_sha=$(printf %s rk_bench | sha256sum | cut -d' ' -f1)
cat > "$work/remit.toml" <<CONF
[gateway]
proxy_listen = "127.0.0.1:18082"
admin_listen = "127.0.0.1:18083"

[[route]]
method = "GET"
path = "/bench/{id}"
action = "bench.read"
resource = "Item::{id}"
sensitive = false

[[upstream]]
name = "up"
url = "http://127.0.0.1:18080"
prefix = "/"

[[identity]]
id = "bench-bot"
kind = "service_account"
owner = "team-bench"
purposes = ["bench"]
boundary = ["bench.read"]

[[identity.credential]]
type = "api_key"
id = "bench-key"
sha256 = "$key_sha"
CONF
echo 'permit (principal == Identity::"bench-bot", action == Action::"bench.read", resource);' > "$work/policies/bench.cedar"
}
