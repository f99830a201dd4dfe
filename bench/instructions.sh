#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind (callgrind): exact where the timed
# benchmark is noisy, so a change to the request path of 1-3% shows. Loopback only.
#
#   bench/instructions.sh [GATEHOUSE_BIN ...]
#
# For each binary (default: target/release/gatehouse), runs it under callgrind twice in front of a pool of two
# servers (one nginx listening on two ports, answering "ok"; two, as in bench.py, so retry bookkeeping counts), sends N1 then N2 keep-alive HTTP/1.1 requests (h2load --h1, 4 connections), and
# prints (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and shutdown cancel out. Installs valgrind, nginx,
# nghttp2-client (h2load) and wrk with apt-get when missing. Environment: N1 (default 1000), N2 (default 6000);
# NEWCONN=1 counts a new client connection per request instead (wrk -t1 -c4 with `Connection: close`, runs of
# T1 and T2 seconds, default 3 and 12, and the requests wrk counted in each).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
n1="${N1:-1000}"
n2="${N2:-6000}"
bins=("$@")
[[ ${#bins[@]} -gt 0 ]] || bins=("$root/target/release/gatehouse")

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v h2load >/dev/null || need+=(nghttp2-client)
[[ -z "${NEWCONN:-}" ]] || command -v wrk >/dev/null || need+=(wrk)
if [[ ${#need[@]} -gt 0 ]]; then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

tmp="$(mktemp -d /tmp/gatehouse-instr.XXXXXX)"
cleanup() {
    [[ -f "$tmp/nginx.pid" ]] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend_port="$(free_port)"
backend_port2="$(free_port)"
proxy_port="$(free_port)"
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx.conf" <<EOF
daemon on;
pid $tmp/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $tmp/nginx;
    proxy_temp_path $tmp/nginx;
    fastcgi_temp_path $tmp/nginx;
    uwsgi_temp_path $tmp/nginx;
    scgi_temp_path $tmp/nginx;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$backend_port;
        listen 127.0.0.1:$backend_port2;
        location / { default_type text/plain; return 200 "ok\n"; }
    }
}
EOF
"$nginx_bin" -c "$tmp/nginx.conf"
cat >"$tmp/gatehouse.toml" <<EOF
[server]
workers = 1
log_level = "warn"
access_log = "off"

[[listener]]
name = "bench"
bind = "127.0.0.1:$proxy_port"

[[site]]
hosts = ["bench.local"]
default = true
  [[site.route]]
  path = "/"
  pool = "backends"

[pool.backends]
servers = ["127.0.0.1:$backend_port", "127.0.0.1:$backend_port2"]
EOF

# Instructions and requests of one run of $1: $2 requests (h2load, keep-alive), or $2 seconds (wrk, a new
# connection per request) with NEWCONN set. Prints "instructions requests".
count() {
    local bin="$1" n="$2" out="$tmp/callgrind.out" done
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" run -c "$tmp/gatehouse.toml" \
        >"$tmp/valgrind.log" 2>&1 &
    local pid=$!
    for _ in $(seq 150); do
        curl -s -o /dev/null "http://127.0.0.1:$proxy_port/" && break
        sleep 0.2
    done
    if [[ -n "${NEWCONN:-}" ]]; then
        done="$(wrk -t1 -c4 -d"${n}s" -H 'Connection: close' "http://127.0.0.1:$proxy_port/" |
            awk '/requests in/ {print $1}')"
    else
        h2load --h1 -n "$n" -c 4 -m 1 "http://127.0.0.1:$proxy_port/" | grep -E '^requests:' >&2
        done="$n"
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    echo "$(grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}') $done"
}

if [[ -n "${NEWCONN:-}" ]]; then
    n1="${T1:-3}"
    n2="${T2:-12}"
fi
for bin in "${bins[@]}"; do
    read -r a ra < <(count "$bin" "$n1")
    read -r b rb < <(count "$bin" "$n2")
    echo "$bin: $(((b - a) / (rb - ra))) instructions per request ($((rb - ra)) requests apart)"
done
