#!/usr/bin/env bash
# Outside checks of a running Gatehouse, on loopback only (the figures in docs/security.md come from here):
#
#   bench/security.sh [--seconds S]
#
# 1. sslyze --mozilla_config=intermediate against an HTTPS listener (a throwaway CA and certificate), then a
#    certificate scan by IP address, without SNI;
# 2. slowhttptest in slowloris mode (-H, 500 connections sending header lines every 10 s);
# 3. slowhttptest in slow-read mode (-X, 500 readers of a 2 MiB response, 32 bytes every 5 s), once with the
#    default send_timeout and once with send_timeout = "10s";
# while a normal client fetches / every 0.5 s. Each run prints what slowhttptest reports, the normal client's
# answers, Gatehouse's open file descriptors every 10 s, and its peak RSS.
#
# Installs what is missing (nginx as the backend, slowhttptest, openssl, sslyze from PyPI) and builds
# Gatehouse in release mode unless GATEHOUSE_BIN points at a binary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
secs=60
[[ "${1:-}" == "--seconds" ]] && secs="$2"

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
apt_updated=""
need() {  # need COMMAND PACKAGE
    command -v "$1" >/dev/null && return
    if [[ -z "$apt_updated" ]]; then $SUDO apt-get update -q >&2; apt_updated=1; fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >&2
}
need nginx nginx-light
need slowhttptest slowhttptest
need openssl openssl
need curl curl
if ! command -v sslyze >/dev/null; then
    pip install --quiet sslyze 2>/dev/null || pip install --quiet --break-system-packages sslyze
fi

bin="${GATEHOUSE_BIN:-}"
if [[ -z "$bin" ]]; then
    (cd "$root" && cargo build --release -q -p gatehouse)
    bin="$root/target/release/gatehouse"
fi

tmp="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
backend=$(free_port); http=$(free_port); https=$(free_port)

# The backend: nginx serving / and a 2 MiB file.
mkdir -p "$tmp/www"
head -c 2097152 /dev/urandom > "$tmp/www/2m"
chmod 755 "$tmp" "$tmp/www" && chmod 644 "$tmp/www/2m"  # nginx's workers run as another user
cat > "$tmp/nginx.conf" <<EOF
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$backend; root $tmp/www; location = / { return 200 "ok\n"; } } }
EOF
nginx -c "$tmp/nginx.conf"
sleep 0.3
pids=("$(cat "$tmp/nginx.pid")")

# A throwaway CA and a certificate for bench.local.
(
    cd "$tmp"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 -set_serial 1 \
        -subj "/CN=Gatehouse check CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
        -subj "/CN=bench.local" 2>/dev/null
    printf "subjectAltName=DNS:bench.local\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n" > ext.cnf
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 30 -extfile ext.cnf \
        -out leaf.pem 2>/dev/null
    cat leaf.pem ca.pem > cert.pem
    chmod 600 key.pem
)

config() {  # config EXTRA_SERVER_LINES
    cat <<EOF
[server]
workers = 2
log_level = "warn"
$1
[[listener]]
name = "http"
bind = "127.0.0.1:$http"
[[listener]]
name = "https"
bind = "127.0.0.1:$https"
tls = true
[[site]]
hosts = ["bench.local"]
default = true
tls = { cert = "$tmp/cert.pem", key = "$tmp/key.pem" }
  [[site.route]]
  path = "/"
  pool = "vms"
[pool.vms]
servers = ["127.0.0.1:$backend"]
EOF
}

gh_pid=""
start_gatehouse() {  # start_gatehouse EXTRA_SERVER_LINES
    config "$1" > "$tmp/gatehouse.toml"
    "$bin" run -c "$tmp/gatehouse.toml" > "$tmp/gatehouse.log" 2>&1 &
    gh_pid=$!
    pids+=("$gh_pid")
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$http/" && return; sleep 0.1; done
    echo "gatehouse did not start:" >&2; cat "$tmp/gatehouse.log" >&2; exit 1
}
stop_gatehouse() { kill "$gh_pid" 2>/dev/null || true; wait "$gh_pid" 2>/dev/null || true; }

echo "## sslyze --mozilla_config=intermediate"
start_gatehouse ""
sslyze --mozilla_config=intermediate --certinfo_ca_file "$tmp/ca.pem" "bench.local:$https{127.0.0.1}" 2>/dev/null \
    | grep -E '^ \* (SSL|TLS) .*Cipher Suites:|rejected all|^ +TLS_|Supported curves|Compliant|compliant|FAILED' || true
echo "## sslyze --certinfo by IP address (no SNI)"
sslyze --certinfo "127.0.0.1:$https" 2>/dev/null | grep -E "Common Name|SNI" | head -4 || true
stop_gatehouse

# slow MODE LABEL EXTRA_SERVER_LINES SLOWHTTPTEST_ARGS...
slow() {
    local label="$1" extra="$2"; shift 2
    echo "## slowhttptest $label"
    start_gatehouse "$extra"
    local rss0; rss0=$(awk '/VmRSS/ {print $2}' "/proc/$gh_pid/status")
    (
        ok=0; other=0; end=$((SECONDS + secs))
        while [[ $SECONDS -lt $end ]]; do
            c=$(curl -s -m 5 -o /dev/null -w "%{http_code}" "http://127.0.0.1:$http/" || true)
            if [[ "$c" == 200 ]]; then ok=$((ok + 1)); else other=$((other + 1)); fi
            sleep 0.5
        done
        echo "normal client: $ok answers 200, $other other"
    ) > "$tmp/normal.out" &
    local normal=$!
    (
        for t in $(seq 10 10 "$secs"); do
            sleep 10
            echo "  t=${t}s: open fds $(ls "/proc/$gh_pid/fd" 2>/dev/null | wc -l), RSS $(awk '/VmRSS/ {print $2}' "/proc/$gh_pid/status") KiB"
        done
    ) > "$tmp/samples.out" &
    local sampler=$!
    local status; status=$(curl -s -o /dev/null -w "%{http_code}" "${@: -1}")
    echo "the target answers $status"
    slowhttptest "$@" -l "$secs" -p 3 -g -o "$tmp/slow" > "$tmp/slow.out" 2>&1 || true
    wait "$normal"
    kill "$sampler" 2>/dev/null || true
    sed 's/\x1b\[[0-9;]*m//g' "$tmp/slow.out" | grep -E "Exit status|^Test ended" | tail -2
    echo "slowhttptest per second (Seconds,Closed,Pending,Connected,Service Available), every 10th:"
    awk 'NR == 1 || NR % 10 == 2' "$tmp/slow.csv"
    cat "$tmp/normal.out" "$tmp/samples.out"
    echo "Gatehouse RSS: ${rss0} KiB at start, peak $(awk '/VmHWM/ {print $2}' "/proc/$gh_pid/status") KiB"
    stop_gatehouse
}

slow "-H (slowloris)" "" -H -c 500 -r 200 -i 10 -u "http://127.0.0.1:$http/"
slow "-X (slow read), default send_timeout" "" \
    -X -c 500 -r 200 -w 512 -y 1024 -n 5 -z 32 -k 3 -u "http://127.0.0.1:$http/2m"
slow "-X (slow read), send_timeout = 10s" 'send_timeout = "10s"' \
    -X -c 500 -r 200 -w 512 -y 1024 -n 5 -z 32 -k 3 -u "http://127.0.0.1:$http/2m"
